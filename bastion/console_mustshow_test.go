package bastion

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder/events"
)

// The console's whole round in one real browser, as one person would go
// through it: lena, an approver (and an operator: killing a session and
// the evidence report are operators' and auditors' work), signs in
// through the development provider; approves bob's pending grant and sees
// his session start in the live view; watches its output arrive live;
// replays it after it ends; kills another session; downloads the
// evidence report. Each step's page is asserted as the browser rendered
// it, each step's journal leaf is asserted, and each step keeps a
// screenshot (console-step-N-….png in $BASTION_TEST_ARTEFACTS).
func TestConsoleMustShow(t *testing.T) {
	t.Parallel()
	config := strings.Replace(consoleConfig, `operators = ["ops"]`, `operators = ["ops", "leads"]`, 1)
	if config == consoleConfig {
		t.Fatal("the configuration names no operators to change")
	}
	fx := startConsoleConfig(t, config)
	api := fx.ts.APIURL()
	if !playerBuiltHere(t, fx.browser(t), api) && os.Getenv("CI") == "true" {
		t.Fatal(`the console's player is not built in: run "make player" (node and npm) before the tests`)
	}
	ctx := context.Background()
	dir := t.TempDir()
	next, finish := filepath.Join(dir, "next"), filepath.Join(dir, "finish")

	// Another session, the one to kill in step 5, and bob's request.
	other := fx.liveSSH(t, "dave", "echo dave-started; exec sleep 300")
	g, err := fx.ts.client.RequestGrant(ctx, fx.devToken(t, "bob"), certauth.GrantRequest{
		Target: "box", Login: "deploy", Duration: "10m", Reason: "rotate the replication slot", Ticket: "OPS-42",
	})
	if err != nil {
		t.Fatal(err)
	}
	br := newBrowser(t, 3*time.Minute) // after the server: stopped before it

	// 1. Sign in through the development provider as an approver.
	br.signIn(api, "lena")
	if who := br.text("#who"); !strings.Contains(who, "Signed in as lena@dev (operator, approver)") {
		t.Errorf("step 1: #who as rendered: %q", who)
	}
	br.shot("console-step-1-signed-in.png")
	in := fx.ts.events(t, events.ConsoleSignedIn)
	if len(in) != 1 || in[0]["identity"] != "lena@dev" || in[0]["console.roles"] != "operator,approver" || in[0]["console.session"] == "" {
		t.Errorf("step 1: console.signed_in: %v", in)
	}

	// 2. Approve the pending grant; the agent's session starts under it
	// and appears in the live view.
	row := `#pending tr[data-grant="` + g.ID + `"]`
	br.run("step 2: the grants inbox", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/grants"]`)), chromedp.WaitVisible(chromedp.CSS(row)))
	if got := br.text(row); !strings.Contains(got, "bob@dev") || !strings.Contains(got, "rotate the replication slot") || !strings.Contains(got, "OPS-42") {
		t.Errorf("step 2: the pending row as rendered: %q", got)
	}
	br.run("step 2: approve",
		chromedp.SendKeys(chromedp.CSS(row+` input[name="comment"]`), "ok for OPS-42"),
		chromedp.Click(chromedp.CSS(row+` button.approve`)),
		chromedp.WaitVisible(chromedp.CSS(`#decided tr[data-grant="`+g.ID+`"]`)))
	if notice := br.text("#notice"); !strings.Contains(notice, "You approved grant "+g.ID) {
		t.Errorf("step 2: #notice: %q", notice)
	}
	ap := grantEvents(t, fx, events.GrantApproved, g.ID)
	if len(ap) != 1 || ap[0]["by"] != "lena@dev" || ap[0]["comment"] != "ok for OPS-42" || ap[0]["via"] != "console" || ap[0]["console.session"] != in[0]["console.session"] {
		t.Errorf("step 2: grant.approved: %v", ap)
	}
	br.run("step 2: the live view", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/"]`)), chromedp.WaitVisible(chromedp.CSS("#live")))
	agent := fx.ssh(t, "bob", "deploy", "echo agent-started; "+waitFile(next)+"; echo agent-output-after-follow; "+waitFile(finish)+"; echo agent-done")
	var id string
	for deadline := time.Now().Add(20 * time.Second); id == ""; time.Sleep(20 * time.Millisecond) {
		for _, l := range fx.ts.LiveSessions() {
			if l.Identity == "bob@dev" && l.Grant == g.ID {
				id = l.ID
			}
		}
		if id == "" && time.Now().After(deadline) {
			t.Fatalf("step 2: no live session of bob under grant %s; ssh says: %s%s", g.ID, agent.stdout.String(), agent.stderr.String())
		}
	}
	// The page's script shows it without a reload.
	br.until("step 2: the agent's session appears in the live view", `document.getElementById("live").textContent.includes("`+id+`")`)
	liveRow := br.text(`#live tr:has(a.follow[href="/ui/sessions/` + id + `/live"])`)
	if !strings.Contains(liveRow, "bob@dev") || !strings.Contains(liveRow, "deploy") || !strings.Contains(liveRow, "grant:"+g.ID) {
		t.Errorf("step 2: the live row as rendered: %q", liveRow)
	}
	br.shot("console-step-2-approved-live.png")

	// 3. Watch its output arrive live: a line the agent prints only
	// after the page is open.
	br.run("step 3: follow", chromedp.Click(chromedp.CSS(`a.follow[href="/ui/sessions/`+id+`/live"]`)), chromedp.WaitVisible(chromedp.CSS("#output")))
	br.until("step 3: the output so far", `document.getElementById("output").textContent.includes("agent-started\n")`)
	touch(t, next)
	br.until("step 3: output printed after the page opened", `document.getElementById("output").textContent.includes("agent-output-after-follow\n")`)
	br.shot("console-step-3-following.png")
	wantAccessed(t, fx, "play", "lena@dev", "operator", map[string]string{"session": id})

	// 4. Replay it after it ends.
	touch(t, finish)
	select {
	case <-agent.done:
	case <-time.After(30 * time.Second):
		t.Fatal("step 4: the agent's session did not end")
	}
	br.until("step 4: the follow page says the session ended", `document.body.dataset.ended === "true"`)
	if status := br.text("#status"); !strings.Contains(status, "The session ended") {
		t.Errorf("step 4: #status: %q", status)
	}
	br.run("step 4: the session's page", chromedp.Navigate(api+"/ui/sessions/"+id), chromedp.WaitVisible(chromedp.CSS("#details")))
	details := br.text("#details")
	if !strings.Contains(details, "bob@dev") || !strings.Contains(details, "Grant\n"+g.ID) {
		t.Errorf("step 4: #details as rendered: %q", details)
	}
	wantAccessed(t, fx, "show", "lena@dev", "operator", map[string]string{"session": id})
	if playerBuiltHere(t, fx.browser(t), api) {
		br.run("step 4: the player", chromedp.WaitVisible(chromedp.CSS("#player .ap-term")), chromedp.Click(chromedp.CSS("#player .ap-overlay-start")))
		br.until("step 4: the replay shows the output", `document.querySelector("#player .ap-term").textContent.includes("agent-output-after-follow") && document.querySelector("#player .ap-term").textContent.includes("agent-done")`)
		wantAccessed(t, fx, "play", "lena@dev", "operator", map[string]string{"session": id})
	} else {
		t.Log(`step 4: the player is not built in ("make player"): the page says so`)
		if got := br.text("#no-player"); !strings.Contains(got, "needs the console's full build") {
			t.Errorf("step 4: without the player, #no-player: %q", got)
		}
	}
	br.shot("console-step-4-replay.png")

	// 5. Kill another session.
	br.run("step 5: the live view", chromedp.Navigate(api+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#live")))
	form := `form.kill[action="/ui/sessions/` + other.id + `/kill"]`
	br.run("step 5: kill dave's session", chromedp.SendKeys(chromedp.CSS(form+` input[name="reason"]`), "not under a change ticket"),
		chromedp.Click(chromedp.CSS(form+" button")), chromedp.WaitVisible(chromedp.CSS("#notice")))
	if notice := br.text("#notice"); notice != "The session "+other.id+" of dave@dev was ended." {
		t.Errorf("step 5: #notice: %q", notice)
	}
	br.until("step 5: the killed session leaves the live view", `!document.getElementById("live").textContent.includes("`+other.id+`")`)
	br.shot("console-step-5-killed.png")
	select {
	case <-other.done:
	case <-time.After(endBound):
		t.Fatal("step 5: dave's ssh still runs after the kill")
	}
	if !strings.Contains(other.stderr.String(), "the session was ended by an operator: not under a change ticket") {
		t.Errorf("step 5: dave's ssh was told: %q", other.stderr.String())
	}
	var end map[string]string
	for _, e := range sessionEnds(t, fx) {
		if e["session.id"] == other.id {
			end = e
		}
	}
	if end == nil || end["reason"] != "killed" || !strings.HasPrefix(end["killed-by"], "lena@dev (console; ") || end["operator"] != "lena@dev" ||
		end["operator.verified"] != VerifiedConsole || end["console.session"] != in[0]["console.session"] {
		t.Errorf("step 5: the killed session's end leaf: %v", end)
	}

	// 6. Download the evidence report.
	br.run("step 6: the evidence page", chromedp.Click(chromedp.CSS(`#nav a[href="/ui/evidence"]`)), chromedp.WaitVisible(chromedp.CSS("#verdict")))
	if verdict := br.text("#verdict"); !strings.HasPrefix(verdict, "OK") {
		t.Errorf("step 6: #verdict: %q", verdict)
	}
	br.run("step 6: make the report",
		chromedp.Click(chromedp.CSS(`#report-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#download")))
	if made := br.text("#made"); !strings.Contains(made, "Recorded at leaf") {
		t.Errorf("step 6: #made: %q", made)
	}
	data := br.download("step 6: download", "#download")
	br.shot("console-step-6-evidence.png")
	leaf := fx.checkReportZip(t, data)
	if leaf["identity"] != "lena@dev" || leaf["via"] != ViaConsole || leaf["reader.role"] != "operator" {
		t.Errorf("step 6: the report's evidence.generated leaf: %v", leaf)
	}
}
