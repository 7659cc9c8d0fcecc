package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/bastion/sshdtest"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/cluster"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/witness/witnesstest"
	"github.com/bastionhq/bastion/storage/postgres"
)

// Issue 19's "must show", end to end: a cluster of serve instances on one
// PostgreSQL database, behind a real HAProxy, reached with stock ssh.

// origin is the instance's log's name, its journal key's origin.
func (in *opsInstance) origin() string { return in.name + ".bastion.test/journal" }

// clusterOps makes the rig's instances one cluster: a cluster file
// listing every home's journal key (member IDs 1, 2, … in the rig's
// order), in every home as its cluster.pub; a litewitness that knows
// every member's log, configured in every instance; and a grant-only
// role, for the target vault, whose grants alice approves; alice is an
// auditor too. It returns the cluster file and the witness.
func (r *opsRig) clusterOps(t *testing.T) (string, *witnesstest.Litewitness) {
	t.Helper()
	members := "# bastion cluster members: ID VERIFIER-KEY\n"
	var keys []string
	for i, in := range r.serves {
		k, err := certauth.LoadVerifierKey(filepath.Join(in.home, certauth.JournalPubKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		members += fmt.Sprintf("%d %s\n", i+1, k)
	}
	file := filepath.Join(r.dir, cluster.File)
	files := []string{file}
	for _, in := range r.serves {
		files = append(files, filepath.Join(in.home, cluster.File))
	}
	for _, f := range files {
		if err := os.WriteFile(f, []byte(members), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lw := witnesstest.Start(t, "lw.test/w1", keys...)
	extra := fmt.Sprintf(`
witness "lw" {
  url = %q
  key = %q
}
identity "people" {
  providers = ["corp"]
  subjects  = ["alice"]
}
role "vault" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  targets = ["vault"]
  logins  = [%q]
  access  = "grant"
  shell   = true
  approval {
    approvers    = ["people"]
    max_duration = "1h"
  }
}
target "vault" { command = ["/bin/sh"] }
auditors = ["people"]
`, lw.URL, lw.VKey, r.login)
	for _, in := range r.serves {
		conf, err := os.ReadFile(in.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(in.cfg, append(conf, extra...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return file, lw
}

// clusterSessions lists every member's sessions, as "bastion sessions
// list --cluster FILE --json" shows them: each read from its member's
// log, verified with that member's key.
func (r *opsRig) clusterSessions(t *testing.T, file string) []sessionJSON {
	t.Helper()
	code, out, errOut := runArgs("--home", r.serves[0].home, "sessions", "list", "--db", r.dsn, "--cluster", file, "--json")
	if code != 0 {
		t.Fatalf("sessions list --cluster: %d %s", code, errOut)
	}
	var list []sessionJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("sessions list --json: %v\n%s", err, out)
	}
	return list
}

// landed finds the session whose command begins "echo TAG" in the
// members' logs, and the instance whose log holds it: where its
// connection landed.
func (r *opsRig) landed(t *testing.T, file, tag string) (*opsInstance, sessionJSON) {
	t.Helper()
	for _, s := range r.clusterSessions(t, file) {
		if !strings.HasPrefix(s.Summary, "echo "+tag+";") && s.Summary != "echo "+tag {
			continue
		}
		for _, in := range r.serves {
			if s.Log == in.origin() {
				return in, s
			}
		}
		t.Fatalf("session %s is in log %q, no instance's", tag, s.Log)
	}
	t.Fatalf("no member's log holds the session %s", tag)
	return nil, sessionJSON{}
}

// landOn starts sessions with start until one lands on want (at most
// three: HAProxy's leastconn sends the next connection to the instance
// with fewer, so a session that lands elsewhere, held open, steers the
// next to want), ends the others, and returns it and its listing. Where
// each landed is read from the logs, never assumed.
func (r *opsRig) landOn(t *testing.T, file string, want *opsInstance, tag string, start func(tag string) *opsLive) (*opsLive, sessionJSON) {
	t.Helper()
	var elsewhere []*opsLive
	defer func() {
		for _, l := range elsewhere {
			l.close()
		}
	}()
	for i := range 3 {
		tg := fmt.Sprintf("%s-%d", tag, i)
		l := start(tg)
		at, s := r.landed(t, file, tg)
		if at == want {
			t.Logf("session %s landed on %s", tg, at.name)
			return l, s
		}
		elsewhere = append(elsewhere, l)
	}
	t.Fatalf("three sessions %s through haproxy, none landed on %s", tag, want.name)
	return nil, sessionJSON{}
}

// readLog reads the instance's log, verified with its key, keeping the
// events named names.
func (r *opsRig) readLog(t *testing.T, in *opsInstance, names ...string) *recorder.Log {
	t.Helper()
	ctx := context.Background()
	key, err := certauth.LoadJournalKey(in.home)
	if err != nil {
		t.Fatal(err)
	}
	st, err := postgres.Open(ctx, r.dsn, in.origin(), postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	log, err := recorder.ReadLog(ctx, snap, recorder.ReadLogOptions{Verifier: key.Verifier, Events: recorder.EventNames(names...)})
	if err != nil {
		t.Fatalf("%s's log: %v", in.name, err)
	}
	return log
}

// endOf is the end leaf of session id in the instance's log, verified;
// nil while it has none.
func (r *opsRig) endOf(t *testing.T, in *opsInstance, id string) *recorder.Leaf {
	t.Helper()
	for _, s := range r.readLog(t, in).Sessions {
		if uuid.UUID(s.ID).String() == id {
			return s.End
		}
	}
	t.Fatalf("%s's log does not hold session %s", in.name, id)
	return nil
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

// clusterVerdictJSON is what the test reads of "bastion verify --cluster
// --json".
type clusterVerdictJSON struct {
	Intact  bool
	Members []struct {
		Member    uint16
		Log       string
		Intact    bool
		TreeSize  int64 `json:"tree_size"`
		Witnessed *struct {
			Live        bool
			Size        int64 `json:"witnessed_size"`
			Unwitnessed int64
			ReadsFrom   int64 `json:"reads_from"`
		}
	}
}

func clusterVerdict(t *testing.T, out string) clusterVerdictJSON {
	t.Helper()
	var v clusterVerdictJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	return v
}

// TestHAProxyTwoInstances is issue 19's "must show", in one run: two
// serve instances on one PostgreSQL database as one cluster (home b is
// "ca init --join a"; one cluster.pub lists both; one litewitness knows
// both logs), behind a real HAProxy configured as
// docs/examples/haproxy.cfg, reached with stock ssh holding ONE
// certificate, issued by a. Where each connection landed is read from the
// members' logs. Connections land on both; a grant requested through a
// and approved through b lets a session through a (before the approval,
// the same certificate is refused for that target); a revocation through
// a ends a live session on b within 2 s (measured), and b's end leaf
// names a's log and leaf; "sessions kill" from b ends a session on a, and
// from a one on b; after "kill -9" of a, with a session live on it, new
// connections succeed through b within the health checks' interval
// (measured), a's session shows as unterminated, and a, started again,
// closes it. "bastion verify" of the cluster with the witness's key exits
// 0 while both run (read through a's API, the witness down: lag, not a
// problem) and at rest, each member's log verified with its own key and,
// at rest, witnessed up to the last checkpoint its instance pushed; one
// evidence report covers both, each anchored on the witness.
func TestHAProxyTwoInstances(t *testing.T) {
	t.Parallel()
	began := time.Now().UTC().Truncate(time.Second)
	r := newOpsRig(t, 2)
	a, b := r.serves[0], r.serves[1]
	file, lw := r.clusterOps(t)
	t.Cleanup(func() {
		if t.Failed() {
			for _, in := range r.serves {
				if in.log != nil {
					t.Logf("%s's log:\n%s", in.name, in.log.String())
				}
			}
		}
	})
	r.start(t, a)
	r.start(t, b)
	r.loginClient(t, a)
	if id, _ := recorder.SplitNumber(r.client.serial); id != 1 {
		t.Fatalf("a issued serial %d, of member %d, not member 1's", r.client.serial, id)
	}
	lb, downAt := r.startHAProxy(t)

	// 1. Connections land on both instances, with the one certificate
	// a issued.
	const n = 4
	for i := range n {
		word := fmt.Sprintf("through-%d", i)
		if out, errOut, code := r.run(t, lb, "echo "+word); code != 0 || out != word+"\n" {
			t.Fatalf("ssh through haproxy: %d %q %s", code, out, errOut)
		}
	}
	count := map[string]int{}
	for i := range n {
		at, _ := r.landed(t, file, fmt.Sprintf("through-%d", i))
		count[at.name]++
	}
	if count["a"]+count["b"] != n || count["a"] == 0 || count["b"] == 0 {
		t.Fatalf("%d connections through haproxy with one certificate: %v, want some on each instance", n, count)
	}
	t.Logf("%d connections through haproxy with a's certificate: %d on a, %d on b", n, count["a"], count["b"])

	// 2. A grant requested through a and approved through b lets a
	// session through a; before the approval, the same certificate is
	// refused for the target.
	tokenFile := func(sub string) string {
		f := filepath.Join(r.dir, sub+".token")
		if err := os.WriteFile(f, []byte(mockToken(t, r.mock, sub)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	agent, alice := tokenFile("agent-1"), tokenFile("alice")
	grants := func(via *opsInstance, token string, args ...string) map[string]any {
		t.Helper()
		args = append(append([]string{"grants"}, args...), "--server", via.sp.api, "--ca-fingerprint", via.sp.fingerprint, "--token-file", token, "--json")
		code, out, errOut := runArgs(args...)
		var g map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &g) != nil {
			t.Fatalf("grants %s through %s: %d %s %s", strings.Join(args[:2], " "), via.name, code, out, errOut)
		}
		return g
	}
	g := grants(a, agent, "request", "--target", "vault", "--login", r.login, "--duration", "10m", "--reason", "must show")
	grantID := jsonString(g, "id")
	if n, err := strconv.ParseUint(strings.TrimPrefix(grantID, "G-"), 10, 64); err != nil || n>>recorder.MemberShift != 1 {
		t.Errorf("grant %q, requested through a, does not carry member 1's ID", grantID)
	}
	refusedVault := func() map[string]int {
		n := map[string]int{}
		for _, in := range r.serves {
			for _, e := range r.readLog(t, in, events.AuthRefused).Events {
				if e.Leaf.Attrs["reason"] == events.ReasonNotPermitted && e.Leaf.Attrs["user"] == r.login+"@vault" {
					n[in.name]++
				}
			}
		}
		return n
	}
	for i := range 2 {
		if out, errOut, code := r.runCmd(t, r.sshCmdAs(r.client, lb, "vault", "echo must-not-run")); code != 255 || !strings.Contains(errOut, "Permission denied") {
			t.Fatalf("before the approval, attempt %d to vault: %d %q %s", i, code, out, errOut)
		}
	}
	waitFor(t, 5*time.Second, "both refusals to be journaled", func() bool {
		n := refusedVault()
		return n["a"]+n["b"] >= 2
	})
	t.Logf("before the approval: vault refused (target_not_permitted), journaled by %v", refusedVault())
	if g := grants(b, alice, "approve", grantID); jsonString(g, "state") != "active" {
		t.Fatalf("grant %s approved through b: %v", grantID, g)
	}
	waitFor(t, 5*time.Second, "a to see the grant approved through b", func() bool {
		return jsonString(grants(a, agent, "show", grantID), "state") == "active"
	})
	granted, grantedS := r.landOn(t, file, a, "granted", func(tag string) *opsLive {
		return r.startQuiet(t, r.client, lb, "vault", tag)
	})
	if grantedS.State != "live" || grantedS.Target != "vault" {
		t.Fatalf("the session under the grant: %+v", grantedS)
	}

	// 3. A revocation through a ends a live session on b within 2 s. The
	// certificate is another client's, issued by b; its session is
	// steered to b by the one under the grant, held open on a.
	victim := r.certify(t, b, "agent-2", "victim_ed25519")
	if id, _ := recorder.SplitNumber(victim.serial); id != 2 {
		t.Fatalf("b issued serial %d, of member %d, not member 2's", victim.serial, id)
	}
	onB, onBS := r.landOn(t, file, b, "victim", func(tag string) *opsLive {
		return r.startQuiet(t, victim, lb, "box", tag)
	})
	revoked := time.Now()
	code, out, errOut := runArgs("--home", a.home, "certs", "revoke", "--serial", strconv.FormatUint(victim.serial, 10), "--reason", "must show", "--json")
	if code != 0 {
		t.Fatalf("certs revoke through a: %d %s %s", code, out, errOut)
	}
	select {
	case <-onB.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the session on b still runs 5 s after the revocation through a")
	}
	took := time.Since(revoked)
	t.Logf("a revocation through a ended the session on b %v after certs revoke started", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the session on b ended %v after the revocation through a, past the 2 s bound", took)
	}
	var rev map[string]any
	if err := json.Unmarshal([]byte(out), &rev); err != nil {
		t.Fatalf("certs revoke --json: %v: %s", err, out)
	}
	if end := r.endOf(t, b, onBS.ID); end == nil || end.Attrs["reason"] != "revoked" || end.Attrs["revocation.log"] != a.origin() || end.Attrs["revocation.leaf"] != fmt.Sprint(jsonAt(rev, "leaf")) {
		t.Errorf("b's end leaf of the revoked session: %v, want reason revoked, revocation.log %s, revocation.leaf %v", end, a.origin(), jsonAt(rev, "leaf"))
	}

	// 4. sessions kill from b, of the session under the grant on a, and
	// from a, of one on b (steered there by the other).
	killB, killBS := r.landOn(t, file, b, "kill-b", func(tag string) *opsLive {
		return r.startQuiet(t, r.client, lb, "box", tag)
	})
	for _, c := range []struct {
		from, holder *opsInstance
		id           string
		client       *opsLive
	}{
		{b, a, grantedS.ID, granted},
		{a, b, killBS.ID, killB},
	} {
		code, out, errOut := runArgs("--home", c.from.home, "sessions", "kill", "--reason", "must show", c.id)
		if code != 0 || !strings.Contains(out, "held by member "+c.holder.origin()) {
			t.Fatalf("sessions kill from %s of a session on %s: %d\n%s\n%s", c.from.name, c.holder.name, code, out, errOut)
		}
		var reqLeaf int64 = -1
		for _, e := range r.readLog(t, c.from, events.SessionKillRequested).Events {
			if e.Leaf.Attrs["session"] == c.id {
				reqLeaf = e.Index
			}
		}
		c.client.wait(t)
		end := r.endOf(t, c.holder, c.id)
		if reqLeaf < 0 || end == nil || end.Attrs["reason"] != "killed" || end.Attrs["kill.log"] != c.from.origin() || end.Attrs["kill.leaf"] != strconv.FormatInt(reqLeaf, 10) {
			t.Errorf("kill from %s of a session on %s: end leaf %v, the request at %s's leaf %d", c.from.name, c.holder.name, end, c.from.name, reqLeaf)
		}
		t.Logf("sessions kill from %s: %s", c.from.name, strings.TrimSpace(out))
	}

	// 5. kill -9 of a, with a session live on it.
	live, liveS := r.landOn(t, file, a, "live-a", func(tag string) *opsLive { return r.startLive(t, lb, tag) })
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
	st, err := postgres.Open(context.Background(), r.dsn, a.origin(), postgres.Options{ReadOnly: true})
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
	if at, _ := r.landed(t, file, "after-kill-0"); at != b {
		t.Fatalf("a connection after a's kill landed on %s", at.name)
	}
	for _, s := range r.clusterSessions(t, file) {
		if s.ID == liveS.ID && s.State != StateUnterminated {
			t.Fatalf("the killed instance's session is %q, want %s", s.State, StateUnterminated)
		}
	}
	// a comes back on its log at once (its lock is free) and closes it.
	restarted := time.Now()
	r.start(t, a)
	t.Logf("a ready again %v after its restart began", time.Since(restarted).Round(time.Millisecond))
	if end := r.endOf(t, a, liveS.ID); end == nil || end.Attrs["reason"] != "abandoned" {
		t.Fatalf("the killed instance's session, after its restart: end %v", end)
	}

	// 6. Running, read through a's API (which records the read in a's
	// log) with the witness down: every member's log verifies, each with
	// its own key; what the witness has not cosigned is a running
	// instance's lag, not a problem.
	lw.Stop()
	code, out, errOut = runArgs("--home", a.home, "verify", "--db", r.dsn, "--cluster", file, "--witness", lw.VKey, "--json",
		"--server", a.sp.api, "--ca-fingerprint", a.sp.fingerprint, "--token-file", alice)
	if code != 0 || !strings.Contains(errOut, "recorded by "+a.sp.api) {
		t.Fatalf("verify --cluster --witness through a's API, running: exit %d\n%s\n%s", code, out, errOut)
	}
	running := clusterVerdict(t, out)
	for i, m := range running.Members {
		if !m.Intact || m.Witnessed == nil || !m.Witnessed.Live || i == 0 && m.Witnessed.Unwitnessed == 0 {
			t.Fatalf("verify --cluster --witness, running, member %d: %+v", m.Member, m)
		}
		t.Logf("running, witness down: member %d (%s): intact, %d leaves, witnessed up to %d, %d not yet (live)", m.Member, m.Log, m.TreeSize, m.Witnessed.Size, m.Witnessed.Unwitnessed)
	}
	lw.Start()

	// 7. At rest: each member's log verifies with its own key, and is
	// witnessed up to the last checkpoint its instance pushed; one
	// evidence report covers both, resting on the witness. Its period
	// ends before the instances stop, so that the checkpoints they push
	// as they stop cover it and are cosigned after its end (cosignatures
	// are timed to the second).
	ended := time.Now().UTC().Truncate(time.Second)
	r.stop(t, a)
	r.stop(t, b)
	for _, s := range r.clusterSessions(t, file) {
		if s.ID == liveS.ID {
			if s.State != "abandoned" || s.OutBytes == nil || int64(live.received()) > *s.OutBytes {
				t.Fatalf("the killed instance's session: %s, %v bytes recorded, %d received", s.State, s.OutBytes, live.received())
			}
			t.Logf("a's session live at the kill: %s, %d bytes received, %d recorded", s.State, live.received(), *s.OutBytes)
		}
	}
	code, out, errOut = runArgs("--home", a.home, "verify", "--db", r.dsn, "--cluster", file, "--witness", lw.VKey, "--json")
	if code != 0 {
		t.Fatalf("verify --cluster --witness: exit %d\n%s\n%s", code, out, errOut)
	}
	verdict := clusterVerdict(t, out)
	if !verdict.Intact || len(verdict.Members) != 2 {
		t.Fatalf("verify --cluster: %s", out)
	}
	for i, m := range verdict.Members {
		in := r.serves[i]
		if int(m.Member) != i+1 || m.Log != in.origin() || !m.Intact || m.Witnessed == nil || m.Witnessed.Size == 0 || m.Witnessed.Size != lw.Latest(in.origin()) {
			t.Fatalf("verify --cluster, member %d: %+v; the witness holds %d", i+1, m, lw.Latest(in.origin()))
		}
		t.Logf("member %d (%s): intact, %d leaves, witnessed up to %d (reads recorded by readers since: %d)", m.Member, m.Log, m.TreeSize, m.Witnessed.Size, m.TreeSize-m.Witnessed.ReadsFrom)
	}
	report := filepath.Join(r.dir, "evidence")
	code, out, errOut = runArgs("--home", a.home, "evidence", "--db", r.dsn, "--cluster", file, "--witness", lw.VKey,
		"--from", began.Add(-time.Minute).Format(time.RFC3339), "--to", ended.Format(time.RFC3339), "--out", report)
	if code != 0 {
		t.Fatalf("evidence --cluster: exit %d\n%s\n%s", code, out, errOut)
	}
	data, err := os.ReadFile(filepath.Join(report, "evidence.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev clusterReport
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Format != ClusterReportFormat || !ev.Intact || len(ev.Members) != 2 {
		t.Fatalf("evidence.json: format %q, intact %v, %d members", ev.Format, ev.Intact, len(ev.Members))
	}
	for i, m := range ev.Members {
		in := r.serves[i]
		if int(m.Member) != i+1 || m.Log != in.origin() || !m.Intact || m.Anchor == nil || m.Anchor.Basis != "witnesses" || m.Anchor.Level != "green" {
			t.Fatalf("evidence.json, member %d: %+v", i+1, m)
		}
		t.Logf("evidence, member %d (%s): intact, anchor %s on %s: %s", m.Member, m.Log, m.Anchor.Level, m.Anchor.Basis, m.Anchor.What)
	}
}
