package bastion

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/recorder/events"
)

// needRoot skips a test that runs commands as another user, unless in CI,
// where the tests run as root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the tests run as root in CI")
		}
		t.Skip("running a command as another user needs root")
	}
}

// TestFrontTargetUser: a command target with a user runs its command,
// with and without a terminal, and its sftp-server, as that user, in the
// configured directory, with the configured environment, whose values
// are nowhere in the journal's files.
func TestFrontTargetUser(t *testing.T) {
	t.Parallel()
	needRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	secret := "env-secret-" + hex.EncodeToString(randomBytes(16))
	fileSecret := "file-secret-" + hex.EncodeToString(randomBytes(16))
	// A directory nobody may write to, beside the test's own (which only
	// root may enter).
	work, err := os.MkdirTemp("", "target-dir-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Chmod(work, 0o777); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(t.TempDir(), "pg.env")
	if err := os.WriteFile(envFile, []byte("# the database's password\nFILESECRET="+fileSecret+"\nSECRET=overridden-by-env\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fx := startFrontWith(t, "ops", frontConfig+fmt.Sprintf(`
target "pg" {
  command  = ["/bin/sh"]
  user     = "nobody"
  dir      = %q
  env      = { SECRET = %q }
  env_file = %q
}
`, work, secret, envFile))

	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	// The command checks the secrets without printing them: its output
	// is recorded.
	check := `id -u; id -g; pwd; echo "home=$HOME user=$USER"; printf %s "$SECRET" | sha256sum; printf %s "$FILESECRET" | sha256sum`
	want := []string{nobody.Uid, nobody.Gid, work, "home=" + nobody.HomeDir + " user=nobody", sum(secret), sum(fileSecret)}
	for _, opts := range [][]string{nil, {"-tt"}} {
		out, code := fx.ssh(t, fx.key, "ops@pg", check, opts...)
		if code != 0 {
			t.Fatalf("%v: exit %d, output %q", opts, code, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output %q lacks %q", opts, out, w)
			}
		}
	}
	// Not even the bastion's own uid is left: root cannot be regained.
	if out, code := fx.ssh(t, fx.key, "ops@pg", "cat /proc/self/status | grep -E '^(Uid|Gid|Groups):'"); code != 0 || strings.Contains(out, "\t0\t") || strings.Contains(out, "Groups:\t0") {
		t.Fatalf("exit %d, ids %q", code, out)
	}

	sftpUser := false
	if findSFTPServer() != "" {
		if path, err := exec.LookPath("sftp"); err == nil {
			sftpUser = true
			local := filepath.Join(t.TempDir(), "up.txt")
			if err := os.WriteFile(local, []byte("uploaded\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(path, "-F", "none", "-i", fx.key, "-P", fx.port, "-b", "-",
				"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
				"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+fx.knownHosts,
				"-o", "GlobalKnownHostsFile=none", "-o", "ConnectTimeout=10", "ops@pg@127.0.0.1")
			// A relative path: sftp-server starts in the target's dir.
			cmd.Stdin = strings.NewReader("put " + local + " up.txt\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sftp: %v\n%s", err, out)
			}
			st, err := os.Stat(filepath.Join(work, "up.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if uid := fmt.Sprint(statUID(st)); uid != nobody.Uid {
				t.Fatalf("the uploaded file belongs to uid %s, not nobody's %s", uid, nobody.Uid)
			}
		}
	}

	ss := fx.sessions(t)
	if len(ss) != 3+boolInt(sftpUser) {
		t.Fatalf("%d sessions", len(ss))
	}
	for _, s := range ss {
		if s.attrs["run-as"] != "nobody" || s.attrs["run-as.uid"] != nobody.Uid || s.attrs["env-names"] != "FILESECRET,SECRET" || s.attrs["dir"] != work {
			t.Errorf("session attributes: %v", s.attrs)
		}
		if s.attrs["request"] == "exec" && s.attrs["exec-mode"] != front.ExecShell {
			t.Errorf("exec-mode = %q", s.attrs["exec-mode"])
		}
	}
	fx.verify(t)
	if err := fx.ts.closeStore(); err != nil {
		t.Fatal(err)
	}

	// The journal and its store are closed: its files hold everything it
	// recorded.
	files, err := filepath.Glob(filepath.Join(fx.ts.home, "journal.db*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("journal files: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{secret, fileSecret} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a secret of the target's environment", filepath.Base(f))
			}
		}
		// The check is worth something: the files do hold what was
		// recorded (the output of the first command, say).
		if strings.HasSuffix(f, "journal.db") && !bytes.Contains(b, []byte(sum(secret))) {
			t.Errorf("%s does not hold the recorded output", filepath.Base(f))
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestFrontTargetExecArgs: exec = "args" passes the client's command on
// as arguments, split as a shell would, and refuses what only a shell
// could mean.
func TestFrontTargetExecArgs(t *testing.T) {
	t.Parallel()
	fx := startFrontWith(t, "ops", frontConfig+`
target "words" {
  command = ["printf", "%s\n"]
  exec    = "args"
}
`)
	out, errOut, code := fx.sshIO(t, "ops@words", `a "b c"`, nil)
	if code != 0 || string(out) != "a\nb c\n" {
		t.Fatalf("exit %d, output %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = fx.sshIO(t, "ops@words", "a | tee /tmp/x", nil)
	if code != 1 || !strings.Contains(string(errOut), `target "words" passes the command on as arguments, without a shell, and it cannot be split`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	ss := fx.sessions(t)
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	if a := ss[0].attrs; a["exec-mode"] != front.ExecArgs || a["argv"] != `["printf" "%s\n" "a" "b c"]` || a["command"] != `a "b c"` || a["run-as"] != "bastion" {
		t.Fatalf("attributes: %v", a)
	}
	evs := fx.ts.events(t, events.RequestRefused)
	if len(evs) != 1 || evs[0]["reason"] != events.ReasonExecNotSplit || evs[0]["command"] != "a | tee /tmp/x" || evs[0]["exec-mode"] != front.ExecArgs || evs[0]["identity"] != "agent-1@corp" {
		t.Fatalf("refusals: %v", evs)
	}
	fx.verify(t)
}

// TestFrontTargetExecRefuse: exec = "refuse" refuses exec requests with a
// message, journaled; a shell session still runs.
func TestFrontTargetExecRefuse(t *testing.T) {
	t.Parallel()
	fx := startFrontWith(t, "ops", frontConfig+`
target "console" {
  command = ["/bin/sh"]
  exec    = "refuse"
}
`)
	_, errOut, code := fx.sshIO(t, "ops@console", "echo hi", nil)
	if code != 1 || !strings.Contains(string(errOut), `bastion: target "console" runs interactive shell sessions only: exec requests are refused`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	// A shell, with and without a terminal.
	out, errOut, code := fx.sshIO(t, "ops@console", "", []byte("echo in-shell-$((40+2))\nexit 0\n"))
	if code != 0 || !strings.Contains(string(out), "in-shell-42") {
		t.Fatalf("shell: exit %d, output %q, stderr %q", code, out, errOut)
	}
	out, _, code = fx.sshIO(t, "ops@console", "", []byte("echo in-tty-$((40+2)); exit 0\n"), "-tt")
	if code != 0 || !strings.Contains(string(out), "in-tty-42") {
		t.Fatalf("terminal: exit %d, output %q", code, out)
	}
	ss := fx.sessions(t)
	if len(ss) != 2 || ss[0].attrs["request"] != "shell" || ss[1].attrs["request"] != "shell" {
		t.Fatalf("sessions: %+v", ss)
	}
	if _, ok := ss[0].attrs["exec-mode"]; ok {
		t.Errorf("a shell session has an exec-mode: %v", ss[0].attrs)
	}
	evs := fx.ts.events(t, events.RequestRefused)
	if len(evs) != 1 || evs[0]["reason"] != events.ReasonExecRefused || evs[0]["command"] != "echo hi" || evs[0]["target"] != "console" || evs[0]["serial"] != fmt.Sprint(fx.serial) {
		t.Fatalf("refusals: %v", evs)
	}
	fx.verify(t)
}

// TestFrontTargetConfigErrors: mistakes in a command target's user,
// environment and exec mode are reported at their file:line:col.
func TestFrontTargetConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := filepath.Join(dir, "open.env")
	if err := os.WriteFile(open, []byte("A=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("A=1\nexport B=2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := func(body string) string {
		return "ssh {}\ntarget \"pg\" {\n  command = [\"/bin/sh\"]\n" + body + "}\n"
	}
	for _, tc := range []struct{ name, src, want string }{
		{"unknown user", target("  user = \"no-such-user-here\"\n"), `b.hcl:4:3: target "pg": user "no-such-user-here": no such user`},
		{"root", target("  user = \"root\"\n"), `b.hcl:4:3: target "pg": user "root" is root (uid 0)`},
		{"env_file mode", target(fmt.Sprintf("  env_file = %q\n", open)), `b.hcl:4:3: target "pg": env_file: ` + open + ` is readable or writable by others (mode -rw-r--r--)`},
		{"env_file line", target(fmt.Sprintf("  env_file = %q\n", bad)), `b.hcl:4:3: target "pg": env_file: bad.env:2: not a KEY=VALUE line`},
		{"env_file missing", target(fmt.Sprintf("  env_file = %q\n", filepath.Join(dir, "none.env"))), `b.hcl:4:3: target "pg": env_file: stat `},
		{"env name", target("  env = { \"A-B\" = \"x\" }\n"), `b.hcl:4:3: target "pg": env: "A-B" is not a variable name`},
		{"exec", target("  exec = \"sometimes\"\n"), `b.hcl:4:3: target "pg": exec = "sometimes" is not "shell", "args" or "refuse"`},
		{"dir", target("  dir = \"/no/such/dir\"\n"), `b.hcl:4:3: target "pg": dir: stat /no/such/dir`},
		{"user on ssh", "ssh {}\ntarget \"db\" {\n  ssh = \"10.0.0.1:22\"\n  host_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVhc3Rlcm4tc3RhcmxpZ2h0LXRlc3Qta2V5LTAwMDA=\"\n  user = \"nobody\"\n}\n", `b.hcl:5:3: target "db": user is for command targets, not ssh`},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			_, err := ParseConfig("b.hcl", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(tc.src, "env") && err != nil && strings.Contains(err.Error(), "=1") {
				t.Fatalf("the error shows a value: %v", err)
			}
		})
	}
	// A good one: env wins over env_file, names once each, in order.
	good := filepath.Join(dir, "good.env")
	if err := os.WriteFile(good, []byte("# comment\n\nB=from-file\nA=x=y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("b.hcl", []byte(target(fmt.Sprintf("  env_file = %q\n  env = { B = \"from-env\", C = \"\" }\n  exec = \"args\"\n", good))))
	if err != nil {
		t.Fatal(err)
	}
	tc := cfg.Targets[0]
	if !slices.Equal(tc.Env, []string{"B=from-env", "A=x=y", "C="}) || tc.Exec != front.ExecArgs || tc.User != "" || tc.Credential != nil {
		t.Fatalf("target: %+v", tc)
	}
	if got := tc.EnvNames(); !slices.Equal(got, []string{"A", "B", "C"}) {
		t.Fatalf("names %q", got)
	}
	if os.Geteuid() == 0 {
		if nobody, err := user.Lookup("nobody"); err == nil {
			cfg, err := ParseConfig("b.hcl", []byte(target("  user = \"nobody\"\n")))
			if err != nil {
				t.Fatal(err)
			}
			tc := cfg.Targets[0]
			if tc.Credential == nil || fmt.Sprint(tc.Credential.Uid) != nobody.Uid || fmt.Sprint(tc.Credential.Gid) != nobody.Gid || tc.Home != nobody.HomeDir {
				t.Fatalf("target: %+v", tc)
			}
		}
	}
}

func statUID(fi os.FileInfo) uint32 {
	return fi.Sys().(*syscall.Stat_t).Uid
}
