package policy

import (
	"strings"
	"testing"
	"time"
)

func TestSponsorMatches(t *testing.T) {
	alice := &Identity{Provider: "corp", Subject: "alice", Email: "Alice@Bank.example"}
	noEmail := &Identity{Provider: "corp", Subject: "bob"}
	for _, c := range []struct {
		name    string
		sponsor string
		id      *Identity
		want    bool
	}{
		{"the subject", "alice", alice, true},
		{"SUBJECT@PROVIDER", "alice@corp", alice, true},
		{"the subject in another case", "Alice", alice, false},
		{"SUBJECT@PROVIDER in another case", "alice@CORP", alice, false},
		{"SUBJECT@ another provider", "alice@gha", alice, false},
		{"the email", "Alice@Bank.example", alice, true},
		{"the email in another case", "alice@bank.EXAMPLE", alice, true},
		{"another email", "alice@other.example", alice, false},
		{"a team", "team-payments", alice, false},
		{"empty sponsor", "", alice, false},
		{"empty sponsor, no email", "", noEmail, false},
		{"empty sponsor, empty identity", "", &Identity{}, false},
		{"no email: the subject still", "bob", noEmail, true},
		{"no email: an email", "bob@bank.example", noEmail, false},
		{"no identity", "alice", nil, false},
		{"a prefix", "alic", alice, false},
	} {
		if got := SponsorMatches(c.sponsor, c.id); got != c.want {
			t.Errorf("%s: SponsorMatches(%q, %v) = %v", c.name, c.sponsor, c.id, got)
		}
	}
}

func TestSponsorConflict(t *testing.T) {
	alice := &Identity{Provider: "corp", Subject: "alice", Email: "alice@bank.example"}
	carol := &Identity{Provider: "corp", Subject: "carol"}
	agent1 := &Identity{Provider: "corp", Subject: "agent-1", Sponsor: "alice"}
	agent2 := &Identity{Provider: "corp", Subject: "agent-2", Sponsor: "ALICE"}
	byEmail := &Identity{Provider: "gha", Subject: "bot", Sponsor: "Alice@bank.example"}
	other := &Identity{Provider: "corp", Subject: "agent-3", Sponsor: "bob"}
	for _, c := range []struct {
		name                string
		requester, approver *Identity
		want                string // "" for no conflict
	}{
		{"the sponsor approves its agent", agent1, alice, "is the sponsor of agent-1@corp"},
		{"the sponsor by email", byEmail, alice, "is the sponsor of bot@gha"},
		{"another agent of the same sponsor", agent1, agent2, "acts for the same sponsor"},
		{"the agent approves its sponsor's request", alice, agent1, "acts for alice@corp"},
		{"the agent approves by email", alice, byEmail, "acts for alice@corp"},
		{"an unrelated human", agent1, carol, ""},
		{"an agent of another sponsor", agent1, other, ""},
		{"humans", alice, carol, ""},
		{"no approver", agent1, nil, ""},
	} {
		got := SponsorConflict(c.requester, c.approver)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestApprovalConflict: under exclude_sponsor the policy names the
// conflict; without it there is none to name; an approver whose token
// names no sponsor takes its role's.
func TestApprovalConflict(t *testing.T) {
	src := `
identity "agents" {
  providers = ["corp"]
  subjects  = ["agent-*"]
}
identity "approvers" {
  providers = ["corp"]
}
role "robots" {
  match {
    providers = ["corp"]
    subjects  = ["robot-*", "agent-robot-*"]
  }
  logins  = ["r"]
  sponsor = "alice"
}
role "strict" {
  identities = ["agents"]
  targets    = ["db-1"]
  logins     = ["db"]
  access     = "grant"
  approval {
    approvers       = ["approvers"]
    exclude_sponsor = true
  }
}
role "lax" {
  identities = ["agents"]
  logins     = ["ops"]
  access     = "grant"
  approval {
    approvers = ["approvers"]
  }
}
`
	p, _, err := decodeString(src, Options{Providers: []string{"corp"}})
	if err != nil {
		t.Fatal(err)
	}
	alice := &Identity{Provider: "corp", Subject: "alice"}
	agent := &Identity{Provider: "corp", Subject: "agent-1", Sponsor: "alice"}
	robot := &Identity{Provider: "corp", Subject: "robot-1"}
	if got := p.SponsorOf(robot); got != "alice" {
		t.Errorf("SponsorOf(robot) = %q", got)
	}
	if got := p.SponsorOf(agent); got != "alice" {
		t.Errorf("SponsorOf(agent) = %q", got)
	}
	if got := p.SponsorOf(alice); got != "" {
		t.Errorf("SponsorOf(alice) = %q", got)
	}
	for _, c := range []struct {
		name                string
		role                string
		requester, approver *Identity
		want                string
	}{
		{"sponsor, strict", "strict", agent, alice, "role strict excludes the requester's sponsor"},
		{"sponsor, lax", "lax", agent, alice, ""},
		{"the role's sponsor of the approver", "strict", agent, robot, "acts for the same sponsor"},
		{"the agent for its sponsor", "strict", alice, robot, "acts for alice@corp"},
		{"no such role", "nope", agent, alice, ""},
	} {
		got := p.ApprovalConflict(c.role, c.requester, c.approver)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	// The requester's sponsor a grant records: its token's, else its
	// role's.
	if r := p.GrantRequest(GrantAsk{Identity: agent, Target: "db-1", Login: "db", Duration: time.Minute}); !r.Allow || r.Sponsor != "alice" {
		t.Errorf("grant rule: %+v", r)
	}
	robotAgent := &Identity{Provider: "corp", Subject: "agent-robot-1"}
	if r := p.GrantRequest(GrantAsk{Identity: robotAgent, Target: "db-1", Login: "db", Duration: time.Minute}); r.Sponsor != "alice" {
		t.Errorf("grant rule: %+v", r)
	}
}
