package policy

import (
	"fmt"
	"testing"
	"time"
)

// benchPolicy is 1,000 roles over 10 providers, 50 groups, 20 logins and
// 200 targets, a third of them by glob, a third grant-only, a third with
// command rules: a large bank's policy, generated.
func benchPolicy(b *testing.B) (*Policy, *Identity) {
	b.Helper()
	var idents []IdentityMatcher
	for i := range 50 {
		idents = append(idents, IdentityMatcher{
			Name:  fmt.Sprintf("team-%d", i),
			Match: Match{Providers: []string{fmt.Sprintf("idp-%d", i%10)}, Claims: map[string][]string{"groups": {fmt.Sprintf("team-%d", i)}}},
		})
	}
	var targets []string
	for i := range 200 {
		targets = append(targets, fmt.Sprintf("svc-%d-host", i))
	}
	var roles []Role
	for i := range 1000 {
		r := Role{
			Name:       fmt.Sprintf("role-%d", i),
			Identities: []string{fmt.Sprintf("team-%d", i%50)},
			Logins:     []string{fmt.Sprintf("login-%d", i%20)},
			Targets:    []string{fmt.Sprintf("svc-%d-host", i%200)},
			PTY:        i%2 == 0,
			Shell:      i%4 == 0,
		}
		if i%3 == 0 {
			r.Targets = []string{fmt.Sprintf("svc-%d-*", i%20)}
		}
		if i%3 == 1 {
			r.Access = AccessGrant
			r.Approval = &Approval{Approvers: []string{"team-0"}}
		}
		if i%3 == 2 {
			r.Commands = &Commands{
				Allow: []string{"systemctl status *", "journalctl -u * **", "grep **"},
				Deny:  []string{"rm ** -rf **", `psql ** -c 're:(?i).*drop\s+table.*' **`},
			}
		}
		roles = append(roles, r)
	}
	var providers []string
	for i := range 10 {
		providers = append(providers, fmt.Sprintf("idp-%d", i))
	}
	p, _, err := Build(idents, roles, Options{Providers: providers, Targets: targets})
	if err != nil {
		b.Fatal(err)
	}
	// Team 17 (of idp-7) holds roles 17, 67, 117, …: role 917 is the last,
	// with login-17 on svc-117-host and command rules.
	id := &Identity{Provider: "idp-7", Subject: "agent", Claims: map[string]any{"groups": []any{"team-17", "other"}}}
	return p, id
}

func BenchmarkSession1000Roles(b *testing.B) {
	p, id := benchPolicy(b)
	req := SessionRequest{Identity: id, Target: "svc-117-host", Login: "login-17", Action: ActionConnect, Time: time.Now()}
	if d := p.Session(req); !d.Allow {
		b.Fatalf("%+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Session(req)
	}
}

func BenchmarkSession1000RolesCommand(b *testing.B) {
	p, id := benchPolicy(b)
	req := SessionRequest{Identity: id, Target: "svc-117-host", Login: "login-17", Action: ActionExec, Time: time.Now(),
		Command: "journalctl -u nginx --since today | grep -i error"}
	if d := p.Session(req); !d.Allow {
		b.Fatalf("%+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Session(req)
	}
}

func BenchmarkSession1000RolesDenied(b *testing.B) {
	p, id := benchPolicy(b)
	req := SessionRequest{Identity: id, Target: "svc-117-host", Login: "login-17", Action: ActionExec, Time: time.Now(),
		Command: "psql -h db -c 'DROP TABLE accounts'"}
	if d := p.Session(req); d.Allow {
		b.Fatalf("%+v", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Session(req)
	}
}

// An unconfigured target is not indexed by name: the roles of the
// provider and login are walked.
func BenchmarkSession1000RolesUnindexedTarget(b *testing.B) {
	p, id := benchPolicy(b)
	req := SessionRequest{Identity: id, Target: "svc-17-new", Login: "login-17", Action: ActionConnect, Time: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		p.Session(req)
	}
}
