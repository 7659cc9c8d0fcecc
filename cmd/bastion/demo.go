package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
	"golang.org/x/crypto/ssh"
)

func init() {
	register(&command{
		name:    "demo",
		summary: "trade a dev token for a certificate, record a scripted session, verify",
		usage:   demoUsage,
		run:     runDemo,
	})
}

const demoUsage = `Usage:
    bastion demo [--keep]

Shows bastion at work, on this machine alone:

  1. creates the keys if the home directory has none;
  2. starts "bastion serve" in-process: the certificate API with the
     development OpenID provider, and the SSH front door with one local
     command target, "demo" (a shell);
  3. has an agent trade a delegation token for a ten-minute SSH
     certificate through the real HTTPS exchange (and shows a forged token
     refused);
  4. runs the agent's scripted commands through the bastion with the real
     OpenSSH client: an exec session, then an interactive one in a
     pseudo-terminal, every byte committed to the journal before it is
     shown (without an ssh client, it records the script locally instead);
  5. lists the sessions and certificates, verifies the whole journal with
     the public key and prints the latest signed checkpoint.

It runs without a terminal too, and exits 0 when every step worked. With
--keep it leaves the bastion running, prints how to connect, and stops on
Ctrl-C.

Examples:
    $ bastion demo
    $ bastion --home /tmp/try demo --keep`

// demoScript is what the scripted agent types.
var demoScript = strings.Join(append(demoCommands[:len(demoCommands):len(demoCommands)], "exit 0"), "\n") + "\n"

// pacedLines types one line at a time, as an agent waiting for each
// command's output would; the journal records the pauses.
type pacedLines struct {
	lines []string
	pause time.Duration
}

func (p *pacedLines) Read(b []byte) (int, error) {
	for len(p.lines) > 0 && p.lines[0] == "" {
		p.lines = p.lines[1:]
	}
	if len(p.lines) == 0 {
		return 0, io.EOF
	}
	time.Sleep(p.pause)
	n := copy(b, p.lines[0])
	p.lines[0] = p.lines[0][n:]
	return n, nil
}

func runDemo(ctx context.Context, e *env, args []string) (err error) {
	fs := e.flags()
	keep := fs.Bool("keep", false, "leave the bastion running")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("demo takes no arguments")
	}
	home, err := e.makeHome()
	if err != nil {
		return err
	}
	out := e.stdout
	step := func(format string, a ...any) { fmt.Fprintf(out, "\n==> "+format+"\n", a...) }

	step("keys in %s", home)
	if err := demoKeys(out, home); err != nil {
		return err
	}

	path, err := e.dbPath("")
	if err != nil {
		return err
	}
	j, st, closeJournal, err := openJournalAt(ctx, home, path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeJournal()) }()

	step("starting the bastion: the certificate API, the development OpenID provider and the SSH front door")
	d, err := startDemoServer(ctx, out, home, j, st)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.stop()) }()

	step("an agent trades a token from the development OpenID provider for a certificate")
	if err := d.certificate(ctx, out); err != nil {
		return err
	}

	if sshPath, lerr := exec.LookPath("ssh"); lerr == nil {
		step("the agent runs its commands through the bastion: ssh %s@demo@127.0.0.1 (exec)", d.login)
		if err := d.ssh(ctx, out, sshPath, nil, strings.Join(demoCommands, "\n")); err != nil {
			return err
		}
		step("and again in an interactive session: ssh -tt %s@demo@127.0.0.1", d.login)
		paced := &pacedLines{lines: strings.SplitAfter(demoScript, "\n"), pause: 300 * time.Millisecond}
		if err := d.ssh(ctx, out, sshPath, paced, ""); err != nil {
			return err
		}
	} else {
		step("no ssh client is installed: recording the scripted session of %s locally, into %s", d.identity, path)
		if err := demoLocal(ctx, out, home, j, d.identity); err != nil {
			return err
		}
	}

	step("bastion sessions list")
	if err := runSessionsList(ctx, e, nil); err != nil {
		return err
	}
	step("bastion certs list")
	if err := runCertsList(ctx, e, []string{"--all"}); err != nil {
		return err
	}
	pub := filepath.Join(home, certauth.JournalPubKeyFile)
	step("bastion verify --key %s", pub)
	if err := runVerify(ctx, e, []string{"--key", pub}); err != nil {
		return err
	}
	step("bastion checkpoint (keep it: a later verify --checkpoint proves the journal still extends it)")
	if err := runCheckpoint(ctx, e, nil); err != nil {
		return err
	}

	// Name the binary the way the user ran it ("bin/bastion" after make).
	self := "bastion"
	if len(os.Args) > 0 && strings.Contains(os.Args[0], "/") && !filepath.IsAbs(os.Args[0]) {
		self = os.Args[0]
	}
	if *keep {
		step("the bastion keeps running; connect as the agent (its certificate lasts ten minutes):")
		fmt.Fprintf(out, "  ssh %s\n", strings.Join(d.sshArgs(), " "))
		fmt.Fprintf(out, "  %s --home %s sessions list\n", self, home)
		fmt.Fprintf(out, "press Ctrl-C to stop it\n")
		<-ctx.Done()
		return nil
	}
	step("try it yourself")
	for _, cmd := range []string{"demo --keep", "serve --dev", "dev token --sub agent-2", "record -- bash", "sessions list", "certs list", "verify"} {
		fmt.Fprintf(out, "  %s --home %s %s\n", self, home, cmd)
	}
	return nil
}

// demoCommands are what the scripted agent runs; demoScript types them.
var demoCommands = []string{
	`echo "agent: checking the payments service"`,
	`uname -s`,
	`printf 'disk: %s\n' "$(df -h / | tail -1 | tr -s ' ' | cut -d' ' -f4) free"`,
}

// demoLocal records the script in a local pseudo-terminal, for a machine
// without an ssh client.
func demoLocal(ctx context.Context, out io.Writer, home string, j *recorder.Journal, ident string) error {
	s, err := j.StartSession(ctx, recorder.SessionInfo{
		Attrs:   recorder.Attrs{"kind": "record", "command": "sh", "identity": ident},
		Summary: "sh (" + ident + ")",
	})
	if err != nil {
		return err
	}
	res, runErr := bastion.RunLocal(ctx, bastion.LocalConfig{
		Argv:   []string{"sh"},
		Env:    []string{"PS1=$ ", "PATH=" + os.Getenv("PATH"), "HOME=" + home, "TERM=dumb"},
		Stdin:  &pacedLines{lines: strings.SplitAfter(demoScript, "\n"), pause: 300 * time.Millisecond},
		Stdout: out,
	}, sessionRecorder{s})
	if err := endLocal(ctx, s, res, runErr); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nsession %s ended with exit status %d\n", s.ID(), res.ExitCode)
	return nil
}

// demoKeys creates whatever keys the home lacks, as ca init would.
func demoKeys(out io.Writer, home string) error {
	if _, err := certauth.LoadJournalKey(home); errors.Is(err, certauth.ErrNoJournalKey) {
		host, _ := os.Hostname()
		key, err := certauth.CreateJournalKey(home, certauth.DefaultOrigin(host))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "created the journal signing key; its public key is\n  %s\n", key.VerifierKey)
	} else if err != nil {
		return err
	} else {
		fmt.Fprintln(out, "using the existing journal signing key")
	}
	if _, err := certauth.LoadAuthorities(home, time.Now()); errors.Is(err, certauth.ErrNoAuthorities) {
		as, err := certauth.CreateAuthorities(home, certauth.AlgorithmEd25519)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "created the user, host and target certificate authorities; the user CA is\n  %s\n", as.User.AuthorizedKeys()[0])
	} else if err != nil {
		return err
	} else {
		fmt.Fprintln(out, "using the existing certificate authorities")
	}
	return nil
}

// demoServer is "bastion serve --dev" in-process, with the SSH front door
// and one local command target, and the agent's key and certificate.
type demoServer struct {
	srv      *bastion.Server
	dev      *certauth.DevIssuer
	home     string
	login    string
	identity string
	keyPath  string
	known    string // the agent's known_hosts file
	done     chan error
	cancel   context.CancelFunc
}

func startDemoServer(ctx context.Context, out io.Writer, home string, j *recorder.Journal, st storage.Store) (*demoServer, error) {
	auth, err := certauth.LoadAuthorities(home, time.Now())
	if err != nil {
		return nil, err
	}
	dev, err := certauth.OpenDevIssuer(home)
	if err != nil {
		return nil, err
	}
	d := &demoServer{dev: dev, home: home, login: "agent", done: make(chan error, 1)}
	if u, err := user.Current(); err == nil {
		d.login = u.Username
	}
	cfg, err := bastion.ParseConfig("(demo)", []byte(`
api { listen = "127.0.0.1:0" }
ssh {
  listen     = "127.0.0.1:0"
  host_names = ["localhost"]
}
target "demo" { command = ["/bin/sh"] }
`))
	if err != nil {
		return nil, err
	}
	d.srv, err = bastion.NewServer(ctx, bastion.ServerOptions{
		Config: cfg, Home: home, Journal: j, Store: st, Authorities: auth, Dev: dev, DevLogins: []string{d.login},
	})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	go func() { d.done <- d.srv.Run(sctx) }()
	fmt.Fprintf(out, "certificate API at %s (TLS fingerprint %s)\n", d.srv.APIURL(), d.srv.TLS().Fingerprint)
	fmt.Fprintf(out, "development OpenID provider at %s (never in production)\n", d.srv.DevIssuerURL())
	fmt.Fprintf(out, "SSH front door at %s, target \"demo\" runs /bin/sh\n", d.srv.SSHAddr())
	return d, nil
}

// stop shuts the server down and waits for it.
func (d *demoServer) stop() error {
	d.cancel()
	return <-d.done
}

// certificate has the agent get a certificate for a fresh key through the
// real HTTPS client, and shows a forged token refused.
func (d *demoServer) certificate(ctx context.Context, out io.Writer) error {
	// An RFC 8693 delegation token: agent-1 acts on behalf of alice.
	token, err := d.dev.Mint("alice", nil, map[string]any{"act": map[string]any{"sub": "agent-1"}}, 5*time.Minute)
	if err != nil {
		return err
	}
	client, err := certauth.NewClient(d.srv.APIURL(), certauth.ClientOptions{Fingerprint: d.srv.TLS().Fingerprint})
	if err != nil {
		return err
	}
	d.keyPath = filepath.Join(d.home, "demo-agent", "id_ed25519")
	pub, err := demoAgentKey(d.keyPath)
	if err != nil {
		return err
	}
	resp, err := client.Certificate(ctx, token, certauth.CertificateRequest{PublicKey: pub, Ticket: "DEMO-1"})
	if err != nil {
		return err
	}
	if err := certauth.WriteFileAtomic(d.keyPath+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
		return err
	}
	d.known = filepath.Join(d.home, "demo-agent", "known_hosts")
	if err := certauth.WriteFileAtomic(d.known, []byte(strings.Join(resp.KnownHosts, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	d.identity = resp.Identity
	fmt.Fprintf(out, "certificate for %s, granted by %s:\n", resp.Identity, resp.Rule)
	fmt.Fprintf(out, "  key id:      %s\n", resp.KeyID)
	fmt.Fprintf(out, "  principals:  %s\n", strings.Join(resp.Principals, ", "))
	fmt.Fprintf(out, "  valid:       %s to %s\n", resp.ValidAfter.Format(time.TimeOnly), resp.ValidBefore.Format(time.TimeOnly+" MST"))
	fmt.Fprintf(out, "  written to:  %s-cert.pub (ssh-keygen -L -f shows it)\n", d.keyPath)
	fmt.Fprintf(out, "  trusted:     %s holds only the host CA's @cert-authority line\n", d.known)

	// The same token with its subject changed no longer verifies.
	parts := strings.SplitN(token, ".", 3)
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+d.srv.DevIssuerURL()+`","sub":"root","aud":"bastion"}`)) + "." + parts[2]
	if _, err := client.Certificate(ctx, forged, certauth.CertificateRequest{PublicKey: pub}); err == nil {
		return errors.New("a forged token was accepted")
	} else {
		fmt.Fprintf(out, "a forged token is refused and journaled: %v\n", err)
	}
	return nil
}

// sshArgs are the ssh arguments that reach the demo target as the agent.
func (d *demoServer) sshArgs() []string {
	_, port, _ := net.SplitHostPort(d.srv.SSHAddr())
	return []string{
		"-F", "none", "-p", port, "-i", d.keyPath,
		"-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + d.known, "-o", "LogLevel=ERROR",
		d.login + "@demo@127.0.0.1",
	}
}

// ssh runs the real OpenSSH client through the bastion: with stdin nil an
// exec of command, else an interactive session in a pseudo-terminal fed
// from stdin.
func (d *demoServer) ssh(ctx context.Context, out io.Writer, sshPath string, stdin io.Reader, command string) error {
	args := d.sshArgs()
	if stdin == nil {
		args = append([]string{"-o", "BatchMode=yes"}, args...)
		args = append(args, command)
	} else {
		args = append([]string{"-tt", "-o", "BatchMode=yes"}, args...)
	}
	cmd := exec.CommandContext(ctx, sshPath, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ssh through the bastion: %w", err)
	}
	return nil
}

// demoAgentKey makes the demo agent's key pair and returns the public key.
func demoAgentKey(path string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	pk, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "demo agent")
	if err != nil {
		return "", err
	}
	if err := certauth.WriteFileAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", err
	}
	sp, err := ssh.NewPublicKey(pk)
	if err != nil {
		return "", err
	}
	line := string(ssh.MarshalAuthorizedKey(sp))
	if err := certauth.WriteFileAtomic(path+".pub", []byte(line), 0o644); err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}
