// Package witnesstest runs litewitness, a C2SP tlog-witness nobody here
// wrote (filippo.io/torchwood/cmd/litewitness, with witnessctl to register
// logs), on a loopback port for tests, with its key in an ssh-agent of the
// test's own. A missing litewitness, witnessctl, ssh-agent, ssh-add or
// ssh-keygen fails the test in CI and skips it elsewhere.
//
// The binaries are found through $LITEWITNESS and $WITNESSCTL, then $PATH,
// then the Go bin directory; "make test" installs them.
package witnesstest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bastionhq/bastion/bastion/sshdtest"
)

// Litewitness is a running (or stopped) litewitness.
type Litewitness struct {
	// URL is its submission prefix; VKey its cosignature verifier key;
	// Name its name; DB its SQLite state.
	URL, VKey, Name, DB string

	t      testing.TB
	bin    string
	agent  string // the ssh-agent socket
	fp     string // the key's SSH fingerprint
	listen string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  strings.Builder
}

// need finds a tool: the environment variable env, $PATH, or the Go bin
// directory.
func need(t testing.TB, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		dirs := []string{}
		if len(lines) > 0 && lines[0] != "" {
			dirs = append(dirs, lines[0])
		}
		if len(lines) > 1 {
			for _, gp := range filepath.SplitList(lines[1]) {
				dirs = append(dirs, filepath.Join(gp, "bin"))
			}
		}
		for _, d := range dirs {
			if p := filepath.Join(d, name); isExec(p) {
				return p
			}
		}
	}
	msg := fmt.Sprintf("%s not found ($%s, $PATH, the Go bin directory): go install filippo.io/torchwood/cmd/%s@v0.6.1", name, env, name)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (required in CI)")
	}
	t.Skip(msg)
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Start starts a litewitness named name in a directory of the test, that
// knows the logs of the given verifier keys (signed-note vkeys; the origin
// is each key's name), and stops it when the test ends.
func Start(t testing.TB, name string, logKeys ...string) *Litewitness {
	t.Helper()
	lw := need(t, "litewitness", "LITEWITNESS")
	ctl := need(t, "witnessctl", "WITNESSCTL")
	agentBin, addBin, keygen := sshdtest.Need(t, "ssh-agent"), sshdtest.Need(t, "ssh-add"), sshdtest.Need(t, "ssh-keygen")
	dir, err := os.MkdirTemp("", "litewitness") // short: a socket path is at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	w := &Litewitness{t: t, bin: lw, Name: name, DB: filepath.Join(dir, "litewitness.db"), agent: filepath.Join(dir, "agent.sock")}

	// Its own ssh-agent, in the foreground, holding its key alone.
	agent := exec.Command(agentBin, "-D", "-a", w.agent)
	agent.Stdout, agent.Stderr = io.Discard, io.Discard
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	key := filepath.Join(dir, "witness_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "litewitness", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		add := exec.Command(addBin, key)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+w.agent)
		out, err := add.CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-add to the witness's agent: %v: %s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := exec.Command(keygen, "-l", "-E", "sha256", "-f", key+".pub").Output()
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v", err)
	}
	if f := strings.Fields(string(out)); len(f) > 1 {
		w.fp = f[1]
	} else {
		t.Fatalf("ssh-keygen -l printed %q", out)
	}

	// Its logs, registered the way its operator does.
	for _, k := range logKeys {
		origin, _, _ := strings.Cut(k, "+")
		for _, args := range [][]string{{"add-log", "-db", w.DB, "-origin", origin}, {"add-key", "-db", w.DB, "-origin", origin, "-key", k}} {
			if out, err := exec.Command(ctl, args...).CombinedOutput(); err != nil && !strings.Contains(string(out), "already") {
				t.Fatalf("witnessctl %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.listen = ln.Addr().String()
	ln.Close()
	w.URL = "http://" + w.listen
	w.Start()
	t.Cleanup(w.Stop)
	return w
}

var vkeyLine = regexp.MustCompile(`vkey=(\S+)`)

// Start starts the witness again after Stop, with the same key, state and
// address.
func (w *Litewitness) Start() {
	w.t.Helper()
	w.mu.Lock()
	running := w.cmd != nil
	w.mu.Unlock()
	if running {
		return
	}
	cmd := exec.Command(w.bin, "-db", w.DB, "-name", w.Name, "-key", w.fp, "-ssh-agent", w.agent, "-listen", w.listen)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.cmd, w.done = cmd, make(chan struct{})
	w.mu.Unlock()
	vkey := make(chan string, 1)
	go func(done chan struct{}) {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			w.mu.Lock()
			w.log.WriteString(sc.Text() + "\n")
			w.mu.Unlock()
			if m := vkeyLine.FindStringSubmatch(sc.Text()); m != nil && !sent {
				vkey <- m[1]
				sent = true
			}
		}
		cmd.Wait()
	}(w.done)
	select {
	case k := <-vkey:
		if w.VKey != "" && k != w.VKey {
			w.t.Fatalf("litewitness came back with key %s, not %s", k, w.VKey)
		}
		w.VKey = k
	case <-time.After(15 * time.Second):
		w.t.Fatalf("litewitness printed no verifier key:\n%s", w.Log())
	}
	// Listening once it answers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", w.listen, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("litewitness does not listen on %s:\n%s", w.listen, w.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the witness; Start starts it again.
func (w *Litewitness) Stop() {
	w.mu.Lock()
	cmd, done := w.cmd, w.done
	w.cmd = nil
	w.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Log is what the witness wrote to stderr so far.
func (w *Litewitness) Log() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.String()
}

// Latest is the size the witness holds for origin, read from its state
// with witnessctl list-logs; -1 when it does not know the origin.
func (w *Litewitness) Latest(origin string) int64 {
	w.t.Helper()
	ctl := need(w.t, "witnessctl", "WITNESSCTL")
	out, err := exec.Command(ctl, "list-logs", "-db", w.DB).Output()
	if err != nil {
		w.t.Fatalf("witnessctl list-logs: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, fmt.Sprintf("%q", origin)) {
			continue
		}
		if m := regexp.MustCompile(`"size":(\d+)`).FindStringSubmatch(line); m != nil {
			var n int64
			fmt.Sscan(m[1], &n)
			return n
		}
	}
	return -1
}
