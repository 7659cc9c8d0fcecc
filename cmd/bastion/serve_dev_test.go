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
	t.Parallel()
	sshPath := opensshClient(t)
	home := t.TempDir()
	user := filepath.Join(home, "user") // $HOME of cli()
	if code, _, errOut := cli(context.Background(), home, "ca", "init"); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	sp := startServeBanner(t, []string{"BASTION_HOME=" + home, "HOME=" + user, "SHELL=/bin/sh"},
		"serve", "--dev", "--dev-login", "deploy", "--listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0")
	api := sp.find(t, `(?m)^bastion serve: HTTPS API at (https://\S+)$`)[1]
	port := sp.find(t, `(?m)^bastion serve: SSH front door at 127\.0\.0\.1:(\d+)$`)[1]
	fp := sp.find(t, `(?m)^  TLS:       self-signed, fingerprint (SHA256:\S+)$`)[1]
	sp.find(t, `(?m)^  policy:    the development role only, built in`)
	sp.find(t, `(?m)^  target:    shell, runs /bin/sh here as \S+ \(the dev role's logins: deploy\)$`)
	pattern := "[127.0.0.1]:" + port + ",[localhost]:" + port + ",shell"
	sp.find(t, `(?m)^  host CA:   trusted for `+regexp.QuoteMeta(pattern)+` \(the @cert-authority line login adds to known_hosts\)$`)
	line := sp.find(t, `(?m)^  ssh:       (ssh -i ~/\.ssh/bastion_ed25519 -p `+port+` deploy@shell@127\.0\.0\.1)$`)[1]

	run := loginForSSH(t, sshPath, home, api, fp, pattern, line)
	if out, err := run(); err != nil || !strings.Contains(out, "first-hour from /bin/sh") {
		t.Fatalf("%s: %v\n%s\nserve:\n%s", line, err, out, sp.stderr.String())
	}
	// The same front door under a name the bastion does not go by: the
	// host CA is not trusted for it.
	if out, err := run("-o", "HostKeyAlias=elsewhere.example"); err == nil || !strings.Contains(out, "Host key verification failed") {
		t.Fatalf("a host named elsewhere.example was vouched for by the host CA: %v\n%s", err, out)
	}

	if code := sp.stop(); code != 0 {
		t.Fatalf("serve exited %d: %s", code, sp.stderr.String())
	}
	code, out, errOut := cli(context.Background(), home, "sessions", "list")
	if code != 0 || !regexp.MustCompile(`(?m)\sagent-1@dev\s+deploy@shell\s+echo first-hour from \$0$`).MatchString(out) {
		t.Fatalf("sessions list: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := cli(context.Background(), home, "verify"); code != 0 || !strings.Contains(out, "intact") {
		t.Fatalf("verify: %d %s %s", code, out, errOut)
	}
}

// bannerServe is a "bastion serve" process of a test, and what it printed
// when it started.
type bannerServe struct {
	cmd    *exec.Cmd
	banner string
	stderr *lockedBuffer
	code   int
	done   bool
}

// startServeBanner runs the test binary as "bastion ARGS..." with the
// environment env (and $PATH), until the test ends, and reads its banner:
// the lines up to the "  ssh:" line, or all of them if there is none.
func startServeBanner(t *testing.T, env []string, args ...string) *bannerServe {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sp := &bannerServe{stderr: &lockedBuffer{}}
	sp.cmd = &exec.Cmd{Path: exe, Args: append([]string{"bastion"}, args...), Env: append(env, "PATH="+os.Getenv("PATH")), Stderr: sp.stderr}
	stdout, err := sp.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.stop() })
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.HasPrefix(sc.Text(), "  ssh:") {
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	sp.banner = strings.Join(lines, "\n")
	return sp
}

// find returns the submatches of the first match of re in the banner.
func (sp *bannerServe) find(t *testing.T, re string) []string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(sp.banner)
	if m == nil {
		t.Fatalf("serve printed no line matching %s:\n%s\n%s", re, sp.banner, sp.stderr.String())
	}
	return m
}

// stop ends serve with SIGTERM and returns its exit status.
func (sp *bannerServe) stop() int {
	if !sp.done {
		sp.done = true
		sp.cmd.Process.Signal(syscall.SIGTERM)
		sp.cmd.Wait()
		sp.code = sp.cmd.ProcessState.ExitCode()
	}
	return sp.code
}

// loginForSSH logs in to the API with a dev token (cli()'s $HOME), checks
// that known_hosts then holds one @cert-authority line for pattern, and
// returns a function that runs "echo first-hour from $0" through the
// printed ssh line, as a shell would expand it, with that known_hosts and
// any extra ssh options.
func loginForSSH(t *testing.T, sshPath, home, api, fp, pattern, line string) func(extra ...string) (string, error) {
	t.Helper()
	user := filepath.Join(home, "user")
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
	// ssh reads the passwd entry's home, not $HOME: name the files.
	argv := strings.Fields(strings.ReplaceAll(line, "~", user))[1:]
	opts := []string{"-F", "/dev/null", "-o", "UserKnownHostsFile=" + known, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}
	return func(extra ...string) (string, error) {
		args := append(append(append([]string{}, opts...), extra...), argv...)
		out, err := exec.Command(sshPath, append(args, "echo first-hour from $0")...).CombinedOutput()
		return string(out), err
	}
}

// TestServeSSHListenMistakes: a busy port says which flag chooses another;
// a malformed --ssh-listen, or one for a configuration without a front
// door, is a command-line mistake.
func TestServeSSHListenMistakes(t *testing.T) {
	t.Parallel()
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
