package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/bastionhq/bastion/policy/mask"
)

// TestRolesJSON: every role in policy order, with the shape the journal
// documents, defaults made explicit and named identities expanded.
func TestRolesJSON(t *testing.T) {
	p := bankPolicy(t)
	b, hits := p.RolesJSON(nil)
	if len(hits) != 0 {
		t.Fatalf("hits without a masker: %v", hits)
	}
	var roles []map[string]any
	if err := json.Unmarshal(b, &roles); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	var names []string
	for _, r := range roles {
		names = append(names, r["name"].(string))
	}
	if want := []string{"sre-web", "deploy-agent", "agent-read", "agent-db", "agent-shell", "break-glass"}; !slices.Equal(names, want) {
		t.Fatalf("roles %v, want %v", names, want)
	}
	wantKeys := []string{"access", "approval", "commands", "file_transfer", "identities", "idle_timeout", "logins", "masking", "max_session",
		"max_ttl", "name", "permit", "port_forwarding", "pty", "shell", "source_addresses", "targets"}
	for _, r := range roles {
		var keys []string
		for k := range r {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("role %s has keys %v", r["name"], keys)
		}
	}
	if strings.Contains(string(b), `\u003c`) || strings.Contains(string(b), "\n") {
		t.Errorf("escaped or indented: %s", b)
	}

	views := p.RoleViews()
	db := views[3]
	want := RoleView{
		Name: "agent-db", Access: "grant",
		Identities:     []MatcherView{{Name: "agents", Providers: []string{"corp"}, Subjects: []string{"agent-*"}, Sponsors: []string{"alice", "bob"}, Claims: map[string][]string{}}},
		Targets:        []string{"db-prod", "db-staging"},
		Logins:         []string{"postgres", "dba"},
		PTY:            true,
		PortForwarding: []string{},
		Commands:       &CommandsView{Allow: []string{"psql **", "pg_dump **"}, Deny: []string{`psql ** -c 're:(?i).*drop\s+table.*' **`}},
		Permit:         []string{"permit-pty"},
		MaxTTL:         "10m0s", SourceAddresses: []string{},
		Approval: &ApprovalView{
			Approvers:          []string{"approvers"},
			ApproverIdentities: []MatcherView{{Name: "approvers", Providers: []string{"corp"}, Subjects: []string{"alice", "bob", "carol"}, Sponsors: []string{}, Claims: map[string][]string{}}},
			Approvals:          2, MaxDuration: "30m0s",
		},
	}
	if !reflect.DeepEqual(db, want) {
		t.Errorf("agent-db:\n%+v\nwant\n%+v", db, want)
	}
	sre := views[0]
	if sre.Commands != nil || sre.Approval != nil || sre.MaxSession != "1h0m0s" || sre.IdleTimeout != "10m0s" || sre.Masking != "pci" ||
		!reflect.DeepEqual(sre.Identities[0].Claims, map[string][]string{"groups": {"sre"}}) {
		t.Errorf("sre-web: %+v", sre)
	}
	if shell := views[4]; len(shell.Identities) != 1 || shell.Identities[0].Name != "" || !slices.Equal(shell.Identities[0].Subjects, []string{"agent-*"}) {
		t.Errorf("an inline match: %+v", shell.Identities)
	}
	// The certificates' max_ttl caps a role's.
	if views[5].MaxTTL != "2m0s" || views[1].MaxTTL != "5m0s" {
		t.Errorf("max_ttl: %s %s", views[5].MaxTTL, views[1].MaxTTL)
	}
	capped, _, err := decodeString(okIdentity+`role "r" {
  identities = ["ops"]
  logins = ["a"]
}`, Options{Providers: []string{"corp"}, MaxTTL: 5 * 60e9})
	if err != nil {
		t.Fatal(err)
	}
	if v := capped.RoleViews()[0]; v.MaxTTL != "5m0s" || v.Access != "standing" || len(v.Targets) != 0 || v.Targets == nil {
		t.Errorf("defaults: %+v", v)
	}
}

// TestRolesJSONMasked: a secret in a pattern is masked in the JSON, which
// stays valid.
func TestRolesJSONMasked(t *testing.T) {
	const token = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
	p, _, err := decodeString(okIdentity+`role "r" {
  identities = ["ops"]
  logins = ["a"]
  commands {
    allow = ["curl -H 'Authorization: token `+token+`' **"]
  }
}`, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	b, hits := p.RolesJSON(mask.All())
	if strings.Contains(string(b), token) || len(hits) == 0 {
		t.Fatalf("not masked (%v): %s", hits, b)
	}
	var v []RoleView
	if err := json.Unmarshal(b, &v); err != nil || len(v) != 1 || len(v[0].Commands.Allow) != 1 {
		t.Fatalf("%v: %s", err, b)
	}
	if plain, _ := p.RolesJSON(nil); !strings.Contains(string(plain), token) {
		t.Errorf("RolesJSON(nil) masked: %s", plain)
	}
}

// TestPolicyText: the text of a policy is what was loaded: the files of a
// directory, the policy's part of a configuration file, or, for a policy
// built from values and the roles WithRoles adds, the policy language,
// which reads back as the same roles.
func TestPolicyText(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roles := `role "r" {
  identities = ["ops"]
  targets = ["web-1"]
  logins = ["a"]
}`
	write("10-identities.hcl", "# who\n"+okIdentity)
	write("20-roles.hcl", roles) // no final line break
	p, _, err := Load(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# file: 10-identities.hcl\n# who\n" + okIdentity + "\n# file: 20-roles.hcl\n" + roles + "\n"; p.Text() != want {
		t.Errorf("text of a directory:\n%s\nwant:\n%s", p.Text(), want)
	}

	// A configuration file: its policy's blocks and attributes, not the
	// rest.
	src := `journal = "j.db"
grants {
  webhook_url = "https://hooks.example/T0/B0/secret"
}
text_masking = "secrets"
` + okIdentity + roles + "\n"
	f, hd := hclsyntax.ParseConfig([]byte(src), "/etc/bastion/serve.hcl", hcl.InitialPos)
	if hd.HasErrors() {
		t.Fatal(hd)
	}
	_, rest, hd := f.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "journal"}}, Blocks: []hcl.BlockHeaderSchema{{Type: "grants"}}})
	if hd.HasErrors() {
		t.Fatal(hd)
	}
	cp, _, err := DecodeConfig("/etc/bastion/serve.hcl", []byte(src), rest, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# file: serve.hcl\ntext_masking = \"secrets\"\n\n" + okIdentity + "\n" + roles + "\n"; cp.Text() != want {
		t.Errorf("text of a configuration:\n%s\nwant:\n%s", cp.Text(), want)
	}
	if !strings.HasPrefix(cp.Hash(), "sha256:") {
		t.Errorf("hash %q", cp.Hash())
	}

	// Rendered: the bank policy written out reads back as itself.
	bank := bankPolicy(t)
	built, _, err := Build(bank.Identities, bank.Roles, Options{})
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := decodeString(built.Text(), Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, built.Text())
	}
	if !reflect.DeepEqual(back.RoleViews(), built.RoleViews()) {
		t.Errorf("rendered policy reads back otherwise:\n%s", built.Text())
	}

	// Claims named with dots, and strings HCL would read as templates.
	odd, _, err := Build([]IdentityMatcher{{Name: "x", Match: Match{Providers: []string{"corp"}, Claims: map[string][]string{"act.sub": {"a"}, "realm access": {"${b}", "%{c}"}}}}},
		[]Role{{Name: "r", Identities: []string{"x"}, Logins: []string{"a"}, Commands: &Commands{Deny: []string{`echo '${HOME}' **`}}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	back, _, err = decodeString(odd.Text(), Options{})
	if err != nil || !reflect.DeepEqual(back.RoleViews(), odd.RoleViews()) {
		t.Errorf("odd names and templates read back otherwise (%v):\n%s", err, odd.Text())
	}

	// WithRoles: the text as loaded, then the roles added.
	dev, err := cp.WithRoles(DevRole([]string{"me"}))
	if err != nil {
		t.Fatal(err)
	}
	text := dev.Text()
	if !strings.HasPrefix(text, cp.Text()) || !strings.Contains(text, "# Not read from any file") || !strings.Contains(text, `role "dev" {`) {
		t.Errorf("text with the dev role:\n%s", text)
	}
	empty, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	onlyDev, err := empty.WithRoles(DevRole([]string{"me"}))
	if err != nil {
		t.Fatal(err)
	}
	back, _, err = decodeString(onlyDev.Text(), Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, onlyDev.Text())
	}
	if !reflect.DeepEqual(back.RoleViews(), onlyDev.RoleViews()) {
		t.Errorf("the dev role reads back otherwise:\n%s", onlyDev.Text())
	}
}
