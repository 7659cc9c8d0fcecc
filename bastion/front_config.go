package bastion

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/crypto/ssh"
)

// SSHConfig is the SSH front door's listener and host identity.
type SSHConfig struct {
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
	Limits FrontLimits
	// FIPS offers only FIPS 140-3 approved algorithms, presents an
	// ECDSA P-256 host key, and accepts only ECDSA and RSA client keys
	// and certificates signed with them.
	FIPS bool
	// MaxConnsPerAddress bounds the concurrent connections from one
	// client address (one /64 for IPv6); more are closed at accept.
	MaxConnsPerAddress int
}

// TargetConfig is something an SSH user reaches by name: a command the
// bastion runs itself, or an upstream SSH server. Exactly one of Command
// and SSH is set.
type TargetConfig struct {
	Name string
	// Command is the command run for a shell; an exec request runs it
	// with "-c" and the client's command line appended.
	Command []string
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

// Defaults of the ssh block.
const (
	DefaultSSHListen      = "127.0.0.1:2222"
	DefaultMaxAuthTries   = 6
	DefaultPreAuthTimeout = 30 * time.Second
	DefaultDialTimeout    = 10 * time.Second
	// DefaultMaxConnsPerAddress is the default max_connections_per_address.
	DefaultMaxConnsPerAddress = 32
)

type sshBlock struct {
	Listen             *string   `hcl:"listen,optional"`
	HostNames          []string  `hcl:"host_names,optional"`
	MaxAuthTries       *int      `hcl:"max_auth_tries,optional"`
	PreAuthTimeout     *string   `hcl:"pre_auth_timeout,optional"`
	IdleTimeout        *string   `hcl:"idle_timeout,optional"`
	MaxDuration        *string   `hcl:"max_duration,optional"`
	FIPS               *bool     `hcl:"fips,optional"`
	MaxConnsPerAddress *int      `hcl:"max_connections_per_address,optional"`
	DefRange           hcl.Range `hcl:",def_range"`
}

type targetBlock struct {
	Name        string    `hcl:"name,label"`
	Command     []string  `hcl:"command,optional"`
	SSH         *string   `hcl:"ssh,optional"`
	HostKey     *string   `hcl:"host_key,optional"`
	KnownHosts  *string   `hcl:"known_hosts,optional"`
	HostCA      *string   `hcl:"host_ca,optional"`
	UserKey     *string   `hcl:"user_key,optional"`
	DialTimeout *string   `hcl:"dial_timeout,optional"`
	DefRange    hcl.Range `hcl:",def_range"`
}

// targetName is what may follow the last '@' of an SSH user name.
var targetName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// hostName is a DNS name or an IP address for the host certificate.
var hostName = regexp.MustCompile(`^[A-Za-z0-9.:_-]{1,253}$`)

// front validates the ssh block and the targets; relative paths are
// relative to dir, the config file's directory.
func (v *validator) front(fc *fileConfig, cfg *Config, dir string) {
	if b := fc.SSH; b != nil {
		c := &SSHConfig{Listen: DefaultSSHListen, MaxAuthTries: DefaultMaxAuthTries, MaxConnsPerAddress: DefaultMaxConnsPerAddress}
		if b.Listen != nil {
			c.Listen = *b.Listen
		}
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			v.attrf(b.DefRange, "listen", "ssh listen = %q is not HOST:PORT", c.Listen)
		}
		for _, h := range b.HostNames {
			if !hostName.MatchString(h) {
				v.attrf(b.DefRange, "host_names", "ssh host_names: %q is not a host name", h)
			}
		}
		c.HostNames = b.HostNames
		if b.MaxAuthTries != nil {
			if *b.MaxAuthTries < 1 || *b.MaxAuthTries > 20 {
				v.attrf(b.DefRange, "max_auth_tries", "max_auth_tries = %d is not between 1 and 20", *b.MaxAuthTries)
			}
			c.MaxAuthTries = *b.MaxAuthTries
		}
		if b.MaxConnsPerAddress != nil {
			if *b.MaxConnsPerAddress < 1 || *b.MaxConnsPerAddress > 10000 {
				v.attrf(b.DefRange, "max_connections_per_address", "max_connections_per_address = %d is not between 1 and 10000", *b.MaxConnsPerAddress)
			}
			c.MaxConnsPerAddress = *b.MaxConnsPerAddress
		}
		if b.FIPS != nil {
			c.FIPS = *b.FIPS
		}
		c.PreAuthTimeout = v.duration(b.DefRange, "pre_auth_timeout", b.PreAuthTimeout, DefaultPreAuthTimeout)
		c.Limits.IdleTimeout = v.limit(b.DefRange, "idle_timeout", b.IdleTimeout, DefaultIdleTimeout)
		c.Limits.MaxDuration = v.limit(b.DefRange, "max_duration", b.MaxDuration, DefaultMaxDuration)
		cfg.SSH = c
	}
	seen := map[string]bool{}
	for _, tb := range fc.Targets {
		if !targetName.MatchString(tb.Name) {
			v.errf(tb.DefRange, "target %q: a name is lowercase letters, digits, '.', '-' and '_'", tb.Name)
		}
		if seen[tb.Name] {
			v.errf(tb.DefRange, "target %q is defined twice", tb.Name)
		}
		seen[tb.Name] = true
		switch {
		case tb.SSH != nil && tb.Command != nil:
			v.attrf(tb.DefRange, "ssh", "target %q has both command and ssh: give one", tb.Name)
		case tb.SSH != nil:
			cfg.Targets = append(cfg.Targets, v.sshTarget(tb, dir))
			continue
		case len(tb.Command) == 0 || tb.Command[0] == "":
			v.attrf(tb.DefRange, "command", "target %q: command is empty: give the program and its arguments, such as [\"/bin/sh\"], or ssh = \"HOST:PORT\"", tb.Name)
		}
		for _, a := range []struct {
			name string
			set  bool
		}{{"host_key", tb.HostKey != nil}, {"known_hosts", tb.KnownHosts != nil}, {"host_ca", tb.HostCA != nil}, {"user_key", tb.UserKey != nil}, {"dial_timeout", tb.DialTimeout != nil}} {
			if a.set {
				v.attrf(tb.DefRange, a.name, "target %q: %s is for ssh targets, not commands", tb.Name, a.name)
			}
		}
		cfg.Targets = append(cfg.Targets, TargetConfig{Name: tb.Name, Command: tb.Command})
	}
	if len(fc.Targets) > 0 && fc.SSH == nil {
		v.errf(fc.Targets[0].DefRange, "target %q is configured but there is no ssh block to reach it through", fc.Targets[0].Name)
	}
}

// sshTarget validates an upstream SSH target: its address, how its host
// key is verified (at least one way), and the key it is reached with.
func (v *validator) sshTarget(tb targetBlock, dir string) TargetConfig {
	t := TargetConfig{Name: tb.Name, SSH: *tb.SSH}
	if host, port, err := net.SplitHostPort(t.SSH); err != nil || host == "" || port == "" {
		v.attrf(tb.DefRange, "ssh", "target %q: ssh = %q is not HOST:PORT", tb.Name, t.SSH)
	}
	if tb.HostKey == nil && tb.KnownHosts == nil && tb.HostCA == nil {
		v.errf(tb.DefRange, "target %q: nothing verifies the target's host key: set host_key, known_hosts or host_ca (a host key is never trusted on first use)", tb.Name)
	}
	parseKey := func(name string, s *string) ssh.PublicKey {
		if s == nil {
			return nil
		}
		k, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(*s))
		if err != nil || len(bytes.TrimSpace(rest)) > 0 {
			v.attrf(tb.DefRange, name, "target %q: %s is not one public key such as \"ssh-ed25519 AAAA…\"", tb.Name, name)
			return nil
		}
		if _, ok := k.(*ssh.Certificate); ok {
			v.attrf(tb.DefRange, name, "target %q: %s is a certificate, not a key", tb.Name, name)
			return nil
		}
		return k
	}
	t.HostKey = parseKey("host_key", tb.HostKey)
	t.HostCA = parseKey("host_ca", tb.HostCA)
	if tb.KnownHosts != nil {
		t.KnownHosts = abs(dir, *tb.KnownHosts)
		if _, err := readKnownHosts(t.KnownHosts); err != nil {
			v.attrf(tb.DefRange, "known_hosts", "target %q: known_hosts: %v", tb.Name, err)
		}
	}
	if tb.UserKey != nil {
		t.UserKey = abs(dir, *tb.UserKey)
		if _, err := loadUserKey(t.UserKey); err != nil {
			v.attrf(tb.DefRange, "user_key", "target %q: user_key: %v", tb.Name, err)
		}
	}
	t.DialTimeout = v.duration(tb.DefRange, "dial_timeout", tb.DialTimeout, DefaultDialTimeout)
	return t
}

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

// limit reads a session limit: a positive duration, or "off" for none
// (a negative FrontLimits field).
func (v *validator) limit(r hcl.Range, name string, s *string, def time.Duration) time.Duration {
	if s != nil && *s == "off" {
		return -1
	}
	return v.duration(r, name, s, def)
}
