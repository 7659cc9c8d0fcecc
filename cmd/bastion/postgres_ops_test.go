package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/sshdtest"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage/postgres/pgtest"
)

// opsRig is serve instances on one PostgreSQL database of a cluster of
// the test's own, each a real process with a home of its own (the first
// from "ca init", the others from "ca init --join" it), and a stock ssh
// client with a certificate from the real exchange.
type opsRig struct {
	pg     *pgtest.Server
	dsn    string
	mock   *mockoidc.MockOIDC
	login  string
	ssh    string
	dir    string
	client opsCred // the client's key and its one certificate
	known  string
	serves []*opsInstance
}

// opsCred is an ssh client's key, its certificate and the certificate's
// serial.
type opsCred struct {
	key, cert string
	serial    uint64
}

// opsInstance is one serve instance: its home, its configuration (fixed
// ports, so that it comes back where the load balancer expects it) and,
// while it runs, its process.
type opsInstance struct {
	name             string
	home, cfg        string
	sshPort, apiPort int
	sp               *serveProcess
	log              *lockedBuffer
}

func newOpsRig(t *testing.T, instances int) *opsRig {
	t.Helper()
	r := &opsRig{ssh: sshdtest.Need(t, "ssh"), login: "root", dir: t.TempDir()}
	if u, err := user.Current(); err == nil {
		r.login = u.Username
	}
	r.pg = pgtest.Start(t, pgtest.Options{})
	r.dsn = r.pg.NewDatabase(t)
	r.mock = oidctest.StartMock(t, nil)
	for i := range instances {
		in := &opsInstance{name: string(rune('a' + i)), sshPort: freeLoopbackPort(t), apiPort: freeLoopbackPort(t)}
		in.home = filepath.Join(r.dir, in.name)
		args := []string{"--home", in.home, "ca", "init", "--origin", in.name + ".bastion.test/journal"}
		if i > 0 {
			args = append(args, "--join", r.serves[0].home)
		}
		if code, _, stderr := runArgs(args...); code != 0 {
			t.Fatalf("ca init: %s", stderr)
		}
		in.cfg = filepath.Join(r.dir, in.name+".hcl")
		conf := fmt.Sprintf(`home    = %q
journal = %q
api {
  listen            = "127.0.0.1:%d"
  rate_per_identity = -1
  rate_per_address  = -1
}
ssh {
  listen = "127.0.0.1:%d"
}
identity_provider "corp" {
  issuer    = %q
  audiences = [%q]
}
role "agents" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  targets = ["box"]
  logins  = [%q]
  shell   = true
}
target "box" { command = ["/bin/sh"] }
`, in.home, r.dsn, in.apiPort, in.sshPort, r.mock.Issuer(), r.mock.ClientID, r.login)
		if err := os.WriteFile(in.cfg, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		r.serves = append(r.serves, in)
	}
	return r
}

// freeLoopbackPort is a TCP port free on 127.0.0.1 now.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start starts the instance's serve process and waits until it has
// journaled its start.
func (r *opsRig) start(t *testing.T, in *opsInstance) {
	t.Helper()
	in.log = &lockedBuffer{}
	in.sp = startServeProcess(t, in.cfg, true, in.log)
	for deadline := time.Now().Add(20 * time.Second); r.readyz(t, in) != http.StatusOK; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve %s is not ready:\n%s", in.name, in.log.String())
		}
	}
}

// stop ends the instance's serve process as its supervisor would
// (SIGTERM), and waits for it.
func (r *opsRig) stop(t *testing.T, in *opsInstance) {
	t.Helper()
	in.sp.cmd.Process.Signal(syscall.SIGTERM)
	if err := in.sp.cmd.Wait(); err != nil {
		t.Errorf("serve %s: %v\n%s", in.name, err, in.log.String())
	}
}

// loginClient makes the client's key and gets its certificate, for
// agent-1, from the instance issuer, and writes a known_hosts file that
// trusts the (shared) host CA for any name: the client reaches the
// instances under the load balancer's address as well as their own.
func (r *opsRig) loginClient(t *testing.T, issuer *opsInstance) {
	t.Helper()
	r.client = r.certify(t, issuer, "agent-1", "id_ed25519")
	auth, err := certauth.LoadAuthorities(r.serves[0].home, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, k := range auth.Host.AuthorizedKeys() {
		lines = append(lines, "@cert-authority * "+k)
	}
	r.known = filepath.Join(r.dir, "known_hosts_any")
	if err := os.WriteFile(r.known, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// certify makes a key in the rig's directory, named name, and gets it a
// certificate for sub of the mock provider from the running instance
// issuer, through the real exchange on its API.
func (r *opsRig) certify(t *testing.T, issuer *opsInstance, sub, name string) opsCred {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(nil)
	block, _ := ssh.MarshalPrivateKey(priv, "")
	c := opsCred{key: filepath.Join(r.dir, name)}
	c.cert = c.key + "-cert.pub"
	if err := os.WriteFile(c.key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	api, err := apiclient.NewClient(issuer.sp.api, apiclient.ClientOptions{Fingerprint: issuer.sp.fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := api.Certificate(context.Background(), mockToken(t, r.mock, sub), certauth.CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub)), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.cert, []byte(resp.Certificate+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.serial = resp.Serial
	return c
}

// sshCmd is stock ssh to the box target through port, with the client's
// certificate.
func (r *opsRig) sshCmd(port int, command string) *exec.Cmd {
	return r.sshCmdAs(r.client, port, "box", command)
}

// sshCmdAs is stock ssh with the key and certificate of c to target
// through port.
func (r *opsRig) sshCmdAs(c opsCred, port int, target, command string) *exec.Cmd {
	args := []string{"-F", "none", "-i", c.key, "-o", "CertificateFile=" + c.cert, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + r.known, "-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=5", "-p", strconv.Itoa(port)}
	return exec.Command(r.ssh, append(args, r.login+"@"+target+"@127.0.0.1", command)...)
}

// run runs command through port and returns its output and exit code.
func (r *opsRig) run(t *testing.T, port int, command string) (stdout, stderr string, code int) {
	t.Helper()
	return r.runCmd(t, r.sshCmd(port, command))
}

// runCmd runs an ssh command and returns its output and exit code.
func (r *opsRig) runCmd(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// opsLive is a session left running, and what its client received.
type opsLive struct {
	tag    string
	cmd    *exec.Cmd
	mu     sync.Mutex
	n      int             // bytes received
	head   strings.Builder // the first KiB received
	stderr strings.Builder
	done   chan struct{}
}

func (l *opsLive) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.n += len(p)
	if rest := 1024 - l.head.Len(); rest > 0 {
		l.head.Write(p[:min(rest, len(p))])
	}
	l.mu.Unlock()
	return len(p), nil
}

func (l *opsLive) received() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *opsLive) printed(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.head.String(), s)
}

// startLive starts a session through port that prints its tag, then 16
// KiB every 20 ms, and returns once its client has received output.
func (r *opsRig) startLive(t *testing.T, port int, tag string) *opsLive {
	t.Helper()
	return r.startLiveCmd(t, r.sshCmd(port, "echo "+tag+"; while :; do head -c 16384 /dev/zero | tr '\\0' x; sleep 0.02; done"), tag, 32<<10)
}

// startQuiet starts a session of c to target through port that prints
// its tag and waits, and returns once its client has received the tag.
func (r *opsRig) startQuiet(t *testing.T, c opsCred, port int, target, tag string) *opsLive {
	t.Helper()
	return r.startLiveCmd(t, r.sshCmdAs(c, port, target, "echo "+tag+"; sleep 60"), tag, 0)
}

// startLiveCmd starts the ssh command cmd, which prints tag first, and
// returns once its client has received the tag and at least least bytes.
func (r *opsRig) startLiveCmd(t *testing.T, cmd *exec.Cmd, tag string, least int) *opsLive {
	t.Helper()
	l := &opsLive{tag: tag, cmd: cmd, done: make(chan struct{})}
	l.cmd.Stdout, l.cmd.Stderr = l, &l.stderr
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		l.cmd.Wait()
		close(l.done)
	}()
	t.Cleanup(l.close)
	for deadline := time.Now().Add(15 * time.Second); !l.printed(tag) || l.received() < least; time.Sleep(20 * time.Millisecond) {
		select {
		case <-l.done:
			t.Fatalf("session %s ended at once: %s", tag, l.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s printed nothing", tag)
		}
	}
	return l
}

// close ends the session's client, and waits for it.
func (l *opsLive) close() {
	l.cmd.Process.Kill()
	<-l.done
}

// wait waits for the session's client to exit and returns its code.
func (l *opsLive) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the session did not end")
	}
	return l.cmd.ProcessState.ExitCode()
}

// readyz is the status of GET /readyz on the instance's API, 0 when it
// does not answer.
func (r *opsRig) readyz(t *testing.T, in *opsInstance) int {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/readyz", in.apiPort))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sessions lists the sessions of the instance's log, as "bastion
// sessions list --json" shows them to a reader with its key.
func (r *opsRig) sessions(t *testing.T, in *opsInstance) []sessionJSON {
	t.Helper()
	code, out, errOut := runArgs("--home", in.home, "sessions", "list", "--db", r.dsn, "--json")
	if code != 0 {
		t.Fatalf("sessions list of %s: %d %s", in.name, code, errOut)
	}
	var list []sessionJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("sessions list --json: %v\n%s", err, out)
	}
	return list
}

// events reads the verified events called name from the instance's log.
func (r *opsRig) events(t *testing.T, in *opsInstance, name string) []recorder.Attrs {
	t.Helper()
	var out []recorder.Attrs
	for _, e := range r.readLog(t, in, name).Events {
		out = append(out, e.Leaf.Attrs)
	}
	return out
}

// verified checks, with serve stopped, that the instance's log verifies
// ("bastion verify" exits 0) and that each live session is in it, ended,
// with at least the output its client received.
func (r *opsRig) verified(t *testing.T, in *opsInstance, lives map[string]*opsLive) {
	t.Helper()
	if code, out, errOut := runArgs("--home", in.home, "verify", "--db", r.dsn); code != 0 {
		t.Fatalf("verify %s's log: %d\n%s\n%s", in.name, code, out, errOut)
	}
	list := r.sessions(t, in)
	for tag, l := range lives {
		found := false
		for _, s := range list {
			if !strings.Contains(s.Summary, tag) {
				continue
			}
			found = true
			if s.State == "live" || s.State == StateUnterminated || s.OutBytes == nil {
				t.Fatalf("session %s: state %s, out bytes %v", tag, s.State, s.OutBytes)
			}
			if got := l.received(); int64(got) > *s.OutBytes {
				t.Fatalf("session %s: the client received %d bytes, the journal holds %d", tag, got, *s.OutBytes)
			}
			t.Logf("%s: session %s %s (%s): %d bytes received, %d recorded", in.name, tag, s.State, s.EndReason, l.received(), *s.OutBytes)
		}
		if !found {
			t.Fatalf("session %s is not in %s's log", tag, in.name)
		}
	}
}

// TestPostgresRestart: PostgreSQL stops under an idle serve instance,
// which notices within its probe interval (/readyz not ready) and
// recovers once it is back. Then it stops under live sessions. The sessions end with the recording failure's message, new
// ones are refused and /readyz says not ready while it is down; once it is
// back, serve recovers by itself (a journal.recovered event that ended
// both sessions), a new session works, the log verifies, and every byte a
// client received is in it.
func TestPostgresRestart(t *testing.T) {
	t.Parallel()
	r := newOpsRig(t, 1)
	a := r.serves[0]
	r.start(t, a)
	r.loginClient(t, a)
	if out, errOut, code := r.run(t, a.sshPort, "echo before"); code != 0 || out != "before\n" {
		t.Fatalf("before: %d %q %s", code, out, errOut)
	}
	// Idle, the instance finds the database gone within its probe
	// interval (a second), not at the next session.
	if err := r.pg.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	for deadline := time.Now().Add(10 * time.Second); r.readyz(t, a) != http.StatusServiceUnavailable; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("/readyz stays ready with the database down and the instance idle")
		}
	}
	t.Logf("idle: not ready %v after the database stopped", time.Since(stopped).Round(time.Millisecond))
	if err := r.pg.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); r.readyz(t, a) != http.StatusOK; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not recover:\n%s", a.log.String())
		}
	}

	lives := map[string]*opsLive{"live-1": r.startLive(t, a.sshPort, "live-1"), "live-2": r.startLive(t, a.sshPort, "live-2")}

	stopped = time.Now()
	if err := r.pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for tag, l := range lives {
		if code := l.wait(t); code != 255 || !strings.Contains(l.stderr.String(), "could not be recorded") {
			t.Fatalf("%s under the stop: exit %d, %q", tag, code, l.stderr.String())
		}
	}
	t.Logf("live sessions ended %v after the stop began", time.Since(stopped).Round(time.Millisecond))
	// Nothing runs while the journal cannot be written, and the load
	// balancer is told.
	if code := r.readyz(t, a); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with the database down: %d", code)
	}
	if out, errOut, code := r.run(t, a.sshPort, "echo during"); code == 0 || strings.Contains(out, "during") {
		t.Fatalf("a session ran with the database down: %d %q %s", code, out, errOut)
	} else {
		t.Logf("refused while the database is down: exit %d, %q", code, strings.TrimSpace(errOut))
	}

	if err := r.pg.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	for deadline := time.Now().Add(20 * time.Second); r.readyz(t, a) != http.StatusOK; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not recover:\n%s", a.log.String())
		}
	}
	t.Logf("ready again %v after the database was back", time.Since(started).Round(time.Millisecond))
	rec := r.events(t, a, events.JournalRecovered)
	if len(rec) != 2 || rec[0]["sessions-ended"] != "0" || rec[1]["sessions-ended"] != "2" || !strings.Contains(rec[0]["cause"], "does not answer") {
		t.Fatalf("journal.recovered events: %v", rec)
	}
	t.Logf("journal.recovered: %v", rec)
	if out, errOut, code := r.run(t, a.sshPort, "echo after"); code != 0 || out != "after\n" {
		t.Fatalf("after the recovery: %d %q %s", code, out, errOut)
	}
	r.stop(t, a)
	r.verified(t, a, lives)
}
