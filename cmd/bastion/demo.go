package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
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
    bastion demo

Shows bastion at work, on this machine alone: creates the keys if the home
directory has none; starts the certificate API with the development OpenID
provider and has an agent trade a token for a ten-minute SSH certificate
(and shows a forged token refused); records a scripted agent session (a
shell running a few commands in a pseudo-terminal, every byte committed
before it is shown); lists the sessions and certificates, verifies the
whole journal with the public key and prints the latest signed checkpoint.
Runs without a terminal too.

The SSH front door (agents connecting with plain ssh) is not part of this
build yet; the demo will drive it when it is.

Examples:
    $ bastion demo
    $ bastion --home /tmp/try demo`

// demoScript is what the scripted agent types.
var demoScript = strings.Join([]string{
	`echo "agent: checking the payments service"`,
	`uname -s`,
	`printf 'disk: %s\n' "$(df -h / | tail -1 | tr -s ' ' | cut -d' ' -f4) free"`,
	`exit 0`,
}, "\n") + "\n"

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

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
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
	step("an agent trades a token from the development OpenID provider for a certificate")
	ident, err := demoCertificate(ctx, out, home, j, st)
	if err != nil {
		closeJournal()
		return err
	}
	step("recording a scripted session of %s into %s", ident, path)
	s, err := j.StartSession(ctx, recorder.SessionInfo{
		Attrs:   recorder.Attrs{"kind": "record", "command": "sh", "identity": ident},
		Summary: "sh (" + ident + ")",
	})
	if err != nil {
		closeJournal()
		return err
	}
	res, runErr := bastion.RunLocal(ctx, bastion.LocalConfig{
		Argv:   []string{"sh"},
		Env:    []string{"PS1=$ ", "PATH=" + os.Getenv("PATH"), "HOME=" + home, "TERM=dumb"},
		Stdin:  &pacedLines{lines: strings.SplitAfter(demoScript, "\n"), pause: 300 * time.Millisecond},
		Stdout: out,
	}, sessionRecorder{s})
	runErr = endLocal(ctx, s, res, runErr)
	if err := errors.Join(runErr, closeJournal()); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nsession %s ended with exit status %d\n", s.ID(), res.ExitCode)

	step("bastion sessions list")
	if err := runSessionsList(ctx, e, nil); err != nil {
		return err
	}

	pub := filepath.Join(home, certauth.JournalPubKeyFile)
	step("bastion certs list")
	if err := runCertsList(ctx, e, []string{"--all"}); err != nil {
		return err
	}

	step("bastion verify --key %s", pub)
	if err := runVerify(ctx, e, []string{"--key", pub}); err != nil {
		return err
	}

	step("bastion checkpoint (keep it: a later verify --checkpoint proves the journal still extends it)")
	if err := runCheckpoint(ctx, e, nil); err != nil {
		return err
	}

	step("try it yourself")
	// Name the binary the way the user ran it ("bin/bastion" after make).
	self := "bastion"
	if len(os.Args) > 0 && strings.Contains(os.Args[0], "/") && !filepath.IsAbs(os.Args[0]) {
		self = os.Args[0]
	}
	for _, cmd := range []string{"serve --dev", "dev token --sub agent-2", "record -- bash", "sessions list", "certs list", "verify"} {
		fmt.Fprintf(out, "  %s --home %s %s\n", self, home, cmd)
	}
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

// demoCertificate runs the certificate API with the development issuer
// on loopback, has an agent get a certificate for a fresh key through the
// real HTTPS client, shows a forged token refused, and returns the agent's
// identity.
func demoCertificate(ctx context.Context, out io.Writer, home string, j *recorder.Journal, st storage.Store) (string, error) {
	auth, err := certauth.LoadAuthorities(home, time.Now())
	if err != nil {
		return "", err
	}
	dev, err := certauth.OpenDevIssuer(home)
	if err != nil {
		return "", err
	}
	login := "agent"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	cfg, err := bastion.ParseConfig("(demo)", []byte(`api { listen = "127.0.0.1:0" }`))
	if err != nil {
		return "", err
	}
	srv, err := bastion.NewServer(ctx, bastion.ServerOptions{
		Config: cfg, Home: home, Journal: j, Store: st, Authorities: auth, Dev: dev, DevLogins: []string{login},
	})
	if err != nil {
		return "", err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	defer func() {
		stop()
		<-done
	}()
	fmt.Fprintf(out, "certificate API at %s (TLS fingerprint %s)\n", srv.APIURL(), srv.TLS().Fingerprint)
	fmt.Fprintf(out, "development OpenID provider at %s (never in production)\n", srv.DevIssuerURL())

	// An RFC 8693 delegation token: agent-1 acts on behalf of alice.
	token, err := dev.Mint("alice", nil, map[string]any{"act": map[string]any{"sub": "agent-1"}}, 5*time.Minute)
	if err != nil {
		return "", err
	}
	client, err := certauth.NewClient(srv.APIURL(), certauth.ClientOptions{Fingerprint: srv.TLS().Fingerprint})
	if err != nil {
		return "", err
	}
	keyPath := filepath.Join(home, "demo-agent", "id_ed25519")
	pub, err := demoAgentKey(keyPath)
	if err != nil {
		return "", err
	}
	resp, err := client.Certificate(ctx, token, certauth.CertificateRequest{PublicKey: pub, Ticket: "DEMO-1"})
	if err != nil {
		return "", err
	}
	if err := certauth.WriteFileAtomic(keyPath+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(out, "certificate for %s, granted by %s:\n", resp.Identity, resp.Rule)
	fmt.Fprintf(out, "  key id:      %s\n", resp.KeyID)
	fmt.Fprintf(out, "  principals:  %s\n", strings.Join(resp.Principals, ", "))
	fmt.Fprintf(out, "  valid:       %s to %s\n", resp.ValidAfter.Format(time.TimeOnly), resp.ValidBefore.Format(time.TimeOnly+" MST"))
	fmt.Fprintf(out, "  written to:  %s-cert.pub (ssh-keygen -L -f shows it)\n", keyPath)

	// The same token with its subject changed no longer verifies.
	parts := strings.SplitN(token, ".", 3)
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+srv.DevIssuerURL()+`","sub":"root","aud":"bastion"}`)) + "." + parts[2]
	if _, err := client.Certificate(ctx, forged, certauth.CertificateRequest{PublicKey: pub}); err != nil {
		fmt.Fprintf(out, "a forged token is refused and journaled: %v\n", err)
	} else {
		return "", errors.New("a forged token was accepted")
	}
	return resp.Identity, nil
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
