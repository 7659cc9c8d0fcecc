package bastion

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/certauth"
)

// fipsConfig is frontConfig with the FIPS option.
var fipsConfig = strings.Replace(frontConfig, `host_names = ["bastion.example"]`, `host_names = ["bastion.example"]
  fips       = true`, 1)

// auditFinding is one [fail] or [warn] line of ssh-audit's report, with
// the algorithm it is about ("" for none).
type auditFinding struct {
	algorithm, level, text string
}

var (
	auditAlgLine  = regexp.MustCompile(`^\((kex|key|enc|mac)\) (\S+)`)
	auditNoteLine = regexp.MustCompile(`\[(fail|warn)\] (.*)$`)
)

// sshAudit runs ssh-audit against addr and returns its exit code, the
// algorithms it lists by kind, and its findings.
func sshAudit(t *testing.T, addr string) (int, map[string][]string, []auditFinding) {
	t.Helper()
	tool := needTool(t, "ssh-audit")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, "-n", "-p", port, host)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ssh-audit: %v", err)
	}
	t.Logf("ssh-audit:\n%s", out)
	algos := map[string][]string{}
	var findings []auditFinding
	alg := ""
	for _, line := range strings.Split(string(out), "\n") {
		if m := auditAlgLine.FindStringSubmatch(line); m != nil {
			alg = m[2]
			algos[m[1]] = append(algos[m[1]], m[2])
		} else if !strings.HasPrefix(strings.TrimSpace(line), "`-") {
			alg = ""
		}
		if strings.HasPrefix(line, "!!! WARNING: unknown algorithm") {
			continue // repeats the unknown algorithms' own notes
		}
		if m := auditNoteLine.FindStringSubmatch(line); m != nil {
			findings = append(findings, auditFinding{algorithm: alg, level: m[1], text: strings.TrimSpace(m[2])})
		}
	}
	if len(algos["kex"]) == 0 {
		t.Fatalf("ssh-audit listed no key exchange algorithms (exit %d)", cmd.ProcessState.ExitCode())
	}
	return cmd.ProcessState.ExitCode(), algos, findings
}

// newerThanAudit are algorithms newer than the ssh-audit Debian stable
// ships (2.5.0), which calls them "unknown algorithm" (a warning); later
// versions know and recommend both. The strict key exchange marker
// cannot be left out: it is the Terrapin countermeasure.
var newerThanAudit = []string{"kex-strict-s-v00@openssh.com", ssh.KeyExchangeMLKEM768X25519}

func unknownToAudit(f auditFinding) bool {
	return f.level == "warn" && f.text == "unknown algorithm" && slices.Contains(newerThanAudit, f.algorithm)
}

// TestSSHAudit: ssh-audit finds no failure and no warning on the front
// door (beyond calling algorithms newer than itself unknown), and the
// strict key exchange is offered.
func TestSSHAudit(t *testing.T) {
	t.Parallel()
	needTool(t, "ssh-audit")
	ts := startServer(t, startOP(t), strings.ReplaceAll(frontConfig, "%LOGIN%", "ops"))
	code, algos, findings := sshAudit(t, ts.SSHAddr())
	for _, f := range findings {
		if !unknownToAudit(f) {
			t.Errorf("ssh-audit: %s [%s] %s", f.algorithm, f.level, f.text)
		}
	}
	if code != 0 && len(findings) == 0 {
		t.Errorf("ssh-audit exited %d with no finding", code)
	}
	if !slices.Contains(algos["kex"], "kex-strict-s-v00@openssh.com") {
		t.Errorf("strict key exchange not offered: %v", algos["kex"])
	}
	if want := []string{"ssh-ed25519-cert-v01@openssh.com"}; !slices.Equal(algos["key"], want) {
		t.Errorf("host key algorithms %v, want %v", algos["key"], want)
	}
	for _, a := range append(append(algos["kex"], algos["enc"]...), algos["mac"]...) {
		if strings.Contains(a, "sha1") || strings.Contains(a, "cbc") || strings.Contains(a, "group1") || strings.Contains(a, "nistp") {
			t.Errorf("offered %s", a)
		}
	}
}

// TestSSHAuditFIPS: in FIPS mode the front door offers only approved
// algorithms. ssh-audit fails the NIST curves that FIPS requires (and
// warns that ECDSA keys depend on a good random number generator): those
// are the only findings allowed.
func TestSSHAuditFIPS(t *testing.T) {
	t.Parallel()
	needTool(t, "ssh-audit")
	ts := startServer(t, startOP(t), strings.ReplaceAll(fipsConfig, "%LOGIN%", "ops"))
	_, algos, findings := sshAudit(t, ts.SSHAddr())
	for _, f := range findings {
		nist := strings.Contains(f.algorithm, "nistp") &&
			(f.text == "using weak elliptic curves" || f.text == "using weak random number generator could reveal the key")
		if !nist && !unknownToAudit(f) {
			t.Errorf("ssh-audit: %s [%s] %s", f.algorithm, f.level, f.text)
		}
	}
	want := map[string][]string{
		"kex": append(slices.Clone(fipsKEX), "kex-strict-s-v00@openssh.com"),
		"key": {ssh.CertAlgoECDSA256v01},
		"enc": fipsCiphers,
		"mac": fipsMACs,
	}
	for kind, w := range want {
		if !slices.Equal(algos[kind], w) {
			t.Errorf("%s: offered %v, want %v", kind, algos[kind], w)
		}
	}
}

// What the front door offers, in FIPS mode and in the default mode.
var (
	fipsKEX     = front.Algorithms(true).KeyExchanges
	fipsCiphers = front.Algorithms(true).Ciphers
	fipsMACs    = front.Algorithms(true).MACs
	modernKEX   = front.Algorithms(false).KeyExchanges
)

// negotiate runs a key exchange with the front door at addr as a client
// offering cfg's algorithms, and returns what was negotiated (the
// authentication that follows fails).
func negotiate(t *testing.T, addr string, cfg ssh.Config) (ssh.NegotiatedAlgorithms, error) {
	t.Helper()
	var got ssh.NegotiatedAlgorithms
	_, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		Config: cfg, User: "ops@box",
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		AuthCallback: func(ctx *ssh.ClientAuthContext) (ssh.AuthMethod, error) {
			got = ctx.Algorithms
			return nil, errors.New("stop")
		},
		Timeout: 10 * time.Second,
	})
	if got.KeyExchange == "" {
		return got, err
	}
	return got, nil
}

// TestFrontFIPSNegotiation: a client offering everything gets approved
// algorithms in FIPS mode, and one offering only non-approved ones gets
// nothing; in the default mode it gets the modern ones.
func TestFrontFIPSNegotiation(t *testing.T) {
	t.Parallel()
	all := ssh.Config{KeyExchanges: ssh.SupportedAlgorithms().KeyExchanges, Ciphers: []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128CTR, ssh.CipherAES128GCM}}
	fips := startServer(t, startOP(t), strings.ReplaceAll(fipsConfig, "%LOGIN%", "ops"))
	got, err := negotiate(t, fips.SSHAddr(), all)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(fipsKEX, got.KeyExchange) || got.HostKey != ssh.CertAlgoECDSA256v01 || got.Read.Cipher != ssh.CipherAES128GCM || got.Write.Cipher != ssh.CipherAES128GCM {
		t.Errorf("FIPS mode negotiated %+v", got)
	}
	if _, err := negotiate(t, fips.SSHAddr(), ssh.Config{KeyExchanges: []string{ssh.KeyExchangeCurve25519}}); err == nil {
		t.Error("FIPS mode agreed on curve25519")
	}
	if _, err := negotiate(t, fips.SSHAddr(), ssh.Config{Ciphers: []string{ssh.CipherChaCha20Poly1305}}); err == nil {
		t.Error("FIPS mode agreed on chacha20-poly1305")
	}

	modern := startServer(t, startOP(t), strings.ReplaceAll(frontConfig, "%LOGIN%", "ops"))
	got, err = negotiate(t, modern.SSHAddr(), all)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(modernKEX, got.KeyExchange) || got.HostKey != ssh.CertAlgoED25519v01 {
		t.Errorf("modern mode negotiated %+v", got)
	}
	if _, err := negotiate(t, modern.SSHAddr(), ssh.Config{KeyExchanges: []string{ssh.KeyExchangeECDHP256}}); err == nil {
		t.Error("modern mode agreed on ecdh-sha2-nistp256")
	}
}

func TestFrontFIPSConfig(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig("b.hcl", []byte("ssh {\n  fips = true\n  max_connections_per_address = 5\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.SSH.FIPS || cfg.SSH.MaxConnsPerAddress != 5 {
		t.Fatalf("%+v", cfg.SSH)
	}
	cfg, err = ParseConfig("b.hcl", []byte("ssh {}\n"))
	if err != nil || cfg.SSH.FIPS || cfg.SSH.MaxConnsPerAddress != front.DefaultMaxConnsPerAddress {
		t.Fatalf("defaults: %+v %v", cfg.SSH, err)
	}
	_, err = ParseConfig("b.hcl", []byte("ssh {\n  max_connections_per_address = 0\n}\n"))
	if want := "b.hcl:2:3: max_connections_per_address = 0 is not between 1 and 10000"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// TestFrontFIPSRefusesEd25519: in FIPS mode an ed25519 key (and a
// certificate an ed25519 CA signed) does not log in, and the host key
// presented is the ECDSA one, certified by the host CA.
func TestFrontFIPSRefusesEd25519(t *testing.T) {
	t.Parallel()
	fx := startFrontWith(t, "ops", fipsConfig)
	if out, code := fx.ssh(t, fx.key, "ops@box", "true"); code != 255 || !strings.Contains(out, "Permission denied") {
		t.Fatalf("ed25519 in FIPS mode: exit %d: %s", code, out)
	}
	var host ssh.PublicKey
	_, err := ssh.Dial("tcp", fx.ts.SSHAddr(), &ssh.ClientConfig{
		User: "ops@box",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			host = key
			return nil
		},
		Timeout: 10 * time.Second,
	})
	if err == nil {
		t.Fatal("logged in with no key")
	}
	cert, ok := host.(*ssh.Certificate)
	if !ok || cert.Key.Type() != ssh.KeyAlgoECDSA256 || cert.CertType != ssh.HostCert || !fx.ts.auth.Host.Trusts(cert.SignatureKey, time.Now()) {
		t.Fatalf("host key %T %v", host, host)
	}
}

// TestFrontFIPSJump: in FIPS mode, with ECDSA certificate authorities and
// an ECDSA key, the inner connection of ssh -J is held to the approved
// algorithms as the outer one is: an ECDSA host certificate for the
// target name, NIST-curve key exchange and AES-GCM.
func TestFrontFIPSJump(t *testing.T) {
	t.Parallel()
	m := startOP(t)
	ts := startServerAlg(t, m, strings.ReplaceAll(fipsConfig, "%LOGIN%", "ops"), certauth.AlgorithmECDSAP256)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.client.Certificate(context.Background(), mint(t, m, agentClaims(m, "agent-1")),
		certauth.CertificateRequest{PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), Logins: []string{"ops"}})
	if err != nil {
		t.Fatal(err)
	}
	ck, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewCertSigner(ck.(*ssh.Certificate), key)
	if err != nil {
		t.Fatal(err)
	}
	all := ssh.Config{KeyExchanges: ssh.SupportedAlgorithms().KeyExchanges, Ciphers: ssh.SupportedAlgorithms().Ciphers}
	var outerAlgos ssh.NegotiatedAlgorithms
	outer, err := ssh.Dial("tcp", ts.SSHAddr(), &ssh.ClientConfig{
		Config: all, User: "ops", Timeout: 10 * time.Second,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		AuthCallback: func(ctx *ssh.ClientAuthContext) (ssh.AuthMethod, error) {
			outerAlgos = ctx.Algorithms
			return ssh.PublicKeys(signer), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	c, err := outer.Dial("tcp", "box:22")
	if err != nil {
		t.Fatal(err)
	}
	var innerAlgos ssh.NegotiatedAlgorithms
	var host ssh.PublicKey
	ic, chans, reqs, err := ssh.NewClientConn(c, "box:22", &ssh.ClientConfig{
		Config: all, User: "ops", Timeout: 10 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error { host = k; return nil },
		AuthCallback: func(ctx *ssh.ClientAuthContext) (ssh.AuthMethod, error) {
			innerAlgos = ctx.Algorithms
			return ssh.PublicKeys(signer), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(ic, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("echo inner-ok")
	if err != nil || string(out) != "inner-ok\n" {
		t.Fatalf("inner session: %q, %v", out, err)
	}
	for name, got := range map[string]ssh.NegotiatedAlgorithms{"outer": outerAlgos, "inner": innerAlgos} {
		if !slices.Contains(fipsKEX, got.KeyExchange) || got.HostKey != ssh.CertAlgoECDSA256v01 ||
			!slices.Contains(fipsCiphers, got.Read.Cipher) || !slices.Contains(fipsCiphers, got.Write.Cipher) {
			t.Errorf("%s connection negotiated %+v", name, got)
		}
	}
	hc, ok := host.(*ssh.Certificate)
	if !ok || hc.Key.Type() != ssh.KeyAlgoECDSA256 || !slices.Equal(hc.ValidPrincipals, []string{"box"}) || !ts.auth.Host.Trusts(hc.SignatureKey, time.Now()) {
		t.Fatalf("inner host key %v", host)
	}
}

// TestFrontCipherOffer: the real OpenSSH client, which lists
// chacha20-poly1305 first, negotiates the first cipher the front door
// offers both ways (AES-GCM where the CPU runs it in hardware, else
// ChaCha20-Poly1305; package front's TestCipherOffer checks the offer).
func TestFrontCipherOffer(t *testing.T) {
	fx := startFrontWith(t, "ops", frontConfig)
	out, code := fx.ssh(t, fx.key, "ops@box", "true", "-v")
	if code != 0 {
		t.Fatalf("ssh: exit %d\n%s", code, out)
	}
	want := front.Algorithms(false).Ciphers[0]
	for _, dir := range []string{"server->client", "client->server"} {
		if line := "kex: " + dir + " cipher: " + want + " "; !strings.Contains(out, line) {
			t.Errorf("OpenSSH did not negotiate %s %s:\n%s", want, dir, out)
		}
	}

	// x/crypto's client with OpenSSH's default order agrees.
	openSSHOrder := ssh.Config{Ciphers: []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR, ssh.CipherAES128GCM, ssh.CipherAES256GCM}}
	got, err := negotiate(t, fx.ts.SSHAddr(), openSSHOrder)
	if err != nil {
		t.Fatal(err)
	}
	if got.Read.Cipher != want || got.Write.Cipher != want {
		t.Errorf("negotiated %s / %s, want %s", got.Read.Cipher, got.Write.Cipher, want)
	}
}
