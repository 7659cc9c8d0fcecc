package bastion

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"golang.org/x/time/rate"

	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/policy/grants/grantstest"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/cluster"
	"github.com/bastionhq/bastion/recorder/recordertest"
	"github.com/bastionhq/bastion/storage/postgres"
	"github.com/bastionhq/bastion/storage/postgres/pgtest"
)

// grantMember is a cluster member's journal and grants, for the tests of
// what a member applies from the others' logs.
type grantMember struct {
	m    cluster.Member
	base uint64
	j    *recordertest.Journal
	g    *grants.Grants
}

func newGrantMember(t *testing.T, id uint16, pol *policy.Policy) *grantMember {
	t.Helper()
	jk, m := memberKey(t, id, fmt.Sprintf("m%d.example/journal", id))
	base, _ := recorder.NumberOf(id, 0)
	j := recordertest.NewJournalWith(t, recordertest.Options{Journal: recorder.Options{Key: jk, IndexBase: base}})
	log, err := j.ReadLog(context.Background(), grants.GrantEvents)
	if err != nil {
		t.Fatal(err)
	}
	g, err := grants.OpenGrants(context.Background(), log, grants.GrantsOptions{Journal: j, IndexBase: base,
		Policy: func() grants.GrantPolicy { return pol }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return &grantMember{m: m, base: base, j: j, g: g}
}

// leaves are the grant events of gm's log after leaf after, as a
// follower of it passes them on, and the log's size.
func (gm *grantMember) leaves(t *testing.T, after int64) ([]cluster.Followed, int64) {
	t.Helper()
	log, err := gm.j.ReadLog(context.Background(), grants.GrantEvents)
	if err != nil {
		t.Fatal(err)
	}
	var out []cluster.Followed
	for _, e := range log.Events {
		if e.Index > after {
			out = append(out, cluster.Followed{Index: e.Index, Leaf: e.Leaf})
		}
	}
	st, err := gm.j.Store.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return out, st.TreeSize
}

// TestClusterGrantEventWaitsForItsRequest: member 2 approves and revokes
// a grant member 3 requested. Member 1 reads member 2's log while it
// cannot read member 3's: the approval and revocation wait, however many
// rounds pass, and once member 3's log is read the grant is revoked on
// member 1, never active. An event naming a grant whose request can no
// longer come (member 3's log applied past its leaf, or a member not in
// the cluster) is passed over; one naming a leaf member 3's log has not
// reached waits.
func TestClusterGrantEventWaitsForItsRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pol := grantstest.Policy(t, 1, "bob")
	agent := &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "agent-1"}
	bob := &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "bob"}
	a, b, c := newGrantMember(t, 1, pol), newGrantMember(t, 2, pol), newGrantMember(t, 3, pol)

	g, err := c.g.Request(ctx, grants.GrantAsk{Identity: agent, Target: "db-prod", Login: "postgres", Duration: time.Hour, Reason: "rotate the password", Ticket: "CHG-7"})
	if err != nil {
		t.Fatal(err)
	}
	notRequest, err := c.j.AppendEvent(ctx, "test.other", recorder.Attrs{})
	if err != nil {
		t.Fatal(err)
	}
	cLeaves, cSize := c.leaves(t, -1)
	for _, e := range cLeaves {
		if _, err := b.g.ApplyForeign(c.base, e.Index, e.Leaf.Event, e.Leaf.Attrs); err != nil {
			t.Fatal(err)
		}
	}
	for _, act := range []func(context.Context, grants.GrantDecision) (grants.Grant, error){b.g.Approve, b.g.Revoke} {
		if _, err := act(ctx, grants.GrantDecision{ID: g.ID, By: bob, Comment: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	bLeaves, bSize := b.leaves(t, -1)

	ms, err := cluster.Parse([]byte(a.m.String() + "\n" + b.m.String() + "\n" + c.m.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	cs := &clusterState{c: &Cluster{Members: ms, Self: a.m}, s: &Server{grants: a.g, log: hclog.NewNullLogger()}, log: hclog.NewNullLogger()}
	fb := &followedLog{f: cluster.NewFollower(b.m, nil), base: b.base}
	fc := &followedLog{f: cluster.NewFollower(c.m, nil), base: c.base}
	cs.logs = []*followedLog{fb, fc}

	// Member 3's log does not verify here: member 2's events wait.
	fb.queue, fb.readTo = bLeaves, bSize
	for range 3 {
		cs.applyAll()
	}
	if len(fb.deferred) != len(bLeaves) {
		t.Fatalf("%d of member 2's %d events wait for the request", len(fb.deferred), len(bLeaves))
	}
	if _, ok := a.g.Get(g.ID); ok {
		t.Fatalf("member 1 knows %s before it reads member 3's log", g.ID)
	}

	// Member 3's log verifies again.
	fc.queue, fc.readTo = cLeaves, cSize
	cs.applyAll()
	got, ok := a.g.Get(g.ID)
	if !ok || got.State != grants.GrantRevoked {
		t.Fatalf("member 1 after member 3's request: %+v %v", got, ok)
	}
	if act := a.g.Active(agent.String(), time.Now()); len(act) != 0 {
		t.Fatalf("grants active on member 1: %+v", act)
	}
	if len(fb.deferred) != 0 {
		t.Fatalf("%d events still wait", len(fb.deferred))
	}

	// Events naming grants whose request is not where their number says.
	revoke := bLeaves[len(bLeaves)-1].Leaf
	naming := func(idx int64, member uint16, leaf int64) cluster.Followed {
		n, _ := recorder.NumberOf(member, leaf)
		l := *revoke
		l.Attrs = recorder.Attrs{}
		for k, v := range revoke.Attrs {
			l.Attrs[k] = v
		}
		l.Attrs["grant"] = "G-" + strconv.FormatUint(n, 10)
		return cluster.Followed{Index: idx, Leaf: &l}
	}
	fb.queue = []cluster.Followed{naming(bSize, 3, notRequest), naming(bSize+1, 9, 0), naming(bSize+2, 1, 0), naming(bSize+3, 3, cSize+5)}
	fb.readTo = bSize + 4
	cs.applyAll()
	if len(fb.deferred) != 1 || fb.deferred[0].Index != bSize+3 {
		t.Fatalf("events waiting: %+v (want only leaf %d, naming a leaf member 3's log has not reached)", fb.deferred, bSize+3)
	}
}

// memberKey is a new journal key of origin, and the member that key is
// with id.
func memberKey(t *testing.T, id uint16, origin string) (*recorder.JournalKey, cluster.Member) {
	t.Helper()
	jk, vk := recordertest.NewKey(t, origin)
	return jk, cluster.Member{ID: id, Key: vk}
}

// TestClusterCatchUpBounded: on a real PostgreSQL database, a catch-up
// (an SSH authentication that meets a serial it does not know) reads
// nothing for a serial of this member's or of an ID the cluster file does
// not list, and no catch-up is spent on them; while the database hangs
// (a lock held on the schema), a catch-up for a member's serial returns
// within its wait (2 s, measured) and raises no alarm; once the database
// answers, one reads the member's log. A listed member whose log is not
// in the database raises the follow alarm once the grace has passed.
func TestClusterCatchUpBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.Shared(t).NewDatabase(t)
	selfKey, self := memberKey(t, 1, "a.example/journal")
	bKey, b := memberKey(t, 2, "b.example/journal")
	_, missing := memberKey(t, 3, "c.example/journal")
	for _, m := range []struct {
		key *recorder.JournalKey
		m   cluster.Member
	}{{selfKey, self}, {bKey, b}} {
		st, err := postgres.Open(ctx, dsn, m.m.Name(), postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		base, _ := recorder.NumberOf(m.m.ID, 0)
		j, err := recorder.Open(ctx, st, recorder.Options{Key: m.key, IndexBase: base})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.AppendEvent(ctx, "test.event", recorder.Attrs{}); err != nil {
			t.Fatal(err)
		}
		j.Close()
		st.Close()
	}
	ms, err := cluster.Parse([]byte(self.String() + "\n" + b.String() + "\n" + missing.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	bst, err := postgres.Open(ctx, dsn, b.Name(), postgres.Options{ReadOnly: true, MaxReaders: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bst.Close() })
	s := &Server{log: hclog.NewNullLogger(), metrics: newMetrics(func() float64 { return 0 })}
	cs := &clusterState{c: &Cluster{Members: ms, Self: self, DSN: dsn}, s: s, log: hclog.NewNullLogger(),
		round: make(chan struct{}, 1), started: time.Now(), catchUps: rate.NewLimiter(catchUpRate, catchUpBurst), kills: map[int64]killOutcome{}}
	fb := &followedLog{f: newFollower(b, bst), store: bst}
	fc := &followedLog{f: newFollower(missing, nil)}
	cs.logs = []*followedLog{fb, fc}

	for _, id := range []uint16{1, 9} {
		serial, _ := recorder.NumberOf(id, 5)
		cs.catchUp(serial)
	}
	if tokens := cs.catchUps.Tokens(); tokens < catchUpBurst-0.5 {
		t.Errorf("catch-ups for this member's serial and an unlisted ID spent the limiter: %.1f tokens left", tokens)
	}
	if fb.readTo != 0 {
		t.Fatalf("a catch-up for no listed member read member 2's log (%d leaves)", fb.readTo)
	}

	// The database hangs: a transaction holds the schema locked.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE bastion.schema_version IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	serial, _ := recorder.NumberOf(2, 5)
	start := time.Now()
	cs.catchUp(serial)
	took := time.Since(start)
	t.Logf("a catch-up while the database hangs returned after %s (bound %s)", took.Round(time.Millisecond), catchUpWait)
	if took > catchUpWait+time.Second {
		t.Errorf("a catch-up waited %s, more than %s", took, catchUpWait)
	}
	if fb.failing != "" || fb.readTo != 0 {
		t.Fatalf("a catch-up that ran out of time marked member 2's log failing (%q) or read it (%d)", fb.failing, fb.readTo)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	cs.catchUp(serial)
	if fb.failing != "" || fb.readTo == 0 {
		t.Fatalf("after the database answers: failing %q, %d leaves read", fb.failing, fb.readTo)
	}
	if fc.failing != "" {
		t.Fatalf("member 3's log, missing within the grace, is an alarm: %s", fc.failing)
	}

	// Past the grace, member 3's log still missing is an alarm.
	cs.started = time.Now().Add(-missingGrace - time.Second)
	fc.nextOpen = time.Time{}
	cs.followRound(ctx, false)
	if !strings.Contains(fc.failing, "has no log in the database") {
		t.Fatalf("member 3's missing log after the grace: %q", fc.failing)
	}
}
