package bastion

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/go-hclog"
	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/recordertest"
	"github.com/bastionhq/bastion/storage"
)

// startOP starts a real OpenID provider on loopback: discovery, JWKS and a
// key to sign tokens with.
func startOP(t testing.TB) *mockoidc.MockOIDC {
	return oidctest.StartMock(t, nil)
}

func mint(t testing.TB, m *mockoidc.MockOIDC, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := m.Keypair.SignJWT(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func agentClaims(m *mockoidc.MockOIDC, sub string) jwt.MapClaims {
	return agentClaimsAt(m, sub, time.Now())
}

// agentClaimsAt is agentClaims for a token issued at now.
func agentClaimsAt(m *mockoidc.MockOIDC, sub string, now time.Time) jwt.MapClaims {
	// An RFC 8693 delegation token: the agent (act.sub) acts on behalf
	// of alice (sub).
	return jwt.MapClaims{
		"iss": m.Issuer(), "sub": "alice", "aud": m.ClientID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"email": "alice@bank.example", "act": map[string]any{"sub": sub},
		"repository": "bank/payments",
	}
}

// shiftedClock is a server's clock (ServerOptions.Now) that a test sets
// apart from the real time, to have something issued in the past: the
// real time plus an offset. Timers still run in real time.
type shiftedClock struct{ offset atomic.Int64 }

func (c *shiftedClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// set puts the clock d from the real time.
func (c *shiftedClock) set(d time.Duration) { c.offset.Store(int64(d)) }

type testServer struct {
	*Server
	home    string
	auth    *certauth.Authorities
	journal *recorder.Journal
	store   *storage.SQLite
	// closeStore closes store (under the journal, if it still runs),
	// once; the test's cleanup calls it too.
	closeStore func() error
	key        *recorder.JournalKey
	client     *apiclient.Client
	cancel     context.CancelFunc
	done       chan error
}

// startServer runs a Server over a fresh home with config text (its
// %ISSUER% and %AUDIENCE% replaced by m's).
func startServer(t testing.TB, m *mockoidc.MockOIDC, config string) *testServer {
	t.Helper()
	return startServerAlg(t, m, config, certauth.AlgorithmEd25519)
}

// startServerAlg is startServer with certificate authorities of alg.
func startServerAlg(t testing.TB, m *mockoidc.MockOIDC, config string, alg certauth.Algorithm) *testServer {
	t.Helper()
	return startServerWith(t, m, config, alg, serverTweaks{})
}

// serverTweaks change how startServerWith builds the server.
type serverTweaks struct {
	// wrap, if set, wraps the journal's store (to slow or fail commits).
	wrap func(storage.Store) storage.Store
	// logger, if set, is the journal's and the server's logger.
	logger hclog.Logger
	// edit, if set, changes the server's options before it is built.
	edit func(o *ServerOptions)
	// journalDir, if set, is the journal's directory, else the home (a
	// new temporary directory).
	journalDir string
	// storage are the options the journal's store is opened with.
	storage storage.Options
	// publishInterval, if set, is the journal's PublishInterval.
	publishInterval time.Duration
}

// startServerWith is startServerAlg with tweaks. The journal reports its
// commits to the server, as serve's does.
func startServerWith(t testing.TB, m *mockoidc.MockOIDC, config string, alg certauth.Algorithm, tw serverTweaks) *testServer {
	t.Helper()
	ctx := context.Background()
	home := t.TempDir()
	journalDir := home
	if tw.journalDir != "" {
		journalDir = tw.journalDir
	}
	key, err := certauth.CreateJournalKey(home, "test.example/bastion")
	if err != nil {
		t.Fatal(err)
	}
	auth, err := certauth.CreateAuthorities(home, alg)
	if err != nil {
		t.Fatal(err)
	}
	config = strings.NewReplacer("%ISSUER%", m.Issuer(), "%AUDIENCE%", m.ClientID, "%HOME%", home).Replace(config)
	// Written, as serve reads it: a reload reads it again.
	if err := os.WriteFile(filepath.Join(home, "bastion.hcl"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(filepath.Join(home, "bastion.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	commits := NewCommitObserver()
	jt := recordertest.NewJournalWith(t, recordertest.Options{
		Path: filepath.Join(journalDir, "journal.db"), Storage: tw.storage, Wrap: tw.wrap,
		Journal: recorder.Options{Key: key, Logger: tw.logger, OnCommit: commits.OnCommit, OnPublish: commits.OnPublish, PublishInterval: tw.publishInterval},
	})
	j, st := jt.Journal, jt.Store
	opts := ServerOptions{Config: cfg, Home: home, Journal: j, Store: st, Authorities: auth, Commits: commits, Logger: tw.logger}
	if tw.edit != nil {
		tw.edit(&opts)
	}
	srv, err := NewServer(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	ts := &testServer{Server: srv, home: home, auth: auth, journal: j, store: st, closeStore: sync.OnceValue(st.Close), key: key, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Run(rctx) }()
	ts.client, err = apiclient.NewClient(srv.APIURL(), apiclient.ClientOptions{Fingerprint: srv.TLS().Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ts.stop(t)
		ts.closeStore()
	})
	return ts
}

func (ts *testServer) stop(t testing.TB) {
	if ts.cancel == nil {
		return
	}
	// The test's API connection would otherwise hold the server's
	// shutdown for the second HTTP/2 gives a client to go away.
	ts.client.CloseIdleConnections()
	ts.cancel()
	ts.cancel = nil
	if err := <-ts.done; err != nil {
		t.Errorf("server: %v", err)
	}
	// The journal in force: the one opened here, or the one a recovery
	// opened in its place.
	if err := ts.CloseJournal(); err != nil {
		t.Errorf("journal: %v", err)
	}
}

// events returns the journal's events of one name, in order.
// log reads the journal's log, verified with its key, from a snapshot.
func (ts *testServer) log(t testing.TB) *recorder.Log {
	t.Helper()
	ctx := context.Background()
	snap, err := ts.store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	log, err := recorder.ReadLog(ctx, snap, recorder.ReadLogOptions{Verifier: ts.key.Verifier})
	if err != nil {
		t.Fatal(err)
	}
	return log
}

func (ts *testServer) events(t testing.TB, name string) []recorder.Attrs {
	t.Helper()
	ctx := context.Background()
	snap, err := ts.store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var out []recorder.Attrs
	evs, err := recorder.Events(ctx, snap, ts.key.Verifier, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		out = append(out, e.Leaf.Attrs)
	}
	return out
}

// newKey writes a fresh ed25519 key pair to dir/name and returns the
// private key's path and the public key line.
func newKey(t testing.TB, dir, name string) (string, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if err := os.WriteFile(path+".pub", []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, line
}

// e2eConfigBase is the API and the provider of the tests' configurations.
const e2eConfigBase = `
api {
  listen = "127.0.0.1:0"
  rate_per_identity = -1
  rate_per_address  = -1
}
identity_provider "corp" {
  issuer    = "%ISSUER%"
  audiences = ["%AUDIENCE%"]
  delegation = true
  algorithms = ["RS256"]
}
`

const e2eConfig = e2eConfigBase + `
role "agents" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
    claims    = { repository = ["bank/*"] }
  }
  targets = ["*"]
  logins  = ["%LOGIN%", "deploy"]
  max_ttl = "5m"
  pty           = true
  shell         = true
  file_transfer = true
}
`

func currentLogin(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// TestCertificateEndToEnd exchanges a token from a real OpenID provider for
// a certificate, checks it with ssh-keygen, logs in to a real sshd that
// trusts the user CA, then revokes it and sees sshd refuse it through the
// KRL.
func TestCertificateEndToEnd(t *testing.T) {
	t.Parallel()
	keygen := needTool(t, "ssh-keygen")
	needTool(t, "ssh")
	ctx := context.Background()
	m := startOP(t)
	login := currentLogin(t)
	ts := startServer(t, m, strings.ReplaceAll(e2eConfig, "%LOGIN%", login))
	dir := t.TempDir()

	keyPath, pub := newKey(t, dir, "id_ed25519")
	token := mint(t, m, agentClaims(m, "agent-1"))
	before := time.Now()
	resp, err := ts.client.Certificate(ctx, token, certauth.CertificateRequest{PublicKey: pub, Logins: []string{login}, Ticket: "OPS-42"})
	if err != nil {
		t.Fatal(err)
	}
	certPath := keyPath + "-cert.pub"
	if err := os.WriteFile(certPath, []byte(resp.Certificate+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantID := fmt.Sprintf("agent-1@corp serial=%d for=alice ticket=OPS-42", resp.Serial)
	if resp.KeyID != wantID || resp.Identity != "agent-1@corp" || strings.Join(resp.Principals, ",") != login || resp.Rule != "role:agents" {
		t.Fatalf("response: %+v", resp)
	}
	if d := resp.ValidBefore.Sub(before); d < 4*time.Minute || d > 5*time.Minute+time.Second {
		t.Fatalf("valid for %v after the request, want the role's 5m", d)
	}
	if d := before.Sub(resp.ValidAfter); d < 0 || d > certauth.MaxBackdate+time.Second {
		t.Fatalf("valid_after backdated by %v", d)
	}

	// ssh-keygen reads it as we meant it.
	out, err := exec.Command(keygen, "-L", "-f", certPath).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	listing := string(out)
	for _, want := range []string{
		"Type: ssh-ed25519-cert-v01@openssh.com user certificate",
		fmt.Sprintf("Key ID: %q", wantID),
		fmt.Sprintf("Serial: %d", resp.Serial),
		"Signing CA: ED25519 " + ssh.FingerprintSHA256(ts.auth.User.Signer.PublicKey()),
		"Principals: \n                " + login + "\n",
		"Critical Options: (none)",
		"Extensions: \n                permit-pty\n",
		fmt.Sprintf("Valid: from %s to %s", resp.ValidAfter.Local().Format("2006-01-02T15:04:05"), resp.ValidBefore.Local().Format("2006-01-02T15:04:05")),
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("ssh-keygen -L lacks %q:\n%s", want, listing)
		}
	}
	for _, never := range []string{"permit-agent-forwarding", "permit-X11-forwarding", "permit-port-forwarding", "permit-user-rc"} {
		if strings.Contains(listing, never) {
			t.Errorf("certificate has %s, which policy does not grant", never)
		}
	}

	// A real sshd that trusts the user CA and the bastion's KRL.
	caFile := filepath.Join(dir, "user_ca.pub")
	if err := os.WriteFile(caFile, []byte(strings.Join(ts.auth.User.AuthorizedKeys(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sshd := startSSHD(t, "TrustedUserCAKeys "+caFile, "RevokedKeys "+ts.KRLPath())
	if out, err := sshd.ssh(t, keyPath, login, "echo", "in-as-granted"); err != nil || !strings.Contains(out, "in-as-granted") {
		t.Fatalf("ssh as the granted login: %v\n%s\nsshd:\n%s", err, out, sshd.log)
	}
	if out, err := sshd.ssh(t, keyPath, "nobody", "true"); err == nil {
		t.Fatalf("ssh as a login the certificate does not name succeeded:\n%s", out)
	}
	if !sshd.logged(regexp.MustCompile(`not a listed principal|name is not a listed principal|Certificate invalid`)) {
		t.Errorf("sshd did not say why it refused the other login:\n%s", sshd.log)
	}

	// Revoke through the admin socket, as "bastion certs revoke" does.
	res, warning, err := AdminRevoke(ctx, ts.home, certauth.RevokeRequest{Serials: []uint64{resp.Serial}, Reason: "test", By: "tester"}, "")
	if err != nil || warning != "" || len(res.Serials) != 1 || res.Serials[0] != resp.Serial {
		t.Fatalf("revoke: %+v %q %v", res, warning, err)
	}
	if !ts.registry.IsRevoked(resp.Serial) {
		t.Fatal("registry does not know the revocation")
	}
	out, err = exec.Command(keygen, "-Q", "-f", ts.KRLPath(), certPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "REVOKED") {
		t.Fatalf("ssh-keygen -Q on the KRL: %v\n%s", err, out)
	}
	if out, err := sshd.ssh(t, keyPath, login, "true"); err == nil {
		t.Fatalf("ssh with a revoked certificate succeeded:\n%s", out)
	}
	// Servers can fetch the KRL from the API.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecurePinned(t, ts.TLS().Fingerprint)}}
	kresp, err := hc.Get(ts.APIURL() + "/v1/krl")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(kresp.Body)
	kresp.Body.Close()
	if onDisk, _ := os.ReadFile(ts.KRLPath()); kresp.StatusCode != http.StatusOK || !bytes.Equal(served, onDisk) || len(served) == 0 {
		t.Fatalf("GET /v1/krl: %s, %d bytes, on disk %d", kresp.Status, len(served), len(onDisk))
	}
	if !sshd.logged(regexp.MustCompile(`revoked`)) {
		t.Errorf("sshd did not log the revocation:\n%s", sshd.log)
	}

	// Revoking the identity refuses its old token from now on; a new
	// token (issued after the revocation) is accepted again.
	key2, pub2 := newKey(t, dir, "id2")
	resp2, err := ts.client.Certificate(ctx, token, certauth.CertificateRequest{PublicKey: pub2, Logins: []string{"deploy"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key2+"-cert.pub", []byte(resp2.Certificate+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if resp2.Serial <= resp.Serial {
		t.Fatalf("serial %d after %d: not increasing", resp2.Serial, resp.Serial)
	}
	res, _, err = AdminRevoke(ctx, ts.home, certauth.RevokeRequest{Identity: "agent-1@corp", Reason: "compromised", By: "tester"}, "")
	if err != nil || len(res.Serials) != 1 || res.Serials[0] != resp2.Serial {
		t.Fatalf("revoke identity: %+v %v", res, err)
	}
	out, err = exec.Command(keygen, "-Q", "-f", ts.KRLPath(), key2+"-cert.pub").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "REVOKED") {
		t.Fatalf("ssh-keygen -Q for the identity's certificate: %v\n%s", err, out)
	}
	_, err = ts.client.Certificate(ctx, token, certauth.CertificateRequest{PublicKey: pub2})
	var apiErr *apiclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Reason != events.ReasonIdentityRevoked || apiErr.Status != http.StatusForbidden {
		t.Fatalf("old token after identity revocation: %v", err)
	}
	// "iat" has a resolution of one second: a token the provider issues
	// two seconds from now is one issued after the revocation (and well
	// within the clock skew allowed).
	if _, err := ts.client.Certificate(ctx, mint(t, m, agentClaimsAt(m, "agent-1", time.Now().Add(2*time.Second))), certauth.CertificateRequest{PublicKey: pub2}); err != nil {
		t.Fatalf("new token after identity revocation: %v", err)
	}

	// Everything is in the journal, and the journal verifies.
	issued := ts.events(t, events.CertIssued)
	if len(issued) != 3 || issued[0]["serial"] != fmt.Sprint(resp.Serial) || issued[0]["identity"] != "agent-1@corp" ||
		issued[0]["principals"] != login || issued[0]["sponsor"] != "alice" || issued[0]["ticket"] != "OPS-42" ||
		issued[0]["key.sha256"] == "" || issued[0]["claims.sha256"] == "" || issued[0]["rule"] != "role:agents" {
		t.Fatalf("issued events: %v", issued)
	}
	if r := ts.events(t, events.CertRevoked); len(r) != 2 || !strings.Contains(r[0]["by"], "(says tester)") || !strings.HasPrefix(r[0]["by"], "uid ") || r[1]["identity"] != "agent-1@corp" {
		t.Fatalf("revoked events: %v", r)
	}
	if r := ts.events(t, events.CertRefused); len(r) != 1 || r[0]["reason"] != events.ReasonIdentityRevoked {
		t.Fatalf("refused events: %v", r)
	}
	ts.stop(t)
	rep, err := recorder.Verify(ctx, ts.store, recorder.VerifyOptions{Verifier: ts.key.Verifier})
	if err != nil || !rep.Intact() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestIdentityBlock: revoking an identity with a block refuses its new
// tokens too, until the block ends; other identities are unaffected; and
// the block survives a restart, read back from the journal.
func TestIdentityBlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := startOP(t)
	ts := startServer(t, m, strings.ReplaceAll(e2eConfig, "%LOGIN%", "ops"))
	_, pub := newKey(t, t.TempDir(), "id")
	res, _, err := AdminRevoke(ctx, ts.home, certauth.RevokeRequest{Identity: "agent-7@corp", BlockFor: time.Hour, Reason: "compromised: printed password=hunter2"}, "")
	if err != nil || res.BlockedUntil.IsZero() {
		t.Fatalf("block: %+v %v", res, err)
	}
	// The reason is kept masked, and the leaf says so.
	if r := ts.events(t, events.CertRevoked); len(r) != 1 || r[0]["reason"] != "compromised: printed password=*******" || r[0]["masked"] != "reason:password:1" {
		t.Fatalf("revoked event: %v", r)
	}
	// A token issued after the revocation ("iat" has a resolution of one
	// second): refused all the same, for the block.
	_, err = ts.client.Certificate(ctx, mint(t, m, agentClaimsAt(m, "agent-7", time.Now().Add(2*time.Second))), certauth.CertificateRequest{PublicKey: pub})
	var apiErr *apiclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Reason != events.ReasonIdentityRevoked || !strings.Contains(apiErr.Message, "blocked until") {
		t.Fatalf("new token of a blocked identity: %v", err)
	}
	if _, err := ts.client.Certificate(ctx, mint(t, m, agentClaims(m, "agent-8")), certauth.CertificateRequest{PublicKey: pub}); err != nil {
		t.Fatalf("another identity: %v", err)
	}
	if _, _, err := AdminRevoke(ctx, ts.home, certauth.RevokeRequest{Serials: []uint64{1}, BlockFor: time.Hour}, ""); err == nil {
		t.Fatal("a block without an identity was accepted")
	}
	// A ticket that holds a card number is refused (it would go into the
	// certificate's key ID), and the refusal keeps it masked.
	_, err = ts.client.Certificate(ctx, mint(t, m, agentClaims(m, "agent-8")), certauth.CertificateRequest{PublicKey: pub, Ticket: "4111111111111111"})
	if !errors.As(err, &apiErr) || apiErr.Reason != events.ReasonRequestMalformed || !strings.Contains(apiErr.Message, "masking hides") || strings.Contains(apiErr.Message, "4111111111111111") {
		t.Fatalf("a card number as the ticket: %v", err)
	}
	if r := ts.events(t, events.CertRefused); len(r) == 0 || r[len(r)-1]["ticket"] != "************1111" || r[len(r)-1]["masked"] != "ticket:card:1" {
		t.Fatalf("refused event: %v", r)
	}

	ts.stop(t)
	j, err := recorder.Open(ctx, ts.store, recorder.Options{Key: ts.key})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	log, err := j.ReadLog(ctx, certauth.RegistryEvents)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := certauth.LoadRegistry(log, time.Now(), false)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := oidc.NewVerifier([]oidc.ProviderConfig{{Name: "corp", Issuer: m.Issuer(), Audiences: []string{m.ClientID}, Delegation: true}}, oidc.VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	is, err := certauth.NewIssuer(ctx, certauth.IssuerOptions{CA: ts.auth.User, Verifier: verifier, Policy: allowAll{}, Journal: j, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	_, err = is.Issue(ctx, certauth.IssueRequest{Token: mint(t, m, agentClaims(m, "agent-7")), PublicKey: pub})
	var rf *certauth.Refusal
	if !errors.As(err, &rf) || rf.Reason != events.ReasonIdentityRevoked {
		t.Fatalf("after a restart: %v", err)
	}
}

// allowAll grants every identity the login "ops".
type allowAll struct{}

func (allowAll) Certificate(policy.CertRequest) policy.CertDecision {
	return policy.CertDecision{Allow: true, Rule: "test", Principals: []string{"ops"}, TTL: time.Minute}
}

// TestDevRefusedBesideProviders: the development issuer never runs beside
// real providers, whose roles its tokens could match.
func TestDevRefusedBesideProviders(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	auth, err := certauth.CreateAuthorities(home, certauth.AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := oidc.OpenDevIssuer(home)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("b.hcl", []byte(`identity_provider "corp" {
  issuer = "https://login.bank.example"
  audiences = ["bastion"]
}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewServer(context.Background(), ServerOptions{Config: cfg, Home: home, Authorities: auth, Dev: dev})
	if err == nil || !strings.Contains(err.Error(), "cannot run beside real identity providers") {
		t.Fatalf("--dev beside a real provider: %v", err)
	}
}
