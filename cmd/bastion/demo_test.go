package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/bastion/console/consoletest"
	"github.com/bastionhq/bastion/bastion/localsshd"
)

// TestDemo runs "bastion demo" as "make demo" does, without a terminal:
// it must exit 0, take the agent's commands through the bastion with the
// real ssh client (or, without one, record them locally), and end with an
// intact journal.
func TestDemo(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	code, out, errOut := cli(context.Background(), home, "demo")
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s\n%s", code, out, errOut)
	}
	want := []string{
		"certificate for agent-1@dev, granted by role:dev",
		"key id:      agent-1@dev serial=",
		"a forged token is refused and journaled",
		"result: intact",
	}
	if _, err := exec.LookPath("ssh"); err == nil {
		want = append(want, "ssh -tt ", "@demo@127.0.0.1 (exec)", "==> bastion play ", "==> summary", "recorded:   ")
		// The exec session's, the interactive one's (its echo and its
		// output), and the replay's.
		if n := strings.Count(out, "agent: checking the payments service"); n < 5 {
			t.Errorf("the agent's output appears %d times, want the exec session's, the interactive one's and the replay's", n)
		}
		if strings.Contains(errOut, "not recorded in the journal") {
			t.Errorf("the demo's play was not journaled: %s", errOut)
		}
		if _, err := os.Stat(localsshd.Binary); err == nil || os.Getenv("CI") == "true" {
			want = append(want, "@demo-ssh@127.0.0.1", "agent: on the SSH target, as ", `and "demo-ssh" (a real sshd)`)
		}
	} else {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ssh is required in CI: %v", err)
		}
		want = append(want, "recording the scripted session")
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("demo output lacks %q:\n%s", w, out)
		}
	}
	// Again in the same home: it keeps the keys it made and runs through.
	if code, out, errOut := cli(context.Background(), home, "demo"); code != 0 || !strings.Contains(out, "using the existing journal signing key") {
		t.Fatalf("demo again exited %d:\n%s\n%s", code, out, errOut)
	}
}

// TestDemoFreshHome: without --home or $BASTION_HOME, the demo makes a
// fresh temporary home and never touches ~/.bastion, so that "bastion ca
// init" still works after it.
func TestDemoFreshHome(t *testing.T) {
	t.Parallel()
	user, tmp := t.TempDir(), t.TempDir()
	var out, errOut lockedBuffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(k string) string {
		switch k {
		case "HOME":
			return user
		case "TMPDIR":
			return tmp
		}
		return ""
	}}
	if code := run(context.Background(), []string{"demo"}, e); code != 0 {
		t.Fatalf("demo exited %d:\n%s\n%s", code, out.String(), errOut.String())
	}
	homes, _ := filepath.Glob(filepath.Join(tmp, "bastion-demo-*"))
	if len(homes) != 1 {
		t.Fatalf("homes made in $TMPDIR: %q", homes)
	}
	if !strings.Contains(out.String(), "==> keys in "+homes[0]+" (a fresh home") || !strings.Contains(out.String(), "--home "+homes[0]+" sessions list") {
		t.Errorf("demo output does not name its home %s:\n%s", homes[0], out.String())
	}
	if _, err := os.Stat(filepath.Join(homes[0], "journal.db")); err != nil {
		t.Errorf("the demo's journal: %v", err)
	}
	if _, err := os.Stat(filepath.Join(user, ".bastion")); !os.IsNotExist(err) {
		t.Errorf("~/.bastion after the demo: %v", err)
	}
	if code, _, errOut := cli(context.Background(), filepath.Join(user, ".bastion"), "ca", "init"); code != 0 {
		t.Errorf("ca init after the demo: %s", errOut)
	}
}

// TestDemoConsole: "bastion demo --keep" (what make demo suggests next)
// prints the web console's address, and signing in there through the
// development provider as the demo's staff identity works: the live
// sessions page, for an operator and auditor.
func TestDemoConsole(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	urlRe := regexp.MustCompile(`the web console: open (https://\S+/ui/) in a browser \(it has a self-signed certificate, fingerprint (\S+)\), pick "admin"`)
	issuerRe := regexp.MustCompile(`development OpenID provider at (https?://\S+) `)
	found := make(chan []string, 1)
	var out, errOut lockedBuffer
	out.onWrite = func(all string) {
		if m := urlRe.FindStringSubmatch(all); m != nil {
			if i := issuerRe.FindStringSubmatch(all); i != nil {
				select {
				case found <- []string{m[1], m[2], i[1]}:
				default:
				}
			}
		}
	}
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(k string) string {
		switch k {
		case "BASTION_HOME":
			return home
		case "HOME":
			return filepath.Join(home, "user")
		}
		return ""
	}}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"demo", "--keep"}, e) }()
	var m []string
	select {
	case m = <-found:
	case code := <-done:
		t.Fatalf("demo --keep exited %d before printing the console's address:\n%s\n%s", code, out.String(), errOut.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("demo --keep printed no console address:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "web console at "+m[0]) {
		t.Errorf("the demo's run does not name the console at %s:\n%s", m[0], out.String())
	}
	b := consoletest.Browser(m[1])
	defer b.CloseIdleConnections()
	resp, page, err := consoletest.SignIn(b, m[0], m[2], "admin")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("sign-in as admin: %d\n%s", resp.StatusCode, page)
	}
	resp, err = b.Get(m[0])
	if err != nil {
		t.Fatal(err)
	}
	page, _ = consoletest.ReadPage(resp)
	if resp.StatusCode != 200 || !strings.Contains(page, "Signed in as <span class=\"identity\">admin@dev</span> (operator, auditor)") || !strings.Contains(page, `id="live"`) {
		t.Errorf("the console after signing in as admin: %d\n%s", resp.StatusCode, page)
	}
	// Anyone else the provider vouches for is refused.
	other := consoletest.Browser(m[1])
	defer other.CloseIdleConnections()
	if resp, page, err := consoletest.SignIn(other, m[0], m[2], "agent-1"); err != nil || resp.StatusCode != 403 || !strings.Contains(page, "agent-1@dev is none of them") {
		t.Errorf("agent-1 signing in to the console: %v %v\n%s", err, resp, page)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("demo --keep exited %d after Ctrl-C:\n%s", code, errOut.String())
	}
}
