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
	"github.com/bastionhq/bastion/storage/postgres"
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
	key    string
	certs  []string // the key's certificates, one from each instance
	known  string
	serves []*opsInstance
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

// loginClient makes the client's key and gets a certificate for it from
// each running instance (an instance admits only certificates its own
// journal records as issued), and writes a known_hosts file that trusts
// the (shared) host CA for any name: the client reaches the instances
// under the load balancer's address as well as their own.
func (r *opsRig) loginClient(t *testing.T) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(nil)
	block, _ := ssh.MarshalPrivateKey(priv, "")
	r.key = filepath.Join(r.dir, "id_ed25519")
	if err := os.WriteFile(r.key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	r.certs = nil
	for _, in := range r.serves {
		if in.sp == nil {
			continue
		}
		c, err := apiclient.NewClient(in.sp.api, apiclient.ClientOptions{Fingerprint: in.sp.fingerprint})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Certificate(context.Background(), mockToken(t, r.mock, "agent-1"), certauth.CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub)), TTL: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		cert := filepath.Join(r.dir, "id_ed25519-"+in.name+"-cert.pub")
		if err := os.WriteFile(cert, []byte(resp.Certificate+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r.certs = append(r.certs, cert)
	}
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

// sshCmd is stock ssh to the box target through port.
func (r *opsRig) sshCmd(port int, command string) *exec.Cmd {
	args := []string{"-F", "none", "-i", r.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + r.known, "-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=5", "-p", strconv.Itoa(port)}
	for _, c := range r.certs {
		args = append(args, "-o", "CertificateFile="+c)
	}
	return exec.Command(r.ssh, append(args, r.login+"@box@127.0.0.1", command)...)
}

// run runs command through port and returns its output and exit code.
func (r *opsRig) run(t *testing.T, port int, command string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := r.sshCmd(port, command)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// opsLive is a session that writes steadily until it is ended, and what
// its client received.
type opsLive struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	n      int // bytes received
	stderr strings.Builder
	done   chan struct{}
}

func (l *opsLive) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.n += len(p)
	l.mu.Unlock()
	return len(p), nil
}

func (l *opsLive) received() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// startLive starts a session through port that prints its tag, then 16
// KiB every 20 ms, and returns once its client has received output.
func (r *opsRig) startLive(t *testing.T, port int, tag string) *opsLive {
	t.Helper()
	l := &opsLive{done: make(chan struct{})}
	l.cmd = r.sshCmd(port, "echo "+tag+"; while :; do head -c 16384 /dev/zero | tr '\\0' x; sleep 0.02; done")
	l.cmd.Stdout, l.cmd.Stderr = l, &l.stderr
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		l.cmd.Wait()
		close(l.done)
	}()
	t.Cleanup(func() {
		l.cmd.Process.Kill()
		<-l.done
	})
	for deadline := time.Now().Add(15 * time.Second); l.received() < 32<<10; time.Sleep(20 * time.Millisecond) {
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
	ctx := context.Background()
	key, err := certauth.LoadJournalKey(in.home)
	if err != nil {
		t.Fatal(err)
	}
	st, err := postgres.Open(ctx, r.dsn, key.Signer.Name(), postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	evs, err := recorder.Events(ctx, snap, key.Verifier, name)
	if err != nil {
		t.Fatal(err)
	}
	var out []recorder.Attrs
	for _, e := range evs {
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
	r.loginClient(t)
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

// startHAProxy runs Debian's haproxy with docs/examples/haproxy.cfg, the
// names and ports in it replaced with the instances' loopback ones, and
// returns the port its SSH frontend listens on, and when haproxy said
// each server went down (from its log: "Server bastions/a is DOWN").
func (r *opsRig) startHAProxy(t *testing.T) (port int, downAt func(server string) time.Time) {
	t.Helper()
	bin := sshdtest.Need(t, "haproxy")
	example, err := os.ReadFile(filepath.Join(examplesDir, "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	port = freeLoopbackPort(t)
	cfg := string(example)
	replace := map[string]string{"bind :22": fmt.Sprintf("bind 127.0.0.1:%d", port)}
	for _, in := range r.serves {
		replace["bastion-"+in.name+".bank.example:22 port 8443"] = fmt.Sprintf("127.0.0.1:%d port %d", in.sshPort, in.apiPort)
	}
	for old, new := range replace {
		if !strings.Contains(cfg, old) {
			t.Fatalf("docs/examples/haproxy.cfg has no %q: the test and the example differ", old)
		}
		cfg = strings.ReplaceAll(cfg, old, new)
	}
	path := filepath.Join(r.dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", path, "-db")
	var mu sync.Mutex
	down := map[string]time.Time{}
	log := &lockedBuffer{onWrite: func(all string) {
		mu.Lock()
		defer mu.Unlock()
		for _, in := range r.serves {
			if _, seen := down[in.name]; !seen && strings.Contains(all, "Server bastions/"+in.name+" is DOWN") {
				down[in.name] = time.Now()
			}
		}
	}}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("haproxy exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not listen:\n%s", log.String())
		}
	}
	return port, func(server string) time.Time {
		mu.Lock()
		defer mu.Unlock()
		return down[server]
	}
}

// TestHAProxyTwoInstances: two serve instances on one PostgreSQL database
// (two logs: home b is "ca init --join a"), behind a real HAProxy
// configured as docs/examples/haproxy.cfg, reached with stock ssh.
// Connections land on both. After "kill -9" of one with a session live
// on it, new connections succeed through the other at once; the killed
// instance's session shows as unterminated (its writer lock went with its
// database session), and the instance, started again on the same log, is
// not refused and closes it. Each log verifies with its own key.
func TestHAProxyTwoInstances(t *testing.T) {
	t.Parallel()
	r := newOpsRig(t, 2)
	a, b := r.serves[0], r.serves[1]
	r.start(t, a)
	r.start(t, b)
	r.loginClient(t)
	lb, downAt := r.startHAProxy(t)

	// Both instances take connections through the load balancer.
	const n = 6
	for i := range n {
		word := fmt.Sprintf("through-%d", i)
		if out, errOut, code := r.run(t, lb, "echo "+word); code != 0 || out != word+"\n" {
			t.Fatalf("ssh through haproxy: %d %q %s", code, out, errOut)
		}
	}
	count := func(in *opsInstance) int {
		c := 0
		for _, s := range r.sessions(t, in) {
			if strings.Contains(s.Summary, "through-") {
				c++
			}
		}
		return c
	}
	onA, onB := count(a), count(b)
	if onA+onB != n || onA == 0 || onB == 0 {
		t.Fatalf("sessions through haproxy: %d in a's log, %d in b's, want %d in all, on both", onA, onB, n)
	}
	t.Logf("%d connections through haproxy: %d on a, %d on b", n, onA, onB)

	// kill -9 of a, with a session live on it.
	live := r.startLive(t, a.sshPort, "live-a")
	killed := time.Now()
	if err := a.sp.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.sp.cmd.Wait()
	if code := live.wait(t); code != 255 {
		t.Fatalf("the session on the killed instance: exit %d", code)
	}
	// Its writer lock went with its database session, at once: its
	// session is unterminated.
	st, err := postgres.Open(context.Background(), r.dsn, "a.bastion.test/journal", postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		holder, err := st.WriterHolder(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if holder == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a's writer lock is still held after its kill: %s", holder)
		}
	}
	t.Logf("a's writer lock free %v after the kill", time.Since(killed).Round(time.Millisecond))
	// New connections through the load balancer: every one succeeds on b,
	// those made before haproxy's checks mark a down too (redispatch).
	// The bound is the checks' (fall x inter = 1 s), with a second of
	// margin for a loaded machine; the figures are reported.
	const bound = 2 * time.Second
	var firstOK time.Duration
	var outcomes []string
	failed := 0
	for i := 0; time.Since(killed) < bound || i < 4; i++ {
		at := time.Since(killed)
		word := fmt.Sprintf("after-kill-%d", i)
		out, errOut, code := r.run(t, lb, "echo "+word)
		ok := code == 0 && out == word+"\n"
		outcomes = append(outcomes, fmt.Sprintf("%v:%v", at.Round(time.Millisecond), ok))
		if ok && firstOK == 0 {
			firstOK = time.Since(killed)
		}
		if !ok {
			failed++
			if at >= bound {
				t.Fatalf("a connection %v after the kill failed: %d %q %s", at.Round(time.Millisecond), code, out, errOut)
			}
		}
	}
	if firstOK == 0 || firstOK > bound {
		t.Fatalf("no connection succeeded within %v of the kill: %v", bound, outcomes)
	}
	marked := "not yet"
	if at := downAt("a"); !at.IsZero() {
		marked = at.Sub(killed).Round(time.Millisecond).String()
	}
	t.Logf("after kill -9 of a: first connection through haproxy done %v after the kill, %d of %d failed; haproxy marked a down after %s; attempts (started at: ok) %v",
		firstOK.Round(time.Millisecond), failed, len(outcomes), marked, outcomes)
	for _, s := range r.sessions(t, a) {
		if strings.Contains(s.Summary, "live-a") && s.State != StateUnterminated {
			t.Fatalf("the killed instance's session is %q, want %s", s.State, StateUnterminated)
		}
	}
	// a comes back on its log at once (its lock is free) and closes it.
	restarted := time.Now()
	r.start(t, a)
	t.Logf("a ready again %v after its restart began", time.Since(restarted).Round(time.Millisecond))
	for _, s := range r.sessions(t, a) {
		if strings.Contains(s.Summary, "live-a") && s.State != "abandoned" {
			t.Fatalf("the killed instance's session, after its restart: %s", s.State)
		}
	}

	r.stop(t, a)
	r.stop(t, b)
	r.verified(t, a, map[string]*opsLive{"live-a": live})
	r.verified(t, b, nil)
}
