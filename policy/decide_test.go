package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// bankPolicy loads testdata/bank.hcl with its targets configured.
func bankPolicy(t testing.TB) *Policy {
	t.Helper()
	p, warnings, err := Load("testdata/bank.hcl", Options{
		Providers: []string{"corp", "gha"},
		Targets:   []string{"web-1", "web-2", "db-prod", "db-staging", "sandbox"},
		MaxTTL:    time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		t.Errorf("unexpected warning: %s", w)
	}
	return p
}

var (
	sre      = &Identity{Provider: "corp", Subject: "dave", Claims: map[string]any{"groups": []any{"dev", "sre"}}}
	dev      = &Identity{Provider: "corp", Subject: "dan", Claims: map[string]any{"groups": []any{"dev"}}}
	ci       = &Identity{Provider: "gha", Subject: "repo:bank/app", Claims: map[string]any{"repository": "bank/app", "ref": "refs/heads/main"}}
	ciBranch = &Identity{Provider: "gha", Subject: "repo:bank/app", Claims: map[string]any{"repository": "bank/app", "ref": "refs/heads/wip"}}
	agent    = &Identity{Provider: "corp", Subject: "agent-7", Sponsor: "alice"}
	rogue    = &Identity{Provider: "corp", Subject: "agent-7", Sponsor: "mallory"}
	eve      = &Identity{Provider: "corp", Subject: "eve"}
	alice    = &Identity{Provider: "corp", Subject: "alice"}
	carol    = &Identity{Provider: "corp", Subject: "carol"}
)

func grant(id, role, target, login, cmd string, start, end time.Duration) Grant {
	return Grant{ID: "g-" + role + "-" + target + "-" + login, Identity: id, Role: role, Target: target, Login: login,
		Command: cmd, Start: t0.Add(start), End: t0.Add(end)}
}

func TestSessionDecisions(t *testing.T) {
	p := bankPolicy(t)
	inside := netip.MustParseAddr("10.1.2.3")
	outside := netip.MustParseAddr("192.0.2.1")
	dbGrant := grant("agent-7@corp", "agent-db", "db-prod", "postgres", "", -time.Minute, 10*time.Minute)
	stagingGrant := grant("agent-7@corp", "agent-db", "db-staging", "postgres", "", -time.Minute, 20*time.Minute)
	expired := grant("agent-7@corp", "agent-db", "db-prod", "postgres", "", -time.Hour, -time.Second)
	future := grant("agent-7@corp", "agent-db", "db-prod", "postgres", "", time.Minute, time.Hour)
	otherID := grant("agent-8@corp", "agent-db", "db-prod", "postgres", "", -time.Minute, 10*time.Minute)
	otherRole := grant("agent-7@corp", "agent-shell", "db-prod", "postgres", "", -time.Minute, 10*time.Minute)
	lsGrant := grant("agent-7@corp", "agent-shell", "sandbox", "agent", "ls -l /srv", -time.Minute, 5*time.Minute)
	shellGrant := grant("agent-7@corp", "agent-shell", "sandbox", "agent", "", -time.Minute, 7*time.Minute)

	for _, c := range []struct {
		name   string
		req    SessionRequest
		allow  bool
		rule   string // the Decision's Rule
		reason string // a part of the Reason, for denials
		check  func(*testing.T, Decision)
	}{
		// Identities and claims.
		{name: "sre connects", req: SessionRequest{Identity: sre, Target: "web-1", Login: "ops", Action: ActionConnect}, allow: true, rule: "role:sre-web",
			check: func(t *testing.T, d Decision) {
				want := Limits{Role: "sre-web", MaxSession: time.Hour, IdleTimeout: 10 * time.Minute, PTY: true, Shell: true, FileTransfer: true,
					Forward: []string{"localhost:5432", "10.0.0.*:443"}, Masking: "pci"}
				if !limitsEqual(d.Limits, want) || d.Grant != "" {
					t.Errorf("limits %+v, want %+v", d.Limits, want)
				}
			}},
		{name: "claim missing", req: SessionRequest{Identity: dev, Target: "web-1", Login: "ops", Action: ActionConnect}, rule: "default", reason: "no role grants dan@corp access to web-1 as ops"},
		{name: "ci on main", req: SessionRequest{Identity: ci, Target: "web-2", Login: "deploy", Action: ActionConnect, ClientAddress: inside}, allow: true, rule: "role:deploy-agent"},
		{name: "ci on a branch", req: SessionRequest{Identity: ciBranch, Target: "web-2", Login: "deploy", Action: ActionConnect, ClientAddress: inside}, rule: "default"},
		{name: "sponsor not allowed", req: SessionRequest{Identity: rogue, Target: "db-prod", Login: "postgres", Action: ActionExec, Command: "psql -c 'select 1'"}, rule: "default"},
		{name: "stranger", req: SessionRequest{Identity: eve, Target: "web-1", Login: "ops", Action: ActionConnect}, rule: "default"},
		{name: "no identity", req: SessionRequest{Target: "web-1", Login: "ops", Action: ActionConnect}, rule: "default"},
		// Targets and logins.
		{name: "target not granted", req: SessionRequest{Identity: sre, Target: "db-prod", Login: "ops", Action: ActionConnect}, rule: "default"},
		{name: "unconfigured target", req: SessionRequest{Identity: sre, Target: "web-99", Login: "ops", Action: ActionConnect}, allow: true, rule: "role:sre-web"},
		{name: "login not granted", req: SessionRequest{Identity: sre, Target: "web-1", Login: "root", Action: ActionConnect}, rule: "default"},
		{name: "certificate-only role", req: SessionRequest{Identity: sre, Target: "web-1", Login: "root", Action: ActionShell}, rule: "default"},
		// PTY, shell, file transfer.
		{name: "sre shell with pty", req: SessionRequest{Identity: sre, Target: "web-1", Login: "ops", Action: ActionShell, PTY: true}, allow: true, rule: "role:sre-web"},
		{name: "sre file transfer", req: SessionRequest{Identity: sre, Target: "web-1", Login: "ops", Action: ActionFileTransfer}, allow: true, rule: "role:sre-web"},
		{name: "ci shell", req: SessionRequest{Identity: ci, Target: "web-1", Login: "deploy", Action: ActionShell, ClientAddress: inside}, rule: "default", reason: "does not allow an interactive shell"},
		{name: "ci file transfer", req: SessionRequest{Identity: ci, Target: "web-1", Login: "deploy", Action: ActionFileTransfer, ClientAddress: inside}, rule: "default", reason: "file transfer"},
		{name: "ci exec with pty", req: SessionRequest{Identity: ci, Target: "web-1", Login: "deploy", Action: ActionExec, Command: "systemctl status web", PTY: true, ClientAddress: inside}, rule: "default", reason: "PTY"},
		// Forwarding.
		{name: "forward localhost", req: SessionRequest{Identity: sre, Target: "web-1", Login: "ops", Action: ActionForward, Forward: "localhost:5432"}, allow: true, rule: "role:sre-web"},
		{name: "forward glob host", req: SessionRequest{Identity: sre, Target: "web-1", Login: "ops", Action: ActionForward, Forward: "10.0.0.7:443"}, allow: true, rule: "role:sre-web"},
		{name: "forward other net", req: SessionRequest{Identity: sre, Target: "web-1", Login: "ops", Action: ActionForward, Forward: "10.0.1.7:443"}, rule: "default", reason: "port_forwarding"},
		{name: "forward other port", req: SessionRequest{Identity: sre, Target: "web-1", Login: "ops", Action: ActionForward, Forward: "localhost:22"}, rule: "default"},
		{name: "forward not allowed", req: SessionRequest{Identity: ci, Target: "web-1", Login: "deploy", Action: ActionForward, Forward: "localhost:5432", ClientAddress: inside}, rule: "default"},
		// Source pinning.
		{name: "ci from outside", req: SessionRequest{Identity: ci, Target: "web-1", Login: "deploy", Action: ActionConnect, ClientAddress: outside}, rule: "default", reason: "192.0.2.1 is not among its source addresses"},
		{name: "ci from nowhere", req: SessionRequest{Identity: ci, Target: "web-1", Login: "deploy", Action: ActionConnect}, rule: "default", reason: "source addresses"},
		{name: "ci from mapped v4", req: SessionRequest{Identity: ci, Target: "web-1", Login: "deploy", Action: ActionConnect, ClientAddress: netip.MustParseAddr("::ffff:10.1.9.9")}, allow: true, rule: "role:deploy-agent"},
		// Commands.
		{name: "allowed command", req: ciExec("systemctl status nginx", inside), allow: true, rule: "role:deploy-agent"},
		{name: "quoted argument", req: ciExec("systemctl status 'nginx web'", inside), allow: true, rule: "role:deploy-agent"},
		{name: "two arguments for one *", req: ciExec("systemctl status nginx web", inside), rule: "default", reason: `no allow pattern matches "systemctl status nginx web"`},
		{name: "** takes any run", req: ciExec("journalctl -u nginx --since today -n 50", inside), allow: true, rule: "role:deploy-agent"},
		{name: "pipeline allowed", req: ciExec("systemctl status nginx | grep active && echo ok", inside), allow: true, rule: "role:deploy-agent"},
		{name: "fd duplication", req: ciExec("systemctl status nginx 2>&1 | grep active", inside), allow: true, rule: "role:deploy-agent"},
		{name: "deny pattern", req: ciExec("rm -rf /", inside), rule: "role:deploy-agent deny:rm ** -rf **", reason: `command "rm -rf /" is denied by role deploy-agent`},
		{name: "deny after a semicolon", req: ciExec("systemctl status x; rm -v -rf /tmp", inside), rule: "role:deploy-agent deny:rm ** -rf **"},
		{name: "deny in a pipeline", req: ciExec("echo y | systemctl --now stop web", inside), rule: "role:deploy-agent deny:systemctl ** stop **"},
		{name: "deny despite quoting", req: ciExec(`r''m "-rf" /`, inside), rule: "role:deploy-agent deny:rm ** -rf **"},
		{name: "not allowed", req: ciExec("cat /etc/shadow", inside), rule: "default"},
		{name: "unparseable: variable", req: ciExec("echo $HOME", inside), rule: "role:deploy-agent", reason: "cannot be checked"},
		{name: "unparseable: substitution", req: ciExec("echo $(rm -rf /)", inside), rule: "role:deploy-agent"},
		{name: "unparseable: redirect", req: ciExec("echo x > /etc/passwd", inside), rule: "role:deploy-agent"},
		{name: "unparseable: glob", req: ciExec("echo *", inside), rule: "role:deploy-agent"},
		{name: "unparseable: subshell", req: ciExec("(echo x)", inside), rule: "role:deploy-agent"},
		{name: "unparseable: syntax", req: ciExec("echo 'x", inside), rule: "role:deploy-agent"},
		{name: "unparseable, no command rules", req: SessionRequest{Identity: sre, Target: "web-1", Login: "ops", Action: ActionExec, Command: "echo $HOME > /tmp/x"}, allow: true, rule: "role:sre-web"},
		{name: "unparseable, allow rules only", req: SessionRequest{Identity: agent, Target: "db-prod", Login: "postgres", Action: ActionExec, Command: "psql -c \"$Q\""}, rule: "default", reason: "cannot be checked"},
		// Deny wins across roles; grants.
		{name: "standing role without deny", req: agentExec("psql -c 'DROP TABLE users'"), allow: true, rule: "role:agent-read"},
		{name: "a grant's deny wins", req: agentExec("psql -c 'DROP  table users'", dbGrant), rule: `role:agent-db deny:psql ** -c 're:(?i).*drop\s+table.*' **`},
		{name: "first allowing role decides", req: agentExec("psql -c 'select 1'", dbGrant), allow: true, rule: "role:agent-read",
			check: func(t *testing.T, d Decision) {
				if d.Grant != "" || !d.Limits.NotAfter.IsZero() {
					t.Errorf("standing decision with a grant: %+v", d)
				}
			}},
		{name: "allowed under the grant", req: agentExec("pg_dump shop", dbGrant), allow: true, rule: "role:agent-db",
			check: func(t *testing.T, d Decision) {
				if d.Grant != dbGrant.ID || !d.Limits.NotAfter.Equal(dbGrant.End) || d.Limits.Role != "agent-db" {
					t.Errorf("grant decision %+v", d)
				}
			}},
		{name: "pty under the grant", req: func() SessionRequest { r := agentExec("pg_dump shop", dbGrant); r.PTY = true; return r }(), allow: true, rule: "role:agent-db"},
		{name: "no grant", req: agentExec("pg_dump shop"), rule: "default", reason: "no allow pattern"},
		{name: "expired grant", req: agentExec("pg_dump shop", expired), rule: "default"},
		{name: "grant not yet started", req: agentExec("pg_dump shop", future), rule: "default"},
		{name: "another identity's grant", req: agentExec("pg_dump shop", otherID), rule: "default"},
		{name: "another role's grant", req: agentExec("pg_dump shop", otherRole), rule: "default"},
		{name: "another target's grant", req: SessionRequest{Identity: agent, Target: "db-staging", Login: "postgres", Action: ActionConnect, Time: t0, Grants: []Grant{dbGrant}}, rule: "default", reason: "bastion grants request --target db-staging --login postgres"},
		{name: "this target's grant", req: SessionRequest{Identity: agent, Target: "db-staging", Login: "postgres", Action: ActionConnect, Time: t0, Grants: []Grant{dbGrant, stagingGrant}}, allow: true, rule: "role:agent-db"},
		{name: "grant login mismatch", req: SessionRequest{Identity: agent, Target: "db-staging", Login: "dba", Action: ActionConnect, Time: t0, Grants: []Grant{stagingGrant}}, rule: "default"},
		// A grant for one command.
		{name: "grant command", req: sandbox(ActionExec, "ls -l /srv", lsGrant), allow: true, rule: "role:agent-shell",
			check: func(t *testing.T, d Decision) {
				if d.Limits.Shell || !d.Limits.NotAfter.Equal(lsGrant.End) {
					t.Errorf("command grant limits %+v", d.Limits)
				}
			}},
		{name: "grant command, same argv", req: sandbox(ActionExec, `ls  "-l" '/srv'`, lsGrant), allow: true, rule: "role:agent-shell"},
		{name: "grant command, other argv", req: sandbox(ActionExec, "ls -l /", lsGrant), rule: "default", reason: `allows only the command "ls -l /srv"`},
		{name: "grant command, appended", req: sandbox(ActionExec, "ls -l /srv; id", lsGrant), rule: "default"},
		{name: "grant command, no shell", req: sandbox(ActionShell, "", lsGrant), rule: "default"},
		{name: "shell grant", req: sandbox(ActionShell, "", shellGrant), allow: true, rule: "role:agent-shell"},
		{name: "the later grant is used", req: sandbox(ActionConnect, "", lsGrant, shellGrant), allow: true, rule: "role:agent-shell",
			check: func(t *testing.T, d Decision) {
				if d.Grant != shellGrant.ID {
					t.Errorf("grant %s, want %s", d.Grant, shellGrant.ID)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.req.Time.IsZero() {
				c.req.Time = t0
			}
			d := p.Session(c.req)
			if d.Allow != c.allow || d.Rule != c.rule {
				t.Fatalf("got allow=%v rule=%q (%s), want allow=%v rule=%q", d.Allow, d.Rule, d.Reason, c.allow, c.rule)
			}
			if !d.Allow && (d.Reason == "" || !strings.Contains(d.Reason, c.reason)) {
				t.Errorf("reason %q, want it to say %q", d.Reason, c.reason)
			}
			if d.Allow && d.Limits.Role != strings.TrimPrefix(d.Rule, "role:") {
				t.Errorf("limits of role %q under rule %q", d.Limits.Role, d.Rule)
			}
			if c.check != nil {
				c.check(t, d)
			}
			// Explain decides the same, with a step for every role.
			e, steps := p.Explain(c.req)
			if e.Allow != d.Allow || e.Rule != d.Rule || e.Reason != d.Reason || e.Grant != d.Grant {
				t.Errorf("Explain decided %+v, Session %+v", e, d)
			}
			if len(steps) != len(p.Roles) {
				t.Errorf("%d steps for %d roles", len(steps), len(p.Roles))
			}
		})
	}
}

func ciExec(cmd string, from netip.Addr) SessionRequest {
	return SessionRequest{Identity: ci, Target: "web-1", Login: "deploy", Action: ActionExec, Command: cmd, ClientAddress: from}
}

func agentExec(cmd string, grants ...Grant) SessionRequest {
	return SessionRequest{Identity: agent, Target: "db-prod", Login: "postgres", Action: ActionExec, Command: cmd, Time: t0, Grants: grants}
}

func sandbox(a Action, cmd string, grants ...Grant) SessionRequest {
	return SessionRequest{Identity: agent, Target: "sandbox", Login: "agent", Action: a, Command: cmd, Time: t0, Grants: grants}
}

func limitsEqual(a, b Limits) bool {
	return slices.Equal(a.Forward, b.Forward) && a.Role == b.Role && a.MaxSession == b.MaxSession && a.IdleTimeout == b.IdleTimeout &&
		a.NotAfter.Equal(b.NotAfter) && a.PTY == b.PTY && a.Shell == b.Shell && a.FileTransfer == b.FileTransfer && a.Masking == b.Masking
}

func TestExplainSteps(t *testing.T) {
	p := bankPolicy(t)
	g := grant("agent-7@corp", "agent-db", "db-prod", "postgres", "", -time.Minute, time.Minute)
	d, steps := p.Explain(agentExec("psql -c 'drop table x'", g))
	if d.Allow {
		t.Fatalf("allowed: %+v", d)
	}
	want := map[string]string{
		"role:sre-web":      "does not apply: its targets do not include db-prod",
		"role:deploy-agent": "does not apply: it does not grant login postgres",
		"role:agent-read":   "applies (standing)",
		"role:agent-db":     "applies (grant g-agent-db-db-prod-postgres): denies: the command matches deny pattern",
		"role:agent-shell":  "does not apply: its targets do not include db-prod",
		"role:break-glass":  "does not apply: it has no targets",
	}
	for _, s := range steps {
		if !strings.HasPrefix(s.Outcome, want[s.Rule]) || want[s.Rule] == "" {
			t.Errorf("%s: %q, want it to begin %q", s.Rule, s.Outcome, want[s.Rule])
		}
	}
	_, steps = p.Explain(agentExec("pg_dump x"))
	for _, s := range steps {
		if s.Rule == "role:agent-db" && !strings.Contains(s.Outcome, "grant-only") {
			t.Errorf("agent-db without a grant: %q", s.Outcome)
		}
		if s.Rule == "role:agent-read" && !strings.Contains(s.Outcome, "does not allow it: no allow pattern") {
			t.Errorf("agent-read: %q", s.Outcome)
		}
	}
}

func TestGrantRequest(t *testing.T) {
	p := bankPolicy(t)
	for _, c := range []struct {
		name      string
		ask       GrantAsk
		allow     bool
		role      string
		duration  time.Duration
		approvals int
		reason    string
	}{
		{"capped by the role", GrantAsk{Identity: agent, Target: "db-prod", Login: "postgres", Duration: time.Hour}, true, "agent-db", 30 * time.Minute, 2, ""},
		{"shorter than the cap", GrantAsk{Identity: agent, Target: "db-staging", Login: "dba", Duration: 10 * time.Minute}, true, "agent-db", 10 * time.Minute, 2, ""},
		{"allowed command", GrantAsk{Identity: agent, Target: "db-prod", Login: "postgres", Duration: time.Minute, Command: "pg_dump shop"}, true, "agent-db", time.Minute, 2, ""},
		{"default approval", GrantAsk{Identity: agent, Target: "sandbox", Login: "agent", Duration: 3 * time.Hour}, true, "agent-shell", time.Hour, 1, ""},
		{"denied command", GrantAsk{Identity: agent, Target: "db-prod", Login: "postgres", Duration: time.Minute, Command: "psql -c 'drop table x'"}, false, "", 0, 0, "denies command"},
		{"command not allowed", GrantAsk{Identity: agent, Target: "db-prod", Login: "postgres", Duration: time.Minute, Command: "rm -rf /"}, false, "", 0, 0, "allows no command"},
		{"unparseable command", GrantAsk{Identity: agent, Target: "db-prod", Login: "postgres", Duration: time.Minute, Command: "psql $DB"}, false, "", 0, 0, "cannot be checked"},
		{"zero duration", GrantAsk{Identity: agent, Target: "db-prod", Login: "postgres"}, false, "", 0, 0, "positive duration"},
		{"negative duration", GrantAsk{Identity: agent, Target: "db-prod", Login: "postgres", Duration: -time.Minute}, false, "", 0, 0, "positive duration"},
		{"standing target only", GrantAsk{Identity: sre, Target: "web-1", Login: "ops", Duration: time.Minute}, false, "", 0, 0, "no grant-only role"},
		{"login not in role", GrantAsk{Identity: agent, Target: "db-prod", Login: "root", Duration: time.Minute}, false, "", 0, 0, "no grant-only role"},
		{"stranger", GrantAsk{Identity: eve, Target: "db-prod", Login: "postgres", Duration: time.Minute}, false, "", 0, 0, "no grant-only role"},
		{"no identity", GrantAsk{Target: "db-prod", Login: "postgres", Duration: time.Minute}, false, "", 0, 0, "no identity"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.ask.Time = t0
			r := p.GrantRequest(c.ask)
			if r.Allow != c.allow || r.Reason == "" {
				t.Fatalf("%+v", r)
			}
			if !r.Allow {
				if !strings.Contains(r.Reason, c.reason) {
					t.Errorf("reason %q, want %q", r.Reason, c.reason)
				}
				return
			}
			if r.Role != c.role || r.Duration != c.duration || r.Approvals != c.approvals || !slices.Equal(r.Approvers, []string{"approvers"}) {
				t.Errorf("%+v", r)
			}
		})
	}
}

func TestMayApprove(t *testing.T) {
	p := bankPolicy(t)
	for _, c := range []struct {
		name      string
		role      string
		requester string
		approver  *Identity
		ok        bool
		reason    string
	}{
		{"an approver", "agent-db", "agent-7@corp", alice, true, "approver of role agent-db"},
		{"another approver", "agent-shell", "agent-7@corp", carol, true, ""},
		{"the requester", "agent-db", "alice@corp", alice, false, "may not approve"},
		{"not an approver", "agent-db", "agent-7@corp", eve, false, "not among the approvers"},
		{"same subject, other provider", "agent-db", "agent-7@corp", &Identity{Provider: "gha", Subject: "alice"}, false, "not among"},
		{"standing role", "sre-web", "agent-7@corp", alice, false, "not grant-only"},
		{"no such role", "nope", "agent-7@corp", alice, false, "no role"},
		{"no approver", "agent-db", "agent-7@corp", nil, false, "no approver"},
	} {
		ok, why := p.MayApprove(c.role, c.requester, c.approver)
		if ok != c.ok || why == "" || !strings.Contains(why, c.reason) {
			t.Errorf("%s: %v %q", c.name, ok, why)
		}
	}
}

func TestCertificateGrantsAndExtensions(t *testing.T) {
	p := bankPolicy(t)
	dba := grant("agent-7@corp", "agent-db", "db-staging", "dba", "", -time.Minute, 4*time.Minute)
	pg := grant("agent-7@corp", "agent-db", "db-prod", "postgres", "", -time.Minute, 9*time.Minute)
	stale := grant("agent-7@corp", "agent-db", "db-prod", "dba", "", -time.Hour, -time.Minute)
	for _, c := range []struct {
		name       string
		id         *Identity
		logins     []string
		grants     []Grant
		principals string
		notAfter   time.Time
		grant      string
		ext        string
	}{
		{"standing only", agent, nil, nil, "postgres", time.Time{}, "", ""},
		{"a grant adds its login", agent, nil, []Grant{dba}, "dba,postgres", dba.End, dba.ID, ""},
		{"the earliest grant end", agent, nil, []Grant{pg, dba}, "dba,postgres", dba.End, pg.ID + "," + dba.ID, ""},
		{"narrowed to the grant", agent, []string{"dba"}, []Grant{dba}, "dba", dba.End, dba.ID, "permit-pty"},
		{"narrowed away from the grant", agent, []string{"postgres"}, []Grant{dba}, "postgres", time.Time{}, "", ""},
		{"expired grant", agent, nil, []Grant{stale}, "postgres", time.Time{}, "", ""},
		{"extensions from capabilities", sre, []string{"ops"}, nil, "ops", time.Time{}, "", "permit-pty,permit-port-forwarding"},
		{"the strictest extensions", sre, nil, nil, "ops,root", time.Time{}, "", ""},
	} {
		d := p.Certificate(CertRequest{Identity: c.id, Logins: c.logins, Grants: c.grants, Time: t0})
		if !d.Allow || strings.Join(d.Principals, ",") != c.principals || !d.NotAfter.Equal(c.notAfter) || d.Grant != c.grant || strings.Join(d.Extensions, ",") != c.ext {
			t.Errorf("%s: %+v", c.name, d)
		}
	}
	if d := p.Certificate(CertRequest{Identity: agent, Logins: []string{"dba"}, Time: t0}); d.Allow {
		t.Errorf("a grant-only login without a grant: %+v", d)
	}
}

func TestDevRole(t *testing.T) {
	p, err := New([]Role{DevRole([]string{"me"})})
	if err != nil {
		t.Fatal(err)
	}
	id := &Identity{Provider: "dev", Subject: "x"}
	for _, a := range []Action{ActionConnect, ActionShell, ActionExec, ActionFileTransfer} {
		if d := p.Session(SessionRequest{Identity: id, Target: "anything", Login: "me", Action: a, PTY: true, Command: "echo $HOME"}); !d.Allow {
			t.Errorf("%s: %+v", a, d)
		}
	}
	if d := p.Session(SessionRequest{Identity: id, Target: "t", Login: "me", Action: ActionForward, Forward: "localhost:1"}); d.Allow {
		t.Errorf("dev forwards: %+v", d)
	}
	if d := p.Certificate(CertRequest{Identity: id}); !d.Allow || strings.Join(d.Extensions, ",") != PermitPTY {
		t.Errorf("dev certificate: %+v", d)
	}
	q, err := p.WithRoles(Role{Name: "more", Match: Match{Providers: []string{"dev"}}, Logins: []string{"x"}})
	if err != nil || len(q.Roles) != 2 || len(p.Roles) != 1 {
		t.Errorf("WithRoles: %v", err)
	}
}
