package bastion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// endBound is how long a session may take to end once the bastion ends
// it: generous, since the machine may be busy; the tests assert only that
// it ends.
const endBound = 30 * time.Second

// startLifeFront is startFront that also returns the OpenID provider, so
// that a test can have more certificates issued.
func startLifeFront(t *testing.T) (*frontFixture, *mockoidc.MockOIDC) {
	t.Helper()
	return startLifeFrontTweaked(t, serverTweaks{})
}

// startLifeFrontTweaked is startLifeFront with the server built with tw.
func startLifeFrontTweaked(t *testing.T, tw serverTweaks) (*frontFixture, *mockoidc.MockOIDC) {
	t.Helper()
	needTool(t, "ssh")
	m := startOP(t)
	ts := startServerWith(t, m, strings.ReplaceAll(frontConfig, "%LOGIN%", "ops"), certauth.AlgorithmEd25519, tw)
	fx := &frontFixture{ts: ts, dir: t.TempDir()}
	fx.key, fx.serial = fx.issue(t, m, "id_ed25519", "")
	fx.knownHosts = filepath.Join(fx.dir, "known_hosts")
	if err := os.WriteFile(fx.knownHosts, []byte(strings.Join(ts.auth.KnownHostsLines("*"), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fx.port = ts.SSHAddr()[strings.LastIndexByte(ts.SSHAddr(), ':')+1:]
	return fx, m
}

// issue has the API certify a new key for login "ops", for ttl ("" for
// the default), and returns the key's path and the serial.
func (fx *frontFixture) issue(t *testing.T, m *mockoidc.MockOIDC, name, ttl string) (string, uint64) {
	t.Helper()
	return fx.issueAt(t, m, name, ttl, time.Now())
}

// issueAt is issue with a token issued at now, the server's time.
func (fx *frontFixture) issueAt(t *testing.T, m *mockoidc.MockOIDC, name, ttl string, now time.Time) (string, uint64) {
	t.Helper()
	key, pub := newKey(t, fx.dir, name)
	resp, err := fx.ts.client.Certificate(context.Background(), mint(t, m, agentClaimsAt(m, "agent-1", now)),
		certauth.CertificateRequest{PublicKey: pub, Logins: []string{"ops"}, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return key, resp.Serial
}

// setLimits changes the front door's limits for the sessions that start
// from now on.
func (fx *frontFixture) setLimits(l front.Limits) {
	fx.ts.life.SetLimits(l)
}

// bgSSH is an ssh client running in the background.
type bgSSH struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	id             string // the live session's ID, when known
}

// sshStart starts ssh through the front door with key as user, running
// command; opts come before the destination.
func (fx *frontFixture) sshStart(t *testing.T, key, user, command string, opts ...string) *bgSSH {
	t.Helper()
	args := []string{
		"-F", "none", "-i", key, "-p", fx.port,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + fx.knownHosts,
		"-o", "GlobalKnownHostsFile=none", "-o", "ConnectTimeout=10",
	}
	args = append(args, opts...)
	args = append(args, user+"@127.0.0.1", command)
	return startBgSSH(t, exec.Command(needTool(t, "ssh"), args...))
}

// startBgSSH starts cmd, an ssh client, in the background; it is killed
// when the test ends.
func startBgSSH(t *testing.T, cmd *exec.Cmd) *bgSSH {
	t.Helper()
	b := &bgSSH{cmd: cmd, done: make(chan struct{})}
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		b.cmd.Process.Kill()
		<-b.done
	})
	return b
}

// wait waits up to endBound for ssh to exit, and returns its exit code.
func (b *bgSSH) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-b.done:
		return b.cmd.ProcessState.ExitCode()
	case <-time.After(endBound):
		t.Fatalf("ssh still runs %v after its session was ended; stdout %q, stderr %q", endBound, b.stdout.String(), b.stderr.String())
		return -1
	}
}

// waitLive waits until n sessions are live and their commands have printed
// "started", and returns them.
func (fx *frontFixture) waitLive(t *testing.T, n int, clients ...*bgSSH) []front.LiveSession {
	t.Helper()
	deadline := time.Now().Add(endBound)
	for {
		live := fx.ts.LiveSessions()
		ready := len(live) == n
		for _, c := range clients {
			ready = ready && strings.Contains(c.stdout.String(), "started")
		}
		if ready {
			return live
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions live, want %d", len(live), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recorded returns the recorded session with id.
func (fx *frontFixture) recorded(t *testing.T, id string) recordedSession {
	t.Helper()
	for _, s := range fx.sessions(t) {
		if s.id == id {
			return s
		}
	}
	t.Fatalf("no recorded session %s", id)
	return recordedSession{}
}

// TestFrontSessionKill: "sessions kill" (the admin call) ends a live
// session; the client reads why; the end leaf says killed, by whom, why.
func TestFrontSessionKill(t *testing.T) {
	t.Parallel()
	fx, m := startLifeFront(t)
	c := fx.sshStart(t, fx.key, "ops@box", "echo started; exec sleep 300")
	live := fx.waitLive(t, 1, c)
	if l := live[0]; l.Identity != "agent-1@corp" || l.Serial != fx.serial || l.Login != "ops" || l.Target != "box" || !strings.HasPrefix(l.Client, "127.0.0.1:") {
		t.Fatalf("live session: %+v", l)
	}
	listed, err := adminLiveSessions(context.Background(), fx.ts.home)
	if err != nil || len(listed) != 1 || listed[0].ID != live[0].ID {
		t.Fatalf("admin list: %+v %v", listed, err)
	}
	if _, err := AdminKill(context.Background(), fx.ts.home, AdminKillRequest{ID: "ffffffff"}); !errors.Is(err, ErrNoLiveSession) {
		t.Fatalf("kill of an unknown ID: %v", err)
	}
	// The operator names themselves with a token.
	got, err := AdminKill(context.Background(), fx.ts.home, AdminKillRequest{ID: live[0].ID[:13], Reason: "runaway\njob, card 4111111111111111", By: "tester", Token: mint(t, m, humanClaims(m, "oncall"))})
	if err != nil || got.ID != live[0].ID {
		t.Fatalf("kill: %+v %v", got, err)
	}
	if code := c.wait(t); code != 255 || !strings.Contains(c.stderr.String(), "bastion: the session was ended by an operator: runaway job, card ************1111\n") {
		t.Fatalf("exit %d, stderr %q", code, c.stderr.String())
	}
	fx.waitLive(t, 0)
	rs := fx.recorded(t, live[0].ID)
	if rs.end["reason"] != events.EndKilled || rs.end["kill-reason"] != "runaway job, card ************1111" || rs.end["masked"] != "kill-reason:card:1" ||
		!strings.HasPrefix(rs.end["killed-by"], "oncall@corp (token; uid "+strconv.Itoa(os.Getuid())+" ") || rs.end["operator"] != "oncall@corp" ||
		rs.end["operator.verified"] != VerifiedToken || rs.end["operator.issuer"] != m.Issuer() || rs.end["operator.uid"] != strconv.Itoa(os.Getuid()) ||
		rs.end["operator.pid"] != strconv.Itoa(os.Getpid()) || rs.end["operator.user"] == "" {
		t.Fatalf("end leaf: %v", rs.end)
	}
	// Killing it again: it is no longer live.
	if _, err := AdminKill(context.Background(), fx.ts.home, AdminKillRequest{ID: live[0].ID}); !errors.Is(err, ErrNoLiveSession) {
		t.Fatalf("second kill: %v", err)
	}
	fx.verify(t)
}

// TestFrontSessionRevoked: revoking a certificate ends the live sessions
// opened with it, and only those.
func TestFrontSessionRevoked(t *testing.T) {
	t.Parallel()
	fx, m := startLifeFront(t)
	other, _ := fx.issue(t, m, "other", "")
	revoked := fx.sshStart(t, fx.key, "ops@box", "echo started; exec sleep 300")
	kept := fx.sshStart(t, other, "ops@box", "echo started; exec sleep 300")
	live := fx.waitLive(t, 2, revoked, kept)
	if _, _, err := AdminRevoke(context.Background(), fx.ts.home, certauth.RevokeRequest{Serials: []uint64{fx.serial}, Reason: "test", By: "tester"}, ""); err != nil {
		t.Fatal(err)
	}
	if code := revoked.wait(t); code != 255 || !strings.Contains(revoked.stderr.String(), "your certificate was revoked") {
		t.Fatalf("exit %d, stderr %q", code, revoked.stderr.String())
	}
	rest := fx.waitLive(t, 1)
	for _, l := range live {
		if l.Serial != fx.serial {
			continue
		}
		if rs := fx.recorded(t, l.ID); rs.end["reason"] != events.EndRevoked || rs.end["revocation.leaf"] == "" {
			t.Fatalf("end leaf: %v", rs.end)
		}
	}
	if rest[0].Serial == fx.serial {
		t.Fatal("the session of the revoked certificate is still live")
	}
	// The other one ends with the server, told why.
	fx.ts.stop(t)
	if code := kept.wait(t); code != 255 || !strings.Contains(kept.stderr.String(), "the bastion is shutting down") {
		t.Fatalf("exit %d, stderr %q", code, kept.stderr.String())
	}
}

// TestFrontSessionExpired: a live session ends when the certificate it was
// opened with expires.
func TestFrontSessionExpired(t *testing.T) {
	t.Parallel()
	clock := &shiftedClock{}
	fx, m := startLifeFrontTweaked(t, serverTweaks{edit: func(o *ServerOptions) { o.Now = clock.now }})
	// The shortest certificate there is (certauth.MinTTL), issued while
	// the server's clock is behind: by the time it is used, it has a few
	// seconds left.
	const behind = certauth.MinTTL - 6*time.Second
	clock.set(-behind)
	key, _ := fx.issueAt(t, m, "short", certauth.MinTTL.String(), clock.now())
	clock.set(0)
	c := fx.sshStart(t, key, "ops@box", "echo started; exec sleep 300")
	live := fx.waitLive(t, 1, c)
	select {
	case <-c.done:
	case <-time.After(certauth.MinTTL - behind + endBound):
		t.Fatalf("still running after its certificate expired; stderr %q", c.stderr.String())
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 255 || !strings.Contains(c.stderr.String(), "bastion: your certificate expired at ") {
		t.Fatalf("exit %d, stderr %q", code, c.stderr.String())
	}
	fx.waitLive(t, 0)
	if rs := fx.recorded(t, live[0].ID); rs.end["reason"] != events.EndExpired || rs.end["certificate.valid-before"] == "" {
		t.Fatalf("end leaf: %v", rs.end)
	}
	fx.verify(t)
}

// TestFrontSessionLimits: a session without input or output ends at the
// idle timeout, one that keeps talking does not; any session ends at the
// maximum duration. With a terminal too.
func TestFrontSessionLimits(t *testing.T) {
	t.Parallel()
	fx, _ := startLifeFront(t)

	fx.setLimits(front.Limits{IdleTimeout: 2 * time.Second, MaxDuration: -1})
	idle := fx.sshStart(t, fx.key, "ops@box", "echo started; exec sleep 300")
	talks := fx.sshStart(t, fx.key, "ops@box", "echo started; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo $i; sleep 0.25; done")
	if code := idle.wait(t); code != 255 || !strings.Contains(idle.stderr.String(), "no input or output for 2s") {
		t.Fatalf("idle: exit %d, stderr %q", code, idle.stderr.String())
	}
	if code := talks.wait(t); code != 0 || !strings.Contains(talks.stdout.String(), "20\n") {
		t.Fatalf("talking: exit %d, stdout %q, stderr %q", code, talks.stdout.String(), talks.stderr.String())
	}

	fx.setLimits(front.Limits{IdleTimeout: -1, MaxDuration: 2 * time.Second})
	long := fx.sshStart(t, fx.key, "ops@box", "echo started; while :; do echo tick; sleep 0.2; done", "-tt")
	if code := long.wait(t); code != 255 || !strings.Contains(long.stderr.String(), "maximum duration of 2s") {
		t.Fatalf("max duration: exit %d, stderr %q", code, long.stderr.String())
	}
	fx.waitLive(t, 0)
	reasons := map[string]int{}
	for _, s := range fx.sessions(t) {
		reasons[s.end["reason"]]++
	}
	if reasons[events.EndIdle] != 1 || reasons[events.EndMaxDuration] != 1 || reasons["exited"] != 1 {
		t.Fatalf("end reasons: %v", reasons)
	}
	fx.verify(t)
}

// TestFrontShutdown: stopping the server ends live sessions, each told why
// and with its end leaf committed, and journals its start and stop.
func TestFrontShutdown(t *testing.T) {
	t.Parallel()
	fx, _ := startLifeFront(t)
	piped := fx.sshStart(t, fx.key, "ops@box", "echo started; exec sleep 300")
	term := fx.sshStart(t, fx.key, "ops@box", "echo started; exec sleep 300", "-tt")
	live := fx.waitLive(t, 2, piped, term)
	fx.ts.stop(t)
	for _, c := range []*bgSSH{piped, term} {
		t.Logf("client stdout %q, stderr %q", c.stdout.String(), c.stderr.String())
		if code := c.wait(t); code != 255 || !strings.Contains(c.stderr.String()+c.stdout.String(), "bastion: the bastion is shutting down, so the session was ended") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, c.stdout.String(), c.stderr.String())
		}
	}
	for _, l := range live {
		if rs := fx.recorded(t, l.ID); rs.end["reason"] != events.EndShutdown {
			t.Fatalf("end leaf of %s: %v", l.ID, rs.end)
		}
	}
	started := fx.ts.events(t, EventServeStarted)
	stopped := fx.ts.events(t, EventServeStopped)
	if len(started) != 1 || started[0]["ssh"] != fx.ts.SSHAddr() || started[0]["config"] != filepath.Join(fx.ts.home, "bastion.hcl") ||
		started[0]["config.sha256"] == "" && started[0]["config.error"] == "" || started[0]["ssh.idle-timeout"] != front.DefaultIdleTimeout.String() {
		t.Fatalf("serve.started: %v", started)
	}
	if len(stopped) != 1 || stopped[0]["reason"] != "requested" || stopped[0]["ssh.sessions-ended"] != "2" || stopped[0]["error"] != "" {
		t.Fatalf("serve.stopped: %v", stopped)
	}
	rep, err := recorder.Verify(context.Background(), fx.ts.store, recorder.VerifyOptions{Verifier: fx.ts.key.Verifier})
	if err != nil || !rep.Intact() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestServeStartedConfigHash: serve.started names the configuration file
// and the SHA-256 of its bytes.
func TestServeStartedConfigHash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(path, []byte("# a configuration\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{opts: ServerOptions{Config: &Config{Path: path}}}
	s.hashConfig()
	sum := sha256.Sum256([]byte("# a configuration\n"))
	if s.configSHA256 != hex.EncodeToString(sum[:]) || s.configErr != "" {
		t.Fatalf("sha256 %q, error %q", s.configSHA256, s.configErr)
	}
	s = &Server{opts: ServerOptions{Config: &Config{Path: filepath.Join(dir, "gone.hcl")}}}
	s.hashConfig()
	if s.configSHA256 != "" || !strings.Contains(s.configErr, "no such file") {
		t.Fatalf("sha256 %q, error %q", s.configSHA256, s.configErr)
	}
}

// TestFrontJournalFailing: once the journal fails, live sessions end and
// new ones are refused, each with a message.
func TestFrontJournalFailing(t *testing.T) {
	t.Parallel()
	fx, _ := startLifeFront(t)
	c := fx.sshStart(t, fx.key, "ops@box", "echo started; exec sleep 300")
	fx.waitLive(t, 1, c)
	// The store closes under the journal: its next commit fails.
	fx.ts.closeStore()
	fx.ts.journal.AppendEvent(context.Background(), "test.poke", recorder.Attrs{"a": "b"})
	if fx.ts.journal.Err() == nil {
		t.Fatal("the journal did not fail")
	}
	if code := c.wait(t); code != 255 || !strings.Contains(c.stderr.String(), "could not be recorded") {
		t.Fatalf("live: exit %d, stderr %q", code, c.stderr.String())
	}
	// The session's end cannot be journaled, but it is counted.
	if body := scrape(t, fx.ts); !strings.Contains(body, `bastion_ssh_sessions_started_total{request="exec"} 1`) ||
		!strings.Contains(body, `bastion_ssh_sessions_ended_total{reason="recording-failed"} 1`) {
		t.Errorf("metrics:\n%s", body)
	}
	out, code := fx.ssh(t, fx.key, "ops@box", "echo in")
	if code != 255 || strings.Contains(out, "in\n") || !strings.Contains(out, "the journal is failing") {
		t.Fatalf("new session: exit %d, output %q", code, out)
	}
	// The stop cannot be journaled: Run says so.
	fx.ts.cancel()
	fx.ts.cancel = nil
	if err := <-fx.ts.done; err == nil || !strings.Contains(err.Error(), "journal the stop of serving") {
		t.Fatalf("Run: %v", err)
	}
	fx.ts.journal.Close()
}

func TestFrontLimitsConfig(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig("b.hcl", []byte("ssh {\n  idle_timeout = \"5m\"\n  max_duration = \"off\"\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.SSH.Limits; got.IdleTimeout != 5*time.Minute || got.MaxDuration >= 0 {
		t.Fatalf("limits %+v", got)
	}
	cfg, err = ParseConfig("b.hcl", []byte("ssh {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.SSH.Limits; got.IdleTimeout != front.DefaultIdleTimeout || got.MaxDuration != front.DefaultMaxDuration {
		t.Fatalf("default limits %+v", got)
	}
	if _, err := ParseConfig("b.hcl", []byte("ssh {\n  idle_timeout = \"never\"\n}\n")); err == nil || !strings.Contains(err.Error(), "b.hcl:2:3: idle_timeout") {
		t.Fatalf("bad idle_timeout: %v", err)
	}
}

// TestFrontShutdownPrompt: a client that holds its connection open (a
// session running, and a second connection with no session at all) does
// not hold the shutdown up to its bound: serve returns once every live
// session's end leaf is committed.
func TestFrontShutdownPrompt(t *testing.T) {
	t.Parallel()
	fx, _ := startLifeFront(t)
	held := fx.sshStart(t, fx.key, "ops@box", "echo started; exec sleep 300")
	fx.waitLive(t, 1, held)
	idle := fx.sshStart(t, fx.key, "ops@box", "", "-N")
	// The -N connection has authenticated once two are accepted.
	for deadline := time.Now().Add(endBound); testutil.ToFloat64(fx.ts.metrics.auths.WithLabelValues("accepted", "")) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the -N connection did not authenticate")
		}
	}
	live := fx.ts.LiveSessions()
	start := time.Now()
	fx.ts.stop(t)
	took := time.Since(start)
	if took >= shutdownTimeout/2 {
		t.Fatalf("shutdown took %v with a client holding its connection (bound %v)", took, shutdownTimeout)
	}
	t.Logf("shutdown took %v", took)
	if rs := fx.recorded(t, live[0].ID); rs.end["reason"] != events.EndShutdown {
		t.Fatalf("end leaf: %v", rs.end)
	}
	if code := held.wait(t); code != 255 {
		t.Fatalf("held session: exit %d", code)
	}
	idle.wait(t)
	rep, err := recorder.Verify(context.Background(), fx.ts.store, recorder.VerifyOptions{Verifier: fx.ts.key.Verifier})
	if err != nil || !rep.Intact() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestServeStartedAttrs: serve.started records the configuration's
// absolute path, however serve was given it, and a limit that is off as
// "off", as the configuration writes it.
func TestServeStartedAttrs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	pol, err := policy.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := certauth.CreateAuthorities(dir, certauth.AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	life := front.NewSessions(front.Limits{IdleTimeout: -1, MaxDuration: 90 * time.Minute}, nil)
	fd, err := front.New(front.Options{Config: &front.Config{Listen: "127.0.0.1:0", HostNames: []string{"bastion.example"}}, Home: dir, Authorities: auth, Sessions: life, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	s := &Server{
		opts:  ServerOptions{Config: &Config{Path: "bastion.hcl", SSH: &front.Config{}}},
		apiLn: listen(), adminLn: listen(), front: fd,
		life: life,
	}
	s.policy.Store(pol)
	a := s.startedAttrs()
	if a["config"] != filepath.Join(dir, "bastion.hcl") || a["ssh.idle-timeout"] != "off" || a["ssh.max-duration"] != "1h30m0s" {
		t.Fatalf("serve.started: %v", a)
	}
}
