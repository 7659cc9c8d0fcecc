// Package sshdtest runs a private OpenSSH server on a loopback port for
// tests and benchmarks: /usr/sbin/sshd with its own host key and
// configuration, stopped when the test ends.
package sshdtest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Need finds a tool: in CI (CI=true) a missing one fails the test,
// elsewhere it skips it.
func Need(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// SSHD is a running private sshd.
type SSHD struct {
	Addr, Port string
	Dir        string
	// HostKey is the path of its ed25519 host key (HostKey+".pub" is the
	// public key).
	HostKey string
	// Output is what sshd has logged so far (-e: to its stderr).
	Output *Buffer
	cmd    *exec.Cmd
}

// Start starts /usr/sbin/sshd on 127.0.0.1 with config lines first (sshd
// takes the first value of a keyword, so they override the defaults that
// follow: public key authentication only, UsePAM no, StrictModes no).
func Start(t testing.TB, config ...string) *SSHD {
	t.Helper()
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sshd is required in CI: %v", err)
		}
		t.Skipf("sshd not installed: %v", err)
	}
	keygen := Need(t, "ssh-keygen")
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil && os.Getuid() == 0 {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	lines := append(append([]string{}, config...),
		"ListenAddress "+addr,
		"HostKey "+hostKey,
		"PidFile "+filepath.Join(dir, "sshd.pid"),
		"UsePAM no",
		"StrictModes no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"AuthorizedKeysFile none",
		"LogLevel VERBOSE",
		"SetEnv SHLVL=1",
	)
	cfg := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &SSHD{Addr: addr, Port: port, Dir: dir, HostKey: hostKey, Output: &Buffer{}}
	s.cmd = exec.Command(bin, "-f", cfg, "-D", "-e")
	s.cmd.Stdout, s.cmd.Stderr = s.Output, s.Output
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not start: %v\n%s", err, s.Output)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Buffer is a bytes.Buffer that a process's output goroutine and the test
// can use at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
