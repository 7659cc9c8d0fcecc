package bastion

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/recorder/events"
)

const matrixConfig = `
api {
  listen = "127.0.0.1:0"
  rate_per_identity = -1
  rate_per_address  = -1
}
identity_provider "corp" {
  issuer    = "%ISSUER%"
  audiences = ["%AUDIENCE%"]
  delegation = true
  max_token_age = "1h"
}
role "agents" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  logins = ["deploy"]
}
`

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64json(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// TestBadTokenMatrix sends every kind of bad token to the API: each is
// refused with 401 (or 403), a stable reason and a clear message, and each
// refusal is a journal event with that reason.
func TestBadTokenMatrix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := startOP(t)
	ts := startServer(t, m, matrixConfig)
	_, pub := newKey(t, t.TempDir(), "id")
	now := time.Now()
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := agentClaims(m, "agent-1")
		if edit != nil {
			edit(c)
		}
		return c
	}
	kid, _ := m.Keypair.KeyID()
	pubDER, err := x509.MarshalPKIXPublicKey(m.Keypair.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs256 := func(secret []byte) string {
		head := b64json(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid})
		body := b64json(t, claims(nil))
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(head + "." + body))
		return head + "." + body + "." + b64(mac.Sum(nil))
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signWith := func(key *rsa.PrivateKey, kid string, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := mint(t, m, claims(nil))
	parts := strings.Split(valid, ".")
	sig := []byte(parts[2])
	// Another base64url character, so the signature still decodes.
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	cases := []struct {
		name, token, reason string
	}{
		{"expired", mint(t, m, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Minute).Unix() })), events.ReasonTokenExpired},
		{"not yet valid", mint(t, m, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Minute).Unix() })), events.ReasonTokenNotYetValid},
		{"issued in the future", mint(t, m, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Minute).Unix() })), events.ReasonTokenIssuedInFuture},
		{"issuer not configured", mint(t, m, claims(func(c jwt.MapClaims) { c["iss"] = "https://idp.elsewhere.example" })), events.ReasonIssuerUnknown},
		{"wrong issuer's key", signWith(other, kid, claims(nil)), events.ReasonBadSignature},
		{"wrong audience", mint(t, m, claims(func(c jwt.MapClaims) { c["aud"] = "someone-else" })), events.ReasonWrongAudience},
		{"bad signature", parts[0] + "." + parts[1] + "." + string(sig), events.ReasonBadSignature},
		{"payload altered", parts[0] + "." + b64json(t, claims(func(c jwt.MapClaims) { c["sub"] = "agent-root" })) + "." + parts[2], events.ReasonBadSignature},
		{"alg none", b64json(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + parts[1] + ".", events.ReasonAlgNotAllowed},
		{"HS256 with the RSA public key (PEM)", hs256(pubPEM), events.ReasonAlgNotAllowed},
		{"HS256 with the RSA public key (DER)", hs256(pubDER), events.ReasonAlgNotAllowed},
		{"unknown kid", signWith(other, "no-such-key", claims(nil)), events.ReasonUnknownKey},
		{"missing subject", mint(t, m, claims(func(c jwt.MapClaims) { delete(c, "sub"); delete(c, "act") })), events.ReasonMissingClaim},
		{"over the size limit", mint(t, m, claims(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 20<<10) })), events.ReasonTokenTooLarge},
		{"malformed JSON header", b64([]byte(`{"alg":"RS256",`)) + "." + parts[1] + "." + parts[2], events.ReasonTokenMalformed},
		{"malformed JSON payload", parts[0] + "." + b64([]byte(`{"sub":`)) + "." + parts[2], events.ReasonTokenMalformed},
		{"not base64", parts[0] + ".!!!." + parts[2], events.ReasonTokenMalformed},
		{"not a JWT", "hello", events.ReasonTokenMalformed},
		{"older than the maximum age", mint(t, m, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(-2 * time.Hour).Unix() })), events.ReasonTokenTooOld},
	}
	for _, c := range cases {
		_, err := ts.client.Certificate(ctx, c.token, certauth.CertificateRequest{PublicKey: pub})
		var apiErr *apiclient.APIError
		if !errors.As(err, &apiErr) {
			t.Errorf("%s: got %v, want an API error", c.name, err)
			continue
		}
		if apiErr.Reason != c.reason || apiErr.Status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s (%s), want 401 %s", c.name, apiErr.Status, apiErr.Reason, apiErr.Message, c.reason)
		}
		if len(apiErr.Message) < 20 || strings.Contains(apiErr.Message, c.token) {
			t.Errorf("%s: message %q is not a clear sentence, or leaks the token", c.name, apiErr.Message)
		}
	}
	// The valid token works, so the refusals were the tokens' fault.
	if _, err := ts.client.Certificate(ctx, valid, certauth.CertificateRequest{PublicKey: pub}); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	refused := ts.events(t, events.CertRefused)
	if len(refused) != len(cases) {
		t.Fatalf("%d refusal events for %d refusals", len(refused), len(cases))
	}
	for i, c := range cases {
		r := refused[i]
		if r["reason"] != c.reason || r["error"] == "" || r["client.address"] != "127.0.0.1" || len(r["token.sha256"]) != 64 {
			t.Errorf("%s: journaled as %v", c.name, r)
		}
		if _, ok := r["identity"]; ok {
			t.Errorf("%s: a refused token's identity was journaled as if verified: %v", c.name, r)
		}
	}
}

// TestBadKeyMatrix: malformed keys, short RSA, DSA and a certificate in
// place of a key are refused with clear errors, and journaled.
func TestBadKeyMatrix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := startOP(t)
	ts := startServer(t, m, matrixConfig)
	token := mint(t, m, agentClaims(m, "agent-1"))
	_, good := newKey(t, t.TempDir(), "id")
	resp, err := ts.client.Certificate(ctx, token, certauth.CertificateRequest{PublicKey: good})
	if err != nil {
		t.Fatal(err)
	}
	rsaLine := func(bits int) string {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ssh.NewPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p)))
	}
	dsaFile, err := os.ReadFile("../testdata/keys/dsa-1024.pub")
	if err != nil {
		t.Fatal(err)
	}
	dsaLine := strings.TrimSpace(string(dsaFile))
	fields := strings.Fields(good)
	cases := []struct {
		name, key, reason string
	}{
		{"empty", "", events.ReasonKeyMalformed},
		{"garbage", "not a key", events.ReasonKeyMalformed},
		{"bad base64", "ssh-ed25519 AAAA!!!!", events.ReasonKeyMalformed},
		{"truncated", fields[0] + " " + fields[1][:40], events.ReasonKeyMalformed},
		{"type mismatch", "ssh-rsa " + fields[1], events.ReasonKeyMalformed},
		{"two keys", good + "\n" + good, events.ReasonKeyMalformed},
		{"with options", `command="/bin/sh" ` + good, events.ReasonKeyMalformed},
		{"RSA 1024", rsaLine(1024), events.ReasonKeyTooWeak},
		{"DSA", dsaLine, events.ReasonKeyTypeRefused},
		{"certificate as key", resp.Certificate, events.ReasonKeyIsCertificate},
		{"the user CA's own key", ts.auth.User.AuthorizedKeys()[0], events.ReasonKeyIsCA},
		{"the host CA's key", ts.auth.Host.AuthorizedKeys()[0], events.ReasonKeyIsCA},
	}
	for _, c := range cases {
		status, e := ts.post(t, "Bearer "+token, `{"public_key":`+jsonString(c.key)+`}`)
		if status != http.StatusBadRequest || e.Reason != c.reason || len(e.Error) < 20 {
			t.Errorf("%s: got %d %+v, want 400 %s with a clear message", c.name, status, e, c.reason)
		}
	}
	if _, err := ts.client.Certificate(ctx, token, certauth.CertificateRequest{PublicKey: rsaLine(2048)}); err != nil {
		t.Errorf("RSA 2048: %v", err)
	}
	refused := ts.events(t, events.CertRefused)
	if len(refused) != len(cases) {
		t.Fatalf("%d refusal events for %d refusals", len(refused), len(cases))
	}
	for i, c := range cases {
		if refused[i]["reason"] != c.reason || refused[i]["identity"] != "agent-1@corp" {
			t.Errorf("%s: journaled as %v", c.name, refused[i])
		}
	}
}

// TestAPIRequests covers the HTTP surface: methods, malformed bodies,
// denial by policy, GET /v1/ca, and the rate limits.
func TestAPIRequests(t *testing.T) {
	t.Parallel()
	m := startOP(t)
	ts := startServer(t, m, strings.Replace(matrixConfig, "rate_per_address  = -1", "rate_per_address = 0.001\n  burst_per_address = 12", 1))
	token := mint(t, m, agentClaims(m, "agent-1"))
	_, pub := newKey(t, t.TempDir(), "id")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecurePinned(t, ts.TLS().Fingerprint)}}
	post := func(auth, body string) (int, certauth.ErrorResponse) { return ts.post(t, auth, body) }
	body, _ := json.Marshal(certauth.CertificateRequest{PublicKey: pub})
	for _, c := range []struct {
		name, auth, body string
		status           int
		reason           string
	}{
		{"no token", "", string(body), 401, events.ReasonTokenMissing},
		{"basic auth", "Basic dXNlcjpwYXNz", string(body), 401, events.ReasonTokenMissing},
		{"not JSON", "Bearer " + token, "public_key=x", 400, events.ReasonRequestMalformed},
		{"unknown field", "Bearer " + token, `{"public_key":"x","principals":["root"]}`, 400, events.ReasonRequestMalformed},
		{"two values", "Bearer " + token, string(body) + string(body), 400, events.ReasonRequestMalformed},
		{"bad ttl", "Bearer " + token, `{"public_key":` + jsonString(pub) + `,"ttl":"forever"}`, 400, events.ReasonRequestMalformed},
		{"login not granted", "Bearer " + token, `{"public_key":` + jsonString(pub) + `,"logins":["root"]}`, 403, events.ReasonDenied},
		{"bad ticket", "Bearer " + token, `{"public_key":` + jsonString(pub) + `,"ticket":"a b"}`, 400, events.ReasonRequestMalformed},
	} {
		status, e := post(c.auth, c.body)
		if status != c.status || e.Reason != c.reason || e.Error == "" {
			t.Errorf("%s: %d %+v, want %d %s", c.name, status, e, c.status, c.reason)
		}
	}
	other := mint(t, m, agentClaims(m, "intruder"))
	if status, e := post("Bearer "+other, string(body)); status != 403 || e.Reason != events.ReasonDenied || !strings.Contains(e.Error, "no role") {
		t.Errorf("identity no role matches: %d %+v", status, e)
	}
	resp, err := hc.Get(ts.APIURL() + "/v1/ca")
	if err != nil {
		t.Fatal(err)
	}
	var ca certauth.CAResponse
	if err := json.NewDecoder(resp.Body).Decode(&ca); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(ca.UserCA) != 1 || len(ca.HostCA) != 1 || len(ca.TargetCA) != 1 || ca.KnownHosts == nil || len(ca.KnownHosts) != 0 || // no front door: the host CA vouches for no host
		len(ca.Issuers) != 1 || ca.Issuers[0].Issuer != m.Issuer() {
		t.Errorf("GET /v1/ca: %+v", ca)
	}
	if resp, err := hc.Get(ts.APIURL() + "/v1/certificates"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/certificates: %v %v", resp.Status, err)
	}

	// The address limit (burst 12, refilling too slowly to matter) trips; its first refusal is
	// journaled, the rest only logged.
	var limited int
	for range 20 {
		if status, e := post("Bearer "+token, string(body)); status == http.StatusTooManyRequests {
			if e.Reason != events.ReasonRateLimited {
				t.Errorf("429 with reason %q", e.Reason)
			}
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("the address limit never tripped")
	}
	n := 0
	for _, r := range ts.events(t, events.CertRefused) {
		if r["reason"] == events.ReasonRateLimited {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d rate-limit refusals journaled for %d refused requests, want 1", n, limited)
	}
}

// post sends a raw certificate request, bypassing the client's own checks.
func (ts *testServer) post(t *testing.T, auth, body string) (int, certauth.ErrorResponse) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecurePinned(t, ts.TLS().Fingerprint)}}
	req, _ := http.NewRequest(http.MethodPost, ts.APIURL()+"/v1/certificates", strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e certauth.ErrorResponse
	data, _ := io.ReadAll(resp.Body)
	json.Unmarshal(data, &e)
	return resp.StatusCode, e
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(bytes.TrimSpace(b))
}

// insecurePinned trusts exactly the certificate with the given fingerprint.
func insecurePinned(t *testing.T, fp string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			if !certauth.SameFingerprint(certauth.TLSFingerprint(c), fp) {
				return errors.New("fingerprint mismatch")
			}
			return nil
		},
	}
}
