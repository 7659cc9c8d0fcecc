package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/evidence"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/evidence-golden.{html,json} from the current report")

// goldenStart is when the golden journal's clock starts: a Monday
// morning in the past, so that the report's period is over.
var goldenStart = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// goldenPolicy is buildEvidenceJournal's policy: people with standing
// access to web-*, agents with grants to db-* that people approve.
func goldenPolicy() simOptions {
	return simOptions{
		Origin: "bastion.test/golden",
		Start:  goldenStart,
		Identities: []policy.IdentityMatcher{
			{Name: "agents", Match: policy.Match{Providers: []string{"corp"}, Subjects: []string{"agent-*"}}},
			{Name: "people", Match: policy.Match{Providers: []string{"corp"}, Subjects: []string{"alice", "bob"}}},
		},
		Roles: []policy.Role{
			{Name: "ops", Identities: []string{"people"}, Targets: []string{"web-*"}, Logins: []string{"deploy"}, MaxTTL: 10 * time.Minute, PTY: true, Shell: true},
			{Name: "db-grant", Identities: []string{"agents"}, Targets: []string{"db-*"}, Logins: []string{"postgres"}, MaxTTL: 10 * time.Minute,
				Access: policy.AccessGrant, Approval: &policy.Approval{Approvers: []string{"people"}, Approvals: 1, MaxDuration: time.Hour}},
		},
		KeepSigned:   true,
		FrameByFrame: true,
		// Checkpoints are kept at session ends and when the journal
		// closes, never on the writer's real-time ticker.
		Journal: recorder.Options{PublishInterval: 24 * 365 * time.Hour},
	}
}

// buildGoldenJournal writes buildEvidenceJournal's scenario on a clock
// that moves only when told, so that two runs write the same journal but
// for what stays random: session IDs (UUID v7), the keys "ca init" makes
// and what they sign, and the OpenID provider's loopback port. The grant
// ends on time by its store's own timer work (settleGrants), not by a
// real wait.
func buildGoldenJournal(t *testing.T) *evidenceJournal {
	t.Helper()
	b := newSimBastion(t, goldenPolicy())
	ej := &evidenceJournal{home: b.home, sponsor: "alice", refusedCommand: "rm -rf /var/lib/postgresql",
		reconstructedCmd: `psql -c "select 1" <script>alert(1)</script>`, agent: "agent-7@corp", human: "alice@corp"}
	ej.from = goldenStart.Add(-time.Minute)
	step := func(d time.Duration) { b.clock.Advance(d) }
	pol := b.policy()
	b.event(events.ServeStarted, recorder.Attrs{"pid": "4242", "api": "127.0.0.1:8443", "admin": "/run/bastion/admin.sock"})
	b.event(events.PolicyLoaded, withPolicyRecord(t, pol, recorder.Attrs{"trigger": "start", "hash": pol.Hash(), "roles": "2", "warnings": "0"}))
	step(5 * time.Minute)

	// The human: a standing certificate, an interactive session with a
	// masked card number, then the certificate revoked.
	alice := b.issue(b.token("alice", map[string]any{"email": "alice@example.com"}), "alice", netip.MustParseAddr("192.0.2.10"), "deploy")
	ej.revokedSerial = alice.Record.Serial
	step(20 * time.Second)
	exit0 := attrFrame(t, recorder.KindExit, recorder.Attrs{"status": "0"}, 200*time.Millisecond)
	s := b.session(alice, "192.0.2.10:50022", recorder.Attrs{"request": "shell", "login": "deploy", "target": "web-1", "term": "xterm",
		"policy.rule": "role:ops", "policy.hash": pol.Hash()}, []simFrame{
		attrFrame(t, recorder.KindPTY, recorder.Attrs{"term": "xterm", "cols": "80", "rows": "24"}, 0),
		{recorder.KindOutput, []byte("$ "), 300 * time.Millisecond},
		{recorder.KindInput, []byte("psql -c \"select 1\" <script>alert(1)</script>\r"), 4 * time.Second},
		{recorder.KindOutput, []byte("card 4111********1111\r\n"), 700 * time.Millisecond},
		attrFrame(t, recorder.KindMask, recorder.Attrs{"detector": "pan", "count": "2", "offset": "10"}, 0),
		{recorder.KindInput, []byte("exit\r"), 3 * time.Second},
		exit0,
	}, recorder.Attrs{"reason": "exited", "exit-status": "0"})
	ej.standingSession = s.ID().String()
	step(2 * time.Minute)
	if _, err := b.reg.Revoke(b.ctx, b.j, certauth.RevokeRequest{Serials: []uint64{alice.Record.Serial}, Reason: "laptop lost", By: "secops"}, b.clock.Now()); err != nil {
		t.Fatal(err)
	}

	// The agent: a grant requested, approved, used, and ended; a second
	// one denied; an exec refused; a token refused.
	step(10 * time.Minute)
	agentTok := b.token("agent-7", map[string]any{"on_behalf_of": ej.sponsor})
	g, err := b.grants.Request(b.ctx, grants.GrantAsk{Identity: b.identity(agentTok), Target: "db-1", Login: "postgres", Duration: 30 * time.Minute,
		Reason: "apply migration 42", Ticket: "CHG-1234"})
	if err != nil {
		t.Fatal(err)
	}
	ej.grant = g.ID
	step(3 * time.Minute)
	if _, err := b.grants.Approve(b.ctx, grants.GrantDecision{ID: g.ID, By: &policy.Identity{Provider: "corp", Issuer: b.oidc.Issuer(), Subject: "alice"},
		Comment: "ok, <b>watch</b> the locks"}); err != nil {
		t.Fatal(err)
	}
	step(time.Minute)
	agentTok = b.token("agent-7", map[string]any{"on_behalf_of": ej.sponsor})
	agent := b.issue(agentTok, "agent-7", netip.MustParseAddr("198.51.100.7"), "postgres")
	ej.agentSerial = agent.Record.Serial
	if agent.Record.Grant != g.ID || agent.Record.Sponsor != ej.sponsor {
		t.Fatalf("agent certificate: grant %q sponsor %q", agent.Record.Grant, agent.Record.Sponsor)
	}
	active, _ := b.grants.Get(g.ID)
	step(5 * time.Second)
	s = b.session(agent, "198.51.100.7:41000", recorder.Attrs{"request": "exec", "login": "postgres", "target": "db-1", "command": "psql -f migrate-42.sql",
		"policy.rule": "role:db-grant", "policy.hash": pol.Hash(), "policy.grant": g.ID, "policy.grant.end": active.End.UTC().Format(time.RFC3339)}, []simFrame{
		{recorder.KindExec, []byte("psql -f migrate-42.sql"), 0},
		{recorder.KindOutput, []byte("ALTER TABLE\n"), 1500 * time.Millisecond},
		exit0,
	}, recorder.Attrs{"reason": "exited", "exit-status": "0"})
	ej.grantSession = s.ID().String()
	step(30 * time.Second)
	b.event(events.RequestRefused, recorder.Attrs{"reason": "policy_denied", "request": "exec", "action": "exec", "user": "postgres@db-1",
		"target": "db-1", "login": "postgres", "identity": ej.agent, "serial": strconv.FormatUint(agent.Record.Serial, 10), "key-id": agent.Cert.KeyId,
		"client": "198.51.100.7:41002", "policy.rule": "role:db-grant", "detail": "command not allowed", "policy.hash": pol.Hash(), "command": ej.refusedCommand})
	step(time.Minute)
	b.event(events.AuthRefused, recorder.Attrs{"reason": "untrusted_ca", "user": "root@db-1", "client": "203.0.113.9:6000", "key.sha256": "SHA256:x"})
	step(time.Minute)
	if _, err := b.issuer.Issue(b.ctx, certauth.IssueRequest{Token: "not.a.token", PublicKey: "x"}); err == nil {
		t.Fatal("a bad token was accepted")
	}
	step(2 * time.Minute)
	d, err := b.grants.Request(b.ctx, grants.GrantAsk{Identity: b.identity(agentTok), Target: "db-2", Login: "postgres", Duration: time.Minute, Reason: "look around"})
	if err != nil {
		t.Fatal(err)
	}
	ej.denied = d.ID
	step(4 * time.Minute)
	if _, err := b.grants.Deny(b.ctx, grants.GrantDecision{ID: d.ID, By: &policy.Identity{Provider: "corp", Issuer: b.oidc.Issuer(), Subject: "bob"},
		Comment: "no ticket"}); err != nil {
		t.Fatal(err)
	}
	// The grant ends by itself, on time.
	b.clock.Set(active.End)
	b.settleGrants(grantIn(ej.grant, grants.GrantEnded))
	b.closeGrants()
	step(20 * time.Minute)
	b.event(events.ServeStopped, recorder.Attrs{"reason": "requested", "ssh.sessions-ended": "0"})
	step(time.Minute)
	b.event(events.ServeStarted, recorder.Attrs{"pid": "4243"})
	step(3 * time.Hour)
	// Started again with no stop: the bastion died.
	b.event(events.ServeStarted, recorder.Attrs{"pid": "4244"})
	step(time.Minute)
	ej.to = b.clock.Now().Add(time.Minute)
	b.close()
	return ej
}

// TestEvidenceGolden compares the report of the golden journal with
// testdata/evidence-golden.json and .html. The JSON is the report's,
// normalized (reportNormalizer); the HTML is the page rendered from that
// normalized JSON, after checking that the page the command wrote is the
// one rendered from its own JSON: so the HTML golden holds no value the
// JSON golden does not, and the reader's host and account never reach
// testdata. After a change to the report, review the difference and run
//
//	go test ./cmd/bastion -run Golden -update
func TestEvidenceGolden(t *testing.T) {
	t.Parallel()
	ej := buildGoldenJournal(t)
	out := filepath.Join(t.TempDir(), "report")
	_, raw := runEvidenceCmd(t, ej, out, "--now", ej.to.Format(time.RFC3339))
	page, err := os.ReadFile(filepath.Join(out, "evidence.html"))
	if err != nil {
		t.Fatal(err)
	}
	if rendered := renderReportJSON(t, raw); !bytes.Equal(rendered, page) {
		t.Fatalf("evidence.html is not the page rendered from evidence.json (a field the JSON lacks?):\n%s", lineDiff(page, rendered))
	}
	norm := newReportNormalizer(goldenStart.Add(-24*time.Hour), ej.to.Add(24*time.Hour), map[string]string{ej.home: "/HOME", out: "/OUT"})
	gotJSON := norm.normalize(raw)
	gotHTML := renderReportJSON(t, gotJSON)
	for _, f := range []struct {
		golden string
		got    []byte
	}{{"testdata/evidence-golden.json", gotJSON}, {"testdata/evidence-golden.html", gotHTML}} {
		if *updateGolden {
			if err := os.WriteFile(f.golden, f.got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(f.golden)
		if err != nil {
			t.Fatalf("%v (go test ./cmd/bastion -run Golden -update writes it)", err)
		}
		if !bytes.Equal(f.got, want) {
			t.Errorf("the report differs from %s (review, then go test ./cmd/bastion -run Golden -update):\n%s", f.golden, lineDiff(want, f.got))
		}
	}
}

// renderReportJSON renders the page of a report's JSON.
func renderReportJSON(t *testing.T, data []byte) []byte {
	t.Helper()
	var r evidence.Report
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decode the report: %v", err)
	}
	var b bytes.Buffer
	if err := evidence.WriteHTML(&b, &r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// reportNormalizer replaces in a report's JSON what differs from one run
// of the golden journal to the next with stable placeholders, numbered in
// order of appearance, so that equal values stay equal and different
// ones different:
//
//   - the test's temporary directories (the home, the output);
//   - session IDs (UUID v7: time and randomness);
//   - key material and what it signs: the journal's verifier key, and
//     base64 and hex strings of 40 characters or more (tree roots,
//     signatures, CA fingerprints);
//   - the OpenID provider's loopback port;
//   - times outside [lo, hi], the journal's test clock: those of the
//     report's own read, which the reader records on the real clock;
//   - the reader's account and host ("user", "uid", "host", "pid"
//     values equal to this process's), which the read records.
//
// The JSON keeps its order and layout; placeholders are valid values of
// their fields (UUIDs stay UUIDs, times stay times), so the normalized
// JSON still decodes into an evidence.Report.
type reportNormalizer struct {
	lo, hi  time.Time
	dirs    [][2]string // directory, placeholder; longest first
	reader  map[string]string
	classes map[string]map[string]string // class: value: placeholder
}

// newReportNormalizer normalizes times outside [lo, hi], and dirs, a
// placeholder for each directory.
func newReportNormalizer(lo, hi time.Time, dirs map[string]string) *reportNormalizer {
	n := &reportNormalizer{lo: lo, hi: hi, classes: map[string]map[string]string{}, reader: map[string]string{
		"uid": strconv.Itoa(os.Getuid()), "pid": strconv.Itoa(os.Getpid()),
	}}
	if h, err := os.Hostname(); err == nil {
		n.reader["host"] = h
	}
	if u, err := user.Current(); err == nil {
		n.reader["user"] = u.Username
	}
	for d, p := range dirs {
		n.dirs = append(n.dirs, [2]string{d, p})
	}
	slices.SortFunc(n.dirs, func(a, b [2]string) int { return len(b[0]) - len(a[0]) })
	return n
}

var (
	reUUID     = regexp.MustCompile(`\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)
	reVKey     = regexp.MustCompile(`([a-z0-9./-]+)\+[0-9a-f]{8}\+[A-Za-z0-9+/]{40,}={0,2}`)
	reBlob     = regexp.MustCompile(`(\\n)?([A-Za-z0-9+/]{40,}={0,2})`) // after a JSON "\n", the blob
	reLoopback = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+`)
	reTime     = regexp.MustCompile(`\b[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z\b`)
	reReader   = regexp.MustCompile(`"(user|uid|host|pid)": "([^"]*)"`)
)

// placeholder is the stable stand-in for value in class: format with the
// value's number (1 for the first one seen).
func (n *reportNormalizer) placeholder(class, format, value string) string {
	m := n.classes[class]
	if m == nil {
		m = map[string]string{}
		n.classes[class] = m
	}
	p, ok := m[value]
	if !ok {
		p = fmt.Sprintf(format, len(m)+1)
		m[value] = p
	}
	return p
}

func (n *reportNormalizer) normalize(data []byte) []byte {
	s := string(data)
	for _, d := range n.dirs {
		s = strings.ReplaceAll(s, d[0], d[1])
	}
	s = reVKey.ReplaceAllStringFunc(s, func(k string) string {
		return reVKey.ReplaceAllString(k, "$1") + n.placeholder("vkey", "+KEY%d", k)
	})
	s = reUUID.ReplaceAllStringFunc(s, func(id string) string {
		return n.placeholder("uuid", "00000000-0000-7000-8000-%012d", id)
	})
	s = reBlob.ReplaceAllStringFunc(s, func(b string) string {
		m := reBlob.FindStringSubmatch(b)
		return m[1] + n.placeholder("blob", "BLOB%d", m[2])
	})
	s = reLoopback.ReplaceAllString(s, "http://127.0.0.1:PORT")
	s = reTime.ReplaceAllStringFunc(s, func(ts string) string {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || !t.Before(n.lo) && !t.After(n.hi) {
			return ts
		}
		return n.placeholder("time", "2000-01-01T00:00:%02dZ", ts)
	})
	s = reReader.ReplaceAllStringFunc(s, func(kv string) string {
		m := reReader.FindStringSubmatch(kv)
		if v, ok := n.reader[m[1]]; ok && v == m[2] {
			return fmt.Sprintf("%q: %q", m[1], "READER-"+strings.ToUpper(m[1]))
		}
		return kv
	})
	return []byte(s)
}

// lineDiff shows where got first differs from want, with a few lines
// around it.
func lineDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "first difference at line %d (want %d lines, got %d)\n", i+1, len(w), len(g))
	for _, side := range []struct {
		name  string
		lines []string
	}{{"want", w}, {"got", g}} {
		for k := max(i-2, 0); k < min(i+4, len(side.lines)); k++ {
			fmt.Fprintf(&b, "%s %4d: %s\n", side.name, k+1, side.lines[k])
		}
	}
	return b.String()
}
