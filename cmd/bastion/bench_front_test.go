package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/sshdtest"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
)

// frontRig is "bastion serve" in its own process with an upstream sshd
// target, beside an OpenSSH jump host in front of the same sshd, and a
// client key whose certificate all three accept.
type frontRig struct {
	ssh, login, key, known string
	home, bastionAddr      string
	bastionPort            string
	jumpPort, targetPort   string
	server                 *exec.Cmd
}

func newFrontRig(b *testing.B) *frontRig {
	b.Helper()
	r := &frontRig{ssh: sshdtest.Need(b, "ssh"), login: "root"}
	if u, err := user.Current(); err == nil {
		r.login = u.Username
	}
	m := oidctest.StartMock(b, nil)
	dir := b.TempDir()
	// The target trusts the target CA (the bastion) and the user CA (the
	// client going direct or through the OpenSSH jump host).
	home, trust := rigHome(b, dir, true)
	target := sshdtest.Start(b, "TrustedUserCAKeys "+trust)
	jump := sshdtest.Start(b, "TrustedUserCAKeys "+trust, "AllowTcpForwarding yes")
	r.targetPort, r.jumpPort = target.Port, jump.Port
	targetPub, err := os.ReadFile(target.HostKey + ".pub")
	if err != nil {
		b.Fatal(err)
	}
	jumpPub, err := os.ReadFile(jump.HostKey + ".pub")
	if err != nil {
		b.Fatal(err)
	}

	cfg := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
home = %q
api {
  listen            = "127.0.0.1:0"
  rate_per_identity = -1
  rate_per_address  = -1
}
ssh {
  listen = "127.0.0.1:0"
  # every benchmark client comes from 127.0.0.1
  max_connections_per_address = 2000
}
identity_provider "corp" {
  issuer    = %q
  audiences = [%q]
}
role "agents" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  targets = ["box", "db"]
  logins  = [%[4]q]
  pty     = true
  shell   = true
  # port forwarding for the OpenSSH jump host the bastion is measured against
  permit = ["permit-pty", "permit-port-forwarding"]
}
# The same sshd, its output masked with every built-in detector.
role "agents-masked" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  targets = ["dbm"]
  logins  = [%[4]q]
  pty     = true
  shell   = true
  masking = "all"
  permit  = ["permit-pty", "permit-port-forwarding"]
}
target "db" {
  ssh      = %[5]q
  host_key = %[6]q
}
target "dbm" {
  ssh      = %[5]q
  host_key = %[6]q
}
target "box" { command = ["/bin/sh"] }
`, home, m.Issuer(), m.ClientID, r.login, target.Addr, strings.TrimSpace(string(targetPub)))), 0o600); err != nil {
		b.Fatal(err)
	}
	sp := startServeProcess(b, cfg, true)
	r.bastionPort = sp.ssh[strings.LastIndexByte(sp.ssh, ':')+1:]
	r.home, r.bastionAddr, r.server = home, sp.ssh, sp.cmd

	// The client's key and certificate, through the real exchange.
	r.key, r.known = agentKey(b, m, sp, dir, "agent-1",
		"[127.0.0.1]:"+target.Port+" "+strings.TrimSpace(string(targetPub)),
		"[127.0.0.1]:"+jump.Port+" "+strings.TrimSpace(string(jumpPub)))
	return r
}

// rigHome makes a bastion home in dir with its CAs ("bastion ca init"),
// and the file of CA keys an sshd target trusts: the target CA (the
// bastion's upstream certificates) and, with userCA, the user CA (clients
// that go to the target directly).
func rigHome(tb testing.TB, dir string, userCA bool) (home, trust string) {
	tb.Helper()
	home = filepath.Join(dir, "home")
	if code, _, stderr := runArgs("--home", home, "ca", "init"); code != 0 {
		tb.Fatalf("ca init: %s", stderr)
	}
	auth, err := certauth.LoadAuthorities(home, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	lines := auth.Target.AuthorizedKeys()
	if userCA {
		lines = slices.Concat(lines, auth.User.AuthorizedKeys())
	}
	trust = filepath.Join(dir, "trusted_ca")
	if err := os.WriteFile(trust, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return home, trust
}

// mockToken is an ID token of the mock provider for sub, valid for an
// hour.
func mockToken(tb testing.TB, m *mockoidc.MockOIDC, sub string) string {
	tb.Helper()
	now := time.Now()
	token, err := m.Keypair.SignJWT(jwt.MapClaims{"iss": m.Issuer(), "sub": sub, "aud": m.ClientID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

// agentKey makes an Ed25519 key in dir and its certificate for sub,
// through the real exchange with the serve at sp, and a known_hosts file
// of the bastion's host CA and the extra lines. It returns both paths.
func agentKey(tb testing.TB, m *mockoidc.MockOIDC, sp *serveProcess, dir, sub string, extra ...string) (key, known string) {
	tb.Helper()
	_, priv, _ := ed25519.GenerateKey(nil)
	block, _ := ssh.MarshalPrivateKey(priv, "")
	key = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	c, err := apiclient.NewClient(sp.api, apiclient.ClientOptions{Fingerprint: sp.fingerprint})
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := c.Certificate(context.Background(), mockToken(tb, m, sub), certauth.CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub)), TTL: "1h"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(key+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	known = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(strings.Join(append(resp.KnownHosts, extra...), "\n")+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return key, known
}

// run runs ssh with the rig's options and returns how long it took.
func (r *frontRig) run(b *testing.B, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(r.ssh, append(r.base(), args...)...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("ssh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return time.Since(t0)
}

// base are the client options of every hop.
func (r *frontRig) base() []string {
	return []string{"-F", "none", "-i", r.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + r.known, "-o", "LogLevel=ERROR"}
}

// box is the bastion's local command target.
func (r *frontRig) box() []string {
	return []string{"-p", r.bastionPort, r.login + "@box@127.0.0.1"}
}

// bastion and jump are the two ways to the same sshd.
func (r *frontRig) bastion(extra ...string) []string {
	return append(append([]string{"-p", r.bastionPort}, extra...), r.login+"@db@127.0.0.1")
}

// masked is bastion to the same sshd with every masking detector on.
func (r *frontRig) masked(extra ...string) []string {
	return append(append([]string{"-p", r.bastionPort}, extra...), r.login+"@dbm@127.0.0.1")
}

// jump goes through the OpenSSH jump host, as -J does (ssh -W through it;
// spelled as a ProxyCommand so that the jump hop gets the same options,
// which -J does not pass on).
func (r *frontRig) jump(extra ...string) []string {
	proxy := r.ssh + " " + strings.Join(r.base(), " ") + " -p " + r.jumpPort + " -W %h:%p " + r.login + "@127.0.0.1"
	return append(append([]string{"-o", "ProxyCommand=" + proxy, "-p", r.targetPort}, extra...), r.login+"@127.0.0.1")
}

func (r *frontRig) direct(extra ...string) []string {
	return append(append([]string{"-p", r.targetPort}, extra...), r.login+"@127.0.0.1")
}

func benchMiB() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_FRONT_MIB")); err == nil && n > 0 {
		return n
	}
	return 256
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkFrontBulk is bulk output from a real sshd target, read by the
// real ssh client through the bastion (recorded, record-then-forward)
// against through an OpenSSH -J jump host (unrecorded), alternating in
// each iteration, and the same with a terminal (-tt) through the bastion
// against -tt direct. BENCH_FRONT_MIB sets the size (default 256 MiB).
func BenchmarkFrontBulk(b *testing.B) {
	r := newFrontRig(b)
	mib := benchMiB()
	command := fmt.Sprintf("head -c %dM /dev/zero", mib)
	var viaBastion, viaJump, ttBastion, ttDirect []time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			viaBastion = append(viaBastion, r.run(b, append(r.bastion(), command)...))
			viaJump = append(viaJump, r.run(b, append(r.jump(), command)...))
		} else {
			viaJump = append(viaJump, r.run(b, append(r.jump(), command)...))
			viaBastion = append(viaBastion, r.run(b, append(r.bastion(), command)...))
		}
		ttBastion = append(ttBastion, r.run(b, append(r.bastion("-tt"), command)...))
		ttDirect = append(ttDirect, r.run(b, append(r.direct("-tt"), command)...))
	}
	mbps := func(d time.Duration) float64 { return float64(mib) * (1 << 20) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(median(viaBastion)), "bastion-MB/s")
	b.ReportMetric(mbps(median(viaJump)), "jump-MB/s")
	b.ReportMetric(median(viaJump).Seconds()/median(viaBastion).Seconds(), "bastion/jump")
	b.ReportMetric(mbps(median(ttBastion)), "bastion-tt-MB/s")
	b.ReportMetric(mbps(median(ttDirect)), "direct-tt-MB/s")
	b.ReportMetric(median(ttDirect).Seconds()/median(ttBastion).Seconds(), "bastion-tt/direct-tt")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkFrontTrue is the latency of "ssh … true": connect, authenticate,
// run nothing, through the bastion against through an OpenSSH -J jump
// host, alternating.
func BenchmarkFrontTrue(b *testing.B) {
	r := newFrontRig(b)
	var viaBastion, viaJump []time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			viaBastion = append(viaBastion, r.run(b, append(r.bastion(), "true")...))
			viaJump = append(viaJump, r.run(b, append(r.jump(), "true")...))
		} else {
			viaJump = append(viaJump, r.run(b, append(r.jump(), "true")...))
			viaBastion = append(viaBastion, r.run(b, append(r.bastion(), "true")...))
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(median(viaBastion)), "bastion-ms")
	b.ReportMetric(ms(median(viaJump)), "jump-ms")
	b.ReportMetric(median(viaBastion).Seconds()/median(viaJump).Seconds(), "bastion/jump")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkFrontLoad runs 100 concurrent exec sessions through the
// bastion, each sending 10 MB through "cat" on a local command target and
// reading it back: every byte must arrive (SHA-256 both ways) and, at the
// end, the journal that recorded all of it must verify. It reports the
// aggregate rate.
func BenchmarkFrontLoad(b *testing.B) {
	const sessions, size = 100, 10 << 20
	r := newFrontRig(b)
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	in := filepath.Join(b.TempDir(), "in")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		b.Fatal(err)
	}
	want := sha256.Sum256(data)
	var elapsed time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, sessions)
		for range sessions {
			wg.Go(func() {
				f, err := os.Open(in)
				if err != nil {
					errs <- err
					return
				}
				defer f.Close()
				h := sha256.New()
				cmd := exec.Command(r.ssh, append(append(r.base(), r.box()...), "cat")...)
				var stderr strings.Builder
				cmd.Stdin, cmd.Stdout, cmd.Stderr = f, h, &stderr
				if err := cmd.Run(); err != nil {
					errs <- fmt.Errorf("ssh: %v: %s", err, stderr.String())
					return
				}
				if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
					errs <- errors.New("the data came back different")
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		elapsed += time.Since(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*sessions*size*2)/elapsed.Seconds()/1e6, "MB/s-both-ways")
	b.ReportMetric(0, "ns/op")
	if code, out, errOut := runArgs("--home", r.home, "verify", "--json"); code != 0 {
		b.Fatalf("verify after the load: exit %d\n%s\n%s", code, out, errOut)
	}
}
