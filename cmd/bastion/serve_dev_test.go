package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// opensshClient returns the path of the OpenSSH client; without it the test
// is skipped, or fails in CI.
func opensshClient(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ssh")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ssh is needed: %v", err)
		}
		t.Skipf("ssh not found: %v", err)
	}
	return p
}

// TestServeDevFrontDoor is the first hour's three commands: "serve --dev"
// with no configuration opens a front door with the local shell target and
// prints the ssh line; after login (with a dev token), that very line,
// run by the real OpenSSH client, reaches the shell, and is recorded. The
// host CA login trusts is scoped to the bastion's names: a host known by
// any other name is not vouched for.
func TestServeDevFrontDoor(t *testing.T) {
	sshPath := opensshClient(t)
	home := t.TempDir()
	user := filepath.Join(home, "user") // $HOME of cli()
	if code, _, errOut := cli(context.Background(), home, "ca", "init"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var serveErr lockedBuffer
	cmd := &exec.Cmd{Path: exe, Args: []string{"bastion", "serve", "--dev", "--dev-login", "deploy", "--listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0"},
		Env: []string{"BASTION_HOME=" + home, "HOME=" + user, "SHELL=/bin/sh", "PATH=" + os.Getenv("PATH")}, Stderr: &serveErr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	var banner []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		banner = append(banner, sc.Text())
		if strings.HasPrefix(sc.Text(), "  ssh:") {
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	text := strings.Join(banner, "\n")
	find := func(re string) []string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("serve --dev printed no line matching %s:\n%s\n%s", re, text, serveErr.String())
		}
		return m
	}
	api := find(`(?m)^bastion serve: HTTPS API at (https://\S+)$`)[1]
	port := find(`(?m)^bastion serve: SSH front door at 127\.0\.0\.1:(\d+)$`)[1]
	fp := find(`(?m)^  TLS:       self-signed, fingerprint (SHA256:\S+)$`)[1]
	find(`(?m)^  policy:    the development role only, built in`)
	find(`(?m)^  target:    shell, runs /bin/sh here as \S+ \(the dev role's logins: deploy\)$`)
	pattern := "[127.0.0.1]:" + port + ",[localhost]:" + port + ",shell"
	find(`(?m)^  host CA:   trusted for ` + regexp.QuoteMeta(pattern) + ` \(the @cert-authority line login adds to known_hosts\)$`)
	line := find(`(?m)^  ssh:       (ssh -i ~/\.ssh/bastion_ed25519 -p ` + port + ` deploy@shell@127\.0\.0\.1)$`)[1]

	token := devTokenFile(t, home, t.TempDir(), "agent-1")
	known := filepath.Join(user, ".ssh", "known_hosts")
	if code, out, errOut := cli(context.Background(), home, "login", "--server", api, "--ca-fingerprint", fp, "--token-file", token, "--known-hosts", known); code != 0 {
		t.Fatalf("login: %d\n%s\n%s", code, out, errOut)
	}
	b, err := os.ReadFile(known)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "@cert-authority "+pattern+" ssh-ed25519 ") {
		t.Fatalf("known_hosts after login:\n%s", b)
	}

	// The printed line, as a shell would expand it, with this test's
	// known_hosts (ssh reads the passwd entry's home, not $HOME).
	argv := strings.Fields(strings.ReplaceAll(line, "~", user))[1:]
	opts := []string{"-F", "/dev/null", "-o", "UserKnownHostsFile=" + known, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}
	run := func(extra ...string) (string, error) {
		args := append(append(append([]string{}, opts...), extra...), argv...)
		out, err := exec.Command(sshPath, append(args, "echo first-hour from $0")...).CombinedOutput()
		return string(out), err
	}
	if out, err := run(); err != nil || !strings.Contains(out, "first-hour from /bin/sh") {
		t.Fatalf("%s: %v\n%s\nserve:\n%s", line, err, out, serveErr.String())
	}
	// The same front door under a name the bastion does not go by: the
	// host CA is not trusted for it.
	if out, err := run("-o", "HostKeyAlias=elsewhere.example"); err == nil || !strings.Contains(out, "Host key verification failed") {
		t.Fatalf("a host named elsewhere.example was vouched for by the host CA: %v\n%s", err, out)
	}

	stop()
	code, out, errOut := cli(context.Background(), home, "sessions", "list")
	if code != 0 || !regexp.MustCompile(`(?m)\sagent-1@dev\s+deploy@shell\s+echo first-hour from \$0$`).MatchString(out) {
		t.Fatalf("sessions list: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := cli(context.Background(), home, "verify"); code != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("verify: %d %s %s", code, out, errOut)
	}
}

// TestServeSSHListenMistakes: a busy port says which flag chooses another;
// a malformed --ssh-listen, or one for a configuration without a front
// door, is a command-line mistake.
func TestServeSSHListenMistakes(t *testing.T) {
	home := t.TempDir()
	if code, _, errOut := cli(context.Background(), home, "ca", "init"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	noSSH := filepath.Join(t.TempDir(), "api-only.hcl")
	if err := os.WriteFile(noSSH, []byte("api {\n  listen = \"127.0.0.1:0\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"busy", []string{"--ssh-listen", busy.Addr().String()}, 1,
			"bastion: hint: another program listens there: stop it, or give --ssh-listen 127.0.0.1:PORT (127.0.0.1:0 picks a free port)\n"},
		{"not host:port", []string{"--ssh-listen", "2222"}, 2, `bastion: error: --ssh-listen "2222" is not HOST:PORT, such as 127.0.0.1:2222` + "\n"},
		{"no ssh block", []string{"--ssh-listen", "127.0.0.1:0", "--config", noSSH}, 2, "has no ssh block, so there is no front door to listen for\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"serve", "--dev", "--listen", "127.0.0.1:0"}, tt.args...)
			code, _, errOut := cli(context.Background(), home, args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("serve %s: exit %d, want %d and %q:\n%s", strings.Join(args, " "), code, tt.code, tt.want, errOut)
			}
		})
	}
}
