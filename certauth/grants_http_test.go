package certauth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/policy/grants/grantstest"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
)

// grantsAPI is the real API handler with a real grants store, over TLS on
// 127.0.0.1, verifying tokens of a real OpenID provider (mockoidc) on
// loopback, journaling into a real SQLite journal, on a settable clock.
type grantsAPI struct {
	t      *testing.T
	key    *recorder.JournalKey
	st     storage.Store
	j      *recorder.Journal
	clock  *oidctest.Clock
	pol    atomic.Pointer[policy.Policy] // the policy in force, which a test may replace
	g      *grants.Grants
	ends   chan endedGrant // what OnEnd was called with
	oidc   *mockoidc.MockOIDC
	issuer *Issuer
	srv    *httptest.Server
}

// endedGrant is a call of the store's OnEnd.
type endedGrant struct{ id, why string }

func newGrantsAPI(t *testing.T, pol *policy.Policy) *grantsAPI {
	t.Helper()
	return newGrantsAPIWith(t, pol, nil)
}

// newGrantsAPIWith is newGrantsAPI with the provider's configuration
// edited first.
func newGrantsAPIWith(t *testing.T, pol *policy.Policy, edit func(*oidc.ProviderConfig)) *grantsAPI {
	t.Helper()
	a := &grantsAPI{t: t, clock: oidctest.NewClock(), ends: make(chan endedGrant, 64), oidc: oidctest.StartMock(t, nil)}
	a.pol.Store(pol)
	ctx := context.Background()
	dir := t.TempDir()
	var err error
	if a.key, err = CreateJournalKey(dir, "test.example/grants"); err != nil {
		t.Fatal(err)
	}
	if a.st, err = storage.OpenSQLite(ctx, filepath.Join(dir, "journal.db"), storage.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.st.Close() })
	if a.j, err = recorder.Open(ctx, a.st, recorder.Options{Key: a.key}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.j.Close() })
	log, err := a.j.ReadLog(ctx, grants.GrantEvents)
	if err != nil {
		t.Fatal(err)
	}
	a.g, err = grants.OpenGrants(ctx, log, grants.GrantsOptions{
		Journal: a.j, Policy: func() grants.GrantPolicy { return a.pol.Load() }, Now: a.clock.Now,
		OnEnd: func(g grants.Grant, why string) { a.ends <- endedGrant{g.ID, why} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.g.Close() })
	auth, err := CreateAuthorities(dir, AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	pc := oidc.ProviderConfig{Name: "corp", Issuer: a.oidc.Issuer(), Audiences: []string{"bastion"}}
	if edit != nil {
		edit(&pc)
	}
	v, err := oidc.NewVerifier([]oidc.ProviderConfig{pc}, oidc.VerifierOptions{Now: a.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	a.issuer, err = NewIssuer(ctx, IssuerOptions{
		CA: auth.User, Verifier: v, Policy: pol, Journal: a.j, Registry: NewRegistry(), Now: a.clock.Now,
		Grants: func(id string, now time.Time) []policy.Grant { return a.g.Active(id, now) },
	})
	if err != nil {
		t.Fatal(err)
	}
	api := NewAPI(APIOptions{
		Issuer: a.issuer, CA: func() *CAResponse { return &CAResponse{} }, Grants: a.g, Now: a.clock.Now,
		RatePerIdentity: -1, RatePerAddress: -1,
	})
	a.srv = httptest.NewTLSServer(api)
	t.Cleanup(a.srv.Close)
	return a
}

// events returns the journal's events named names, in leaf order, each
// as its attributes.
func (a *grantsAPI) events(names ...string) []recorder.Attrs {
	a.t.Helper()
	ctx := context.Background()
	snap, err := a.st.Snapshot(ctx)
	if err != nil {
		a.t.Fatal(err)
	}
	defer snap.Close()
	found, err := recorder.Events(ctx, snap, a.key.Verifier, names...)
	if err != nil {
		a.t.Fatal(err)
	}
	out := make([]recorder.Attrs, len(found))
	for i, e := range found {
		out[i] = e.Leaf.Attrs
	}
	return out
}

// wantEnd waits for the store's OnEnd to be called for grant id, with why.
func (a *grantsAPI) wantEnd(id, why string) {
	a.t.Helper()
	select {
	case e := <-a.ends:
		if e.id != id || e.why != why {
			a.t.Fatalf("OnEnd(%s, %q), want (%s, %q)", e.id, e.why, id, why)
		}
	case <-time.After(10 * time.Second):
		a.t.Fatalf("OnEnd was not called for %s", id)
	}
}

// token mints a token for sub of provider "corp".
func (a *grantsAPI) token(sub string) string {
	a.t.Helper()
	return oidctest.Sign(a.t, a.oidc, oidctest.Claims(a.oidc.Issuer(), a.clock.Now(), map[string]any{"sub": sub}))
}

// call sends one request with token (none if "") and body (none if nil),
// and returns the status and the decoded answer (a Grant, a GrantList or
// an ErrorResponse, as out).
func (a *grantsAPI) call(method, path, token string, body any, out any) int {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				a.t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

// wantError checks a refusal's status and reason.
func (a *grantsAPI) wantError(method, path, token string, body any, status int, reason string) ErrorResponse {
	a.t.Helper()
	var er ErrorResponse
	if got := a.call(method, path, token, body, &er); got != status || er.Reason != reason || er.Error == "" {
		a.t.Fatalf("%s %s: %d %+v, want %d %s", method, path, got, er, status, reason)
	}
	return er
}

func (a *grantsAPI) decide(id, action, token string) grants.Grant {
	a.t.Helper()
	var g grants.Grant
	if got := a.call("POST", "/v1/grants/"+id+"/"+action, token, GrantDecisionRequest{Comment: "ok"}, &g); got != http.StatusOK {
		a.t.Fatalf("%s %s: HTTP %d", action, id, got)
	}
	return g
}

func TestGrantsAPI(t *testing.T) {
	a := newGrantsAPI(t, grantstest.Policy(t, 1, "bob", "carol"))
	agent, bob, carol, mallory := a.token("agent-1"), a.token("bob"), a.token("carol"), a.token("mallory")
	ask := GrantRequest{Target: "db-prod", Login: "postgres", Duration: "30m", Reason: "rotate the password", Ticket: "CHG-7"}

	// Refused before the store.
	a.wantError("POST", "/v1/grants", "", ask, http.StatusUnauthorized, events.ReasonTokenMissing)
	a.wantError("POST", "/v1/grants", "not.a.token", ask, http.StatusUnauthorized, events.ReasonTokenMalformed)
	expired := oidctest.Sign(t, a.oidc, oidctest.Claims(a.oidc.Issuer(), a.clock.Now().Add(-time.Hour), map[string]any{"sub": "agent-1"}))
	a.wantError("POST", "/v1/grants", expired, ask, http.StatusUnauthorized, events.ReasonTokenExpired)
	a.wantError("POST", "/v1/grants", agent, []byte(`{"target": "db-prod", "bogus": 1}`), http.StatusBadRequest, events.ReasonRequestMalformed)
	a.wantError("POST", "/v1/grants", agent, GrantRequest{Target: "db-prod", Login: "postgres", Duration: "soon", Reason: "x"}, http.StatusBadRequest, events.ReasonRequestMalformed)
	a.wantError("POST", "/v1/grants", agent, GrantRequest{Target: "db-prod", Login: "postgres", Duration: "30m"}, http.StatusBadRequest, events.ReasonRequestMalformed)
	a.wantError("POST", "/v1/grants", agent, GrantRequest{Target: "db-prod", Login: "postgres", Duration: "30m", Reason: strings.Repeat("x", 1001)}, http.StatusBadRequest, events.ReasonRequestMalformed)
	// Refused by policy.
	a.wantError("POST", "/v1/grants", agent, GrantRequest{Target: "web-1", Login: "postgres", Duration: "30m", Reason: "x"}, http.StatusForbidden, events.ReasonDenied)
	a.wantError("POST", "/v1/grants", bob, ask, http.StatusForbidden, events.ReasonDenied)
	a.wantError("PUT", "/v1/grants", agent, nil, http.StatusMethodNotAllowed, "method_not_allowed")

	var g grants.Grant
	if got := a.call("POST", "/v1/grants", agent, ask, &g); got != http.StatusCreated || g.State != grants.GrantPending || g.Identity != "agent-1@corp" || g.Ticket != "CHG-7" {
		t.Fatalf("request: %d %+v", got, g)
	}
	path := "/v1/grants/" + g.ID

	// Invisible and unknown grants get the same answer.
	unknown := a.wantError("GET", "/v1/grants/G-99999", bob, nil, http.StatusNotFound, events.ReasonGrantNotFound)
	invisible := a.wantError("GET", path, mallory, nil, http.StatusNotFound, events.ReasonGrantNotFound)
	if strings.Replace(unknown.Error, "G-99999", g.ID, 1) != invisible.Error {
		t.Fatalf("unknown %q and invisible %q differ", unknown.Error, invisible.Error)
	}
	a.wantError("POST", path+"/approve", mallory, nil, http.StatusNotFound, events.ReasonGrantNotFound)
	a.wantError("POST", path+"/approve", agent, nil, http.StatusForbidden, events.ReasonOwnGrant)
	a.wantError("POST", path+"/deny", agent, GrantDecisionRequest{Comment: "x"}, http.StatusForbidden, events.ReasonOwnGrant)
	a.wantError("POST", path+"/approve", bob, []byte(`{"comment": 7}`), http.StatusBadRequest, events.ReasonRequestMalformed)

	var got grants.Grant
	if code := a.call("GET", path, bob, nil, &got); code != http.StatusOK || got.ID != g.ID {
		t.Fatalf("GET by an approver: %d %+v", code, got)
	}
	var list GrantList
	for tok, want := range map[string]int{agent: 1, bob: 1, carol: 1, mallory: 0} {
		if code := a.call("GET", "/v1/grants?state=pending", tok, nil, &list); code != http.StatusOK || len(list.Grants) != want {
			t.Fatalf("list pending: %d %+v, want %d", code, list, want)
		}
	}
	a.wantError("GET", "/v1/grants?state=bogus", agent, nil, http.StatusBadRequest, events.ReasonRequestMalformed)

	g = a.decide(g.ID, "approve", bob)
	if g.State != grants.GrantActive || g.Approvals[0].By != "bob@corp" || g.Approvals[0].Comment != "ok" {
		t.Fatalf("approved: %+v", g)
	}
	a.wantError("POST", path+"/approve", carol, nil, http.StatusConflict, events.ReasonGrantState)
	a.wantError("POST", path+"/deny", carol, nil, http.StatusConflict, events.ReasonGrantState)
	if code := a.call("GET", "/v1/grants?state=active", agent, nil, &list); code != http.StatusOK || len(list.Grants) != 1 {
		t.Fatalf("list active: %d %+v", code, list)
	}

	a.wantError("POST", path+"/revoke", mallory, nil, http.StatusNotFound, events.ReasonGrantNotFound)
	g = a.decide(g.ID, "revoke", agent)
	if g.State != grants.GrantRevoked {
		t.Fatalf("revoked: %+v", g)
	}
	a.wantEnd(g.ID, grants.GrantRevokedWhy)
	a.wantError("POST", path+"/revoke", bob, nil, http.StatusConflict, events.ReasonGrantState)

	// Another policy: bob, who may no longer approve, is refused on a
	// grant he decided.
	g2 := grants.Grant{}
	a.call("POST", "/v1/grants", agent, ask, &g2)
	a.decide(g2.ID, "deny", bob)
	a.pol.Store(grantstest.Policy(t, 1, "carol"))
	g3 := grants.Grant{}
	a.call("POST", "/v1/grants", agent, ask, &g3)
	a.wantError("POST", "/v1/grants/"+g3.ID+"/approve", bob, nil, http.StatusNotFound, events.ReasonGrantNotFound)
	a.wantError("POST", "/v1/grants/"+g2.ID+"/revoke", bob, nil, http.StatusForbidden, events.ReasonNotApprover)

	// Every refusal of a grant action is in the journal.
	var reasons []string
	for _, e := range a.events(events.GrantRefused) {
		reasons = append(reasons, e["action"]+":"+e["reason"])
	}
	want := "request:token_missing request:token_malformed request:token_expired request:request_malformed request:request_malformed " +
		"request:request_malformed request:request_malformed request:denied request:denied show:grant_not_found show:grant_not_found " +
		"approve:grant_not_found approve:own_grant deny:own_grant approve:request_malformed list:request_malformed approve:grant_state " +
		"deny:grant_state revoke:grant_not_found revoke:grant_state approve:grant_not_found revoke:not_approver"
	if got := strings.Join(reasons, " "); got != want {
		t.Fatalf("refusals journaled:\n%s\nwant\n%s", got, want)
	}

	// The journal fails: nothing happens, and the caller is told so.
	if err := a.j.Close(); err != nil {
		t.Fatal(err)
	}
	a.wantError("POST", "/v1/grants", agent, ask, http.StatusServiceUnavailable, events.ReasonJournalUnavailable)
	a.wantError("POST", "/v1/grants/"+g3.ID+"/approve", carol, nil, http.StatusServiceUnavailable, events.ReasonJournalUnavailable)
	a.wantError("POST", "/v1/grants", "", ask, http.StatusServiceUnavailable, events.ReasonJournalUnavailable)
	if g, _ := a.g.Get(g3.ID); g.State != grants.GrantPending || len(g.Approvals) != 0 {
		t.Fatalf("after a failed approval: %+v", g)
	}
}

func TestGrantsAPINotEnabled(t *testing.T) {
	api := NewAPI(APIOptions{CA: func() *CAResponse { return &CAResponse{} }})
	srv := httptest.NewServer(api)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/grants")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var er ErrorResponse
	json.NewDecoder(resp.Body).Decode(&er)
	if resp.StatusCode != http.StatusNotFound || er.Reason != events.ReasonGrantsNotEnabled {
		t.Fatalf("%d %+v", resp.StatusCode, er)
	}
}

// TestCertificateUnderGrant: a certificate issued under a grant expires no
// later than the grant, and names it.
func TestCertificateUnderGrant(t *testing.T) {
	a := newGrantsAPI(t, grantstest.Policy(t, 1, "bob"))
	agent := a.token("agent-1")
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	certReq := CertificateRequest{PublicKey: key, Logins: []string{"postgres"}, TTL: "20m"}

	a.wantError("POST", "/v1/certificates", agent, certReq, http.StatusForbidden, events.ReasonDenied)

	var g grants.Grant
	if code := a.call("POST", "/v1/grants", agent, GrantRequest{Target: "db-1", Login: "postgres", Duration: "3m", Reason: "x"}, &g); code != http.StatusCreated {
		t.Fatalf("request: %d", code)
	}
	g = a.decide(g.ID, "approve", a.token("bob"))

	var cert CertificateResponse
	if code := a.call("POST", "/v1/certificates", agent, certReq, &cert); code != http.StatusOK {
		t.Fatalf("certificate under the grant: %d", code)
	}
	if cert.ValidBefore.After(g.End) || !strings.Contains(cert.KeyID, "grant="+g.ID) {
		t.Fatalf("certificate valid before %v, key ID %q; the grant ends %v", cert.ValidBefore, cert.KeyID, g.End)
	}
	if want := g.End.Truncate(time.Second); !cert.ValidBefore.Equal(want) {
		t.Fatalf("certificate valid before %v, want the grant's end %v", cert.ValidBefore, want)
	}

	// Once the grant has ended, no certificate is issued under it.
	a.clock.Advance(3 * time.Minute)
	a.wantError("POST", "/v1/certificates", a.token("agent-1"), certReq, http.StatusForbidden, events.ReasonDenied)
}

// TestGrantsAPISponsorConflict: through the API, the sponsor's approval is
// refused with 403 sponsor_conflict, and an unrelated approver's goes
// through; the sponsor comes from the provider's sponsor_claim.
func TestGrantsAPISponsorConflict(t *testing.T) {
	a := newGrantsAPIWith(t, grantstest.SponsorPolicy(t, true), func(pc *oidc.ProviderConfig) { pc.SponsorClaim = "sponsor" })
	tok := func(claims map[string]any) string {
		return oidctest.Sign(t, a.oidc, oidctest.Claims(a.oidc.Issuer(), a.clock.Now(), claims))
	}
	agent := tok(map[string]any{"sub": "agent-1", "email": nil, "sponsor": "alice@example.com"})
	alice := tok(map[string]any{"sub": "alice"}) // email alice@example.com
	carol := tok(map[string]any{"sub": "carol", "email": "carol@example.com"})
	var g grants.Grant
	if got := a.call("POST", "/v1/grants", agent, GrantRequest{Target: "db-1", Login: "postgres", Duration: "30m", Reason: "x"}, &g); got != http.StatusCreated || g.Sponsor != "alice@example.com" {
		t.Fatalf("request: HTTP %d %+v", got, g)
	}
	er := a.wantError("POST", "/v1/grants/"+g.ID+"/approve", alice, nil, http.StatusForbidden, events.ReasonSponsorConflict)
	if !strings.Contains(er.Error, "alice@corp is the sponsor of agent-1@corp") {
		t.Errorf("error: %q", er.Error)
	}
	if g = a.decide(g.ID, "approve", carol); g.State != grants.GrantActive {
		t.Fatalf("approved by carol: %+v", g)
	}
	approved := a.events(events.GrantApproved)
	if len(approved) != 1 || approved[0]["by.email"] != "carol@example.com" || approved[0]["by.subject"] != "carol" || approved[0]["by.provider"] != "corp" {
		t.Errorf("grant.approved: %v", approved)
	}
}
