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

	cdpbrowser "github.com/chromedp/cdproto/browser"
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

// A browser is headless chromium driven by chromedp, for one test: its
// helpers fail the test with what the page said.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// newBrowser starts chromium for t (a fresh profile, the API's
// self-signed certificate accepted as a person accepts it once), for at
// most limit; it is stopped when the test ends, before whatever the test
// started earlier (start the server first: its shutdown waits for the
// browser's connections).
func newBrowser(t *testing.T, limit time.Duration) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, limit)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	return &browser{t: t, ctx: ctx}
}

// body is the page's rendered text, for failure messages.
func (b *browser) body() string {
	s, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("body")))
	return s
}

// run runs steps, failing the test with what the page says if one fails.
func (b *browser) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		b.t.Fatalf("browser, %s: %v; at %s the page says:\n%s", what, err, loc, b.body())
	}
}

// text is the rendered text of the first element sel matches.
func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser, text of %s: %v; the page says:\n%s", sel, err, b.body())
	}
	return s
}

// until waits, for at most 30 seconds, for a JavaScript condition to hold.
// A page that navigates meanwhile (a form's answer loading) is looked at
// again once it has.
func (b *browser) until(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		wctx, wcancel := context.WithDeadline(b.ctx, deadline)
		_, err := chromedp.Run(wctx, chromedp.Poll[bool](expr))
		wcancel()
		switch {
		case err == nil:
			return
		case time.Now().After(deadline) || b.ctx.Err() != nil:
			b.t.Fatalf("browser, %s: %v; the page says:\n%s", what, err, b.body())
		}
		time.Sleep(50 * time.Millisecond) // navigated: look again
	}
}

// shot keeps a screenshot of the whole page as name in the test's
// artefacts.
func (b *browser) shot(name string) {
	b.t.Helper()
	png1, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(png1)); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(artefactDir(b.t), name)
	if err := os.WriteFile(path, png1, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// download clicks the link sel and returns the file the browser saved.
func (b *browser) download(what, sel string) []byte {
	b.t.Helper()
	dir := b.t.TempDir()
	progress := chromedp.Events(b.ctx, cdpbrowser.DownloadProgress)
	b.run(what,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			on := true
			_, err := chromedp.Call(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
				Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &on,
			})
			return err
		}),
		chromedp.Click(chromedp.CSS(sel)))
	for ev, err := range progress {
		if err != nil {
			b.t.Fatalf("browser, %s: waiting for the download: %v", what, err)
		}
		switch ev.State {
		case cdpbrowser.DownloadProgressStateCanceled:
			b.t.Fatalf("browser, %s: the download was canceled", what)
		case cdpbrowser.DownloadProgressStateCompleted:
			data, err := os.ReadFile(filepath.Join(dir, ev.GUID))
			if err != nil {
				b.t.Fatal(err)
			}
			return data
		}
	}
	b.t.Fatalf("browser, %s: no download", what)
	return nil
}

// signIn signs in to the console at api as the dev identity sub, through
// the development provider's picker page, and waits for the live page.
func (b *browser) signIn(api, sub string) {
	b.t.Helper()
	b.run("sign in as "+sub, chromedp.Navigate(api+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#sub")),
		chromedp.SetValue(chromedp.CSS("#sub"), sub), chromedp.Click(chromedp.CSS(`button[value="allow"]`)))
	wctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS("#who"))); err != nil {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		b.t.Fatalf("browser: not signed in as %s: %v; at %s:\n%s", sub, err, loc, b.body())
	}
}

// In a real browser: sign in through the dev provider's picker page, and
// the console's live sessions page, as the browser built it, shows a
// session started with the real ssh client.
func TestConsoleBrowser(t *testing.T) {
	t.Parallel()
	fx := startConsole(t)
	br := newBrowser(t, 45*time.Second) // after the server: stopped before it
	fx.liveSSH(t, "bob", "echo started; sleep 60")

	br.run("open the console", chromedp.Navigate(fx.ts.APIURL()+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#sub")))
	picker := br.text("body")
	br.signIn(fx.ts.APIURL(), "alice")
	br.run("the live page", chromedp.WaitVisible(chromedp.CSS("#live")))
	location, err := chromedp.Run(br.ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	who, live := br.text("#who"), br.text("#live")
	br.shot("console-live.png")
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
	// Sign-out through the page's form ends the session.
	br.run("sign out", chromedp.Click(chromedp.CSS("header form button")), chromedp.WaitVisible(chromedp.CSS("#problem")))
	title := br.text("#problem")
	if title != "You are signed out." {
		t.Errorf("after sign-out: %q", title)
	}
	if out := fx.ts.events(t, "console.signed_out"); len(out) != 1 || out[0]["identity"] != "alice@dev" {
		t.Errorf("console.signed_out: %v", out)
	}
}
