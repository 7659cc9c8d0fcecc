// Package sshdtest runs a private OpenSSH server on a loopback port for
// tests and benchmarks (see package localsshd), stopped when the test ends.
package sshdtest

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/bastionhq/bastion/bastion/localsshd"
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
type SSHD = localsshd.SSHD

// Buffer is a bytes.Buffer that a process's output goroutine and the test
// can use at once.
type Buffer = localsshd.Buffer

// Start starts sshd on 127.0.0.1 with config lines first (see
// localsshd.Start), in a temporary directory of the test, and stops it
// when the test ends. A missing sshd fails the test in CI and skips it
// elsewhere.
func Start(t testing.TB, config ...string) *SSHD {
	t.Helper()
	s, err := localsshd.Start(t.TempDir(), config...)
	if errors.Is(err, localsshd.ErrNotInstalled) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sshd is required in CI: %v", err)
		}
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}
