package apiclient

// The client side of the HTTPS API, what "bastion login" runs: [Client]
// fetches the CA keys and gets certificates over a TLS connection it checks
// itself, and [DeviceFlow] gets a human the OpenID Connect token to show
// for them.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2"

	"github.com/bastionhq/bastion/certauth"
)

// DefaultTimeout bounds each API request when [ClientOptions.Timeout] is
// zero, and each request to an identity provider.
const DefaultTimeout = 30 * time.Second

// maxResponse caps what is read of any answer; a certificate response is a
// few KiB.
const maxResponse = 1 << 20

// ErrMalformedResponse means the server answered with success but not with
// what the API documents: JSON that does not parse, or a certificate that
// does not match the request or the fields sent along with it.
var ErrMalformedResponse = errors.New("malformed response from the bastion")

// ClientOptions configure a [Client].
//
// There is no way to hand a Client an [http.Client] of one's own: checking
// the server's TLS certificate is the point of it, and a transport from
// elsewhere would bypass that. Proxies are honoured as
// [http.ProxyFromEnvironment] says; TLS still runs end to end.
type ClientOptions struct {
	// Fingerprint pins the server's TLS certificate, in [certauth.TLSFingerprint]
	// form ("SHA256:…"), as "bastion serve" prints it. When set, the leaf
	// certificate the server presents must have exactly this fingerprint
	// and nothing else about it is checked (no chain, name or dates): that
	// is how a self-signed bastion is trusted. Any other certificate fails
	// the handshake with a [*PinError] before a request is sent.
	//
	// When empty, the certificate must chain to RootCAs and name the
	// server's host, as for any HTTPS site; if it does not, requests fail
	// with an [*UntrustedServerError].
	Fingerprint string

	// RootCAs are the roots trusted when no Fingerprint is set. If nil,
	// the system's roots are used.
	RootCAs *x509.CertPool

	// Timeout bounds each request, from connecting to reading the last
	// byte of the answer. If zero, DefaultTimeout is used.
	Timeout time.Duration
}

// A Client talks to a bastion's HTTPS API. It is safe for concurrent use.
type Client struct {
	base *url.URL // https, no query or fragment; Path without trailing "/"
	http *http.Client
}

// NewClient returns a client for the API at serverURL, which must be an
// https URL ("https://bastion.example:8443"); a path is kept as a prefix,
// for a bastion behind a reverse proxy. Plain http is refused even on
// loopback: the API carries bearer tokens and certificates, and a pinned
// self-signed certificate ([ClientOptions.Fingerprint]) makes https as easy
// to set up as http would be.
//
// NewClient only checks its arguments; it does not connect.
func NewClient(serverURL string, opts ClientOptions) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %v", serverURL, err)
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("server URL %q: the API is only spoken over https", serverURL)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("server URL %q has no host", serverURL)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("server URL %q: want https://HOST[:PORT][/PATH], without user, query or fragment", serverURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""

	conf := &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
	if opts.Fingerprint != "" {
		if err := checkFingerprint(opts.Fingerprint); err != nil {
			return nil, err
		}
		pin := opts.Fingerprint
		// The pin replaces chain verification: VerifyConnection runs on
		// every handshake, resumed ones included, and fails it unless the
		// leaf is the pinned certificate.
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return &PinError{Expected: pin, Presented: "no certificate"}
			}
			if got := certauth.TLSFingerprint(cs.PeerCertificates[0]); !certauth.SameFingerprint(pin, got) {
				return &PinError{Expected: pin, Presented: got}
			}
			return nil
		}
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     conf,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        2,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{
		base: u,
		http: &http.Client{
			Transport: transport,
			Timeout:   timeout,
			// A redirect would carry the request elsewhere; the bearer
			// token goes to the server named and nowhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// checkFingerprint reports whether s is a fingerprint in certauth.TLSFingerprint
// form: "SHA256:" and 43 characters of unpadded base64.
func checkFingerprint(s string) error {
	prefix, b64, ok := strings.Cut(s, ":")
	if ok && strings.EqualFold(prefix, "sha256") {
		if sum, err := base64.RawStdEncoding.Strict().DecodeString(b64); err == nil && len(sum) == 32 {
			return nil
		}
	}
	return fmt.Errorf("fingerprint %q: want SHA256: and 43 characters of base64, as \"bastion serve\" prints it", s)
}

// A PinError means the server presented a TLS certificate other than the
// pinned one. The handshake was abandoned: nothing was sent.
type PinError struct {
	// Expected is the pinned fingerprint; Presented is that of the
	// certificate the server presented.
	Expected, Presented string
}

func (e *PinError) Error() string {
	return fmt.Sprintf("the server's TLS certificate does not match the pinned fingerprint: expected %s, presented %s", e.Expected, e.Presented)
}

// An UntrustedServerError means no fingerprint was pinned and the server's
// TLS certificate does not verify against the trusted roots, typically
// because it is the self-signed one "bastion serve" makes.
type UntrustedServerError struct {
	// Fingerprint is that of the certificate the server presented, to
	// compare with the one "bastion serve" printed.
	Fingerprint string
	// Err is why the certificate failed verification.
	Err error
}

func (e *UntrustedServerError) Error() string {
	return fmt.Sprintf("the server's TLS certificate is not trusted: %v (its fingerprint is %s)", e.Err, e.Fingerprint)
}

func (e *UntrustedServerError) Unwrap() error { return e.Err }

// An APIError is a non-2xx answer from the bastion.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Reason is the stable code of [certauth.ErrorResponse.Reason], like "denied"
	// or "token_expired"; "" if the body was not an certauth.ErrorResponse (a proxy
	// answered, say).
	Reason string
	// Message is the sentence for a human of [certauth.ErrorResponse.Error], or
	// the start of whatever else the body held.
	Message string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.Status))
	}
	if e.Reason != "" {
		return fmt.Sprintf("the bastion answered HTTP %d (%s): %s", e.Status, e.Reason, msg)
	}
	return fmt.Sprintf("the bastion answered HTTP %d: %s", e.Status, msg)
}

// CloseIdleConnections closes the connections the client keeps open
// for its next requests. Requests in flight are not interrupted, and a
// later request connects again. A server shutting down waits for open
// connections to go away, so a long-lived client that is done calls this
// rather than leaving the server to time them out.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// CA returns the bastion's CA keys, known_hosts lines and identity
// providers (GET /v1/ca).
func (c *Client) CA(ctx context.Context) (*certauth.CAResponse, error) {
	var r certauth.CAResponse
	if err := c.do(ctx, http.MethodGet, "/v1/ca", "", nil, &r); err != nil {
		return nil, err
	}
	if err := checkKnownHosts(r.KnownHosts); err != nil {
		return nil, fmt.Errorf("GET /v1/ca: %w: %v", ErrMalformedResponse, err)
	}
	if err := checkSSHAddress(r.SSHAddress); err != nil {
		return nil, fmt.Errorf("GET /v1/ca: %w: %v", ErrMalformedResponse, err)
	}
	return &r, nil
}

// Certificate asks the bastion to certify req.PublicKey (POST
// /v1/certificates), showing token, an OpenID Connect token, as the
// bearer. A refusal is an [*APIError].
//
// The answer is checked before it is returned: the certificate must be a
// user certificate for req.PublicKey, and the serial, key ID, principals
// and validity sent along with it must be the certificate's own; its
// known_hosts lines must be @cert-authority lines. Anything else is
// [ErrMalformedResponse].
func (c *Client) Certificate(ctx context.Context, token string, req certauth.CertificateRequest) (*certauth.CertificateResponse, error) {
	if token == "" || strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return nil, errors.New("the token is empty or not a single word of printable ASCII")
	}
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("public key to certify: %w", err)
	}
	var r certauth.CertificateResponse
	if err := c.do(ctx, http.MethodPost, "/v1/certificates", token, req, &r); err != nil {
		return nil, err
	}
	if err := checkCertificate(want, &r); err != nil {
		return nil, fmt.Errorf("POST /v1/certificates: %w: %v", ErrMalformedResponse, err)
	}
	return &r, nil
}

// do sends one request and decodes a 2xx answer into out.
func (c *Client) do(ctx context.Context, method, path, token string, body, out any) error {
	u := *c.base
	p, query, _ := strings.Cut(path, "?")
	u.Path += p
	u.RawQuery = query
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("%s %s: %w: more than %d bytes", method, path, ErrMalformedResponse, maxResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiError(resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: %w: %v", method, path, ErrMalformedResponse, err)
	}
	return nil
}

// transportError names the server an error of the transport came from,
// and turns a TLS verification failure into a [*PinError] or an
// [*UntrustedServerError].
func (c *Client) transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the method and the whole URL
	}
	var pe *PinError
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &pe):
		err = pe
	case errors.As(err, &cve):
		ute := &UntrustedServerError{Err: cve.Err, Fingerprint: "none"}
		if len(cve.UnverifiedCertificates) > 0 {
			ute.Fingerprint = certauth.TLSFingerprint(cve.UnverifiedCertificates[0])
		}
		err = ute
	}
	return fmt.Errorf("bastion at %s: %w", c.base.Host, err)
}

// apiError makes an [*APIError] of a non-2xx answer.
func apiError(status int, body []byte) *APIError {
	e := &APIError{Status: status}
	var er certauth.ErrorResponse
	if json.Unmarshal(body, &er) == nil && (er.Error != "" || er.Reason != "") {
		e.Reason, e.Message = printable(er.Reason, 64), printable(er.Error, 500)
		return e
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	e.Message = printable(first, 200)
	return e
}

// printable returns s without control characters (a server's text must not
// drive the user's terminal), cut to at most n bytes.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return strings.TrimSpace(s)
}

// checkCertificate checks r against itself and the key asked for.
func checkCertificate(want ssh.PublicKey, r *certauth.CertificateResponse) error {
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(r.Certificate))
	if err != nil {
		return fmt.Errorf("certificate: %v", err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return errors.New("certificate: more than one line")
	}
	cert, ok := pub.(*ssh.Certificate)
	switch {
	case !ok:
		return fmt.Errorf("certificate: a plain %s key, not a certificate", pub.Type())
	case cert.CertType != ssh.UserCert:
		return errors.New("certificate: a host certificate, not a user certificate")
	case !bytes.Equal(cert.Key.Marshal(), want.Marshal()):
		return errors.New("certificate: it certifies another key than the one sent")
	case cert.Serial != r.Serial:
		return fmt.Errorf("serial %d, but the certificate's is %d", r.Serial, cert.Serial)
	case cert.KeyId != r.KeyID:
		return fmt.Errorf("key_id %q, but the certificate's is %q", r.KeyID, cert.KeyId)
	case !sameStrings(cert.ValidPrincipals, r.Principals):
		return fmt.Errorf("principals %q, but the certificate's are %q", r.Principals, cert.ValidPrincipals)
	case !sameTime(r.ValidAfter, cert.ValidAfter):
		return fmt.Errorf("valid_after %s does not match the certificate", r.ValidAfter.Format(time.RFC3339))
	case !sameTime(r.ValidBefore, cert.ValidBefore):
		return fmt.Errorf("valid_before %s does not match the certificate", r.ValidBefore.Format(time.RFC3339))
	}
	if err := checkKnownHosts(r.KnownHosts); err != nil {
		return err
	}
	return checkSSHAddress(r.SSHAddress)
}

func sameStrings(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// sameTime reports whether t is the certificate time c, to the second.
// CertTimeInfinity matches nothing: the bastion issues short-lived
// certificates only.
func sameTime(t time.Time, c uint64) bool {
	return c < 1<<62 && t.Unix() == int64(c)
}

// checkKnownHosts accepts only single "@cert-authority" lines in
// known_hosts format: they are added to the user's known_hosts as they
// are, and a line that trusted a plain host key, or smuggled in a second
// line, would change what ssh trusts in ways the bastion has no business
// to.
func checkKnownHosts(lines []string) error {
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			return errors.New("known_hosts: a line with a line break in it")
		}
		marker, _, _, _, _, err := ssh.ParseKnownHosts([]byte(l))
		if err != nil {
			return fmt.Errorf("known_hosts line %q: %v", printable(l, 80), err)
		}
		if marker != "cert-authority" {
			return fmt.Errorf("known_hosts line %q is not an @cert-authority line", printable(l, 80))
		}
	}
	return nil
}

// checkSSHAddress accepts "" or HOST:PORT, the form SSHAddress takes.
func checkSSHAddress(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		if p, perr := strconv.ParseUint(port, 10, 16); perr != nil || p == 0 {
			err = fmt.Errorf("bad port %q", port)
		} else if strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(`'"\$;&|<>()`+"`", r) }) {
			err = errors.New("bad host")
		}
	}
	if err != nil {
		return fmt.Errorf("ssh_address %q: %v", printable(addr, 80), err)
	}
	return nil
}

// A DeviceFlow gets a human an OpenID Connect token for the bastion with
// the OAuth 2.0 device authorization grant (RFC 8628): the provider hands
// out a code, the human approves it in a browser, on any device, and the
// flow picks up the token. The provider's endpoints come from its
// discovery document.
//
// The token handed to the bastion is the ID token if the provider returns
// one, else the access token. The ID token is the one whose audience is
// known: it names the device client, which the bastion lists among the
// issuer's audiences. An access token is meant for whatever resource
// server the provider chose and may be opaque, so the bastion can check it
// only where the provider is set up to issue it for the bastion. The
// scope "openid" is always asked for, so that an OpenID provider returns
// an ID token.
//
// The token is kept: Token returns the same one while it stays valid for
// another [DeviceFlow.MinLifetime], then refreshes it with the refresh
// token if the provider gave one, and only then asks the human again. A
// DeviceFlow is not safe for concurrent use.
type DeviceFlow struct {
	// Issuer is the provider as GET /v1/ca describes it; DeviceClientID
	// must be set. Its URL must be https, or http on a loopback address
	// (a provider on the developer's own machine).
	Issuer certauth.IssuerInfo

	// Prompt tells the human where to approve the login. It is called
	// each time the provider hands out a new code, before waiting for the
	// approval. It must not be nil.
	Prompt func(DevicePrompt)

	// HTTPClient talks to the provider. If nil, a client with
	// DefaultTimeout and the system's roots is used.
	HTTPClient *http.Client

	// MinLifetime is how long a kept token must stay valid to be handed
	// out again. If zero, one minute.
	MinLifetime time.Duration

	provider *oidc.Provider
	config   *oauth2.Config
	token    *oauth2.Token // as last received, for its refresh token
	bearer   string        // what Token returns
	expiry   time.Time     // of bearer; zero if unknown
	idToken  bool          // bearer is an ID token, so a refresh must give one too
}

// DevicePrompt is what the human needs to approve a device login.
type DevicePrompt struct {
	// VerificationURI is the page to open and UserCode the code to enter
	// there. VerificationURIComplete, if the provider gives it, is a page
	// with the code filled in.
	VerificationURI, VerificationURIComplete, UserCode string
	// Expiry is when the code stops working; zero if the provider did not
	// say.
	Expiry time.Time
}

// Token returns a bearer token for the bastion, running the device flow
// if no kept token will do.
func (f *DeviceFlow) Token(ctx context.Context) (string, error) {
	minLife := f.MinLifetime
	if minLife == 0 {
		minLife = time.Minute
	}
	if f.bearer != "" && !f.expiry.IsZero() && time.Until(f.expiry) > minLife {
		return f.bearer, nil
	}
	client := f.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	ctx = oidc.ClientContext(ctx, client)
	if err := f.discover(ctx); err != nil {
		return "", err
	}
	if f.token != nil && f.token.RefreshToken != "" {
		// An expired token with only the refresh token in it makes the
		// token source refresh. If that fails, the human is asked again.
		tok, err := f.config.TokenSource(ctx, &oauth2.Token{RefreshToken: f.token.RefreshToken}).Token()
		if err == nil && f.accept(ctx, tok, f.idToken) == nil {
			return f.bearer, nil
		}
	}
	da, err := f.config.DeviceAuth(ctx)
	if err != nil {
		return "", fmt.Errorf("start the device login with %s: %w", f.Issuer.Issuer, err)
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return "", fmt.Errorf("start the device login with %s: the provider's answer lacks a device code, user code or verification URI", f.Issuer.Issuer)
	}
	f.Prompt(DevicePrompt{
		VerificationURI:         da.VerificationURI,
		VerificationURIComplete: da.VerificationURIComplete,
		UserCode:                da.UserCode,
		Expiry:                  da.Expiry,
	})
	tok, err := f.config.DeviceAccessToken(ctx, da)
	if err != nil {
		var re *oauth2.RetrieveError
		switch {
		case errors.As(err, &re) && re.ErrorCode == "access_denied":
			return "", fmt.Errorf("the login was denied at %s", f.Issuer.Issuer)
		case errors.As(err, &re) && re.ErrorCode == "expired_token",
			errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return "", fmt.Errorf("the code %s expired before it was approved", da.UserCode)
		}
		return "", fmt.Errorf("device login with %s: %w", f.Issuer.Issuer, err)
	}
	if err := f.accept(ctx, tok, false); err != nil {
		return "", err
	}
	return f.bearer, nil
}

// discover fetches the provider's discovery document, once.
func (f *DeviceFlow) discover(ctx context.Context) error {
	if f.provider != nil {
		return nil
	}
	iss := f.Issuer
	if iss.DeviceClientID == "" {
		return fmt.Errorf("issuer %q offers no device login (no device client ID)", iss.Name)
	}
	if err := checkProviderURL(iss.Issuer); err != nil {
		return fmt.Errorf("issuer %q: %w", iss.Name, err)
	}
	p, err := oidc.NewProvider(ctx, iss.Issuer)
	if err != nil {
		return fmt.Errorf("issuer %q: %w", iss.Name, err)
	}
	ep := p.Endpoint()
	if ep.DeviceAuthURL == "" {
		return fmt.Errorf("issuer %q (%s) does not offer the device flow: its discovery document has no device_authorization_endpoint", iss.Name, iss.Issuer)
	}
	for _, u := range []string{ep.DeviceAuthURL, ep.TokenURL} {
		if err := checkProviderURL(u); err != nil {
			return fmt.Errorf("issuer %q: %w", iss.Name, err)
		}
	}
	// A public client: no secret, so the client ID goes in the form body.
	ep.AuthStyle = oauth2.AuthStyleInParams
	scopes := slices.Clone(iss.DeviceScopes)
	if !slices.Contains(scopes, oidc.ScopeOpenID) {
		scopes = append([]string{oidc.ScopeOpenID}, scopes...)
	}
	f.provider = p
	f.config = &oauth2.Config{ClientID: iss.DeviceClientID, Endpoint: ep, Scopes: scopes}
	return nil
}

// accept takes tok as the current token. An ID token is verified (issuer,
// audience, expiry, signature): the flow is the relying party here, and its
// expiry says how long it may be kept. needID refuses a token without one.
func (f *DeviceFlow) accept(ctx context.Context, tok *oauth2.Token, needID bool) error {
	raw, _ := tok.Extra("id_token").(string)
	switch {
	case raw != "":
		idt, err := f.provider.Verifier(&oidc.Config{ClientID: f.Issuer.DeviceClientID}).Verify(ctx, raw)
		if err != nil {
			return fmt.Errorf("the ID token from %s does not verify: %w", f.Issuer.Issuer, err)
		}
		f.bearer, f.expiry, f.idToken = raw, idt.Expiry, true
	case needID:
		return fmt.Errorf("%s returned no ID token", f.Issuer.Issuer)
	case tok.AccessToken != "":
		f.bearer, f.expiry, f.idToken = tok.AccessToken, tok.Expiry, false
	default:
		return fmt.Errorf("%s returned neither an ID token nor an access token", f.Issuer.Issuer)
	}
	f.token = tok
	return nil
}

// checkProviderURL accepts https URLs, and http ones on loopback only.
func checkProviderURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("%q is not an absolute URL", s)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q: an identity provider is reached over https only (http on loopback only)", s)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
