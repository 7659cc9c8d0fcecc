// Package localsshd runs a private OpenSSH server on a loopback port: the
// system's sshd binary with its own host key and configuration, for the
// demo's SSH target and for tests and benchmarks (bastion/sshdtest).
package localsshd

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Binary is where Debian and most distributions install sshd.
const Binary = "/usr/sbin/sshd"

// ErrNotInstalled is returned by Start when sshd or ssh-keygen is missing.
var ErrNotInstalled = errors.New("sshd is not installed")

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

// Start starts sshd on 127.0.0.1 with its files in dir (which must
// exist) and config lines first (sshd takes the first value of a keyword,
// so they override the defaults that follow: public key authentication
// only, UsePAM no, StrictModes no, no authorized_keys files).
func Start(dir string, config ...string) (*SSHD, error) {
	if _, err := os.Stat(Binary); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil && os.Getuid() == 0 {
		return nil, err
	}
	// A directory used before (the demo's, run again) keeps its host key.
	hostKey := filepath.Join(dir, "host_ed25519")
	if _, err := os.Stat(hostKey); errors.Is(err, os.ErrNotExist) {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	} else if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
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
		return nil, err
	}
	s := &SSHD{Addr: addr, Port: port, Dir: dir, HostKey: hostKey, Output: &Buffer{}}
	s.cmd = exec.Command(Binary, "-f", cfg, "-D", "-e")
	s.cmd.Stdout, s.cmd.Stderr = s.Output, s.Output
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("sshd did not start: %v\n%s", err, s.Output)
		}
	}
}

// HostPublicKey is the host key's public half, as "TYPE BASE64".
func (s *SSHD) HostPublicKey() (string, error) {
	b, err := os.ReadFile(s.HostKey + ".pub")
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return "", fmt.Errorf("%s: not a public key", s.HostKey+".pub")
	}
	return f[0] + " " + f[1], nil
}

// Stop kills sshd and waits for it.
func (s *SSHD) Stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// Buffer is a bytes.Buffer that a process's output goroutine and a reader
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
