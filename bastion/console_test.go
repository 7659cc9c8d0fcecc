package bastion

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/bastionhq/bastion/bastion/console"
	"github.com/bastionhq/bastion/bastion/console/consoletest"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/recordertest"
)

// consoleConfig names dev identities as operators, auditors and
// approvers; every dev identity may log in to the target box.
const consoleConfig = `
api {
  listen = "127.0.0.1:0"
  rate_per_identity = -1
  rate_per_address  = -1
}
ssh {
  listen     = "127.0.0.1:0"
  host_names = ["bastion.example"]
}
target "box" {
  command = ["/bin/sh"]
}
identity "ops" {
  providers = ["dev"]
  subjects  = ["alice"]
}
identity "audit" {
  providers = ["dev"]
  subjects  = ["carol"]
}
identity "leads" {
  providers = ["dev"]
  subjects  = ["lena"]
}
identity "everyone" {
  providers = ["dev"]
}
operators = ["ops"]
auditors  = ["audit"]
role "users" {
  identities = ["everyone"]
  targets    = ["*"]
  logins     = ["%LOGIN%"]
  shell      = true
}
role "db" {
  identities = ["everyone"]
  targets    = ["*"]
  logins     = ["deploy"]
  access     = "grant"
  approval { approvers = ["leads"] }
}
`

// consoleFixture is a server under --dev with an SSH front door, and its
// clock, which a test may move forward.
type consoleFixture struct {
	ts  *testServer
	dev *oidc.DevIssuer
	mu  sync.Mutex
	add time.Duration
}

func (fx *consoleFixture) now() time.Time {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return time.Now().Add(fx.add)
}

func (fx *consoleFixture) advance(d time.Duration) {
	fx.mu.Lock()
	fx.add += d
	fx.mu.Unlock()
}

// startConsole starts the fixture's server; edits, if any, change its
// options before it is built.
func startConsole(t *testing.T, edits ...func(*ServerOptions)) *consoleFixture {
	t.Helper()
	return startConsoleConfig(t, consoleConfig, edits...)
}

// startConsoleConfig is startConsole with a configuration of the test's
// own (%LOGIN% is the current user's login).
func startConsoleConfig(t *testing.T, config string, edits ...func(*ServerOptions)) *consoleFixture {
	t.Helper()
	fx := &consoleFixture{}
	fx.ts = startServerWith(t, startOP(t), strings.ReplaceAll(config, "%LOGIN%", currentLogin(t)), certauth.AlgorithmEd25519, serverTweaks{edit: func(o *ServerOptions) {
		dev, err := oidc.OpenDevIssuer(o.Home)
		if err != nil {
			t.Fatal(err)
		}
		o.Dev, o.Now = dev, fx.now
		fx.dev = dev
		for _, e := range edits {
			e(o)
		}
	}})
	return fx
}

// browser is an HTTP client with a cookie jar that trusts the API's pinned
// certificate, as a person's browser would after accepting it.
func (fx *consoleFixture) browser(t *testing.T) *http.Client {
	t.Helper()
	b := consoletest.Browser(fx.ts.TLS().Fingerprint)
	t.Cleanup(b.CloseIdleConnections)
	return b
}

func readPage(t *testing.T, resp *http.Response) string {
	t.Helper()
	page, err := consoletest.ReadPage(resp)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// noFollow is b without following redirects: what a test sees is the
// console's own answer.
func noFollow(b *http.Client) *http.Client {
	return &http.Client{Jar: b.Jar, Transport: b.Transport, Timeout: b.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// formOf returns the first form of page: its action and its inputs' values.
func formOf(t *testing.T, page string) (string, url.Values) {
	t.Helper()
	action, vals, err := consoletest.FirstForm(page)
	if err != nil {
		t.Fatal(err)
	}
	return action, vals
}

// signIn signs in as sub through the dev provider's picker page, as a
// browser does, and returns the callback's page.
func (fx *consoleFixture) signIn(t *testing.T, b *http.Client, sub string) (*http.Response, string) {
	t.Helper()
	resp, page, err := consoletest.SignIn(b, fx.ts.APIURL()+"/ui/", fx.ts.DevIssuerURL(), sub)
	if err != nil {
		t.Fatal(err)
	}
	return resp, page
}

// get fetches a console page with b.
func get(t *testing.T, b *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	return resp, readPage(t, resp)
}

func wantSecurityHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	for k, v := range map[string]string{
		"Content-Security-Policy": "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s %s: %s = %q, want %q", resp.Request.Method, resp.Request.URL.Path, k, got, v)
		}
	}
}

// sessionCookieSet says whether resp sets a console session cookie.
func sessionCookieSet(resp *http.Response) bool {
	for _, c := range resp.Cookies() {
		if c.Name == console.SessionCookie && c.Value != "" {
			return true
		}
	}
	return false
}

// sessionCookie returns the console session cookie as the server set it.
func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == console.SessionCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie set by %s", console.SessionCookie, resp.Request.URL.Path)
	return nil
}

// liveSSH starts a session through the front door as the dev identity
// sub, running command, and returns the ssh client when the server lists
// the session with bytes recorded; the client is stopped when the test
// ends.
func (fx *consoleFixture) liveSSH(t *testing.T, sub, command string) *bgSSH {
	t.Helper()
	b := fx.ssh(t, sub, currentLogin(t), command)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, l := range fx.ts.LiveSessions() {
			if strings.Contains(l.Identity, sub) && l.Bytes > 0 {
				b.id = l.ID
				return b
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live session of %s with recorded bytes; ssh says:\n%s%s", sub, b.stdout.String(), b.stderr.String())
		}
	}
}

// ssh starts the real ssh client as the dev identity sub, with a fresh
// certificate for login, running command on target box; it is stopped
// when the test ends.
func (fx *consoleFixture) ssh(t *testing.T, sub, login, command string) *bgSSH {
	t.Helper()
	sshPath := needTool(t, "ssh")
	dir := t.TempDir()
	key, pub := newKey(t, dir, "id_ed25519")
	tok, err := fx.dev.Mint(sub, []string{oidc.DevAudience}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := fx.ts.client.Certificate(context.Background(), tok, certauth.CertificateRequest{PublicKey: pub, Logins: []string{login}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(strings.Join(fx.ts.auth.KnownHostsLines("*"), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(fx.ts.SSHAddr())
	return startBgSSH(t, exec.Command(sshPath, "-F", "none", "-i", key, "-p", port,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+kh, "-o", "GlobalKnownHostsFile=none",
		login+"@box@127.0.0.1", command))
}

// The whole sign-in through the dev provider's picker page, by the
// authorization-code flow with PKCE; the live sessions page shows a
// session started with the real ssh client; sign-out needs the session's
// anti-forgery token and the same origin, and both are journaled.
func TestConsoleSignInLiveSessions(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	fx.liveSSH(t, "bob", "echo started; sleep 60")

	b := fx.browser(t)
	resp, page := fx.signIn(t, b, "alice")
	if resp.StatusCode != 200 || !strings.Contains(page, `http-equiv="refresh" content="0;url=/ui/"`) {
		t.Fatalf("callback: %d\n%s", resp.StatusCode, page)
	}
	wantSecurityHeaders(t, resp)
	ck := sessionCookie(t, resp)
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui" || len(ck.Value) < 40 {
		t.Errorf("session cookie %+v: want Secure, HttpOnly, SameSite=Strict, Path=/ui and a long random value", ck)
	}

	resp, page = get(t, b, fx.ts.APIURL()+"/ui/")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /ui/ signed in: %d\n%s", resp.StatusCode, page)
	}
	wantSecurityHeaders(t, resp)
	var row string
	for _, l := range fx.ts.LiveSessions() {
		if strings.Contains(l.Identity, "bob") {
			row = l.ID
		}
	}
	for _, want := range []string{
		`Signed in as <span class="identity">alice@dev</span> (operator)`,
		`<td class="identity">bob@dev</td><td class="target">box</td><td class="login">` + currentLogin(t) + `</td>`,
		`<td class="rule">role:users</td>`,
		`<td class="session">` + row + `</td>`,
		"(1 live)",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("live page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "style=") {
		t.Errorf("the page has an inline style:\n%s", page)
	}
	// Its one script is the console's own file.
	assertInert(t, page)

	// Sign-out: a form posted without its token, or from another site,
	// is refused; the session lives on.
	action, form := formOf(t, page)
	if action != "/ui/logout" || form.Get("csrf") == "" {
		t.Fatalf("sign-out form: %s %v", action, form)
	}
	post := func(vals url.Values, hdr map[string]string) (int, string) {
		resp, page := fx.postConsole(t, b, "/ui/logout", vals, hdr)
		return resp.StatusCode, page
	}
	for _, c := range []struct {
		name string
		vals url.Values
		hdr  map[string]string
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {strings.Repeat("x", len(form.Get("csrf")))}}, nil},
		{"no Origin, no Sec-Fetch-Site, no token", url.Values{}, map[string]string{"Origin": "", "Sec-Fetch-Site": ""}},
		{"cross-site (Origin)", form, map[string]string{"Origin": "https://evil.example"}},
		{"cross-site (Sec-Fetch-Site)", form, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same-site, other origin", form, map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"origin null, no Sec-Fetch-Site", form, map[string]string{"Origin": "null", "Sec-Fetch-Site": ""}},
		{"origin null, cross-site", form, map[string]string{"Origin": "null", "Sec-Fetch-Site": "cross-site"}},
	} {
		if code, page := post(c.vals, c.hdr); code != http.StatusForbidden || !strings.Contains(page, `id="problem"`) {
			t.Errorf("sign-out, %s: %d, want 403\n%s", c.name, code, page)
		}
	}
	if resp, _ := get(t, b, fx.ts.APIURL()+"/ui/"); resp.StatusCode != 200 {
		t.Fatalf("a refused sign-out ended the session: %d", resp.StatusCode)
	}
	origin := fx.ts.APIURL()
	if code, page := post(form, map[string]string{"Origin": origin, "Sec-Fetch-Site": "same-origin"}); code != 200 || !strings.Contains(page, "You are signed out.") {
		t.Fatalf("sign-out: %d\n%s", code, page)
	}
	// The cookie is gone, and so is the session: the old cookie, sent
	// again, is refused.
	resp, err := (&http.Client{Transport: b.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(withCookie(t, fx.ts.APIURL()+"/ui/", ck))
	if err != nil {
		t.Fatal(err)
	}
	readPage(t, resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Errorf("GET /ui/ with the signed-out session's cookie: %d %s, want a redirect to sign in", resp.StatusCode, resp.Header.Get("Location"))
	}

	in, out := fx.ts.events(t, events.ConsoleSignedIn), fx.ts.events(t, events.ConsoleSignedOut)
	if len(in) != 1 || in[0]["identity"] != "alice@dev" || in[0]["console.roles"] != "operator" || in[0]["provider"] != DevProviderName || in[0]["console.session"] == "" {
		t.Errorf("console.signed_in: %v", in)
	}
	if len(out) != 1 || out[0]["identity"] != "alice@dev" || out[0]["console.session"] != in[0]["console.session"] {
		t.Errorf("console.signed_out: %v", out)
	}
	for _, e := range append(in, out...) {
		for _, v := range e {
			if strings.Contains(v, ck.Value) {
				t.Errorf("the journal holds the session's cookie: %v", e)
			}
		}
	}
}

func withCookie(t *testing.T, u string, ck *http.Cookie) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	return req
}

// Who may use the console is the policy's: operators, auditors and
// approvers; anyone else is refused every page and sees none of the data.
func TestConsoleGuard(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	fx.liveSSH(t, "bob", "sleep 60")
	for _, c := range []struct{ sub, roles string }{
		{"carol", "auditor"}, {"lena", "approver"}, {"mallory", ""},
	} {
		b := fx.browser(t)
		resp, page := fx.signIn(t, b, c.sub)
		switch {
		case c.roles == "" && (resp.StatusCode != http.StatusForbidden || sessionCookieSet(resp) || !strings.Contains(page, "mallory@dev is none of them")):
			t.Fatalf("%s: callback %d, want 403 and no console session\n%s", c.sub, resp.StatusCode, page)
		case c.roles != "" && resp.StatusCode != 200:
			t.Fatalf("%s: callback %d\n%s", c.sub, resp.StatusCode, page)
		}
		for _, path := range []string{"/ui", "/ui/", "/ui/no-such-page", "/ui/static/console.css?x", "/ui/anything"} {
			resp, page := get(t, noFollow(b), fx.ts.APIURL()+path)
			if resp.StatusCode == http.StatusMovedPermanently || resp.StatusCode == http.StatusTemporaryRedirect { // /ui, to /ui/
				resp, page = get(t, noFollow(b), fx.ts.APIURL()+resp.Header.Get("Location"))
			}
			wantSecurityHeaders(t, resp)
			if path == "/ui/static/console.css?x" {
				continue
			}
			switch {
			case c.roles == "" && strings.HasPrefix(path, "/ui/") && path != "/ui/" && (resp.StatusCode != http.StatusForbidden || strings.Contains(page, "bob") || !strings.Contains(page, "Sign in first.")),
				c.roles == "" && (path == "/ui" || path == "/ui/") && (resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login"):
				t.Errorf("%s GET %s: %d, want to be sent to sign in, and nothing of the data\n%s", c.sub, path, resp.StatusCode, page)
			case c.roles != "" && (path == "/ui" || path == "/ui/") && (resp.StatusCode != 200 || !strings.Contains(page, `<td class="identity">bob@dev</td>`) || !strings.Contains(page, "("+c.roles+")")):
				t.Errorf("%s GET %s: %d, want the live sessions\n%s", c.sub, path, resp.StatusCode, page)
			case c.roles != "" && path != "/ui" && path != "/ui/" && resp.StatusCode != http.StatusNotFound:
				t.Errorf("%s GET %s: %d, want 404", c.sub, path, resp.StatusCode)
			}
		}
		// A POST to a page is refused as well.
		req, _ := http.NewRequest(http.MethodPost, fx.ts.APIURL()+"/ui/", strings.NewReader(""))
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if page := readPage(t, resp); resp.StatusCode != http.StatusForbidden || strings.Contains(page, "bob") {
			t.Errorf("%s POST /ui/: %d\n%s", c.sub, resp.StatusCode, page)
		}
	}
	in := fx.ts.events(t, events.ConsoleSignedIn)
	var got []string
	for _, e := range in {
		got = append(got, e["identity"]+"="+e["console.roles"])
	}
	if fmt.Sprint(got) != "[carol@dev=auditor lena@dev=approver]" {
		t.Errorf("console.signed_in: %v", got)
	}
	// mallory's sign-in is journaled as refused, and holds nothing.
	if r := fx.ts.events(t, events.ConsoleRefused); len(r) != 1 || r[0]["identity"] != "mallory@dev" || r[0]["reason"] != events.ReasonNotConsoleRole || r[0]["client"] == "" {
		t.Errorf("console.refused: %v", r)
	}
	if n := fx.ts.ConsoleSessions(); n != 2 {
		t.Errorf("%d console sessions held, want carol's and lena's", n)
	}

	// Without a session: /ui/ sends the browser to sign in; every other
	// page is refused.
	plain := &http.Client{Transport: fx.browser(t).Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/ui/", "/ui/anything", "/ui/logout"} {
		resp, err := plain.Get(fx.ts.APIURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		page := readPage(t, resp)
		if path == "/ui/" && resp.StatusCode != http.StatusSeeOther || path != "/ui/" && resp.StatusCode != http.StatusForbidden || strings.Contains(page, "bob") {
			t.Errorf("signed out GET %s: %d\n%s", path, resp.StatusCode, page)
		}
	}
	// A callback this browser did not start is refused.
	resp, err := plain.Get(fx.ts.APIURL() + "/ui/callback?code=x&state=y")
	if err != nil {
		t.Fatal(err)
	}
	if page := readPage(t, resp); resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 1 {
		t.Errorf("a callback not started here: %d %v\n%s", resp.StatusCode, resp.Cookies(), page)
	}
}

// A console session ends after its idle timeout, and after its maximum
// age however busy it is (the server's clock is moved, no sleeping).
func TestConsoleSessionExpiry(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	noFollow := func(b *http.Client) *http.Client {
		return &http.Client{Jar: b.Jar, Transport: b.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	// Both sign in now: the provider's ID tokens are checked against the
	// server's clock, which is then moved.
	idle, busy := fx.browser(t), fx.browser(t)
	for _, b := range []*http.Client{idle, busy} {
		if resp, page := fx.signIn(t, b, "alice"); resp.StatusCode != 200 {
			t.Fatalf("sign-in: %d\n%s", resp.StatusCode, page)
		}
	}
	status := func(b *http.Client) int {
		resp, _ := get(t, noFollow(b), fx.ts.APIURL()+"/ui/")
		return resp.StatusCode
	}
	step := console.DefaultIdleTimeout / 2
	for k := 0; time.Duration(k)*step <= console.DefaultMaxAge; k++ {
		elapsed := time.Duration(k) * step
		want := 200
		if elapsed >= console.DefaultMaxAge {
			want = http.StatusSeeOther
		}
		if got := status(busy); got != want {
			t.Fatalf("used every %v, %v after sign-in (maximum age %v): %d, want %d", step, elapsed, console.DefaultMaxAge, got, want)
		}
		switch k {
		case 1:
			if got := status(idle); got != 200 {
				t.Fatalf("used again %v after sign-in: %d", elapsed, got)
			}
		case 3:
			if got := status(idle); got != http.StatusSeeOther {
				t.Fatalf("idle for %v: %d, want a redirect to sign in", console.DefaultIdleTimeout, got)
			}
		}
		fx.advance(step)
	}
	if n := fx.ts.ConsoleSessions(); n != 0 {
		t.Errorf("%d console sessions are held after both expired", n)
	}
}

// Values chosen by clients render as text: HTML, a javascript: URL and
// terminal escapes in an identity whose session is live.
func TestConsoleInjectionRendersAsText(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	evil := "x<script>alert(1)</script><a href=\"javascript:alert(2)\">y</a>\x1b[2J\x1b]0;pwn\x07"
	fx.liveSSH(t, evil, "sleep 60")
	b := fx.browser(t)
	fx.signIn(t, b, "alice")
	resp, page := get(t, b, fx.ts.APIURL()+"/ui/")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /ui/: %d\n%s", resp.StatusCode, page)
	}
	assertInert(t, page)
	want := `x&lt;script&gt;alert(1)&lt;/script&gt;&lt;a href=&#34;javascript:alert(2)&#34;&gt;y&lt;/a&gt;\x1b[2J\x1b]0;pwn\x07`
	if !strings.Contains(page, want) {
		t.Errorf("the live page does not show the identity as text %q:\n%s", want, page)
	}
}

// assertInert fails t if the page, parsed as a browser parses it, holds
// anything an injection fixture could have put there: a script that is
// not one of the console's own files, an event handler, a javascript: URL,
// an element outside the console's own templates' (a, form…, no iframe,
// object, embed, img, svg, style…), or a raw control character.
func assertInert(t *testing.T, page string) {
	t.Helper()
	if strings.ContainsAny(page, "\x1b\x07\x00") {
		t.Errorf("the page holds a raw control character:\n%q", page)
	}
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "iframe", "object", "embed", "img", "svg", "style", "math", "base", "frame", "video", "audio":
				t.Errorf("the page holds a <%s> element:\n%s", n.Data, page)
			}
			for _, a := range n.Attr {
				v := strings.ToLower(strings.TrimSpace(a.Val))
				switch {
				case strings.HasPrefix(a.Key, "on"):
					t.Errorf("<%s> has an event handler %s=%q", n.Data, a.Key, a.Val)
				case strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "data:") || strings.HasPrefix(v, "vbscript:"):
					t.Errorf("<%s %s=%q>: a script URL", n.Data, a.Key, a.Val)
				case n.Data == "script" && a.Key == "src" && !strings.HasPrefix(a.Val, "/ui/static/"):
					t.Errorf("<script src=%q>: not one of the console's own", a.Val)
				}
			}
			if n.Data == "script" && (n.FirstChild != nil || !strings.Contains(fmt.Sprint(n.Attr), "src")) {
				t.Errorf("the page holds an inline script:\n%s", page)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
}

// With a configured identity provider, the console signs people in with
// its web client (a confidential one here, its secret read from a file),
// by a real OpenID provider's authorization-code flow with PKCE.
func TestConsoleConfiguredProvider(t *testing.T) {
	t.Parallel()
	m := startOP(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "console.secret")
	if err := os.WriteFile(secret, []byte(m.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	config := func(redirect string) string {
		return `
api {
  listen = "` + addr + `"
  rate_per_identity = -1
  rate_per_address  = -1
}
identity_provider "corp" {
  issuer                 = "%ISSUER%"
  audiences              = ["%AUDIENCE%"]
  algorithms             = ["RS256"]
  web_client_id          = "%AUDIENCE%"
  web_client_secret_file = "` + secret + `"
  web_redirect_url       = "` + redirect + `"
}
identity "ops" {
  providers = ["corp"]
  subjects  = ["1234567890"]
}
operators = ["ops"]
`
	}
	// A redirect URL that is not the console's callback is refused at
	// the start.
	home := t.TempDir()
	bad := strings.NewReplacer("%ISSUER%", m.Issuer(), "%AUDIENCE%", m.ClientID).Replace(config("https://" + addr + "/callback"))
	if err := os.WriteFile(filepath.Join(home, "bastion.hcl"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(filepath.Join(home, "bastion.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := certauth.CreateAuthorities(home, certauth.AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	jkey, err := certauth.CreateJournalKey(home, "test.example/bastion")
	if err != nil {
		t.Fatal(err)
	}
	jt := recordertest.NewJournalWith(t, recordertest.Options{Path: filepath.Join(home, "journal.db"), Journal: recorder.Options{Key: jkey}})
	if srv, err := NewServer(context.Background(), ServerOptions{Config: cfg, Home: home, Journal: jt.Journal, Store: jt.Store, Authorities: auth}); err == nil || !strings.Contains(err.Error(), "must be the console's callback") {
		if srv != nil {
			srv.closeListeners()
		}
		t.Fatalf("a web_redirect_url that is not /ui/callback: %v", err)
	}

	fx := &consoleFixture{}
	fx.ts = startServerWith(t, m, config("https://"+addr+"/ui/callback"), certauth.AlgorithmEd25519, serverTweaks{})
	b := fx.browser(t)
	resp, page := get(t, b, fx.ts.APIURL()+"/ui/")
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/callback" || !strings.Contains(page, `http-equiv="refresh"`) {
		t.Fatalf("sign-in through %s: %d at %s\n%s", m.Issuer(), resp.StatusCode, resp.Request.URL, page)
	}
	resp, page = get(t, b, fx.ts.APIURL()+"/ui/")
	if resp.StatusCode != 200 || !strings.Contains(page, `Signed in as <span class="identity">1234567890@corp</span> (operator)`) || !strings.Contains(page, "No live session.") {
		t.Fatalf("GET /ui/: %d\n%s", resp.StatusCode, page)
	}
	if in := fx.ts.events(t, events.ConsoleSignedIn); len(in) != 1 || in[0]["identity"] != "1234567890@corp" || in[0]["console.roles"] != "operator" {
		t.Errorf("console.signed_in: %v", in)
	}
}

// Sign-ins under way are bounded, per client address too: a stranger
// who starts many and finishes none is refused beyond the bound, for a
// while, and holds nothing else.
func TestConsolePendingSignInsBounded(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	b := fx.browser(t)
	noFollow := &http.Client{Transport: b.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i := 0; i <= console.MaxPendingPerAddress; i++ {
		resp, page := get(t, noFollow, fx.ts.APIURL()+"/ui/login")
		want := http.StatusSeeOther
		if i == console.MaxPendingPerAddress {
			want = http.StatusServiceUnavailable
		}
		if resp.StatusCode != want {
			t.Fatalf("sign-in %d from one address: %d, want %d\n%s", i+1, resp.StatusCode, want, page)
		}
	}
	// They expire: then a sign-in may start again.
	fx.advance(console.LoginTTL)
	if resp, page := get(t, noFollow, fx.ts.APIURL()+"/ui/login"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the pending sign-ins expired: %d\n%s", resp.StatusCode, page)
	}
}

// One client address gets a burst of requests of /ui, then 429 with
// Retry-After, signed in or not; the bucket refills with time (the
// server's clock is moved, no sleeping).
func TestConsoleRateLimit(t *testing.T) {
	t.Parallel()
	config := strings.Replace(consoleConfig, "rate_per_address  = -1", "rate_per_address  = 5", 1)
	if config == consoleConfig {
		t.Fatal("the configuration has no rate_per_address to change")
	}
	fx := startConsoleConfig(t, config)
	b := fx.browser(t)
	var ok, limited int
	for range 3 * console.DefaultBurstPerAddress {
		resp, page := get(t, b, fx.ts.APIURL()+"/ui/static/console.css")
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(page, "Too many requests") {
				t.Errorf("a refused request: %v\n%s", resp.Header, page)
			}
			wantSecurityHeaders(t, resp)
		default:
			t.Fatalf("GET /ui/static/console.css: %d", resp.StatusCode)
		}
	}
	if ok < console.DefaultBurstPerAddress || limited == 0 {
		t.Errorf("%d allowed, %d refused: want the burst (%d) allowed, then refusals", ok, limited, console.DefaultBurstPerAddress)
	}
	fx.advance(time.Minute)
	if resp, _ := get(t, b, fx.ts.APIURL()+"/ui/login"); resp.StatusCode == http.StatusTooManyRequests {
		t.Errorf("still refused a minute later")
	}
}

// A person whose identity is revoked while signed in loses the console at
// their next request: the console session ends, and a new sign-in with a
// token issued before the revocation is refused too; a block refuses
// every sign-in until it ends.
func TestConsoleRevokedIdentity(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	b := fx.browser(t)
	fx.signIn(t, b, "alice")
	if resp, page := get(t, b, fx.ts.APIURL()+"/ui/"); resp.StatusCode != 200 {
		t.Fatalf("GET /ui/ signed in: %d\n%s", resp.StatusCode, page)
	}
	if _, err := fx.ts.Revoke(context.Background(), certauth.RevokeRequest{Identity: "alice@dev", BlockFor: time.Hour, Reason: "left the team", By: "test"}); err != nil {
		t.Fatal(err)
	}
	resp, page := get(t, b, fx.ts.APIURL()+"/ui/")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "alice@dev is blocked until") || strings.Contains(page, `id="live"`) {
		t.Errorf("GET /ui/ after the revocation: %d\n%s", resp.StatusCode, page)
	}
	if n := fx.ts.ConsoleSessions(); n != 0 {
		t.Errorf("%d console sessions held after the revocation, want 0", n)
	}
	// The cookie is gone: the next visit starts a sign-in, and the
	// provider's new token is blocked as well.
	if resp, page := fx.signIn(t, b, "alice"); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "Sign-in refused") || sessionCookieSet(resp) {
		t.Errorf("signing in again while blocked: %d\n%s", resp.StatusCode, page)
	}
	if n := fx.ts.ConsoleSessions(); n != 0 {
		t.Errorf("%d console sessions held after a blocked sign-in, want 0", n)
	}
}

// Every page and action behind the console's guard, as the console lists
// them: someone the policy names in none of the console's roles is
// refused each (403, with nothing of the data), and so is everyone whose
// roles the route does not include; every action (POST) is refused from
// another site, even with the right anti-forgery token, and changes
// nothing. A route added later is walked too.
func TestConsoleEveryRouteGuarded(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	live := fx.liveSSH(t, "bob", "echo started; exec sleep 300")
	g, err := fx.ts.client.RequestGrant(context.Background(), fx.devToken(t, "bob"), certauth.GrantRequest{Target: "box", Login: "deploy", Duration: "10m", Reason: "look"})
	if err != nil {
		t.Fatal(err)
	}
	routes := fx.ts.ConsoleRoutes()
	if len(routes) < 10 {
		t.Fatalf("the console lists %d routes: %v", len(routes), routes)
	}
	people := map[string][]string{"alice": {console.RoleOperator}, "carol": {console.RoleAuditor}, "lena": {console.RoleApprover}, "mallory": nil}
	clients, tokens := map[string]*http.Client{}, map[string]string{}
	for sub := range people {
		b := fx.browser(t)
		fx.signIn(t, b, sub)
		_, page := get(t, b, fx.ts.APIURL()+"/ui/")
		clients[sub] = b
		if m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page); m != nil {
			tokens[sub] = m[1]
		}
	}
	refusals := 0
	reads := len(fx.ts.events(t, recorder.EventJournalAccessed))
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		path = strings.ReplaceAll(path, "{$}", "")
		if strings.HasPrefix(path, "/ui/grants/") {
			path = strings.ReplaceAll(path, "{id}", g.ID)
		} else {
			path = strings.ReplaceAll(path, "{id}", live.id)
		}
		if strings.Contains(path, "{") {
			t.Fatalf("route %s: a wildcard this test does not fill", rt.Pattern)
		}
		for sub, roles := range people {
			allowed := false
			for _, r := range roles {
				allowed = allowed || slices.Contains(rt.Roles, r)
			}
			if allowed {
				continue
			}
			refusals++
			var resp *http.Response
			var page string
			if method == http.MethodPost {
				resp, page = fx.postConsole(t, clients[sub], path, url.Values{"csrf": {tokens[sub]}, "reason": {"x"}, "comment": {"x"}, "from": {"2026-01-01"}, "to": {"2026-01-02"}}, nil)
			} else {
				resp, page = get(t, noFollow(clients[sub]), fx.ts.APIURL()+path)
			}
			wantSecurityHeaders(t, resp)
			// Without a console session (mallory's sign-in was refused),
			// the console's front page sends the browser to sign in.
			signInAgain := roles == nil && path == "/ui/" && resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/ui/login"
			if !signInAgain && resp.StatusCode != http.StatusForbidden || strings.Contains(page, "bob@dev") || strings.Contains(page, "started") || strings.Contains(page, `id="live"`) {
				t.Errorf("%s %s as %s (%v; the route is for %v): %d, want 403 and nothing of the data\n%s", method, path, sub, roles, rt.Roles, resp.StatusCode, page)
			}
		}
		if method != http.MethodPost {
			// Asked for by another site's page, as someone the route is
			// for (a sibling subdomain's <img>, or a link): refused, and
			// nothing read or journaled; a navigation gets a link on.
			for sub, roles := range people {
				if len(roles) == 0 || !slices.Contains(rt.Roles, roles[0]) {
					continue
				}
				for _, hdr := range []map[string]string{
					{"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
					{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
				} {
					req, _ := http.NewRequest(method, fx.ts.APIURL()+path, nil)
					for k, v := range hdr {
						req.Header.Set(k, v)
					}
					resp, err := noFollow(clients[sub]).Do(req)
					if err != nil {
						t.Fatal(err)
					}
					page := readPage(t, resp)
					next := `<a id="next" href="` + strings.ReplaceAll(path, "&", "&amp;") + `">`
					if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "asked for by another site") || strings.Contains(page, "bob@dev") ||
						(hdr["Sec-Fetch-Mode"] == "navigate") != strings.Contains(page, next) {
						t.Errorf("GET %s as %s from another site (%v): %d\n%s", path, sub, hdr, resp.StatusCode, page)
					}
				}
			}
			continue
		}
		// From another site, as someone the route is for: refused.
		for sub, roles := range people {
			if len(roles) == 0 || !slices.Contains(rt.Roles, roles[0]) {
				continue
			}
			for _, hdr := range []map[string]string{{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}, {"Origin": "null", "Sec-Fetch-Site": ""}} {
				resp, page := fx.postConsole(t, clients[sub], path, url.Values{"csrf": {tokens[sub]}, "reason": {"x"}, "comment": {"x"}}, hdr)
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "cannot change anything here") {
					t.Errorf("POST %s as %s from another site (%v): %d\n%s", path, sub, hdr, resp.StatusCode, page)
				}
			}
		}
	}
	t.Logf("%d routes, %d refusals checked", len(routes), refusals)
	if n := len(fx.ts.events(t, recorder.EventJournalAccessed)); n != reads {
		t.Errorf("refused requests journaled %d reads", n-reads)
	}
	if refusals < len(routes) {
		t.Errorf("only %d refusals checked for %d routes", refusals, len(routes))
	}
	if !isLive(fx, live.id) {
		t.Error("a refused request ended bob's session")
	}
	if got, err := fx.ts.client.Grant(context.Background(), fx.devToken(t, "bob"), g.ID); err != nil || got.State != "pending" {
		t.Errorf("a refused request decided the grant: %v %v", got, err)
	}
}

// The console's sessions are bounded without letting anyone end someone
// else's: one person holds at most console.MaxSessionsPerIdentity (a new
// sign-in of theirs ends their own idle the longest), and when the
// console holds as many as it may, a new sign-in is refused (journaled)
// and every session held goes on.
func TestConsoleSessionBounds(t *testing.T) {
	t.Parallel()
	const limit = console.MaxSessionsPerIdentity + 2
	fx := startConsoleConfig(t, consoleConfig, func(o *ServerOptions) { o.ConsoleMaxSessions = limit })
	var alices []*http.Client
	for range console.MaxSessionsPerIdentity + 1 {
		b := fx.browser(t)
		fx.signIn(t, b, "alice")
		alices = append(alices, b)
		fx.advance(time.Second) // each a second idler than the next
	}
	if resp, _ := get(t, noFollow(alices[0]), fx.ts.APIURL()+"/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("alice's first console session, after %d more sign-ins of hers: %d, want it ended", console.MaxSessionsPerIdentity, resp.StatusCode)
	}
	for i, b := range alices[1:] {
		if resp, page := get(t, b, fx.ts.APIURL()+"/ui/"); resp.StatusCode != 200 {
			t.Errorf("alice's console session %d: %d\n%s", i+1, resp.StatusCode, page)
		}
	}
	// alice holds 8, carol and lena one each: the console is full.
	carol, lena := fx.browser(t), fx.browser(t)
	fx.signIn(t, carol, "carol")
	fx.signIn(t, lena, "lena")
	if n := fx.ts.ConsoleSessions(); n != limit {
		t.Fatalf("%d console sessions held, want %d", n, limit)
	}
	late := fx.browser(t)
	resp, page := fx.signIn(t, late, "carol")
	if resp.StatusCode != http.StatusServiceUnavailable || sessionCookieSet(resp) || !strings.Contains(page, "the most it may") {
		t.Errorf("a sign-in with the console full: %d\n%s", resp.StatusCode, page)
	}
	for name, b := range map[string]*http.Client{"carol": carol, "lena": lena, "alice": alices[1]} {
		if resp, _ := get(t, b, fx.ts.APIURL()+"/ui/"); resp.StatusCode != 200 {
			t.Errorf("%s's console session after the refused sign-in: %d", name, resp.StatusCode)
		}
	}
	r := fx.ts.events(t, events.ConsoleRefused)
	if len(r) != 1 || r[0]["identity"] != "carol@dev" || r[0]["reason"] != events.ReasonConsoleFull {
		t.Errorf("console.refused: %v", r)
	}
}
