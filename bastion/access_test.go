package bastion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// staffConfig names operators and auditors in policy, maps the OS account
// the tests run as to an operator, and has a grant-only role to revoke.
const staffConfig = e2eConfigBase + `
identity "ops" {
  providers = ["corp"]
  subjects  = ["alice"]
}
identity "audit" {
  providers = ["corp"]
  subjects  = ["carol"]
}
identity "agents" {
  providers = ["corp"]
  subjects  = ["agent-*"]
}
operators = ["ops"]
auditors  = ["audit"]
operator_accounts = { "%ACCOUNT%" = "alice@corp" }
role "db" {
  identities = ["agents"]
  targets    = ["*"]
  logins     = ["deploy"]
  access     = "grant"
  approval { approvers = ["ops"] }
}
`

func startStaffServer(t *testing.T, mapAccount bool) (*testServer, func(sub string) string) {
	t.Helper()
	ts, m := startStaffServerOP(t, mapAccount)
	return ts, func(sub string) string { return mint(t, m, humanClaims(m, sub)) }
}

func startStaffServerOP(t *testing.T, mapAccount bool) (*testServer, *mockoidc.MockOIDC) {
	t.Helper()
	m := startOP(t)
	account := "nobody-maps-this"
	if mapAccount {
		account = currentLogin(t)
	}
	return startServer(t, m, strings.ReplaceAll(staffConfig, "%ACCOUNT%", account)), m
}

// socketDo sends a raw request to a unix socket and returns the status and
// the error the server gave.
func socketDo(t *testing.T, sock, method, path string, body io.Reader) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequest(method, "http://bastion"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e adminErrorResponse
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error
}

// A read recorded through the access socket names the reader as the
// kernel reports it, and the person a token proves, with their roles in
// policy; a token that does not verify is refused and nothing journaled.
func TestAccessSocketRecordsReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ts, token := startStaffServer(t, false)
	sock := ts.AccessSocket()
	if sock != ts.home+"/journal.db.sock" {
		t.Fatalf("access socket %q, want beside the journal", sock)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("access socket without a group: %v, mode %v, want 0600", err, fi.Mode())
	}
	// Run journals both as it starts.
	started, loaded := ts.events(t, EventServeStarted), ts.events(t, EventPolicyLoaded)
	for deadline := time.Now().Add(10 * time.Second); (len(started) == 0 || len(loaded) == 0) && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		started, loaded = ts.events(t, EventServeStarted), ts.events(t, EventPolicyLoaded)
	}
	if len(started) != 1 {
		t.Fatalf("serve.started: %v", started)
	}
	if len(loaded) == 0 || loaded[0]["operators.json"] != `[{"name":"ops","providers":["corp"],"subjects":["alice"],"sponsors":[],"claims":{}}]` ||
		loaded[0]["auditors.json"] != `[{"name":"audit","providers":["corp"],"subjects":["carol"],"sponsors":[],"claims":{}}]` ||
		!strings.Contains(loaded[0]["text"], `operators = ["ops"]`) {
		t.Errorf("policy.loaded: %v", loaded)
	}
	if started[0]["access"] != sock || started[0]["access.group"] != "" || started[0]["operator_accounts"] != "nobody-maps-this=alice@corp" {
		t.Errorf("serve.started: %v", started[0])
	}
	res, err := RecordAccess(ctx, sock, AccessRequest{Action: "play", Attrs: map[string]string{"session": "0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d"}, User: "mallory"})
	if err != nil || res.Verified != VerifiedNone || res.Identity != "" {
		t.Fatalf("RecordAccess: %+v, %v", res, err)
	}
	host, _ := os.Hostname()
	evs := ts.events(t, recorder.EventJournalAccessed)
	if len(evs) != 1 {
		t.Fatalf("journal.accessed events: %v", evs)
	}
	want := recorder.Attrs{
		"action": "play", "session": "0190b3c4-1f2e-7a6b-8c9d-0e1f2a3b4c5d", "via": ViaServe,
		"uid": strconv.Itoa(os.Getuid()), "user": currentLogin(t), "pid": strconv.Itoa(os.Getpid()), "host": host,
		"identity.verified": VerifiedNone, "says.user": "mallory",
	}
	if fmt.Sprint(evs[0]) != fmt.Sprint(want) {
		t.Errorf("journal.accessed = %v\nwant %v", evs[0], want)
	}

	// An auditor's token: the identity, its issuer and role.
	res, err = RecordAccess(ctx, sock, AccessRequest{Action: "verify", Token: token("carol")})
	if err != nil || res.Verified != VerifiedToken || res.Identity != "carol@corp" || res.Roles != "auditor" {
		t.Fatalf("RecordAccess with a token: %+v, %v", res, err)
	}
	evs = ts.events(t, recorder.EventJournalAccessed)
	if e := evs[1]; e["identity"] != "carol@corp" || e["identity.verified"] != VerifiedToken || e["identity.issuer"] == "" || e["reader.role"] != "auditor" || e["action"] != "verify" {
		t.Errorf("journal.accessed with a token = %v", e)
	}
	// An operator who is no auditor; an identity that is neither.
	if res, err := RecordAccess(ctx, sock, AccessRequest{Action: "show", Token: token("alice")}); err != nil || res.Roles != "operator" {
		t.Errorf("alice: %+v, %v", res, err)
	}
	if res, err := RecordAccess(ctx, sock, AccessRequest{Action: "show", Token: token("dave")}); err != nil || res.Roles != "" || res.Identity != "dave@corp" {
		t.Errorf("dave: %+v, %v", res, err)
	}

	// A bad token refuses the read: nothing is journaled.
	before := len(ts.events(t, recorder.EventJournalAccessed))
	for _, bad := range []string{"not-a-token", token("carol")[:40] + "x" + token("carol")[41:]} {
		_, err = RecordAccess(ctx, sock, AccessRequest{Action: "play", Token: bad})
		if err == nil || !strings.Contains(err.Error(), "the token does not verify") {
			t.Errorf("a bad token: %v", err)
		}
	}
	if n := len(ts.events(t, recorder.EventJournalAccessed)); n != before {
		t.Errorf("refused reads were journaled: %d events, want %d", n, before)
	}
}

// Malformed requests get a clear error and journal nothing.
func TestAccessSocketBadRequests(t *testing.T) {
	t.Parallel()
	ts, _ := startStaffServer(t, false)
	sock := ts.AccessSocket()
	hexa := strings.Repeat("a", 64)
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"empty body", "POST", "/v1/access", "", 400, "bad request: the body is empty"},
		{"not JSON", "POST", "/v1/access", "action=play", 400, "bad request: invalid character"},
		{"a JSON array", "POST", "/v1/access", `["play"]`, 400, "bad request: json: cannot unmarshal array"},
		{"unknown field", "POST", "/v1/access", `{"action":"play","uid":"0"}`, 400, `bad request: json: unknown field "uid"`},
		{"two objects", "POST", "/v1/access", `{"action":"play"}{"action":"play"}`, 400, "bad request: more than one JSON value"},
		{"trailing garbage", "POST", "/v1/access", `{"action":"play"} x`, 400, "bad request:"},
		{"truncated", "POST", "/v1/access", `{"action":"pl`, 400, "bad request: unexpected EOF"},
		{"wrong type", "POST", "/v1/access", `{"action":7}`, 400, "bad request: json: cannot unmarshal number"},
		{"unknown action", "POST", "/v1/access", `{"action":"delete"}`, 400, `bad request: action "delete" is not one of play, export`},
		{"no action", "POST", "/v1/access", `{}`, 400, `bad request: action "" is not one of`},
		{"a who attribute", "POST", "/v1/access", `{"action":"play","attrs":{"uid":"0"}}`, 400, `bad request: attribute "uid" is not one a reader may set`},
		{"via set by the reader", "POST", "/v1/access", `{"action":"play","attrs":{"via":"serve"}}`, 400, `attribute "via" is not one a reader may set`},
		{"oversize", "POST", "/v1/access", `{"action":"play","user":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "bad request: the body is larger than 1048576 bytes"},
		{"evidence without digests", "POST", "/v1/evidence", `{"attrs":{"out":"/tmp/r"}}`, 400, "sha256.html must be the file's SHA-256"},
		{"evidence with a bad digest", "POST", "/v1/evidence", `{"attrs":{"sha256.html":"` + strings.ToUpper(hexa) + `","sha256.json":"` + hexa + `"}}`, 400, "sha256.html must be"},
		{"evidence digest with a line break", "POST", "/v1/evidence", `{"attrs":{"sha256.html":"` + hexa + `","sha256.json":"` + hexa[:63] + `\nleaf 1"}}`, 400, "sha256.json must be"},
		{"evidence's action attribute", "POST", "/v1/evidence", `{"attrs":{"action":"x","sha256.html":"` + hexa + `","sha256.json":"` + hexa + `"}}`, 400, `attribute "action" is not one`},
		{"GET", "GET", "/v1/access", "", 405, "method GET is not allowed: use POST"},
		{"unknown path", "POST", "/v1/revoke", `{}`, 404, "no such endpoint"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, msg := socketDo(t, sock, c.method, c.path, strings.NewReader(c.body))
			if status != c.status || !strings.Contains(msg, c.want) {
				t.Errorf("%d %q, want %d and %q", status, msg, c.status, c.want)
			}
		})
	}
	if evs := ts.events(t, recorder.EventJournalAccessed); len(evs) != 0 {
		t.Errorf("bad requests journaled reads: %v", evs)
	}
	if evs := ts.events(t, recorder.EventEvidenceGenerated); len(evs) != 0 {
		t.Errorf("bad requests journaled reports: %v", evs)
	}
	// The admin socket's requests are read the same way.
	admin := ts.home + "/" + AdminSocket
	for _, c := range []struct {
		path, body string
		status     int
		want       string
	}{
		{"/v1/revoke", `{"identity":"a@corp","uid":0}`, 400, `bad revocation request: json: unknown field "uid"`},
		{"/v1/revoke", `{"identity":"a@corp","attrs":{"operator":"x"}}`, 400, `bad revocation request: json: unknown field "attrs"`},
		{"/v1/sessions/kill", `{"id":"` + strings.Repeat("0", 1<<20) + `"}`, 413, "bad kill request: the body is larger than 1048576 bytes"},
		{"/v1/grants/revoke", ``, 400, "bad grant revocation: the body is empty"},
		{"/v1/ca/rotated", `{"role":"user"} {}`, 400, "bad CA rotation record:"},
		{"/v1/ca/rotated", `{"role":"root","grace":"1h"}`, 400, `unknown CA role "root"`},
	} {
		status, msg := socketDo(t, admin, "POST", c.path, strings.NewReader(c.body))
		if status != c.status || !strings.Contains(msg, c.want) {
			t.Errorf("admin %s %.40q: %d %q, want %d and %q", c.path, c.body, status, msg, c.status, c.want)
		}
	}

	// Long values are kept on one line and cut.
	res, err := RecordAccess(context.Background(), sock, AccessRequest{Action: "search", Attrs: map[string]string{"targets": strings.Repeat("t,", 2000), "period.from": "2026\n\x1b[31m-01-01"}})
	if err != nil {
		t.Fatal(err)
	}
	evs := ts.events(t, recorder.EventJournalAccessed)
	if e := evs[0]; len(e["targets"]) > 1024 || !strings.HasSuffix(e["targets"], "(4000 bytes)") || e["period.from"] != "2026 [31m-01-01" || res.Leaf < 0 {
		t.Errorf("capped attributes: %q %q", e["targets"], e["period.from"])
	}
}

// A report recorded through the access socket gets an evidence.generated
// leaf and a note the journal's key signs over its index and digests.
func TestAccessSocketEvidence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ts, token := startStaffServer(t, false)
	h, j := strings.Repeat("1f", 32), strings.Repeat("e2", 32)
	res, err := RecordEvidence(ctx, ts.AccessSocket(), EvidenceRequest{Token: token("carol"), Attrs: map[string]string{
		"period.from": "2026-10-01T00:00:00Z", "period.to": "2026-11-01T00:00:00Z", "targets": "db1", "sample": "25", "seed": "7",
		"out": "/srv/reports/q4", "sha256.html": h, "sha256.json": j,
	}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := recorder.OpenEvidenceNote([]byte(res.Note), ts.key.Verifier)
	if err != nil {
		t.Fatalf("the note does not open with the journal's key: %v\n%s", err, res.Note)
	}
	if n.Leaf != res.Leaf || n.SHA256HTML != h || n.SHA256JSON != j || n.Origin != ts.key.Signer.Name() {
		t.Errorf("note %+v, leaf %d", n, res.Leaf)
	}
	evs := ts.events(t, recorder.EventEvidenceGenerated)
	if len(evs) != 1 {
		t.Fatalf("evidence.generated: %v", evs)
	}
	if e := evs[0]; e["sha256.html"] != h || e["sha256.json"] != j || e["out"] != "/srv/reports/q4" || e["sample"] != "25" || e["seed"] != "7" ||
		e["via"] != ViaServe || e["identity"] != "carol@corp" || e["reader.role"] != "auditor" || e["uid"] != strconv.Itoa(os.Getuid()) {
		t.Errorf("evidence.generated = %v", e)
	}
}

// Operator actions through the admin socket name the person: by token,
// by the account operator_accounts maps, or only the account; when the
// policy names operators, another identity is refused, journaled.
func TestAdminSocketNamesOperators(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ts, token := startStaffServer(t, false)
	me, pid := currentLogin(t), strconv.Itoa(os.Getpid())

	// By token: an operator.
	if _, _, err := AdminRevoke(ctx, ts.home, certauth.RevokeRequest{Identity: "agent-1@corp", Reason: "leak", By: "root"}, token("alice")); err != nil {
		t.Fatal(err)
	}
	r := ts.events(t, events.CertRevoked)
	if e := r[0]; e["operator"] != "alice@corp" || e["operator.verified"] != VerifiedToken || e["operator.issuer"] == "" || e["operator.uid"] != strconv.Itoa(os.Getuid()) ||
		e["operator.user"] != me || e["operator.pid"] != pid || e["by"] != fmt.Sprintf("alice@corp (token; uid %d %s, pid %s)", os.Getuid(), me, pid) {
		t.Errorf("cert.revoked by token: %v", e)
	}
	// Only the account: allowed, and said so.
	if _, _, err := AdminRevoke(ctx, ts.home, certauth.RevokeRequest{Identity: "agent-2@corp"}, ""); err != nil {
		t.Fatal(err)
	}
	r = ts.events(t, events.CertRevoked)
	if e := r[1]; e["operator"] != "" || e["operator.verified"] != VerifiedNone || e["operator.user"] != me {
		t.Errorf("cert.revoked by an account: %v", e)
	}
	// Not an operator, and a token that does not verify: refused and
	// journaled, nothing revoked.
	for _, c := range []struct{ token, want string }{{token("dave"), "not an operator: dave@corp is not one of the operators the policy names (ops)"}, {"garbage", "the token does not verify"}} {
		_, _, err := AdminRevoke(ctx, ts.home, certauth.RevokeRequest{Identity: "agent-3@corp"}, c.token)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("revoke with %.10s…: %v, want %q", c.token, err, c.want)
		}
	}
	if r := ts.events(t, events.CertRevoked); len(r) != 2 {
		t.Errorf("a refused revocation was journaled: %v", r)
	}
	refused := ts.events(t, EventAdminRefused)
	if len(refused) != 2 || refused[0]["action"] != "revoke" || refused[0]["identity"] != "agent-3@corp" || refused[0]["operator"] != "dave@corp" ||
		refused[0]["operator.verified"] != VerifiedToken || !strings.Contains(refused[0]["error"], "not an operator") ||
		refused[1]["operator"] != "" || refused[1]["operator.verified"] != "" || refused[1]["operator.uid"] == "" || !strings.Contains(refused[1]["error"], "does not verify") {
		t.Errorf("admin.refused: %v", refused)
	}

}

// With operator_accounts mapping the caller's account, operator actions
// name that person (verified by account): a grant's revocation, a kill's
// refusal, a CA rotation, which serve checks against the CA files.
func TestAdminSocketOperatorAccounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ts, m := startStaffServerOP(t, true)
	me := currentLogin(t)
	g, err := ts.client.RequestGrant(ctx, mint(t, m, agentClaims(m, "agent-9")), certauth.GrantRequest{Target: "db1", Login: "deploy", Duration: "10m", Reason: "look"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AdminRevokeGrant(ctx, ts.home, AdminGrantRevokeRequest{ID: g.ID, Comment: "not now", By: "root"}); err != nil {
		t.Fatal(err)
	}
	evs := ts.events(t, events.GrantRevoked)
	if e := evs[len(evs)-1]; e["by.kind"] != "operator" || e["operator"] != "alice@corp" || e["operator.verified"] != VerifiedAccount || e["operator.user"] != me ||
		!strings.HasPrefix(e["by"], "operator (alice@corp (account; uid ") {
		t.Errorf("grant.revoked = %v", e)
	}
	// A token wins over the account: here, one of somebody else, who is
	// not an operator.
	_, err = AdminKill(ctx, ts.home, AdminKillRequest{ID: "0190", Token: mint(t, m, humanClaims(m, "dave"))})
	if err == nil || !strings.Contains(err.Error(), "not an operator") {
		t.Errorf("kill by a non-operator: %v", err)
	}
	if r := ts.events(t, EventAdminRefused); len(r) != 1 || r[0]["action"] != "kill" || r[0]["session"] != "0190" || r[0]["operator"] != "dave@corp" {
		t.Errorf("admin.refused = %v", r)
	}
	// Without a token the account names alice, an operator: the kill is
	// allowed (and finds no live session).
	if _, err := AdminKill(ctx, ts.home, AdminKillRequest{ID: "0190"}); !errors.Is(err, ErrNoLiveSession) {
		t.Errorf("kill by alice's account: %v", err)
	}

	// A CA rotation, journaled through the server.
	old := ssh.FingerprintSHA256(ts.auth.Target.Signer.PublicKey())
	a, err := certauth.RotateAuthority(ts.home, certauth.RoleTarget, "", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req := AdminCARotatedRequest{Role: "target", OldFingerprint: old, NewFingerprint: ssh.FingerprintSHA256(a.Signer.PublicKey()), Algorithm: "ed25519", Grace: "1h0m0s", By: "root"}
	bad := req
	bad.NewFingerprint = old
	if _, err := AdminCARotated(ctx, ts.home, bad); err == nil || !strings.Contains(err.Error(), "nothing was journaled") {
		t.Errorf("a rotation the CA files do not show: %v", err)
	}
	leaf, err := AdminCARotated(ctx, ts.home, req)
	if err != nil {
		t.Fatal(err)
	}
	rot := ts.events(t, events.CARotated)
	if len(rot) != 1 {
		t.Fatalf("ca.rotated: %v", rot)
	}
	if e := rot[0]; e["role"] != "target" || e["old.fingerprint"] != old || e["new.fingerprint"] != req.NewFingerprint || e["algorithm"] != string(a.Algorithm()) ||
		e["grace"] != "1h0m0s" || e["via"] != ViaServe || e["uid"] != strconv.Itoa(os.Getuid()) || e["user"] != me || e["operator"] != "alice@corp" ||
		e["operator.verified"] != VerifiedAccount || leaf <= 0 {
		t.Errorf("ca.rotated = %v (leaf %d)", e, leaf)
	}
}

// The access socket admits root, serve's user and the access group's
// members, by the groups the kernel reports, else by account.
func TestAccessAdmits(t *testing.T) {
	t.Parallel()
	me := os.Getuid()
	other := 65534
	if me == other {
		other = 65533
	}
	group := AccessConfig{Group: "readers", GID: 4242}
	for _, c := range []struct {
		name  string
		p     peer
		ac    AccessConfig
		admit bool
	}{
		{"root", peer{uid: 0, gid: 0, groups: []int{}}, AccessConfig{}, true},
		{"serve's user", peer{uid: me, gid: 1, groups: []int{}}, AccessConfig{}, true},
		{"another user, no group configured", peer{uid: other, gid: 4242, groups: []int{4242}}, AccessConfig{}, false},
		{"a member by its primary group", peer{uid: other, gid: 4242, groups: []int{}}, group, true},
		{"a member by a supplementary group", peer{uid: other, gid: 1, groups: []int{7, 4242}}, group, true},
		{"not a member", peer{uid: other, gid: 1, groups: []int{7, 4243}}, group, false},
		{"no groups from the kernel: the account decides", peer{uid: 4_000_000, gid: 1}, group, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := accessAdmits(&c.p, c.ac)
			if (err == nil) != c.admit {
				t.Fatalf("accessAdmits = %v, want admitted %v", err, c.admit)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("uid %d may not ask this server to record reads", c.p.uid)) {
				t.Errorf("error %q", err)
			}
		})
	}
}

// The access block and operator_accounts are checked where they are
// written.
func TestAccessConfig(t *testing.T) {
	t.Parallel()
	provider := "identity_provider \"corp\" {\n  issuer = \"https://login.bank.example\"\n  audiences = [\"bastion\"]\n}\n"
	cfg, err := ParseConfig("b.hcl", []byte(provider+"access {\n  group = \"root\"\n}\noperator_accounts = { \"alice\" = \"alice@corp\", \"ci\" = \"bot@dev\" }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Access != (AccessConfig{Group: "root", GID: 0}) || cfg.OperatorAccounts["alice"] != "alice@corp" || cfg.OperatorAccounts["ci"] != "bot@dev" {
		t.Errorf("access %+v, operator_accounts %v", cfg.Access, cfg.OperatorAccounts)
	}
	for _, c := range []struct{ name, src, want string }{
		{"unknown group", "access {\n  group = \"no-such-group-here\"\n}\n", `b.hcl:6:3: access group = "no-such-group-here": no such group on this host`},
		{"unknown provider", `operator_accounts = { "alice" = "alice@gh" }` + "\n", `b.hcl:5:1: operator_accounts: "alice" = "alice@gh" is not SUBJECT@PROVIDER of a configured identity_provider`},
		{"no provider", `operator_accounts = { "alice" = "alice" }` + "\n", `b.hcl:5:1: operator_accounts: "alice" = "alice" is not SUBJECT@PROVIDER`},
		{"not an account", `operator_accounts = { "al ice" = "alice@corp" }` + "\n", `operator_accounts: "al ice" is not an OS account name`},
		{"unknown operator", "operators = [\"nobody\"]\n", `b.hcl:5:14: error: operators names identity "nobody", which is not defined`},
		{"access block twice", "access {}\naccess {}\n", `b.hcl:6:1: Duplicate access block`},
	} {
		_, err := ParseConfig("b.hcl", []byte(provider+c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// A reload applies operator_accounts to the next request, and refuses a
// new access group, which takes a restart.
func TestReloadAccessConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ts, _ := startStaffServer(t, false)
	path := ts.opts.Config.Path
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mapped := strings.Replace(string(src), `"nobody-maps-this" = "alice@corp"`, fmt.Sprintf("%q = \"alice@corp\"", currentLogin(t)), 1)
	if err := os.WriteFile(path, []byte(mapped), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.Reload(ctx, ReloadSignal); err != nil {
		t.Fatal(err)
	}
	if r := ts.events(t, EventConfigReloaded); len(r) != 1 || r[0]["operator_accounts"] != currentLogin(t)+"=alice@corp" {
		t.Errorf("config.reloaded: %v", r)
	}
	if res, err := RecordAccess(ctx, ts.AccessSocket(), AccessRequest{Action: "list"}); err != nil || res.Identity != "alice@corp" || res.Verified != VerifiedAccount {
		t.Errorf("a read after the reload: %+v, %v", res, err)
	}
	if err := os.WriteFile(path, []byte(mapped+"access {\n  group = \"root\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var re *RestartError
	if err := ts.Reload(ctx, ReloadSignal); !errors.As(err, &re) || strings.Join(re.Fields, ",") != "access.group" {
		t.Errorf("reload of a new access group: %v", err)
	}
	if fi, err := os.Stat(ts.AccessSocket()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the access socket after a refused reload: %v %v", fi.Mode(), err)
	}
}

// A socket a stopped server left is replaced; one that answers, or a
// file that is no socket, is refused and left as it is.
func TestListenAccessStale(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/journal.db.sock"
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // as a killed server leaves it
	ln, err := listenAccess(path, AccessConfig{})
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	if _, err := listenAccess(path, AccessConfig{}); err == nil || !strings.Contains(err.Error(), "answers: another bastion server serves this journal") {
		t.Errorf("over a live socket: %v", err)
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is left after its listener closed: %v", err)
	}
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenAccess(path, AccessConfig{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("over a regular file: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
		t.Errorf("the file in the way was changed: %q %v", b, err)
	}
}

// TestReadLimits: a member of the access group has at most readBurst
// records made at once, then readRate a second; another uid is counted
// apart; the uids kept are bounded.
func TestReadLimits(t *testing.T) {
	t.Parallel()
	// The clock stands still: a burst taken slowly (under -race, on a
	// loaded machine) must not be refilled meanwhile.
	at := time.Now()
	l := uidLimits{now: func() time.Time { return at }}
	for i := range readBurst {
		if !l.allow(1000) {
			t.Fatalf("record %d of a burst refused", i+1)
		}
	}
	if l.allow(1000) {
		t.Error("a record past the burst was allowed")
	}
	if !l.allow(1001) {
		t.Error("another uid was refused")
	}
	at = at.Add(time.Second)
	for i := range int(readRate) {
		if !l.allow(1000) {
			t.Fatalf("record %d of the second after the burst refused", i+1)
		}
	}
	if l.allow(1000) {
		t.Error("more than readRate records allowed in the second after the burst")
	}
	for uid := range maxLimitedUIDs + 10 {
		l.allow(2000 + uid)
	}
	if len(l.by) > maxLimitedUIDs {
		t.Errorf("%d uids kept, at most %d", len(l.by), maxLimitedUIDs)
	}
}

// TestAccessSocketPathTooLong: a journal whose socket path would not fit
// a sockaddr_un gets an error that says so, not "invalid argument".
func TestAccessSocketPathTooLong(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), strings.Repeat("j", 120)+".db"+AccessSocketSuffix)
	if _, err := listenAccess(path, AccessConfig{}); err == nil || !strings.Contains(err.Error(), "107 at most") {
		t.Fatalf("listenAccess of a %d-byte path: %v", len(path), err)
	}
}
