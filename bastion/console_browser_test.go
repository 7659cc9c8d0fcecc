package bastion

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath returns Debian's chromium; with CI=true a missing browser
// fails the test, otherwise it is skipped.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install chromium)")
	}
	t.Skip("chromium is not installed")
	return ""
}

// artefactDir is where a test keeps what a person may want to look at
// afterwards: $BASTION_TEST_ARTEFACTS if set, else a directory removed
// with the test.
func artefactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("BASTION_TEST_ARTEFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// In a real browser: sign in through the dev provider's picker page, and
// the console's live sessions page, as the browser built it, shows a
// session started with the real ssh client.
func TestConsoleBrowser(t *testing.T) {
	t.Parallel()
	browser := chromiumPath(t)
	fx := startConsole(t)
	fx.liveSSH(t, "bob", "echo started; sleep 60")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		// The API's certificate is self-signed (pinned by the CLI; a
		// person accepts it once).
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 45*time.Second)
	defer cancelTimeout()

	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("browser, %s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("browser, text of %s: %v", sel, err)
		}
		return s
	}
	run("open the console", chromedp.Navigate(fx.ts.APIURL()+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#sub")))
	picker := text("body")
	run("pick alice", chromedp.SetValue(chromedp.CSS("#sub"), "alice"), chromedp.Click(chromedp.CSS(`button[value="allow"]`)))
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS("#live")))
	wcancel()
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("browser: no live sessions page after sign-in: %v; at %s:\n%s", err, loc, body)
	}
	location, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	who, live := text("#who"), text("#live")
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(picker, "Development sign-in") || !strings.Contains(picker, DevWebClientID) {
		t.Errorf("the picker page as rendered: %q", picker)
	}
	if location != fx.ts.APIURL()+"/ui/" {
		t.Errorf("signed in at %s, want %s/ui/", location, fx.ts.APIURL())
	}
	if !strings.Contains(who, "Signed in as alice@dev (operator)") {
		t.Errorf("#who as rendered: %q", who)
	}
	for _, want := range []string{"bob@dev", "box", currentLogin(t), "role:users"} {
		if !strings.Contains(live, want) {
			t.Errorf("#live as rendered lacks %q: %q", want, live)
		}
	}
	if _, err := png.Decode(bytes.NewReader(shot)); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	path := filepath.Join(artefactDir(t), "console-live.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the live sessions page: %s", path)

	// Sign-out through the page's form ends the session.
	run("sign out", chromedp.Click(chromedp.CSS("header form button")), chromedp.WaitVisible(chromedp.CSS("#problem")))
	title := text("#problem")
	if title != "You are signed out." {
		t.Errorf("after sign-out: %q", title)
	}
	if out := fx.ts.events(t, "console.signed_out"); len(out) != 1 || out[0]["identity"] != "alice@dev" {
		t.Errorf("console.signed_out: %v", out)
	}
}
