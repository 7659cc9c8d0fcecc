package bastion

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/apiclient"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/recorder/events"
)

// policyE2EConfig gives agents standing access to "staging" only, and
// grant-only access to "db1" (a real sshd) with command rules; humans in
// "approvers" approve.
const policyE2EConfig = e2eConfigBase + `
ssh {
  listen     = "127.0.0.1:0"
  host_names = ["bastion.example"]
}
target "staging" {
  command = ["/bin/sh"]
}
target "db1" {
  ssh      = "%SSHD%"
  host_key = "%HOSTKEY%"
}
identity "agents" {
  providers = ["corp"]
  subjects  = ["agent-*"]
}
identity "approvers" {
  providers = ["corp"]
  subjects  = ["bob", "carol"]
}
role "agents-staging" {
  identities = ["agents"]
  targets    = ["staging"]
  logins     = ["%LOGIN%"]
}
role "agents-prod" {
  identities = ["agents"]
  targets    = ["db1"]
  logins     = ["%LOGIN%"]
  access     = "grant"
  commands {
    deny = [
      "rm ** -rf **",
      "rm -rf **",
      "psql ** -c 're:(?is).*drop\\s+table.*' **",
      "touch **/denied-marker",
    ]
  }
  approval {
    approvers    = ["approvers"]
    approvals    = 1
    max_duration = "1h"
  }
}
`

// humanClaims are a human's own token's claims.
func humanClaims(m *mockoidc.MockOIDC, sub string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": m.Issuer(), "sub": sub, "aud": m.ClientID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"email": sub + "@bank.example",
	}
}

// TestPolicyGrantEndToEnd is issue 5's story with the real OpenSSH client
// and a real sshd target: an agent with no standing access to db1 is
// refused; it asks for a grant; its own approval is refused; an approver
// approves; the agent connects and works; denied commands are refused
// before they reach the target, on stderr and in the journal; a grant
// ends, and the live session under it ends with a message saying so.
func TestPolicyGrantEndToEnd(t *testing.T) {
	t.Parallel()
	needTool(t, "ssh")
	ctx := context.Background()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "target_ca.pub")
	if err := os.WriteFile(caFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sd := startSSHD(t, "TrustedUserCAKeys "+caFile)
	hostPub, err := os.ReadFile(filepath.Join(sd.dir, "host_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	login := currentLogin(t)
	m := startOP(t)
	config := strings.NewReplacer("%SSHD%", sd.addr, "%HOSTKEY%", strings.Join(strings.Fields(string(hostPub))[:2], " "), "%LOGIN%", login).Replace(policyE2EConfig)
	ts := startServer(t, m, config)
	if err := os.WriteFile(caFile, []byte(strings.Join(ts.auth.Target.AuthorizedKeys(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(strings.Join(ts.auth.KnownHostsLines("*"), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ts.SSHAddr())
	fx := &frontFixture{ts: ts, dir: dir, knownHosts: kh, port: port}
	agent := func() string { return mint(t, m, agentClaims(m, "agent-1")) }
	certify := func(name string) string {
		t.Helper()
		key, pub := newKey(t, dir, name)
		resp, err := ts.client.Certificate(ctx, agent(), certauth.CertificateRequest{PublicKey: pub, Logins: []string{login}})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key+"-cert.pub", []byte(resp.Certificate+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return key
	}

	// 1. Standing access reaches staging; db1 is refused like a target
	// that does not exist, and the journal says why.
	key := certify("standing")
	fx.key = key
	if out, code := fx.ssh(t, key, login+"@staging", "echo staging-ok"); code != 0 || !strings.Contains(out, "staging-ok") {
		t.Fatalf("staging: exit %d, %q", code, out)
	}
	out, code := fx.ssh(t, key, login+"@db1", "echo should-not-run")
	unknown, unknownCode := fx.ssh(t, key, login+"@nosuch", "echo should-not-run")
	if code != 255 || !strings.Contains(out, "Permission denied") || unknownCode != code || strings.ReplaceAll(unknown, "nosuch", "db1") != out {
		t.Fatalf("db1 without a grant: exit %d %q; unknown target: exit %d %q", code, out, unknownCode, unknown)
	}
	var why []string
	for _, r := range ts.events(t, events.AuthRefused) {
		if r["user"] == login+"@db1" && r["reason"] == events.ReasonNotPermitted {
			why = append(why, r["detail"])
		}
	}
	if len(why) != 1 || !strings.Contains(why[0], "grant") {
		t.Fatalf("db1 refusals journaled: %q", why)
	}

	// 2. The agent asks for a grant; it cannot approve it itself.
	g, err := ts.client.RequestGrant(ctx, agent(), certauth.GrantRequest{Target: "db1", Login: login, Duration: "10m", Reason: "rotate the replication slot", Ticket: "OPS-42"})
	if err != nil {
		t.Fatal(err)
	}
	if g.State != grants.GrantPending || g.Role != "agents-prod" {
		t.Fatalf("requested: %+v", g)
	}
	_, err = ts.client.DecideGrant(ctx, agent(), g.ID, "approve", "me myself")
	var apiErr *apiclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 403 || apiErr.Reason != "own_grant" {
		t.Fatalf("own approval: %v", err)
	}

	// 3. An approver approves: the grant is active, and a certificate for
	// db1 ends with it.
	g, err = ts.client.DecideGrant(ctx, mint(t, m, humanClaims(m, "bob")), g.ID, "approve", "ok for OPS-42")
	if err != nil {
		t.Fatal(err)
	}
	if g.State != grants.GrantActive {
		t.Fatalf("approved: %+v", g)
	}
	key = certify("granted")

	// 4. The agent works on db1.
	if out, code := fx.ssh(t, key, login+"@db1", "echo db1-ok; touch "+filepath.Join(dir, "allowed-marker")); code != 0 || !strings.Contains(out, "db1-ok") {
		t.Fatalf("db1 under the grant: exit %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "allowed-marker")); err != nil {
		t.Fatal(err)
	}

	// 5. Denied commands never reach the target.
	for _, cmd := range []string{"rm -rf /", "psql service=prod -c 'DROP TABLE accounts'", "touch " + filepath.Join(dir, "denied-marker")} {
		before := len(ts.events(t, events.RequestRefused))
		out, code := fx.ssh(t, key, login+"@db1", cmd)
		if code != 1 || !strings.Contains(out, "bastion: policy denies the command") || !strings.Contains(out, "role:agents-prod") {
			t.Fatalf("%q: exit %d, %q", cmd, code, out)
		}
		evs := ts.events(t, events.RequestRefused)[before:]
		if len(evs) != 1 || evs[0]["reason"] != events.ReasonPolicyDenied || evs[0]["command"] != cmd || evs[0]["policy.hash"] == "" {
			t.Fatalf("%q journaled as %v", cmd, evs)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "denied-marker")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the denied command reached the target: %v", err)
	}

	// 6. A live session under a grant ends when the grant does: a grant
	// short enough to end while the test waits, the agent's only one for
	// db1 once an operator has revoked the first.
	if _, err := AdminRevokeGrant(ctx, ts.home, AdminGrantRevokeRequest{ID: g.ID, Comment: "done", By: "alice-oncall"}); err != nil {
		t.Fatal(err)
	}
	g, err = ts.client.RequestGrant(ctx, agent(), certauth.GrantRequest{Target: "db1", Login: login, Duration: "6s", Reason: "a quick look"})
	if err != nil {
		t.Fatal(err)
	}
	if g, err = ts.client.DecideGrant(ctx, mint(t, m, humanClaims(m, "bob")), g.ID, "approve", ""); err != nil || g.State != grants.GrantActive {
		t.Fatalf("the short grant: %+v, %v", g, err)
	}
	key = certify("granted-briefly")
	live := fx.sshStart(t, key, login+"@db1", "echo started; sleep 60")
	lives := fx.waitLive(t, 1, live)
	if code := live.wait(t); code != 255 || !strings.Contains(live.stderr.String(), "the grant "+g.ID+" that allowed this session ended") {
		t.Fatalf("live session: exit %d, stderr %q", code, live.stderr.String())
	}
	rs := fx.recorded(t, lives[0].ID)
	if rs.attrs["policy.grant"] != g.ID || rs.attrs["policy.rule"] != "role:agents-prod" || rs.end["reason"] != events.EndGrant || rs.end["grant"] != g.ID {
		t.Fatalf("recorded start %v, end %v", rs.attrs, rs.end)
	}
	// The store journals the end at the grant's end (the session, whose
	// certificate ends on the second before, may have ended first).
	for deadline := time.Now().Add(endBound); ; time.Sleep(50 * time.Millisecond) {
		got, err := ts.client.Grant(ctx, agent(), g.ID)
		if err == nil && got.State == grants.GrantEnded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after its end: %+v, %v", got, err)
		}
	}
	// 7. An operator of the bastion revokes a grant through the admin
	// socket, with no token: the live session under it ends at once.
	g2, err := ts.client.RequestGrant(ctx, agent(), certauth.GrantRequest{Target: "db1", Login: login, Duration: "10m", Reason: "second look"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.DecideGrant(ctx, mint(t, m, humanClaims(m, "carol")), g2.ID, "approve", ""); err != nil {
		t.Fatal(err)
	}
	key = certify("granted-again")
	live = fx.sshStart(t, key, login+"@db1", "echo started; sleep 60")
	fx.waitLive(t, 1, live)
	revoked, err := AdminRevokeGrant(ctx, ts.home, AdminGrantRevokeRequest{ID: g2.ID, Comment: "incident 77", By: "alice-oncall"})
	if err != nil || revoked.State != grants.GrantRevoked || !strings.HasPrefix(revoked.ClosedBy, "operator (uid ") {
		t.Fatalf("operator revocation: %+v, %v", revoked, err)
	}
	if code := live.wait(t); code != 255 || !strings.Contains(live.stderr.String(), "the grant "+g2.ID+" that allowed this session was revoked") {
		t.Fatalf("live session: exit %d, stderr %q", code, live.stderr.String())
	}
	evs := ts.events(t, "grant.revoked")
	if e := evs[len(evs)-1]; e["by.kind"] != "operator" || !strings.Contains(e["by"], "says alice-oncall") || e["comment"] != "incident 77" {
		t.Fatalf("revocation journaled as %v", e)
	}
	// Its certificate is revoked with it, in the KRL: a host that trusts
	// the user CA directly refuses it too.
	var grantCert *certauth.CertRecord
	for _, c := range ts.registry.Certificates() {
		if c.Grant == g2.ID {
			grantCert = &c
		}
	}
	if grantCert == nil || !grantCert.Revoked {
		t.Fatalf("the revoked grant's certificate: %+v", grantCert)
	}
	revs := ts.events(t, "cert.revoked")
	if e := revs[len(revs)-1]; e["cause"] != "grant.revoked" || e["grant"] != g2.ID || e["serials"] != strconv.FormatUint(grantCert.Serial, 10) {
		t.Fatalf("the certificate's revocation journaled as %v", e)
	}
	for _, ev := range []string{"grant.requested", "grant.approved", "grant.activated", "grant.ended", "grant.refused"} {
		if len(ts.events(t, ev)) == 0 {
			t.Errorf("no %s event", ev)
		}
	}
	fx.verify(t)
}

// TestPolicyReload: the policy file is read again when it changes and on
// request; each policy put in force is a policy.loaded leaf with its hash,
// a file with mistakes is refused (policy.refused, with its errors) and
// the old policy stays in force; new sessions are decided by the policy in
// force.
func TestPolicyReload(t *testing.T) {
	t.Parallel()
	needTool(t, "ssh")
	ctx := context.Background()
	pdir := t.TempDir()
	pfile := filepath.Join(pdir, "policy.hcl")
	write := func(targets string) {
		t.Helper()
		src := fmt.Sprintf(`role "agents" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  targets = [%s]
  logins  = ["ops"]
}
`, targets)
		if err := os.WriteFile(pfile, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`"box"`)
	fx := startFrontWith(t, "ops", e2eConfigBase+`
policy = "`+pfile+`"
ssh {
  listen = "127.0.0.1:0"
}
target "box" {
  command = ["/bin/sh"]
}
target "other" {
  command = ["/bin/sh"]
}
`)
	first := fx.ts.Policy().Hash()
	loaded := fx.ts.events(t, EventPolicyLoaded)
	if len(loaded) != 1 || loaded[0]["trigger"] != ReloadStart || loaded[0]["hash"] != first || loaded[0]["source"] != pfile {
		t.Fatalf("at start: %v", loaded)
	}
	if out, code := fx.ssh(t, fx.key, "ops@box", "echo box-ok"); code != 0 || !strings.Contains(out, "box-ok") {
		t.Fatalf("box: exit %d, %q", code, out)
	}

	// Edited: read again within a watch interval or two.
	write(`"other"`)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(endBound); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s", what)
			}
		}
	}
	waitFor("reload on change", func() bool { return fx.ts.Policy().Hash() != first })
	second := fx.ts.Policy().Hash()
	loaded = fx.ts.events(t, EventPolicyLoaded)
	if l := loaded[len(loaded)-1]; l["trigger"] != ReloadChanged || l["hash"] != second || l["previous"] != first {
		t.Fatalf("after the edit: %v", l)
	}
	if out, code := fx.ssh(t, fx.key, "ops@box", "echo box-ok"); code != 255 || !strings.Contains(out, "Permission denied") {
		t.Fatalf("box after the edit: exit %d, %q", code, out)
	}
	if out, code := fx.ssh(t, fx.key, "ops@other", "echo other-ok"); code != 0 || !strings.Contains(out, "other-ok") {
		t.Fatalf("other after the edit: exit %d, %q", code, out)
	}

	// A mistake: refused with its position, and the policy stays.
	write(`"other", 42 x`)
	waitFor("refused reload", func() bool { return len(fx.ts.events(t, EventPolicyRefused)) == 1 })
	refused := fx.ts.events(t, EventPolicyRefused)[0]
	if refused["trigger"] != ReloadChanged || !strings.Contains(refused["error"], pfile+":6:") || refused["in-force"] != second {
		t.Fatalf("refused: %v", refused)
	}
	if err := fx.ts.Reload(ctx, ReloadSignal); err == nil || fx.ts.Policy().Hash() != second {
		t.Fatalf("a reload of the bad file: %v, policy %s", err, fx.ts.Policy().Hash())
	}
	if out, code := fx.ssh(t, fx.key, "ops@other", "echo still-ok"); code != 0 || !strings.Contains(out, "still-ok") {
		t.Fatalf("other with the bad file: exit %d, %q", code, out)
	}

	// Mended, and reloaded on request (as SIGHUP does).
	write(`"box", "other"`)
	if err := fx.ts.Reload(ctx, ReloadSignal); err != nil {
		t.Fatal(err)
	}
	loaded = fx.ts.events(t, EventPolicyLoaded)
	if l := loaded[len(loaded)-1]; l["trigger"] != ReloadSignal || l["hash"] == second {
		t.Fatalf("after the mend: %v", l)
	}
	fx.verify(t)
}
