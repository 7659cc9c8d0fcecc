package bastion

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// needTool finds a tool the test needs: in CI a missing one fails the test,
// elsewhere it skips it.
func needTool(t testing.TB, name string) string {
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

// sshd is a private OpenSSH server on a loopback port.
type sshd struct {
	addr, port string
	dir        string
	cmd        *exec.Cmd
	log        *syncBuffer
}

// syncBuffer is a bytes.Buffer that sshd's output goroutine and the test
// can use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startSSHD starts /usr/sbin/sshd with the given extra configuration lines
// (TrustedUserCAKeys, RevokedKeys…), a fresh host key, and only public key
// authentication.
func startSSHD(t *testing.T, extra ...string) *sshd {
	t.Helper()
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sshd is required in CI: %v", err)
		}
		t.Skipf("sshd not installed: %v", err)
	}
	keygen := needTool(t, "ssh-keygen")
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
	conf := []string{
		"ListenAddress " + addr,
		"HostKey " + hostKey,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"UsePAM no",
		"StrictModes no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"AuthorizedKeysFile none",
		"LogLevel VERBOSE",
		"SetEnv SHLVL=1",
	}
	conf = append(conf, extra...)
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &sshd{addr: addr, port: port, dir: dir, log: &syncBuffer{}}
	s.cmd = exec.Command(bin, "-f", cfgPath, "-D", "-e")
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
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
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not start: %v\n%s", err, s.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// ssh runs the real OpenSSH client against s as login with the given key
// (its certificate beside it as KEY-cert.pub) and returns its combined
// output and error.
func (s *sshd) ssh(t *testing.T, key, login string, command ...string) (string, error) {
	t.Helper()
	args := []string{
		"-F", "none", "-i", key, "-p", s.port,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "PasswordAuthentication=no", "-o", "ConnectTimeout=10",
		login + "@127.0.0.1",
	}
	args = append(args, command...)
	out, err := exec.Command(needTool(t, "ssh"), args...).CombinedOutput()
	return string(out), err
}

func (s *sshd) String() string { return fmt.Sprintf("sshd on %s", s.addr) }
