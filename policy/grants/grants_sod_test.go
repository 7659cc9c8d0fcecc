package grants

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants/grantstest"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// Identities of the segregation-of-duties tests: alice, two agents acting
// for her (named by her email, in two cases), and carol, unrelated.
var (
	sodAlice  = &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "alice", Email: "Alice@bank.example"}
	sodAgent1 = &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "agent-1", Sponsor: "alice@bank.example"}
	sodAgent2 = &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "agent-2", Sponsor: "ALICE@bank.example"}
	sodCarol  = &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "carol", Email: "carol@bank.example"}
)

// TestGrantExcludeSponsor: under exclude_sponsor, an approval from the
// requester's side is refused, journaled as a refusal, and changes
// nothing; an unrelated approver's goes through, and so does a denial by
// the sponsor. Without it, the same approvals go through, and their
// leaves say enough to flag them later.
func TestGrantExcludeSponsor(t *testing.T) {
	cases := []struct {
		name                string
		requester, approver *policy.Identity
		conflict            bool
	}{
		{"the sponsor approves her agent's grant", sodAgent1, sodAlice, true},
		{"another agent of the same sponsor", sodAgent1, sodAgent2, true},
		{"the agent approves its sponsor's request", sodAlice, sodAgent1, true},
		{"an unrelated approver", sodAgent1, sodCarol, false},
		{"an unrelated approver of the sponsor's request", sodAlice, sodCarol, false},
	}
	t.Run("excluded", func(t *testing.T) {
		f := newGrantsFixture(t, grantstest.SponsorPolicy(t, true), nil)
		for _, c := range cases {
			g := f.request(c.requester, "db-1", 30*time.Minute)
			if !c.conflict {
				if g = f.mustDecide("approve", g.ID, c.approver); g.State != GrantActive {
					t.Errorf("%s: %+v", c.name, g)
				}
				continue
			}
			f.wantRefused("approve", g.ID, c.approver, ErrSponsorConflict)
			_, err := f.decide("approve", g.ID, c.approver, "")
			if msg := err.Error(); !strings.Contains(msg, "excludes the requester's sponsor") || !strings.Contains(msg, c.approver.String()) {
				t.Errorf("%s: %v", c.name, err)
			}
			if reason := ReasonOf(err); reason != events.ReasonSponsorConflict {
				t.Errorf("%s: reason %s", c.name, reason)
			}
			// A denial takes access away: the sponsor may still deny.
			if g, err := f.decide("deny", g.ID, c.approver, "not now"); err != nil || g.State != GrantDenied {
				t.Errorf("%s: deny: %v %+v", c.name, err, g)
			}
		}
		var refusals []string
		for _, r := range f.events(events.GrantRefused) {
			refusals = append(refusals, r["action"]+":"+r["reason"]+":"+r["identity"])
		}
		want := "approve:sponsor_conflict:alice@corp approve:sponsor_conflict:alice@corp " +
			"approve:sponsor_conflict:agent-2@corp approve:sponsor_conflict:agent-2@corp " +
			"approve:sponsor_conflict:agent-1@corp approve:sponsor_conflict:agent-1@corp"
		if got := strings.Join(refusals, " "); got != want {
			t.Errorf("grant.refused:\n%s\nwant\n%s", got, want)
		}
		// The journal rebuilds the same store.
		before := f.g.List(GrantFilter{})
		f.reopen()
		if after := f.g.List(GrantFilter{}); len(after) != len(before) || after[3].State != GrantActive || after[0].State != GrantDenied {
			t.Errorf("rebuilt: %+v", after)
		}
	})
	t.Run("not excluded", func(t *testing.T) {
		f := newGrantsFixture(t, grantstest.SponsorPolicy(t, false), nil)
		for _, c := range cases {
			g := f.request(c.requester, "db-1", 30*time.Minute)
			if g = f.mustDecide("approve", g.ID, c.approver); g.State != GrantActive {
				t.Errorf("%s: %+v", c.name, g)
			}
		}
		approved := f.events(events.GrantApproved)
		if len(approved) != len(cases) {
			t.Fatalf("%d approvals", len(approved))
		}
		// The first: alice approved her agent; the journal says who she
		// is, and the request who its sponsor is.
		want := recorder.Attrs{"by": "alice@corp", "by.provider": "corp", "by.subject": "alice", "by.email": "Alice@bank.example", "by.issuer": "https://idp.example"}
		for k, v := range want {
			if approved[0][k] != v {
				t.Errorf("grant.approved %s = %q, want %q", k, approved[0][k], v)
			}
		}
		if _, ok := approved[0]["by.sponsor"]; ok {
			t.Errorf("by.sponsor of alice: %v", approved[0])
		}
		if approved[2]["by.sponsor"] != "alice@bank.example" || approved[2]["by.subject"] != "agent-1" {
			t.Errorf("grant.approved by the agent: %v", approved[2])
		}
		if req := f.events(events.GrantRequested)[0]; req["sponsor"] != "alice@bank.example" {
			t.Errorf("grant.requested: %v", req)
		}
		if g, _ := f.g.Get(f.g.List(GrantFilter{})[2].ID); g.Email != "Alice@bank.example" {
			t.Errorf("the requester's email: %+v", g)
		}
	})
}

// TestGrantRoleSponsor: the sponsor a role names, for identities whose
// tokens name none, is the one a grant records and the one
// exclude_sponsor compares.
func TestGrantRoleSponsor(t *testing.T) {
	p, _, err := policy.Build(
		[]policy.IdentityMatcher{
			{Name: "bots", Match: policy.Match{Providers: []string{"corp"}, Subjects: []string{"bot-*"}}},
			{Name: "people", Match: policy.Match{Providers: []string{"corp"}}},
		},
		[]policy.Role{{
			Name: "db-grant", Identities: []string{"bots"}, Targets: []string{"db-*"}, Logins: []string{"postgres"}, Access: policy.AccessGrant,
			Sponsor:  "alice",
			Approval: &policy.Approval{Approvers: []string{"people"}, ExcludeSponsor: true},
		}}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := newGrantsFixture(t, p, nil)
	bot := &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "bot-1"}
	g := f.request(bot, "db-1", 30*time.Minute)
	if g.Sponsor != "alice" {
		t.Fatalf("the grant's sponsor: %+v", g)
	}
	f.wantRefused("approve", g.ID, sodAlice, ErrSponsorConflict)
	f.mustDecide("approve", g.ID, sodCarol)
}

// TestGrantOldLeaves: a journal written before the by.* attributes (and
// the requester's email) were recorded replays as before.
func TestGrantOldLeaves(t *testing.T) {
	f := newGrantsFixture(t, grantstest.SponsorPolicy(t, true), nil)
	ctx := context.Background()
	now := f.clock.Now()
	req := recorder.Attrs{
		"at": timeAttr(now), "identity": "agent-1@corp", "provider": "corp", "issuer": "https://idp.example", "subject": "agent-1",
		"sponsor": "alice", "target": "db-1", "login": "postgres", "duration.asked": "30m0s", "duration": "30m0s", "reason": "x",
		"role": "db-grant", "approvals": "1", "approvers": "people", "pending_until": timeAttr(now.Add(time.Hour)),
	}
	idx, err := f.j.AppendIndexedEvent(ctx, events.GrantRequested, req, "grant.index")
	if err != nil {
		t.Fatal(err)
	}
	id := "G-" + strconv.FormatInt(idx, 10)
	// alice approved her agent's grant, as an old bastion allowed.
	for _, e := range []struct {
		name string
		a    recorder.Attrs
	}{
		{events.GrantApproved, recorder.Attrs{"at": timeAttr(now), "grant": id, "by": "alice@corp", "by.issuer": "https://idp.example", "approvals": "1"}},
		{events.GrantActivated, recorder.Attrs{"at": timeAttr(now), "grant": id, "start": timeAttr(now), "end": timeAttr(now.Add(30 * time.Minute))}},
	} {
		if _, err := f.j.AppendEvent(ctx, e.name, e.a); err != nil {
			t.Fatal(err)
		}
	}
	f.reopen()
	g, ok := f.g.Get(id)
	if !ok || g.State != GrantActive || len(g.Approvals) != 1 || g.Approvals[0].By != "alice@corp" || g.Email != "" {
		t.Fatalf("replayed: %+v", g)
	}
}
