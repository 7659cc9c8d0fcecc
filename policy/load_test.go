package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/bastionhq/bastion/policy/mask"
)

var testOptions = Options{Providers: []string{"corp"}, Targets: []string{"web-1", "db-prod"}, MaxTTL: time.Hour}

// decodeString decodes src as the file "p.hcl".
func decodeString(src string, opts Options) (*Policy, []Diagnostic, error) {
	f, hd := hclsyntax.ParseConfig([]byte(src), "p.hcl", hcl.InitialPos)
	if hd.HasErrors() {
		var d diagnostics
		d.addHCL(hd, hcl.Range{Filename: "p.hcl"})
		return nil, nil, &Error{Diagnostics: d.errors()}
	}
	return Decode(f.Body, "sha256:test", opts)
}

const okIdentity = `identity "ops" {
  providers = ["corp"]
}
`

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		src  string
		want string // "line:col: error: part of the message"
	}{
		{"syntax", `role "x" {`, "1:10: error: "},
		{"unknown block", `policy "x" {}`, "1:1: error: Unsupported block type"},
		{"unknown attribute", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  colour = "red"
}`, "7:3: error: Unsupported argument"},
		{"unknown identity", okIdentity + `role "r" {
  identities = ["ops", "nobody"]
  logins = ["a"]
}`, `5:24: error: role "r" names identity "nobody", which is not defined`},
		{"duplicate role", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
}
role "r" {
  identities = ["ops"]
  logins = ["b"]
}`, `8:1: error: role "r" is defined twice`},
		{"duplicate identity", okIdentity + okIdentity, `4:1: error: identity "ops" is defined twice`},
		{"identity without providers", `identity "x" {
  subjects = ["a"]
}`, `1:14: error: Missing required argument`},
		{"unknown provider", `identity "x" {
  providers = ["corp", "github"]
}`, `2:24: error: identity "x" matches provider "github", which is not configured`},
		{"bad subject glob", `identity "x" {
  providers = ["corp"]
  subjects = ["ok", "[a"]
}`, `3:21: error: identity "x": bad pattern "[a"`},
		{"bad claim glob", `identity "x" {
  providers = ["corp"]
  claims = { groups = ["[a"] }
}`, `3:24: error: identity "x": bad pattern "[a"`},
		{"bad target glob", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  targets = ["web-[1"]
}`, `7:14: error: role "r": bad target pattern "web-[1"`},
		{"bad regexp", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  commands {
    deny = ["ls", "psql 're:(drop'"]
  }
}`, `8:19: error: role "r": pattern "psql 're:(drop'": bad regexp`},
		{"unparseable pattern", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  commands {
    allow = ["ls $HOME"]
  }
}`, `8:14: error: role "r": pattern "ls $HOME"`},
		{"bad duration", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  max_session = "forever"
}`, `7:17: error: max_session: bad duration "forever"`},
		{"negative duration", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  idle_timeout = "-1m"
}`, `7:18: error: idle_timeout: bad duration`},
		{"bad access", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  access = "sometimes"
}`, `7:12: error: role "r": access must be "standing" or "grant", not "sometimes"`},
		{"grant without approval", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  access = "grant"
}`, `7:12: error: role "r": a grant-only role needs an approval block`},
		{"approval on standing role", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  approval {
    approvers = ["ops"]
  }
}`, `7:3: error: role "r": an approval block belongs only to a role with access = "grant"`},
		{"zero approvals", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  access = "grant"
  approval {
    approvers = ["ops"]
    approvals = 0
  }
}`, `10:17: error: role "r": approvals must be at least 1`},
		{"unknown approver", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  access = "grant"
  approval {
    approvers = ["ops", "nobody"]
  }
}`, `9:25: error: role "r": approver "nobody" is not a defined identity`},
		{"exclude_sponsor not a bool", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  access = "grant"
  approval {
    approvers = ["ops"]
    exclude_sponsor = "sometimes"
  }
}`, `10:23: error: exclude_sponsor: want bool`},
		{"exclude_sponsor a list", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  access = "grant"
  approval {
    approvers = ["ops"]
    exclude_sponsor = [true]
  }
}`, `10:23: error: exclude_sponsor: want bool`},
		{"exclude_sponsor outside approval", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  exclude_sponsor = true
}`, `7:3: error: Unsupported argument`},
		{"unknown permit", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  permit = ["permit-pty", "permit-all"]
}`, `7:27: error: role "r": unknown extension "permit-all"`},
		{"max_ttl above the certificates'", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  max_ttl = "2h"
}`, `7:13: error: role "r": max_ttl 2h0m0s is above the certificates' max_ttl 1h0m0s`},
		{"wrong type", okIdentity + `role "r" {
  identities = ["ops"]
  logins = "a"
}`, `6:12: error: logins: want list of string`},
		{"no logins", okIdentity + `role "r" {
  identities = ["ops"]
}`, `4:1: error: role "r": grants no logins`},
		{"matches nobody", `role "r" {
  logins = ["a"]
}`, `1:1: error: role "r": matches nobody`},
		{"inline match without providers", `role "r" {
  match {
    subjects = ["a"]
  }
  logins = ["a"]
}`, `2:3: error: role "r": a matcher must name the providers`},
		{"bad forward", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  port_forwarding = ["localhost"]
}`, `7:22: error: role "r": bad port_forwarding pattern "localhost"`},
		{"bad source", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  source_addresses = ["10.0.0.1/8"]
}`, `7:23: error: role "r": source address "10.0.0.1/8" has host bits set`},
		{"variables", okIdentity + `role "r" {
  identities = ["ops"]
  logins = [var.login]
}`, `6:13: error: Variables not allowed`},
		{"unknown operator", okIdentity + `operators = ["ops", "nobody"]
role "r" {
  identities = ["ops"]
  logins = ["a"]
}`, `4:21: error: operators names identity "nobody", which is not defined`},
		{"unknown auditor", okIdentity + `auditors = ["auditor"]
role "r" {
  identities = ["ops"]
  logins = ["a"]
}`, `4:13: error: auditors names identity "auditor", which is not defined`},
		{"operators not a list", okIdentity + `operators = "ops"
role "r" {
  identities = ["ops"]
  logins = ["a"]
}`, `4:13: error: operators: want list of string`},
		{"two commands blocks", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  commands {}
  commands {}
}`, `8:3: error: role "r" has more than one commands block`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := decodeString(c.src, testOptions)
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			for _, d := range pe.Diagnostics {
				if d.File != "p.hcl" || d.Line < 1 || d.Column < 1 || d.Severity != SeverityError {
					t.Errorf("diagnostic without a position: %+v", d)
				}
			}
			if !strings.Contains(err.Error(), "p.hcl:"+c.want) {
				t.Errorf("got:\n%v\nwant a line with p.hcl:%s", err, c.want)
			}
		})
	}
}

func TestDecodeWarnings(t *testing.T) {
	for _, c := range []struct {
		name string
		src  string
		want string // "" for no warning
	}{
		{"clean", okIdentity + `role "r" {
  identities = ["ops"]
  targets = ["web-*"]
  logins = ["a"]
}`, ""},
		{"unknown target", okIdentity + `role "r" {
  identities = ["ops"]
  targets = ["web-*", "mail-*"]
  logins = ["a"]
}`, `6:23: warning: role "r": target pattern "mail-*" matches no configured target`},
		{"unused identity", okIdentity + `identity "spare" {
  providers = ["corp"]
}
role "r" {
  identities = ["ops"]
  logins = ["a"]
}`, `4:1: warning: identity "spare" is not used by any role or approval`},
		{"empty claim", `identity "x" {
  providers = ["corp"]
  claims = { groups = [] }
}
role "r" {
  identities = ["x"]
  logins = ["a"]
}`, `3:23: warning: identity "x" matches nobody: claim "groups" lists no values`},
		{"shadowed", okIdentity + `role "wide" {
  identities = ["ops"]
  targets = ["*"]
  logins = ["a", "b"]
  shell = true
}
role "narrow" {
  identities = ["ops"]
  targets = ["web-1"]
  logins = ["a"]
}`, `10:1: warning: role "narrow" is shadowed by role "wide"`},
		{"not shadowed: earlier has command rules", okIdentity + `role "wide" {
  identities = ["ops"]
  targets = ["*"]
  logins = ["a"]
  commands {
    allow = ["ls"]
  }
}
role "narrow" {
  identities = ["ops"]
  targets = ["web-1"]
  logins = ["a"]
}`, ""},
		{"not shadowed: later allows more", okIdentity + `role "wide" {
  identities = ["ops"]
  targets = ["*"]
  logins = ["a"]
}
role "narrow" {
  identities = ["ops"]
  targets = ["web-1"]
  logins = ["a"]
  pty = true
}`, ""},
		{"allow covered by deny", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  commands {
    allow = ["ls *", "rm -rf /tmp/x", "cat 're:.*'"]
    deny  = ["rm ** -rf **"]
  }
}`, `8:22: warning: role "r": allow pattern "rm -rf /tmp/x" never allows anything: deny pattern "rm ** -rf **" covers it`},
		{"shell beside commands", okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
  shell = true
  commands {
    allow = ["ls"]
  }
}`, `7:11: warning: role "r": interactive shells are not checked against command rules`},
		{"too few approvers", `identity "two" {
  providers = ["corp"]
  subjects = ["alice", "bob"]
}
identity "agents" {
  providers = ["corp"]
  subjects = ["agent-*"]
}
role "r" {
  identities = ["agents"]
  logins = ["a"]
  access = "grant"
  approval {
    approvers = ["two"]
    approvals = 3
  }
}`, `15:17: warning: role "r": its grants need 3 approvals, but at most 2 identities may approve them`},
		{"disjoint pins", okIdentity + `role "a" {
  identities = ["ops"]
  logins = ["x"]
  source_addresses = ["10.0.0.0/8"]
}
role "b" {
  identities = ["ops"]
  logins = ["x", "y"]
  source_addresses = ["192.168.0.0/16"]
}`, `12:22: warning: role "b" and role "a" match the same identities with shared logins but pin disjoint source addresses`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, warnings, err := decodeString(c.src, testOptions)
			if err != nil {
				t.Fatal(err)
			}
			var all []string
			for _, w := range warnings {
				if w.Severity != SeverityWarning || w.File != "p.hcl" || w.Line < 1 {
					t.Errorf("bad warning %+v", w)
				}
				all = append(all, w.String())
			}
			got := strings.Join(all, "\n")
			if c.want == "" && got != "" || !strings.Contains(got, c.want) {
				t.Errorf("warnings:\n%s\nwant: p.hcl:%s", got, c.want)
			}
		})
	}
}

func TestLoadDirectoryAndHash(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("10-identities.hcl", okIdentity)
	write("20-roles.hcl", `role "r" {
  identities = ["ops"]
  targets = ["web-1"]
  logins = ["a"]
}
`)
	write("README.md", "not policy")
	p, warnings, err := Load(dir, testOptions)
	if err != nil || len(warnings) != 0 {
		t.Fatal(err, warnings)
	}
	h1 := p.Hash()
	if !strings.HasPrefix(h1, "sha256:") || len(h1) != len("sha256:")+64 {
		t.Fatalf("hash %q", h1)
	}
	if d := p.Session(SessionRequest{Identity: &Identity{Provider: "corp", Subject: "x"}, Target: "web-1", Login: "a", Action: ActionConnect}); !d.Allow {
		t.Errorf("%+v", d)
	}
	// The same files elsewhere hash the same; a changed byte does not.
	again, _, err := Load(dir, testOptions)
	if err != nil || again.Hash() != h1 {
		t.Errorf("hash not stable: %s %s %v", again.Hash(), h1, err)
	}
	write("20-roles.hcl", `role "r" {
  identities = ["ops"]
  targets = ["web-1"]
  logins = ["b"]
}
`)
	changed, _, err := Load(dir, testOptions)
	if err != nil || changed.Hash() == h1 {
		t.Errorf("hash unchanged by an edit: %v", err)
	}
	// An error in the second file is reported there.
	write("20-roles.hcl", `role "r" {
  identities = ["nobody"]
  logins = ["b"]
}
`)
	_, _, err = Load(dir, testOptions)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "20-roles.hcl")+`:2:17: error: role "r" names identity "nobody"`) {
		t.Errorf("err = %v", err)
	}
	if _, _, err := Load(t.TempDir(), testOptions); err == nil {
		t.Error("an empty directory loaded")
	}
}

// The serve config hands Decode what is left of its body.
func TestDecodeLeftoverBody(t *testing.T) {
	src := `journal = "j.db"
` + okIdentity + `role "r" {
  identities = ["ops"]
  logins = ["a"]
}
`
	f, hd := hclsyntax.ParseConfig([]byte(src), "serve.hcl", hcl.InitialPos)
	if hd.HasErrors() {
		t.Fatal(hd)
	}
	_, rest, hd := f.Body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "journal"}}})
	if hd.HasErrors() {
		t.Fatal(hd)
	}
	p, _, err := Decode(rest, "sha256:x", testOptions)
	if err != nil || len(p.Roles) != 1 || p.Hash() != "sha256:x" {
		t.Fatalf("%v %+v", err, p)
	}
}

// TestMaskingProfiles: a masking_profile block defines a profile roles may
// name beside the built-in ones; its mistakes are reported where they are
// written.
func TestMaskingProfiles(t *testing.T) {
	const role = `
role "r" {
  match { providers = ["corp"] }
  targets = ["db"]
  logins  = ["x"]
  masking = %q
}
`
	good := `
masking_profile "bank" {
  detectors = ["pci", "jwt"]
  keep      = 2
  custom "account" {
    pattern = "ACCT-[0-9]{8}"
    keep    = 4
  }
}
` + fmt.Sprintf(role, "bank")
	p, _, err := decodeString(good, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mp, ok := p.MaskingProfile("bank")
	if !ok || !slices.Equal(mp.Detectors, []string{"pci", "jwt"}) || mp.Keep != 2 || len(mp.Custom) != 1 || mp.Custom[0] != (mask.CustomRule{Name: "account", Pattern: "ACCT-[0-9]{8}", Keep: 4}) {
		t.Fatalf("profile %+v, %v", mp, ok)
	}
	if _, ok := p.MaskingProfile("pci"); !ok {
		t.Fatal("the built-in profiles are not there")
	}
	d := p.Session(SessionRequest{Identity: &Identity{Provider: "corp", Subject: "a"}, Target: "db", Login: "x", Action: ActionExec, Command: "ls"})
	if !d.Allow || d.Limits.Masking != "bank" {
		t.Fatalf("decision %+v", d)
	}
	if np, err := p.WithRoles(DevRole([]string{"y"})); err != nil {
		t.Fatal(err)
	} else if _, ok := np.MaskingProfile("bank"); !ok {
		t.Fatal("WithRoles lost the masking profiles")
	}

	for _, c := range []struct{ name, src, want string }{
		{"unknown profile", fmt.Sprintf(role, "cards"), `^p\.hcl:6:\d+: error: role "r": masking profile "cards" is neither built in`},
		{"unknown detector", "masking_profile \"m\" {\n  detectors = [\"cards\"]\n}\n", `^p\.hcl:2:\d+: error: masking_profile "m": .*unknown detector`},
		{"bad pattern", "masking_profile \"m\" {\n  custom \"c\" {\n    pattern = \"(\"\n  }\n}\n", `^p\.hcl:3:\d+: error: masking_profile "m": custom "c": `},
		{"empty", "masking_profile \"m\" {\n}\n", `^p\.hcl:1:1: error: masking_profile "m" masks nothing`},
		{"built-in name", "masking_profile \"pci\" {\n  detectors = [\"card\"]\n}\n", `^p\.hcl:1:1: error: masking_profile "pci" has the name of a built-in profile`},
		{"twice", "masking_profile \"m\" {\n  detectors = [\"card\"]\n}\nmasking_profile \"m\" {\n  detectors = [\"card\"]\n}\n", `^p\.hcl:4:1: error: masking_profile "m" is defined twice`},
	} {
		_, _, err := decodeString(c.src, Options{})
		if err == nil || !regexp.MustCompile(c.want).MatchString(err.Error()) {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}
}

// TestTextMasking: text_masking names the profile for text that belongs
// to no session (every built-in detector by default), "none" turns it
// off, and a name that is no profile is an error where it is written.
func TestTextMasking(t *testing.T) {
	const roles = `
masking_profile "bank" {
  detectors = ["pci"]
}
`
	for src, want := range map[string]string{
		roles:                                  "all",
		roles + `text_masking = "none"` + "\n": "",
		roles + `text_masking = "pci"` + "\n":  "pci",
		roles + `text_masking = "bank"` + "\n": "bank",
	} {
		p, _, err := decodeString(src, Options{})
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		prof, ok := p.TextMaskingProfile()
		if ok != (want != "") || prof.Name != want {
			t.Errorf("%q: profile %q (%v), want %q", src, prof.Name, ok, want)
		}
	}
	_, _, err := decodeString(roles+`text_masking = "cards"`+"\n", Options{})
	if err == nil || !strings.Contains(err.Error(), `text_masking "cards" is neither`) || !strings.Contains(err.Error(), ":5:") {
		t.Fatalf("an unknown profile: %v", err)
	}
	var none *Policy
	if prof, ok := none.TextMaskingProfile(); !ok || prof.Name != "all" {
		t.Fatalf("no policy: %q %v", prof.Name, ok)
	}
}
