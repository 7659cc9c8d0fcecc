package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
)

func init() {
	register(&command{
		name:    "serve",
		summary: "run the HTTPS API that exchanges OIDC tokens for SSH certificates",
		usage:   serveUsage,
		run:     runServe,
	})
}

const serveUsage = `Usage:
    bastion serve --config FILE [--listen ADDR] [--log-format text|json] [--log-level LEVEL]
    bastion serve --dev [--config FILE] [--dev-login LOGIN]... [--ssh-listen ADDR]

Runs the bastion's HTTPS API until interrupted:

    POST /v1/certificates   an OIDC token (Authorization: Bearer) and an SSH
                            public key in, a short-lived certificate out
    GET  /v1/ca             the CA public keys and the known_hosts and
                            sshd_config lines to trust them
    GET  /metrics           Prometheus metrics
    GET  /healthz           200 while the process serves
    GET  /readyz            200 while the journal commits on time, else 503
                            (and each witness's state, when configured)

Every issuance and every refusal is a journal event. Revoked certificates
are kept in an OpenSSH KRL file for targets' RevokedKeys, rewritten on every
revocation ("bastion certs revoke" talks to the running server).

Beside the journal, serve listens on its access socket (the journal's path
and ".sock"), through which play, export, evidence, sessions show, sessions
search and verify have their reads journaled, naming the reader as the
kernel reports it, and the person an OIDC token proves. Only root and
serve's user may use it, and, with access { group = "G" } in the
configuration, the members of G, who may then read the journal's files
too. operator_accounts = { "alice" = "alice@corp" } names the person
behind an OS account for operator actions and reads; the policy's
operators and auditors say who is which. See docs/operations.md.

With witness "NAME" { url = "…" key = "…" } blocks (and witnesses {
threshold = N stale_after = "10m" }), serve pushes the journal's kept
checkpoints to those witnesses (C2SP tlog-witness) and keeps their
cosignatures beside the checkpoints; a witness that refuses (a rollback or
a fork of the journal) or goes stale raises an alarm. See docs/witnesses.md.

The configuration file (HCL) names the home directory, the journal, the
listeners, the identity providers, the targets and the policy (its role
blocks, or policy = "FILE or DIRECTORY"); see docs/policy.md. Both are
read again on SIGHUP and whenever their files change: the policy, the
targets and the session limits apply to new sessions; a file with mistakes,
or a change that takes a restart (listeners, home, journal, keys, identity
providers; see docs/front-door.md), is refused, journaled, and what is in
force stays.
Errors in it are reported as FILE:LINE:COL. Without tls_cert and tls_key
the API serves a self-signed certificate kept in the home directory, and
serve prints its fingerprint for "bastion login --ca-fingerprint".

--dev adds the embedded development OpenID provider (DEVELOPMENT ONLY) on a
loopback port, trusted as provider "dev"; "bastion dev token --sub NAME"
mints its tokens. Without a configuration, or with one that has no roles,
any dev identity may have a certificate for the --dev-login logins (default:
the current user). Without a configuration, serve also opens an SSH front
door on 127.0.0.1:2222 (--ssh-listen ADDR for another; 127.0.0.1:0 picks a
free port) with one target, "shell", running your login shell ($SHELL, else
/bin/sh) as serve's own user, and prints the ssh line to reach it once
"bastion login" has written the certificate.

The @cert-authority line "bastion login" adds to known_hosts trusts the
host CA for the bastion's own names only (its ssh host_names and listen
address, as [NAME]:PORT, and its target names for ssh -J), unless
known_hosts_pattern in the certificates block says otherwise; serve prints
it. See docs/certificates.md.

Flags:
    --config FILE        the configuration file
    --dev                also run the development issuer (never in production)
    --dev-login LOGIN    a login the dev role grants (repeatable)
    --listen ADDR        the API's HOST:PORT, overriding the configuration
    --ssh-listen ADDR    the SSH front door's HOST:PORT, overriding the
                         configuration (default with --dev alone: 127.0.0.1:2222)
    --log-format FORMAT  text (default) or json, on stderr
    --log-level LEVEL    trace, debug, info (default), warn or error

Examples:
    $ bastion serve --config /etc/bastion/bastion.hcl
    $ bastion serve --dev
    $ bastion dev token --sub agent-1 > token
    $ bastion login --server https://127.0.0.1:8443 --ca-fingerprint SHA256:… --token-file token
    $ ssh -i ~/.ssh/bastion_ed25519 -p 2222 $USER@shell@127.0.0.1`

// stringsFlag is a flag that may be given several times.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func runServe(ctx context.Context, e *env, args []string) error {
	flags := e.flags()
	configPath := flags.String("config", "", "configuration `FILE`")
	dev := flags.Bool("dev", false, "run the development issuer")
	var devLogins stringsFlag
	flags.Var(&devLogins, "dev-login", "dev role `LOGIN`")
	listen := flags.String("listen", "", "API `ADDR`")
	sshListen := flags.String("ssh-listen", "", "SSH front door `ADDR`")
	logFormat := flags.String("log-format", "text", "log `FORMAT`")
	logLevel := flags.String("log-level", "info", "log `LEVEL`")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return usageErrorf("serve takes no arguments")
	}
	if *configPath == "" && !*dev {
		return usageErrorf("serve needs --config FILE (or --dev to try bastion on this machine)")
	}
	if *logFormat != "text" && *logFormat != "json" {
		return usageErrorf("--log-format is text or json, not %q", *logFormat)
	}
	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		return usageErrorf("--log-level %q: want trace, debug, info, warn or error", *logLevel)
	}
	if len(devLogins) > 0 && !*dev {
		return usageErrorf("--dev-login needs --dev")
	}
	if *sshListen != "" {
		if _, _, err := net.SplitHostPort(*sshListen); err != nil {
			return usageErrorf("--ssh-listen %q is not HOST:PORT, such as 127.0.0.1:2222", *sshListen)
		}
	}

	cfg := &bastion.Config{}
	if *configPath != "" {
		var err error
		cfg, err = bastion.LoadConfig(*configPath)
		if err != nil {
			var ce *bastion.ConfigError
			if errors.As(err, &ce) {
				return withHint(fmt.Errorf("configuration is not valid:\n%w", err), "fix the lines named above; nothing was started")
			}
			return fmt.Errorf("configuration: %w", err)
		}
		if *sshListen != "" && cfg.SSH == nil {
			return usageErrorf("--ssh-listen: %s has no ssh block, so there is no front door to listen for", *configPath)
		}
	} else {
		var err error
		if cfg, err = bastion.DevConfig(*sshListen, loginShell(e)); err != nil {
			return fmt.Errorf("the built-in development configuration: %w", err)
		}
	}
	overrides := func(c *bastion.Config) {
		if *listen != "" {
			c.API.Listen = *listen
		}
		if *sshListen != "" && c.SSH != nil {
			c.SSH.Listen = *sshListen
		}
	}
	overrides(cfg)
	home := cfg.Home
	if home == "" {
		h, err := e.home()
		if err != nil {
			return err
		}
		home = h
	}
	// A journal in PostgreSQL is a URL; its log is named by the journal
	// key's origin (see openStore).
	journalPath := cfg.Journal
	if !isDatabase(journalPath) && !filepath.IsAbs(journalPath) {
		journalPath = filepath.Join(home, journalPath)
	}

	log := hclog.New(&hclog.LoggerOptions{Name: "bastion", Output: e.stderr, Level: level, JSONFormat: *logFormat == "json"})
	auth, err := certauth.LoadAuthorities(home, time.Now())
	if errors.Is(err, certauth.ErrNoAuthorities) {
		return withHint(err, `run "bastion ca init" to create them`)
	}
	if err != nil {
		return err
	}
	// The journal's writer logs through serve's logger ("journal write
	// failed", sessions a previous writer left open), and reports each
	// commit's latency to the server's metrics and alarms.
	commits := bastion.NewCommitObserver()
	// With an access group, its members read the journal's files.
	var readers *int
	if cfg.Access.Group != "" {
		readers = &cfg.Access.GID
	}
	// A member of a cluster (a cluster file beside a PostgreSQL journal)
	// finds itself in it by its journal key, or does not start.
	clusterOf, err := loadCluster(cfg, home)
	if err != nil {
		return err
	}
	base := clusterOf.IndexBase()
	j, st, closeJournal, err := openJournalWith(ctx, home, journalPath, recorder.Options{Logger: log.Named("journal"), OnCommit: commits.OnCommit, OnPublish: commits.OnPublish, IndexBase: base}, storage.Options{ReaderGroup: readers})
	if err != nil {
		return err
	}
	// Until the server owns the journal (it may open it again after a
	// fault), this closes it.
	defer func() {
		if cerr := closeJournal(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close journal: %w", cerr))
		}
	}()
	var devIssuer *oidc.DevIssuer
	if *dev {
		devIssuer, err = oidc.OpenDevIssuer(home)
		if err != nil {
			return err
		}
		if len(devLogins) == 0 {
			u, err := user.Current()
			if err != nil {
				return fmt.Errorf("find the current user for the dev role: %w", err)
			}
			devLogins = append(devLogins, u.Username)
		}
	}
	srv, err := bastion.NewServer(ctx, bastion.ServerOptions{
		Config: cfg, Home: home, Journal: j, Store: st, Authorities: auth,
		Dev: devIssuer, DevLogins: devLogins, Commits: commits, Logger: log, CloseJournal: closeJournal,
		ConfigOverrides: overrides, Cluster: clusterOf,
		ReopenJournal: func(ctx context.Context) (*recorder.Journal, func() error, error) {
			// The journal that failed, never a new one (see
			// storage.Options MustExist): its filesystem may not be
			// mounted back yet.
			j, _, closeJ, err := openJournalWith(ctx, home, journalPath, recorder.Options{Logger: log.Named("journal"), OnCommit: commits.OnCommit, OnPublish: commits.OnPublish, IndexBase: base}, storage.Options{ReaderGroup: readers, MustExist: true})
			return j, closeJ, err
		},
	})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			flag := "--listen"
			if strings.HasPrefix(err.Error(), "SSH listener") {
				flag = "--ssh-listen"
			}
			return withHint(err, "another program listens there: stop it, or give "+flag+" 127.0.0.1:PORT (127.0.0.1:0 picks a free port)")
		}
		return err
	}
	closeJournal = srv.CloseJournal
	api := srv.APIURL()
	fmt.Fprintf(e.stdout, "bastion serve: HTTPS API at %s\n", api)
	if a := srv.SSHAddr(); a != "" {
		fmt.Fprintf(e.stdout, "bastion serve: SSH front door at %s\n", a)
	}
	fmt.Fprintf(e.stdout, "  journal:   %s\n", journalName(journalPath))
	if c := clusterOf; c != nil {
		fmt.Fprintf(e.stdout, "  cluster:   member %d of %d (%s), log %s\n", c.Self.ID, len(c.Members.All()), c.Path, c.Self.Name())
	}
	if sock := srv.AccessSocket(); sock != "" {
		who := "serve's user and root"
		if g := cfg.Access.Group; g != "" {
			who += ", and group " + g
		}
		fmt.Fprintf(e.stdout, "  reads:     %s (records the reads of %s)\n", sock, who)
	}
	fmt.Fprintf(e.stdout, "  KRL:       %s (for targets' RevokedKeys)\n", srv.KRLPath())
	if u := srv.ConsoleURL(); u != "" {
		fmt.Fprintf(e.stdout, "  console:   %s (sign in with %s; for the policy's operators, auditors and approvers)\n", u, srv.ConsoleProvider())
	}
	if w := cfg.Witnesses; len(w.List) > 0 {
		names := make([]string, 0, len(w.List))
		for _, x := range w.List {
			names = append(names, x.Name+" ("+x.URL+")")
		}
		fmt.Fprintf(e.stdout, "  witnesses: %s; threshold %d, stale after %s\n", strings.Join(names, ", "), w.Threshold, w.StaleAfter)
	}
	tls := srv.TLS()
	if tls.SelfSigned {
		fmt.Fprintf(e.stdout, "  TLS:       self-signed, fingerprint %s\n", tls.Fingerprint)
		fmt.Fprintf(e.stdout, "  log in:    bastion login --server %s --ca-fingerprint %s --token-file FILE\n", api, tls.Fingerprint)
	} else {
		fmt.Fprintf(e.stdout, "  TLS:       fingerprint %s\n", tls.Fingerprint)
		fmt.Fprintf(e.stdout, "  log in:    bastion login --server %s --token-file FILE\n", api)
	}
	if u := srv.DevIssuerURL(); u != "" {
		fmt.Fprintf(e.stdout, "  DEVELOPMENT ISSUER (never in production): %s\n", u)
		fmt.Fprintf(e.stdout, "  a token:   bastion dev token --sub agent-1 > FILE\n")
	}
	if *configPath != "" {
		fmt.Fprintf(e.stdout, "  policy:    %s (kill -HUP %d, or edit it, to reload)\n", srv.Policy().Hash(), os.Getpid())
	} else {
		fmt.Fprintf(e.stdout, "  policy:    the development role only, built in (give --config FILE for a policy of your own)\n")
		fmt.Fprintf(e.stdout, "  target:    %s, runs %s here as %s (the dev role's logins: %s)\n", bastion.DevTargetName, cfg.Targets[0].Command[0], currentUser(), strings.Join(devLogins, ", "))
	}
	if a := srv.SSHAddr(); a != "" {
		if p := srv.KnownHostsPattern(); p != "" {
			fmt.Fprintf(e.stdout, "  host CA:   trusted for %s (the @cert-authority line login adds to known_hosts)\n", p)
		}
		target, login := "TARGET", "LOGIN"
		if *configPath == "" {
			target, login = bastion.DevTargetName, devLogins[0]
		}
		fmt.Fprintf(e.stdout, "  ssh:       %s\n", sshLine(a, cfg, login, target))
	}
	// SIGHUP reads the configuration and the policy again; a file with
	// mistakes, or changes that take a restart, are refused, journaled,
	// and what is in force stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := srv.Reload(ctx, bastion.ReloadSignal); err != nil {
					fmt.Fprintf(e.stderr, "bastion serve: reload refused, the configuration and policy in force stay:\n%s\n", termtext.Lines(err.Error()))
				}
			}
		}
	}()
	err = srv.Run(ctx)
	if ctx.Err() != nil && err == nil {
		fmt.Fprintln(e.stdout, "bastion serve: stopped")
	}
	return err
}

// loginShell is the shell the development target runs: $SHELL when it is
// an executable file named by an absolute path, else /bin/sh.
func loginShell(e *env) string {
	sh := e.getenv("SHELL")
	if filepath.IsAbs(sh) {
		if st, err := os.Stat(sh); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return sh
		}
	}
	return "/bin/sh"
}

// currentUser is the name of the user serve runs as, or "this user".
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "this user"
}

// sshLine is the ssh command that reaches target as login through the
// front door listening on addr, with the key and certificate "bastion
// login" writes by default. A front door on every address is named by
// its first host name.
func sshLine(addr string, cfg *bastion.Config, login, target string) string {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "HOST"
		if cfg.SSH != nil && len(cfg.SSH.HostNames) > 0 {
			host = cfg.SSH.HostNames[0]
		}
	}
	line := "ssh -i ~/.ssh/bastion_ed25519"
	if port != "22" {
		line += " -p " + port
	}
	return line + " " + login + "@" + target + "@" + host
}

// loadCluster is bastion.LoadCluster with the home's journal key, and
// hints.
func loadCluster(cfg *bastion.Config, home string) (*bastion.Cluster, error) {
	key, err := certauth.LoadJournalKey(home)
	if err != nil {
		// openJournalWith says what is wrong with it.
		return nil, nil
	}
	own, err := recorder.ParseVerifierKey(key.VerifierKey)
	if err != nil {
		return nil, err
	}
	c, err := bastion.LoadCluster(cfg, home, own)
	if err != nil {
		return nil, withHint(fmt.Errorf("cluster: %w", err),
			"every member's line in the cluster file is \"ID VERIFIER-KEY\", its key the member's journal.pub; this home's is "+key.VerifierKey)
	}
	return c, nil
}
