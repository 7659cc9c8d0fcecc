package bastion

import (
	"fmt"
	"os/exec"
	"testing"

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
