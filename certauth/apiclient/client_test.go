package apiclient

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
)

// fakeAPI is a bastion API on an httptest TLS server on 127.0.0.1 (a
// self-signed certificate, as "bastion serve" makes by default) that issues
// real certificates signed by an Ed25519 user CA. Its answers can be
// replaced per test.
type fakeAPI struct {
	srv    *httptest.Server
	ca     ssh.Signer
	hostCA ssh.PublicKey

	// override, if set, answers POST /v1/certificates instead.
	override func(w http.ResponseWriter, r *http.Request, req certauth.CertificateRequest)

	requests atomic.Int64 // requests that reached a handler
	mu       sync.Mutex
	bearers  []string // Authorization values seen, guarded by mu
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{ca: newSigner(t), hostCA: newSigner(t).PublicKey()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ca", func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		writeTestJSON(w, http.StatusOK, certauth.CAResponse{
			UserCA:     []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.ca.PublicKey())))},
			KnownHosts: f.knownHosts(),
			Issuers:    []certauth.IssuerInfo{{Name: "corp", Issuer: "https://idp.example", Audience: []string{"bastion"}}},
			SSHAddress: "bastion.example:2222",
		})
	})
	mux.HandleFunc("POST /v1/certificates", func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		f.mu.Lock()
		f.bearers = append(f.bearers, r.Header.Get("Authorization"))
		f.mu.Unlock()
		var req certauth.CertificateRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeTestJSON(w, http.StatusBadRequest, certauth.ErrorResponse{Error: err.Error(), Reason: "request_malformed"})
			return
		}
		if f.override != nil {
			f.override(w, r, req)
			return
		}
		resp, err := f.issue(req)
		if err != nil {
			writeTestJSON(w, http.StatusBadRequest, certauth.ErrorResponse{Error: err.Error(), Reason: "key_malformed"})
			return
		}
		writeTestJSON(w, http.StatusOK, resp)
	})
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) knownHosts() []string {
	return []string{"@cert-authority * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.hostCA)))}
}

// issue certifies req.PublicKey for five minutes.
func (f *fakeAPI) issue(req certauth.CertificateRequest) (*certauth.CertificateResponse, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		return nil, err
	}
	now := time.Now().Truncate(time.Second)
	logins := req.Logins
	if len(logins) == 0 {
		logins = []string{"deploy", "ops"}
	}
	cert := &ssh.Certificate{
		Key: pub, Serial: 42, CertType: ssh.UserCert, KeyId: "alice@example.com/42",
		ValidPrincipals: logins,
		ValidAfter:      uint64(now.Unix()), ValidBefore: uint64(now.Add(5 * time.Minute).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := cert.SignCert(rand.Reader, f.ca); err != nil {
		return nil, err
	}
	return &certauth.CertificateResponse{
		Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		Serial:      cert.Serial, KeyID: cert.KeyId, Identity: "alice@example.com",
		Principals: logins, ValidAfter: now, ValidBefore: now.Add(5 * time.Minute),
		Extensions: []string{"permit-pty"}, Rule: "ops",
		KnownHosts: f.knownHosts(), SSHAddress: "bastion.example:2222",
	}, nil
}

func (f *fakeAPI) pinnedClient(t *testing.T) *Client {
	t.Helper()
	c, err := NewClient(f.srv.URL, ClientOptions{Fingerprint: certauth.TLSFingerprint(f.srv.Certificate())})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeTestJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestClientPinnedCertificate(t *testing.T) {
	f := newFakeAPI(t)
	c := f.pinnedClient(t)
	ctx := context.Background()

	ca, err := c.CA(ctx)
	if err != nil {
		t.Fatalf("CA: %v", err)
	}
	if len(ca.UserCA) != 1 || ca.SSHAddress != "bastion.example:2222" || len(ca.KnownHosts) != 1 {
		t.Errorf("CA = %+v", ca)
	}

	user := newSigner(t)
	resp, err := c.Certificate(ctx, "the-token", certauth.CertificateRequest{PublicKey: authorizedKey(user.PublicKey()), Logins: []string{"deploy"}, TTL: "5m"})
	if err != nil {
		t.Fatalf("Certificate: %v", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	// The certificate verifies as a user certificate from the CA.
	checker := ssh.CertChecker{IsUserAuthority: func(k ssh.PublicKey) bool { return string(k.Marshal()) == string(f.ca.PublicKey().Marshal()) }}
	if _, err := checker.Authenticate(fakeConnMeta("deploy"), pub); err != nil {
		t.Errorf("certificate does not authenticate deploy: %v", err)
	}
	if resp.Serial != 42 || resp.Identity != "alice@example.com" || len(resp.Principals) != 1 {
		t.Errorf("response = %+v", resp)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bearers) != 1 || f.bearers[0] != "Bearer the-token" {
		t.Errorf("Authorization headers = %q, want one \"Bearer the-token\"", f.bearers)
	}
}

type fakeConnMeta string

func (m fakeConnMeta) User() string          { return string(m) }
func (fakeConnMeta) SessionID() []byte       { return nil }
func (fakeConnMeta) ClientVersion() []byte   { return nil }
func (fakeConnMeta) ServerVersion() []byte   { return nil }
func (fakeConnMeta) RemoteAddr() net.Addr    { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (fakeConnMeta) LocalAddr() net.Addr     { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (fakeConnMeta) ClientSessionID() []byte { return nil }

func TestClientPinMismatch(t *testing.T) {
	f := newFakeAPI(t)
	// A certificate generated for the occasion has another fingerprint.
	pin := certauth.TLSFingerprint(selfSigned(t))
	c, err := NewClient(f.srv.URL, ClientOptions{Fingerprint: pin})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CA(context.Background())
	var pe *PinError
	if !errors.As(err, &pe) {
		t.Fatalf("CA with a wrong pin: err = %v, want a *PinError", err)
	}
	presented := certauth.TLSFingerprint(f.srv.Certificate())
	if pe.Expected != pin || pe.Presented != presented {
		t.Errorf("PinError = %+v, want expected %s, presented %s", pe, pin, presented)
	}
	for _, want := range []string{pin, presented, "expected", "presented"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if n := f.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the server, want none", n)
	}

	// A pin differing only in the case of the prefix is the same pin;
	// one differing in the hash is not.
	lower := "sha256:" + strings.TrimPrefix(presented, "SHA256:")
	if c, err := NewClient(f.srv.URL, ClientOptions{Fingerprint: lower}); err != nil {
		t.Fatal(err)
	} else if _, err := c.CA(context.Background()); err != nil {
		t.Errorf("lower-case prefix: %v", err)
	}
	flipped := []byte(presented)
	if flipped[10] == 'A' {
		flipped[10] = 'B'
	} else {
		flipped[10] = 'A'
	}
	if c, err := NewClient(f.srv.URL, ClientOptions{Fingerprint: string(flipped)}); err != nil {
		t.Fatal(err)
	} else if _, err := c.CA(context.Background()); !errors.As(err, &pe) {
		t.Errorf("one character off: err = %v, want a *PinError", err)
	}
}

func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestClientUntrustedServer(t *testing.T) {
	f := newFakeAPI(t)
	c, err := NewClient(f.srv.URL, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Certificate(context.Background(), "tok", certauth.CertificateRequest{PublicKey: authorizedKey(newSigner(t).PublicKey())})
	var ue *UntrustedServerError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want an *UntrustedServerError", err)
	}
	if want := certauth.TLSFingerprint(f.srv.Certificate()); ue.Fingerprint != want || !strings.Contains(err.Error(), want) {
		t.Errorf("error %q: want the presented fingerprint %s", err, want)
	}
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Errorf("error %q does not wrap x509.UnknownAuthorityError", err)
	}
	if n := f.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the server, want none", n)
	}

	// The same server is trusted through a chain to a root we hold.
	roots := x509.NewCertPool()
	roots.AddCert(f.srv.Certificate())
	c, err = NewClient(f.srv.URL, ClientOptions{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CA(context.Background()); err != nil {
		t.Errorf("with the server's root trusted: %v", err)
	}
}

func TestClientOptionsRefused(t *testing.T) {
	for _, tt := range []struct{ url, pin string }{
		{"http://127.0.0.1:8443", ""},
		{"127.0.0.1:8443", ""},
		{"https://", ""},
		{"https://user@bastion.example", ""},
		{"https://bastion.example/?x=1", ""},
		{"https://bastion.example", "SHA256:short"},
		{"https://bastion.example", "MD5:" + strings.Repeat("A", 43)},
		{"https://bastion.example", "ab:cd:ef"},
	} {
		if _, err := NewClient(tt.url, ClientOptions{Fingerprint: tt.pin}); err == nil {
			t.Errorf("NewClient(%q, pin %q) = nil error", tt.url, tt.pin)
		}
	}
}

func TestClientAPIErrors(t *testing.T) {
	f := newFakeAPI(t)
	c := f.pinnedClient(t)
	tests := []struct {
		name   string
		status int
		body   string
		want   APIError
	}{
		{"denied", 403, `{"error":"no rule grants alice a login","reason":"denied"}`, APIError{403, "denied", "no rule grants alice a login"}},
		{"token expired", 401, `{"error":"the token expired at 12:00","reason":"token_expired","extra":1}`, APIError{401, "token_expired", "the token expired at 12:00"}},
		{"proxy page", 502, "<html>\n<body>Bad Gateway</body></html>", APIError{502, "", "<html>"}},
		{"empty", 503, "", APIError{503, "", ""}},
		{"control characters", 400, `{"error":"bad\u001b[31m key","reason":"key_malformed"}`, APIError{400, "key_malformed", "bad[31m key"}},
		{"redirect", 302, "", APIError{302, "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.override = func(w http.ResponseWriter, r *http.Request, req certauth.CertificateRequest) {
				if tt.status == 302 {
					w.Header().Set("Location", "https://elsewhere.example/steal")
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}
			_, err := c.Certificate(context.Background(), "tok", certauth.CertificateRequest{PublicKey: authorizedKey(newSigner(t).PublicKey())})
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an *APIError", err)
			}
			if *ae != tt.want {
				t.Errorf("APIError = %+v, want %+v", *ae, tt.want)
			}
			if !strings.Contains(err.Error(), "HTTP "+strconv.Itoa(tt.status)) {
				t.Errorf("error %q does not name the status", err)
			}
		})
	}
}

func TestClientMalformedResponses(t *testing.T) {
	f := newFakeAPI(t)
	c := f.pinnedClient(t)
	user := newSigner(t)
	other := newSigner(t)
	tests := []struct {
		name   string
		mangle func(r *certauth.CertificateResponse) any
	}{
		{"not JSON", func(r *certauth.CertificateResponse) any { return json.RawMessage(`{"certificate": 12`) }},
		{"wrong type", func(r *certauth.CertificateResponse) any {
			return json.RawMessage(`{"certificate": "x", "serial": "42"}`)
		}},
		{"no certificate", func(r *certauth.CertificateResponse) any { r.Certificate = ""; return r }},
		{"plain key", func(r *certauth.CertificateResponse) any { r.Certificate = authorizedKey(user.PublicKey()); return r }},
		{"another key", func(r *certauth.CertificateResponse) any {
			o, _ := f.issue(certauth.CertificateRequest{PublicKey: authorizedKey(other.PublicKey())})
			return o
		}},
		{"host certificate", func(r *certauth.CertificateResponse) any {
			pub, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(r.Certificate))
			cert := pub.(*ssh.Certificate)
			cert.CertType = ssh.HostCert
			cert.SignCert(rand.Reader, f.ca)
			r.Certificate = authorizedKey(cert)
			return r
		}},
		{"serial differs", func(r *certauth.CertificateResponse) any { r.Serial++; return r }},
		{"principals differ", func(r *certauth.CertificateResponse) any { r.Principals = []string{"root"}; return r }},
		{"valid_before differs", func(r *certauth.CertificateResponse) any { r.ValidBefore = r.ValidBefore.Add(time.Hour); return r }},
		{"plain host key line", func(r *certauth.CertificateResponse) any {
			r.KnownHosts = []string{"* " + authorizedKey(other.PublicKey())}
			return r
		}},
		{"smuggled line", func(r *certauth.CertificateResponse) any {
			r.KnownHosts = []string{r.KnownHosts[0] + "\n* " + authorizedKey(other.PublicKey())}
			return r
		}},
		{"bad ssh address", func(r *certauth.CertificateResponse) any { r.SSHAddress = "bastion.example; rm -rf ~:22"; return r }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.override = func(w http.ResponseWriter, r *http.Request, req certauth.CertificateRequest) {
				resp, err := f.issue(req)
				if err != nil {
					t.Error(err)
				}
				writeTestJSON(w, http.StatusOK, tt.mangle(resp))
			}
			resp, err := c.Certificate(context.Background(), "tok", certauth.CertificateRequest{PublicKey: authorizedKey(user.PublicKey())})
			if !errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("Certificate = %+v, %v; want ErrMalformedResponse", resp, err)
			}
		})
	}
}

func TestClientRefusesBadTokens(t *testing.T) {
	f := newFakeAPI(t)
	c := f.pinnedClient(t)
	for _, tok := range []string{"", "two words", "line\nbreak", "tab\tbed", "é"} {
		if _, err := c.Certificate(context.Background(), tok, certauth.CertificateRequest{PublicKey: authorizedKey(newSigner(t).PublicKey())}); err == nil {
			t.Errorf("token %q: no error", tok)
		}
	}
	if n := f.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the server, want none", n)
	}
}

func TestClientDeviceFlow(t *testing.T) {
	t.Parallel()
	issuer, approve := oidctest.StartDeviceOP(t)
	ctx := context.Background()
	var prompts atomic.Int64
	approved := make(chan error, 2)
	flow := &DeviceFlow{
		Issuer: certauth.IssuerInfo{Name: "test", Issuer: issuer, Audience: []string{"bastion-cli"},
			DeviceClientID: "bastion-cli", DeviceScopes: []string{"profile", "offline_access"}},
		Prompt: func(p DevicePrompt) {
			prompts.Add(1)
			if !strings.HasPrefix(p.VerificationURI, issuer+"/device") || p.UserCode == "" ||
				!strings.Contains(p.VerificationURIComplete, p.UserCode) || p.Expiry.Before(time.Now()) {
				t.Errorf("prompt = %+v", p)
			}
			go func() { approved <- approve(p.UserCode) }()
		},
	}
	tok, err := flow.Token(ctx)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if err := <-approved; err != nil {
		t.Fatalf("approve: %v", err)
	}

	// The bearer is the ID token, for the device client, of the user who
	// approved.
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: "bastion-cli"}).Verify(ctx, tok)
	if err != nil {
		t.Fatalf("the token is not an ID token for bastion-cli: %v", err)
	}
	if idt.Subject != "alice" {
		t.Errorf("subject %q, want alice", idt.Subject)
	}

	// Kept while it is valid long enough...
	if again, err := flow.Token(ctx); err != nil || again != tok {
		t.Errorf("second Token = %v, want the same token", err)
	}
	// ...and refreshed without asking the human when it is not.
	flow.MinLifetime = 24 * time.Hour
	refreshed, err := flow.Token(ctx)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if refreshed == tok {
		t.Errorf("refresh returned the same token")
	}
	if _, err := p.Verifier(&oidc.Config{ClientID: "bastion-cli"}).Verify(ctx, refreshed); err != nil {
		t.Errorf("refreshed token: %v", err)
	}
	if n := prompts.Load(); n != 1 {
		t.Errorf("%d prompts, want 1", n)
	}
}

func TestClientDeviceFlowRefusals(t *testing.T) {
	t.Parallel()
	issuer, _ := oidctest.StartDeviceOP(t)
	prompt := func(DevicePrompt) { t.Error("prompted") }
	for _, tt := range []struct {
		name string
		iss  certauth.IssuerInfo
		want string
	}{
		{"no device client", certauth.IssuerInfo{Name: "a", Issuer: issuer}, "offers no device login"},
		{"plain http elsewhere", certauth.IssuerInfo{Name: "a", Issuer: "http://idp.example", DeviceClientID: "x"}, "https only"},
		{"unknown client", certauth.IssuerInfo{Name: "a", Issuer: issuer, DeviceClientID: "nobody"}, "start the device login"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			flow := &DeviceFlow{Issuer: tt.iss, Prompt: prompt}
			_, err := flow.Token(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
