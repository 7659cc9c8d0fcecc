package bastion

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// upstreamFixture is a front door whose SSH targets are one real sshd that
// trusts the target CA, and a key certified by the target CA for reaching
// that sshd directly, to compare with.
type upstreamFixture struct {
	*frontFixture
	sshd   *sshd
	login  string
	direct string // private key; its target-CA certificate beside it
}

// startUpstream starts an sshd and a front door with these targets:
// "db1" pins the sshd's host key, "kh" trusts it through a known_hosts
// file, "ca" through its host certificate, "wrongkey" pins another key,
// "wrongca" trusts another host CA, "down" is a closed port.
func startUpstream(t *testing.T) *upstreamFixture {
	t.Helper()
	needTool(t, "ssh")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "target_ca.pub")
	if err := os.WriteFile(caFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A second host key, ECDSA, with a host certificate for 127.0.0.1
	// from a host CA of the test's own.
	_, hostCA, _ := ed25519.GenerateKey(rand.Reader)
	hostCASigner, _ := ssh.NewSignerFromKey(hostCA)
	ecKey := filepath.Join(dir, "host_ecdsa")
	if out, err := exec.Command(needTool(t, "ssh-keygen"), "-q", "-t", "ecdsa", "-N", "", "-f", ecKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	ecPub, err := os.ReadFile(ecKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	ecPK, _, _, _, err := ssh.ParseAuthorizedKey(ecPub)
	if err != nil {
		t.Fatal(err)
	}
	hostCert := &ssh.Certificate{
		Key: ecPK, Serial: 1, CertType: ssh.HostCert, KeyId: "db1 host", ValidPrincipals: []string{"127.0.0.1"},
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
	}
	if err := hostCert.SignCert(rand.Reader, hostCASigner); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ecKey+"-cert.pub", ssh.MarshalAuthorizedKey(hostCert), 0o644); err != nil {
		t.Fatal(err)
	}
	// sshd reads TrustedUserCAKeys at each authentication: the file is
	// filled once the bastion's target CA exists.
	sd := startSSHD(t, "TrustedUserCAKeys "+caFile, "AcceptEnv LANG LC_* EVIL", "HostKey "+ecKey, "HostCertificate "+ecKey+"-cert.pub")
	hostPub, err := os.ReadFile(filepath.Join(sd.dir, "host_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	hostKey := strings.Join(strings.Fields(string(hostPub))[:2], " ")
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _ := ssh.NewPublicKey(other.Public())
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%s %s\n", sd.port, hostKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Forwards from the targets may reach loopback ports only.
	config := strings.Replace(frontConfig, "file_transfer = true", "file_transfer = true\n  port_forwarding = [\"127.0.0.1:*\"]", 1) + fmt.Sprintf(`
target "db1" {
  ssh      = %[1]q
  host_key = %[2]q
}
target "kh" {
  ssh         = %[1]q
  known_hosts = %[3]q
}
target "wrongkey" {
  ssh      = %[1]q
  host_key = %[4]q
}
target "ca" {
  ssh     = %[1]q
  host_ca = %[5]q
}
target "wrongca" {
  ssh     = %[1]q
  host_ca = %[4]q
}
target "down" {
  ssh          = "127.0.0.1:1"
  host_key     = %[2]q
  dial_timeout = "2s"
}
`, sd.addr, hostKey, kh, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherPub))), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostCASigner.PublicKey()))))
	login := currentLogin(t)
	fx := startFrontWith(t, login, config)
	if err := os.WriteFile(caFile, []byte(strings.Join(fx.ts.auth.Target.AuthorizedKeys(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	direct, line := newKey(t, dir, "direct")
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{
		Key: pub, Serial: 7, CertType: ssh.UserCert, KeyId: "direct@test",
		ValidPrincipals: []string{login},
		ValidAfter:      uint64(time.Now().Add(-time.Minute).Unix()),
		ValidBefore:     uint64(time.Now().Add(time.Hour).Unix()),
		Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := fx.ts.auth.Target.Sign(cert); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(direct+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return &upstreamFixture{frontFixture: fx, sshd: sd, login: login, direct: direct}
}

// directIO runs command on the sshd directly, as sshIO does through the
// bastion.
func (ux *upstreamFixture) directIO(t *testing.T, command string, stdin []byte, opts ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	args := []string{
		"-F", "none", "-i", ux.direct, "-p", ux.sshd.port,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
	}
	args = append(args, opts...)
	args = append(args, ux.login+"@127.0.0.1", command)
	return execSSH(t, stdin, nil, args...)
}

// session finds the recorded session whose command is command.
func (ux *upstreamFixture) session(t *testing.T, command string) recordedSession {
	t.Helper()
	for _, s := range ux.sessions(t) {
		if s.attrs["command"] == command {
			return s
		}
	}
	t.Fatalf("no session recorded for %q", command)
	return recordedSession{}
}

func (rs recordedSession) stream(kind recorder.Kind) []byte {
	var b bytes.Buffer
	for _, f := range rs.frames {
		if recorder.Kind(f.Kind) == kind {
			b.Write(f.Payload)
		}
	}
	return b.Bytes()
}

// TestFrontUpstreamExec: exec through the username form to a real sshd
// gives the bytes and exit status a direct connection gives, every byte
// is recorded, and sshd's log names the session by the certificate's key
// ID.
func TestFrontUpstreamExec(t *testing.T) {
	t.Parallel()
	ux := startUpstream(t)
	user := ux.login + "@db1"
	for _, tc := range []struct {
		name, command string
		code          int
	}{
		{"exit 0", `printf 'a\000b\r\n'; echo out; echo err >&2; exit 0`, 0},
		{"exit 1", `echo one; echo two >&2; exit 1`, 1},
		{"exit 42", `id -un; pwd; exit 42`, 42},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			out, errOut, code := ux.sshIO(t, user, tc.command, nil)
			dout, derr, dcode := ux.directIO(t, tc.command, nil)
			if code != tc.code || dcode != tc.code {
				t.Fatalf("exit %d through the bastion, %d direct, want %d; stderr %q", code, dcode, tc.code, errOut)
			}
			if !bytes.Equal(out, dout) || !bytes.Equal(errOut, derr) {
				t.Fatalf("through the bastion %q / %q, direct %q / %q", out, errOut, dout, derr)
			}
			s := ux.session(t, tc.command)
			if !bytes.Equal(s.stream(recorder.KindOutput), out) || !bytes.Equal(s.stream(recorder.KindStderr), errOut) {
				t.Fatalf("recorded %q / %q", s.stream(recorder.KindOutput), s.stream(recorder.KindStderr))
			}
			if string(s.stream(recorder.KindExec)) != tc.command || s.end["exit-status"] != fmt.Sprint(tc.code) {
				t.Fatalf("exec frame %q, end %v", s.stream(recorder.KindExec), s.end)
			}
		})
	}

	t.Run("signal", func(t *testing.T) {
		const command = `echo before; kill -TERM $$`
		out, errOut, code := ux.sshIO(t, user, command, nil)
		dout, derr, dcode := ux.directIO(t, command, nil)
		// OpenSSH's client does not turn an exit-signal into an exit
		// status: it exits 255, as it does directly.
		if code != 255 || dcode != 255 || !bytes.Equal(out, dout) || !bytes.Equal(errOut, derr) {
			t.Fatalf("through the bastion %d %q %q, direct %d %q %q", code, out, errOut, dcode, dout, derr)
		}
		s := ux.session(t, command)
		if s.end["exit-signal"] != "TERM" {
			t.Fatalf("end: %v", s.end)
		}
	})

	t.Run("env", func(t *testing.T) {
		// sshd accepts all three; the bastion passes on only the
		// allow-listed ones.
		const command = `echo "$LANG|$LC_TIME|$EVIL"`
		out, errOut, code := ux.sshIO(t, user, command, nil, "-o", "SetEnv=LANG=C.UTF-8 LC_TIME=C EVIL=1")
		if code != 0 || string(out) != "C.UTF-8|C|\n" {
			t.Fatalf("exit %d, %q %q", code, out, errOut)
		}
		if dout, _, _ := ux.directIO(t, command, nil, "-o", "SetEnv=LANG=C.UTF-8 LC_TIME=C EVIL=1"); string(dout) != "C.UTF-8|C|1\n" {
			t.Fatalf("direct: %q", dout)
		}
		env, err := recorder.ParseAttrsPayload(ux.session(t, command).stream(recorder.KindEnv))
		if err != nil || len(env) != 2 || env["lang"] != "C.UTF-8" || env["lc_time"] != "C" {
			t.Fatalf("recorded env %v %v", env, err)
		}
	})

	t.Run("10MB_stdin", func(t *testing.T) {
		data := make([]byte, 10<<20)
		rand.Read(data)
		const command = `f=$(mktemp); cat >"$f"; wc -c <"$f"; sha256sum <"$f"; rm -f "$f"`
		out, errOut, code := ux.sshIO(t, user, command, data)
		sum := sha256.Sum256(data)
		want := fmt.Sprintf("%d\n%s  -\n", len(data), hex.EncodeToString(sum[:]))
		if code != 0 || string(out) != want {
			t.Fatalf("exit %d, output %q, want %q; stderr %q", code, out, want, errOut)
		}
		s := ux.session(t, command)
		if !bytes.Equal(s.stream(recorder.KindInput), data) {
			t.Fatalf("recorded %d bytes of input, not the %d sent", len(s.stream(recorder.KindInput)), len(data))
		}
	})

	// The journal names the target and the upstream certificate, and
	// sshd's own log names the session by that certificate.
	for _, s := range ux.sessions(t) {
		want := map[string]string{
			"target": "db1", "target-kind": "ssh", "upstream.address": ux.sshd.addr,
			"upstream.user": ux.login, "upstream.auth": "certificate",
		}
		for k, v := range want {
			if s.attrs[k] != v {
				t.Errorf("session %s: %s = %q, want %q", s.id, k, s.attrs[k], v)
			}
		}
		keyID := fmt.Sprintf("session=%s identity=agent-1@corp serial=%s", s.id, s.attrs["upstream.serial"])
		if s.attrs["upstream.serial"] == "" || s.end["upstream.key-id"] != keyID {
			t.Errorf("session %s: upstream serial %q, key ID %q, want %q", s.id, s.attrs["upstream.serial"], s.end["upstream.key-id"], keyID)
		}
		if !ux.sshd.logged(regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf("ID %q", keyID)))) {
			t.Errorf("sshd's log does not name %q:\n%s", keyID, ux.sshd.log)
		}
	}
	ux.verify(t)
}

// TestFrontUpstreamPTY: a terminal through the bastion is the terminal a
// direct connection gets, at the size the client asks for, resized when
// the client's window changes.
func TestFrontUpstreamPTY(t *testing.T) {
	t.Parallel()
	ux := startUpstream(t)
	const command = "stty size; tty >/dev/null && echo on-a-tty"
	out, _, code := ux.sshIO(t, ux.login+"@db1", command, nil, "-tt")
	dout, _, dcode := ux.directIO(t, command, nil, "-tt")
	if code != 0 || dcode != 0 || !bytes.Equal(out, dout) || !bytes.Contains(out, []byte("on-a-tty\r\n")) {
		t.Fatalf("through the bastion %d %q, direct %d %q", code, out, dcode, dout)
	}

	// A client with a window of its own, which then resizes it.
	signer := ux.certSigner(t)
	client, err := ssh.Dial("tcp", "127.0.0.1:"+ux.port, &ssh.ClientConfig{
		User: ux.login + "@db1", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: (&ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
			return ux.ts.auth.Host.Trusts(k, time.Now())
		}}).CheckHostKey,
		Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestPty("xterm", 30, 100, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	var buf syncBuffer
	sess.Stdout = &buf
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	waitFor := func(s string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(buf.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in %q", s, buf.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fmt.Fprintf(stdin, "stty size | tr ' ' x\n")
	waitFor("30x100")
	if err := sess.WindowChange(40, 120); err != nil {
		t.Fatal(err)
	}
	// x/crypto hands the bastion a channel's requests and its data on
	// separate paths, so a command typed right after the resize may be
	// recorded (and so reach the target) before it: ask again until the
	// new size shows.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "40x120") {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q", "40x120", buf.String())
		}
		fmt.Fprintf(stdin, "stty size | tr ' ' x\n")
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(stdin, "exit 5\n")
	var ee *ssh.ExitError
	if err := sess.Wait(); !errors.As(err, &ee) || ee.ExitStatus() != 5 {
		t.Fatalf("wait: %v", err)
	}
	client.Close()

	var resized, pty bool
	for _, s := range ux.sessions(t) {
		if s.attrs["request"] != "shell" {
			continue
		}
		for _, f := range s.frames {
			switch recorder.Kind(f.Kind) {
			case recorder.KindResize:
				resized = resized || len(f.Payload) == 8 && binary.BigEndian.Uint32(f.Payload) == 120 && binary.BigEndian.Uint32(f.Payload[4:]) == 40
			case recorder.KindPTY:
				a, err := recorder.ParseAttrsPayload(f.Payload)
				pty = pty || err == nil && a["cols"] == "100" && a["rows"] == "30" && a["term"] == "xterm"
			}
		}
		if !strings.Contains(string(s.stream(recorder.KindInput)), "exit 5") || s.end["exit-status"] != "5" {
			t.Errorf("shell session: input %q, end %v", s.stream(recorder.KindInput), s.end)
		}
	}
	if !resized || !pty {
		t.Fatalf("PTY request recorded %v, resize to 120x40 recorded %v", pty, resized)
	}
	ux.verify(t)
}

func readCert(t *testing.T, path string) *ssh.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ssh.Certificate)
}

// TestFrontUpstreamHostKey: the target's host key is verified as
// configured; a target whose key is not trusted, or that cannot be
// reached, ends the session with a message, journaled.
func TestFrontUpstreamHostKey(t *testing.T) {
	t.Parallel()
	ux := startUpstream(t)
	for _, target := range []string{"kh", "ca"} {
		command := "echo via-" + target
		if out, errOut, code := ux.sshIO(t, ux.login+"@"+target, command, nil); code != 0 || string(out) != "via-"+target+"\n" {
			t.Fatalf("%s: exit %d, %q %q", target, code, out, errOut)
		}
		s := ux.session(t, command)
		if s.end["upstream.host-key.sha256"] == "" {
			t.Fatalf("%s: end %v", target, s.end)
		}
	}
	for _, tc := range []struct{ target, message, detail string }{
		{"wrongkey", "bastion: wrongkey: the target's host key is not trusted\n", "not the pinned host_key"},
		{"wrongca", "bastion: wrongca: the target's host key is not trusted\n", "not a certificate from host_ca"},
		{"down", "bastion: down: the target cannot be reached\n", "connection refused"},
	} {
		command := "echo never-" + tc.target
		out, errOut, code := ux.sshIO(t, ux.login+"@"+tc.target, command, nil)
		if code != 255 || len(out) != 0 || string(errOut) != tc.message {
			t.Fatalf("%s: exit %d, %q %q", tc.target, code, out, errOut)
		}
		s := ux.session(t, command)
		if s.end["reason"] != "error" || !strings.Contains(s.end["detail"], tc.detail) {
			t.Fatalf("%s: end %v", tc.target, s.end)
		}
	}
	if strings.Contains(ux.sshd.log.String(), "never-") {
		t.Fatal("a refused target ran the command")
	}
	ux.verify(t)
}

// TestFrontUpstreamConfigErrors: mistakes in SSH targets are reported at
// their file:line:col.
func TestFrontUpstreamConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose_key")
	newKey(t, dir, "loose_key")
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	for _, tc := range []struct{ name, body, want string }{
		{"both", "  command = [\"sh\"]\n  ssh = \"h:22\"\n  host_key = \"" + key + "\"\n", `b.hcl:4:3: target "t" has both command and ssh`},
		{"no verification", "  ssh = \"h:22\"\n", `b.hcl:2:1: target "t": nothing verifies the target's host key`},
		{"bad address", "  ssh = \"h\"\n  host_key = \"" + key + "\"\n", `b.hcl:3:3: target "t": ssh = "h" is not HOST:PORT`},
		{"bad host key", "  ssh = \"h:22\"\n  host_key = \"ssh-ed25519 nope\"\n", `b.hcl:4:3: target "t": host_key is not one public key`},
		{"missing known_hosts", "  ssh = \"h:22\"\n  known_hosts = \"" + filepath.Join(dir, "none") + "\"\n", `b.hcl:4:3: target "t": known_hosts: open`},
		{"loose user key", "  ssh = \"h:22\"\n  host_key = \"" + key + "\"\n  user_key = \"" + loose + "\"\n", `b.hcl:5:3: target "t": user_key: ` + loose + ` is readable by others`},
		{"ssh option on a command", "  command = [\"sh\"]\n  host_key = \"" + key + "\"\n", `b.hcl:4:3: target "t": host_key is for ssh targets`},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			_, err := ParseConfig("b.hcl", []byte("ssh {}\ntarget \"t\" {\n"+tc.body+"}\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	cfg, err := ParseConfig("b.hcl", []byte("ssh {}\ntarget \"t\" {\n  ssh = \"h:22\"\n  host_ca = \""+key+"\"\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tc := cfg.Targets[0]; tc.SSH != "h:22" || tc.HostCA == nil || tc.HostKey != nil || tc.DialTimeout != front.DefaultDialTimeout || tc.Command != nil {
		t.Fatalf("target: %+v", tc)
	}
}

// TestFrontUpstreamForward: ssh -W through the username form to an SSH
// target reaches, from the target, a destination policy allows; the bytes
// each way are recorded as a forward session. A destination policy does
// not allow is refused, with the rule, and journaled.
func TestFrontUpstreamForward(t *testing.T) {
	t.Parallel()
	ux := startUpstream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	dest := ln.Addr().String()
	payload := bytes.Repeat([]byte("forwarded bytes\n"), 4096)
	out, errOut, code := ux.sshIO(t, ux.login+"@db1", "", payload, "-W", dest)
	if code != 0 || !bytes.Equal(out, payload) {
		t.Fatalf("-W %s: exit %d, %d bytes back (want %d), stderr %q", dest, code, len(out), len(payload), errOut)
	}
	var fwd *recordedSession
	for _, s := range ux.sessions(t) {
		if s.attrs["request"] == "direct-tcpip" {
			fwd = &s
		}
	}
	if fwd == nil || fwd.attrs["forward.destination"] != dest || fwd.attrs["policy.rule"] != "role:agents" || fwd.attrs["policy.hash"] == "" ||
		fwd.attrs["identity"] != "agent-1@corp" || fwd.end["reason"] != "closed" {
		t.Fatalf("forward recorded as %+v", fwd)
	}
	if in, o := fwd.stream(recorder.KindInput), fwd.stream(recorder.KindOutput); !bytes.Equal(in, payload) || !bytes.Equal(o, payload) {
		t.Fatalf("recorded %d bytes in and %d out, want %d each", len(in), len(o), len(payload))
	}

	before := len(ux.ts.events(t, events.ChannelRefused))
	_, errOut, code = ux.sshIO(t, ux.login+"@db1", "", nil, "-W", "192.0.2.1:22")
	if code == 0 || !strings.Contains(string(errOut), "policy denies a port forward to 192.0.2.1:22") {
		t.Fatalf("denied forward: exit %d, stderr %q", code, errOut)
	}
	evs := ux.ts.events(t, events.ChannelRefused)[before:]
	if len(evs) != 1 || evs[0]["reason"] != events.ReasonPolicyDenied || evs[0]["destination"] != "192.0.2.1:22" || !strings.Contains(evs[0]["detail"], "rule") {
		t.Fatalf("journaled %v", evs)
	}
	ux.verify(t)
}
