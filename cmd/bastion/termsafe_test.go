package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
)

// hostile is text from outside that tries to drive the operator's
// terminal: clear the screen, retitle the window, return to the start of
// the line, start a forged row, send a C1 CSI, and reverse what follows.
const hostile = "x\x1b[2J\x1b]0;title\x07\rback\nFORGED 1 2 3\u009b2J\u202eevil"

// hostileShown is how hostile reads once escaped.
const hostileShown = `x\x1b[2J\x1b]0;title\x07\rback\nFORGED 1 2 3\u009b2J\u202eevil`

// wantTermSafe fails unless out holds none of hostile's raw controls, has
// exactly lines lines, and shows hostile escaped at least once.
func wantTermSafe(t *testing.T, what, out string, lines int) {
	t.Helper()
	for _, raw := range []string{"\x1b", "\x07", "\r", "\u009b", "\u202e"} {
		if strings.Contains(out, raw) {
			t.Errorf("%s: holds the raw %q:\n%s", what, raw, out)
		}
	}
	if got := strings.Count(out, "\n"); got != lines {
		t.Errorf("%s: %d lines, want %d (a field started a row):\n%s", what, got, lines, out)
	}
	if strings.Contains(out, "\nFORGED") {
		t.Errorf("%s: a forged row:\n%s", what, out)
	}
	if !strings.Contains(out, hostileShown) {
		t.Errorf("%s: the escaped text %s is not shown:\n%s", what, hostileShown, out)
	}
}

// hostileJournal is a home whose journal holds hostile text wherever
// someone outside can put text: a token's subject (so the identity of a
// certificate, a session and a refusal), logins, target names, client
// addresses, commands, output, end reasons and attributes.
type hostileJournal struct {
	home     string
	session  string // the hostile exec session
	from, to time.Time
}

func buildHostileJournal(t *testing.T) *hostileJournal {
	t.Helper()
	ctx := context.Background()
	hj := &hostileJournal{home: t.TempDir(), from: time.Now().Add(-time.Minute).UTC().Truncate(time.Second)}
	if code, _, errOut := cli(ctx, hj.home, "ca", "init"); code != 0 {
		t.Fatalf("ca init: %d %s", code, errOut)
	}
	key, err := certauth.LoadJournalKey(hj.home)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(hj.home, "journal.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := certauth.NewSignedState(hj.home, path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := recorder.Open(ctx, st, recorder.Options{Key: key, Signed: signed})
	if err != nil {
		t.Fatal(err)
	}

	// A certificate issued through the real issuer, for a token of a real
	// OpenID provider whose subject is hostile.
	m := oidctest.StartMock(t, nil)
	v, err := oidc.NewVerifier([]oidc.ProviderConfig{{Name: "corp", Issuer: m.Issuer(), Audiences: []string{"bastion"}}}, oidc.VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pol, _, err := policy.Build(
		[]policy.IdentityMatcher{{Name: "anyone", Match: policy.Match{Providers: []string{"corp"}}}},
		[]policy.Role{{Name: "ops", Identities: []string{"anyone"}, Targets: []string{"*"}, Logins: []string{"deploy"}, MaxTTL: 10 * time.Minute, PTY: true, Shell: true}},
		policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := certauth.LoadAuthorities(hj.home, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := certauth.NewIssuer(ctx, certauth.IssuerOptions{CA: auth.User, Verifier: v, Policy: pol, Journal: j, Registry: certauth.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := m.Keypair.SignJWT(jwt.MapClaims{"iss": m.Issuer(), "sub": hostile, "aud": "bastion",
		"iat": time.Now().Add(-time.Minute).Unix(), "exp": time.Now().Add(9 * time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := ssh.NewPublicKey(pub)
	is, err := issuer.Issue(ctx, certauth.IssueRequest{Token: tok, PublicKey: string(ssh.MarshalAuthorizedKey(sk)), Logins: []string{"deploy"},
		ClientAddress: netip.MustParseAddr("192.0.2.10")})
	if err != nil {
		t.Fatalf("issue for a hostile subject: %v", err)
	}
	identity := hostile + "@corp"

	// A session whose every field is hostile, and whose output holds
	// hostile lines.
	s, err := j.StartSession(ctx, recorder.SessionInfo{Attrs: recorder.Attrs{
		"kind": "ssh", "request": "exec", "identity": identity, "serial": "1", "login": hostile, "target": hostile,
		"client": hostile, "command": "echo " + hostile, "term": hostile, "policy.rule": hostile, "policy.hash": pol.Hash(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	hj.session = s.ID().String()
	exitAttrs, _ := recorder.EncodeAttrs(recorder.Attrs{"status": "0"})
	for _, f := range []struct {
		k recorder.Kind
		p string
	}{{recorder.KindExec, "echo " + hostile}, {recorder.KindOutput, "first\r\nneedle " + hostile + "\r\nlast\r\n"}, {recorder.KindExit, string(exitAttrs)}} {
		if _, err := s.Append(f.k, 0, []byte(f.p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.End(ctx, recorder.Attrs{"reason": hostile, "detail": hostile, "exit-status": "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.AppendEvent(ctx, events.RequestRefused, recorder.Attrs{"reason": "policy_denied", "request": "exec", "action": "exec",
		"target": hostile, "login": hostile, "identity": identity, "serial": "1", "key-id": is.Cert.KeyId, "client": hostile,
		"policy.rule": hostile, "detail": hostile, "command": hostile}); err != nil {
		t.Fatal(err)
	}
	hj.to = time.Now().Add(time.Minute).UTC().Truncate(time.Second)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	return hj
}

// TestTerminalSafety: every human-readable listing of a journal that holds
// hostile text shows it escaped, one row per record; --json keeps it exact.
func TestTerminalSafety(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hj := buildHostileJournal(t)
	run := func(args ...string) (string, string) {
		t.Helper()
		code, out, errOut := cli(ctx, hj.home, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		if strings.ContainsAny(errOut, "\x1b\x07\r\u009b\u202e") {
			t.Errorf("%s: stderr holds raw controls: %q", strings.Join(args, " "), errOut)
		}
		return out, errOut
	}

	t.Run("certs list", func(t *testing.T) {
		out, _ := run("certs", "list")
		wantTermSafe(t, "certs list", out, 2) // the header and the one certificate
		out, _ = run("certs", "list", "--json")
		var certs []struct{ Identity string }
		if err := json.Unmarshal([]byte(out), &certs); err != nil || len(certs) != 1 || certs[0].Identity != hostile+"@corp" {
			t.Fatalf("certs list --json is not exact: %v %q", err, out)
		}
	})
	t.Run("certs revoke", func(t *testing.T) {
		out, _ := run("certs", "revoke", "--identity", hostile+"@corp", "--block-for", "1h", "--reason", "test")
		wantTermSafe(t, "certs revoke", out, 2)
	})
	t.Run("sessions list", func(t *testing.T) {
		out, _ := run("sessions", "list")
		wantTermSafe(t, "sessions list", out, 2)
		out, _ = run("sessions", "list", "--json")
		if !strings.Contains(out, `"x\u001b[2J`) {
			t.Errorf("sessions list --json: not JSON's own escapes:\n%s", out)
		}
	})
	t.Run("sessions show", func(t *testing.T) {
		out, _ := run("sessions", "show", hj.session)
		// Every line is one of show's own: a field of it starts none.
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if l == "" || !(strings.HasPrefix(l, "  ") || strings.HasSuffix(l, ":") || strings.HasPrefix(l, "session ")) {
				t.Errorf("sessions show: a line that show does not write: %q", l)
			}
		}
		wantTermSafe(t, "sessions show", out, strings.Count(out, "\n"))
		for _, field := range []string{"identity:", "target:", "login:", "client:", "rule:", "ended:", "term=", "echo "} {
			if !strings.Contains(out, field) {
				t.Errorf("sessions show: no %s:\n%s", field, out)
			}
		}
		if n := strings.Count(out, hostileShown); n < 8 {
			t.Errorf("sessions show: the hostile text is shown escaped %d times, want every field:\n%s", n, out)
		}
	})
	t.Run("sessions search", func(t *testing.T) {
		out, _ := run("sessions", "search", "--regex", "needle|echo")
		wantTermSafe(t, "sessions search", out, 2) // the output line and the command
		out, _ = run("sessions", "search", "--in", "output", "FORGED")
		if strings.ContainsAny(out, "\x1b\x07\r\u009b\u202e") || strings.Count(out, "\n") != 1 || !strings.Contains(out, `\u202eevil`) {
			t.Errorf("sessions search --in output: raw controls or not one line:\n%s", out)
		}
	})
	t.Run("play", func(t *testing.T) {
		// Playback replays what the target sent, on purpose: its bytes
		// stay raw.
		out, _ := run("play", "--speed", "max", hj.session)
		if !strings.Contains(out, "needle "+hostile) {
			t.Errorf("play: the recorded output is not replayed as it was:\n%q", out)
		}
	})
	t.Run("verify", func(t *testing.T) {
		out, _ := run("verify")
		if strings.ContainsAny(out, "\x1b\x07\r\u009b\u202e") {
			t.Errorf("verify: raw controls:\n%s", out)
		}
	})
	t.Run("evidence", func(t *testing.T) {
		dir := t.TempDir()
		out, _ := run("evidence", "--from", hj.from.Format(time.RFC3339), "--to", hj.to.Format(time.RFC3339), "--out", dir)
		// The summary: what was written, the anchor, where the report is
		// recorded, the banner (the test's provider is not HTTPS),
		// counts and the verdict.
		if strings.ContainsAny(out, "\x1b\x07\r\u009b\u202e") || strings.Count(out, "\n") != 6 {
			t.Errorf("evidence: raw controls or more lines than its summary:\n%s", out)
		}
		page, err := os.ReadFile(filepath.Join(dir, "evidence.html"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(string(page), "\x1b\x07\r\u009b\u202e") || !strings.Contains(string(page), `x\x1b[2J\x1b]0;title\x07\rback`) ||
			!strings.Contains(string(page), `\u009b2J\u202eevil`) {
			t.Errorf("evidence.html: raw controls, or the hostile text not shown escaped")
		}
	})
}

// TestTerminalSafetyErrors: an error that quotes text from outside is one
// "bastion: error:" line with its controls escaped.
func TestTerminalSafetyErrors(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	report(&b, withHint(&usageError{errorString("no session " + hostile)}, "try "+hostile))
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07\r\u009b\u202e") || !strings.Contains(out, `x\x1b[2J\x1b]0;title\x07\rback`) {
		t.Fatalf("report: raw controls:\n%s", out)
	}
	// A line break in an error is kept, for the errors that list problems,
	// but what follows it is indented: no line passes for a message.
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !strings.HasPrefix(l, "bastion: ") && !strings.HasPrefix(l, "    ") {
			t.Errorf("report: a line of its own: %q", l)
		}
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestTerminalSafetyGrants: grants list and show print what a server
// answers; hostile identities, targets, reasons and comments stay on
// their row.
func TestTerminalSafetyGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	home := t.TempDir()
	g := grants.Grant{ID: "G-1" + hostile, State: grants.GrantState("active" + hostile), Identity: hostile + "@dev", Target: hostile, Login: hostile,
		Role: hostile, Reason: hostile, Ticket: hostile, Command: hostile, Approvers: []string{hostile}, ClosedBy: hostile, Comment: hostile,
		Approvals: []grants.GrantApproval{{By: hostile, Comment: hostile, At: time.Now()}}, Duration: grants.GrantDuration(time.Hour),
		RequestedAt: time.Now(), Start: time.Now(), End: time.Now().Add(time.Hour)}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/grants" {
			json.NewEncoder(w).Encode(certauth.GrantList{Grants: []grants.Grant{g, g}})
			return
		}
		json.NewEncoder(w).Encode(g)
	}))
	defer srv.Close()
	tokFile := filepath.Join(home, "token")
	if err := os.WriteFile(tokFile, []byte("eyJ.e30.sig"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--server", srv.URL, "--ca-fingerprint", certauth.TLSFingerprint(srv.Certificate()), "--token-file", tokFile}
	code, out, errOut := cli(ctx, home, append([]string{"grants", "list"}, flags...)...)
	if code != 0 {
		t.Fatalf("grants list: %d %s", code, errOut)
	}
	wantTermSafe(t, "grants list", out, 3)
	code, out, errOut = cli(ctx, home, append([]string{"grants", "show", "G-1"}, flags...)...)
	if code != 0 {
		t.Fatalf("grants show: %d %s", code, errOut)
	}
	wantTermSafe(t, "grants show", out, strings.Count(out, "\n"))
	if strings.Contains(out, "\nFORGED") || strings.Count(out, "\n") > 12 {
		t.Errorf("grants show: too many lines:\n%s", out)
	}
}

// TestTerminalSafetyLogin: what login prints of the server's answer (the
// identity, the key ID) stays on its line.
func TestTerminalSafetyLogin(t *testing.T) {
	t.Parallel()
	b := newLoginBastion(t)
	b.identity = func(string) (string, error) { return hostile + "@corp", nil }
	home := t.TempDir()
	vars := map[string]string{"BASTION_TOKEN": "token-1"}
	code, stdout, stderr := runLoginCmd(context.Background(), home, vars, nil,
		"--server", b.srv.URL, "--ca-fingerprint", b.pin(), "--token-env", "BASTION_TOKEN")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	wantTermSafe(t, "login", stdout, strings.Count(stdout, "\n"))
	for _, want := range []string{"certificate for " + hostileShown + "@corp, granted by rule ops\n", "  key id:       " + hostileShown + "@corp/1\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("login: no %q:\n%s", want, stdout)
		}
	}
}
