package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"
)

// devTestClock is a clock the test moves.
type devTestClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *devTestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *devTestClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// devFlow is a development issuer serving on loopback, with a web client
// whose redirect URL is a real callback server on loopback.
type devFlow struct {
	d        *DevIssuer
	clock    *devTestClock
	client   DevWebClient
	callback string
	// codes receives what the callback server got: its query.
	codes chan url.Values
}

// startDevFlow serves a development issuer with a test clock and a web
// client (with secret if secret != "").
func startDevFlow(t *testing.T, secret string) *devFlow {
	t.Helper()
	d, err := OpenDevIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clock := &devTestClock{t: time.Now()}
	d.now = clock.Now
	issuerURL, serve, err := d.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = issuerURL
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &devFlow{d: d, clock: clock, codes: make(chan url.Values, 1)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.codes <- r.URL.Query()
		io.WriteString(w, "callback reached")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f.callback = "http://" + ln.Addr().String() + "/ui/callback"
	f.client = DevWebClient{ID: "console", Secret: secret, RedirectURL: f.callback}
	if err := d.RegisterWebClient(f.client); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *devFlow) oauth2Config(t *testing.T, style oauth2.AuthStyle) *oauth2.Config {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	provider, err := gooidc.NewProvider(ctx, f.d.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	// An explicit style: autodetection tries one style, then the other,
	// and the first try already uses the code up.
	ep := provider.Endpoint()
	ep.AuthStyle = style
	return &oauth2.Config{
		ClientID: f.client.ID, ClientSecret: f.client.Secret, RedirectURL: f.client.RedirectURL,
		Endpoint: ep, Scopes: []string{gooidc.ScopeOpenID},
	}
}

// browser is an HTTP client with a cookie jar; it follows redirects only
// if follow is set.
func browser(t *testing.T, follow bool) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// pickerPage is what the identity picker's HTML holds.
type pickerPage struct {
	action  string
	fields  map[string]string // hidden and text inputs by name
	text    map[string]string // text of elements by id
	scripts int               // <script> elements
	inline  int               // elements with on* attributes or javascript: URLs
}

func parsePicker(t *testing.T, body string) pickerPage {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	p := pickerPage{fields: map[string]string{}, text: map[string]string{}}
	var textOf func(*html.Node) string
	textOf = func(n *html.Node) string {
		if n.Type == html.TextNode {
			return n.Data
		}
		var b strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			b.WriteString(textOf(c))
		}
		return b.String()
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attr := map[string]string{}
			for _, a := range n.Attr {
				attr[a.Key] = a.Val
				if strings.HasPrefix(a.Key, "on") || strings.HasPrefix(strings.TrimSpace(strings.ToLower(a.Val)), "javascript:") {
					p.inline++
				}
			}
			switch n.Data {
			case "script":
				p.scripts++
			case "form":
				p.action = attr["action"]
			case "input":
				p.fields[attr["name"]] = attr["value"]
			}
			if id := attr["id"]; id != "" {
				p.text[id] = textOf(n)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return p
}

// authorizeURL is the client's authorization request with PKCE.
func authorizeURL(cfg *oauth2.Config, state, nonce, verifier string) string {
	return cfg.AuthCodeURL(state, gooidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
}

// getPicker fetches the identity picker and checks its headers.
func getPicker(t *testing.T, c *http.Client, u string) pickerPage {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /authorize: %d %s", resp.StatusCode, body)
	}
	checkPageHeaders(t, resp)
	// The form may lead to the client's redirect URL, on the callback
	// server's origin: a browser checks form-action against it too.
	if q, err := url.Parse(u); err == nil {
		if ru, err := url.Parse(q.Query().Get("redirect_uri")); err == nil && ru.Host != "" {
			if csp, want := resp.Header.Get("Content-Security-Policy"), "form-action 'self' "+ru.Scheme+"://"+ru.Host+";"; !strings.Contains(csp, want) {
				t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
			}
		}
	}
	p := parsePicker(t, string(body))
	if p.scripts != 0 || p.inline != 0 {
		t.Errorf("picker page has %d script elements and %d inline handlers or javascript: URLs", p.scripts, p.inline)
	}
	return p
}

func checkPageHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "form-action 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy %q allows scripts", csp)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("X-Frame-Options %q", resp.Header.Get("X-Frame-Options"))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}

// submit posts the picker's form with fields changed by set (a value of
// "-" drops the field).
func (f *devFlow) submit(t *testing.T, c *http.Client, p pickerPage, set map[string]string) *http.Response {
	t.Helper()
	form := url.Values{"action": {"allow"}}
	for k, v := range p.fields {
		form.Set(k, v)
	}
	for k, v := range set {
		if v == "-" {
			form.Del(k)
		} else {
			form.Set(k, v)
		}
	}
	action, err := url.Parse(f.d.Issuer() + "/authorize")
	if err != nil {
		t.Fatal(err)
	}
	if resolved, err := action.Parse(p.action); err != nil || resolved.String() != action.String() {
		t.Fatalf("form action %q resolves to %v (%v), want %s", p.action, resolved, err, action)
	}
	resp, err := c.PostForm(action.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestDevAuthCodeFlow: a client signs in through the development issuer
// with golang.org/x/oauth2 and go-oidc, end to end over loopback.
func TestDevAuthCodeFlow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		secret string
		style  oauth2.AuthStyle
	}{{"", oauth2.AuthStyleInParams}, {"s3cret-of-the-console", oauth2.AuthStyleInHeader}, {"s3cret-of-the-console", oauth2.AuthStyleInParams}} {
		t.Run(fmt.Sprintf("secret=%t,style=%d", tc.secret != "", tc.style), func(t *testing.T) {
			t.Parallel()
			f := startDevFlow(t, tc.secret)
			cfg := f.oauth2Config(t, tc.style)
			verifier := oauth2.GenerateVerifier()
			state, nonce := "st-"+oauth2.GenerateVerifier()[:16], "n-"+oauth2.GenerateVerifier()[:16]
			c := browser(t, true)
			p := getPicker(t, c, authorizeURL(cfg, state, nonce, verifier))
			if _, ok := p.fields["sub"]; !ok {
				t.Fatalf("no identity picker (input sub): %v", p.fields)
			}
			if p.fields["csrf"] == "" || p.fields["request"] == "" {
				t.Fatalf("no anti-forgery token or request: %v", p.fields)
			}
			if p.text["client"] != "console" || p.text["redirect"] != f.callback || p.text["state"] != state {
				t.Errorf("page shows %v", p.text)
			}
			resp := f.submit(t, c, p, map[string]string{"sub": "alice"})
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "callback reached" || resp.Request.URL.Path != "/ui/callback" {
				t.Fatalf("after the form: %d at %v: %s", resp.StatusCode, resp.Request.URL, body)
			}
			q := <-f.codes
			if q.Get("state") != state || q.Get("code") == "" {
				t.Fatalf("callback query %v", q)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if tok.TokenType != "Bearer" || tok.AccessToken == "" || tok.Expiry.IsZero() {
				t.Errorf("token %+v", tok)
			}
			raw, _ := tok.Extra("id_token").(string)
			provider, err := gooidc.NewProvider(ctx, f.d.Issuer())
			if err != nil {
				t.Fatal(err)
			}
			idt, err := provider.Verifier(&gooidc.Config{ClientID: "console"}).Verify(ctx, raw)
			if err != nil {
				t.Fatalf("verify ID token: %v", err)
			}
			if idt.Subject != "alice" || idt.Nonce != nonce || len(idt.Audience) != 1 || idt.Audience[0] != "console" {
				t.Errorf("ID token sub %q nonce %q aud %v", idt.Subject, idt.Nonce, idt.Audience)
			}
			// The access token is a dev token for bastion's API.
			at, err := provider.Verifier(&gooidc.Config{ClientID: DevAudience}).Verify(ctx, tok.AccessToken)
			if err != nil || at.Subject != "alice" {
				t.Errorf("access token: %v %+v", err, at)
			}

			// A code is used once: the second exchange is refused.
			_, err = cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || !strings.Contains(re.ErrorDescription, "already used") {
				t.Errorf("reused code: %v", err)
			}
		})
	}
}

// startCode runs the flow up to the code, without following redirects,
// and returns the code.
func (f *devFlow) startCode(t *testing.T, cfg *oauth2.Config, verifier string) string {
	t.Helper()
	c := browser(t, false)
	p := getPicker(t, c, authorizeURL(cfg, "s", "n", verifier))
	resp := f.submit(t, c, p, map[string]string{"sub": "bob"})
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the form: %d %v", resp.StatusCode, err)
	}
	if !strings.HasPrefix(loc.String(), f.callback+"?") || loc.Query().Get("code") == "" {
		t.Fatalf("redirect to %v", loc)
	}
	return loc.Query().Get("code")
}

func wantGrantError(t *testing.T, err error, what, desc string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || !strings.Contains(re.ErrorDescription, desc) {
		t.Errorf("%s: %v, want invalid_grant (%s)", what, err, desc)
	}
}

// TestDevAuthCodeRefusals: wrong verifier, wrong secret, expired codes,
// and a code tried with a wrong verifier is used up.
func TestDevAuthCodeRefusals(t *testing.T) {
	t.Parallel()
	f := startDevFlow(t, "the-secret")
	cfg := f.oauth2Config(t, oauth2.AuthStyleInHeader)
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()

	code := f.startCode(t, cfg, verifier)
	_, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
	wantGrantError(t, err, "wrong verifier", "does not match")
	_, err = cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	wantGrantError(t, err, "right verifier after a wrong one", "already used")

	code = f.startCode(t, cfg, verifier)
	_, err = cfg.Exchange(ctx, code)
	wantGrantError(t, err, "no verifier", "code_verifier")

	code = f.startCode(t, cfg, verifier)
	bad := *cfg
	bad.ClientSecret = "not-the-secret"
	_, err = bad.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Errorf("wrong client secret: %v", err)
	}
	other := *cfg
	other.RedirectURL = f.callback + "x"
	_, err = other.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	wantGrantError(t, err, "another redirect_uri", "redirect_uri")

	code = f.startCode(t, cfg, verifier)
	f.clock.Add(DevCodeTTL)
	_, err = cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	wantGrantError(t, err, "expired code", "unknown or expired")

	code = f.startCode(t, cfg, verifier)
	f.clock.Add(DevCodeTTL - time.Second)
	if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err != nil {
		t.Errorf("code one second before it expires: %v", err)
	}
}

// TestDevAuthorizeRefusals: requests refused before a redirect show an
// error page and never redirect; later ones go back with an OAuth error
// and the state.
func TestDevAuthorizeRefusals(t *testing.T) {
	t.Parallel()
	f := startDevFlow(t, "")
	cfg := f.oauth2Config(t, oauth2.AuthStyleInHeader)
	verifier := oauth2.GenerateVerifier()
	good := authorizeURL(cfg, "st", "n", verifier)
	edit := func(set map[string]string) string {
		u, _ := url.Parse(good)
		q := u.Query()
		for k, v := range set {
			if v == "-" {
				q.Del(k)
			} else {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	c := browser(t, false)
	for _, tc := range []struct {
		name string
		set  map[string]string
		page string
	}{
		{"unknown client", map[string]string{"client_id": "evil"}, "unknown client"},
		{"no client", map[string]string{"client_id": "-"}, "names no client"},
		{"other redirect", map[string]string{"redirect_uri": "https://evil.example/cb"}, "is not the one registered"},
		{"redirect prefix", map[string]string{"redirect_uri": f.callback + "/more"}, "is not the one registered"},
		{"redirect with query", map[string]string{"redirect_uri": f.callback + "?x=1"}, "is not the one registered"},
	} {
		resp, err := c.Get(edit(tc.set))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(html.UnescapeString(string(body)), tc.page) {
			t.Errorf("%s: %d Location %q %s", tc.name, resp.StatusCode, resp.Header.Get("Location"), body)
		}
		checkPageHeaders(t, resp)
	}
	for _, tc := range []struct {
		name    string
		set     map[string]string
		errCode string
	}{
		{"no challenge", map[string]string{"code_challenge": "-", "code_challenge_method": "-"}, "invalid_request"},
		{"plain challenge", map[string]string{"code_challenge": verifier, "code_challenge_method": "plain"}, "invalid_request"},
		{"no method", map[string]string{"code_challenge_method": "-"}, "invalid_request"},
		{"short challenge", map[string]string{"code_challenge": "abc"}, "invalid_request"},
		{"implicit", map[string]string{"response_type": "id_token"}, "unsupported_response_type"},
		{"no openid", map[string]string{"scope": "email"}, "invalid_scope"},
		{"no nonce", map[string]string{"nonce": "-"}, "invalid_request"},
	} {
		resp, err := c.Get(edit(tc.set))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if resp.StatusCode != http.StatusSeeOther || err != nil || !strings.HasPrefix(loc.String(), f.callback+"?") ||
			loc.Query().Get("error") != tc.errCode || loc.Query().Get("state") != "st" || loc.Query().Get("code") != "" {
			t.Errorf("%s: %d to %v, want error %s with the state", tc.name, resp.StatusCode, loc, tc.errCode)
		}
	}
}

// TestDevAuthorizeForm: the anti-forgery token, the cookie binding it to
// the browser, injection rendered as text, and cancelling.
func TestDevAuthorizeForm(t *testing.T) {
	t.Parallel()
	f := startDevFlow(t, "")
	cfg := f.oauth2Config(t, oauth2.AuthStyleInHeader)
	injection := `"><script>alert(1)</script><a href="javascript:alert(2)">x</a>`
	c := browser(t, false)
	p := getPicker(t, c, authorizeURL(cfg, injection, "n", oauth2.GenerateVerifier()))
	if p.text["state"] != injection {
		t.Errorf("state shown as %q, want the text %q", p.text["state"], injection)
	}

	for _, tc := range []struct {
		name string
		c    *http.Client
		set  map[string]string
	}{
		{"no csrf", c, map[string]string{"csrf": "-"}},
		{"wrong csrf", c, map[string]string{"csrf": oauth2.GenerateVerifier()}},
		{"other browser", browser(t, false), nil}, // right token, no cookie
	} {
		resp := f.submit(t, tc.c, p, tc.set)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" || !strings.Contains(string(body), "anti-forgery") {
			t.Errorf("%s: %d %q %s", tc.name, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}

	// A subject outside the charset is refused and shown back as text.
	evil := `<img src=x onerror=alert(1)>`
	resp := f.submit(t, c, p, map[string]string{"sub": evil})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	again := parsePicker(t, string(body))
	if resp.StatusCode != 400 || again.scripts != 0 || again.inline != 0 || strings.Contains(string(body), "<img") ||
		!strings.Contains(again.text["problem"], evil) || again.fields["sub"] != evil || again.text["state"] != injection {
		t.Errorf("bad subject: %d %s", resp.StatusCode, body)
	}
	checkPageHeaders(t, resp)

	// Cancel: access_denied with the state, and the request is gone.
	resp = f.submit(t, c, p, map[string]string{"action": "deny"})
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != injection {
		t.Errorf("cancel: %d %v", resp.StatusCode, loc)
	}
	resp = f.submit(t, c, p, map[string]string{"sub": "alice"})
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("form after cancel: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// A request that waited too long is gone.
	p = getPicker(t, c, authorizeURL(cfg, "s", "n", oauth2.GenerateVerifier()))
	f.clock.Add(DevPendingTTL)
	resp = f.submit(t, c, p, map[string]string{"sub": "alice"})
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("form after %v: %d %q", DevPendingTTL, resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestDevAuthorizeBounded: pending requests are capped, and free again
// when they expire.
func TestDevAuthorizeBounded(t *testing.T) {
	t.Parallel()
	f := startDevFlow(t, "")
	cfg := f.oauth2Config(t, oauth2.AuthStyleInHeader)
	u := authorizeURL(cfg, "s", "n", oauth2.GenerateVerifier())
	c := browser(t, false)
	get := func() *http.Response {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i := 0; i < DevMaxPending; i++ {
		if resp := get(); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	resp := get()
	loc, err := resp.Location()
	if err != nil || loc.Query().Get("error") != "temporarily_unavailable" {
		t.Fatalf("request %d: %d %v", DevMaxPending+1, resp.StatusCode, loc)
	}
	f.d.mu.Lock()
	n := len(f.d.pending)
	f.d.mu.Unlock()
	if n != DevMaxPending {
		t.Errorf("%d pending, want %d", n, DevMaxPending)
	}
	f.clock.Add(DevPendingTTL)
	if resp := get(); resp.StatusCode != 200 {
		t.Errorf("after expiry: %d", resp.StatusCode)
	}
}

// TestDevTokenEndpointRefusals: grant types, unknown clients and
// malformed requests get OAuth errors as JSON.
func TestDevTokenEndpointRefusals(t *testing.T) {
	t.Parallel()
	f := startDevFlow(t, "")
	post := func(form url.Values) (int, map[string]string) {
		resp, err := http.PostForm(f.d.Issuer()+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]string
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	for _, tc := range []struct {
		form url.Values
		code int
		err  string
	}{
		{url.Values{"grant_type": {"client_credentials"}}, 400, "unsupported_grant_type"},
		{url.Values{"grant_type": {"authorization_code"}, "client_id": {"evil"}, "code": {"x"}}, 401, "invalid_client"},
		{url.Values{"grant_type": {"authorization_code"}, "client_id": {"console"}, "client_secret": {"guess"}, "code": {"x"}}, 401, "invalid_client"},
		{url.Values{"grant_type": {"authorization_code"}, "client_id": {"console"}, "code": {"x"}}, 400, "invalid_grant"},
		{url.Values{"grant_type": {"authorization_code", "authorization_code"}}, 400, "invalid_request"},
	} {
		if code, m := post(tc.form); code != tc.code || m["error"] != tc.err {
			t.Errorf("%v: %d %v, want %d %s", tc.form, code, m, tc.code, tc.err)
		}
	}
}

func TestDevRegisterWebClient(t *testing.T) {
	t.Parallel()
	d, err := OpenDevIssuer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []DevWebClient{
		{ID: "", RedirectURL: "https://a.example/cb"},
		{ID: "a b", RedirectURL: "https://a.example/cb"},
		{ID: "ui", RedirectURL: "http://a.example/cb"},
		{ID: "ui", RedirectURL: "https://a.example/cb#x"},
		{ID: "ui", RedirectURL: "https://u@a.example/cb"},
		{ID: "ui", RedirectURL: "/cb"},
	} {
		if err := d.RegisterWebClient(c); err == nil {
			t.Errorf("RegisterWebClient(%+v) accepted", c)
		}
	}
	for _, c := range []DevWebClient{
		{ID: "ui", RedirectURL: "https://a.example/ui/callback"},
		{ID: "ui", RedirectURL: "http://127.0.0.1:8443/ui/callback"},
		{ID: "ui", RedirectURL: "http://[::1]:8443/ui/callback"},
	} {
		if err := d.RegisterWebClient(c); err != nil {
			t.Errorf("RegisterWebClient(%+v): %v", c, err)
		}
	}
}
