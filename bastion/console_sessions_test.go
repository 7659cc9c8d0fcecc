package bastion

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/bastionhq/bastion/bastion/console"
	"github.com/bastionhq/bastion/bastion/console/consoletest"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/playback"
)

// finishedSSH runs command on box through the front door as the dev
// identity sub with the real ssh client, waits for it to end, and returns
// the ID of the session the journal recorded for it.
func (fx *consoleFixture) finishedSSH(t *testing.T, sub, command string) string {
	t.Helper()
	before := map[string]bool{}
	for _, s := range fx.sessionsOf(t, sub) {
		before[s] = true
	}
	b := fx.ssh(t, sub, currentLogin(t), command)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("ssh as %q still runs after 30 s: %s%s", sub, b.stdout.String(), b.stderr.String())
	}
	if code := b.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("ssh as %q: exit %d\n%s%s", sub, code, b.stdout.String(), b.stderr.String())
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, s := range fx.sessionsOf(t, sub) {
			if !before[s] {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ended session of %q in the journal", sub)
		}
	}
}

// sessionsOf returns the IDs of the ended sessions of the dev identity
// sub, as the journal's verified log says.
func (fx *consoleFixture) sessionsOf(t *testing.T, sub string) []string {
	t.Helper()
	log := fx.ts.log(t)
	var out []string
	for _, s := range log.Sessions {
		if s.End != nil && s.Start.Attrs["identity"] == sub+"@dev" {
			out = append(out, uuid.UUID(s.ID).String())
		}
	}
	return out
}

// accessed returns the journal.accessed leaves of action, in order.
func (fx *consoleFixture) accessed(t *testing.T, action string) []recorder.Attrs {
	t.Helper()
	var out []recorder.Attrs
	for _, e := range fx.ts.events(t, recorder.EventJournalAccessed) {
		if e["action"] == action {
			out = append(out, e)
		}
	}
	return out
}

// wantAccessed fails t unless the last journal.accessed leaf of action
// names the read as want says, by who, through the console.
func wantAccessed(t *testing.T, fx *consoleFixture, action, who, role string, want map[string]string) {
	t.Helper()
	got := fx.accessed(t, action)
	if len(got) == 0 {
		t.Fatalf("no journal.accessed leaf of action %s", action)
	}
	a := got[len(got)-1]
	if a["via"] != ViaConsole || a["identity"] != who || a["reader.role"] != role || a["identity.verified"] != VerifiedToken {
		t.Errorf("journal.accessed %s: %v, want via=%s identity=%s reader.role=%s", action, a, ViaConsole, who, role)
	}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("journal.accessed %s: %s=%q, want %q (%v)", action, k, a[k], v, a)
		}
	}
}

// The sessions' search finds sessions by identity and by the text of
// their output and commands, and not others; a session's page shows what
// "bastion sessions show" shows; the asciicast and the bundle download
// are what "bastion export" writes; each read is journaled, naming the
// reader, before anything is shown.
func TestConsoleSessions(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	bob := fx.finishedSSH(t, "bob", "echo needle-bob-7; echo second line")
	dave := fx.finishedSSH(t, "dave", "echo other-output-3")
	b := fx.browser(t)
	fx.signIn(t, b, "alice")
	base := fx.ts.APIURL()

	search := func(q url.Values) (int, string) {
		t.Helper()
		resp, page := get(t, b, base+"/ui/sessions?"+q.Encode())
		wantSecurityHeaders(t, resp)
		return resp.StatusCode, page
	}
	row := func(id string) string { return `<a href="/ui/sessions/` + id + `">` + id + `</a>` }

	// Every session, the latest first.
	code, page := search(nil)
	if code != 200 || !strings.Contains(page, row(bob)) || !strings.Contains(page, row(dave)) || strings.Index(page, row(dave)) > strings.Index(page, row(bob)) {
		t.Fatalf("GET /ui/sessions: %d, want both sessions, dave's first\n%s", code, page)
	}
	if !strings.Contains(page, "2 sessions found, the latest first.") || !strings.Contains(page, `<td class="command">echo needle-bob-7; echo second line</td>`) {
		t.Errorf("the list's count or command summary:\n%s", page)
	}
	wantAccessed(t, fx, "list", "alice@dev", "operator", nil)

	// By identity.
	code, page = search(url.Values{"identity": {"bob@dev"}, "since": {"2020-01-01"}})
	if code != 200 || !strings.Contains(page, row(bob)) || strings.Contains(page, dave) {
		t.Fatalf("identity=bob@dev: %d\n%s", code, page)
	}
	for _, want := range []string{`<td class="identity">bob@dev</td>`, `<td class="target">box</td>`, `<td class="login">` + currentLogin(t) + `</td>`, `<td class="state">ended</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("identity=bob@dev: no %s\n%s", want, page)
		}
	}
	wantAccessed(t, fx, "list", "alice@dev", "operator", map[string]string{"identities": "bob@dev", "period.from": "2020-01-01T00:00:00Z"})

	// By the output's text: the matched line is shown.
	code, page = search(url.Values{"text": {"needle-bob"}, "in": {"output"}})
	if code != 200 || !strings.Contains(page, row(bob)) || strings.Contains(page, dave) || !strings.Contains(page, `<span class="in">output</span> <code class="line">needle-bob-7</code>`) {
		t.Fatalf("text=needle-bob in output: %d\n%s", code, page)
	}
	if strings.Contains(page, "second line") && !strings.Contains(page, "echo needle-bob-7; echo second line") {
		t.Errorf("a line that does not match is shown:\n%s", page)
	}
	searches := fx.accessed(t, "search")
	wantAccessed(t, fx, "search", "alice@dev", "operator", nil)
	for _, e := range searches {
		for k, v := range e {
			if strings.Contains(v, "needle") {
				t.Errorf("the journal holds the search's pattern in %s: %v", k, e)
			}
		}
	}
	// A regular expression over the commands.
	code, page = search(url.Values{"text": {`^echo other-\w+`}, "regex": {"1"}, "in": {"commands"}})
	if code != 200 || !strings.Contains(page, row(dave)) || strings.Contains(page, bob) || !strings.Contains(page, `<span class="in">command</span> <code class="line">echo other-output-3</code>`) {
		t.Fatalf("regex over commands: %d\n%s", code, page)
	}
	// Text nobody printed finds nothing.
	if code, page = search(url.Values{"text": {"nobody-printed-this"}}); code != 200 || strings.Contains(page, bob) || strings.Contains(page, dave) || !strings.Contains(page, "No session.") {
		t.Errorf("a search that matches nothing: %d\n%s", code, page)
	}
	// Bad input: a clear error, and nothing read or journaled.
	n := len(fx.ts.events(t, recorder.EventJournalAccessed))
	for _, q := range []url.Values{{"text": {"("}, "regex": {"1"}}, {"state": {"sleeping"}}, {"since": {"yesterday"}}, {"in": {"everywhere"}}} {
		if code, page := search(q); code != http.StatusBadRequest || !strings.Contains(page, `id="problem"`) || strings.Contains(page, bob) {
			t.Errorf("%v: %d, want 400 with the problem\n%s", q, code, page)
		}
	}
	if m := len(fx.ts.events(t, recorder.EventJournalAccessed)); m != n {
		t.Errorf("bad searches were journaled: %d leaves, then %d", n, m)
	}

	// The session's page, as "sessions show" gives it.
	resp, page := get(t, b, base+"/ui/sessions/"+bob)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /ui/sessions/%s: %d\n%s", bob, resp.StatusCode, page)
	}
	for _, want := range []string{
		`<dd class="identity">bob@dev</dd>`, `<dd class="target">box</dd>`, `<dd class="login">` + currentLogin(t) + `</dd>`,
		`<dd class="rule">role:users</dd>`, `<dd class="exit">status 0</dd>`, `<dd class="state">ended</dd>`,
		`<code>echo needle-bob-7; echo second line</code>`, "every frame's chain intact",
		`href="/ui/sessions/` + bob + `/cast?download=1"`, `href="/ui/sessions/` + bob + `/bundle"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("session page: no %s\n%s", want, page)
		}
	}
	if strings.Contains(page, dave) {
		t.Errorf("the session page shows another session:\n%s", page)
	}
	if playerBuiltHere(t, b, base) {
		if !strings.Contains(page, `<div id="player" data-cast="/ui/sessions/`+bob+`/cast"></div>`) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self' 'wasm-unsafe-eval';") {
			t.Errorf("session page with the player built: no player, or CSP %q\n%s", resp.Header.Get("Content-Security-Policy"), page)
		}
	} else if !strings.Contains(page, `id="no-player"`) {
		t.Errorf("session page without the player: it does not say so\n%s", page)
	}
	wantAccessed(t, fx, "show", "alice@dev", "operator", map[string]string{"session": bob})
	// By a prefix of its ID; an unknown ID, and something else.
	if resp, page := get(t, b, base+"/ui/sessions/"+bob[:len(bob)-4]); resp.StatusCode != 200 || !strings.Contains(page, `<dd class="identity">bob@dev</dd>`) {
		t.Errorf("by a prefix: %d\n%s", resp.StatusCode, page)
	}
	// IDs are time-ordered: the two sessions' share a beginning.
	common := 0
	for common < len(bob) && bob[common] == dave[common] {
		common++
	}
	if common >= 4 {
		if resp, page := get(t, b, base+"/ui/sessions/"+bob[:common]); resp.StatusCode != http.StatusNotFound || !strings.Contains(page, "2 sessions have IDs starting with") || strings.Contains(page, "bob@dev") {
			t.Errorf("by a prefix both IDs share: %d\n%s", resp.StatusCode, page)
		}
	}
	for path, want := range map[string]int{
		"/ui/sessions/" + uuid.NewString():           http.StatusNotFound,
		"/ui/sessions/zzzz":                          http.StatusBadRequest,
		"/ui/sessions/" + uuid.NewString() + "/cast": http.StatusNotFound,
	} {
		if resp, page := get(t, b, base+path); resp.StatusCode != want || !strings.Contains(page, `id="problem"`) {
			t.Errorf("GET %s: %d, want %d with the problem\n%s", path, resp.StatusCode, want, page)
		}
	}

	// The asciicast: for the player (journaled as play) and as a download
	// (export), the bytes "bastion export --format asciicast" writes.
	var want bytes.Buffer
	func() {
		ctx := context.Background()
		snap, err := fx.ts.store.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close()
		id := uuid.MustParse(bob)
		rec, err := recorder.OpenSession(ctx, snap, recorder.SessionID(id), recorder.OpenOptions{Verifier: fx.ts.key.Verifier})
		if err != nil {
			t.Fatal(err)
		}
		if err := playback.WriteAsciicast(ctx, snap, rec, &want, playback.AsciicastOptions{}); err != nil {
			t.Fatal(err)
		}
	}()
	for _, c := range []struct {
		query, action, disposition string
		attrs                      map[string]string
	}{
		{"", "play", "", map[string]string{"session": bob}},
		{"?download=1", "export", `attachment; filename="session-` + bob + `.cast"`, map[string]string{"session": bob, "format": "asciicast"}},
	} {
		resp, cast := get(t, b, base+"/ui/sessions/"+bob+"/cast"+c.query)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Disposition") != c.disposition {
			t.Fatalf("cast%s: %d, Content-Disposition %q\n%s", c.query, resp.StatusCode, resp.Header.Get("Content-Disposition"), cast)
		}
		if cast != want.String() {
			t.Errorf("cast%s is not what export writes:\n%s\nwant:\n%s", c.query, cast, want.String())
		}
		wantAsciicast(t, cast, "needle-bob-7")
		wantAccessed(t, fx, c.action, "alice@dev", "operator", c.attrs)
	}

	// The bundle verifies with the journal's public key alone.
	resp, bundle := get(t, b, base+"/ui/sessions/"+bob+"/bundle")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Disposition") != `attachment; filename="session-`+bob+`.bundle"` {
		t.Fatalf("bundle: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Disposition"), bundle)
	}
	data, err := recorder.ReadBundle(strings.NewReader(bundle))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := recorder.VerifyBundle(data, fx.ts.key.Verifier)
	if err != nil {
		t.Fatalf("the bundle does not verify: %v", err)
	}
	if rep.Session != bob {
		t.Errorf("the bundle's report: %+v", rep)
	}
	wantAccessed(t, fx, "export", "alice@dev", "operator", map[string]string{"session": bob, "format": "bundle"})

	// An auditor reads too, and is named so.
	auditor := fx.browser(t)
	fx.signIn(t, auditor, "carol")
	if resp, page := get(t, auditor, base+"/ui/sessions/"+dave); resp.StatusCode != 200 || !strings.Contains(page, `<dd class="identity">dave@dev</dd>`) {
		t.Fatalf("carol GET /ui/sessions/%s: %d\n%s", dave, resp.StatusCode, page)
	}
	wantAccessed(t, fx, "show", "carol@dev", "auditor", map[string]string{"session": dave})
}

// wantAsciicast fails t unless cast is asciicast v2 whose output holds
// text.
func wantAsciicast(t *testing.T, cast, text string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(cast))
	if !sc.Scan() {
		t.Fatal("an empty asciicast")
	}
	var hdr struct {
		Version       int
		Width, Height int
	}
	if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil || hdr.Version != 2 || hdr.Width == 0 || hdr.Height == 0 {
		t.Fatalf("asciicast header %s: %v", sc.Text(), err)
	}
	var out strings.Builder
	for sc.Scan() {
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("asciicast event %s: %v", sc.Text(), err)
		}
		if _, ok := ev[0].(float64); !ok {
			t.Fatalf("asciicast event %s: no time", sc.Text())
		}
		if ev[1] == "o" {
			out.WriteString(ev[2].(string))
		}
	}
	if !strings.Contains(out.String(), text) {
		t.Errorf("the asciicast's output lacks %q: %q", text, out.String())
	}
}

// playerBuiltHere says whether the server's console has the player
// built in ("make player").
func playerBuiltHere(t *testing.T, b *http.Client, base string) bool {
	t.Helper()
	resp, err := b.Get(base + "/ui/static/player/asciinema-player.min.js")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == 200
}

// An approver and someone the policy does not name are refused every
// sessions page and download, and see nothing of the data; nothing is
// journaled for them.
func TestConsoleSessionsRefused(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	id := fx.finishedSSH(t, "bob", "echo secret-output-5")
	n := len(fx.ts.events(t, recorder.EventJournalAccessed))
	for _, c := range []struct{ sub, why string }{
		// mallory's sign-in was refused: she holds no console session.
		{"lena", "you are not one of them"}, {"mallory", "Sign in first."},
	} {
		b := fx.browser(t)
		fx.signIn(t, b, c.sub)
		for _, path := range []string{
			"/ui/sessions", "/ui/sessions?identity=bob@dev", "/ui/sessions?text=secret",
			"/ui/sessions/" + id, "/ui/sessions/" + id[:8], "/ui/sessions/" + id + "/cast",
			"/ui/sessions/" + id + "/cast?download=1", "/ui/sessions/" + id + "/bundle",
		} {
			resp, page := get(t, b, fx.ts.APIURL()+path)
			wantSecurityHeaders(t, resp)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, c.why) || strings.Contains(page, id) ||
				strings.Contains(page, "secret-output") || strings.Contains(page, "bob@dev") || resp.Header.Get("Content-Disposition") != "" {
				t.Errorf("%s GET %s: %d, want 403 and nothing of the data\n%s", c.sub, path, resp.StatusCode, page)
			}
		}
		if resp, page := get(t, b, fx.ts.APIURL()+"/ui/"); c.sub == "lena" && strings.Contains(page, `href="/ui/sessions"`) {
			t.Errorf("the approver's menu offers the sessions: %d\n%s", resp.StatusCode, page)
		}
	}
	if m := len(fx.ts.events(t, recorder.EventJournalAccessed)); m != n {
		t.Errorf("refused reads were journaled: %d leaves, then %d", n, m)
	}
}

// Values a client chose render as text on the search results and the
// session's page: HTML, a javascript: URL and terminal escapes in the
// identity, the command and the output.
func TestConsoleSessionsInjection(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	evil := "x<script>alert(1)</script><a href=\"javascript:alert(2)\">y</a>\x1b[2J\x1b]0;pwn\x07"
	id := fx.finishedSSH(t, evil, `printf 'out<script>alert(3)</script><a href="javascript:alert(4)">z</a>\033[2J\033]0;pwn\007<img src=x onerror=alert(5)>\n' # <iframe src="javascript:alert(6)"></iframe>`)
	b := fx.browser(t)
	fx.signIn(t, b, "alice")
	for _, path := range []string{
		"/ui/sessions",
		"/ui/sessions?" + url.Values{"identity": {evil + "@dev"}}.Encode(),
		"/ui/sessions?" + url.Values{"text": {"<script>"}}.Encode(),
		"/ui/sessions?" + url.Values{"text": {"iframe"}, "in": {"commands"}}.Encode(),
		"/ui/sessions/" + id,
	} {
		resp, page := get(t, b, fx.ts.APIURL()+path)
		if resp.StatusCode != 200 || !strings.Contains(page, id) {
			t.Fatalf("GET %s: %d, want the evil session\n%s", path, resp.StatusCode, page)
		}
		assertInert(t, page)
		if !strings.Contains(page, `x&lt;script&gt;alert(1)&lt;/script&gt;&lt;a href=&#34;javascript:alert(2)&#34;&gt;y&lt;/a&gt;\x1b[2J\x1b]0;pwn\x07`) {
			t.Errorf("GET %s: the identity is not shown as text\n%s", path, page)
		}
	}
	// The output's escapes, as the matched line shows them.
	_, page := get(t, b, fx.ts.APIURL()+"/ui/sessions?"+url.Values{"text": {"alert(3)"}}.Encode())
	if !strings.Contains(page, `out&lt;script&gt;alert(3)&lt;/script&gt;`) {
		t.Errorf("the matched output line is not shown as text\n%s", page)
	}
}

// In a real browser, a finished session's page replays it with
// asciinema-player under the page's Content-Security-Policy: the player
// fetches the asciicast from the console, and once played its terminal
// shows the session's output. Without the player built ("make player")
// the test is skipped, and with CI=true it fails.
func TestConsoleReplayBrowser(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	id := fx.finishedSSH(t, "bob", "echo replay-marker-42; echo and-after")
	if !playerBuiltHere(t, fx.browser(t), fx.ts.APIURL()) {
		if os.Getenv("CI") == "true" {
			t.Fatal(`the console's player is not built in: run "make player" (node and npm) before the tests`)
		}
		t.Skip(`the console's player is not built in ("make player")`)
	}

	br := newBrowser(t, 60*time.Second) // after the server: stopped before it
	br.signIn(fx.ts.APIURL(), "alice")
	// The search, through its form, as a person fills it in.
	br.run("search", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/sessions"]`)), chromedp.WaitVisible(chromedp.CSS("#search")),
		chromedp.SetValue(chromedp.CSS(`#search input[name="text"]`), "replay-marker"),
		chromedp.Click(chromedp.CSS(`#search button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS(".hits")))
	results, err := chromedp.Run(br.ctx, chromedp.Text(chromedp.CSS("#sessions")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(results, id) || !strings.Contains(results, "output replay-marker-42") {
		t.Errorf("the search's results as rendered: %q", results)
	}
	br.shot("console-sessions.png")
	br.run("open the session's page", chromedp.Click(chromedp.CSS(`#sessions a[href="/ui/sessions/`+id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#player .ap-player")), chromedp.WaitVisible(chromedp.CSS("#player .ap-term")))
	// Playing it: the start overlay's button, as a person clicks it.
	br.run("play", chromedp.Click(chromedp.CSS("#player .ap-overlay-start")))
	var term string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		s, err := chromedp.Run(br.ctx, chromedp.Text(chromedp.CSS("#player .ap-term")))
		if err != nil {
			t.Fatalf("browser, the player's terminal: %v", err)
		}
		if term = s; strings.Contains(term, "replay-marker-42") && strings.Contains(term, "and-after") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the player's terminal does not show the session's output: %q; the page says:\n%s", term, br.body())
		}
	}
	br.shot("console-replay.png")
	// The player's fetch of the asciicast was journaled as a play.
	wantAccessed(t, fx, "play", "alice@dev", "operator", map[string]string{"session": id})
	wantAccessed(t, fx, "show", "alice@dev", "operator", map[string]string{"session": id})
}

// A read that cannot be journaled shows nothing: every sessions page and
// download answers 503 with none of the data.
func TestConsoleSessionsNotJournaled(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	id := fx.finishedSSH(t, "bob", "echo unjournaled-output-9")
	b := fx.browser(t)
	fx.signIn(t, b, "alice")
	// The journal stops taking leaves; its store can still be read. The
	// server cannot journal its own stop then: this test stops it, and
	// expects that error.
	if err := fx.ts.CloseJournal(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		fx.ts.client.CloseIdleConnections()
		fx.ts.cancel()
		fx.ts.cancel = nil
		if err := <-fx.ts.done; !errors.Is(err, recorder.ErrClosed) {
			t.Errorf("the server's stop with its journal closed: %v", err)
		}
	}()
	for _, path := range []string{
		"/ui/sessions", "/ui/sessions?text=unjournaled", "/ui/sessions/" + id,
		"/ui/sessions/" + id + "/cast", "/ui/sessions/" + id + "/cast?download=1", "/ui/sessions/" + id + "/bundle",
	} {
		resp, page := get(t, b, fx.ts.APIURL()+path)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(page, "could not be journaled, so nothing of it is shown") ||
			strings.Contains(page, id) || strings.Contains(page, "unjournaled-output") || strings.Contains(page, "bob@dev") || resp.Header.Get("Content-Disposition") != "" {
			t.Errorf("GET %s with the journal closed: %d, want 503 and nothing of the data\n%s", path, resp.StatusCode, page)
		}
	}
}

// holdOne is a console.Bounds.Holding that holds the first search or
// bundle of what it is for until release is closed; entered is closed
// once it holds it.
func holdOne(what string) (hook func(string, string), entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	return func(w, who string) {
		if w != what {
			return
		}
		first := false
		once.Do(func() { first = true })
		if first {
			close(entered)
			<-release
		}
	}, entered, release
}

// A text search is bounded: a costly regular expression is refused
// before anything is read or journaled; a search stops at its bytes or
// its time and says so, showing what it found; one person runs one
// search at a time, and the console a few in all (429 beyond, nothing
// journaled).
func TestConsoleSearchBounded(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	bob := fx.finishedSSH(t, "bob", "echo needle-bob-7; echo second line")
	alice, carol := fx.browser(t), fx.browser(t)
	fx.signIn(t, alice, "alice")
	fx.signIn(t, carol, "carol")
	base := fx.ts.APIURL()
	search := func(b *http.Client, q url.Values) (int, string) {
		t.Helper()
		resp, page := get(t, b, base+"/ui/sessions?"+q.Encode())
		return resp.StatusCode, page
	}
	row := `<a href="/ui/sessions/` + bob + `">`
	needle := url.Values{"text": {"needle-bob"}}
	accessed := func() int { return len(fx.ts.events(t, recorder.EventJournalAccessed)) }

	// A costly regular expression: refused, nothing read or journaled.
	n := accessed()
	for pattern, want := range map[string]string{
		`.{0,1000}\x00`:                  "it repeats something 1000 times, and a search here repeats at most 100",
		strings.Repeat("(ab|cd)", 300):   "instructions, and a search here takes at most 1000",
		`((a|b){0,30}(c|d){0,30}){0,30}`: "instructions, and a search here takes at most 1000",
	} {
		code, page := search(alice, url.Values{"text": {pattern}, "regex": {"1"}})
		if code != http.StatusBadRequest || !strings.Contains(page, `<p id="problem">the regular expression: `) || !strings.Contains(page, want) || strings.Contains(page, row) {
			t.Errorf("regex %.40q: %d, want 400 saying %q\n%s", pattern, code, want, page)
		}
	}
	if m := accessed(); m != n {
		t.Errorf("costly regular expressions were journaled: %d leaves, then %d", n, m)
	}

	// The bytes a search scans: it stops early and says why.
	fx.ts.console.SetBounds(console.Bounds{SearchBytes: 4})
	code, page := search(alice, needle)
	if code != 200 || !strings.Contains(page, `<p id="notice">The search stopped early: it read 4 B of output and commands, as much as a search may here.`) || strings.Contains(page, row) {
		t.Errorf("a search past its bytes: %d, want 200 saying it stopped early\n%s", code, page)
	}
	wantAccessed(t, fx, "search", "alice@dev", "operator", nil)
	// Its time.
	fx.ts.console.SetBounds(console.Bounds{SearchTime: time.Nanosecond})
	if code, page := search(alice, needle); code != 200 || !strings.Contains(page, `<p id="notice">The search stopped early: it ran for 1ns, as long as a search may here.`) || strings.Contains(page, row) {
		t.Errorf("a search past its time: %d, want 200 saying it stopped early\n%s", code, page)
	}
	// Within the bounds, it finds the session and says nothing of them.
	fx.ts.console.SetBounds(console.Bounds{})
	if code, page := search(alice, needle); code != 200 || !strings.Contains(page, row) || strings.Contains(page, "stopped early") {
		t.Errorf("a search within its bounds: %d\n%s", code, page)
	}

	// One search at a time per person, and one in all here.
	hook, entered, release := holdOne("search")
	fx.ts.console.SetBounds(console.Bounds{Searches: 1, Holding: hook})
	held := getLater(alice, base+"/ui/sessions?"+needle.Encode())
	select {
	case <-entered:
	case page := <-held:
		t.Fatalf("the held search ended: %s", page)
	}
	n = accessed()
	if code, page := search(alice, needle); code != http.StatusTooManyRequests || !strings.Contains(page, "You have a search running already") || strings.Contains(page, row) {
		t.Errorf("alice's second search: %d, want 429\n%s", code, page)
	}
	if code, page := search(carol, needle); code != http.StatusTooManyRequests || !strings.Contains(page, "Too many text searches are running (the console runs at most 1 at once)") || strings.Contains(page, row) {
		t.Errorf("carol's search beside alice's: %d, want 429\n%s", code, page)
	}
	if m := accessed(); m != n {
		t.Errorf("refused searches were journaled: %d leaves, then %d", n, m)
	}
	// A list without text reads no session: it is not held back.
	if code, page := search(carol, nil); code != 200 || !strings.Contains(page, row) {
		t.Errorf("carol's list beside alice's search: %d\n%s", code, page)
	}
	close(release)
	if page := <-held; !strings.Contains(page, row) {
		t.Errorf("the held search, released:\n%s", page)
	}
	if code, page := search(carol, needle); code != 200 || !strings.Contains(page, row) {
		t.Errorf("carol's search once alice's ended: %d\n%s", code, page)
	}
}

// A session's bundle is bounded: one larger than the console hands out is
// refused whole (413, pointing to the CLI, nothing journaled), and a few
// are built at once (429 beyond).
func TestConsoleBundleBounded(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	bob := fx.finishedSSH(t, "bob", "echo bundled-9")
	alice, carol := fx.browser(t), fx.browser(t)
	fx.signIn(t, alice, "alice")
	fx.signIn(t, carol, "carol")
	u := fx.ts.APIURL() + "/ui/sessions/" + bob + "/bundle"
	exports := func() int { return len(fx.accessed(t, "export")) }

	// isBundle fails t unless page is bob's bundle, verified with the
	// journal's key, and returns the bytes its frames take.
	isBundle := func(what, page string) int64 {
		t.Helper()
		data, err := recorder.ReadBundle(strings.NewReader(page))
		if err != nil {
			t.Fatalf("%s: %v\n%.2000s", what, err, page)
		}
		if rep, err := recorder.VerifyBundle(data, fx.ts.key.Verifier); err != nil || rep.Session != bob {
			t.Fatalf("%s: %v %+v", what, err, rep)
		}
		var b recorder.Bundle
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		var frames int64
		for _, f := range b.Frames {
			frames += int64(len(f)) + 4
		}
		return frames
	}
	resp, whole := get(t, alice, u)
	if resp.StatusCode != 200 {
		t.Fatalf("the bundle: %d\n%s", resp.StatusCode, whole)
	}
	frames := isBundle("the bundle", whole)
	if frames <= 100 || frames >= int64(len(whole))-100 {
		t.Fatalf("the bundle's frames take %d bytes of %d: the bounds below do not test what they say", frames, len(whole))
	}
	// Refused when its frames alone pass the bound, and when the whole
	// does (a bundle only grows as the journal does); given when it fits.
	for _, c := range []struct {
		max  int64
		code int
	}{{100, http.StatusRequestEntityTooLarge}, {(frames + int64(len(whole))) / 2, http.StatusRequestEntityTooLarge}, {2 * int64(len(whole)), 200}} {
		fx.ts.console.SetBounds(console.Bounds{BundleBytes: c.max})
		n := exports()
		resp, page := get(t, alice, u)
		if resp.StatusCode != c.code {
			t.Errorf("bound %d: %d, want %d\n%.2000s", c.max, resp.StatusCode, c.code, page)
			continue
		}
		if c.code == 200 {
			isBundle("within the bound", page)
			continue
		}
		want := `is larger than the console hands out (` + recorder.ByteCount(c.max) + `), so none of it is sent: on the bastion&#39;s host, &#34;bastion export --format bundle ` + bob + `&#34; writes it.`
		if !strings.Contains(page, want) || resp.Header.Get("Content-Disposition") != "" || strings.Contains(page, `"frames"`) {
			t.Errorf("bound %d: the refusal does not say %q\n%s", c.max, want, page)
		}
		if m := exports(); m != n {
			t.Errorf("bound %d: a refused bundle was journaled", c.max)
		}
	}

	// One built at a time here: beyond, 429.
	hook, entered, release := holdOne("bundle")
	fx.ts.console.SetBounds(console.Bounds{Bundles: 1, Holding: hook})
	held := getLater(alice, u)
	select {
	case <-entered:
	case page := <-held:
		t.Fatalf("the held bundle ended: %s", page)
	}
	n := exports()
	if resp, page := get(t, carol, u); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(page, "Too many bundles are being built (the console builds at most 1 at once)") {
		t.Errorf("carol's bundle beside alice's: %d, want 429\n%s", resp.StatusCode, page)
	}
	if m := exports(); m != n {
		t.Errorf("a refused bundle was journaled")
	}
	close(release)
	isBundle("the held bundle, released", <-held)
	if resp, page := get(t, carol, u); resp.StatusCode != 200 {
		t.Errorf("carol's bundle once alice's ended: %d\n%s", resp.StatusCode, page)
	} else {
		isBundle("carol's bundle", page)
	}
}

// getLater gets u with b in the background; the channel gives the page,
// or the error, when the answer has come.
func getLater(b *http.Client, u string) <-chan string {
	out := make(chan string, 1)
	go func() {
		resp, err := b.Get(u)
		if err != nil {
			out <- err.Error()
			return
		}
		page, err := consoletest.ReadPage(resp)
		if err != nil {
			page = err.Error()
		}
		out <- page
	}()
	return out
}
