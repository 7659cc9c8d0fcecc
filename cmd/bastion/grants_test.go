package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
)

// grantsBastion is the bastion's real API handler, with grants, over TLS
// on 127.0.0.1 (a self-signed certificate, pinned by the CLI), trusting
// the development issuer of home, whose tokens "bastion dev token" mints.
type grantsBastion struct {
	home, url, pin string
	store          *grants.Grants
}

func newGrantsBastion(t *testing.T) *grantsBastion {
	t.Helper()
	ctx := context.Background()
	home := t.TempDir()
	issuerURL, _ := serveDevIssuer(t, home, oidc.DevAudience)
	key, err := certauth.CreateJournalKey(home, "test.example/grants")
	if err != nil {
		t.Fatal(err)
	}
	auth, err := certauth.CreateAuthorities(home, certauth.AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	j := recordertest.NewJournalWith(t, recordertest.Options{Path: filepath.Join(home, "journal.db"), Journal: recorder.Options{Key: key}}).Journal
	pol, _, err := policy.Build(
		[]policy.IdentityMatcher{
			{Name: "agents", Match: policy.Match{Providers: []string{"dev"}, Subjects: []string{"agent-*"}}},
			{Name: "dbas", Match: policy.Match{Providers: []string{"dev"}, Subjects: []string{"bob", "carol"}}},
		},
		[]policy.Role{{
			Name: "db-grant", Identities: []string{"agents"}, Targets: []string{"db-*"}, Logins: []string{"postgres"},
			Access: policy.AccessGrant, Approval: &policy.Approval{Approvers: []string{"dbas"}, MaxDuration: time.Hour},
		}}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log, err := j.ReadLog(ctx, grants.GrantEvents)
	if err != nil {
		t.Fatal(err)
	}
	grants, err := grants.OpenGrants(ctx, log, grants.GrantsOptions{Journal: j, Policy: func() grants.GrantPolicy { return pol }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { grants.Close() })
	v, err := oidc.NewVerifier([]oidc.ProviderConfig{{Name: "dev", Issuer: issuerURL, Audiences: []string{oidc.DevAudience}}}, oidc.VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	is, err := certauth.NewIssuer(ctx, certauth.IssuerOptions{CA: auth.User, Verifier: v, Policy: pol, Journal: j, Registry: certauth.NewRegistry(), Grants: grants.Active})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(certauth.NewAPI(certauth.APIOptions{Issuer: is, CA: func() *certauth.CAResponse { return &certauth.CAResponse{} }, Grants: grants}))
	t.Cleanup(srv.Close)
	return &grantsBastion{home: home, url: srv.URL, pin: certauth.TLSFingerprint(srv.Certificate()), store: grants}
}

// tokenFile mints a development token for sub into a file.
func (b *grantsBastion) tokenFile(t *testing.T, sub string) string {
	t.Helper()
	code, tok, errOut := cli(context.Background(), b.home, "dev", "token", "--sub", sub)
	if code != 0 {
		t.Fatalf("dev token: %s", errOut)
	}
	p := filepath.Join(t.TempDir(), sub+".token")
	if err := os.WriteFile(p, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// grants runs "bastion grants ARGS… --server … --ca-fingerprint …
// --token-file TOKEN".
func (b *grantsBastion) grants(ctx context.Context, token string, args ...string) (int, string, string) {
	return cli(ctx, b.home, append(args, "--server", b.url, "--ca-fingerprint", b.pin, "--token-file", token)...)
}

// TestGrantsCLI: request → the requester's own approval refused → approve
// by another identity → list → show → revoke, through the CLI.
func TestGrantsCLI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newGrantsBastion(t)
	agent, bob, mallory := b.tokenFile(t, "agent-1"), b.tokenFile(t, "bob"), b.tokenFile(t, "mallory")

	code, out, errOut := b.grants(ctx, agent, "grants", "request", "--target", "db-prod", "--login", "postgres", "--duration", "2h",
		"--reason", "rotate the replication password", "--ticket", "CHG-7", "--json")
	if code != 0 {
		t.Fatalf("grants request: %d %s", code, errOut)
	}
	var g grants.Grant
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("grants request --json: %v\n%s", err, out)
	}
	if g.State != grants.GrantPending || g.Identity != "agent-1@dev" || time.Duration(g.Duration) != time.Hour || g.Ticket != "CHG-7" {
		t.Fatalf("requested: %+v", g)
	}

	code, _, errOut = b.grants(ctx, agent, "grants", "approve", g.ID)
	if code != 1 || !strings.Contains(errOut, "bastion: error: ") || !strings.Contains(errOut, "own_grant") || !strings.Contains(errOut, "bastion: hint: another approver") {
		t.Fatalf("own approval: %d %s", code, errOut)
	}
	code, _, errOut = b.grants(ctx, mallory, "grants", "show", g.ID)
	if code != 1 || !strings.Contains(errOut, "grant_not_found") || !strings.Contains(errOut, `bastion: hint: check the ID with "bastion grants list"`) {
		t.Fatalf("show by a stranger: %d %s", code, errOut)
	}

	code, out, errOut = b.grants(ctx, bob, "grants", "approve", g.ID, "--comment", "matches CHG-7")
	if code != 0 || !strings.HasPrefix(out, "grant "+g.ID+" approved: active\n") || !strings.Contains(out, "by bob@dev: matches CHG-7") {
		t.Fatalf("approve: %d %s %s", code, out, errOut)
	}
	if got := b.store.Active("agent-1@dev", time.Now()); len(got) != 1 || got[0].ID != g.ID {
		t.Fatalf("active grants: %+v", got)
	}

	code, out, errOut = b.grants(ctx, agent, "grants", "list")
	if code != 0 || !regexp.MustCompile(`(?m)^`+g.ID+`\s+active\s+agent-1@dev\s+postgres@db-prod\s+1h0m0s\s+\S+\s+rotate the replication password$`).MatchString(out) {
		t.Fatalf("list: %d %s %s", code, out, errOut)
	}
	code, out, errOut = b.grants(ctx, bob, "grants", "list", "--state", "active", "--json")
	var list certauth.GrantList
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Grants) != 1 || list.Grants[0].Approvals[0].By != "bob@dev" {
		t.Fatalf("list --json: %d %s %s", code, out, errOut)
	}
	code, out, _ = b.grants(ctx, mallory, "grants", "list")
	if code != 0 || out != "no grants\n" {
		t.Fatalf("list by a stranger: %d %s", code, out)
	}

	code, out, errOut = b.grants(ctx, agent, "grants", "revoke", g.ID, "--comment", "done early")
	if code != 0 || !strings.HasPrefix(out, "grant "+g.ID+" revoked: revoked\n") || !strings.Contains(out, "by agent-1@dev: done early") {
		t.Fatalf("revoke: %d %s %s", code, out, errOut)
	}
	code, out, _ = b.grants(ctx, bob, "grants", "show", g.ID)
	if code != 0 || !strings.Contains(out, "approvals:  1 of 1") || !strings.Contains(out, "revoked:    ") {
		t.Fatalf("show: %d %s", code, out)
	}
	code, _, errOut = b.grants(ctx, bob, "grants", "deny", g.ID, "--comment", "too late")
	if code != 1 || !strings.Contains(errOut, "grant_state") || !strings.Contains(errOut, `bastion: hint: see where it stands`) {
		t.Fatalf("deny a revoked grant: %d %s", code, errOut)
	}
}

// TestGrantsCLIWait: "grants request --wait" returns once another
// identity has approved.
func TestGrantsCLIWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newGrantsBastion(t)
	agent, carol := b.tokenFile(t, "agent-2"), b.tokenFile(t, "carol")
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := b.grants(ctx, agent, "grants", "request", "--target", "db-1", "--login", "postgres", "--duration", "10m", "--reason", "vacuum", "--wait")
		done <- result{code, out, errOut}
	}()
	var id string
	deadline := time.Now().Add(20 * time.Second)
	for id == "" {
		if gs := b.store.List(grants.GrantFilter{State: grants.GrantPending}); len(gs) == 1 {
			id = gs[0].ID
		}
		if time.Now().After(deadline) {
			t.Fatal("no request arrived")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, errOut := b.grants(ctx, carol, "grants", "approve", id); code != 0 {
		t.Fatalf("approve: %s", errOut)
	}
	select {
	case r := <-done:
		if r.code != 0 || !strings.HasPrefix(r.out, "grant "+id+": active\n") || !strings.Contains(r.errOut, "waiting for 1 approval(s)") {
			t.Fatalf("request --wait: %d %s %s", r.code, r.out, r.errOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("request --wait did not return")
	}
}

func TestGrantsCLIUsage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"grants", "request", "--target", "db", "--login", "x", "--duration", "5m"}, "needs --reason"},
		{[]string{"grants", "request", "--target", "db", "--login", "x", "--reason", "r"}, "needs --duration"},
		{[]string{"grants", "request", "--login", "x", "--reason", "r", "--duration", "5m"}, "needs --target"},
		{[]string{"grants", "request", "--target", "db", "--login", "x", "--reason", "r", "--duration", "5m"}, "needs --server"},
		{[]string{"grants", "approve", "--server", "b.example"}, "takes one grant ID"},
		{[]string{"grants", "approve", "G-1", "G-2", "--server", "b.example"}, "takes one grant ID"},
		{[]string{"grants", "deny", "G-1", "--server", "b.example"}, "needs --comment"},
		{[]string{"grants", "list", "--state", "open", "--server", "b.example"}, `--state "open"`},
		{[]string{"grants", "show", "G-1", "--server", "b.example", "--token-file", "a", "--token-env", "B"}, "not both"},
	} {
		code, _, errOut := runArgs(c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, "bastion: hint: run \"bastion help grants ") {
			t.Errorf("%q: %d %s", c.args, code, errOut)
		}
	}
}

func TestGrantsMatchID(t *testing.T) {
	t.Parallel()
	ids := []string{"G-7", "G-12", "G-123", "G-130", "G-21"}
	for _, tt := range []struct {
		arg, want  string
		candidates []string
	}{
		{"G-12", "G-12", nil},  // whole: wins over G-123
		{"g-7", "G-7", nil},    // any case
		{"21", "G-21", nil},    // the number alone
		{"G-2", "G-21", nil},   // a unique start
		{"G-13", "G-130", nil}, // a unique start
		{"g-13", "G-130", nil}, // in any case
		{"G-1", "", []string{"G-12", "G-123", "G-130"}},
		{"G-", "", ids},
		{"G-9", "", nil}, // unknown: the server answers
		{"grant", "", nil},
	} {
		got, c := grantsMatchID(ids, grantsNormalID(tt.arg))
		if got != tt.want || !slices.Equal(c, tt.candidates) {
			t.Errorf("%q: %q %v, want %q %v", tt.arg, got, c, tt.want, tt.candidates)
		}
	}
}
