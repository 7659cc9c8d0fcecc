package front

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config is the SSH front door's listener and host identity.
type Config struct {
	// Listen is the address ssh clients connect to.
	Listen string
	// HostNames are the names the bastion's host certificate is valid
	// for, beside the listen address's host.
	HostNames []string
	// MaxAuthTries bounds the authentication attempts of one connection.
	MaxAuthTries int
	// PreAuthTimeout is how long a connection may take to authenticate.
	PreAuthTimeout time.Duration
	// Limits end sessions that idle or run too long.
	Limits Limits
	// FIPS offers only FIPS 140-3 approved algorithms, presents an
	// ECDSA P-256 host key, and accepts only ECDSA and RSA client keys
	// and certificates signed with them.
	FIPS bool
	// MaxConnsPerAddress bounds the concurrent connections from one
	// client address (one /64 for IPv6); more are closed at accept.
	MaxConnsPerAddress int
	// MaxUnauthenticated bounds the connections, from all addresses,
	// that have not authenticated yet; past it, the oldest of them is
	// closed to make room for the new one.
	MaxUnauthenticated int
}

// HostCertNames are the names the front door's host certificate is valid
// for: host_names, then the listen address's host unless it is every
// address (0.0.0.0, ::), and "localhost" beside a loopback address, so
// that ssh may reach a loopback front door by either name.
func (c *Config) HostCertNames() []string {
	names := slices.Clone(c.HostNames)
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if host, _, err := net.SplitHostPort(c.Listen); err == nil && host != "" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsUnspecified() {
			add(host)
		}
		if ip != nil && ip.IsLoopback() {
			add("localhost")
		}
	}
	return names
}

// Target is something an SSH user reaches by name: a command the
// bastion runs itself, or an upstream SSH server. Exactly one of Command
// and SSH is set.
type Target struct {
	Name string
	// Command is the command run for a shell; what an exec request runs
	// is Exec's to say.
	Command []string
	// Exec says what an exec request to a command target runs: ExecShell
	// (Command, "-c" and the client's command line), ExecArgs (Command
	// and the client's command line split into words) or ExecRefuse
	// (nothing: the target serves shell sessions only).
	Exec string
	// User is the user a command target's command runs as, looked up
	// when the config is loaded; "" means the bastion's own user.
	User string
	// Credential is User's uid, gid and groups; nil when the command runs
	// as the bastion's own user (User unset, or User is that user).
	Credential *syscall.Credential
	// UID is User's uid (valid when User is set).
	UID uint32
	// Home is User's home directory; "" when User is unset.
	Home string
	// Dir is the command's working directory as configured; "" means
	// Home if it exists, else "/" (with User), or the bastion's own
	// working directory (without).
	Dir string
	// Env is what env_file and env add to the command's environment,
	// KEY=VALUE, each name once (env wins over env_file). The values are
	// secrets: they are never journaled, logged or sent to the client.
	Env []string
	// SSH is the HOST:PORT of an upstream SSH server. Its host key must
	// be one of HostKey, a key KnownHosts lists for the address, or a
	// host certificate signed by HostCA (never trusted on first use).
	SSH        string
	HostKey    ssh.PublicKey // pinned host key; nil if none
	KnownHosts string        // known_hosts file; "" if none
	HostCA     ssh.PublicKey // host CA (@cert-authority); nil if none
	// UserKey is a private key file the bastion authenticates to the
	// target with; "" means a per-session certificate from the target
	// CA.
	UserKey string
	// DialTimeout bounds the connection and the SSH handshake.
	DialTimeout time.Duration
}

// What an exec request to a command target runs (Target.Exec).
const (
	ExecShell  = "shell"
	ExecArgs   = "args"
	ExecRefuse = "refuse"
)

// EnvNames are the names of t.Env, sorted: what the journal may hold of
// a target's environment.
func (t Target) EnvNames() []string {
	names := make([]string, 0, len(t.Env))
	for _, kv := range t.Env {
		k, _, _ := strings.Cut(kv, "=")
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// Defaults of the ssh block.
const (
	DefaultSSHListen      = "127.0.0.1:2222"
	DefaultMaxAuthTries   = 6
	DefaultPreAuthTimeout = 30 * time.Second
	DefaultDialTimeout    = 10 * time.Second
	// DefaultMaxConnsPerAddress is the default max_connections_per_address.
	DefaultMaxConnsPerAddress = 32
	// DefaultMaxUnauthenticated is the default max_unauthenticated.
	DefaultMaxUnauthenticated = 1000
)

// knownHostsFile is what a known_hosts file says beside its keys.
type knownHostsFile struct {
	// certAuthority is whether a line is marked @cert-authority: the
	// target may then present a host certificate.
	certAuthority bool
}

// readKnownHosts checks that path is a readable known_hosts file.
func readKnownHosts(path string) (knownHostsFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return knownHostsFile{}, err
	}
	var kh knownHostsFile
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(strings.TrimSpace(sc.Text()), "@cert-authority") {
			kh.certAuthority = true
		}
	}
	return kh, sc.Err()
}

// loadUserKey reads an unencrypted private key that only its owner may
// read.
func loadUserKey(path string) (ssh.Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return signer, nil
}

// CheckKnownHosts checks that path is a known_hosts file the front door
// can read, as it will when it dials a target that names it.
func CheckKnownHosts(path string) error {
	_, err := readKnownHosts(path)
	return err
}

// CheckUserKey checks that path is a private key the front door can
// authenticate to a target with: unencrypted, and readable by its owner
// alone.
func CheckUserKey(path string) error {
	_, err := loadUserKey(path)
	return err
}
