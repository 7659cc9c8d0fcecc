package bastion

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
)

// wantPolicyRecord checks that a policy.loaded leaf keeps p: its text as
// want says, and its roles as p's, as JSON.
func wantPolicyRecord(t *testing.T, leaf recorder.Attrs, p *policy.Policy, text string) {
	t.Helper()
	if leaf["hash"] != p.Hash() {
		t.Errorf("policy.loaded hash %s, want %s", leaf["hash"], p.Hash())
	}
	if leaf["text"] != text {
		t.Errorf("policy.loaded text:\n%s\nwant:\n%s", leaf["text"], text)
	}
	var roles []policy.RoleView
	if err := json.Unmarshal([]byte(leaf["roles.json"]), &roles); err != nil {
		t.Fatalf("roles.json: %v\n%s", err, leaf["roles.json"])
	}
	if !reflect.DeepEqual(roles, p.RoleViews()) {
		t.Errorf("roles.json:\n%s\nwant the roles of\n%s", leaf["roles.json"], p.Text())
	}
}

// loadedAtStart waits for serve to journal its start and the policy in
// force (Run does, before it serves), and returns the policy.loaded
// leaves.
func loadedAtStart(t *testing.T, ts *testServer) []recorder.Attrs {
	t.Helper()
	waitFor(t, "policy.loaded", func() bool { return len(ts.events(t, EventPolicyLoaded)) > 0 })
	return ts.events(t, EventPolicyLoaded)
}

// TestPolicyLoadedRecord: every policy.loaded leaf keeps the policy's
// text, masked for secrets, and its roles as JSON, at start and after a
// reload, so that what was in force can be reviewed from the journal.
func TestPolicyLoadedRecord(t *testing.T) {
	t.Parallel()
	const token = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
	pdir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(pdir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	identities := `# The deploy bot once used ` + token + `; it is revoked.
identity "agents" {
  providers = ["corp"]
  subjects  = ["agent-*"]
}
identity "leads" {
  providers = ["corp"]
  subjects  = ["alice", "bob"]
}
`
	roles := `role "db" {
  identities = ["agents"]
  targets    = ["db-*"]
  logins     = ["postgres"]
  access     = "grant"
  commands {
    allow = ["psql **"]
    deny  = ["psql ** -c 're:(?i).*drop.*' **"]
  }
  approval {
    approvers       = ["leads"]
    exclude_sponsor = true
  }
}
`
	write("10-identities.hcl", identities)
	write("20-roles.hcl", roles)
	ts := startServer(t, startOP(t), e2eConfigBase+`
policy = "`+pdir+`"
`)
	masked, _ := policyTextMasker().Text(identities)
	loaded := loadedAtStart(t, ts)
	if len(loaded) != 1 {
		t.Fatalf("%d policy.loaded leaves", len(loaded))
	}
	leaf := loaded[0]
	if strings.Contains(leaf["text"], token) || leaf["masked"] != "text:github-token:1" {
		t.Fatalf("not masked (masked = %q):\n%s", leaf["masked"], leaf["text"])
	}
	wantPolicyRecord(t, leaf, ts.Policy(), "# file: 10-identities.hcl\n"+masked+"\n# file: 20-roles.hcl\n"+roles)
	if _, ok := leaf["text.truncated"]; ok {
		t.Errorf("truncated: %v", leaf)
	}

	// Reloaded: the new policy's record.
	write("20-roles.hcl", roles+`
role "read" {
  identities = ["agents"]
  targets    = ["db-*"]
  logins     = ["reader"]
}
`)
	if err := ts.Reload(context.Background(), ReloadSignal); err != nil {
		t.Fatal(err)
	}
	loaded = ts.events(t, EventPolicyLoaded)
	if len(loaded) != 2 || len(ts.Policy().Roles) != 2 {
		t.Fatalf("after the reload: %d leaves, %d roles", len(loaded), len(ts.Policy().Roles))
	}
	leaf = loaded[1]
	if leaf["previous"] != loaded[0]["hash"] || !strings.Contains(leaf["text"], `role "read"`) {
		t.Errorf("after the reload: %v", leaf)
	}
	wantPolicyRecord(t, leaf, ts.Policy(), leaf["text"])
	var views []policy.RoleView
	if err := json.Unmarshal([]byte(leaf["roles.json"]), &views); err != nil || len(views) != 2 || views[1].Name != "read" ||
		views[0].Approval == nil || !views[0].Approval.ExcludeSponsor || views[0].Approval.ApproverIdentities[0].Subjects[1] != "bob" {
		t.Errorf("roles.json after the reload: %v %s", err, leaf["roles.json"])
	}
}

// TestPolicyLoadedConfig: a policy written in the configuration file is
// kept as its blocks, without the rest of the file.
func TestPolicyLoadedConfig(t *testing.T) {
	t.Parallel()
	role := `role "agents" {
  match {
    providers = ["corp"]
    subjects  = ["agent-*"]
  }
  logins = ["deploy"]
}`
	ts := startServer(t, startOP(t), e2eConfigBase+`
grants {
  webhook_url = "https://hooks.example/services/T0/B0/not-for-the-journal"
}
`+role+"\n")
	leaf := loadedAtStart(t, ts)[0]
	wantPolicyRecord(t, leaf, ts.Policy(), "# file: bastion.hcl\n"+role+"\n")
}

// TestServeDevRecord: under --dev, serve.started names the development
// provider and its issuer, and the policy in force is the built-in role,
// written out.
func TestServeDevRecord(t *testing.T) {
	t.Parallel()
	ts := startServerWith(t, startOP(t), `
api {
  listen = "127.0.0.1:0"
}
`, certauth.AlgorithmEd25519, serverTweaks{edit: func(o *ServerOptions) {
		dev, err := oidc.OpenDevIssuer(o.Home)
		if err != nil {
			t.Fatal(err)
		}
		o.Dev, o.DevLogins = dev, []string{"ops"}
	}})
	leaf := loadedAtStart(t, ts)[0]
	started := ts.events(t, EventServeStarted)[0]
	if started["dev.provider"] != DevProviderName || started["dev.issuer"] != ts.DevIssuerURL() || ts.DevIssuerURL() == "" {
		t.Errorf("serve.started: %v", started)
	}
	if !strings.Contains(leaf["text"], "# Not read from any file") || !strings.Contains(leaf["text"], `role "dev" {`) {
		t.Errorf("the dev policy's text:\n%s", leaf["text"])
	}
	wantPolicyRecord(t, leaf, ts.Policy(), leaf["text"])

	// The console's web client is registered with the dev issuer, its
	// redirect URL on the API listener, and only that one.
	authorize := func(redirect string) *http.Response {
		t.Helper()
		q := url.Values{
			"response_type": {"code"}, "client_id": {DevWebClientID}, "redirect_uri": {redirect},
			"scope": {"openid"}, "state": {"s"}, "nonce": {"n"},
			"code_challenge": {strings.Repeat("A", 43)}, "code_challenge_method": {"S256"},
		}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(ts.DevIssuerURL() + "/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := authorize(ts.APIURL() + "/ui/callback"); resp.StatusCode != 200 {
		t.Errorf("the console's redirect URL %s/ui/callback: %d", ts.APIURL(), resp.StatusCode)
	}
	if resp := authorize(ts.APIURL() + "/ui/other"); resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("another redirect URL: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Without --dev, neither.
	plain := startServer(t, startOP(t), e2eConfig)
	loadedAtStart(t, plain)
	if s := plain.events(t, EventServeStarted)[0]; s["dev.provider"] != "" || s["dev.issuer"] != "" {
		t.Errorf("serve.started without --dev: %v", s)
	}
}

// TestPolicyRecordBounds: a text longer than an attribute holds is cut
// there and says so; roles that do not fit refuse the policy.
func TestPolicyRecordBounds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := "# " + strings.Repeat("é", maxPolicyAttr/2) + "\n" + `role "r" {
  match {
    providers = ["corp"]
  }
  logins = ["a"]
}
`
	path := filepath.Join(dir, "policy.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _, err := policy.Load(path, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := PolicyRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	full := len(p.Text())
	if rec["text.truncated"] != strconv.Itoa(full) || len(rec["text"]) > maxPolicyAttr || len(rec["text"]) < maxPolicyAttr-4 ||
		!strings.HasPrefix(p.Text(), rec["text"]) || !utf8.ValidString(rec["text"]) {
		t.Errorf("truncated to %d of %d bytes (text.truncated %q)", len(rec["text"]), full, rec["text.truncated"])
	}
	var views []policy.RoleView
	if err := json.Unmarshal([]byte(rec["roles.json"]), &views); err != nil || len(views) != 1 {
		t.Errorf("roles.json: %v", err)
	}

	var many []policy.Role
	for i := range 3000 {
		many = append(many, policy.Role{Name: "role-" + strconv.Itoa(i), Match: policy.Match{Providers: []string{"corp"}, Subjects: []string{strings.Repeat("s", 300)}}, Logins: []string{"a"}})
	}
	big, err := policy.New(many)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PolicyRecord(big); err == nil || !strings.Contains(err.Error(), "cannot be put in force") {
		t.Errorf("roles too large: %v", err)
	}
}
