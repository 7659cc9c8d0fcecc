package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
