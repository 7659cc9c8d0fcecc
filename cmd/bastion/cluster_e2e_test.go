package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bastionhq/bastion/bastion/console/consoletest"
	"github.com/bastionhq/bastion/bastion/sshdtest"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/cluster"
	"github.com/bastionhq/bastion/storage/postgres/pgtest"
)

// clusterPolicy: people with standing access to a command target, and an
// agent whose access to it takes a grant a person approves.
func clusterPolicy(login string) string {
	return fmt.Sprintf(`
identity "people" {
  providers = ["dev"]
  subjects  = ["alice", "bob"]
}
identity "agents" {
  providers = ["dev"]
  subjects  = ["agent-1"]
}
# The web console: people may look (and approve).
auditors = ["people"]
role "box" {
  identities = ["people"]
  targets    = ["box"]
  logins     = [%[1]q]
  shell      = true
}
role "granted" {
  identities = ["agents"]
  targets    = ["box"]
  logins     = [%[1]q]
  access     = "grant"
  shell      = true
  approval {
    approvers    = ["people"]
    max_duration = "1h"
  }
}
`, login)
}

// TestClusterTwoMembers runs two serve instances on one PostgreSQL
// database as one bastion, with real ssh clients through each one's front
// door: their serials differ and carry their member IDs; a grant approved
// through B lets a session through A; a revocation through A ends a live
// session on B within 2 s (measured), B's end leaf names A's log and
// leaf, and B's KRL lists the serial; "sessions kill" works from either
// instance; a member whose cluster file gives another member a wrong key
// applies nothing of that member's log and says so; serve refuses to
// start when it is not a member, or with a cluster file and a SQLite
// journal.
func TestClusterTwoMembers(t *testing.T) {
	t.Parallel()
	sshBin := sshdtest.Need(t, "ssh")
	ctx := context.Background()
	login := "root"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	dsn := pgtest.Start(t, pgtest.Options{}).NewDatabase(t)
	dir := t.TempDir()
	homeA, homeB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	const logA, logB = "a.example/journal", "b.example/journal"
	if code, _, errOut := cli(ctx, homeA, "ca", "init", "--origin", logA); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	if code, _, errOut := cli(ctx, homeB, "ca", "init", "--origin", logB, "--join", homeA); code != 0 {
		t.Fatalf("ca init --join: %s", errOut)
	}
	pub := func(home string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(home, "journal.pub"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	members := fmt.Sprintf("1 %s\n2 %s\n", pub(homeA), pub(homeB))
	policyFile := filepath.Join(dir, "policy.hcl")
	if err := os.WriteFile(policyFile, []byte(clusterPolicy(login)), 0o600); err != nil {
		t.Fatal(err)
	}
	config := func(home, journal, extra string) string {
		t.Helper()
		os.MkdirAll(home, 0o700)
		f := filepath.Join(home, "bastion.hcl")
		text := fmt.Sprintf("home = %q\njournal = %q\npolicy = %q\napi { listen = \"127.0.0.1:0\" }\nssh { listen = \"127.0.0.1:0\" }\ntarget \"box\" { command = [\"/bin/sh\"] }\n%s", home, journal, policyFile, extra)
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, h := range []string{homeA, homeB} {
		if err := os.WriteFile(filepath.Join(h, cluster.File), []byte(members), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Refusals before anything is served: a home the cluster file does
	// not list, and a cluster file named beside a SQLite journal.
	homeX := filepath.Join(dir, "x")
	if code, _, errOut := cli(ctx, homeX, "ca", "init", "--origin", "x.example/journal", "--join", homeA); code != 0 {
		t.Fatalf("ca init --join: %s", errOut)
	}
	clusterFile := filepath.Join(homeA, cluster.File)
	if code, _, errOut := cli(ctx, homeX, "serve", "--dev", "--config", config(homeX, dsn, fmt.Sprintf("cluster = %q\n", clusterFile))); code == 0 || !strings.Contains(errOut, "not a member of the cluster") {
		t.Fatalf("serve of a home the cluster file does not list: %d %s", code, errOut)
	}
	if code, _, errOut := cli(ctx, homeX, "serve", "--dev", "--config", config(homeX, "journal.db", fmt.Sprintf("cluster = %q\n", clusterFile))); code == 0 || !strings.Contains(errOut, "SQLite") {
		t.Fatalf("serve with a cluster file and a SQLite journal: %d %s", code, errOut)
	}

	var logOfA, logOfB lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("A's log:\n%s\nB's log:\n%s", logOfA.String(), logOfB.String())
		}
	})
	spA, _ := startDevServe(t, config(homeA, dsn, ""), &logOfA)
	spB, devB := startDevServe(t, config(homeB, dsn, ""), &logOfB)
	dirA, dirB := filepath.Join(dir, "ca"), filepath.Join(dir, "cb")
	os.MkdirAll(dirA, 0o700)
	os.MkdirAll(dirB, 0o700)
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	viaA := sshClient{bin: sshBin, port: port(spA.ssh), known: filepath.Join(dirA, "known_hosts")}
	viaB := sshClient{bin: sshBin, port: port(spB.ssh), known: filepath.Join(dirB, "known_hosts")}
	box := login + "@box@127.0.0.1"

	// Serials: each member's carry its ID.
	aliceA, bobB := devTokenFile(t, homeA, dirA, "alice"), devTokenFile(t, homeB, dirB, "bob")
	keyA, serialA := devCert(t, spA, dirA, "alice", aliceA)
	keyB, serialB := devCert(t, spB, dirB, "alice", devTokenFile(t, homeB, dirB, "alice"))
	if id, _ := recorder.SplitNumber(serialA); id != 1 {
		t.Errorf("A issued serial %d (member %d), want member 1's", serialA, id)
	}
	if id, _ := recorder.SplitNumber(serialB); id != 2 {
		t.Errorf("B issued serial %d (member %d), want member 2's", serialB, id)
	}
	if serialA == serialB {
		t.Errorf("A and B issued the same serial %d", serialA)
	}
	// A certificate of A's works through B's front door at once.
	if out, errOut, err := viaB.run(keyA, "", box, "echo cross-ok"); err != nil || !strings.Contains(out, "cross-ok") {
		t.Fatalf("A's certificate through B: %v %q %q", err, out, errOut)
	}

	// A grant requested through A, approved through B, used through A.
	agentA := devTokenFile(t, homeA, dirA, "agent-1")
	grantsCLI := func(home string, sp *serveProcess, tokenFile string, args ...string) (int, string, string) {
		args = append(append([]string{"grants"}, args...), "--server", sp.api, "--ca-fingerprint", sp.fingerprint, "--token-file", tokenFile, "--json")
		return cli(ctx, home, args...)
	}
	code, out, errOut := grantsCLI(homeA, spA, agentA, "request", "--target", "box", "--login", login, "--duration", "10m", "--reason", "cluster test")
	if code != 0 {
		t.Fatalf("grants request through A: %d %s %s", code, out, errOut)
	}
	var g map[string]any
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatal(err)
	}
	grantID := jsonString(g, "id")
	if n, err := strconv.ParseUint(strings.TrimPrefix(grantID, "G-"), 10, 64); err != nil || n>>recorder.MemberShift != 1 {
		t.Errorf("grant ID %q does not carry member 1's ID", grantID)
	}
	// At once: B reads the other logs for a grant it does not know.
	if code, out, errOut := grantsCLI(homeB, spB, bobB, "approve", grantID); code != 0 || !strings.Contains(out, `"active"`) {
		t.Fatalf("grants approve through B of %s, requested through A: %d %s %s", grantID, code, out, errOut)
	}
	var keyGrant string
	waitFor(t, 5*time.Second, "A to issue the agent a certificate under the grant approved through B", func() bool {
		code, out, _ := grantsCLI(homeA, spA, agentA, "list")
		return code == 0 && strings.Contains(out, `"active"`)
	})
	keyGrant, _ = devCert(t, spA, dirA, "agent", agentA)
	if out, errOut, err := viaA.run(keyGrant, "", box, "echo granted-ok"); err != nil || !strings.Contains(out, "granted-ok") {
		t.Fatalf("a session through A under the grant approved through B: %v %q %q", err, out, errOut)
	}

	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	lastLeaf := func(log string, typ recorder.LeafType) (int64, *recorder.Leaf) {
		t.Helper()
		var idx int64
		var data []byte
		err := db.QueryRow(ctx, `SELECT l.idx, l.data FROM bastion.leaves l JOIN bastion.logs g ON g.id = l.log_id
			WHERE g.name = $1 AND l.type = $2 ORDER BY l.idx DESC LIMIT 1`, log, int64(typ)).Scan(&idx, &data)
		if err != nil {
			t.Fatalf("last %s leaf of %s: %v", typ, log, err)
		}
		l, err := recorder.ParseLeaf(data)
		if err != nil {
			t.Fatal(err)
		}
		return idx, l
	}
	lastRefusal := func(log string) string {
		t.Helper()
		var data []byte
		if err := db.QueryRow(ctx, `SELECT l.data FROM bastion.leaves l JOIN bastion.logs g ON g.id = l.log_id
			WHERE g.name = $1 AND l.event = 'ssh.auth_refused' ORDER BY l.idx DESC LIMIT 1`, log).Scan(&data); err != nil {
			t.Fatalf("last ssh.auth_refused of %s: %v", log, err)
		}
		l, err := recorder.ParseLeaf(data)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs["reason"]
	}
	liveID := func(log string) string {
		t.Helper()
		_, l := lastLeaf(log, recorder.LeafSessionStart)
		return uuid.UUID(l.Session).String()
	}

	// The grant revoked through B ends the session under it on A; A's
	// end leaf names B's log and leaf.
	underGrant := viaA.start(t, keyGrant, "ready-g", box, "echo ready-g; sleep 60")
	if code, out, errOut := grantsCLI(homeB, spB, bobB, "revoke", grantID); code != 0 {
		t.Fatalf("grants revoke through B: %d %s %s", code, out, errOut)
	}
	underGrant.wait(t, 5*time.Second)
	var revokedAt int64
	if err := db.QueryRow(ctx, `SELECT l.idx FROM bastion.leaves l JOIN bastion.logs g ON g.id = l.log_id
		WHERE g.name = $1 AND l.event = 'grant.revoked' ORDER BY l.idx DESC LIMIT 1`, logB).Scan(&revokedAt); err != nil {
		t.Fatalf("B's grant.revoked leaf: %v", err)
	}
	if _, end := lastLeaf(logA, recorder.LeafSessionEnd); end.Attrs["reason"] != "grant-ended" || end.Attrs["grant"] != grantID ||
		end.Attrs["grant.log"] != logB || end.Attrs["grant.leaf"] != strconv.FormatInt(revokedAt, 10) {
		t.Errorf("A's end leaf of the session under the grant revoked through B: %v, want grant.log %s, grant.leaf %d", end.Attrs, logB, revokedAt)
	}

	// A revocation through A ends a live session on B within 2 s.
	live := viaB.start(t, keyB, "ready-b", box, "echo ready-b; sleep 60")
	t0 := time.Now()
	code, out, errOut = cli(ctx, homeA, "certs", "revoke", "--serial", strconv.FormatUint(serialB, 10), "--reason", "cluster test", "--json")
	if code != 0 {
		t.Fatalf("certs revoke through A: %d %s %s", code, out, errOut)
	}
	live.wait(t, 5*time.Second)
	took := time.Since(t0)
	t.Logf("a revocation through A ended the session on B %v after the revoke command started", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the session on B ended %v after the revocation through A, more than 2 s", took)
	}
	var rev map[string]any
	if err := json.Unmarshal([]byte(out), &rev); err != nil {
		t.Fatalf("certs revoke --json: %v: %s", err, out)
	}
	revLeaf := fmt.Sprint(jsonAt(rev, "leaf"))
	_, end := lastLeaf(logB, recorder.LeafSessionEnd)
	if end.Attrs["reason"] != "revoked" || end.Attrs["revocation.log"] != logA || end.Attrs["revocation.leaf"] != revLeaf {
		t.Errorf("B's end leaf: %v, want reason revoked, revocation.log %s, revocation.leaf %s", end.Attrs, logA, revLeaf)
	}
	waitFor(t, 5*time.Second, "B's KRL to list the serial revoked through A", func() bool {
		out, _ := exec.Command("ssh-keygen", "-Q", "-f", filepath.Join(homeB, "revoked.krl"), keyB+"-cert.pub").CombinedOutput()
		return strings.Contains(string(out), "REVOKED")
	})

	// sessions kill from either instance: each asks the other, which
	// holds the session.
	for _, c := range []struct {
		name          string
		via           sshClient
		key, holder   string
		from, fromLog string
	}{
		{"from B, held by A", viaA, keyA, logA, homeB, logB},
		{"from A, held by B", viaB, keyB, logB, homeA, logA},
	} {
		key := c.key
		if c.holder == logB {
			key, _ = devCert(t, spB, dirB, "alice2", devTokenFile(t, homeB, dirB, "alice"))
		}
		l := c.via.start(t, key, "ready-kill", box, "echo ready-kill; sleep 60")
		id := liveID(c.holder)
		if c.holder == logA {
			// B's web console lists A's session, as A's log shows it
			// open, and follows it from A's log; the read is journaled in
			// B's log, naming A's log.
			consoleFollows(t, spB, devB, id)
			if _, leaf := lastLeaf(logB, recorder.LeafEvent); leaf.Event != recorder.EventJournalAccessed || leaf.Attrs["action"] != "play" ||
				leaf.Attrs["session"] != id || leaf.Attrs["logs"] != logA || leaf.Attrs["identity"] != "alice@dev" || leaf.Attrs["via"] != "console" {
				t.Errorf("B's leaf for following A's session from its console: %s %v", leaf.Event, leaf.Attrs)
			}
		}
		code, out, errOut := cli(ctx, c.from, "sessions", "kill", "--reason", "cluster kill", id)
		if code != 0 || !strings.Contains(out, "held by member "+c.holder) {
			t.Fatalf("sessions kill %s: %d\n%s\n%s", c.name, code, out, errOut)
		}
		l.wait(t, 5*time.Second)
		reqIdx, req := lastLeaf(c.fromLog, recorder.LeafEvent)
		_, end := lastLeaf(c.holder, recorder.LeafSessionEnd)
		if req.Event != "session.kill_requested" || req.Attrs["session"] != id {
			// Other events may follow; find the request by its session.
			var data []byte
			err := db.QueryRow(ctx, `SELECT l.idx, l.data FROM bastion.leaves l JOIN bastion.logs g ON g.id = l.log_id
				WHERE g.name = $1 AND l.event = 'session.kill_requested' ORDER BY l.idx DESC LIMIT 1`, c.fromLog).Scan(&reqIdx, &data)
			if err != nil {
				t.Fatalf("%s: no kill request in %s: %v", c.name, c.fromLog, err)
			}
		}
		if end.Attrs["reason"] != "killed" || end.Attrs["kill.log"] != c.fromLog || end.Attrs["kill.leaf"] != strconv.FormatInt(reqIdx, 10) || uuid.UUID(end.Session).String() != id {
			t.Errorf("%s: the holder's end leaf %v does not name the request (%s leaf %d)", c.name, end.Attrs, c.fromLog, reqIdx)
		}
	}

	// B restarts: its own log's decisions on A's grant, and A's
	// revocation of B's certificate, are in force again once it has read
	// A's log; A's certificates work through it.
	spB.cmd.Process.Signal(syscall.SIGTERM)
	if err := spB.cmd.Wait(); err != nil {
		t.Fatalf("B stopped: %v\n%s", err, logOfB.String())
	}
	spB, _ = startDevServe(t, config(homeB, dsn, ""), &logOfB)
	viaB.port = port(spB.ssh)
	devCert(t, spB, dirB, "alice4", devTokenFile(t, homeB, dirB, "alice")) // known_hosts for its new port
	if _, errOut, err := viaB.run(keyB, "", box, "echo must-not-run"); err == nil || !strings.Contains(errOut, "Permission denied") {
		t.Errorf("after B's restart, the certificate revoked through A works through B: %q", errOut)
	} else if r := lastRefusal(logB); r != "revoked" {
		t.Errorf("after B's restart, the certificate revoked through A is refused by B as %q, not revoked", r)
	}
	if out, errOut, err := viaB.run(keyA, "", box, "echo after-restart"); err != nil || !strings.Contains(out, "after-restart") {
		t.Errorf("after B's restart, A's certificate through B: %v %q %q", err, out, errOut)
	}
	if code, out, errOut := grantsCLI(homeB, spB, bobB, "list"); code != 0 || !strings.Contains(out, grantID) || !strings.Contains(out, `"revoked"`) {
		t.Errorf("after B's restart, B's grants: %d %s %s", code, out, errOut)
	}

	// A third member whose cluster file gives A a wrong key: it applies
	// nothing of A's log, and says so.
	homeC := filepath.Join(dir, "c")
	if code, _, errOut := cli(ctx, homeC, "ca", "init", "--origin", "c.example/journal", "--join", homeA); code != 0 {
		t.Fatalf("ca init --join: %s", errOut)
	}
	wrong := filepath.Join(dir, "wrong")
	if code, _, errOut := cli(ctx, wrong, "ca", "init", "--origin", logA); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	if err := os.WriteFile(filepath.Join(homeC, cluster.File), []byte(fmt.Sprintf("1 %s\n2 %s\n3 %s\n", pub(wrong), pub(homeB), pub(homeC))), 0o644); err != nil {
		t.Fatal(err)
	}
	var logOfC lockedBuffer
	spC, _ := startDevServe(t, config(homeC, dsn, ""), &logOfC)
	waitFor(t, 5*time.Second, "C to say A's log does not verify", func() bool {
		return strings.Contains(logOfC.String(), "does not verify with its key in the cluster file") && strings.Contains(logOfC.String(), logA)
	})
	dirC := filepath.Join(dir, "cc")
	os.MkdirAll(dirC, 0o700)
	devCert(t, spC, dirC, "known", devTokenFile(t, homeC, dirC, "alice")) // for known_hosts
	viaC := sshClient{bin: sshBin, port: port(spC.ssh), known: filepath.Join(dirC, "known_hosts")}
	if _, errOut, err := viaC.run(keyA, "", box, "echo must-not-run"); err == nil || !strings.Contains(errOut, "Permission denied") {
		t.Errorf("C let a certificate of A's log, which it does not verify, through: %q", errOut)
	} else if r := lastRefusal("c.example/journal"); r != "serial_not_issued" {
		t.Errorf("C refused A's certificate as %q, not as a serial it does not know", r)
	}
	// B's log verifies: a certificate B issued works through C.
	keyB3, _ := devCert(t, spB, dirB, "alice3", devTokenFile(t, homeB, dirB, "alice"))
	if out, errOut, err := viaC.run(keyB3, "", box, "echo via-c"); err != nil || !strings.Contains(out, "via-c") {
		t.Errorf("B's certificate through C: %v %q %q", err, out, errOut)
	}
}

// consoleFollows signs in to sp's web console through its development
// provider (at dev) as alice, an auditor, checks that its live list shows
// session id as another member's (member 1, bytes unknown, a follow
// link), and follows it: the stream, read from member 1's log, holds the
// session's output.
func consoleFollows(t *testing.T, sp *serveProcess, dev, id string) {
	t.Helper()
	b := consoletest.Browser(sp.fingerprint)
	defer b.CloseIdleConnections()
	if resp, page, err := consoletest.SignIn(b, sp.api+"/ui/", dev, "alice"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("sign in to B's console: %v %v\n%s", err, resp, page)
	}
	var live struct {
		Rows []struct {
			ID        string `json:"id"`
			Identity  string `json:"identity"`
			Bytes     int64  `json:"bytes"`
			Member    uint16 `json:"member"`
			FollowURL string `json:"follow_url"`
		} `json:"rows"`
	}
	follow := ""
	waitFor(t, 5*time.Second, "B's console to list A's session "+id, func() bool {
		resp, err := b.Get(sp.api + "/ui/live.json")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := consoletest.ReadPage(resp)
		if resp.StatusCode != 200 || json.Unmarshal([]byte(page), &live) != nil {
			t.Fatalf("B's live.json: %d\n%s", resp.StatusCode, page)
		}
		for _, r := range live.Rows {
			if r.ID == id {
				follow = r.FollowURL
				if r.Member != 1 || r.Bytes != -1 || r.Identity != "alice@dev" || r.FollowURL != "/ui/sessions/"+id+"/live" {
					t.Errorf("B's console lists A's session as %+v", r)
				}
			}
		}
		return follow != ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sp.api+follow+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Jar: b.Jar, Transport: b.Transport}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("following A's session from B's console: %d %s", resp.StatusCode, body)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") && strings.Contains(line, "ready-kill") {
			return
		}
	}
	t.Fatalf("the stream from B's console ended without A's session's output: %v", sc.Err())
}
