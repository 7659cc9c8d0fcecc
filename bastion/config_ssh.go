package bastion

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/front"
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
	MaxUnauthenticated *int      `hcl:"max_unauthenticated,optional"`
	DefRange           hcl.Range `hcl:",def_range"`
}

type targetBlock struct {
	Name        string   `hcl:"name,label"`
	Command     []string `hcl:"command,optional"`
	SSH         *string  `hcl:"ssh,optional"`
	HostKey     *string  `hcl:"host_key,optional"`
	KnownHosts  *string  `hcl:"known_hosts,optional"`
	HostCA      *string  `hcl:"host_ca,optional"`
	UserKey     *string  `hcl:"user_key,optional"`
	DialTimeout *string  `hcl:"dial_timeout,optional"`
	// Command targets only.
	Exec     *string           `hcl:"exec,optional"`
	User     *string           `hcl:"user,optional"`
	Dir      *string           `hcl:"dir,optional"`
	Env      map[string]string `hcl:"env,optional"`
	EnvFile  *string           `hcl:"env_file,optional"`
	DefRange hcl.Range         `hcl:",def_range"`
}

// targetName is what may follow the last '@' of an SSH user name.
var targetName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// hostName is a DNS name or an IP address for the host certificate.
var hostName = regexp.MustCompile(`^[A-Za-z0-9.:_-]{1,253}$`)

// front validates the ssh block and the targets; relative paths are
// relative to dir, the config file's directory.
func (v *validator) front(fc *fileConfig, cfg *Config, dir string) {
	if b := fc.SSH; b != nil {
		c := &front.Config{Listen: front.DefaultSSHListen, MaxAuthTries: front.DefaultMaxAuthTries, MaxConnsPerAddress: front.DefaultMaxConnsPerAddress, MaxUnauthenticated: front.DefaultMaxUnauthenticated}
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
		if b.MaxUnauthenticated != nil {
			if *b.MaxUnauthenticated < 1 || *b.MaxUnauthenticated > 100000 {
				v.attrf(b.DefRange, "max_unauthenticated", "max_unauthenticated = %d is not between 1 and 100000", *b.MaxUnauthenticated)
			}
			c.MaxUnauthenticated = *b.MaxUnauthenticated
		}
		if b.FIPS != nil {
			c.FIPS = *b.FIPS
		}
		c.PreAuthTimeout = v.duration(b.DefRange, "pre_auth_timeout", b.PreAuthTimeout, front.DefaultPreAuthTimeout)
		c.Limits.IdleTimeout = v.limit(b.DefRange, "idle_timeout", b.IdleTimeout, front.DefaultIdleTimeout)
		c.Limits.MaxDuration = v.limit(b.DefRange, "max_duration", b.MaxDuration, front.DefaultMaxDuration)
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
			for _, a := range []struct {
				name string
				set  bool
			}{{"exec", tb.Exec != nil}, {"user", tb.User != nil}, {"dir", tb.Dir != nil}, {"env", tb.Env != nil}, {"env_file", tb.EnvFile != nil}} {
				if a.set {
					v.attrf(tb.DefRange, a.name, "target %q: %s is for command targets, not ssh", tb.Name, a.name)
				}
			}
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
		cfg.Targets = append(cfg.Targets, v.commandTarget(tb, dir))
	}
	if len(fc.Targets) > 0 && fc.SSH == nil {
		v.errf(fc.Targets[0].DefRange, "target %q is configured but there is no ssh block to reach it through", fc.Targets[0].Name)
	}
}

// envName is a name a target's env and env_file may set.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// commandTarget validates a local command target: what an exec request
// runs, the user it runs as (looked up now), its directory and the
// environment it gets (env_file read now).
func (v *validator) commandTarget(tb targetBlock, dir string) front.Target {
	t := front.Target{Name: tb.Name, Command: tb.Command, Exec: front.ExecShell}
	if tb.Exec != nil {
		switch *tb.Exec {
		case front.ExecShell, front.ExecArgs, front.ExecRefuse:
			t.Exec = *tb.Exec
		default:
			v.attrf(tb.DefRange, "exec", "target %q: exec = %q is not \"shell\", \"args\" or \"refuse\"", tb.Name, *tb.Exec)
		}
	}
	if tb.User != nil {
		v.targetUser(tb, &t)
	}
	if tb.Dir != nil {
		t.Dir = abs(dir, *tb.Dir)
		if st, err := os.Stat(t.Dir); err != nil {
			v.attrf(tb.DefRange, "dir", "target %q: dir: %v", tb.Name, err)
		} else if !st.IsDir() {
			v.attrf(tb.DefRange, "dir", "target %q: dir = %q is not a directory", tb.Name, t.Dir)
		}
	}
	env := map[string]string{}
	var order []string
	set := func(k, val string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = val
	}
	if tb.EnvFile != nil {
		path := abs(dir, *tb.EnvFile)
		kvs, err := readEnvFile(path)
		if err != nil {
			v.attrf(tb.DefRange, "env_file", "target %q: env_file: %v", tb.Name, err)
		}
		for _, kv := range kvs {
			set(kv[0], kv[1])
		}
	}
	keys := make([]string, 0, len(tb.Env))
	for k := range tb.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		val := tb.Env[k]
		switch {
		case !envName.MatchString(k):
			// The value is not quoted: it may be a secret.
			v.attrf(tb.DefRange, "env", "target %q: env: %q is not a variable name (letters, digits and '_', not first a digit)", tb.Name, k)
		case strings.ContainsRune(val, 0):
			v.attrf(tb.DefRange, "env", "target %q: env: the value of %s holds a NUL byte", tb.Name, k)
		default:
			set(k, val)
		}
	}
	for _, k := range order {
		t.Env = append(t.Env, k+"="+env[k])
	}
	return t
}

// targetUser looks up the user a command target runs as. Root is
// refused: a command target runs unprivileged, or (user unset) as the
// bastion's own user. Switching to another user needs the bastion to run
// as root.
func (v *validator) targetUser(tb targetBlock, t *front.Target) {
	name := *tb.User
	u, err := user.Lookup(name)
	if err != nil && name != "" && strings.Trim(name, "0123456789") == "" {
		u, err = user.LookupId(name)
	}
	if err != nil {
		v.attrf(tb.DefRange, "user", "target %q: user %q: no such user", tb.Name, name)
		return
	}
	id := func(s string) (uint32, bool) {
		n, err := strconv.ParseUint(s, 10, 32)
		return uint32(n), err == nil
	}
	uid, ok1 := id(u.Uid)
	gid, ok2 := id(u.Gid)
	if !ok1 || !ok2 {
		v.attrf(tb.DefRange, "user", "target %q: user %q has no numeric uid and gid", tb.Name, name)
		return
	}
	if uid == 0 {
		v.attrf(tb.DefRange, "user", "target %q: user %q is root (uid 0): a command target runs as an unprivileged user; leave user unset to run it as the bastion's own user", tb.Name, name)
		return
	}
	var groups []uint32
	gids, err := u.GroupIds()
	if err != nil {
		v.attrf(tb.DefRange, "user", "target %q: user %q: its groups: %v", tb.Name, name, err)
		return
	}
	for _, g := range gids {
		if n, ok := id(g); ok && !slices.Contains(groups, n) {
			groups = append(groups, n)
		}
	}
	t.User, t.UID, t.Home = u.Username, uid, u.HomeDir
	switch euid := os.Geteuid(); {
	case euid == 0:
		t.Credential = &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}
	case uint32(euid) != uid:
		v.attrf(tb.DefRange, "user", "target %q: user = %q: the bastion runs as uid %d, not root, so it cannot run commands as another user", tb.Name, name, euid)
	}
}

// readEnvFile reads KEY=VALUE lines from a file only its owner may read
// (mode 0600 or stricter). Blank lines and lines starting with '#' are
// skipped; a value is everything after the first '=', taken as it is (no
// quotes, no escapes). Errors name the line, never a value.
func readEnvFile(path string) ([][2]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable or writable by others (mode %v): it holds secrets, chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kvs [][2]string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		if !ok || !envName.MatchString(k) {
			return nil, fmt.Errorf("%s:%d: not a KEY=VALUE line (a name of letters, digits and '_', then '=')", filepath.Base(path), i+1)
		}
		if strings.ContainsRune(val, 0) {
			return nil, fmt.Errorf("%s:%d: the value of %s holds a NUL byte", filepath.Base(path), i+1, k)
		}
		kvs = append(kvs, [2]string{k, val})
	}
	return kvs, nil
}

// sshTarget validates an upstream SSH target: its address, how its host
// key is verified (at least one way), and the key it is reached with.
func (v *validator) sshTarget(tb targetBlock, dir string) front.Target {
	t := front.Target{Name: tb.Name, SSH: *tb.SSH}
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
		if err := front.CheckKnownHosts(t.KnownHosts); err != nil {
			v.attrf(tb.DefRange, "known_hosts", "target %q: known_hosts: %v", tb.Name, err)
		}
	}
	if tb.UserKey != nil {
		t.UserKey = abs(dir, *tb.UserKey)
		if err := front.CheckUserKey(t.UserKey); err != nil {
			v.attrf(tb.DefRange, "user_key", "target %q: user_key: %v", tb.Name, err)
		}
	}
	t.DialTimeout = v.duration(tb.DefRange, "dial_timeout", tb.DialTimeout, front.DefaultDialTimeout)
	return t
}

// limit reads a session limit: a positive duration, or "off" for none
// (a negative front.Limits field).
func (v *validator) limit(r hcl.Range, name string, s *string, def time.Duration) time.Duration {
	if s != nil && *s == "off" {
		return -1
	}
	return v.duration(r, name, s, def)
}
