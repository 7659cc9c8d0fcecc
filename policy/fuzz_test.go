package policy

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/bastionhq/bastion/policy/mask"
)

// FuzzLoad feeds the policy parser arbitrary files: it never panics, and
// every error it reports says where.
func FuzzLoad(f *testing.F) {
	bank, err := os.ReadFile("testdata/bank.hcl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(bank))
	f.Add(okIdentity + `role "r" {
  identities = ["ops"]
  targets = ["web-*"]
  logins = ["a"]
  commands {
    allow = ["ls **", "x 're:a|b'"]
    deny  = ["rm ** -rf **"]
  }
}`)
	f.Add(`role "r" { match { providers = ["corp"] claims = { "act.sub" = ["a*"] } } logins = ["x"] access = "grant" approval { approvers = ["r"] approvals = 2 } }`)
	f.Add(`identity "x" { providers = ["corp"] claims = { groups = [] } }`)
	f.Add("text_masking = \"bank\"\nmasking_profile \"bank\" {\n  detectors = [\"pci\"]\n  keep = 2\n  custom \"acct\" {\n    pattern = \"ACCT-[0-9]{8}\"\n  }\n}\n" +
		`role "r" { match { providers = ["corp"] sponsors = ["t-*"] } logins = ["x"] targets = ["web-*"] sponsor = "team" masking = "bank" access = "grant" approval { approvers = ["i"] exclude_sponsor = true } }` + "\n" +
		`identity "i" { providers = ["corp"] subjects = ["$${x}"] }`)
	f.Fuzz(func(t *testing.T, src string) {
		file, hd := hclsyntax.ParseConfig([]byte(src), "f.hcl", hcl.InitialPos)
		if hd.HasErrors() {
			return
		}
		p, warnings, err := Decode(file.Body, "sha256:fuzz", Options{Providers: []string{"corp"}, Targets: []string{"web-1"}})
		for _, w := range warnings {
			if w.File != "f.hcl" || w.Line < 1 || w.Column < 1 {
				t.Errorf("warning without a position: %+v", w)
			}
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || len(pe.Diagnostics) == 0 {
				t.Fatalf("error without diagnostics: %v", err)
			}
			for _, d := range pe.Diagnostics {
				if d.File != "f.hcl" || d.Line < 1 || d.Column < 1 {
					t.Errorf("error without a position: %+v", d)
				}
			}
			return
		}
		// A policy that loads decides without panicking.
		id := &Identity{Provider: "corp", Subject: "a", Claims: map[string]any{"groups": []any{"x"}}}
		for _, r := range p.Roles {
			for _, l := range r.Logins {
				p.Session(SessionRequest{Identity: id, Target: "web-1", Login: l, Action: ActionExec, Command: "ls -l"})
				p.Explain(SessionRequest{Identity: id, Target: "other", Login: l, Action: ActionShell})
			}
		}
		p.Certificate(CertRequest{Identity: id})
		// Written out in the policy language, it reads back as the same
		// roles; as JSON, they are JSON.
		back, _, err := decodeString(p.Text(), Options{})
		if err != nil {
			t.Fatalf("the policy written out does not read back: %v\n%s", err, p.Text())
		}
		if !reflect.DeepEqual(back.RoleViews(), p.RoleViews()) || !reflect.DeepEqual(back.MaskingProfiles, p.MaskingProfiles) || back.TextMasking != p.TextMasking {
			t.Fatalf("the policy written out reads back otherwise:\n%s", p.Text())
		}
		if b, _ := p.RolesJSON(mask.All()); !json.Valid(b) {
			t.Fatalf("roles.json is not JSON: %s", b)
		}
	})
}

// FuzzCommandPattern checks the command matcher: parsing a command line
// or a pattern never panics, and a command line with a simple command that
// a deny pattern matches is never allowed under the role denying it, even
// when another role allows everything.
func FuzzCommandPattern(f *testing.F) {
	f.Add("rm ** -rf **", "rm -rf /")
	f.Add("rm ** -rf **", "ls | r''m -v \"-rf\" /")
	f.Add(`psql ** -c 're:(?i).*drop\s+table.*' **`, "psql -c 'DROP TABLE x'")
	f.Add("systemctl * stop", "systemctl nginx stop 2>&1")
	f.Add("** x ** y **", "a x b y; echo $(y)")
	f.Add("a [b-d]* ?", "a cat e")
	f.Add("ls -l", "ls -l /srv\tx=1 a,b:c@d%e+f")
	f.Add("ls", "time ls")
	f.Add("a **", "a x | b && c || d; e;")
	f.Add("a", "a & b |& c ;; d")
	f.Fuzz(func(t *testing.T, pattern, command string) {
		cmds, perr := ParseCommand(command)
		// The fast path for plain words agrees with the shell parser.
		if fast, ok := plainCommands(command); ok {
			stmts, err := parseShell(command)
			if err != nil || len(stmts) != len(fast) {
				t.Fatalf("plain %q: %q, the parser says %d commands, %v", command, fast, len(stmts), err)
			}
			for i, st := range stmts {
				ws, err := simpleWords(st, false)
				if err != nil || len(ws) != len(fast[i]) {
					t.Fatalf("plain %q: %q, the parser says %v %v", command, fast, ws, err)
				}
				for j := range ws {
					if ws[j].text != fast[i][j] {
						t.Fatalf("plain %q: %q, the parser says %v", command, fast, ws)
					}
				}
			}
		}
		if perr == nil {
			if len(cmds) == 0 {
				t.Fatalf("%q parsed to no commands", command)
			}
			// The parse is of literal words: parsing one word quoted
			// gives it back.
			for _, argv := range cmds {
				for _, w := range argv {
					if strings.ContainsRune(w, '\'') {
						continue
					}
					back, err := ParseCommand("x '" + w + "'")
					if err != nil || len(back) != 1 || len(back[0]) != 2 || back[0][1] != w {
						t.Fatalf("word %q of %q does not quote back: %q %v", w, command, back, err)
					}
				}
			}
		}
		cp, err := compileCommandPattern(pattern)
		if err != nil {
			return
		}
		deny := false
		for _, argv := range cmds {
			deny = deny || cp.match(argv)
		}
		p, err := New([]Role{
			{Name: "anything", Match: Match{Providers: []string{"p"}}, Targets: []string{"*"}, Logins: []string{"l"}},
			{Name: "deny", Match: Match{Providers: []string{"p"}}, Targets: []string{"*"}, Logins: []string{"l"}, Commands: &Commands{Deny: []string{pattern}}},
		})
		if err != nil {
			t.Fatalf("pattern %q compiles but the role does not: %v", pattern, err)
		}
		d := p.Session(SessionRequest{Identity: &Identity{Provider: "p", Subject: "s"}, Target: "t", Login: "l", Action: ActionExec, Command: command})
		if d.Allow && (deny || perr != nil) {
			t.Fatalf("pattern %q denies %q (parsed %q, %v), yet it is allowed: %+v", pattern, command, cmds, perr, d)
		}
		if !d.Allow && !deny && perr == nil {
			t.Fatalf("pattern %q does not match %q (%q), yet it is refused: %s", pattern, command, cmds, d.Reason)
		}
	})
}
