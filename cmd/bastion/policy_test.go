package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// policyTestPolicy is a small bank: SRE humans with standing access to
// staging, pinned to the office network on prod-web, and agents that
// reach the production database only under a grant, exec only.
const policyTestPolicy = `identity "sre" {
  providers = ["corp"]
  claims    = { groups = ["sre"] }
}

identity "agents" {
  providers = ["corp"]
  subjects  = ["agent-*"]
}

identity "approvers" {
  providers = ["corp"]
  subjects  = ["alice", "bob"]
}

role "sre-staging" {
  identities      = ["sre"]
  targets         = ["staging-*"]
  logins          = ["ops"]
  pty             = true
  shell           = true
  port_forwarding = ["localhost:5432"]
  max_session     = "1h"
  idle_timeout    = "10m"
  masking         = "pci"
}

role "sre-prod" {
  identities       = ["sre"]
  targets          = ["prod-web"]
  logins           = ["ops"]
  source_addresses = ["10.0.0.0/8"]
}

role "agent-prod" {
  identities = ["agents"]
  targets    = ["prod-db"]
  logins     = ["postgres"]
  access     = "grant"
  commands {
    allow = ["psql **"]
    deny  = ["psql ** -c 're:(?i).*drop\\s+table.*' **"]
  }
  approval {
    approvers    = ["approvers"]
    approvals    = 2
    max_duration = "30m"
  }
}
`

// writePolicyFile writes src as name in a new temporary directory and
// returns its path.
func writePolicyFile(t *testing.T, name, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// matchLines fails unless every pattern matches some line of out.
func matchLines(t *testing.T, what, out string, patterns ...string) {
	t.Helper()
	for _, pat := range patterns {
		if !regexp.MustCompile(`(?m)` + pat).MatchString(out) {
			t.Errorf("%s does not match %q:\n%s", what, pat, out)
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	for _, tt := range []struct {
		name     string
		src      string
		code     int
		stdout   []string
		stderr   []string
		noStdout string
	}{
		{"valid", policyTestPolicy, 0,
			[]string{`^p\.hcl: ok: 3 roles, 3 identities, 0 warnings; hash sha256:[0-9a-f]{64}$`, `^note: identity providers, target names and max_ttl were not checked`},
			nil, `: (error|warning): `},
		{"bad duration", "identity \"a\" {\n  providers = [\"corp\"]\n}\nrole \"r\" {\n  identities = [\"a\"]\n  logins     = [\"ops\"]\n  max_ttl    = \"forever\"\n}\n", 1,
			[]string{`^.*p\.hcl:7:16: error: max_ttl: bad duration "forever"`},
			[]string{`^bastion: error: .*p\.hcl: 1 error: the policy cannot be loaded$`, `^bastion: hint: fix the places named above`}, `ok:`},
		{"undefined identity and bad login", "role \"r\" {\n  identities = [\"nobody\"]\n  logins     = [\"ops\", \"a b\"]\n}\n", 1,
			[]string{`p\.hcl:3:24: error: role "r": invalid login "a b"`, `p\.hcl:2:17: error: role "r" names identity "nobody", which is not defined`},
			[]string{`2 errors`}, ``},
		{"syntax", "role \"r\" {\n  logins = [\"ops\"\n", 1,
			[]string{`p\.hcl:\d+:\d+: error: `}, nil, ``},
		{"unknown attribute", "role \"r\" {\n  match { providers = [\"corp\"] }\n  logins = [\"ops\"]\n  shells = true\n}\n", 1,
			[]string{`p\.hcl:4:3: error: Unsupported argument`}, nil, ``},
		{"bad command pattern", "role \"r\" {\n  match { providers = [\"corp\"] }\n  targets = [\"t\"]\n  logins = [\"ops\"]\n  commands {\n    allow = [\"ls\", \"echo $HOME\"]\n  }\n}\n", 1,
			[]string{`p\.hcl:6:20: error: role "r": pattern "echo \$HOME": variables are not checked`}, nil, ``},
		{"warnings only", "identity \"unused\" {\n  providers = [\"corp\"]\n}\n" +
			"role \"wide\" {\n  match { providers = [\"corp\"] }\n  targets = [\"*\"]\n  logins = [\"ops\"]\n  shell = true\n}\n" +
			"role \"narrow\" {\n  match { providers = [\"corp\"] }\n  targets = [\"web-1\"]\n  logins = [\"ops\"]\n}\n", 0,
			[]string{
				`^.*p\.hcl:1:1: warning: identity "unused" is not used by any role or approval$`,
				`^.*p\.hcl:10:1: warning: role "narrow" is shadowed by role "wide"`,
				`^p\.hcl: ok: 2 roles, 1 identity, 2 warnings; hash sha256:`,
			}, nil, `: error: `},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "p.hcl"), []byte(tt.src), 0o600); err != nil {
				t.Fatal(err)
			}
			// Relative to the directory, as an operator would type it.
			t.Chdir(dir)
			code, out, errOut := cli(ctx, home, "policy", "check", "p.hcl")
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			matchLines(t, "stdout", out, tt.stdout...)
			matchLines(t, "stderr", errOut, tt.stderr...)
			if tt.noStdout != "" && regexp.MustCompile(tt.noStdout).MatchString(out) {
				t.Errorf("stdout matches %q:\n%s", tt.noStdout, out)
			}
		})
	}
}

func TestPolicyCheckDirectory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	files := map[string]string{
		"10-identities.hcl": "identity \"sre\" {\n  providers = [\"corp\"]\n}\n",
		"20-roles.hcl":      "role \"r\" {\n  identities = [\"sre\", \"ghost\"]\n  logins = [\"ops\"]\n}\n",
		"README.md":         "not policy",
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ := cli(ctx, t.TempDir(), "policy", "check", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	// The error names the file of the directory it is in.
	matchLines(t, "stdout", out, regexp.QuoteMeta(filepath.Join(dir, "20-roles.hcl"))+`:2:24: error: role "r" names identity "ghost", which is not defined`)

	if err := os.WriteFile(filepath.Join(dir, "20-roles.hcl"), []byte("role \"r\" {\n  identities = [\"sre\"]\n  logins = [\"ops\"]\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(ctx, t.TempDir(), "policy", "check", dir)
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s%s", code, out, errOut)
	}
	matchLines(t, "stdout", out, `ok: 1 role, 1 identity, 0 warnings; hash (sha256:[0-9a-f]{64})$`)
	hash := regexp.MustCompile(`sha256:[0-9a-f]{64}`).FindString(out)
	code, hout, errOut := cli(ctx, t.TempDir(), "policy", "hash", dir)
	if code != 0 || strings.TrimSpace(hout) != hash {
		t.Errorf("policy hash: exit %d, %q, want %q (%s)", code, hout, hash, errOut)
	}
}

func TestPolicyCheckJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type report struct {
		Errors, Warnings []struct {
			File              string
			Line, Column      int
			Severity, Message string
		}
		Hash         string
		Roles        int
		Identities   int
		CrossChecked bool `json:"cross_checked"`
	}
	good := writePolicyFile(t, "good.hcl", policyTestPolicy)
	code, out, errOut := cli(ctx, t.TempDir(), "policy", "check", "--json", good)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(r.Errors) != 0 || len(r.Warnings) != 0 || r.Roles != 3 || r.Identities != 3 || r.CrossChecked || !strings.HasPrefix(r.Hash, "sha256:") {
		t.Errorf("report = %+v", r)
	}
	if !strings.Contains(out, `"errors": []`) || !strings.Contains(out, `"warnings": []`) {
		t.Errorf("empty lists are not [] in:\n%s", out)
	}
	_, hout, _ := cli(ctx, t.TempDir(), "policy", "hash", good)
	if strings.TrimSpace(hout) != r.Hash {
		t.Errorf("policy hash = %q, check --json hash = %q", hout, r.Hash)
	}

	bad := writePolicyFile(t, "bad.hcl", "identity \"x\" {\n  providers = [\"corp\"]\n}\nrole \"r\" {\n  identities = [\"x\"]\n  logins = [\"ops\"]\n  access = \"sometimes\"\n}\n")
	code, out, errOut = cli(ctx, t.TempDir(), "policy", "check", bad, "--json")
	if code != 1 || errOut != "" {
		t.Fatalf("exit %d, stderr %q; want 1 and nothing", code, errOut)
	}
	r = report{}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(r.Errors) != 1 || r.Hash != "" || r.Roles != 0 {
		t.Fatalf("report = %+v", r)
	}
	if e := r.Errors[0]; e.File != bad || e.Line != 7 || e.Column != 12 || e.Severity != "error" || !strings.Contains(e.Message, `access must be "standing" or "grant"`) {
		t.Errorf("error = %+v", e)
	}
	code, _, errOut = cli(ctx, t.TempDir(), "policy", "hash", bad)
	if code != 1 || !strings.Contains(errOut, "a policy with errors never goes into force") {
		t.Errorf("policy hash of a bad policy: exit %d, %s", code, errOut)
	}
}

// policyTestConfig is a serve configuration with a provider and targets,
// whose policy is policyFile.
func policyTestConfig(t *testing.T, policyLine string, inline string) string {
	t.Helper()
	dir := t.TempDir()
	src := `ssh {
  listen = "127.0.0.1:0"
}

identity_provider "corp" {
  issuer    = "https://login.bank.example"
  audiences = ["bastion"]
}

target "staging-web" {
  command = ["/bin/sh"]
}

target "prod-db" {
  command = ["/bin/sh"]
}
` + policyLine + inline
	p := filepath.Join(dir, "bastion.hcl")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyCheckConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pol := writePolicyFile(t, "policy.hcl", policyTestPolicy+
		"role \"ci\" {\n  match { providers = [\"gha\"] }\n  targets = [\"web-*\"]\n  logins = [\"deploy\"]\n}\n")
	cfg := policyTestConfig(t, "policy = \""+pol+"\"\n", "")

	// Alone, the policy is valid; against the configuration, provider
	// "gha" is not configured.
	if code, out, errOut := cli(ctx, t.TempDir(), "policy", "check", pol); code != 0 {
		t.Fatalf("policy check FILE: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := cli(ctx, t.TempDir(), "policy", "check", "--config", cfg)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	matchLines(t, "stdout", out, regexp.QuoteMeta(pol)+`:51:24: error: role "ci" matches provider "gha", which is not configured`)

	// Inline roles: the configuration's targets are known, so a pattern
	// that matches none of them is a warning.
	cfg = policyTestConfig(t, "", policyTestPolicy)
	code, out, errOut = cli(ctx, t.TempDir(), "policy", "check", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var r struct {
		Warnings     []struct{ File, Message string }
		Hash         string
		Roles        int
		CrossChecked bool `json:"cross_checked"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if !r.CrossChecked || r.Roles != 3 || len(r.Warnings) != 1 || r.Warnings[0].File != cfg || !strings.Contains(r.Warnings[0].Message, `target pattern "prod-web" matches no configured target`) {
		t.Errorf("report = %+v", r)
	}
	_, hout, _ := cli(ctx, t.TempDir(), "policy", "hash", "--config", cfg)
	if strings.TrimSpace(hout) != r.Hash {
		t.Errorf("policy hash --config = %q, want %q", hout, r.Hash)
	}

	// A mistake in the configuration itself is reported in place.
	cfg = policyTestConfig(t, "api {\n  listen = \"nowhere\"\n}\n", "")
	code, out, _ = cli(ctx, t.TempDir(), "policy", "check", "--config", cfg)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	matchLines(t, "stdout", out, regexp.QuoteMeta(cfg)+`:18:3: error: api listen = "nowhere" is not HOST:PORT`)
}

func TestPolicyExplain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pol := writePolicyFile(t, "policy.hcl", policyTestPolicy)
	sre := []string{"--identity", "carol@corp", "--claim", "groups=dba", "--claim", "groups=sre"}
	agent := []string{"--identity", "agent-1@corp", "--target", "prod-db", "--login", "postgres"}
	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
	}{
		{"shell with pty", append(sre, "--target", "staging-web", "--login", "ops", "--shell", "--pty"), 0, []string{
			`^ALLOW$`, `^  rule: +role:sre-staging$`, `^  +max session: +1h0m0s`, `^  +idle timeout: +10m0s`,
			`^  +masking: +profile pci$`, `^  +port forwards: +localhost:5432$`, `^  +ends: +when the certificate expires \(standing access\)$`,
			`^  role:sre-staging +applies \(standing\): allows it$`, `^  role:agent-prod +does not apply: its targets do not include staging-web$`,
		}},
		{"claims that do not match", []string{"--identity", "carol@corp", "--claim", "groups=dba", "--target", "staging-web", "--login", "ops", "--shell"}, 1, []string{
			`^DENY$`, `^  rule: +default$`, `^  reason: +no role grants carol@corp access to staging-web as ops$`,
			`^  role:sre-staging +does not apply: it does not match carol@corp$`,
		}},
		{"exec on a standing role", append(sre, "--target", "staging-web", "--login", "ops", "--command", "uptime"), 0, []string{
			`^ALLOW$`, `request: +carol@corp to ops@staging-web: exec "uptime"$`,
		}},
		{"forward allowed", append(sre, "--target", "staging-web", "--login", "ops", "--forward", "localhost:5432"), 0, []string{`^ALLOW$`}},
		{"forward denied", append(sre, "--target", "staging-web", "--login", "ops", "--forward", "10.0.0.1:22"), 1, []string{
			`^DENY$`, `no port_forwarding pattern matches "10\.0\.0\.1:22"`,
		}},
		{"file transfer denied", append(sre, "--target", "staging-web", "--login", "ops", "--sftp"), 1, []string{`it does not allow file transfer`}},
		{"source pinned, inside", append(sre, "--target", "prod-web", "--login", "ops", "--command", "uptime", "--from", "10.1.2.3"), 0, []string{`^  rule: +role:sre-prod$`}},
		{"source pinned, outside", append(sre, "--target", "prod-web", "--login", "ops", "--command", "uptime", "--from", "192.0.2.7:50022"), 1, []string{
			`the client address 192\.0\.2\.7 is not among its source addresses`,
		}},
		{"grant-only without a grant", append(agent, "--command", "psql -c 'SELECT 1'"), 1, []string{
			`^DENY$`, `role agent-prod grants it under a just-in-time grant: request one \(bastion grants request --target prod-db --login postgres\)`,
			`^  role:agent-prod +does not apply: it is grant-only`,
		}},
		{"under a simulated grant", append(agent, "--command", "psql -c 'SELECT 1'", "--grant", "agent-prod", "--at", "2026-03-01T09:00:00Z"), 0, []string{
			`^ALLOW$`, `^  grant: +simulated$`, `^simulated grant "simulated" \(nothing was requested or approved\):$`,
			`^  role agent-prod, 2026-03-01T09:00:00Z until 2026-03-01T09:30:00Z$`,
			`a request for it would go to role agent-prod: 2 approval\(s\) from approvers`,
			`^  +ends: +2026-03-01T09:30:00Z, when the grant does$`, `^  +shell: +not allowed$`,
		}},
		{"deny wins under a grant", append(agent, "--command", "psql -h db -c 'drop   table accounts'", "--grant", "agent-prod"), 1, []string{
			`^DENY$`, `^  rule: +role:agent-prod deny:psql \*\* -c 're:`,
		}},
		{"not allowed under a grant", append(agent, "--command", "rm -rf /", "--grant", "agent-prod"), 1, []string{
			`no allow pattern matches "rm -rf /"`,
		}},
		{"unparseable under a grant", append(agent, "--command", "psql -c \"$SQL\"", "--grant", "agent-prod"), 1, []string{
			`cannot be checked against role agent-prod's deny rules \(variables are not checked\)`,
		}},
		{"shell under a grant", append(agent, "--shell", "--grant", "agent-prod", "--grant-duration", "5m"), 1, []string{
			`it does not allow an interactive shell`,
		}},
		{"command-scoped grant", append(agent, "--command", "psql -c 'VACUUM'", "--grant", "agent-prod", "--grant-command", "psql -c 'ANALYZE'"), 1, []string{
			`grant simulated allows only the command "psql -c 'ANALYZE'"`,
		}},
		{"grant the identity could not ask for", []string{"--identity", "mallory@corp", "--target", "prod-db", "--login", "postgres", "--grant", "agent-prod"}, 1, []string{
			`the identity could not request it: no grant-only role lets mallory@corp ask for prod-db as postgres`,
		}},
		{"connect", append(sre, "--target", "staging-web", "--login", "ops"), 0, []string{
			`request: +carol@corp to ops@staging-web: connect`,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"policy", "explain", "--policy", pol}, tt.args...)
			code, out, errOut := cli(ctx, t.TempDir(), args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			if errOut != "" {
				t.Errorf("stderr: %s", errOut)
			}
			matchLines(t, "stdout", out, tt.stdout...)
		})
	}
}

func TestPolicyExplainJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pol := writePolicyFile(t, "policy.hcl", policyTestPolicy)
	code, out, errOut := cli(ctx, t.TempDir(), "policy", "explain", "--policy", pol, "--json",
		"--identity", "agent-1@corp", "--target", "prod-db", "--login", "postgres", "--command", "psql -c 'SELECT 1'",
		"--grant", "agent-prod", "--grant-duration", "10m", "--at", "2026-03-01T09:00:00Z", "--from", "10.9.8.7")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var x struct {
		Allow      bool
		Rule       string
		Grant      string
		PolicyHash string `json:"policy_hash"`
		Request    struct {
			Identity, Action, Command, From, At string
		}
		Limits *struct {
			Role        string
			MaxSession  string `json:"max_session"`
			IdleTimeout string `json:"idle_timeout"`
			NotAfter    string `json:"not_after"`
			Shell       bool
			Forward     []string
		}
		Steps          []struct{ Rule, Outcome string }
		SimulatedGrant *struct{ ID, Role, Start, End string } `json:"simulated_grant"`
		GrantRequest   *struct {
			Allow     bool
			Role      string
			Duration  string
			Approvals int
		} `json:"grant_request"`
	}
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	switch {
	case !x.Allow || x.Rule != "role:agent-prod" || x.Grant != "simulated" || !strings.HasPrefix(x.PolicyHash, "sha256:"):
		t.Errorf("decision: %+v", x)
	case x.Request.Identity != "agent-1@corp" || x.Request.Action != "exec" || x.Request.From != "10.9.8.7" || x.Request.At != "2026-03-01T09:00:00Z":
		t.Errorf("request: %+v", x.Request)
	case x.Limits == nil || x.Limits.Role != "agent-prod" || x.Limits.MaxSession != "0s" || x.Limits.NotAfter != "2026-03-01T09:10:00Z" || x.Limits.Shell || x.Limits.Forward == nil:
		t.Errorf("limits: %+v", x.Limits)
	case len(x.Steps) != 3 || x.Steps[2].Rule != "role:agent-prod" || !strings.HasPrefix(x.Steps[2].Outcome, "applies (grant simulated)"):
		t.Errorf("steps: %+v", x.Steps)
	case x.SimulatedGrant == nil || x.SimulatedGrant.End != "2026-03-01T09:10:00Z":
		t.Errorf("simulated grant: %+v", x.SimulatedGrant)
	case x.GrantRequest == nil || !x.GrantRequest.Allow || x.GrantRequest.Approvals != 2 || x.GrantRequest.Duration != "10m0s":
		t.Errorf("grant request: %+v", x.GrantRequest)
	}

	// A denial is still printed in full, and exits 1.
	code, out, _ = cli(ctx, t.TempDir(), "policy", "explain", "--policy", pol, "--json",
		"--identity", "agent-1@corp", "--target", "prod-db", "--login", "postgres", "--shell")
	var d struct {
		Allow  bool
		Rule   string
		Reason string
		Limits any
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 1 || d.Allow || d.Rule != "default" || d.Reason == "" || d.Limits != nil {
		t.Errorf("denial: exit %d, %+v, %v\n%s", code, d, err, out)
	}
}

func TestPolicyExplainConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := policyTestConfig(t, "", policyTestPolicy)
	code, out, errOut := cli(ctx, t.TempDir(), "policy", "explain", "--config", cfg,
		"--identity", "carol@corp", "--claim", "groups=sre", "--target", "staging-web", "--login", "ops", "--shell")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	matchLines(t, "stdout", out, `^ALLOW$`, `^note: the policy has 1 warning: run "bastion policy check --config `)

	// Names the configuration does not know are pointed out.
	code, out, _ = cli(ctx, t.TempDir(), "policy", "explain", "--config", cfg,
		"--identity", "x@gha", "--target", "nowhere", "--login", "ops")
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	matchLines(t, "stdout", out, `^note: provider "gha" is not configured`, `^note: target "nowhere" is not configured`)
}

func TestPolicyBadCommandLines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pol := writePolicyFile(t, "policy.hcl", policyTestPolicy)
	broken := writePolicyFile(t, "broken.hcl", "role \"r\" {\n")
	ask := []string{"--policy", pol, "--identity", "agent-1@corp", "--target", "prod-db", "--login", "postgres"}
	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"check without a policy", []string{"policy", "check"}, 2, `policy check needs a policy FILE\|DIR, or --config FILE`},
		{"check with both", []string{"policy", "check", pol, "--config", pol}, 2, `not both`},
		{"check of two files", []string{"policy", "check", pol, pol}, 2, `takes one policy file or directory, not 2`},
		{"check of a missing file", []string{"policy", "check", filepath.Join(t.TempDir(), "none.hcl")}, 1, `read policy: .*no such file`},
		{"check of a directory without policy", []string{"policy", "check", t.TempDir()}, 1, `no \.hcl files in`},
		{"check of a missing config", []string{"policy", "check", "--config", filepath.Join(t.TempDir(), "none.hcl")}, 1, `configuration .*none\.hcl: `},
		{"unknown flag", []string{"policy", "explain", "--nope"}, 2, `unknown flag --nope\nbastion: hint: run "bastion help policy explain" for usage`},
		{"explain without a policy", []string{"policy", "explain", "--identity", "a@corp", "--target", "t", "--login", "l"}, 2, `needs the policy: --policy FILE\|DIR, or --config FILE`},
		{"explain with both", append([]string{"policy", "explain", "--config", pol}, ask...), 2, `--policy or --config, not both`},
		{"explain without an identity", []string{"policy", "explain", "--policy", pol, "--target", "t", "--login", "l"}, 2, `needs --identity SUBJECT@PROVIDER`},
		{"identity without a provider", []string{"policy", "explain", "--policy", pol, "--identity", "alice", "--target", "t", "--login", "l"}, 2, `--identity "alice": want SUBJECT@PROVIDER`},
		{"explain without a login", []string{"policy", "explain", "--policy", pol, "--identity", "a@corp", "--target", "t"}, 2, `needs --target TARGET and --login LOGIN`},
		{"two actions", append([]string{"policy", "explain", "--shell", "--sftp"}, ask...), 2, `at most one of --command, --shell, --sftp and --forward`},
		{"bad claim", append([]string{"policy", "explain", "--claim", "groups"}, ask...), 2, `--claim "groups": want NAME=VALUE`},
		{"claim both value and object", append([]string{"policy", "explain", "--claim", "act=x", "--claim", "act.sub=y"}, ask...), 2, `act is given a value, so it cannot hold claims too`},
		{"bad forward", append([]string{"policy", "explain", "--forward", "localhost"}, ask...), 2, `--forward "localhost": want HOST:PORT`},
		{"bad from", append([]string{"policy", "explain", "--from", "office"}, ask...), 2, `--from "office": want an IP address`},
		{"bad time", append([]string{"policy", "explain", "--at", "tomorrow"}, ask...), 2, `--at "tomorrow": want an RFC 3339 time`},
		{"grant of no role", append([]string{"policy", "explain", "--grant", "ghost"}, ask...), 2, `--grant ghost: the policy has no role "ghost"`},
		{"grant of a standing role", append([]string{"policy", "explain", "--grant", "sre-staging"}, ask...), 2, `role sre-staging is standing access, not grant-only`},
		{"grant flags without a grant", append([]string{"policy", "explain", "--grant-duration", "5m"}, ask...), 2, `need --grant ROLE`},
		{"explain with a broken policy", []string{"policy", "explain", "--policy", broken, "--identity", "a@corp", "--target", "t", "--login", "l"}, 2,
			`1 error: the policy cannot be loaded, so the policy decides nothing\nbastion: hint: run "bastion policy check .*broken\.hcl" to see them`},
		{"explain takes no arguments", append([]string{"policy", "explain", "extra"}, ask...), 2, `takes no arguments`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := cli(ctx, t.TempDir(), tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			if !strings.HasPrefix(errOut, "bastion: error: ") {
				t.Errorf("stderr does not start with \"bastion: error: \":\n%s", errOut)
			}
			if !regexp.MustCompile(tt.stderr).MatchString(errOut) {
				t.Errorf("stderr does not match %q:\n%s", tt.stderr, errOut)
			}
		})
	}
}

func TestPolicyHelp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, name := range []string{"check", "explain", "hash"} {
		code, out, _ := cli(ctx, t.TempDir(), "help", "policy", name)
		if code != 0 || !strings.HasPrefix(out, "Usage:\n    bastion policy "+name) {
			t.Errorf("help policy %s: exit %d\n%s", name, code, out)
		}
	}
	code, out, _ := cli(ctx, t.TempDir(), "help", "policy")
	if code != 0 || !strings.Contains(out, "policy explain") || !strings.Contains(out, "policy hash") {
		t.Errorf("help policy: exit %d\n%s", code, out)
	}
}
