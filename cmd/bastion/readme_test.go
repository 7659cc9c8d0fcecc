package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/bastionhq/bastion/bastion/sshdtest"
)

// The README's Usage section is a script that runs: testdata/readme/usage.txtar
// holds its commands, in order, as "do" lines, beside the steps that check
// what they printed and capture what later steps need. TestReadmeUsage runs
// it against a fresh home and a fresh $HOME, on loopback; TestReadmeMatches
// checks that the README's "$ " lines are the script's "do" lines, in order,
// placeholders aside, so that the README and the behaviour cannot drift apart.

const (
	readmeFile   = "../../README.md"
	readmeScript = "testdata/readme/usage.txtar"
)

// readmeCommands are the "$ " lines of the README's Usage section, with
// continuation lines ("\" at the end) joined.
func readmeCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Usage\n")
	if start < 0 {
		t.Fatal("README.md has no \"## Usage\" section")
	}
	text = text[start+1:]
	if end := strings.Index(text[3:], "\n## "); end >= 0 {
		text = text[:end+3]
	}
	var out []string
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		cmd, ok := strings.CutPrefix(l, "$ ")
		if !ok {
			continue
		}
		for strings.HasSuffix(cmd, "\\") && i+1 < len(lines) {
			i++
			cmd = strings.TrimSuffix(cmd, "\\") + " " + strings.TrimSpace(lines[i])
		}
		out = append(out, strings.Join(strings.Fields(cmd), " "))
	}
	return out
}

// scriptCommands are the script's "do" and "! do" lines, without them.
func scriptCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(readmeScript)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "-- ") {
			break // the archive's files
		}
		l = strings.TrimPrefix(strings.TrimSpace(l), "! ") // a command that must fail
		if cmd, ok := strings.CutPrefix(l, "do "); ok {
			out = append(out, strings.Join(strings.Fields(cmd), " "))
		}
	}
	return out
}

// placeholder is a README word that stands for a value the script
// captures: it holds "…", or is written <LIKE-THIS>.
var placeholder = regexp.MustCompile(`…|^<[^>]+>$`)

// sameCommand reports whether a README line and a script line are the same
// command: word for word, except that a README placeholder matches a
// script word that holds a variable ($NAME), and a README path ~/P is the
// script's $HOME/P.
func sameCommand(readme, script string) bool {
	rw, sw := strings.Fields(readme), strings.Fields(script)
	if len(rw) != len(sw) {
		return false
	}
	for i := range rw {
		switch {
		case rw[i] == sw[i]:
		case strings.HasPrefix(rw[i], "~/") && sw[i] == "$HOME/"+rw[i][2:]:
		case placeholder.MatchString(rw[i]) && strings.Contains(sw[i], "$"):
		default:
			return false
		}
	}
	return true
}

// TestReadmeMatches: the README's Usage commands are the script's.
func TestReadmeMatches(t *testing.T) {
	t.Parallel()
	readme, script := readmeCommands(t), scriptCommands(t)
	if len(readme) == 0 {
		t.Fatal("the README's Usage section has no \"$ \" lines")
	}
	for i := 0; i < max(len(readme), len(script)); i++ {
		var r, s string
		if i < len(readme) {
			r = readme[i]
		}
		if i < len(script) {
			s = script[i]
		}
		if !sameCommand(r, s) {
			t.Fatalf("command %d differs:\n  README:  %s\n  script:  %s\n(README.md's Usage and %s must list the same commands in the same order)", i+1, r, s, readmeScript)
		}
	}
}

// TestReadmeUsage runs the README's Usage section.
func TestReadmeUsage(t *testing.T) {
	t.Parallel()
	sshBin := sshdtest.Need(t, "ssh")
	login := "root"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Files:               []string{readmeScript},
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			// A fresh home, and a fresh $HOME for ~/.ssh and the client
			// profile; the repository's files where the README names
			// them (docs/examples/…), and ./bin/bastion is this build.
			home := filepath.Join(e.WorkDir, "user")
			if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
				return err
			}
			e.Setenv("HOME", home)
			e.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
			e.Setenv("BASTION_HOME", "")
			e.Setenv("USER", login)
			e.Setenv("REPO", repo)
			if err := os.Symlink(filepath.Join(repo, "docs"), filepath.Join(e.WorkDir, "docs")); err != nil {
				return err
			}
			// OpenSSH reads ~ from the password database, not $HOME: an ssh
			// on PATH that points it at the fresh $HOME.
			bin := filepath.Join(e.WorkDir, "bin")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if err := os.Symlink(self, filepath.Join(bin, "bastion")); err != nil {
				return err
			}
			// A configuration file, so that options a caller gives (the
			// demo's own known_hosts) still win.
			config := filepath.Join(home, ".ssh", "config")
			if err := os.WriteFile(config, []byte(fmt.Sprintf("Host *\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  BatchMode yes\n  IdentitiesOnly yes\n", filepath.Join(home, ".ssh", "known_hosts"))), 0o600); err != nil {
				return err
			}
			wrapper := fmt.Sprintf("#!/bin/sh\nexec %s -F %s \"$@\"\n", sshBin, config)
			if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(wrapper), 0o755); err != nil {
				return err
			}
			e.Setenv("PATH", bin+string(os.PathListSeparator)+e.Getenv("PATH"))
			e.Values[backgroundsKey{}] = &[]background{}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"do":          cmdDo,
			"banner":      cmdBanner,
			"capture":     cmdCapture,
			"exits":       cmdExits,
			"stopserve":   cmdStop,
			"livesession": cmdLiveSession,
		},
	})
}

// background is a process a "do … &" line started.
type background struct {
	cmd  *exec.Cmd
	out  string        // the file its stdout and stderr go to
	done chan struct{} // closed once it has ended
}

func (b background) running() bool {
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// cmdDo runs a README command: "./bin/bastion …" is this build, "ssh" the
// real client (through the wrapper), "> FILE" writes its stdout to FILE,
// and a trailing "&" runs it in the background until the script ends.
func cmdDo(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: do COMMAND [ARGS...] [> FILE] [&]")
	}
	bg := args[len(args)-1] == "&"
	if bg {
		args = args[:len(args)-1]
	}
	var redirect string
	if n := len(args); n >= 2 && args[n-2] == ">" {
		redirect, args = args[n-1], args[:n-2]
	}
	if args[0] == "./bin/bastion" {
		args[0] = "bastion"
	}
	if bg {
		if neg || redirect != "" {
			ts.Fatalf("do … &: no ! and no > FILE")
		}
		startBackground(ts, args)
		return
	}
	err := ts.Exec(args[0], args[1:]...)
	if redirect != "" {
		ts.Check(os.WriteFile(ts.MkAbs(redirect), []byte(ts.ReadFile("stdout")), 0o600))
	}
	switch {
	case err != nil && !neg:
		ts.Fatalf("%s: %v", strings.Join(args, " "), err)
	case err == nil && neg:
		ts.Fatalf("%s: unexpected success", strings.Join(args, " "))
	}
}

func startBackground(ts *testscript.TestScript, args []string) {
	// PATH as the script sees it: its bastion and its ssh first.
	path := ""
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		if p := filepath.Join(dir, args[0]); isExecutable(p) {
			path = p
			break
		}
	}
	if path == "" {
		ts.Fatalf("%s: not found on the script's PATH", args[0])
	}
	out := ts.MkAbs(fmt.Sprintf("background-%d.log", time.Now().UnixNano()))
	f, err := os.Create(out)
	ts.Check(err)
	cmd := exec.Command(path, args[1:]...)
	cmd.Dir = ts.MkAbs(".")
	cmd.Env = scriptEnv(ts)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ts.Check(cmd.Start())
	f.Close()
	bg := background{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { cmd.Wait(); close(bg.done) }()
	backgrounds := ts.Value(backgroundsKey{})
	list, _ := backgrounds.(*[]background)
	if list == nil {
		ts.Fatalf("no background list")
	}
	*list = append(*list, bg)
	ts.Defer(func() { stopProcess(bg) })
}

// stopProcess ends a background process: SIGTERM, and SIGKILL after 30 s.
func stopProcess(bg background) {
	if !bg.running() {
		return
	}
	bg.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-bg.done:
	case <-time.After(30 * time.Second):
		bg.cmd.Process.Kill()
		<-bg.done
	}
}

// cmdStop stops the latest background "bastion serve" (the README says
// kill %1) and waits for it to end.
func cmdStop(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: stopserve")
	}
	list, _ := ts.Value(backgroundsKey{}).(*[]background)
	for i := len(*list) - 1; i >= 0; i-- {
		bg := (*list)[i]
		if filepath.Base(bg.cmd.Path) == "bastion" && slices.Contains(bg.cmd.Args, "serve") && bg.running() {
			stopProcess(bg)
			return
		}
	}
	ts.Fatalf("stopserve: no bastion serve is running")
}

// cmdLiveSession waits up to 15 s for a live session and sets VAR to its ID.
func cmdLiveSession(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: livesession VAR")
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ts.Check(ts.Exec("bastion", "sessions", "list", "--state", "live", "--json"))
		var live []struct {
			ID string `json:"id"`
		}
		ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &live))
		if len(live) > 0 {
			ts.Setenv(args[0], live[0].ID)
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("livesession: no live session")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type backgroundsKey struct{}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// scriptEnv is the environment the script's commands run in.
func scriptEnv(ts *testscript.TestScript) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "XDG_CONFIG_HOME", "BASTION_HOME", "USER", "TMPDIR", "WORK", "REPO"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	return env
}

// cmdBanner waits up to 30 s for a line of the latest background
// process's output to match REGEX, and sets VAR to its first group.
func cmdBanner(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: banner VAR REGEX")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	list, _ := ts.Value(backgroundsKey{}).(*[]background)
	if list == nil || len(*list) == 0 {
		ts.Fatalf("banner: no background process")
	}
	bg := (*list)[len(*list)-1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := os.Open(bg.out)
		ts.Check(err)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				f.Close()
				v := m[0]
				if len(m) > 1 {
					v = m[1]
				}
				ts.Setenv(args[0], v)
				return
			}
		}
		f.Close()
		if !bg.running() || time.Now().After(deadline) {
			b, _ := os.ReadFile(bg.out)
			ts.Fatalf("banner: no line matches %q:\n%s", args[1], b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cmdCapture sets VAR to a field of the JSON the last command printed:
// PATH is dot-separated keys and [N] indexes, like "id" or "[0].id".
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture VAR PATH")
	}
	var v any
	ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &v))
	for _, part := range strings.FieldsFunc(strings.ReplaceAll(args[1], "[", ".["), func(r rune) bool { return r == '.' }) {
		if idx, ok := strings.CutPrefix(part, "["); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			ts.Check(err)
			list, _ := v.([]any)
			if n < 0 || n >= len(list) {
				ts.Fatalf("capture: no element %d in %v", n, v)
			}
			v = list[n]
			continue
		}
		m, _ := v.(map[string]any)
		if m == nil {
			ts.Fatalf("capture: no key %q in %v", part, v)
		}
		v = m[part]
	}
	switch x := v.(type) {
	case string:
		ts.Setenv(args[0], x)
	case float64:
		ts.Setenv(args[0], strconv.FormatFloat(x, 'f', -1, 64))
	default:
		ts.Fatalf("capture: %s is %T, not a string or a number", args[1], v)
	}
}
