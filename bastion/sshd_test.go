package bastion

import (
	"fmt"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/bastionhq/bastion/bastion/sshdtest"
)

// needTool finds a tool the test needs: in CI a missing one fails the test,
// elsewhere it skips it.
func needTool(t testing.TB, name string) string {
	t.Helper()
	return sshdtest.Need(t, name)
}

// syncBuffer is a buffer a process's output goroutine and the test can use
// at once.
type syncBuffer = sshdtest.Buffer

// sshd is a private OpenSSH server on a loopback port.
type sshd struct {
	addr, port string
	dir        string
	log        *syncBuffer
}

// startSSHD starts a private sshd with the given configuration lines
// (TrustedUserCAKeys, RevokedKeys…), a fresh host key, and only public key
// authentication.
func startSSHD(t *testing.T, extra ...string) *sshd {
	t.Helper()
	s := sshdtest.Start(t, extra...)
	return &sshd{addr: s.Addr, port: s.Port, dir: s.Dir, log: s.Output}
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

// logged reports whether sshd's log says what re matches, waiting up to
// 10 s for it: sshd's monitor may write a line after the client it is
// about has already gone.
func (s *sshd) logged(re *regexp.Regexp) bool {
	for deadline := time.Now().Add(10 * time.Second); !re.MatchString(s.log.String()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
