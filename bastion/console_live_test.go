package bastion

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/bastion/console"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/termtext"
)

// liveJSON is GET /ui/live.json as b sees it.
type liveJSONRow struct {
	ID        string `json:"id"`
	Identity  string `json:"identity"`
	Target    string `json:"target"`
	FollowURL string `json:"follow_url"`
	KillURL   string `json:"kill_url"`
}

func getLiveJSON(t *testing.T, fx *consoleFixture, b *http.Client) (int, []liveJSONRow, string) {
	t.Helper()
	resp, body := get(t, b, fx.ts.APIURL()+"/ui/live.json")
	wantSecurityHeaders(t, resp)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil, body
	}
	var d struct {
		Rows []liveJSONRow `json:"rows"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("live.json: %v\n%s", err, body)
	}
	return 200, d.Rows, body
}

// waitFile returns a shell loop that waits for path to exist.
func waitFile(path string) string {
	return "while [ ! -e '" + path + "' ]; do sleep 0.1; done"
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The live list's JSON, which the page's script reads: a session started
// with the real ssh client, with the actions each role may take; gone
// once the session ends. Someone without a console role gets nothing.
func TestConsoleLiveJSON(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	done := filepath.Join(t.TempDir(), "done")
	ssh := fx.liveSSH(t, "bob", "echo started; "+waitFile(done))
	follow, kill := "/ui/sessions/"+ssh.id+"/live", "/ui/sessions/"+ssh.id+"/kill"
	var alice *http.Client
	for _, c := range []struct{ sub, follow, kill string }{
		{"alice", follow, kill}, {"carol", follow, ""}, {"lena", "", ""},
	} {
		b := fx.browser(t)
		fx.signIn(t, b, c.sub)
		if c.sub == "alice" {
			alice = b
		}
		code, rows, body := getLiveJSON(t, fx, b)
		if code != 200 || len(rows) != 1 {
			t.Fatalf("%s: live.json %d\n%s", c.sub, code, body)
		}
		if r := rows[0]; r.ID != ssh.id || r.Identity != "bob@dev" || r.Target != "box" || r.FollowURL != c.follow || r.KillURL != c.kill {
			t.Errorf("%s: live.json row %+v, want follow %q, kill %q", c.sub, r, c.follow, c.kill)
		}
		// The page itself offers the same actions, and its script.
		resp, page := get(t, b, fx.ts.APIURL()+"/ui/")
		if resp.StatusCode != 200 || !strings.Contains(page, `<script src="/ui/static/live.js" defer></script>`) ||
			strings.Contains(page, `href="`+follow+`"`) != (c.follow != "") || strings.Contains(page, `action="`+kill+`"`) != (c.kill != "") {
			t.Errorf("%s: the live page's actions, want follow %v, kill %v:\n%s", c.sub, c.follow != "", c.kill != "", page)
		}
	}
	m := fx.browser(t)
	fx.signIn(t, m, "mallory")
	if code, _, body := getLiveJSON(t, fx, m); code != http.StatusForbidden || strings.Contains(body, "bob") || strings.Contains(body, ssh.id) {
		t.Errorf("mallory: live.json %d\n%s", code, body)
	}
	// The script is served, as JavaScript.
	if resp, js := get(t, alice, fx.ts.APIURL()+"/ui/static/live.js"); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || strings.Contains(js, "innerHTML") {
		t.Errorf("live.js: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	touch(t, done)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, rows, body := getLiveJSON(t, fx, alice)
		if len(rows) == 0 {
			if !strings.Contains(body, "(0 live)") {
				t.Errorf("live.json with no session: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ended session is still listed: %s", body)
		}
	}
}

// An sseEvent is one Server-Sent Event.
type sseEvent struct {
	name string
	data map[string]string
}

// openStream opens the follow stream of session id as b, and returns its
// response and its events, each checked to be JSON.
func openStream(t *testing.T, fx *consoleFixture, b *http.Client, id string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fx.ts.APIURL()+"/ui/sessions/"+id+"/live/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	// No overall timeout: the stream lasts as long as the session.
	resp, err := (&http.Client{Jar: b.Jar, Transport: b.Transport}).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	ch := make(chan sseEvent, 1024)
	if resp.StatusCode != 200 {
		close(ch)
		return resp, ch
	}
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
					t.Errorf("an event's data is not JSON: %q", line)
				}
			case strings.HasPrefix(line, ":"):
			default:
				t.Errorf("the stream sent %q", line)
			}
		}
	}()
	return resp, ch
}

// readUntil reads events until one named name whose text (for output,
// all the text so far) holds want; it returns the output text so far.
func readUntil(t *testing.T, ch <-chan sseEvent, text *strings.Builder, name, want string) sseEvent {
	t.Helper()
	timeout := time.After(45 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("the stream ended before a %s event with %q; output so far:\n%s", name, want, text.String())
			}
			if ev.name == "output" {
				text.WriteString(ev.data["text"])
			}
			switch {
			case ev.name == name && name == "output" && strings.Contains(text.String(), want):
				return ev
			case ev.name == name && name != "output" && strings.Contains(ev.data["detail"]+ev.data["reason"], want):
				return ev
			case ev.name == "stop" || ev.name == "end":
				t.Fatalf("a %s event %v before a %s event with %q; output:\n%s", ev.name, ev.data, name, want, text.String())
			}
		case <-timeout:
			t.Fatalf("no %s event with %q; output so far:\n%s", name, want, text.String())
		}
	}
}

// Following a session: its output as the journal recorded it, what it
// printed before the stream started and after, shown as text (escape
// sequences visible), then its end. The read is journaled as "bastion
// play --follow" journals it. Approvers and anyone else may not follow.
func TestConsoleFollow(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	dir := t.TempDir()
	next, done := filepath.Join(dir, "next"), filepath.Join(dir, "done")
	ssh := fx.liveSSH(t, "bob", "echo before-stream; "+waitFile(next)+
		`; printf 'after-stream <script>alert(1)</script><a href="javascript:alert(2)">x</a> \033[2J\033]0;pwn\007 end\n'; `+waitFile(done))

	alice := fx.browser(t)
	fx.signIn(t, alice, "alice")
	resp, page := get(t, alice, fx.ts.APIURL()+"/ui/sessions/"+ssh.id+"/live")
	wantSecurityHeaders(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(page, `<pre id="output"></pre>`) ||
		!strings.Contains(page, `data-stream="/ui/sessions/`+ssh.id+`/live/stream"`) || !strings.Contains(page, `<script src="/ui/static/follow.js" defer></script>`) ||
		!strings.Contains(page, `action="/ui/sessions/`+ssh.id+`/kill"`) {
		t.Fatalf("follow page: %d\n%s", resp.StatusCode, page)
	}
	assertInert(t, page)
	if len(fx.ts.events(t, recorder.EventJournalAccessed)) != 0 {
		t.Fatal("the page, which shows no output, journaled a read")
	}

	resp, ch := openStream(t, fx, alice, ssh.id)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	wantSecurityHeaders(t, resp)
	var text strings.Builder
	readUntil(t, ch, &text, "output", "before-stream\n")
	// The read was journaled before the first byte.
	var read recorder.Attrs
	for _, e := range fx.ts.events(t, recorder.EventJournalAccessed) {
		if e["session"] == ssh.id {
			read = e
		}
	}
	if read["action"] != "play" || read["identity"] != "alice@dev" || read["via"] != ViaConsole || read["reader.role"] != "operator" {
		t.Errorf("journal.accessed of the follow: %v", read)
	}

	// Printed after the stream started: sent as it is committed.
	touch(t, next)
	readUntil(t, ch, &text, "output", " end\n")
	want := `after-stream <script>alert(1)</script><a href="javascript:alert(2)">x</a> \x1b[2J\x1b]0;pwn\x07 end` + "\n"
	if !strings.Contains(text.String(), want) || strings.ContainsAny(text.String(), "\x1b\x07\r") {
		t.Errorf("the output as sent, want the markup as text (the script inserts it with textContent) and escapes visible, %q:\n%q", want, text.String())
	}
	touch(t, done)
	end := readUntil(t, ch, &text, "end", events.EndExited)
	if end.data["reason"] != events.EndExited {
		t.Errorf("end event: %v", end.data)
	}

	// Approvers see the list but may not follow; others see nothing.
	for _, sub := range []string{"lena", "mallory"} {
		b := fx.browser(t)
		fx.signIn(t, b, sub)
		for _, path := range []string{"/ui/sessions/" + ssh.id + "/live", "/ui/sessions/" + ssh.id + "/live/stream"} {
			resp, body := get(t, b, fx.ts.APIURL()+path)
			if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "before-stream") || strings.Contains(body, "event:") {
				t.Errorf("%s GET %s: %d, want 403 and nothing of the output\n%s", sub, path, resp.StatusCode, body)
			}
		}
	}
	// An auditor may follow, a session that has ended too: all of it,
	// then its end.
	carol := fx.browser(t)
	fx.signIn(t, carol, "carol")
	_, ch = openStream(t, fx, carol, ssh.id)
	var again strings.Builder
	readUntil(t, ch, &again, "end", events.EndExited)
	if !strings.Contains(again.String(), "before-stream\n"+want) {
		t.Errorf("carol's stream of the ended session:\n%q", again.String())
	}
	// A session the journal does not hold, and a path that names none.
	for _, id := range []string{uuid.NewString(), "nope"} {
		if resp, _ := openStream(t, fx, alice, id); resp.StatusCode != http.StatusNotFound {
			t.Errorf("stream of %s: %d, want 404", id, resp.StatusCode)
		}
	}
	var readers []string
	for _, e := range fx.ts.events(t, recorder.EventJournalAccessed) {
		readers = append(readers, e["identity"]+":"+e["action"]+":"+e["session"])
	}
	if len(readers) != 2 || readers[0] != "alice@dev:play:"+ssh.id || readers[1] != "carol@dev:play:"+ssh.id {
		t.Errorf("reads journaled: %v", readers)
	}
}

// killAs posts the kill form of session id as b, with reason, and extra
// headers; it returns the status and the page.
func killAs(t *testing.T, fx *consoleFixture, b *http.Client, id, reason string, hdr map[string]string) (int, string) {
	t.Helper()
	_, page := get(t, b, fx.ts.APIURL()+"/ui/")
	resp, page := fx.postConsole(t, b, "/ui/sessions/"+id+"/kill", url.Values{"csrf": {csrfOf(t, page)}, "reason": {reason}}, hdr)
	return resp.StatusCode, page
}

func isLive(fx *consoleFixture, id string) bool {
	for _, l := range fx.ts.LiveSessions() {
		if l.ID == id {
			return true
		}
	}
	return false
}

// Killing a session from the console: an operator's kill ends the real
// ssh client's session, which is told the reason, and the end leaf names
// the person as the CLI's kill does, with operator.verified = console.
// Auditors and approvers are refused (journaled as admin.refused), as is
// a request from another site; the reason renders as text.
func TestConsoleKill(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	ssh := fx.liveSSH(t, "bob", "echo started; exec sleep 300")

	for _, sub := range []string{"carol", "lena", "mallory"} {
		b := fx.browser(t)
		fx.signIn(t, b, sub)
		code, page := killAs(t, fx, b, ssh.id, "not mine to kill", nil)
		if code != http.StatusForbidden || sub != "mallory" && !strings.Contains(page, "Refused: only the operators the policy names may kill a session") {
			t.Errorf("%s's kill: %d, want 403\n%s", sub, code, page)
		}
		if !isLive(fx, ssh.id) {
			t.Fatalf("%s's refused kill ended the session", sub)
		}
	}
	var refused []string
	for _, e := range fx.ts.events(t, EventAdminRefused) {
		if e["action"] != "kill" || e["session"] != ssh.id || e["operator.verified"] != VerifiedConsole || e["console.session"] == "" ||
			!strings.Contains(e["error"], "not an operator") || e["operator.uid"] != "" {
			t.Errorf("admin.refused: %v", e)
		}
		refused = append(refused, e["operator"])
	}
	if strings.Join(refused, " ") != "carol@dev lena@dev" {
		t.Errorf("admin.refused names %v, want carol@dev and lena@dev (mallory has no console role: the guard refuses her)", refused)
	}

	alice := fx.browser(t)
	fx.signIn(t, alice, "alice")
	for _, hdr := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "same-site"},
	} {
		if code, page := killAs(t, fx, alice, ssh.id, "forged", hdr); code != http.StatusForbidden || !strings.Contains(page, "cannot change anything here") {
			t.Errorf("kill with %v: %d, want 403\n%s", hdr, code, page)
		}
	}
	if !isLive(fx, ssh.id) {
		t.Fatal("a cross-site kill ended the session")
	}

	// Following it, the kill's end arrives with the reason as text.
	_, ch := openStream(t, fx, alice, ssh.id)
	var text strings.Builder
	readUntil(t, ch, &text, "output", "started\n")

	reason := `<script>alert(1)</script> <a href="javascript:alert(2)">x</a> ` + "\x1b[2J\x1b]0;pwn\x07 runaway"
	code, page := killAs(t, fx, alice, ssh.id, reason, map[string]string{"Origin": fx.ts.APIURL(), "Sec-Fetch-Site": "same-origin"})
	if code != 200 || !strings.Contains(page, `<p id="notice">The session `+ssh.id+` of bob@dev was ended.</p>`) {
		t.Fatalf("alice's kill: %d\n%s", code, page)
	}
	assertInert(t, page)
	told := "the session was ended by an operator: " + termtext.OneLine(reason)
	select {
	case <-ssh.done:
	case <-time.After(endBound):
		t.Fatalf("ssh still runs after the kill; stderr %q", ssh.stderr.String())
	}
	if code := ssh.cmd.ProcessState.ExitCode(); code != 255 || !strings.Contains(ssh.stderr.String(), "bastion: "+told+"\n") {
		t.Errorf("the ssh client: exit %d, stderr %q, want %q", code, ssh.stderr.String(), told)
	}
	end := readUntil(t, ch, &text, "end", "runaway")
	if end.data["reason"] != events.EndKilled || end.data["detail"] != termtext.Line(told) || !strings.HasPrefix(end.data["by"], "alice@dev (console; console session ") {
		t.Errorf("the stream's end event: %v", end.data)
	}

	in := fx.ts.events(t, events.ConsoleSignedIn)
	var ref string
	for _, e := range in {
		if e["identity"] == "alice@dev" {
			ref = e["console.session"]
		}
	}
	var got recorder.Attrs
	for _, e := range sessionEnds(t, fx) {
		if e["session.id"] == ssh.id {
			got = e
		}
	}
	for k, v := range map[string]string{
		"reason": events.EndKilled, "kill-reason": termtext.OneLine(reason), "operator": "alice@dev", "operator.verified": VerifiedConsole,
		"operator.issuer": fx.ts.DevIssuerURL(), "console.session": ref, "operator.client": "127.0.0.1",
		"killed-by": "alice@dev (console; console session " + ref + ", client 127.0.0.1)",
	} {
		if got[k] != v {
			t.Errorf("end leaf: %s = %q, want %q (%v)", k, got[k], v, got)
		}
	}
	for _, k := range []string{"operator.uid", "operator.pid", "operator.user"} {
		if _, ok := got[k]; ok {
			t.Errorf("end leaf: %s = %q, but the console has no socket peer", k, got[k])
		}
	}
	// Gone: a second kill finds no live session.
	if code, page := killAs(t, fx, alice, ssh.id, "again", nil); code != http.StatusNotFound || !strings.Contains(page, "No live session has the ID") {
		t.Errorf("second kill: %d\n%s", code, page)
	}
}

// sessionEnds returns the end leaves of the journal's sessions, verified,
// each with its session's ID as session.id.
func sessionEnds(t *testing.T, fx *consoleFixture) []recorder.Attrs {
	t.Helper()
	log := fx.ts.log(t)
	var out []recorder.Attrs
	for _, s := range log.Sessions {
		if s.End != nil {
			a := recorder.Attrs{"session.id": uuid.UUID(s.ID).String()}
			for k, v := range s.End.Attrs {
				a[k] = v
			}
			out = append(out, a)
		}
	}
	return out
}

// A console session holds at most MaxFollowsPerSession streams; its
// streams end, saying why, when it ends.
func TestConsoleFollowBounded(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	ssh := fx.liveSSH(t, "bob", "echo started; exec sleep 300")
	alice := fx.browser(t)
	fx.signIn(t, alice, "alice")
	var streams []<-chan sseEvent
	for range console.MaxFollowsPerSession {
		resp, ch := openStream(t, fx, alice, ssh.id)
		if resp.StatusCode != 200 {
			t.Fatalf("stream: %d", resp.StatusCode)
		}
		var text strings.Builder
		readUntil(t, ch, &text, "output", "started\n")
		streams = append(streams, ch)
	}
	resp, _ := openStream(t, fx, alice, ssh.id)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("stream %d of one console session: %d, want 429", console.MaxFollowsPerSession+1, resp.StatusCode)
	}
	if n := len(fx.ts.events(t, recorder.EventJournalAccessed)); n != console.MaxFollowsPerSession {
		t.Errorf("%d reads journaled, want %d: a refused stream is no read", n, console.MaxFollowsPerSession)
	}

	// Sign-out ends them all.
	_, page := get(t, alice, fx.ts.APIURL()+"/ui/")
	_, form := formOf(t, page)
	resp, err := alice.PostForm(fx.ts.APIURL()+"/ui/logout", form)
	if err != nil {
		t.Fatal(err)
	}
	if page := readPage(t, resp); resp.StatusCode != 200 {
		t.Fatalf("sign-out: %d\n%s", resp.StatusCode, page)
	}
	for i, ch := range streams {
		var stop *sseEvent
		for ev := range ch {
			if ev.name == "stop" {
				stop = &ev
			}
		}
		if stop == nil || !strings.Contains(stop.data["message"], "your console session ended") {
			t.Errorf("stream %d after sign-out: %v, want a stop event", i, stop)
		}
	}
	if !isLive(fx, ssh.id) {
		t.Error("the followed session ended with the streams")
	}
}

// A person whose identity is blocked while they follow a session loses
// the stream (it stops, saying why) and their console session, without
// a further request of theirs: nothing the session prints afterwards
// reaches them.
func TestConsoleFollowEndsWhenRevoked(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	next := filepath.Join(t.TempDir(), "next")
	ssh := fx.liveSSH(t, "bob", "echo before; "+waitFile(next)+"; echo secret-after-block; exec sleep 300")
	alice := fx.browser(t)
	fx.signIn(t, alice, "alice")
	_, ch := openStream(t, fx, alice, ssh.id)
	var text strings.Builder
	readUntil(t, ch, &text, "output", "before\n")
	if _, err := fx.ts.Revoke(context.Background(), certauth.RevokeRequest{Identity: "alice@dev", BlockFor: time.Hour, Reason: "left the team", By: "test"}); err != nil {
		t.Fatal(err)
	}
	var stop *sseEvent
	for ev := range ch {
		if ev.name == "output" {
			text.WriteString(ev.data["text"])
		}
		if ev.name == "stop" {
			stop = &ev
		}
	}
	if stop == nil || !strings.Contains(stop.data["message"], "your console session ended") {
		t.Errorf("the stream after the block: %v, want a stop event", stop)
	}
	if n := fx.ts.ConsoleSessions(); n != 0 {
		t.Errorf("%d console sessions held after the block, want 0", n)
	}
	// The stream is over: what bob prints now goes nowhere near alice.
	touch(t, next)
	if strings.Contains(text.String(), "secret-after-block") {
		t.Errorf("output after the block reached the stream:\n%s", text.String())
	}
	if !isLive(fx, ssh.id) {
		t.Error("the followed session ended with the stream")
	}
}
