package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// startDevIssuer opens the development issuer of home, serves it on a
// loopback port until the test ends, and returns it.
func startDevIssuer(t *testing.T, home string) *DevIssuer {
	t.Helper()
	d, err := OpenDevIssuer(home)
	if err != nil {
		t.Fatal(err)
	}
	issuerURL, serve, err := d.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(issuerURL, "http://127.0.0.1:") || d.Issuer() != issuerURL {
		t.Fatalf("Listen = %q, Issuer = %q", issuerURL, d.Issuer())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return d
}

// devVerifier returns a go-oidc verifier for the issuer, found through
// discovery, expecting audience clientID.
func devVerifier(t *testing.T, issuerURL, clientID string) *gooidc.IDTokenVerifier {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	provider, err := gooidc.NewProvider(ctx, issuerURL)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return provider.Verifier(&gooidc.Config{ClientID: clientID, SupportedSigningAlgs: []string{gooidc.ES256}})
}

// devSameKey returns an issuer with the key of d and the issuer URL iss.
func devSameKey(d *DevIssuer, iss string) *DevIssuer {
	return &DevIssuer{dir: d.dir, key: d.key, issuer: iss, audience: DevAudience}
}

func devVerify(v *gooidc.IDTokenVerifier, token string) (*gooidc.IDToken, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return v.Verify(ctx, token)
}

func TestDevIssuerVerifiesWithOIDC(t *testing.T) {
	d := startDevIssuer(t, t.TempDir())
	v := devVerifier(t, d.Issuer(), DevAudience)

	token, err := d.Mint("alice", nil, map[string]any{
		"groups": []string{"ops", "dba"},
		"act":    map[string]any{"sub": "agent-7"},
		"email":  "alice@example.com",
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := devVerify(v, token)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if idt.Subject != "alice" || idt.Issuer != d.Issuer() || len(idt.Audience) != 1 || idt.Audience[0] != DevAudience {
		t.Errorf("sub %q iss %q aud %q", idt.Subject, idt.Issuer, idt.Audience)
	}
	if got := idt.Expiry.Sub(idt.IssuedAt); got != DevDefaultTTL {
		t.Errorf("lifetime %v, want the default %v", got, DevDefaultTTL)
	}
	var c struct {
		Groups []string `json:"groups"`
		Act    struct {
			Sub string `json:"sub"`
		} `json:"act"`
		Email string `json:"email"`
		JTI   string `json:"jti"`
		NBF   int64  `json:"nbf"`
		IAT   int64  `json:"iat"`
	}
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Groups, ",") != "ops,dba" || c.Act.Sub != "agent-7" || c.Email != "alice@example.com" {
		t.Errorf("claims = %+v", c)
	}
	if c.JTI == "" || c.NBF != c.IAT || c.IAT == 0 {
		t.Errorf("jti %q nbf %d iat %d", c.JTI, c.NBF, c.IAT)
	}

	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.KeyID != d.keyID() || h.ExtraHeaders["typ"] != "JWT" || h.Algorithm != "ES256" {
		t.Errorf("header kid %q typ %v alg %q", h.KeyID, h.ExtraHeaders["typ"], h.Algorithm)
	}

	other, err := d.Mint("alice", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	idt2, err := devVerify(v, other)
	if err != nil {
		t.Fatal(err)
	}
	var c2 struct{ JTI string }
	idt2.Claims(&c2)
	if c2.JTI == c.JTI {
		t.Errorf("two tokens share jti %q", c.JTI)
	}
}

func TestDevIssuerRefusedTokens(t *testing.T) {
	d := startDevIssuer(t, t.TempDir())
	v := devVerifier(t, d.Issuer(), DevAudience)

	expired := func() string {
		t.Helper()
		old := devSameKey(d, d.Issuer())
		old.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
		tok, err := old.Mint("alice", nil, nil, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	wrongAud, err := d.Mint("alice", []string{"someone-else"}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}

	stranger, err := OpenDevIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := stranger.SetIssuer(d.Issuer()); err != nil {
		t.Fatal(err)
	}
	otherKey, err := stranger.Mint("alice", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}

	elsewhere := devSameKey(d, "http://127.0.0.1:1")
	otherIssuer, err := elsewhere.Mint("alice", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}

	good, err := d.Mint("alice", nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	tampered := good[:strings.LastIndexByte(good, '.')] + "." + strings.Repeat("A", 86)

	tests := []struct {
		name  string
		token string
		want  string // substring of the error
	}{
		{"expired", expired, "expired"},
		{"wrong audience", wrongAud, "audience"},
		{"another key", otherKey, "signature"},
		{"another issuer", otherIssuer, "different provider"},
		{"bad signature", tampered, "signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := devVerify(v, tt.token)
			if err == nil {
				t.Fatal("token accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}

	var te *gooidc.TokenExpiredError
	if _, err := devVerify(v, expired); !errors.As(err, &te) {
		t.Errorf("expired token: %v, want a TokenExpiredError", err)
	}
	if _, err := devVerify(devVerifier(t, d.Issuer(), "someone-else"), wrongAud); err != nil {
		t.Errorf("token for its own audience refused: %v", err)
	}
}

// TestDevIssuerPublish is the two-process flow: the server listens and
// publishes; another OpenDevIssuer on the same home mints without network,
// and the server's verifier accepts it.
func TestDevIssuerPublish(t *testing.T) {
	home := t.TempDir()
	server := startDevIssuer(t, home)
	v := devVerifier(t, server.Issuer(), DevAudience)

	if _, err := LoadDevIssuer(home); !errors.Is(err, ErrNoDevIssuer) {
		t.Fatalf("LoadDevIssuer before publish: %v, want ErrNoDevIssuer", err)
	}
	opened, err := OpenDevIssuer(home)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opened.Mint("alice", nil, nil, 0); !errors.Is(err, ErrNoDevIssuer) {
		t.Fatalf("mint before publish: %v, want ErrNoDevIssuer", err)
	}
	if err := server.Publish(server.Issuer()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(home, DevDir, DevIssuerFile))
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]string
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	if info["issuer"] != server.Issuer() || info["audience"] != DevAudience {
		t.Errorf("issuer.json = %s", b)
	}
	entries, _ := os.ReadDir(filepath.Join(home, DevDir))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}

	cli, err := LoadDevIssuer(home)
	if err != nil {
		t.Fatal(err)
	}
	if cli.Issuer() != server.Issuer() || cli.keyID() != server.keyID() {
		t.Fatalf("reopened: issuer %q kid %q, want %q %q", cli.Issuer(), cli.keyID(), server.Issuer(), server.keyID())
	}
	token, err := cli.Mint("bob", nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := devVerify(v, token)
	if err != nil {
		t.Fatalf("token minted by another opener refused: %v", err)
	}
	if idt.Subject != "bob" || idt.Expiry.Sub(idt.IssuedAt) != time.Hour {
		t.Errorf("sub %q lifetime %v", idt.Subject, idt.Expiry.Sub(idt.IssuedAt))
	}
}

func TestLoadDevIssuerCreatesNothing(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if _, err := LoadDevIssuer(home); !errors.Is(err, ErrNoDevIssuer) {
		t.Errorf("empty home: %v, want ErrNoDevIssuer", err)
	}
	if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadDevIssuer created %s: %v", home, err)
	}

	// A published URL without the key is not an issuer either.
	dir := filepath.Join(home, DevDir)
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, DevIssuerFile), []byte(`{"issuer": "http://127.0.0.1:1"}`), 0o644)
	if _, err := LoadDevIssuer(home); !errors.Is(err, ErrNoDevIssuer) {
		t.Errorf("no key: %v, want ErrNoDevIssuer", err)
	}
	if _, err := os.Stat(filepath.Join(dir, DevKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadDevIssuer created a key: %v", err)
	}

	// A damaged issuer.json is an error, not silence.
	if _, err := OpenDevIssuer(home); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{`, `{"issuer": "http://bastion.example"}`, `{}`} {
		os.WriteFile(filepath.Join(dir, DevIssuerFile), []byte(bad), 0o644)
		if _, err := LoadDevIssuer(home); err == nil || errors.Is(err, ErrNoDevIssuer) {
			t.Errorf("issuer.json %s: %v, want a parse error", bad, err)
		}
		if _, err := OpenDevIssuer(home); err == nil {
			t.Errorf("OpenDevIssuer accepted issuer.json %s", bad)
		}
	}
}

func TestDevIssuerKeyPersists(t *testing.T) {
	home := t.TempDir()
	d1, err := OpenDevIssuer(home)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := OpenDevIssuer(home)
	if err != nil {
		t.Fatal(err)
	}
	if d1.keyID() == "" || d1.keyID() != d2.keyID() {
		t.Errorf("kid %q then %q", d1.keyID(), d2.keyID())
	}
	d3, err := OpenDevIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if d3.keyID() == d1.keyID() {
		t.Error("two homes share a key")
	}
	if d1.Issuer() != "" {
		t.Errorf("fresh issuer has URL %q", d1.Issuer())
	}
}

func TestDevIssuerConcurrentFirstOpen(t *testing.T) {
	home := t.TempDir()
	var wg sync.WaitGroup
	kids := make([]string, 8)
	errs := make([]error, len(kids))
	for i := range kids {
		wg.Go(func() {
			d, err := OpenDevIssuer(home)
			errs[i] = err
			if err == nil {
				kids[i] = d.keyID()
			}
		})
	}
	wg.Wait()
	for i := range kids {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if kids[i] != kids[0] {
			t.Fatalf("concurrent opens got keys %q and %q", kids[0], kids[i])
		}
	}
}

func TestDevIssuerKeyPermissions(t *testing.T) {
	home := t.TempDir()
	if _, err := OpenDevIssuer(home); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(home, DevDir)
	key := filepath.Join(dir, DevKeyFile)
	for p, want := range map[string]os.FileMode{dir: 0o700, key: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Base(p), fi.Mode().Perm(), want)
		}
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(key, mode); err != nil {
			t.Fatal(err)
		}
		_, err := OpenDevIssuer(home)
		if err == nil || !strings.Contains(err.Error(), "readable by others") {
			t.Errorf("key mode %v: %v, want a refusal", mode, err)
		}
	}
	os.Chmod(key, 0o600)
	if err := os.WriteFile(key, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDevIssuer(home); err == nil {
		t.Error("garbage key accepted")
	}
}

func TestDevIssuerListenRefusesNonLoopback(t *testing.T) {
	d, err := OpenDevIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.1:0", "example.com:0", "127.0.0.1"} {
		t.Run(addr, func(t *testing.T) {
			if u, serve, err := d.Listen(addr); err == nil {
				serve(devCanceled())
				t.Fatalf("Listen(%q) = %q, want an error", addr, u)
			}
		})
	}
	if d.Issuer() != "" {
		t.Errorf("refused Listen set the issuer to %q", d.Issuer())
	}
	addrs := []string{"", "localhost:0"}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		addrs = append(addrs, "[::1]:0")
	}
	for _, addr := range addrs {
		u, serve, err := d.Listen(addr)
		if err != nil {
			t.Errorf("Listen(%q): %v", addr, err)
			continue
		}
		if !strings.HasPrefix(u, "http://127.0.0.1:") && !strings.HasPrefix(u, "http://[::1]:") {
			t.Errorf("Listen(%q) = %q", addr, u)
		}
		if err := serve(devCanceled()); err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}

func devCanceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestDevIssuerMintRejects(t *testing.T) {
	d, err := OpenDevIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Mint("alice", nil, nil, 0); !errors.Is(err, ErrNoDevIssuer) {
		t.Errorf("mint without issuer: %v, want ErrNoDevIssuer", err)
	}
	if err := d.SetIssuer("http://127.0.0.1:9"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		sub      string
		aud      []string
		claims   map[string]any
		ttl      time.Duration
		wantText string
	}{
		{"empty subject", "", nil, nil, 0, "subject"},
		{"empty audience", "alice", []string{""}, nil, 0, "audience"},
		{"too long", "alice", nil, nil, DevMaxTTL + time.Second, "maximum"},
		{"negative", "alice", nil, nil, -time.Minute, "negative"},
		{"unmarshalable claim", "alice", nil, map[string]any{"f": func() {}}, 0, "unsupported type"},
	}
	for _, r := range devReservedClaims {
		tests = append(tests, struct {
			name     string
			sub      string
			aud      []string
			claims   map[string]any
			ttl      time.Duration
			wantText string
		}{"override " + r, "alice", nil, map[string]any{r: "x"}, 0, fmt.Sprintf("reserved claim %q", r)})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := d.Mint(tt.sub, tt.aud, tt.claims, tt.ttl)
			if err == nil {
				t.Fatalf("minted %q", tok)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not mention %q", err, tt.wantText)
			}
		})
	}
	if _, err := d.Mint("alice", []string{"a", "b"}, map[string]any{"jti": "fixed"}, DevMaxTTL); err != nil {
		t.Errorf("maximum lifetime, two audiences, own jti: %v", err)
	}
}

func TestDevIssuerSetIssuer(t *testing.T) {
	d, err := OpenDevIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2/dev", "https://bastion.example/dev",
	} {
		if err := d.SetIssuer(u); err != nil {
			t.Errorf("SetIssuer(%q): %v", u, err)
		}
	}
	for _, u := range []string{
		"", "127.0.0.1:8080", "http://bastion.example", "http://10.0.0.1:80", "ftp://127.0.0.1",
		"https://bastion.example/?x=1", "https://bastion.example/#f", "https://u@bastion.example",
	} {
		if err := d.SetIssuer(u); err == nil {
			t.Errorf("SetIssuer(%q) accepted", u)
		}
		if err := d.Publish(u); err == nil {
			t.Errorf("Publish(%q) accepted", u)
		}
	}
}

// TestDevIssuerDiscovery checks the served documents, and that the key ID
// is the RFC 7638 thumbprint, computed here from its definition.
func TestDevIssuerDiscovery(t *testing.T) {
	d := startDevIssuer(t, t.TempDir())
	get := func(path string, v any) int {
		t.Helper()
		resp, err := http.Get(d.Issuer() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return resp.StatusCode
	}
	var disc map[string]any
	if code := get("/.well-known/openid-configuration", &disc); code != 200 {
		t.Fatalf("discovery: status %d", code)
	}
	want := map[string]any{
		"issuer":                                d.Issuer(),
		"jwks_uri":                              d.Issuer() + "/jwks",
		"token_endpoint":                        d.Issuer() + "/token",
		"id_token_signing_alg_values_supported": []any{"ES256"},
		"subject_types_supported":               []any{"public"},
		"response_types_supported":              []any{"code"},
		"grant_types_supported":                 []any{"authorization_code"},
		"code_challenge_methods_supported":      []any{"S256"},
		"authorization_endpoint":                d.Issuer() + "/authorize",
	}
	for k, v := range want {
		if fmt.Sprint(disc[k]) != fmt.Sprint(v) {
			t.Errorf("discovery %s = %v, want %v", k, disc[k], v)
		}
	}

	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	get("/jwks", &set)
	if len(set.Keys) != 1 {
		t.Fatalf("jwks has %d keys", len(set.Keys))
	}
	k := set.Keys[0]
	if _, ok := k["d"]; ok {
		t.Fatal("jwks publishes the private key")
	}
	canonical := fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q,"y":%q}`, k["crv"], k["kty"], k["x"], k["y"])
	sum := sha256.Sum256([]byte(canonical))
	if kid := base64.RawURLEncoding.EncodeToString(sum[:]); k["kid"] != kid || d.keyID() != kid {
		t.Errorf("kid %q, KeyID %q, want the thumbprint %q", k["kid"], d.keyID(), kid)
	}
	if k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" {
		t.Errorf("jwk = %v", k)
	}
	if _, ok := d.key.Key.(*ecdsa.PrivateKey); !ok {
		t.Errorf("signing key is %T", d.key.Key)
	}

	resp, err := http.PostForm(d.Issuer()+"/token", url.Values{"grant_type": {"password"}})
	if err != nil {
		t.Fatal(err)
	}
	var oauthErr map[string]string
	json.NewDecoder(resp.Body).Decode(&oauthErr)
	resp.Body.Close()
	if resp.StatusCode != 400 || oauthErr["error"] != "unsupported_grant_type" {
		t.Errorf("/token with grant_type=password: %d %v", resp.StatusCode, oauthErr)
	}
}

func TestDevIssuerHandlerWithoutIssuer(t *testing.T) {
	d, err := OpenDevIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d.Handler()}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
}
