package policy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func id(provider, sub string, claims map[string]any) *Identity {
	return &Identity{Provider: provider, Issuer: "https://" + provider + ".example", Subject: sub, Claims: claims}
}

func TestCertificateDecisions(t *testing.T) {
	p, err := New([]Role{
		{Name: "ci", Match: Match{Providers: []string{"gha"}, Claims: map[string][]string{"repository": {"bank/*"}, "ref": {"refs/heads/main"}}},
			Logins: []string{"deploy"}, MaxTTL: 5 * time.Minute, Permit: []string{PermitPTY}, Sponsor: "team-payments"},
		{Name: "ops", Match: Match{Providers: []string{"corp"}, Claims: map[string][]string{"groups": {"ops"}}},
			Logins: []string{"ops", "deploy"}, MaxTTL: 30 * time.Minute, Permit: []string{PermitPTY, PermitPortForwarding}},
		{Name: "dba", Match: Match{Providers: []string{"corp"}, Subjects: []string{"dba-*"}},
			Logins: []string{"postgres"}, SourceAddresses: []string{"10.1.0.0/16"}},
		{Name: "nested", Match: Match{Providers: []string{"corp"}, Claims: map[string][]string{"act.sub": {"alice"}}}, Logins: []string{"agent"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ciID := id("gha", "repo:bank/app:ref:refs/heads/main", map[string]any{"repository": "bank/app", "ref": "refs/heads/main"})
	opsID := id("corp", "bob", map[string]any{"groups": []any{"dev", "ops"}})
	dbaOps := id("corp", "dba-carol", map[string]any{"groups": []any{"ops"}})
	for _, c := range []struct {
		name       string
		id         *Identity
		logins     []string
		ttl        time.Duration
		allow      bool
		principals string
		wantTTL    time.Duration
		ext        string
		src        string
		rule       string
		sponsor    string
	}{
		{"ci on main", ciID, nil, 0, true, "deploy", 5 * time.Minute, "permit-pty", "", "role:ci", "team-payments"},
		{"ci asks less ttl", ciID, nil, time.Minute, true, "deploy", time.Minute, "permit-pty", "", "role:ci", "team-payments"},
		{"ci asks more ttl", ciID, nil, time.Hour, true, "deploy", 5 * time.Minute, "permit-pty", "", "role:ci", "team-payments"},
		{"ci on a branch", id("gha", "x", map[string]any{"repository": "bank/app", "ref": "refs/heads/dev"}), nil, 0, false, "", 0, "", "", "", ""},
		{"ci other org", id("gha", "x", map[string]any{"repository": "evil/app", "ref": "refs/heads/main"}), nil, 0, false, "", 0, "", "", "", ""},
		{"claims from another provider", id("corp", "x", map[string]any{"repository": "bank/app", "ref": "refs/heads/main"}), nil, 0, false, "", 0, "", "", "", ""},
		{"ops all logins", opsID, nil, 0, true, "deploy,ops", DefaultTTL, "permit-pty,permit-port-forwarding", "", "role:ops", ""},
		{"ops narrows", opsID, []string{"ops"}, 0, true, "ops", DefaultTTL, "permit-pty,permit-port-forwarding", "", "role:ops", ""},
		{"ops asks root", opsID, []string{"root"}, 0, false, "", 0, "", "", "", ""},
		{"ops asks ops and root", opsID, []string{"ops", "root"}, 0, false, "", 0, "", "", "", ""},
		{"two roles: the strictest limits", dbaOps, nil, time.Hour, true, "deploy,ops,postgres", DefaultTTL, "", "10.1.0.0/16", "role:ops,role:dba", ""},
		{"two roles, one login asked", dbaOps, []string{"postgres"}, 0, true, "postgres", DefaultTTL, "", "10.1.0.0/16", "role:dba", ""},
		{"nested claim", id("corp", "agent-9", map[string]any{"act": map[string]any{"sub": "alice"}}), nil, 0, true, "agent", DefaultTTL, "", "", "role:nested", ""},
		{"nobody", id("corp", "eve", nil), nil, 0, false, "", 0, "", "", "", ""},
		{"no identity", nil, nil, 0, false, "", 0, "", "", "", ""},
	} {
		d := p.Certificate(CertRequest{Identity: c.id, Logins: c.logins, TTL: c.ttl, Time: time.Unix(1e9, 0)})
		if d.Allow != c.allow {
			t.Errorf("%s: allow %v (%s), want %v", c.name, d.Allow, d.Reason, c.allow)
			continue
		}
		if !d.Allow {
			if d.Reason == "" || len(d.Principals) != 0 {
				t.Errorf("%s: denial %+v", c.name, d)
			}
			continue
		}
		if got := strings.Join(d.Principals, ","); got != c.principals || d.TTL != c.wantTTL || strings.Join(d.Extensions, ",") != c.ext ||
			strings.Join(d.SourceAddresses, ",") != c.src || d.Rule != c.rule || d.Sponsor != c.sponsor {
			t.Errorf("%s: %+v", c.name, d)
		}
	}
}

func TestRoleValidation(t *testing.T) {
	good := Role{Name: "r", Match: Match{Providers: []string{"p"}, Subjects: []string{"a"}}, Logins: []string{"x"}}
	for name, edit := range map[string]func(*Role){
		"no name":        func(r *Role) { r.Name = "" },
		"matches nobody": func(r *Role) { r.Match = Match{} },
		"no providers":   func(r *Role) { r.Match.Providers = nil },
		"bad glob":       func(r *Role) { r.Match.Subjects = []string{"[a"} },
		"no logins":      func(r *Role) { r.Logins = nil },
		"login with @":   func(r *Role) { r.Logins = []string{"a@b"} },
		"negative ttl":   func(r *Role) { r.MaxTTL = -time.Second },
		"unknown permit": func(r *Role) { r.Permit = []string{"permit-everything"} },
		"bad address":    func(r *Role) { r.SourceAddresses = []string{"10.0.0.0/33"} },
	} {
		r := good
		r.Match.Subjects = slices.Clone(good.Match.Subjects)
		r.Match.Providers = slices.Clone(good.Match.Providers)
		edit(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := New([]Role{good, good}); err == nil {
		t.Error("duplicate role accepted")
	}
}

func TestMatchSponsors(t *testing.T) {
	p, err := New([]Role{{Name: "for-alice", Match: Match{Providers: []string{"x"}, Sponsors: []string{"alice"}}, Logins: []string{"deploy"}}})
	if err != nil {
		t.Fatal(err)
	}
	agent := &Identity{Provider: "x", Subject: "agent-1", Sponsor: "alice"}
	if d := p.Certificate(CertRequest{Identity: agent}); !d.Allow || d.Sponsor != "alice" {
		t.Errorf("agent for alice: %+v", d)
	}
	for _, id := range []*Identity{
		{Provider: "x", Subject: "agent-1"},                     // no sponsor
		{Provider: "x", Subject: "agent-1", Sponsor: "mallory"}, // another
		{Provider: "y", Subject: "agent-1", Sponsor: "alice"},   // another provider
	} {
		if d := p.Certificate(CertRequest{Identity: id}); d.Allow {
			t.Errorf("%+v allowed", id)
		}
	}
}

func TestSourceAddresses(t *testing.T) {
	if _, err := New([]Role{{Name: "r", Match: Match{Providers: []string{"p"}}, Logins: []string{"x"}, SourceAddresses: []string{"10.20.0.1/16"}}}); err == nil {
		t.Error("a block with host bits set was accepted (sshd refuses it)")
	}
	for _, c := range []struct {
		a, b []string
		want string
	}{
		{[]string{"10.0.0.1"}, []string{"10.0.0.1/32"}, "10.0.0.1"},
		{[]string{"10.0.0.0/16"}, []string{"10.0.5.0/24"}, "10.0.5.0/24"},
		{[]string{"10.0.0.0/16", "192.0.2.9"}, []string{"192.0.2.0/24", "10.0.0.0/8"}, "10.0.0.0/16,192.0.2.9"},
		{[]string{"10.0.0.0/16"}, []string{"10.1.0.0/16"}, ""},
		{[]string{"2001:db8::/32"}, []string{"2001:db8:1::/48"}, "2001:db8:1::/48"},
	} {
		got := intersectSources(c.a, c.b)
		slices.Sort(got)
		if strings.Join(got, ",") != c.want {
			t.Errorf("%v ∩ %v = %v, want %s", c.a, c.b, got, c.want)
		}
	}
}
