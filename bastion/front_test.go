package bastion

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
)

const frontConfig = e2eConfig + `
ssh {
  listen     = "127.0.0.1:0"
  host_names = ["bastion.example"]
}
target "box" {
  command = ["/bin/sh"]
}
`

// frontFixture is a running server with an SSH front door, a client key
// and certificate for login "ops", and a known_hosts file holding only the
// host CA's @cert-authority line.
type frontFixture struct {
	ts         *testServer
	dir        string
	key        string // private key; its certificate is key+"-cert.pub"
	serial     uint64
	knownHosts string
	port       string
}

func startFront(t *testing.T) *frontFixture {
	t.Helper()
	return startFrontWith(t, "ops", frontConfig)
}

// startFrontWith is startFront for login, with config text whose
// %LOGIN% becomes login.
func startFrontWith(t *testing.T, login, config string) *frontFixture {
	t.Helper()
	return startFrontTweaked(t, login, config, serverTweaks{})
}

// startFrontTweaked is startFrontWith with the server built with tw.
func startFrontTweaked(t *testing.T, login, config string, tw serverTweaks) *frontFixture {
	t.Helper()
	needTool(t, "ssh")
	m := startOP(t)
	ts := startServerWith(t, m, strings.ReplaceAll(config, "%LOGIN%", login), certauth.AlgorithmEd25519, tw)
	dir := t.TempDir()
	key, pub := newKey(t, dir, "id_ed25519")
	resp, err := ts.client.Certificate(context.Background(), mint(t, m, agentClaims(m, "agent-1")), certauth.CertificateRequest{PublicKey: pub, Logins: []string{login}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(strings.Join(ts.auth.KnownHostsLines("*"), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(ts.SSHAddr())
	if err != nil {
		t.Fatal(err)
	}
	return &frontFixture{ts: ts, dir: dir, key: key, serial: resp.Serial, knownHosts: kh, port: port}
}

// ssh runs the OpenSSH client through the front door as user with key,
// with extra options opts, and returns its output (stdout and stderr) and
// exit code.
func (fx *frontFixture) ssh(t *testing.T, key, user, command string, opts ...string) (string, int) {
	t.Helper()
	args := []string{
		"-F", "none", "-i", key, "-p", fx.port,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + fx.knownHosts,
		"-o", "GlobalKnownHostsFile=none",
		"-o", "PasswordAuthentication=no", "-o", "ConnectTimeout=10",
	}
	args = append(args, opts...)
	args = append(args, user+"@127.0.0.1", command)
	cmd := exec.Command(needTool(t, "ssh"), args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ssh: %v", err)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// recordedSession is a session as the journal holds it.
type recordedSession struct {
	id     string
	attrs  recorder.Attrs
	end    recorder.Attrs
	frames []storage.Frame
}

func (fx *frontFixture) sessions(t *testing.T) []recordedSession {
	t.Helper()
	ctx := context.Background()
	snap, err := fx.ts.store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	log, err := recorder.ReadLog(ctx, snap, recorder.ReadLogOptions{Verifier: fx.ts.key.Verifier})
	if err != nil {
		t.Fatal(err)
	}
	var out []recordedSession
	for _, ls := range log.Sessions {
		rs := recordedSession{id: uuid.UUID(ls.ID).String(), attrs: ls.Start.Attrs}
		if ls.End != nil {
			rs.end = ls.End.Attrs
		}
		if err := snap.Frames(ctx, ls.Num, func(f *storage.Frame) error {
			// The frame's slices are valid only during the call.
			fr := *f
			fr.Payload = bytes.Clone(f.Payload)
			rs.frames = append(rs.frames, fr)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		out = append(out, rs)
	}
	return out
}

func (rs recordedSession) output() string {
	var b bytes.Buffer
	for _, f := range rs.frames {
		if recorder.Kind(f.Kind) == recorder.KindOutput {
			b.Write(f.Payload)
		}
	}
	return b.String()
}

func (fx *frontFixture) verify(t *testing.T) {
	t.Helper()
	fx.ts.stop(t)
	rep, err := recorder.Verify(context.Background(), fx.ts.store, recorder.VerifyOptions{Verifier: fx.ts.key.Verifier})
	if err != nil || !rep.Intact() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestFrontExec: an exec session through the username form, trusted by
// the @cert-authority line alone, its exit status passed back and every
// byte of it in a journal that verifies.
func TestFrontExec(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	out, code := fx.ssh(t, fx.key, "ops@box", "echo hi; exit 42")
	if code != 42 || !strings.Contains(out, "hi") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	ss := fx.sessions(t)
	if len(ss) != 1 {
		t.Fatalf("%d sessions recorded", len(ss))
	}
	s := ss[0]
	want := recorder.Attrs{
		"kind": "ssh", "request": "exec", "identity": "agent-1@corp", "serial": fmt.Sprint(fx.serial),
		"login": "ops", "target": "box", "command": "echo hi; exit 42",
	}
	for k, v := range want {
		if s.attrs[k] != v {
			t.Errorf("session attribute %s = %q, want %q", k, s.attrs[k], v)
		}
	}
	if !strings.HasPrefix(s.attrs["client"], "127.0.0.1:") {
		t.Errorf("client = %q", s.attrs["client"])
	}
	if !strings.Contains(s.output(), "hi") {
		t.Errorf("recorded output %q lacks the command's", s.output())
	}
	if s.end["reason"] != "exited" || s.end["exit-status"] != "42" {
		t.Errorf("end: %v", s.end)
	}
	var exec bool
	for _, f := range s.frames {
		if recorder.Kind(f.Kind) == recorder.KindExec && string(f.Payload) == "echo hi; exit 42" {
			exec = true
		}
	}
	if !exec {
		t.Error("no exec frame with the command")
	}
	fx.verify(t)
}

// TestFrontPTY: a terminal session gets the size the client asked for.
func TestFrontPTY(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	// Without a terminal of its own, ssh -tt asks for 0x0, which the
	// bastion takes as 80x24.
	out, code := fx.ssh(t, fx.key, "ops@box", "stty size; tty", "-tt")
	if code != 0 || !strings.Contains(out, "24 80") || !strings.Contains(out, "/dev/") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	ss := fx.sessions(t)
	if len(ss) != 1 || ss[0].attrs["term"] == "" || !strings.Contains(ss[0].output(), "24 80") {
		t.Fatalf("sessions: %+v", ss)
	}
	var pty bool
	for _, f := range ss[0].frames {
		pty = pty || recorder.Kind(f.Kind) == recorder.KindPTY
	}
	if !pty {
		t.Error("no PTY frame recorded")
	}
	fx.verify(t)
}

// TestFrontRefusals: each refused authentication fails ssh, starts no
// session, and is journaled with its reason.
func TestFrontRefusals(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	plain, _ := newKey(t, fx.dir, "plain")
	expired := fx.selfSigned(t, "expired", func(c *ssh.Certificate) {
		c.ValidAfter = uint64(time.Now().Add(-2 * time.Hour).Unix())
		c.ValidBefore = uint64(time.Now().Add(-time.Hour).Unix())
	})
	pinned := fx.selfSigned(t, "pinned", func(c *ssh.Certificate) {
		c.CriticalOptions = map[string]string{"source-address": "192.0.2.1/32"}
	})
	forced := fx.selfSigned(t, "forced", func(c *ssh.Certificate) {
		c.CriticalOptions = map[string]string{"force-command": "true"}
	})
	// Valid in every way, but signed with the CA key outside the bastion:
	// the journal never issued it.
	unissued := fx.selfSigned(t, "unissued", func(*ssh.Certificate) {})

	for _, tc := range []struct {
		name, key, user, reason string
		revoke                  bool
	}{
		{"wrong principal", fx.key, "deploy@box", events.ReasonPrincipal, false},
		{"unknown target", fx.key, "ops@nowhere", events.ReasonUnknownTarget, false},
		{"no target", fx.key, "ops", events.ReasonNoTarget, false},
		{"plain key", plain, "ops@box", events.ReasonNotCertificate, false},
		{"expired", expired, "ops@box", events.ReasonExpired, false},
		{"source address", pinned, "ops@box", events.ReasonSourceAddress, false},
		{"unknown critical option", forced, "ops@box", events.ReasonCriticalOption, false},
		{"not issued by the bastion", unissued, "ops@box", events.ReasonUnknownSerial, false},
		{"revoked", fx.key, "ops@box", events.ReasonRevoked, true},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			if tc.revoke {
				if _, _, err := AdminRevoke(context.Background(), fx.ts.home, certauth.RevokeRequest{Serials: []uint64{fx.serial}, Reason: "test", By: "tester"}, ""); err != nil {
					t.Fatal(err)
				}
			}
			before := len(fx.ts.events(t, events.AuthRefused))
			out, code := fx.ssh(t, tc.key, tc.user, "echo in")
			if code != 255 || strings.Contains(out, "in\n") || !strings.Contains(out, "Permission denied") {
				t.Fatalf("exit %d, output %q", code, out)
			}
			// A stranger's refusal is journaled when its connection
			// ends, which the server sees a moment after the client.
			var evs []recorder.Attrs
			var found bool
			for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				evs = fx.ts.events(t, events.AuthRefused)[before:]
				for _, e := range evs {
					if e["reason"] == tc.reason && e["user"] == tc.user && strings.HasPrefix(e["client"], "127.0.0.1:") && e["key.sha256"] != "" {
						found = true
					}
				}
			}
			if !found {
				t.Fatalf("no %s refusal journaled: %v", tc.reason, evs)
			}
		})
	}
	if ss := fx.sessions(t); len(ss) != 0 {
		t.Fatalf("refused logins started %d sessions", len(ss))
	}
	fx.verify(t)
}

// selfSigned writes a key and a user certificate for login "ops" signed by
// the user CA directly, changed by edit, and returns the key's path.
func (fx *frontFixture) selfSigned(t *testing.T, name string, edit func(*ssh.Certificate)) string {
	t.Helper()
	path, line := newKey(t, fx.dir, name)
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{
		Key: pub, Serial: 1 << 40, CertType: ssh.UserCert, KeyId: "self-signed@test",
		ValidPrincipals: []string{"ops"},
		ValidAfter:      uint64(time.Now().Add(-time.Minute).Unix()),
		ValidBefore:     uint64(time.Now().Add(time.Hour).Unix()),
		Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	edit(cert)
	if err := fx.ts.auth.User.Sign(cert); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFrontUntrustedHost: a client that trusts another host CA refuses
// the bastion.
func TestFrontUntrustedHost(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(other)
	if err := os.WriteFile(fx.knownHosts, []byte("@cert-authority * "+string(ssh.MarshalAuthorizedKey(pub))), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := fx.ssh(t, fx.key, "ops@box", "true"); code != 255 || !strings.Contains(out, "Host key verification failed") {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

// sshIO is ssh with stdin, and stdout and stderr apart.
func (fx *frontFixture) sshIO(t *testing.T, user, command string, stdin []byte, opts ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	args := fx.frontArgs(user, opts...)
	if command != "" {
		args = append(args, command)
	}
	return execSSH(t, stdin, nil, args...)
}

// execSSH runs the OpenSSH client with args, stdin and env (nil: this
// process's), and returns its stdout, its stderr and its exit code.
func execSSH(t *testing.T, stdin []byte, env []string, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	cmd := exec.Command(needTool(t, "ssh"), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ssh: %v", err)
	}
	return out.Bytes(), errb.Bytes(), cmd.ProcessState.ExitCode()
}

// TestFrontPipes: exec without a PTY passes bytes unchanged: stdin in,
// stdout and stderr apart, each recorded.
func TestFrontPipes(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	data := make([]byte, 1<<20)
	rand.Read(data)
	out, errOut, code := fx.sshIO(t, "ops@box", "cat; echo to-stderr >&2; exit 3", data)
	if code != 3 || !bytes.Equal(out, data) || !bytes.Contains(errOut, []byte("to-stderr\n")) {
		t.Fatalf("exit %d, %d bytes out (equal %v), stderr %q", code, len(out), bytes.Equal(out, data), errOut)
	}
	ss := fx.sessions(t)
	if len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	var in, stdout, stderr bytes.Buffer
	for _, f := range ss[0].frames {
		switch recorder.Kind(f.Kind) {
		case recorder.KindInput:
			in.Write(f.Payload)
		case recorder.KindOutput:
			stdout.Write(f.Payload)
		case recorder.KindStderr:
			stderr.Write(f.Payload)
		}
	}
	if !bytes.Equal(in.Bytes(), data) || !bytes.Equal(stdout.Bytes(), data) || stderr.String() != "to-stderr\n" {
		t.Fatalf("recorded %d bytes in, %d out, stderr %q", in.Len(), stdout.Len(), stderr.String())
	}
	if ss[0].end["exit-status"] != "3" {
		t.Fatalf("end: %v", ss[0].end)
	}
	fx.verify(t)
}

// TestFrontRefusedRequests: subsystems but sftp, and port forwarding, are refused
// with a message that says so.
func TestFrontRefusedRequests(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	_, errOut, code := fx.sshIO(t, "ops@box", "netconf", nil, "-s")
	if code == 0 || !strings.Contains(string(errOut), `subsystem "netconf" is not supported`) {
		t.Fatalf("subsystem: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = fx.sshIO(t, "ops@box", "", nil, "-W", "127.0.0.1:9")
	if code == 0 || !strings.Contains(string(errOut), "port forwarding reaches only SSH targets") {
		t.Fatalf("-W: exit %d, stderr %q", code, errOut)
	}
}

// TestFrontConfigErrors: mistakes in the ssh block and targets are
// reported at their file:line:col.
func TestFrontConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, src, want string }{
		{"bad listen", "ssh {\n  listen = \"nope\"\n}\n", `b.hcl:2:3: ssh listen = "nope" is not HOST:PORT`},
		{"empty command", "ssh {}\ntarget \"box\" {\n  command = []\n}\n", `b.hcl:3:3: target "box": command is empty`},
		{"bad name", "ssh {}\ntarget \"Box!\" {\n  command = [\"/bin/sh\"]\n}\n", `b.hcl:2:1: target "Box!": a name is`},
		{"twice", "ssh {}\ntarget \"a\" {\n  command = [\"sh\"]\n}\ntarget \"a\" {\n  command = [\"sh\"]\n}\n", `b.hcl:5:1: target "a" is defined twice`},
		{"no ssh block", "target \"a\" {\n  command = [\"sh\"]\n}\n", `b.hcl:1:1: target "a" is configured but there is no ssh block`},
		{"auth tries", "ssh {\n  max_auth_tries = 0\n}\n", `b.hcl:2:3: max_auth_tries = 0 is not between 1 and 20`},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			_, err := ParseConfig("b.hcl", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	cfg, err := ParseConfig("b.hcl", []byte("ssh {\n  host_names = [\"bastion.example\"]\n}\ntarget \"box\" {\n  command = [\"/bin/sh\"]\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SSH == nil || cfg.SSH.Listen != front.DefaultSSHListen || cfg.SSH.MaxAuthTries != front.DefaultMaxAuthTries || cfg.SSH.PreAuthTimeout != front.DefaultPreAuthTimeout ||
		len(cfg.Targets) != 1 || cfg.Targets[0].Name != "box" || cfg.Targets[0].Command[0] != "/bin/sh" {
		t.Fatalf("config: %+v %+v", cfg.SSH, cfg.Targets)
	}
}

// TestFrontPreAuthTimeout: a connection that does not authenticate in time
// is closed.
func TestFrontPreAuthTimeout(t *testing.T) {
	t.Parallel()
	m := startOP(t)
	cfg := strings.ReplaceAll(frontConfig, "%LOGIN%", "ops")
	cfg = strings.Replace(cfg, `host_names = ["bastion.example"]`, `host_names = ["bastion.example"]
  pre_auth_timeout = "300ms"`, 1)
	ts := startServer(t, m, cfg)
	c, err := net.Dial("tcp", ts.SSHAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(10 * time.Second))
	buf := make([]byte, 256)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the connection was not closed")
			}
			break
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v", d)
	}
}
