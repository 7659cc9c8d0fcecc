package bastion

import (
	"net"
	"regexp"
	"time"

	"github.com/hashicorp/hcl/v2"
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
}

// TargetConfig is something an SSH user reaches by name: for now, a
// command the bastion runs itself.
type TargetConfig struct {
	Name string
	// Command is the command run for a shell; an exec request runs it
	// with "-c" and the client's command line appended.
	Command []string
}

// Defaults of the ssh block.
const (
	DefaultSSHListen      = "127.0.0.1:2222"
	DefaultMaxAuthTries   = 6
	DefaultPreAuthTimeout = 30 * time.Second
)

type sshBlock struct {
	Listen         *string   `hcl:"listen,optional"`
	HostNames      []string  `hcl:"host_names,optional"`
	MaxAuthTries   *int      `hcl:"max_auth_tries,optional"`
	PreAuthTimeout *string   `hcl:"pre_auth_timeout,optional"`
	DefRange       hcl.Range `hcl:",def_range"`
}

type targetBlock struct {
	Name     string    `hcl:"name,label"`
	Command  []string  `hcl:"command"`
	DefRange hcl.Range `hcl:",def_range"`
}

// targetName is what may follow the last '@' of an SSH user name.
var targetName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// hostName is a DNS name or an IP address for the host certificate.
var hostName = regexp.MustCompile(`^[A-Za-z0-9.:_-]{1,253}$`)

// front validates the ssh block and the targets.
func (v *validator) front(fc *fileConfig, cfg *Config) {
	if b := fc.SSH; b != nil {
		c := &SSHConfig{Listen: DefaultSSHListen, MaxAuthTries: DefaultMaxAuthTries}
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
		c.PreAuthTimeout = v.duration(b.DefRange, "pre_auth_timeout", b.PreAuthTimeout, DefaultPreAuthTimeout)
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
		if len(tb.Command) == 0 || tb.Command[0] == "" {
			v.attrf(tb.DefRange, "command", "target %q: command is empty: give the program and its arguments, such as [\"/bin/sh\"]", tb.Name)
		}
		cfg.Targets = append(cfg.Targets, TargetConfig{Name: tb.Name, Command: tb.Command})
	}
	if len(fc.Targets) > 0 && fc.SSH == nil {
		v.errf(fc.Targets[0].DefRange, "target %q is configured but there is no ssh block to reach it through", fc.Targets[0].Name)
	}
}
