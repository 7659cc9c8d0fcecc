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

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion"
	"github.com/bastionhq/bastion/bastion/local"
	"github.com/bastionhq/bastion/bastion/localsshd"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/sessions"
	"github.com/bastionhq/bastion/storage"
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

Shows bastion at work, on this machine alone, in its own home: --home DIR
or $BASTION_HOME when given, else a fresh temporary directory (never
~/.bastion), kept afterwards for a look:

  1. creates the keys if the home directory has none;
  2. where sshd is installed, starts a private sshd on loopback that
     trusts only the bastion's target CA: an SSH target, "demo-ssh";
  3. starts "bastion serve" in-process: the certificate API with the
     development OpenID provider, the SSH front door with a local
     command target, "demo" (a shell), and "demo-ssh", and the web
     console (its address printed; the development identity "admin" is
     the demo's operator and auditor);
  4. has an agent trade a delegation token for a ten-minute SSH
     certificate through the real HTTPS exchange (and shows a forged token
     refused);
  5. runs the agent's scripted commands through the bastion with the real
     OpenSSH client: an exec session, an interactive one in a
     pseudo-terminal, and an exec on the SSH target, every byte committed
     to the journal before it is shown (without an ssh client, it records
     the script locally instead);
  6. replays the interactive session with "bastion play";
  7. lists the sessions and certificates, verifies the whole journal with
     the public key, prints the latest signed checkpoint and a summary.

It runs without a terminal too, and exits 0 when every step worked. With
--keep it leaves the bastion running, prints how to connect with ssh and
with a browser (the web console), and stops on Ctrl-C.

Examples:
    $ bastion demo
    $ bastion --home /tmp/try demo --keep`

// demoStaff is the development identity the demo's policy names as its
// operator and auditor: who may sign in to the web console.
const demoStaff = "admin"

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
	home, fresh, err := demoHome(e)
	if err != nil {
		return err
	}
	out := e.stdout
	step := func(format string, a ...any) { fmt.Fprintf(out, "\n==> "+format+"\n", a...) }

	if fresh {
		step("keys in %s (a fresh home, kept afterwards; --home DIR or $BASTION_HOME names another)", home)
	} else {
		step("keys in %s", home)
	}
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

	// Where sshd is installed, a private one on loopback is an SSH target
	// that trusts the bastion's target CA, and nothing else.
	var sshd *localsshd.SSHD
	if _, serr := os.Stat(localsshd.Binary); serr == nil {
		step("starting a private sshd on loopback as an SSH target; it trusts only the bastion's target CA")
		if sshd, err = startDemoSSHD(out, home); err != nil {
			return err
		}
		defer sshd.Stop()
	}

	step("starting the bastion: the certificate API, the development OpenID provider and the SSH front door")
	d, err := startDemoServer(ctx, out, home, j, st, sshd)
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
		interactive, err := lastSession(ctx, j)
		if err != nil {
			return err
		}
		if sshd != nil {
			step("the agent reaches the SSH target through the bastion: ssh %s@demo-ssh@127.0.0.1", d.login)
			fmt.Fprintln(out, "(the bastion logs in with a one-minute certificate from its target CA; the agent never holds a target credential)")
			if err := d.sshTo(ctx, out, sshPath, "demo-ssh", strings.Join(demoSSHCommands, "\n")); err != nil {
				return err
			}
		}
		step("bastion play --speed 2 --max-idle 0.3s %s (the interactive session, replayed as it happened)", interactive)
		// The demo writes the journal itself: the play is recorded
		// through it.
		e.journal = j
		if err := runPlay(ctx, e, []string{"--speed", "2", "--max-idle", "0.3s", interactive}); err != nil {
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
	if err := demoSummary(ctx, out, j, d, sshd != nil); err != nil {
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
		if u := d.srv.ConsoleURL(); u != "" {
			fmt.Fprintf(out, "  the web console: open %s in a browser (it has a self-signed certificate, fingerprint %s), pick %q on the development provider's page\n", u, d.srv.TLS().Fingerprint, demoStaff)
		}
		fmt.Fprintf(out, "press Ctrl-C to stop it\n")
		<-ctx.Done()
		return nil
	}
	step("try it yourself")
	cmds := []string{"demo --keep", "serve --dev", "dev token --sub agent-2", "record -- bash", "sessions list", "certs list", "verify"}
	if last, err := lastSession(ctx, j); err == nil {
		cmds = append(cmds, "sessions show "+last, "export --format asciicast "+last)
	}
	// The period ends now: a report of a period still running would say
	// it cannot be complete.
	now := time.Now().UTC().Add(time.Second).Truncate(time.Second)
	cmds = append(cmds, fmt.Sprintf("evidence --from %s --to %s --out %s",
		now.Truncate(24*time.Hour).Format(time.RFC3339), now.Format(time.RFC3339), filepath.Join(home, "evidence")))
	for _, cmd := range cmds {
		fmt.Fprintf(out, "  %s --home %s %s\n", self, home, cmd)
	}
	return nil
}

// demoSSHCommands are what the agent runs on the SSH target.
var demoSSHCommands = []string{
	`echo "agent: on the SSH target, as $(id -un)"`,
	`echo "sshd logged us in with: $SSH_CONNECTION" | cut -c1-60`,
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
		Attrs: recorder.Attrs{"kind": "record", "command": "sh", "identity": ident},
	})
	if err != nil {
		return err
	}
	res, runErr := local.RunPTY(ctx, local.PTYConfig{
		Argv:   []string{"sh"},
		Env:    []string{"PS1=$ ", "PATH=" + os.Getenv("PATH"), "HOME=" + home, "TERM=dumb"},
		Stdin:  &pacedLines{lines: strings.SplitAfter(demoScript, "\n"), pause: 300 * time.Millisecond},
		Stdout: out,
	}, s)
	if err := endLocal(ctx, s, res, runErr); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nsession %s ended with exit status %d\n", s.ID(), res.ExitCode)
	return nil
}

// demoHome is the demo's home: --home or $BASTION_HOME when given, else a
// fresh temporary directory (fresh is then true), never ~/.bastion, which
// the demo would otherwise fill with keys and a journal that a later "ca
// init" or "serve" would trip over. The commands the demo runs in-process
// use it too.
func demoHome(e *env) (home string, fresh bool, err error) {
	if e.homeFlag != "" || e.getenv("BASTION_HOME") != "" {
		home, err = e.makeHome()
		return home, false, err
	}
	tmp := e.getenv("TMPDIR")
	if tmp == "" {
		tmp = os.TempDir()
	}
	home, err = os.MkdirTemp(tmp, "bastion-demo-")
	if err != nil {
		return "", false, fmt.Errorf("create a home for the demo: %w", err)
	}
	e.homeFlag = home
	return home, true, nil
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
	dev      *oidc.DevIssuer
	home     string
	login    string
	identity string
	keyPath  string
	known    string // the agent's known_hosts file
	done     chan error
	cancel   context.CancelFunc
}

// startDemoSSHD starts a private sshd in the home that trusts the target
// CA for user certificates.
func startDemoSSHD(out io.Writer, home string) (*localsshd.SSHD, error) {
	auth, err := certauth.LoadAuthorities(home, time.Now())
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(home, "demo-sshd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca := filepath.Join(dir, "target_ca.pub")
	if err := storage.WriteFileAtomic(ca, []byte(strings.Join(auth.Target.AuthorizedKeys(), "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	s, err := localsshd.Start(dir, "TrustedUserCAKeys "+ca)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "sshd at %s, TrustedUserCAKeys %s\n", s.Addr, ca)
	return s, nil
}

func startDemoServer(ctx context.Context, out io.Writer, home string, j *recorder.Journal, st storage.Store, sshd *localsshd.SSHD) (*demoServer, error) {
	auth, err := certauth.LoadAuthorities(home, time.Now())
	if err != nil {
		return nil, err
	}
	dev, err := oidc.OpenDevIssuer(home)
	if err != nil {
		return nil, err
	}
	d := &demoServer{dev: dev, home: home, login: "agent", done: make(chan error, 1)}
	if u, err := user.Current(); err == nil {
		d.login = u.Username
	}
	config := `
api { listen = "127.0.0.1:0" }
ssh {
  listen     = "127.0.0.1:0"
  host_names = ["localhost"]
}
target "demo" { command = ["/bin/sh"] }

# The web console is for the operators and auditors the policy names:
# in the demo, the development provider's "admin".
identity "demo-staff" {
  providers = ["dev"]
  subjects  = ["` + demoStaff + `"]
}
operators = ["demo-staff"]
auditors  = ["demo-staff"]
`
	if sshd != nil {
		hostKey, err := sshd.HostPublicKey()
		if err != nil {
			return nil, err
		}
		config += fmt.Sprintf("target \"demo-ssh\" {\n  ssh      = %q\n  host_key = %q\n}\n", sshd.Addr, hostKey)
	}
	cfg, err := bastion.ParseConfig("(demo)", []byte(config))
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
	if u := d.srv.ConsoleURL(); u != "" {
		fmt.Fprintf(out, "web console at %s (sign in with the development provider as %q, the demo's operator and auditor)\n", u, demoStaff)
	}
	if sshd != nil {
		fmt.Fprintf(out, "target \"demo-ssh\" is the sshd at %s, its host key pinned\n", sshd.Addr)
	}
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
	client, err := apiclient.NewClient(d.srv.APIURL(), apiclient.ClientOptions{Fingerprint: d.srv.TLS().Fingerprint})
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
	if err := storage.WriteFileAtomic(d.keyPath+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
		return err
	}
	d.known = filepath.Join(d.home, "demo-agent", "known_hosts")
	if err := storage.WriteFileAtomic(d.known, []byte(strings.Join(resp.KnownHosts, "\n")+"\n"), 0o644); err != nil {
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
func (d *demoServer) sshArgs() []string { return d.sshArgsTo("demo") }

// sshArgsTo are the ssh arguments that reach target as the agent.
func (d *demoServer) sshArgsTo(target string) []string {
	_, port, _ := net.SplitHostPort(d.srv.SSHAddr())
	return []string{
		"-F", "none", "-p", port, "-i", d.keyPath,
		"-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + d.known, "-o", "LogLevel=ERROR",
		d.login + "@" + target + "@127.0.0.1",
	}
}

// ssh runs the real OpenSSH client through the bastion: with stdin nil an
// exec of command, else an interactive session in a pseudo-terminal fed
// from stdin.
func (d *demoServer) ssh(ctx context.Context, out io.Writer, sshPath string, stdin io.Reader, command string) error {
	return d.run(ctx, out, sshPath, d.sshArgs(), stdin, command)
}

// sshTo runs command on target through the bastion.
func (d *demoServer) sshTo(ctx context.Context, out io.Writer, sshPath, target, command string) error {
	return d.run(ctx, out, sshPath, d.sshArgsTo(target), nil, command)
}

func (d *demoServer) run(ctx context.Context, out io.Writer, sshPath string, args []string, stdin io.Reader, command string) error {
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
	if err := storage.WriteFileAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", err
	}
	sp, err := ssh.NewPublicKey(pk)
	if err != nil {
		return "", err
	}
	line := string(ssh.MarshalAuthorizedKey(sp))
	if err := storage.WriteFileAtomic(path+".pub", []byte(line), 0o644); err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// lastSession is the ID of the journal's latest session.
func lastSession(ctx context.Context, j *recorder.Journal) (string, error) {
	log, err := j.ReadLog(ctx, nil)
	if err != nil {
		return "", err
	}
	if len(log.Sessions) == 0 {
		return "", errors.New("no session was recorded")
	}
	return uuid.UUID(log.Sessions[len(log.Sessions)-1].ID).String(), nil
}

// demoSummary says what the demo showed, from the journal's signed records.
func demoSummary(ctx context.Context, out io.Writer, j *recorder.Journal, d *demoServer, withSSHD bool) error {
	log, err := j.ReadLog(ctx, nil)
	if err != nil {
		return err
	}
	var in, outBytes int64
	var frames uint64
	for _, s := range log.Sessions {
		frames += s.Frames
		if s.End != nil {
			if n := sessions.CountAttr(s.End.Attrs, recorder.AttrInBytes); n != nil {
				in += *n
			}
			if n := sessions.CountAttr(s.End.Attrs, recorder.AttrOutBytes); n != nil {
				outBytes += *n
			}
		}
	}
	fmt.Fprintf(out, "\n==> summary\n")
	fmt.Fprintf(out, "  identity:   %s, acting for alice, with a ten-minute certificate\n", d.identity)
	targets := `"demo" (a local shell)`
	if withSSHD {
		targets += ` and "demo-ssh" (a real sshd)`
	}
	fmt.Fprintf(out, "  targets:    %s, reached with stock ssh through the front door\n", targets)
	fmt.Fprintf(out, "  recorded:   %d sessions, %d frames, %d bytes in and %d bytes out, each committed before it was forwarded\n", len(log.Sessions), frames, in, outBytes)
	fmt.Fprintf(out, "  journal:    %d leaves, every one under a signed checkpoint; verified intact with the public key alone\n", log.Size())
	return nil
}
