package oidc

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Bounds of the development issuer's authorization-code flow: what a
// stranger can make it hold.
const (
	// DevMaxPending is how many authorization requests may wait for an
	// identity to be picked; beyond it /authorize refuses new ones.
	DevMaxPending = 256
	// DevMaxCodes is how many codes (issued, or redeemed and kept until
	// they expire to recognize reuse) may exist; beyond it no new code
	// is issued.
	DevMaxCodes = 256
	// DevPendingTTL is how long an authorization request waits for its
	// form to be submitted.
	DevPendingTTL = 10 * time.Minute
	// DevCodeTTL is how long an authorization code can be redeemed.
	DevCodeTTL = 60 * time.Second
)

// devSubject is what the identity picker accepts as a subject.
var devSubject = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)

// devClientID is what a web client's ID may be.
var devClientID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// devVerifierRE is an RFC 7636 code_verifier (and an S256 challenge
// matches it too: 43 characters of base64url).
var devVerifierRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// DevWebClient is a web client registered with the development issuer for
// the authorization-code flow with PKCE.
type DevWebClient struct {
	ID string
	// Secret is "" for a public client; otherwise /token requires it, by
	// client_secret_basic or client_secret_post.
	Secret string
	// RedirectURL is the only redirect_uri accepted for the client,
	// compared exactly.
	RedirectURL string
}

// devAuthRequest is an authorization request waiting for its form.
type devAuthRequest struct {
	client    DevWebClient
	state     string
	nonce     string
	scope     string
	challenge string
	csrf      string
	expires   time.Time
}

// devCode is an issued authorization code.
type devCode struct {
	clientID    string
	redirectURL string
	challenge   string
	nonce       string
	scope       string
	sub         string
	expires     time.Time
	used        bool
}

// CheckWebRedirectURL checks a web client's redirect URL: absolute, https
// (or http on a loopback host), without user information or fragment.
func CheckWebRedirectURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("redirect URL: %w", err)
	case u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" || strings.Contains(s, "#"):
		return fmt.Errorf("redirect URL %q: want an absolute URL without user information or fragment", s)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && devLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("redirect URL %q: want https, or http on a loopback address", s)
}

// RegisterWebClient registers (or replaces) a web client of the
// authorization-code flow.
func (d *DevIssuer) RegisterWebClient(c DevWebClient) error {
	if !devClientID.MatchString(c.ID) {
		return fmt.Errorf("web client ID %q: want letters, digits, '.', '_', ':' and '-'", c.ID)
	}
	if err := CheckWebRedirectURL(c.RedirectURL); err != nil {
		return fmt.Errorf("web client %q: %w", c.ID, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.clients == nil {
		d.clients = map[string]DevWebClient{}
	}
	d.clients[c.ID] = c
	return nil
}

func (d *DevIssuer) clock() time.Time {
	if d.now != nil {
		return d.now()
	}
	return time.Now()
}

// devRandom returns 32 random bytes in unpadded base64url.
func devRandom() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// expireLocked drops expired requests and codes; d.mu is held.
func (d *DevIssuer) expireLocked(now time.Time) {
	for k, p := range d.pending {
		if !now.Before(p.expires) {
			delete(d.pending, k)
		}
	}
	for k, c := range d.codes {
		if !now.Before(c.expires) {
			delete(d.codes, k)
		}
	}
}

// devCSRFCookie names the cookie that binds an authorization request to
// the browser that made it.
const devCSRFCookie = "bastion_dev_authz"

// devSecurityHeaders sets the headers of every page of the flow.
func devSecurityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/html; charset=utf-8")
}

var devPages = template.Must(template.New("pick").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bastion development sign-in</title></head>
<body>
<h1>Development sign-in</h1>
<p><strong>DEVELOPMENT ONLY.</strong> This provider signs in anyone as anyone: never trust it in production.</p>
{{if .Problem}}<p id="problem">{{.Problem}}</p>{{end}}
<dl>
<dt>Client</dt><dd id="client">{{.Client}}</dd>
<dt>Returns to</dt><dd id="redirect">{{.Redirect}}</dd>
<dt>Scope</dt><dd id="scope">{{.Scope}}</dd>
<dt>State</dt><dd id="state">{{.State}}</dd>
</dl>
<form method="post" action="{{.Action}}">
<input type="hidden" name="request" value="{{.Request}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="sub">Sign in as (letters, digits, '.', '_', '@', '+', '-'):</label>
<input type="text" id="sub" name="sub" value="{{.Sub}}" required maxlength="64" pattern="[A-Za-z0-9][A-Za-z0-9._@+\-]*">
<button type="submit" name="action" value="allow">Sign in</button>
<button type="submit" name="action" value="deny">Cancel</button>
</form>
</body></html>
`))

var devErrorPage = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bastion development sign-in: error</title></head>
<body>
<h1>Sign-in refused</h1>
<p id="error">{{.}}</p>
</body></html>
`))

type devPickPage struct {
	Problem, Client, Redirect, Scope, State, Action, Request, CSRF, Sub string
}

// devHTMLError shows an error page; it never redirects.
func devHTMLError(w http.ResponseWriter, code int, msg string) {
	devSecurityHeaders(w)
	w.WriteHeader(code)
	devErrorPage.Execute(w, msg)
}

// devRedirectError sends an OAuth error back to the client's redirect URL.
func devRedirectError(w http.ResponseWriter, r *http.Request, redirect, state, oauthErr, desc string) {
	q := url.Values{"error": {oauthErr}, "error_description": {desc}}
	if state != "" {
		q.Set("state", state)
	}
	http.Redirect(w, r, devAppendQuery(redirect, q), http.StatusSeeOther)
}

func devAppendQuery(redirect string, q url.Values) string {
	sep := "?"
	if strings.Contains(redirect, "?") {
		sep = "&"
	}
	return redirect + sep + q.Encode()
}

// authorize answers GET /authorize: it checks the request and shows the
// identity picker.
func (d *DevIssuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k, vs := range q {
		if len(vs) > 1 {
			devHTMLError(w, http.StatusBadRequest, fmt.Sprintf("parameter %q is given more than once", k))
			return
		}
	}
	clientID, redirect := q.Get("client_id"), q.Get("redirect_uri")
	d.mu.Lock()
	client, ok := d.clients[clientID]
	d.mu.Unlock()
	switch {
	case clientID == "":
		devHTMLError(w, http.StatusBadRequest, "the request names no client (client_id)")
		return
	case !ok:
		devHTMLError(w, http.StatusBadRequest, fmt.Sprintf("unknown client %q", clientID))
		return
	case redirect != client.RedirectURL:
		devHTMLError(w, http.StatusBadRequest, fmt.Sprintf("redirect_uri %q is not the one registered for client %q", redirect, clientID))
		return
	}
	// From here on, errors go back to the client.
	state := q.Get("state")
	fail := func(oauthErr, desc string) { devRedirectError(w, r, redirect, state, oauthErr, desc) }
	scope := q.Get("scope")
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case !slices.Contains(strings.Fields(scope), "openid"):
		fail("invalid_scope", "scope must include openid")
		return
	case q.Get("code_challenge") == "":
		fail("invalid_request", "PKCE is required: code_challenge is missing")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case len(q.Get("code_challenge")) != 43 || !devVerifierRE.MatchString(q.Get("code_challenge")):
		fail("invalid_request", "code_challenge is not an S256 challenge (43 characters of base64url)")
		return
	case q.Get("nonce") == "":
		fail("invalid_request", "nonce is required")
		return
	case len(state) > 1024 || len(q.Get("nonce")) > 1024 || len(scope) > 1024:
		fail("invalid_request", "state, nonce or scope is too long")
		return
	}
	now := d.clock()
	p := &devAuthRequest{
		client: client, state: state, nonce: q.Get("nonce"), scope: scope,
		challenge: q.Get("code_challenge"), csrf: devRandom(), expires: now.Add(DevPendingTTL),
	}
	id := devRandom()
	d.mu.Lock()
	d.expireLocked(now)
	full := len(d.pending) >= DevMaxPending
	if !full {
		if d.pending == nil {
			d.pending = map[string]*devAuthRequest{}
		}
		d.pending[id] = p
	}
	d.mu.Unlock()
	if full {
		fail("temporarily_unavailable", "too many sign-ins are pending; try again later")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: devCSRFCookie, Value: p.csrf, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: strings.HasPrefix(d.Issuer(), "https:"),
		MaxAge: int(DevPendingTTL / time.Second),
	})
	d.showPicker(w, http.StatusOK, id, p, "", "")
}

func (d *DevIssuer) showPicker(w http.ResponseWriter, code int, id string, p *devAuthRequest, sub, problem string) {
	devSecurityHeaders(w)
	// A browser applies form-action to the redirects that follow the
	// form's submission too: the client's redirect URL, on another
	// origin, must be allowed, or the browser stops at the picker.
	if origin := devOrigin(p.client.RedirectURL); origin != "" {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; form-action 'self' "+origin+"; frame-ancestors 'none'; base-uri 'none'")
	}
	w.WriteHeader(code)
	devPages.Execute(w, devPickPage{
		Problem: problem, Client: p.client.ID, Redirect: p.client.RedirectURL, Scope: p.scope, State: p.state,
		Action: "authorize", Request: id, CSRF: p.csrf, Sub: sub,
	})
}

// devOrigin is the origin (scheme://host[:port]) of a redirect URL, as a
// CSP source, or "" if it cannot be one.
func devOrigin(redirect string) string {
	u, err := url.Parse(redirect)
	if err != nil || u.Host == "" || strings.ContainsAny(u.Host, " \t;,'\"") {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// authorizeSubmit answers the identity picker's POST /authorize.
func (d *DevIssuer) authorizeSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		devHTMLError(w, http.StatusBadRequest, "unreadable form")
		return
	}
	id, csrf := r.PostForm.Get("request"), r.PostForm.Get("csrf")
	now := d.clock()
	d.mu.Lock()
	d.expireLocked(now)
	p, ok := d.pending[id]
	d.mu.Unlock()
	if !ok {
		devHTMLError(w, http.StatusBadRequest, "unknown or expired sign-in request: start again from the application")
		return
	}
	cookie, cerr := r.Cookie(devCSRFCookie)
	if csrf == "" || cerr != nil ||
		subtle.ConstantTimeCompare([]byte(csrf), []byte(p.csrf)) != 1 ||
		subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(p.csrf)) != 1 {
		devHTMLError(w, http.StatusForbidden, "the form's anti-forgery token is missing or wrong")
		return
	}
	if r.PostForm.Get("action") == "deny" {
		d.dropPending(id)
		devRedirectError(w, r, p.client.RedirectURL, p.state, "access_denied", "sign-in was cancelled")
		return
	}
	sub := r.PostForm.Get("sub")
	if !devSubject.MatchString(sub) {
		d.showPicker(w, http.StatusBadRequest, id, p, sub,
			fmt.Sprintf("%q is not a development identity: use 1 to 64 letters, digits, '.', '_', '@', '+' and '-', starting with a letter or digit", sub))
		return
	}
	code := devRandom()
	d.mu.Lock()
	if _, still := d.pending[id]; !still {
		d.mu.Unlock()
		devHTMLError(w, http.StatusBadRequest, "this sign-in request was already used: start again from the application")
		return
	}
	delete(d.pending, id)
	full := len(d.codes) >= DevMaxCodes
	if !full {
		if d.codes == nil {
			d.codes = map[string]*devCode{}
		}
		d.codes[code] = &devCode{
			clientID: p.client.ID, redirectURL: p.client.RedirectURL, challenge: p.challenge,
			nonce: p.nonce, scope: p.scope, sub: sub, expires: now.Add(DevCodeTTL),
		}
	}
	d.mu.Unlock()
	if full {
		devRedirectError(w, r, p.client.RedirectURL, p.state, "temporarily_unavailable", "too many sign-ins are in progress; try again later")
		return
	}
	q := url.Values{"code": {code}}
	if p.state != "" {
		q.Set("state", p.state)
	}
	http.Redirect(w, r, devAppendQuery(p.client.RedirectURL, q), http.StatusSeeOther)
}

func (d *DevIssuer) dropPending(id string) {
	d.mu.Lock()
	delete(d.pending, id)
	d.mu.Unlock()
}

// devTokenResponse is the answer of /token.
type devTokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	IDToken     string `json:"id_token"`
	Scope       string `json:"scope,omitempty"`
}

// errDevGrant is an invalid_grant refusal of /token.
var errDevGrant = errors.New("invalid_grant")

// token answers POST /token: it redeems an authorization code.
func (d *DevIssuer) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Pragma", "no-cache")
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		devError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	f := r.PostForm
	for k, vs := range f {
		if len(vs) > 1 {
			devError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("parameter %q is given more than once", k))
			return
		}
	}
	if f.Get("grant_type") != "authorization_code" {
		devError(w, http.StatusBadRequest, "unsupported_grant_type", "only grant_type=authorization_code is supported")
		return
	}
	// Client authentication: client_secret_basic or client_secret_post.
	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	basicID, basicSecret, basic := r.BasicAuth()
	if basic {
		bid, err1 := url.QueryUnescape(basicID)
		bsec, err2 := url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil || secret != "" || (clientID != "" && clientID != bid) {
			devError(w, http.StatusBadRequest, "invalid_request", "conflicting or malformed client credentials")
			return
		}
		clientID, secret = bid, bsec
	}
	d.mu.Lock()
	client, ok := d.clients[clientID]
	d.mu.Unlock()
	if !ok || (client.Secret != "" || secret != "") &&
		subtle.ConstantTimeCompare([]byte(secret), []byte(client.Secret)) != 1 {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="bastion development issuer"`)
		}
		devError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong client secret")
		return
	}
	c, err := d.redeem(f.Get("code"), client.ID, f.Get("redirect_uri"), f.Get("code_verifier"))
	if err != nil {
		devError(w, http.StatusBadRequest, "invalid_grant", strings.TrimPrefix(err.Error(), "invalid_grant: "))
		return
	}
	idToken, err := d.Mint(c.sub, []string{client.ID}, map[string]any{"nonce": c.nonce, "azp": client.ID}, DevDefaultTTL)
	if err == nil {
		var access string
		access, err = d.Mint(c.sub, nil, nil, DevDefaultTTL)
		if err == nil {
			devJSON(w, http.StatusOK, devTokenResponse{
				AccessToken: access, TokenType: "Bearer", ExpiresIn: int(DevDefaultTTL / time.Second),
				IDToken: idToken, Scope: c.scope,
			})
			return
		}
	}
	devError(w, http.StatusInternalServerError, "server_error", err.Error())
}

// redeem consumes code for clientID: any attempt to redeem a live code
// uses it up, so that a code can be tried once (RFC 6749 section 4.1.2;
// RFC 7636 section 4.6). A code redeemed before is refused until it
// expires.
func (d *DevIssuer) redeem(code, clientID, redirect, verifier string) (devCode, error) {
	now := d.clock()
	d.mu.Lock()
	d.expireLocked(now)
	var c devCode
	p, ok := d.codes[code]
	if ok {
		c = *p
		p.used = true
	}
	d.mu.Unlock()
	used := c.used
	switch {
	case code == "" || !ok:
		return devCode{}, fmt.Errorf("%w: unknown or expired code", errDevGrant)
	case used:
		return devCode{}, fmt.Errorf("%w: the code was already used", errDevGrant)
	case c.clientID != clientID:
		return devCode{}, fmt.Errorf("%w: the code was issued to another client", errDevGrant)
	case c.redirectURL != redirect:
		return devCode{}, fmt.Errorf("%w: redirect_uri is not the authorization request's", errDevGrant)
	case !devVerifierRE.MatchString(verifier):
		return devCode{}, fmt.Errorf("%w: code_verifier is missing or malformed", errDevGrant)
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(got), []byte(c.challenge)) != 1 {
		return devCode{}, fmt.Errorf("%w: code_verifier does not match the code challenge", errDevGrant)
	}
	return c, nil
}
