package grants

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/policy/grants/grantstest"
	"github.com/bastionhq/bastion/recorder/events"
)

// feed applies every grant event of from's log after leaf after to to,
// as a cluster member following from's log does, and returns the index
// of the last leaf fed and what each event did.
func feed(t *testing.T, from, to *grantsFixture, after int64) (int64, []Applied) {
	t.Helper()
	log, err := from.j.ReadLog(context.Background(), GrantEvents)
	if err != nil {
		t.Fatal(err)
	}
	var out []Applied
	last := after
	for _, e := range log.Events {
		if e.Index <= after {
			continue
		}
		a, err := to.g.ApplyForeign(from.opts.IndexBase, e.Index, e.Leaf.Event, e.Leaf.Attrs)
		if err != nil {
			t.Fatalf("apply %s (leaf %d): %v", e.Leaf.Event, e.Index, err)
		}
		out = append(out, a)
		last = e.Index
	}
	return last, out
}

// TestGrantsAcrossMembers: a grant requested on member 1 and approved on
// member 2 is in force on both, its ID carries member 1's ID, events seen
// twice change nothing, an event naming a grant not requested yet is
// ErrUnknownGrant, and a revocation on member 2 ends the grant on member
// 1 (for the caller to end its sessions; OnEnd is not called).
func TestGrantsAcrossMembers(t *testing.T) {
	t.Parallel()
	pol := grantstest.Policy(t, 1, "bob", "carol")
	member := func(id uint64) *grantsFixture {
		return newGrantsFixture(t, pol, func(o *GrantsOptions) { o.IndexBase = id << 48 })
	}
	a, b := member(1), member(2)
	g := a.request(grantAgent, "db-prod", time.Hour)
	if n, err := strconv.ParseUint(strings.TrimPrefix(g.ID, "G-"), 10, 64); err != nil || n>>48 != 1 {
		t.Fatalf("grant ID %s does not carry member 1's ID", g.ID)
	}

	// b does not know the grant before it reads a's log.
	c := member(3)
	if _, err := c.g.ApplyForeign(2<<48, 5, events.GrantApproved, map[string]string{"grant": g.ID, "at": time.Now().UTC().Format(time.RFC3339Nano), "by": "bob@corp"}); !errors.Is(err, ErrUnknownGrant) {
		t.Fatalf("an approval of a grant not requested yet: %v", err)
	}

	feed(t, a, b, -1)
	if got, ok := b.g.Get(g.ID); !ok || got.State != GrantPending {
		t.Fatalf("b after a's request: %+v %v", got, ok)
	}
	if approved := b.mustDecide("approve", g.ID, grantBob); approved.State != GrantActive {
		t.Fatalf("approved on b: %+v", approved)
	}
	fedB, applied := feed(t, b, a, -1)
	if len(applied) < 2 || !applied[len(applied)-1].Changed {
		t.Fatalf("a applying b's approval: %+v", applied)
	}
	if act := a.g.Active(grantAgent.String(), a.clock.Now()); len(act) != 1 || act[0].ID != g.ID {
		t.Fatalf("grants active on a after b's approval: %+v", act)
	}
	// Seen twice: nothing changes.
	_, again := feed(t, b, a, -1)
	for _, ap := range again {
		if ap.Changed || ap.Ended {
			t.Errorf("an event applied twice changed something: %+v", ap)
		}
	}

	// b restarts: its own approval names a grant requested in a's log,
	// applied once a's log is read.
	b.reopen()
	if _, ok := b.g.Get(g.ID); ok {
		t.Fatalf("b knows %s before it reads a's log", g.ID)
	}
	feed(t, a, b, -1)
	if got, ok := b.g.Get(g.ID); !ok || got.State != GrantActive || len(got.Approvals) != 1 {
		t.Fatalf("b after a restart and a's log: %+v %v", got, ok)
	}

	b.mustDecide("revoke", g.ID, grantBob)
	b.wantEnd(g.ID, GrantRevokedWhy)
	_, applied = feed(t, b, a, fedB)
	if len(applied) != 1 || !applied[0].Ended || applied[0].Why != GrantRevokedWhy || applied[0].Grant.State != GrantRevoked {
		t.Fatalf("a applying b's revocation: %+v", applied)
	}
	a.noEnd()
	if act := a.g.Active(grantAgent.String(), a.clock.Now()); len(act) != 0 {
		t.Fatalf("grants active on a after b's revocation: %+v", act)
	}
}

// TestGrantsPassOverOrphans: a member's own decision on another member's
// grant, read at its restart before that member's log, is kept while the
// request may still come, and forgotten once the caller says it cannot.
func TestGrantsPassOverOrphans(t *testing.T) {
	t.Parallel()
	pol := grantstest.Policy(t, 1, "bob")
	member := func(id uint64) *grantsFixture {
		return newGrantsFixture(t, pol, func(o *GrantsOptions) { o.IndexBase = id << 48 })
	}
	a, b := member(1), member(2)
	g := a.request(grantAgent, "db-prod", time.Hour)
	feed(t, a, b, -1)
	b.mustDecide("approve", g.ID, grantBob)
	b.reopen()
	var asked []uint64
	b.g.PassOverOrphans(func(n uint64) string { asked = append(asked, n); return "" })
	if n, _ := GrantNumber(g.ID); len(asked) != 1 || asked[0] != n {
		t.Fatalf("asked about %v, want %s's number", asked, g.ID)
	}
	b.g.PassOverOrphans(func(uint64) string { return "test: the request cannot come" })
	feed(t, a, b, -1)
	if got, ok := b.g.Get(g.ID); !ok || got.State != GrantPending || len(got.Approvals) != 0 {
		t.Fatalf("b applied its own approval after it was passed over: %+v %v", got, ok)
	}
	b.g.PassOverOrphans(func(uint64) string { t.Fatal("asked again about a forgotten grant"); return "" })
}
