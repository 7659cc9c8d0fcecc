package bastion

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// Refusals of issue 4's "Must show" list not covered elsewhere: agent
// forwarding requested, a key offered but not proved, and port forwarding
// (-L, -R) through the username form. ssh -J with StrictHostKeyChecking=yes
// and only the @cert-authority line is front_jump_test.go's jumpWith.

// startAgent runs an ssh-agent of the test's own in the foreground (so the
// test owns its process), holding one throwaway key, and returns its
// socket.
func startAgent(t *testing.T) string {
	t.Helper()
	agentBin, addBin := needTool(t, "ssh-agent"), needTool(t, "ssh-add")
	// A socket path must stay short: a directory of its own under the
	// system's temporary directory, not the test's (long) one.
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	cmd := exec.Command(agentBin, "-D", "-a", sock)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// The socket file appears when ssh-agent binds it, before it listens:
	// it is ready once a connection is accepted.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent did not make its socket: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	key, _ := newKey(t, dir, "throwaway")
	add := exec.Command(addBin, key)
	add.Env = agentEnv(sock)
	if b, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, b)
	}
	return sock
}

// agentEnv is the test's environment with SSH_AUTH_SOCK set to sock.
func agentEnv(sock string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SSH_AUTH_SOCK=") {
			env = append(env, e)
		}
	}
	return append(env, "SSH_AUTH_SOCK="+sock)
}

// certSigner is the fixture's key with its certificate, for x/crypto
// clients.
func (fx *frontFixture) certSigner(t *testing.T) ssh.Signer {
	t.Helper()
	keyPEM, err := os.ReadFile(fx.key)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewCertSigner(readCert(t, fx.key+"-cert.pub"), key)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// runSSH runs the OpenSSH client with args and env, and returns stdout,
// stderr and its exit code.
func runSSH(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	out, errb, code := execSSH(t, nil, env, args...)
	return string(out), string(errb), code
}

// frontArgs are the client options of fx.sshIO, for user.
func (fx *frontFixture) frontArgs(user string, opts ...string) []string {
	args := []string{
		"-F", "none", "-i", fx.key, "-p", fx.port,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + fx.knownHosts,
		"-o", "GlobalKnownHostsFile=none", "-o", "ConnectTimeout=10",
	}
	return append(append(args, opts...), user+"@127.0.0.1")
}

// agentProbe prints the forwarded agent's socket, if any, and what an
// agent there holds; it exits 0 whether or not there is one.
const agentProbe = `echo "sock=[$SSH_AUTH_SOCK]"; ssh-add -l >/dev/null 2>&1; echo "agent=$?"`

// TestFrontMustShowAgentForwarding: ssh -A with an agent holding a key:
// the bastion refuses the forwarding with a message on the client's
// stderr, the command still runs, and neither a local command target nor
// an upstream sshd sees an agent. The same probe, straight to the sshd
// with a certificate that permits agent forwarding, does see the agent,
// so the probe can tell.
func TestFrontMustShowAgentForwarding(t *testing.T) {
	t.Parallel()
	ux := startUpstream(t)
	sock := startAgent(t)
	env := agentEnv(sock)

	// The control: direct to the sshd, with a target-CA certificate that
	// permits agent forwarding, the agent is there.
	fwd, line := newKey(t, ux.dir, "fwd")
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{
		Key: pub, Serial: 8, CertType: ssh.UserCert, KeyId: "agent-control@test",
		ValidPrincipals: []string{ux.login},
		ValidAfter:      uint64(time.Now().Add(-time.Minute).Unix()),
		ValidBefore:     uint64(time.Now().Add(time.Hour).Unix()),
		Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-agent-forwarding": ""}},
	}
	if err := ux.ts.auth.Target.Sign(cert); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fwd+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runSSH(t, env, "-F", "none", "-i", fwd, "-p", ux.sshd.port,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
		"-A", ux.login+"@127.0.0.1", agentProbe)
	if code != 0 || strings.Contains(out, "sock=[]") || !strings.Contains(out, "agent=0") {
		t.Fatalf("direct with agent forwarding: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	for _, target := range []string{"box", "db1"} {
		t.Run(target, func(t *testing.T) {
			command := agentProbe + "; echo " + target
			out, errOut, code := runSSH(t, env, append(ux.frontArgs(ux.login+"@"+target, "-A"), command)...)
			if code != 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			// ssh-add exits 2 when it cannot reach an agent, 1 when the
			// agent holds no key; neither when one is forwarded.
			if !strings.Contains(out, "sock=[]\n") || strings.Contains(out, "agent=0") || !strings.HasSuffix(out, target+"\n") {
				t.Fatalf("the target saw an agent: stdout %q", out)
			}
			if !strings.Contains(errOut, "bastion: agent forwarding is refused") {
				t.Fatalf("no refusal on stderr: %q", errOut)
			}
			s := ux.session(t, command)
			if s.end["exit-status"] != "0" || !bytes.Equal(s.stream(recorder.KindOutput), []byte(out)) {
				t.Fatalf("recorded output %q, end %v", s.stream(recorder.KindOutput), s.end)
			}
			// The refusal is journaled.
			var evs int
			for _, e := range ux.ts.events(t, events.RequestRefused) {
				if e["reason"] == "agent_forwarding_refused" && e["request"] == "auth-agent-req@openssh.com" && e["identity"] != "" {
					evs++
				}
			}
			if evs == 0 {
				t.Fatal("the agent forwarding refusal is not journaled")
			}
		})
	}
	ux.verify(t)
}

// unprovedSigner offers a certificate but does not prove its key: Sign
// fails (the client gives up), or signs with another key (the server gets
// a signature that does not verify). proved is the control: the real
// signature. signed counts the signing attempts, which x/crypto's client
// makes only after the server said the offered key would do.
type unprovedSigner struct {
	ssh.Signer
	mode   string // "fail", "other-key" or "proved"
	other  ssh.Signer
	signed atomic.Int32
}

func (s *unprovedSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	s.signed.Add(1)
	switch s.mode {
	case "fail":
		return nil, errors.New("this client does not hold the private key")
	case "other-key":
		return s.other.Sign(r, data)
	}
	return s.Signer.Sign(r, data)
}

// TestFrontMustShowUnprovedKey: a valid certificate the bastion issued,
// offered by an x/crypto client that does not prove the private key: the
// bastion says the key would do (the client goes on to sign), but
// authentication fails and no session starts. The same wrapper with the
// real signature logs in, so the wrapper is not what fails.
func TestFrontMustShowUnprovedKey(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	certSigner := fx.certSigner(t)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	other, err := ssh.NewSignerFromKey(otherPriv)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(s ssh.Signer) (*ssh.Client, error) {
		return ssh.Dial("tcp", "127.0.0.1:"+fx.port, &ssh.ClientConfig{
			User: "ops@box", Auth: []ssh.AuthMethod{ssh.PublicKeys(s)},
			HostKeyCallback: (&ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
				return fx.ts.auth.Host.Trusts(k, time.Now())
			}}).CheckHostKey,
			Timeout: 10 * time.Second,
		})
	}
	for _, mode := range []string{"fail", "other-key"} {
		t.Run(mode, func(t *testing.T) {
			before := len(fx.ts.events(t, events.AuthRefused))
			s := &unprovedSigner{Signer: certSigner, mode: mode, other: other}
			c, err := dial(s)
			if err == nil {
				c.Close()
				t.Fatal("logged in without proving the key")
			}
			if s.signed.Load() == 0 {
				t.Fatalf("the client never got to sign (%v): the offer itself was refused", err)
			}
			if ss := fx.sessions(t); len(ss) != 0 {
				t.Fatalf("%d sessions started", len(ss))
			}
			// The refusal is journaled when the connection ends, which
			// the server sees a moment after the client gave up.
			var evs []recorder.Attrs
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				evs = fx.ts.events(t, events.AuthRefused)[before:]
				if len(evs) > 0 || time.Now().After(deadline) {
					break
				}
			}
			if len(evs) != 1 || evs[0]["reason"] != events.ReasonKeyNotProved || evs[0]["user"] != "ops@box" || evs[0]["key.sha256"] == "" {
				t.Fatalf("client error: %v; refusals journaled: %d %v", err, len(evs), evs)
			}
		})
	}
	t.Run("proved", func(t *testing.T) {
		c, err := dial(&unprovedSigner{Signer: certSigner, mode: "proved"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := sess.Output("echo proved")
		if err != nil || string(out) != "proved\n" {
			t.Fatalf("%q %v", out, err)
		}
	})
	if ss := fx.sessions(t); len(ss) != 1 {
		t.Fatalf("%d sessions, want the proved one alone", len(ss))
	}
	fx.verify(t)
}

// TestFrontMustShowPortForwarding: through the username form to a command
// target, ssh -L (a local socket forwarded to an address) and ssh -W are
// refused (a command has no network to forward into) and journaled as
// ssh.channel_refused; ssh -R is refused (the client warns) and the
// session runs on. TestFrontUpstreamForward has forwards to an SSH target
// that policy allows and denies.
func TestFrontMustShowPortForwarding(t *testing.T) {
	t.Parallel()
	const forwardToCommand = "bastion: port forwarding reaches only SSH targets, and box is a command"
	fx := startFront(t)
	want := func(t *testing.T, before int, dest string) {
		t.Helper()
		evs := fx.ts.events(t, events.ChannelRefused)[before:]
		if len(evs) != 1 || evs[0]["reason"] != events.ReasonForwardCommandTarget || evs[0]["destination"] != dest || evs[0]["channel"] != "direct-tcpip" ||
			evs[0]["identity"] != "agent-1@corp" || evs[0]["serial"] != fmt.Sprint(fx.serial) || evs[0]["user"] != "ops@box" ||
			evs[0]["route"] != front.RouteUser || !strings.HasPrefix(evs[0]["client"], "127.0.0.1:") {
			t.Fatalf("journaled %v", evs)
		}
	}

	t.Run("W", func(t *testing.T) {
		before := len(fx.ts.events(t, events.ChannelRefused))
		_, errOut, code := fx.sshIO(t, "ops@box", "", nil, "-W", "127.0.0.1:9")
		if code == 0 || !strings.Contains(string(errOut), "administratively prohibited: "+forwardToCommand) {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		want(t, before, "127.0.0.1:9")
	})

	t.Run("L", func(t *testing.T) {
		before := len(fx.ts.events(t, events.ChannelRefused))
		dir, err := os.MkdirTemp("", "fwd")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		sock := filepath.Join(dir, "l")
		cmd := exec.Command(needTool(t, "ssh"), append(fx.frontArgs("ops@box", "-L", sock+":127.0.0.1:9"), "cat; echo session-ran")...)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		waitUntil := func(what string, ok func() bool) {
			t.Helper()
			for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no %s: stdout %q, stderr %q", what, out.String(), errOut.String())
				}
			}
		}
		// The forwarding's local socket exists once ssh is logged in.
		var conn net.Conn
		waitUntil("forwarding socket", func() bool {
			conn, err = net.Dial("unix", sock)
			return err == nil
		})
		// The channel is refused: ssh closes the local connection.
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		if n, err := io.Copy(io.Discard, conn); err != nil || n != 0 {
			t.Fatalf("the forwarded connection read %d bytes, %v", n, err)
		}
		conn.Close()
		waitUntil("refusal", func() bool {
			return strings.Contains(errOut.String(), "administratively prohibited: "+forwardToCommand)
		})
		stdin.Close()
		if err := cmd.Wait(); err != nil || out.String() != "session-ran\n" {
			t.Fatalf("the session: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
		}
		want(t, before, "127.0.0.1:9")
	})

	t.Run("R", func(t *testing.T) {
		before := len(fx.ts.events(t, events.RequestRefused))
		out, errOut, code := fx.sshIO(t, "ops@box", "echo session-ran", nil, "-R", "127.0.0.1:40000:127.0.0.1:9")
		if code != 0 || string(out) != "session-ran\n" || !strings.Contains(string(errOut), "remote port forwarding failed") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		evs := fx.ts.events(t, events.RequestRefused)[before:]
		if len(evs) != 1 || evs[0]["reason"] != "remote_forwarding_refused" || evs[0]["request"] != "tcpip-forward" || evs[0]["identity"] == "" {
			t.Fatalf("-R refusal journaled as %v", evs)
		}
		_, errOut, code = fx.sshIO(t, "ops@box", "echo exit-on-forward-failure", nil, "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:40000:127.0.0.1:9")
		if code != 255 || !strings.Contains(string(errOut), "remote port forwarding failed") {
			t.Fatalf("ExitOnForwardFailure: exit %d, stderr %q", code, errOut)
		}
	})

	// -W starts no session; -L's and -R's ran and were recorded.
	ran := map[string]int{}
	for _, s := range fx.sessions(t) {
		ran[s.attrs["command"]]++
	}
	if ran["cat; echo session-ran"] != 1 || ran["echo session-ran"] != 1 {
		t.Fatalf("sessions recorded: %v", ran)
	}
	fx.verify(t)
}
