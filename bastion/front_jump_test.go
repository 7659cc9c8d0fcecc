package bastion

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// jumpIO runs the OpenSSH client to user@dest through the bastion as a
// ProxyJump host, logging in to the bastion as jumpUser. Both hops read
// one config file, so both use the same key and certificate and the same
// known_hosts file (only the host CA's @cert-authority line), with
// StrictHostKeyChecking=yes.
func (fx *frontFixture) jumpIO(t *testing.T, key, jumpUser, dest, command string, stdin []byte) (stdout, stderr []byte, code int) {
	t.Helper()
	return fx.jumpWith(t, fmt.Sprintf("Host *\n  IdentityFile %s\n  CertificateFile %[1]s-cert.pub\n", key), jumpUser, dest, command, stdin)
}

// jumpWith is jumpIO with hosts, ssh_config text that says which key
// each hop uses.
func (fx *frontFixture) jumpWith(t *testing.T, hosts, jumpUser, dest, command string, stdin []byte) (stdout, stderr []byte, code int) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(hosts+fmt.Sprintf(`Host *
  IdentitiesOnly yes
  BatchMode yes
  StrictHostKeyChecking yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile none
  PasswordAuthentication no
  ConnectTimeout 10
`, fx.knownHosts)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-F", cfg, "-o", "ProxyJump=" + jumpUser + "@127.0.0.1:" + fx.port, dest}
	if command != "" {
		args = append(args, command)
	}
	return execSSH(t, stdin, nil, args...)
}

// TestFrontJumpExec: ssh -J to a local command target runs the command
// as the username form does, recorded the same way, and the inner
// connection is journaled as a jump by the outer client's address.
func TestFrontJumpExec(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	out, errOut, code := fx.jumpIO(t, fx.key, "ops", "ops@box", "echo hi; exit 42", nil)
	if code != 42 || string(out) != "hi\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	ss := fx.sessions(t)
	if len(ss) != 1 {
		t.Fatalf("%d sessions recorded", len(ss))
	}
	s := ss[0]
	want := recorder.Attrs{
		"kind": "ssh", "request": "exec", "identity": "agent-1@corp", "serial": fmt.Sprint(fx.serial),
		"login": "ops", "target": "box", "command": "echo hi; exit 42", "target-kind": "command",
	}
	for k, v := range want {
		if s.attrs[k] != v {
			t.Errorf("session attribute %s = %q, want %q", k, s.attrs[k], v)
		}
	}
	if !strings.HasPrefix(s.attrs["client"], "127.0.0.1:") {
		t.Errorf("client = %q, want the outer connection's address", s.attrs["client"])
	}
	if s.output() != "hi\n" || s.end["exit-status"] != "42" {
		t.Errorf("recorded output %q, end %v", s.output(), s.end)
	}
	jumps := fx.ts.events(t, events.Jump)
	if len(jumps) != 1 {
		t.Fatalf("%d jump events: %v", len(jumps), jumps)
	}
	j := jumps[0]
	if j["route"] != front.RouteJump || j["target"] != "box" || j["destination"] != "box:22" || j["login"] != "ops" ||
		j["outer.user"] != "ops" || j["serial"] != fmt.Sprint(fx.serial) || j["client"] != s.attrs["client"] {
		t.Errorf("jump event %v", j)
	}
	fx.verify(t)
}

// TestFrontJumpPipes: stdin, stdout and stderr pass through ssh -J byte
// for byte, and a terminal session gets its size.
func TestFrontJumpPipes(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<14)
	out, errOut, code := fx.jumpIO(t, fx.key, "ops", "ops@box", "cat; echo to-stderr >&2; exit 3", data)
	if code != 3 || !bytes.Equal(out, data) || !bytes.Contains(errOut, []byte("to-stderr\n")) {
		t.Fatalf("exit %d, %d bytes out, stderr %q", code, len(out), errOut)
	}
	ss := fx.sessions(t)
	if len(ss) != 1 || !bytes.Equal(ss[0].stream(recorder.KindInput), data) || !bytes.Equal(ss[0].stream(recorder.KindOutput), data) {
		t.Fatalf("%d sessions, or the recording differs", len(ss))
	}
	fx.verify(t)
}

// TestFrontJumpUpstream: ssh -J to an SSH target gives what a direct
// connection gives.
func TestFrontJumpUpstream(t *testing.T) {
	t.Parallel()
	ux := startUpstream(t)
	for _, tc := range []struct {
		name, command string
		code          int
	}{
		{"exit 0", `printf 'a\000b\r\n'; echo out; echo err >&2; exit 0`, 0},
		{"exit 42", `id -un; pwd; exit 42`, 42},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			wantOut, wantErr, wantCode := ux.directIO(t, tc.command, nil)
			out, errOut, code := ux.jumpIO(t, ux.key, ux.login, ux.login+"@db1", tc.command, nil)
			if code != tc.code || wantCode != tc.code {
				t.Fatalf("exit %d, direct %d, want %d; stderr %q", code, wantCode, tc.code, errOut)
			}
			if !bytes.Equal(out, wantOut) || !bytes.Equal(errOut, wantErr) {
				t.Fatalf("through -J: %q %q\ndirect: %q %q", out, errOut, wantOut, wantErr)
			}
			s := ux.session(t, tc.command)
			if s.attrs["target"] != "db1" || s.attrs["target-kind"] != "ssh" || s.end["exit-status"] != fmt.Sprint(tc.code) ||
				!bytes.Equal(s.stream(recorder.KindOutput), wantOut) {
				t.Fatalf("recorded %v, end %v", s.attrs, s.end)
			}
		})
	}
	ux.verify(t)
}

// TestFrontJumpRefused: a direct-tcpip channel to anything but a target
// name is refused with the same answer for an unknown target and an
// address, and journaled; an inner login the certificate does not name
// is refused and journaled as a jump; none starts a session.
func TestFrontJumpRefused(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	for _, tc := range []struct{ name, dest, reason, destination string }{
		{"unknown target", "ops@nowhere", events.ReasonNotTargetName, "nowhere:22"},
		{"address", "ops@127.0.0.1", events.ReasonNotTargetName, "127.0.0.1:22"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			before := len(fx.ts.events(t, events.ChannelRefused))
			out, errOut, code := fx.jumpIO(t, fx.key, "ops", tc.dest, "echo in", nil)
			if code != 255 || len(out) != 0 || !strings.Contains(string(errOut), "administratively prohibited: bastion: port forwarding is not allowed") {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			evs := fx.ts.events(t, events.ChannelRefused)[before:]
			if len(evs) != 1 || evs[0]["reason"] != tc.reason || evs[0]["destination"] != tc.destination || evs[0]["channel"] != "direct-tcpip" ||
				evs[0]["identity"] != "agent-1@corp" || evs[0]["serial"] != fmt.Sprint(fx.serial) || !strings.HasPrefix(evs[0]["client"], "127.0.0.1:") {
				t.Fatalf("journaled %v", evs)
			}
		})
	}
	t.Run("inner_principal", func(t *testing.T) {
		before := len(fx.ts.events(t, events.AuthRefused))
		out, errOut, code := fx.jumpIO(t, fx.key, "ops", "deploy@box", "echo in", nil)
		if code != 255 || len(out) != 0 || !strings.Contains(string(errOut), "Permission denied") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		var found bool
		for _, e := range fx.ts.events(t, events.AuthRefused)[before:] {
			found = found || e["reason"] == events.ReasonPrincipal && e["route"] == front.RouteJump && e["user"] == "deploy" && e["target"] == "box" &&
				e["outer.user"] == "ops" && strings.HasPrefix(e["client"], "127.0.0.1:")
		}
		if !found {
			t.Fatalf("no jump refusal journaled: %v", fx.ts.events(t, events.AuthRefused)[before:])
		}
	})
	if ss := fx.sessions(t); len(ss) != 0 {
		t.Fatalf("refused jumps started %d sessions", len(ss))
	}
	if n := len(fx.ts.events(t, events.Jump)); n != 0 {
		t.Fatalf("%d jumps journaled", n)
	}
	fx.verify(t)
}

// TestFrontJumpHostOnly: the outer connection of ssh -J (user name LOGIN
// alone) runs no session of its own.
func TestFrontJumpHostOnly(t *testing.T) {
	t.Parallel()
	fx := startFront(t)
	out, code := fx.ssh(t, fx.key, "ops", "echo in")
	if code != 255 || strings.Contains(out, "in\n") || !strings.Contains(out, "name a target") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	var found bool
	for _, e := range fx.ts.events(t, events.AuthRefused) {
		found = found || e["reason"] == events.ReasonNoTarget && e["identity"] == "agent-1@corp" && e["serial"] == fmt.Sprint(fx.serial)
	}
	if !found {
		t.Fatalf("no %s refusal journaled: %v", events.ReasonNoTarget, fx.ts.events(t, events.AuthRefused))
	}
	if ss := fx.sessions(t); len(ss) != 0 {
		t.Fatalf("%d sessions", len(ss))
	}
	fx.verify(t)
}

// TestFrontJumpOtherCertificate: the inner connection must present the
// outer connection's certificate; another one the bastion issued, to the
// same identity and login, is refused and journaled.
func TestFrontJumpOtherCertificate(t *testing.T) {
	t.Parallel()
	needTool(t, "ssh")
	m := startOP(t)
	ts := startServer(t, m, strings.ReplaceAll(frontConfig, "%LOGIN%", "ops"))
	dir := t.TempDir()
	issue := func(name string) (string, uint64) {
		key, pub := newKey(t, dir, name)
		resp, err := ts.client.Certificate(context.Background(), mint(t, m, agentClaims(m, "agent-1")), certauth.CertificateRequest{PublicKey: pub, Logins: []string{"ops"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return key, resp.Serial
	}
	outerKey, outerSerial := issue("outer")
	innerKey, innerSerial := issue("inner")
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(strings.Join(ts.auth.KnownHostsLines("*"), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(ts.SSHAddr())
	if err != nil {
		t.Fatal(err)
	}
	fx := &frontFixture{ts: ts, dir: dir, key: outerKey, serial: outerSerial, knownHosts: kh, port: port}
	hosts := fmt.Sprintf("Host box\n  IdentityFile %s\n  CertificateFile %[1]s-cert.pub\nHost 127.0.0.1\n  IdentityFile %s\n  CertificateFile %[2]s-cert.pub\n", innerKey, outerKey)
	out, errOut, code := fx.jumpWith(t, hosts, "ops", "ops@box", "echo in", nil)
	if code != 255 || len(out) != 0 || !strings.Contains(string(errOut), "Permission denied") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var found bool
	for _, e := range ts.events(t, events.AuthRefused) {
		found = found || e["reason"] == events.ReasonJumpCertificate && e["route"] == front.RouteJump && e["serial"] == fmt.Sprint(innerSerial) &&
			e["outer.serial"] == fmt.Sprint(outerSerial)
	}
	if !found {
		t.Fatalf("no %s refusal journaled: %v", events.ReasonJumpCertificate, ts.events(t, events.AuthRefused))
	}
	// The same configuration with the outer key on both hops works.
	hosts = fmt.Sprintf("Host *\n  IdentityFile %s\n  CertificateFile %[1]s-cert.pub\n", outerKey)
	if out, errOut, code := fx.jumpWith(t, hosts, "ops", "ops@box", "echo in", nil); code != 0 || string(out) != "in\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if ss := fx.sessions(t); len(ss) != 1 {
		t.Fatalf("%d sessions", len(ss))
	}
	fx.verify(t)
}
