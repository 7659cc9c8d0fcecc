// Package grantstest builds the policies that tests of just-in-time grants
// run under, for the grants' own tests and for those of the API that serves
// them. It imports nothing of bastion but package policy.
package grantstest

import (
	"testing"
	"time"

	"github.com/bastionhq/bastion/policy"
)

// Policy is a real policy with one grant-only role, "db-grant": agents
// ("agent-*" of provider corp) may ask for postgres on db-* for at most an
// hour, with the given number of approvals from approvers (subjects of
// corp), and a standing role that lets them have certificates for "ci"
// anyway.
func Policy(t testing.TB, approvals int, approvers ...string) *policy.Policy {
	t.Helper()
	p, _, err := policy.Build(
		[]policy.IdentityMatcher{
			{Name: "agents", Match: policy.Match{Providers: []string{"corp"}, Subjects: []string{"agent-*"}}},
			{Name: "approvers", Match: policy.Match{Providers: []string{"corp"}, Subjects: approvers}},
		},
		[]policy.Role{
			{Name: "ci", Identities: []string{"agents"}, Targets: []string{"ci-*"}, Logins: []string{"ci"}, MaxTTL: 10 * time.Minute},
			{
				Name: "db-grant", Identities: []string{"agents"}, Targets: []string{"db-*"}, Logins: []string{"postgres"},
				MaxTTL: 30 * time.Minute, Access: policy.AccessGrant,
				Approval: &policy.Approval{Approvers: []string{"approvers"}, Approvals: approvals, MaxDuration: time.Hour},
			},
		}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// SponsorPolicy lets every identity of corp ask for postgres on db-* and
// approve the others' requests, with or without exclude_sponsor.
func SponsorPolicy(t testing.TB, exclude bool) *policy.Policy {
	t.Helper()
	p, _, err := policy.Build(
		[]policy.IdentityMatcher{{Name: "people", Match: policy.Match{Providers: []string{"corp"}}}},
		[]policy.Role{{
			Name: "db-grant", Identities: []string{"people"}, Targets: []string{"db-*"}, Logins: []string{"postgres"}, Access: policy.AccessGrant,
			Approval: &policy.Approval{Approvers: []string{"people"}, ExcludeSponsor: exclude},
		}}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
