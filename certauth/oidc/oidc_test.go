package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder/events"
)

// oidcTestRSAKey is one extra RSA key, generated once: mockoidc instances
// share a built-in key, and a second provider needs its own.
var oidcTestRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func mockKid(t testing.TB, m *mockoidc.MockOIDC) string {
	t.Helper()
	kid, err := m.Keypair.KeyID()
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

// joseSign signs claims with any key go-jose takes; kid "" leaves the
// header without one.
func joseSign(t testing.TB, key crypto.Signer, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var b64 = base64.RawURLEncoding

// rawToken assembles a compact JWS from JSON texts and signature bytes,
// without any library's opinion.
func rawToken(header, payload string, sig []byte) string {
	return b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload)) + "." + b64.EncodeToString(sig)
}

// rs256Raw signs header and payload (JSON texts) with RSA PKCS #1 v1.5.
func rs256Raw(t testing.TB, key *rsa.PrivateKey, header, payload string) string {
	t.Helper()
	in := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + b64.EncodeToString(sig)
}

// hs256Raw is the "algorithm confusion" attack: an HMAC over the token with
// a public key's bytes as the secret.
func hs256Raw(header, payload string, secret []byte) string {
	in := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(in))
	return in + "." + b64.EncodeToString(mac.Sum(nil))
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newTestVerifier builds a verifier on clock, failing the test on error.
func newTestVerifier(t testing.TB, clock *oidctest.Clock, providers ...ProviderConfig) *Verifier {
	t.Helper()
	v, err := NewVerifier(providers, VerifierOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantTokenError checks that err is a *TokenError with reason, whose
// sentence contains msg and none of the token's parts.
func wantTokenError(t testing.TB, err error, reason, msg, token string) {
	t.Helper()
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T) is not a *TokenError", err, err)
	}
	if te.Reason != reason {
		t.Errorf("reason %q, want %q (error: %v)", te.Reason, reason, err)
	}
	if !strings.Contains(te.Error(), msg) {
		t.Errorf("error %q does not say %q", te.Error(), msg)
	}
	for part := range strings.SplitSeq(token, ".") {
		if len(part) >= 16 && strings.Contains(te.Error(), part) {
			t.Errorf("error %q quotes the token", te.Error())
		}
	}
}

// oidcTestIdP is a small OpenID provider for what mockoidc cannot do:
// publishing several keys and rotating them, ES256 and EdDSA, a discovery
// document naming another issuer, outages and a slow discovery.
type oidcTestIdP struct {
	srv *httptest.Server

	mu        sync.Mutex
	keys      []jose.JSONWebKey // published
	issuer    string            // what discovery says, if not the URL
	down      bool              // discovery answers 503
	jwksDown  bool              // the key set answers 503
	slowUntil chan struct{}     // if set, discovery waits for it to close
	redirect  bool              // jwks_uri answers with a redirect to the key set

	discoveries, keyFetches atomic.Int32
}

func newOIDCTestIdP(t testing.TB, keys ...jose.JSONWebKey) *oidcTestIdP {
	t.Helper()
	idp := &oidcTestIdP{keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		idp.discoveries.Add(1)
		idp.mu.Lock()
		down, slow, iss := idp.down, idp.slowUntil, idp.issuer
		redirect := idp.redirect
		idp.mu.Unlock()
		if slow != nil {
			<-slow
		}
		if down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if iss == "" {
			iss = idp.srv.URL
		}
		jwks := idp.srv.URL + "/keys"
		if redirect {
			jwks = idp.srv.URL + "/old-keys"
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              jwks,
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256", "EdDSA"},
		})
	})
	mux.Handle("GET /old-keys", http.RedirectHandler("/keys", http.StatusFound))
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		idp.keyFetches.Add(1)
		idp.mu.Lock()
		down := idp.jwksDown
		set := jose.JSONWebKeySet{Keys: slices.Clone(idp.keys)}
		idp.mu.Unlock()
		if down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	})
	idp.srv = httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(idp.srv.Close)
	return idp
}

func (idp *oidcTestIdP) Issuer() string { return idp.srv.URL }

func (idp *oidcTestIdP) set(f func(idp *oidcTestIdP)) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	f(idp)
}

// publicJWK is the published form of key.
func publicJWK(key crypto.Signer, kid string, alg jose.SignatureAlgorithm) jose.JSONWebKey {
	return jose.JSONWebKey{Key: key.Public(), KeyID: kid, Algorithm: string(alg), Use: "sig"}
}

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewVerifierConfig(t *testing.T) {
	good := func() ProviderConfig {
		return ProviderConfig{Name: "corp", Issuer: "https://id.example.com", Audiences: []string{"bastion"}}
	}
	tests := []struct {
		name    string
		edit    func(*ProviderConfig)
		opts    VerifierOptions
		wantErr string
	}{
		{name: "minimal", edit: func(*ProviderConfig) {}},
		{name: "loopback http", edit: func(c *ProviderConfig) { c.Issuer = "http://127.0.0.1:8080/realms/x" }},
		{name: "loopback http ipv6", edit: func(c *ProviderConfig) { c.Issuer = "http://[::1]:8080" }},
		{name: "localhost http", edit: func(c *ProviderConfig) { c.Issuer = "http://localhost:5556/dex" }},
		{name: "chosen algorithms", edit: func(c *ProviderConfig) { c.Algorithms = []string{"ES256", "EdDSA"} }},
		{name: "no name", edit: func(c *ProviderConfig) { c.Name = "" }, wantErr: "no name"},
		{name: "bad name", edit: func(c *ProviderConfig) { c.Name = "Corp IdP" }, wantErr: `name "Corp IdP" may only use a-z, 0-9, _ and -`},
		{name: "no issuer", edit: func(c *ProviderConfig) { c.Issuer = "" }, wantErr: "no issuer URL"},
		{name: "http issuer", edit: func(c *ProviderConfig) { c.Issuer = "http://id.example.com" }, wantErr: "must use https (plain http is only for loopback hosts)"},
		{name: "issuer with query", edit: func(c *ProviderConfig) { c.Issuer = "https://id.example.com/?tenant=x" }, wantErr: "without query, fragment or user name"},
		{name: "relative issuer", edit: func(c *ProviderConfig) { c.Issuer = "id.example.com" }, wantErr: "must be a plain https URL"},
		{name: "no audience", edit: func(c *ProviderConfig) { c.Audiences = nil }, wantErr: "no audience"},
		{name: "empty audience", edit: func(c *ProviderConfig) { c.Audiences = []string{"bastion", ""} }, wantErr: "an audience is empty"},
		{name: "alg none", edit: func(c *ProviderConfig) { c.Algorithms = []string{"RS256", "none"} }, wantErr: `"none" means unsigned tokens`},
		{name: "alg HS256", edit: func(c *ProviderConfig) { c.Algorithms = []string{"HS256"} }, wantErr: `"HS256" is a shared-secret (HMAC) algorithm`},
		{name: "alg unknown", edit: func(c *ProviderConfig) { c.Algorithms = []string{"RS1"} }, wantErr: `unknown signing algorithm "RS1"`},
		{name: "negative age", edit: func(c *ProviderConfig) { c.MaxTokenAge = -time.Minute }, wantErr: "maximum token age -1m0s is negative"},
		{name: "negative skew", edit: func(*ProviderConfig) {}, opts: VerifierOptions{ClockSkew: -time.Second}, wantErr: "clock skew -1s is negative"},
		{name: "negative size", edit: func(*ProviderConfig) {}, opts: VerifierOptions{MaxTokenSize: -1}, wantErr: "maximum token size -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.edit(&c)
			v, err := NewVerifier([]ProviderConfig{c}, tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := v.configs(); len(got) != 1 || got[0].Name != c.Name {
					t.Fatalf("configs() = %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		v, err := NewVerifier([]ProviderConfig{good()}, VerifierOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := v.configs()[0]
		if got.MaxTokenAge != time.Hour || got.EmailClaim != "email" || got.GroupsClaim != "groups" || got.HTTPClient != nil {
			t.Errorf("defaults not filled in: %+v", got)
		}
		if !slices.Equal(got.Algorithms, oidcDefaultAlgs) || slices.ContainsFunc(got.Algorithms, func(a string) bool { return a == "none" || strings.HasPrefix(a, "HS") }) {
			t.Errorf("default algorithms %v", got.Algorithms)
		}
		got.Audiences[0] = "changed"
		if v.configs()[0].Audiences[0] != "bastion" {
			t.Error("configs() shares its slices with the verifier")
		}
		if v.maxSize != DefaultMaxTokenSize || v.skew != DefaultClockSkew {
			t.Errorf("options defaults: size %d skew %v", v.maxSize, v.skew)
		}
	})

	t.Run("duplicates and several errors", func(t *testing.T) {
		a, b := good(), good()
		b.Issuer = "https://other.example.com"
		c := good()
		c.Name = "other"
		d := good()
		d.Name, d.Issuer, d.Audiences = "broken", "http://x.example.com", nil
		_, err := NewVerifier([]ProviderConfig{a, b, c, d}, VerifierOptions{})
		for _, want := range []string{`name "corp" is used twice`, `"corp" and "other" have the same issuer`, `identity provider "broken": issuer`} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v does not say %q", err, want)
			}
		}
	})

	t.Run("no providers", func(t *testing.T) {
		if _, err := NewVerifier(nil, VerifierOptions{}); err == nil {
			t.Fatal("no error")
		}
	})

	t.Run("no network at construction", func(t *testing.T) {
		idp := newOIDCTestIdP(t)
		_, err := NewVerifier([]ProviderConfig{
			{Name: "up", Issuer: idp.Issuer(), Audiences: []string{"bastion"}},
			{Name: "down", Issuer: "http://127.0.0.1:1", Audiences: []string{"bastion"}},
		}, VerifierOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n := idp.discoveries.Load(); n != 0 {
			t.Fatalf("%d discovery requests at construction", n)
		}
	})
}

func TestVerifyValidToken(t *testing.T) {
	m := oidctest.StartMock(t, nil)
	clock := oidctest.NewClock()
	v := newTestVerifier(t, clock, ProviderConfig{Name: "corp", Issuer: m.Issuer(), Audiences: []string{"ssh", "bastion"}, Delegation: true})

	tok := oidctest.Sign(t, m, oidctest.Claims(m.Issuer(), oidctest.Start, map[string]any{
		"aud":        []string{"other-app", "bastion"},
		"act":        map[string]any{"sub": "agent-7"},
		"repository": "org/repo",
		"nbf":        oidctest.Start.Add(-time.Minute).Unix(),
	}))
	id, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	want := &policy.Identity{
		Provider: "corp",
		Issuer:   m.Issuer(),
		Subject:  "agent-7", // RFC 8693: the actor acts on behalf of "sub"
		Email:    "alice@example.com",
		Groups:   []string{"ops", "dev"},
		Sponsor:  "alice",
		Claims: map[string]any{
			"iss":        m.Issuer(),
			"sub":        "alice",
			"aud":        []any{"other-app", "bastion"},
			"iat":        float64(oidctest.Start.Add(-time.Minute).Unix()),
			"nbf":        float64(oidctest.Start.Add(-time.Minute).Unix()),
			"exp":        float64(oidctest.Start.Add(9 * time.Minute).Unix()),
			"email":      "alice@example.com",
			"groups":     []any{"ops", "dev"},
			"act":        map[string]any{"sub": "agent-7"},
			"repository": "org/repo",
		},
		IssuedAt: oidctest.Start.Add(-time.Minute),
		Expiry:   oidctest.Start.Add(9 * time.Minute),
	}
	if !reflect.DeepEqual(id, want) {
		t.Errorf("identity\n got %#v\nwant %#v", id, want)
	}
	if id.String() != "agent-7@corp" || !slices.Equal(id.Claim("act.sub"), []string{"agent-7"}) || !slices.Equal(id.Claim("sub"), []string{"alice"}) {
		t.Errorf("String() %q, Claim(act.sub) %q", id.String(), id.Claim("act.sub"))
	}

	// The edges of the clock skew (60s) are accepted.
	for _, edit := range []map[string]any{
		{"exp": oidctest.Start.Add(-50 * time.Second).Unix(), "iat": oidctest.Start.Add(-10 * time.Minute).Unix()},
		{"nbf": oidctest.Start.Add(50 * time.Second).Unix()},
		{"iat": oidctest.Start.Add(50 * time.Second).Unix()},
		{"iat": oidctest.Start.Add(-time.Hour - 50*time.Second).Unix()},
		{"iat": float64(oidctest.Start.Unix()) + 0.5},
	} {
		if _, err := v.Verify(context.Background(), oidctest.Sign(t, m, oidctest.Claims(m.Issuer(), oidctest.Start, edit))); err != nil {
			t.Errorf("%v: %v", edit, err)
		}
	}
}

func TestVerifyDelegationMalformed(t *testing.T) {
	m := oidctest.StartMock(t, nil)
	v := newTestVerifier(t, oidctest.NewClock(), ProviderConfig{Name: "corp", Issuer: m.Issuer(), Audiences: []string{"bastion"}, Delegation: true})
	for name, c := range map[string]struct {
		act    any
		reason string
	}{
		"act without sub":         {map[string]any{"iss": m.Issuer()}, events.ReasonMissingClaim},
		"act not an object":       {"agent-1", events.ReasonMissingClaim},
		"actor of another issuer": {map[string]any{"sub": "agent-1", "iss": "https://elsewhere.example"}, events.ReasonWrongIssuer},
	} {
		_, err := v.Verify(context.Background(), oidctest.Sign(t, m, oidctest.Claims(m.Issuer(), oidctest.Start, map[string]any{"act": c.act})))
		var te *TokenError
		if !errors.As(err, &te) || te.Reason != c.reason {
			t.Errorf("%s: %v, want %s", name, err, c.reason)
		}
	}
}

func TestVerifyClaimMapping(t *testing.T) {
	m := oidctest.StartMock(t, nil)
	clock := oidctest.NewClock()
	plain := newTestVerifier(t, clock, ProviderConfig{Name: "corp", Issuer: m.Issuer(), Audiences: []string{"bastion"}})
	agents := newTestVerifier(t, clock, ProviderConfig{
		Name: "agents", Issuer: m.Issuer(), Audiences: []string{"bastion"},
		SponsorClaim: "sponsor", EmailClaim: "upn", GroupsClaim: "realm_access.roles",
	})
	deleg := newTestVerifier(t, clock, ProviderConfig{
		Name: "exchange", Issuer: m.Issuer(), Audiences: []string{"bastion"}, SponsorClaim: "sponsor", Delegation: true,
	})
	tests := []struct {
		name         string
		v            *Verifier
		edits        map[string]any
		wantEmail    string
		wantGroups   []string
		wantSponsor  string
		wantSubject  string
		wantProvider string
	}{
		{name: "groups as one string", v: plain, edits: map[string]any{"groups": "ops"},
			wantEmail: "alice@example.com", wantGroups: []string{"ops"}, wantProvider: "corp"},
		{name: "groups with non-strings", v: plain, edits: map[string]any{"groups": []any{"ops", 7, map[string]any{}}},
			wantEmail: "alice@example.com", wantGroups: []string{"ops"}, wantProvider: "corp"},
		{name: "no groups, email not a string", v: plain, edits: map[string]any{"groups": nil, "email": 12},
			wantProvider: "corp"},
		{name: "sponsor claim", v: agents, edits: map[string]any{"sponsor": "team-infra", "act": map[string]any{"sub": "bob"}, "upn": "agent@example.com", "realm_access": map[string]any{"roles": []string{"deployer"}}},
			wantEmail: "agent@example.com", wantGroups: []string{"deployer"}, wantSponsor: "team-infra", wantProvider: "agents"},
		{name: "act without delegation is an ordinary claim", v: agents, edits: map[string]any{"act": map[string]any{"sub": "bob"}},
			wantProvider: "agents"},
		{name: "delegation: act.sub acts for sub", v: deleg, edits: map[string]any{"act": map[string]any{"sub": "bob"}},
			wantEmail: "alice@example.com", wantGroups: []string{"ops", "dev"}, wantSponsor: "alice", wantSubject: "bob", wantProvider: "exchange"},
		{name: "delegation: the sponsor claim cannot replace sub", v: deleg, edits: map[string]any{"sponsor": "team-x", "act": map[string]any{"sub": "bob"}},
			wantEmail: "alice@example.com", wantGroups: []string{"ops", "dev"}, wantSponsor: "alice", wantSubject: "bob", wantProvider: "exchange"},
		{name: "top-level dotted name wins", v: agents, edits: map[string]any{"realm_access.roles": "flat", "realm_access": map[string]any{"roles": []string{"nested"}}},
			wantGroups: []string{"flat"}, wantProvider: "agents"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.v.Verify(context.Background(), oidctest.Sign(t, m, oidctest.Claims(m.Issuer(), oidctest.Start, tt.edits)))
			if err != nil {
				t.Fatal(err)
			}
			wantSubject := tt.wantSubject
			if wantSubject == "" {
				wantSubject = "alice"
			}
			if id.Email != tt.wantEmail || !slices.Equal(id.Groups, tt.wantGroups) || id.Sponsor != tt.wantSponsor || id.Provider != tt.wantProvider || id.Subject != wantSubject {
				t.Errorf("got email %q groups %q sponsor %q provider %q subject %q", id.Email, id.Groups, id.Sponsor, id.Provider, id.Subject)
			}
		})
	}
}

// TestVerifyBadTokens is the matrix of refused tokens: each must fail with
// its reason and a sentence that says what is wrong.
func TestVerifyBadTokens(t *testing.T) {
	corp := oidctest.StartMock(t, nil)
	other := oidctest.StartMock(t, oidcTestRSAKey())
	clock := oidctest.NewClock()
	v := newTestVerifier(t, clock,
		ProviderConfig{Name: "corp", Issuer: corp.Issuer(), Audiences: []string{"bastion"}, Algorithms: []string{"RS256"}},
		ProviderConfig{Name: "other", Issuer: other.Issuer(), Audiences: []string{"bastion"}},
	)
	iss := corp.Issuer()
	kid := mockKid(t, corp)
	claims := func(edits map[string]any) jwt.MapClaims { return oidctest.Claims(iss, oidctest.Start, edits) }
	sign := func(edits map[string]any) string { return oidctest.Sign(t, corp, claims(edits)) }
	valid := sign(nil)
	validParts := strings.Split(valid, ".")
	header := mustJSON(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": kid})
	payload := mustJSON(t, claims(nil))

	pub := &corp.Keypair.PrivateKey.PublicKey
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PublicKey(pub)
	hsHeader := mustJSON(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid})

	// Change one character inside the signature, staying in the base64url
	// alphabet (the last character could carry trailing bits; this one
	// cannot).
	tamperedSig := []byte(validParts[2])
	if tamperedSig[10] == 'A' {
		tamperedSig[10] = 'B'
	} else {
		tamperedSig[10] = 'A'
	}

	tests := []struct {
		name   string
		token  string
		reason string
		msg    string
	}{
		// Time.
		{"expired", sign(map[string]any{"exp": oidctest.Start.Add(-5 * time.Minute).Unix(), "iat": oidctest.Start.Add(-15 * time.Minute).Unix()}),
			events.ReasonTokenExpired, "token expired at 2026-11-27T07:00:00Z (now 2026-11-27T07:05:00Z)"},
		{"expired beyond the skew", sign(map[string]any{"exp": oidctest.Start.Add(-61 * time.Second).Unix()}),
			events.ReasonTokenExpired, "token expired at 2026-11-27T07:03:59Z"},
		{"not yet valid", sign(map[string]any{"nbf": oidctest.Start.Add(10 * time.Minute).Unix()}),
			events.ReasonTokenNotYetValid, "token is not valid before 2026-11-27T07:15:00Z (now 2026-11-27T07:05:00Z, allowing 1m0s of clock skew)"},
		{"issued in the future", sign(map[string]any{"iat": oidctest.Start.Add(10 * time.Minute).Unix(), "exp": oidctest.Start.Add(20 * time.Minute).Unix()}),
			events.ReasonTokenIssuedInFuture, "token was issued at 2026-11-27T07:15:00Z, in the future"},
		{"older than the max age", sign(map[string]any{"iat": oidctest.Start.Add(-2 * time.Hour).Unix(), "exp": oidctest.Start.Add(time.Hour).Unix()}),
			events.ReasonTokenTooOld, "token was issued at 2026-11-27T05:05:00Z, more than 1h0m0s ago"},

		// Audience.
		{"wrong audience", sign(map[string]any{"aud": []string{"x"}}),
			events.ReasonWrongAudience, `token's audience ["x"] does not include any of ["bastion"]`},
		{"no audience", sign(map[string]any{"aud": nil}),
			events.ReasonWrongAudience, `token has no audience ("aud"); it must name one of ["bastion"]`},
		{"audience not strings", sign(map[string]any{"aud": []any{"bastion", 1}}),
			events.ReasonTokenMalformed, `"aud" claim lists a number`},

		// Signature and keys.
		{"payload altered", validParts[0] + "." + b64.EncodeToString([]byte(mustJSON(t, claims(map[string]any{"sub": "root"})))) + "." + validParts[2],
			events.ReasonBadSignature, `token's signature does not verify with the keys of identity provider "corp"`},
		{"signature altered", validParts[0] + "." + validParts[1] + "." + string(tamperedSig),
			events.ReasonBadSignature, "does not verify"},
		{"signature empty", validParts[0] + "." + validParts[1] + ".",
			events.ReasonBadSignature, "does not verify"},
		{"another provider's key under our kid", rs256Raw(t, oidcTestRSAKey(), header, payload),
			events.ReasonBadSignature, "does not verify"},
		{"another provider's key without kid", rs256Raw(t, oidcTestRSAKey(), `{"alg":"RS256","typ":"JWT"}`, payload),
			events.ReasonBadSignature, "does not verify"},
		{"another provider's key and kid", oidctest.Sign(t, other, claims(nil)),
			events.ReasonUnknownKey, fmt.Sprintf(`token is signed with key %q, which identity provider "corp" does not publish`, mockKid(t, other))},
		{"unknown kid", rs256Raw(t, oidcTestRSAKey(), `{"alg":"RS256","kid":"retired-2025"}`, payload),
			events.ReasonUnknownKey, `key "retired-2025", which identity provider "corp" does not publish (its key set was fetched at 2026-11-27T07:05:00Z)`},

		// Algorithms.
		{"alg none", rawToken(`{"alg":"none","typ":"JWT"}`, payload, nil),
			events.ReasonAlgNotAllowed, `token is signed with algorithm "none", which identity provider "corp" is not allowed to use (allowed: RS256)`},
		{"alg None with signature", rawToken(`{"alg":"None"}`, payload, []byte("x")),
			events.ReasonAlgNotAllowed, `algorithm "None"`},
		{"HS256 keyed with the PKIX PEM public key", hs256Raw(hsHeader, payload, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})),
			events.ReasonAlgNotAllowed, `algorithm "HS256"`},
		{"HS256 keyed with the PKCS #1 PEM public key", hs256Raw(hsHeader, payload, pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pkcs1})),
			events.ReasonAlgNotAllowed, `algorithm "HS256"`},
		{"HS256 keyed with the PKIX DER public key", hs256Raw(hsHeader, payload, pkix),
			events.ReasonAlgNotAllowed, `algorithm "HS256"`},
		{"HS256 keyed with the PKCS #1 DER public key", hs256Raw(hsHeader, payload, pkcs1),
			events.ReasonAlgNotAllowed, `algorithm "HS256"`},
		{"PS256 not in the allow-list", joseSign(t, corp.Keypair.PrivateKey, jose.PS256, kid, claims(nil)),
			events.ReasonAlgNotAllowed, `algorithm "PS256"`},
		{"ES256 not in the allow-list", joseSign(t, newECKey(t), jose.ES256, kid, claims(nil)),
			events.ReasonAlgNotAllowed, `algorithm "ES256"`},

		// Issuer.
		{"issuer not configured", oidctest.Sign(t, corp, oidctest.Claims("https://evil.example.com", oidctest.Start, nil)),
			events.ReasonIssuerUnknown, fmt.Sprintf(`token's issuer "https://evil.example.com" is not a configured identity provider (configured: %s, %s)`, iss, other.Issuer())},
		{"issuer with a trailing slash", oidctest.Sign(t, corp, oidctest.Claims(iss+"/", oidctest.Start, nil)),
			events.ReasonIssuerUnknown, "is not a configured identity provider"},
		{"no issuer", sign(map[string]any{"iss": nil}),
			events.ReasonMissingClaim, `token has no "iss" claim`},
		{"issuer not a string", sign(map[string]any{"iss": 7}),
			events.ReasonTokenMalformed, `token's "iss" claim is a number, not a string`},
		{"issuer claimed twice, case-folded", rs256Raw(t, corp.Keypair.PrivateKey, header, strings.TrimSuffix(payload, "}")+`,"ISS":"https://evil.example.com"}`),
			events.ReasonTokenMalformed, "token's claims are malformed"},

		// Required claims.
		{"no subject", sign(map[string]any{"sub": nil}), events.ReasonMissingClaim, `token has no "sub" claim`},
		{"empty subject", sign(map[string]any{"sub": ""}), events.ReasonMissingClaim, `token's "sub" claim is empty`},
		{"subject not a string", sign(map[string]any{"sub": 42}), events.ReasonTokenMalformed, `token's "sub" claim is a number, not a string`},
		{"no iat", sign(map[string]any{"iat": nil}), events.ReasonMissingClaim, `token has no "iat" claim`},
		{"no exp", sign(map[string]any{"exp": nil}), events.ReasonMissingClaim, `token has no "exp" claim`},
		{"exp a string", sign(map[string]any{"exp": "tomorrow"}), events.ReasonTokenMalformed, `"exp" claim`},
		{"exp out of range", sign(map[string]any{"exp": 1e300}), events.ReasonTokenMalformed, `token's "exp" claim 1e+300 is not a time between 1970 and 9999`},
		{"nbf negative", sign(map[string]any{"nbf": -1}), events.ReasonTokenMalformed, `token's "nbf" claim -1 is not a time`},

		// Size.
		{"over the size limit", sign(map[string]any{"pad": strings.Repeat("a", 20000)}),
			events.ReasonTokenTooLarge, "bytes, more than the 16384 allowed"},

		// Structure.
		{"empty", "", events.ReasonTokenMalformed, "token is not a JWT: it must be three base64url parts separated by dots"},
		{"one part", "abc", events.ReasonTokenMalformed, "three base64url parts"},
		{"two parts", validParts[0] + "." + validParts[1], events.ReasonTokenMalformed, "three base64url parts"},
		{"four parts", valid + ".x", events.ReasonTokenMalformed, "three base64url parts"},
		{"header not base64", "!!!." + validParts[1] + "." + validParts[2], events.ReasonTokenMalformed, "token's header is not base64url"},
		{"header padded", b64.EncodeToString([]byte(header+" ")) + "=." + validParts[1] + "." + validParts[2], events.ReasonTokenMalformed, "token's header is not base64url"},
		{"header standard base64", strings.NewReplacer("-", "+", "_", "/").Replace(validParts[0]) + "+/." + validParts[1] + "." + validParts[2], events.ReasonTokenMalformed, "token's header is not base64url"},
		{"header empty", "." + validParts[1] + "." + validParts[2], events.ReasonTokenMalformed, "token's header is not base64url"},
		{"payload not base64", validParts[0] + ".%%." + validParts[2], events.ReasonTokenMalformed, "token's payload is not base64url"},
		{"payload with non-canonical trailing bits", validParts[0] + "." + b64.EncodeToString([]byte("{}"))[:2] + "f." + validParts[2], events.ReasonTokenMalformed, "token's payload is not base64url"},
		{"signature not base64", validParts[0] + "." + validParts[1] + ".*", events.ReasonTokenMalformed, "token's signature is not base64url"},
		{"header JSON broken", rawToken(`{"alg":"RS256"`, payload, []byte("s")), events.ReasonTokenMalformed, "token's header is not a JSON object"},
		{"header JSON array", rawToken(`["RS256"]`, payload, []byte("s")), events.ReasonTokenMalformed, "token's header is not a JSON object"},
		{"header JSON null", rawToken(`null`, payload, []byte("s")), events.ReasonTokenMalformed, "token's header is not a JSON object"},
		{"header without alg", rawToken(`{"typ":"JWT"}`, payload, []byte("s")), events.ReasonTokenMalformed, `token's header has no "alg"`},
		{"header alg a number", rawToken(`{"alg":256}`, payload, []byte("s")), events.ReasonTokenMalformed, `token's header has no "alg"`},
		{"header kid a number", rawToken(`{"alg":"RS256","kid":1}`, payload, []byte("s")), events.ReasonTokenMalformed, `"kid" that is not a string`},
		{"header crit", rs256Raw(t, corp.Keypair.PrivateKey, `{"alg":"RS256","kid":"`+kid+`","crit":["b64"],"b64":false}`, payload),
			events.ReasonTokenMalformed, `critical extensions ("crit")`},
		{"payload JSON broken", rawToken(header, `{"iss":`, []byte("s")), events.ReasonTokenMalformed, "token's payload is not a JSON object"},
		{"payload JSON trailing data", rawToken(header, payload+"x", []byte("s")), events.ReasonTokenMalformed, "token's payload is not a JSON object"},
		{"payload JSON string", rawToken(header, `"hello"`, []byte("s")), events.ReasonTokenMalformed, "token's payload is not a JSON object"},
		{"payload JSON null", rawToken(header, `null`, []byte("s")), events.ReasonTokenMalformed, "token's payload is not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tt.token)
			if err == nil {
				t.Fatalf("accepted: %+v", id)
			}
			if id != nil {
				t.Errorf("identity %+v returned with an error", id)
			}
			wantTokenError(t, err, tt.reason, tt.msg, tt.token)
			t.Logf("%v", err)
			var te *TokenError
			if errors.As(err, &te) && te.Provider != "" && te.Provider != "corp" {
				t.Errorf("provider %q", te.Provider)
			}
		})
	}

	// After all that, the valid token still verifies.
	if _, err := v.Verify(context.Background(), valid); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyDiscoveryNamesAnotherIssuer: the configured issuer's discovery
// document says it is someone else.
func TestVerifyDiscoveryNamesAnotherIssuer(t *testing.T) {
	key := newECKey(t)
	idp := newOIDCTestIdP(t, publicJWK(key, "k1", jose.ES256))
	idp.set(func(idp *oidcTestIdP) { idp.issuer = "https://login.example.com/tenant-b" })
	v := newTestVerifier(t, oidctest.NewClock(), ProviderConfig{Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"bastion"}})
	tok := joseSign(t, key, jose.ES256, "k1", oidctest.Claims(idp.Issuer(), oidctest.Start, nil))
	_, err := v.Verify(context.Background(), tok)
	wantTokenError(t, err, events.ReasonProviderMisconfigured, `identity provider "corp" calls itself "https://login.example.com/tenant-b" in its discovery document, not "`+idp.Issuer()+`" as configured`, tok)
}

func TestVerifyTwoProviders(t *testing.T) {
	corp := oidctest.StartMock(t, nil)
	partner := oidctest.StartMock(t, oidcTestRSAKey())
	v := newTestVerifier(t, oidctest.NewClock(),
		ProviderConfig{Name: "corp", Issuer: corp.Issuer(), Audiences: []string{"bastion"}},
		ProviderConfig{Name: "partner", Issuer: partner.Issuer(), Audiences: []string{"bastion-partner"}},
	)
	for _, tt := range []struct {
		m        *mockoidc.MockOIDC
		provider string
		aud      string
	}{{corp, "corp", "bastion"}, {partner, "partner", "bastion-partner"}} {
		tok := oidctest.Sign(t, tt.m, oidctest.Claims(tt.m.Issuer(), oidctest.Start, map[string]any{"aud": tt.aud}))
		id, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("%s: %v", tt.provider, err)
		}
		if id.Provider != tt.provider || id.Issuer != tt.m.Issuer() {
			t.Errorf("%s: identity from %q (%s)", tt.provider, id.Provider, id.Issuer)
		}
	}
	// Each provider's audience is its own.
	tok := oidctest.Sign(t, partner, oidctest.Claims(partner.Issuer(), oidctest.Start, map[string]any{"aud": "bastion"}))
	_, err := v.Verify(context.Background(), tok)
	wantTokenError(t, err, events.ReasonWrongAudience, `does not include any of ["bastion-partner"]`, tok)
	// A token naming corp but signed by partner is refused.
	tok = oidctest.Sign(t, partner, oidctest.Claims(corp.Issuer(), oidctest.Start, nil))
	_, err = v.Verify(context.Background(), tok)
	wantTokenError(t, err, events.ReasonUnknownKey, `which identity provider "corp" does not publish`, tok)
}

// TestVerifyKeyRotation: the provider starts signing with a new key under a
// new kid, and drops the old one. mockoidc serves one fixed key, so this
// provider is the small one above, with go-jose keys.
func TestVerifyKeyRotation(t *testing.T) {
	k1, k2 := newECKey(t), newECKey(t)
	idp := newOIDCTestIdP(t, publicJWK(k1, "2026-10", jose.ES256))
	clock := oidctest.NewClock()
	v := newTestVerifier(t, clock, ProviderConfig{Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"bastion"}})
	mint := func(k *ecdsa.PrivateKey, kid string) string {
		return joseSign(t, k, jose.ES256, kid, oidctest.Claims(idp.Issuer(), clock.Now(), nil))
	}
	verify := func(tok string) error {
		_, err := v.Verify(context.Background(), tok)
		return err
	}

	if err := verify(mint(k1, "2026-10")); err != nil {
		t.Fatal(err)
	}
	if n := idp.keyFetches.Load(); n != 1 {
		t.Fatalf("%d key set fetches, want 1", n)
	}

	idp.set(func(idp *oidcTestIdP) { idp.keys = []jose.JSONWebKey{publicJWK(k2, "2026-11", jose.ES256)} })

	// Within oidcKeySetInterval of the last fetch, the key set is not
	// fetched again: the new key is not known yet.
	tok := mint(k2, "2026-11")
	wantTokenError(t, verify(tok), events.ReasonUnknownKey, `key "2026-11"`, tok)
	if n := idp.keyFetches.Load(); n != 1 {
		t.Fatalf("%d key set fetches, want still 1", n)
	}

	clock.Advance(oidcKeySetInterval + time.Second)
	// go-oidc's RemoteKeySet records a fetch's keys (and forgets the
	// fetch) just after handing its result to the waiting callers, so a
	// call right after one may still see the keys from before: allow a
	// few tries.
	tok = mint(k2, "2026-11")
	eventually(t, func() error { return verify(tok) })
	if n := idp.keyFetches.Load(); n != 2 {
		t.Fatalf("%d key set fetches, want 2", n)
	}
	// The refetched set replaced the old: the retired key is refused.
	tok = mint(k1, "2026-10")
	eventually(t, func() error {
		if verify(tok) == nil {
			return errors.New("the retired key still verifies")
		}
		return nil
	})
	wantTokenError(t, verify(tok), events.ReasonUnknownKey, `key "2026-10", which identity provider "corp" does not publish`, tok)

	// Many tokens naming made-up keys cost the provider one fetch per
	// interval, not one each.
	for i := range 50 {
		tok := mint(k2, fmt.Sprintf("made-up-%d", i))
		wantTokenError(t, verify(tok), events.ReasonUnknownKey, "does not publish", tok)
	}
	if n := idp.keyFetches.Load(); n != 2 {
		t.Fatalf("%d key set fetches after 50 unknown keys, want 2", n)
	}
}

// eventually retries f for a few seconds until it returns nil.
func eventually(t testing.TB, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestVerifyKeySetRedirect: a jwks_uri that redirects is followed, and the
// key IDs of the set at the end of the redirect are what Verify knows.
func TestVerifyKeySetRedirect(t *testing.T) {
	key := newECKey(t)
	idp := newOIDCTestIdP(t, publicJWK(key, "k1", jose.ES256))
	idp.set(func(idp *oidcTestIdP) { idp.redirect = true })
	v := newTestVerifier(t, oidctest.NewClock(), ProviderConfig{Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"bastion"}})
	claims := oidctest.Claims(idp.Issuer(), oidctest.Start, nil)
	if _, err := v.Verify(context.Background(), joseSign(t, key, jose.ES256, "k1", claims)); err != nil {
		t.Fatal(err)
	}
	tok := joseSign(t, newECKey(t), jose.ES256, "k1", claims)
	_, err := v.Verify(context.Background(), tok)
	wantTokenError(t, err, events.ReasonBadSignature, "does not verify", tok)
	tok = joseSign(t, key, jose.ES256, "k2", claims)
	_, err = v.Verify(context.Background(), tok)
	wantTokenError(t, err, events.ReasonUnknownKey, `key "k2"`, tok)
	if n := idp.keyFetches.Load(); n != 1 {
		t.Errorf("%d key set fetches, want 1", n)
	}
}

// TestVerifyAlgorithms: ES256, EdDSA and RS256 from one provider, and a key
// whose type does not match the header's algorithm.
func TestVerifyAlgorithms(t *testing.T) {
	ec := newECKey(t)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := oidcTestRSAKey()
	idp := newOIDCTestIdP(t, publicJWK(ec, "ec", jose.ES256), publicJWK(ed, "ed", jose.EdDSA), publicJWK(rsaKey, "rsa", jose.RS256))
	v := newTestVerifier(t, oidctest.NewClock(), ProviderConfig{Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"bastion"}})
	claims := oidctest.Claims(idp.Issuer(), oidctest.Start, nil)
	for _, tt := range []struct {
		key crypto.Signer
		alg jose.SignatureAlgorithm
		kid string
	}{{ec, jose.ES256, "ec"}, {ed, jose.EdDSA, "ed"}, {rsaKey, jose.RS256, "rsa"}, {rsaKey, jose.PS256, "rsa"}} {
		if _, err := v.Verify(context.Background(), joseSign(t, tt.key, tt.alg, tt.kid, claims)); err != nil {
			t.Errorf("%s: %v", tt.alg, err)
		}
	}
	// An EdDSA signature presented under the EC key's kid.
	tok := joseSign(t, ed, jose.EdDSA, "ec", claims)
	wantTokenError(t, func() error { _, err := v.Verify(context.Background(), tok); return err }(), events.ReasonBadSignature, "does not verify", tok)
}

func TestVerifyProviderUnavailable(t *testing.T) {
	key := newECKey(t)
	clock := oidctest.NewClock()

	t.Run("discovery down, then back", func(t *testing.T) {
		idp := newOIDCTestIdP(t, publicJWK(key, "k", jose.ES256))
		idp.set(func(idp *oidcTestIdP) { idp.down = true })
		v := newTestVerifier(t, clock, ProviderConfig{Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"bastion"}})
		tok := joseSign(t, key, jose.ES256, "k", oidctest.Claims(idp.Issuer(), clock.Now(), nil))

		_, err := v.Verify(context.Background(), tok)
		wantTokenError(t, err, events.ReasonProviderUnavailable, `cannot fetch the discovery document of identity provider "corp": 503 Service Unavailable`, tok)
		// During the backoff, the provider is not asked again.
		_, err = v.Verify(context.Background(), tok)
		wantTokenError(t, err, events.ReasonProviderUnavailable, "(next attempt after 2026-11-27T07:05:01Z)", tok)
		idp.set(func(idp *oidcTestIdP) { idp.down = false })
		_, err = v.Verify(context.Background(), tok)
		wantTokenError(t, err, events.ReasonProviderUnavailable, "next attempt after", tok)
		if n := idp.discoveries.Load(); n != 1 {
			t.Fatalf("%d discovery requests during the backoff, want 1", n)
		}

		clock.Advance(2 * time.Second)
		tok = joseSign(t, key, jose.ES256, "k", oidctest.Claims(idp.Issuer(), clock.Now(), nil))
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
		if n := idp.discoveries.Load(); n != 2 {
			t.Fatalf("%d discovery requests, want 2", n)
		}
		var te *TokenError
		if !errors.As(err, &te) || errors.Unwrap(te) == nil {
			t.Errorf("the unavailable error does not wrap its cause")
		}
	})

	t.Run("key set down, then back", func(t *testing.T) {
		idp := newOIDCTestIdP(t, publicJWK(key, "k", jose.ES256))
		idp.set(func(idp *oidcTestIdP) { idp.jwksDown = true })
		v := newTestVerifier(t, clock, ProviderConfig{Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"bastion"}})
		tok := joseSign(t, key, jose.ES256, "k", oidctest.Claims(idp.Issuer(), clock.Now(), nil))
		_, err := v.Verify(context.Background(), tok)
		wantTokenError(t, err, events.ReasonProviderUnavailable, `cannot fetch the signing keys of identity provider "corp": Get "`+idp.Issuer()+`/keys": key set request answered 503 Service Unavailable`, tok)

		idp.set(func(idp *oidcTestIdP) { idp.jwksDown = false })
		clock.Advance(oidcKeySetInterval)
		tok = joseSign(t, key, jose.ES256, "k", oidctest.Claims(idp.Issuer(), clock.Now(), nil))
		// See TestVerifyKeyRotation for why this may take a second try.
		eventually(t, func() error { _, err := v.Verify(context.Background(), tok); return err })
	})

	t.Run("nothing listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		iss := "http://" + ln.Addr().String()
		ln.Close()
		v := newTestVerifier(t, clock, ProviderConfig{Name: "corp", Issuer: iss, Audiences: []string{"bastion"}})
		tok := joseSign(t, key, jose.ES256, "k", oidctest.Claims(iss, clock.Now(), nil))
		_, err = v.Verify(context.Background(), tok)
		wantTokenError(t, err, events.ReasonProviderUnavailable, "connection refused", tok)
	})

	t.Run("caller gives up", func(t *testing.T) {
		idp := newOIDCTestIdP(t, publicJWK(key, "k", jose.ES256))
		release := make(chan struct{})
		idp.set(func(idp *oidcTestIdP) { idp.slowUntil = release })
		defer close(release)
		v := newTestVerifier(t, clock, ProviderConfig{Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"bastion"}})
		tok := joseSign(t, key, jose.ES256, "k", oidctest.Claims(idp.Issuer(), clock.Now(), nil))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := v.Verify(ctx, tok)
		wantTokenError(t, err, events.ReasonProviderUnavailable, `gave up waiting for the discovery document of identity provider "corp": context deadline exceeded`, tok)
	})
}

// TestVerifySlowProviderDoesNotBlockOthers: while one provider's discovery
// hangs, another provider's tokens verify.
func TestVerifySlowProviderDoesNotBlockOthers(t *testing.T) {
	key := newECKey(t)
	slow := newOIDCTestIdP(t, publicJWK(key, "k", jose.ES256))
	release := make(chan struct{})
	slow.set(func(idp *oidcTestIdP) { idp.slowUntil = release })
	fast := oidctest.StartMock(t, nil)
	v := newTestVerifier(t, oidctest.NewClock(),
		ProviderConfig{Name: "slow", Issuer: slow.Issuer(), Audiences: []string{"bastion"}},
		ProviderConfig{Name: "fast", Issuer: fast.Issuer(), Audiences: []string{"bastion"}},
	)

	slowTok := joseSign(t, key, jose.ES256, "k", oidctest.Claims(slow.Issuer(), oidctest.Start, nil))
	slowDone := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), slowTok)
		slowDone <- err
	}()
	for slow.discoveries.Load() == 0 {
		time.Sleep(time.Millisecond)
	}

	start := time.Now()
	for range 10 {
		if _, err := v.Verify(context.Background(), oidctest.Sign(t, fast, oidctest.Claims(fast.Issuer(), oidctest.Start, nil))); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the fast provider took %v", d)
	}
	select {
	case err := <-slowDone:
		t.Fatalf("the slow provider answered before it was released: %v", err)
	default:
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Fatalf("slow provider, once released: %v", err)
	}
}

// TestVerifyConcurrentFirstUse: many tokens at once for a provider not yet
// discovered share one discovery and one key set fetch.
func TestVerifyConcurrentFirstUse(t *testing.T) {
	key := newECKey(t)
	idp := newOIDCTestIdP(t, publicJWK(key, "k", jose.ES256))
	v := newTestVerifier(t, oidctest.NewClock(), ProviderConfig{Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"bastion"}})
	var toks []string
	for i := range 8 {
		toks = append(toks, joseSign(t, key, jose.ES256, "k", oidctest.Claims(idp.Issuer(), oidctest.Start, map[string]any{"sub": fmt.Sprintf("user%d", i)})))
	}
	bad := toks[0][:len(toks[0])-4] + "AAAA"

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			tok := toks[i%len(toks)]
			id, err := v.Verify(context.Background(), tok)
			switch {
			case err != nil:
				errs <- err
			case id.Subject != fmt.Sprintf("user%d", i%len(toks)):
				errs <- fmt.Errorf("token %d gave subject %q", i%len(toks), id.Subject)
			}
			if _, err := v.Verify(context.Background(), bad); err == nil {
				errs <- errors.New("a bad token verified")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d, k := idp.discoveries.Load(), idp.keyFetches.Load(); d != 1 || k != 1 {
		t.Errorf("%d discoveries and %d key set fetches, want 1 and 1", d, k)
	}
}

func TestTokenErrorUnwrap(t *testing.T) {
	cause := errors.New("cause")
	te := &TokenError{Reason: events.ReasonProviderUnavailable, Provider: "corp", Err: fmt.Errorf("identity provider down: %w", cause)}
	if !errors.Is(te, cause) || te.Error() != "identity provider down: cause" {
		t.Errorf("Error() %q, Is(cause) %v", te.Error(), errors.Is(te, cause))
	}
	if (&TokenError{Reason: events.ReasonBadSignature}).Error() != "token refused: bad_signature" {
		t.Error("a TokenError without Err has no sentence")
	}
}

// BenchmarkVerify measures Verify on the hot path (provider discovered,
// keys cached) for the common algorithms.
func BenchmarkVerify(b *testing.B) {
	ec := newECKey(b)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	rsaKey := oidcTestRSAKey()
	idp := newOIDCTestIdP(b, publicJWK(ec, "ec", jose.ES256), publicJWK(ed, "ed", jose.EdDSA), publicJWK(rsaKey, "rsa", jose.RS256))
	v := newTestVerifier(b, oidctest.NewClock(), ProviderConfig{Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"bastion"}})
	claims := oidctest.Claims(idp.Issuer(), oidctest.Start, map[string]any{"groups": []string{"ops", "dev", "sre", "db-admins"}, "act": map[string]any{"sub": "bob"}})
	for _, tt := range []struct {
		key crypto.Signer
		alg jose.SignatureAlgorithm
		kid string
	}{{ec, jose.ES256, "ec"}, {rsaKey, jose.RS256, "rsa"}, {ed, jose.EdDSA, "ed"}} {
		tok := joseSign(b, tt.key, tt.alg, tt.kid, claims)
		if _, err := v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
		b.Run(string(tt.alg), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(tt.alg)+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.Verify(context.Background(), tok); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
