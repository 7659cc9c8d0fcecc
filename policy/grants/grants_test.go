package grants

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastionhq/bastion/certauth/oidc/oidctest"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/grants/grantstest"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
)

// Identities of the grant tests, all of provider "corp".
var (
	grantAgent   = &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "agent-1"}
	grantBob     = &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "bob"}
	grantCarol   = &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "carol"}
	grantDave    = &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "dave"}
	grantMallory = &policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "mallory"}
)

// grantsFixture is a Grants store over a real SQLite journal in a temp
// directory, with a settable clock and a policy the test may replace.
type grantsFixture struct {
	t     *testing.T
	dir   string
	key   *recorder.JournalKey
	st    storage.Store
	j     *recorder.Journal
	clock *oidctest.Clock
	pol   atomic.Pointer[policy.Policy]
	opts  GrantsOptions
	g     *Grants
	ends  chan endedGrant
}

func newGrantsFixture(t *testing.T, pol *policy.Policy, edit func(*GrantsOptions)) *grantsFixture {
	t.Helper()
	f := &grantsFixture{t: t, dir: t.TempDir(), clock: oidctest.NewClock(), ends: make(chan endedGrant, 64)}
	f.pol.Store(pol)
	skey, _, err := recorder.GenerateJournalKey("test.example/grants")
	if err != nil {
		t.Fatal(err)
	}
	if f.key, err = recorder.ParseJournalKey(skey); err != nil {
		t.Fatal(err)
	}
	f.opts = GrantsOptions{
		Policy: func() GrantPolicy { return f.pol.Load() },
		Now:    f.clock.Now,
		OnEnd:  func(g Grant, why string) { f.ends <- endedGrant{g, why} },
	}
	if edit != nil {
		edit(&f.opts)
	}
	f.openJournal()
	f.open()
	t.Cleanup(f.close)
	return f
}

func (f *grantsFixture) openJournal() {
	f.t.Helper()
	ctx := context.Background()
	var err error
	if f.st, err = storage.OpenSQLite(ctx, filepath.Join(f.dir, "journal.db"), storage.Options{}); err != nil {
		f.t.Fatal(err)
	}
	if f.j, err = recorder.Open(ctx, f.st, recorder.Options{Key: f.key, IndexBase: f.opts.IndexBase}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *grantsFixture) open() {
	f.t.Helper()
	ctx := context.Background()
	log, err := f.j.ReadLog(ctx, GrantEvents)
	if err != nil {
		f.t.Fatal(err)
	}
	opts := f.opts
	opts.Journal = f.j
	if f.g, err = OpenGrants(ctx, log, opts); err != nil {
		f.t.Fatal(err)
	}
}

func (f *grantsFixture) close() {
	if f.g != nil {
		f.g.Close()
		f.g = nil
	}
	if f.j != nil {
		f.j.Close()
		f.j = nil
	}
	if f.st != nil {
		f.st.Close()
		f.st = nil
	}
}

// reopen closes everything and rebuilds the store from the journal file.
func (f *grantsFixture) reopen() {
	f.t.Helper()
	f.close()
	f.openJournal()
	f.open()
}

// settle runs the timer goroutine's work now, on the test's clock.
func (f *grantsFixture) settle() {
	f.t.Helper()
	if _, err := f.g.settle(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *grantsFixture) request(who *policy.Identity, target string, d time.Duration) Grant {
	f.t.Helper()
	g, err := f.g.Request(context.Background(), GrantAsk{Identity: who, Target: target, Login: "postgres", Duration: d, Reason: "rotate the replication password", Ticket: "CHG-7"})
	if err != nil {
		f.t.Fatalf("request: %v", err)
	}
	return g
}

func (f *grantsFixture) decide(action, id string, by *policy.Identity, comment string) (Grant, error) {
	d := GrantDecision{ID: id, By: by, Comment: comment}
	switch action {
	case "approve":
		return f.g.Approve(context.Background(), d)
	case "deny":
		return f.g.Deny(context.Background(), d)
	}
	return f.g.Revoke(context.Background(), d)
}

func (f *grantsFixture) mustDecide(action, id string, by *policy.Identity) Grant {
	f.t.Helper()
	g, err := f.decide(action, id, by, "ok by "+by.Subject)
	if err != nil {
		f.t.Fatalf("%s by %s: %v", action, by, err)
	}
	return g
}

// wantRefused checks that a decision fails with sentinel and changes
// nothing.
func (f *grantsFixture) wantRefused(action, id string, by *policy.Identity, sentinel error) {
	f.t.Helper()
	before, _ := f.g.Get(id)
	_, err := f.decide(action, id, by, "")
	if !errors.Is(err, sentinel) {
		f.t.Fatalf("%s of %s by %s: %v, want %v", action, id, by, err, sentinel)
	}
	if after, _ := f.g.Get(id); !reflect.DeepEqual(before, after) {
		f.t.Fatalf("a refused %s changed the grant:\n%+v\n%+v", action, before, after)
	}
}

func (f *grantsFixture) wantEnd(id, why string) {
	f.t.Helper()
	select {
	case e := <-f.ends:
		if e.g.ID != id || e.why != why {
			f.t.Fatalf("OnEnd(%s, %q), want (%s, %q)", e.g.ID, e.why, id, why)
		}
	case <-time.After(10 * time.Second):
		f.t.Fatalf("OnEnd was not called for %s", id)
	}
}

func (f *grantsFixture) noEnd() {
	f.t.Helper()
	select {
	case e := <-f.ends:
		f.t.Fatalf("OnEnd(%s, %q) called unexpectedly", e.g.ID, e.why)
	default:
	}
}

// events returns the grant events of the journal, in order, as
// "name grant-or-index".
func (f *grantsFixture) events(names ...string) []recorder.Attrs {
	f.t.Helper()
	ctx := context.Background()
	snap, err := f.st.Snapshot(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	defer snap.Close()
	type ev struct {
		idx int64
		a   recorder.Attrs
	}
	var evs []ev
	found, err := recorder.Events(ctx, snap, f.key.Verifier, names...)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, e := range found {
		a := recorder.Attrs{"event": e.Leaf.Event}
		for k, v := range e.Leaf.Attrs {
			a[k] = v
		}
		evs = append(evs, ev{e.Index, a})
	}
	slices.SortFunc(evs, func(a, b ev) int { return int(a.idx - b.idx) })
	out := make([]recorder.Attrs, len(evs))
	for i, e := range evs {
		out[i] = e.a
	}
	return out
}

func eventNames(evs []recorder.Attrs) string {
	var names []string
	for _, e := range evs {
		names = append(names, e["event"])
	}
	return strings.Join(names, " ")
}

func TestGrantLifecycle(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob", "carol"), nil)
	g := f.request(grantAgent, "db-prod", 2*time.Hour)
	requested := f.clock.Now()
	if g.State != GrantPending || !strings.HasPrefix(g.ID, "G-") || g.Identity != "agent-1@corp" || g.Role != "db-grant" ||
		time.Duration(g.AskedDuration) != 2*time.Hour || time.Duration(g.Duration) != time.Hour || g.ApprovalsNeeded != 1 ||
		!slices.Equal(g.Approvers, []string{"approvers"}) || !g.RequestedAt.Equal(requested) || !g.PendingUntil.Equal(requested.Add(DefaultPendingTTL)) {
		t.Fatalf("requested: %+v", g)
	}
	if _, ok := GrantNumber(g.ID); !ok {
		t.Fatalf("ID %s names no leaf", g.ID)
	}
	if len(f.g.Active("agent-1@corp", f.clock.Now())) != 0 {
		t.Fatal("a pending grant is active")
	}

	f.wantRefused("approve", g.ID, grantAgent, ErrOwnGrant)
	f.wantRefused("approve", g.ID, grantMallory, ErrGrantNotFound)
	f.wantRefused("approve", "G-999999", grantBob, ErrGrantNotFound)

	f.clock.Advance(5 * time.Minute)
	approvedAt := f.clock.Now()
	g = f.mustDecide("approve", g.ID, grantBob)
	if g.State != GrantActive || !g.Start.Equal(approvedAt) || !g.End.Equal(approvedAt.Add(time.Hour)) || len(g.Approvals) != 1 || g.Approvals[0].By != "bob@corp" {
		t.Fatalf("approved: %+v", g)
	}
	f.wantRefused("approve", g.ID, grantCarol, ErrGrantState)
	f.wantRefused("deny", g.ID, grantCarol, ErrGrantState)

	active := f.g.Active("agent-1@corp", f.clock.Now())
	want := policy.Grant{ID: g.ID, Identity: "agent-1@corp", Role: "db-grant", Target: "db-prod", Login: "postgres", Start: g.Start, End: g.End}
	if len(active) != 1 || !reflect.DeepEqual(active[0], want) {
		t.Fatalf("Active = %+v, want %+v", active, want)
	}
	if len(f.g.Active("bob@corp", f.clock.Now())) != 0 {
		t.Fatal("the approver has the grant")
	}

	// The end is due: Active leaves the grant out at once, and settling
	// journals the end and calls OnEnd.
	f.clock.Advance(time.Hour)
	if len(f.g.Active("agent-1@corp", f.clock.Now())) != 0 {
		t.Fatal("a grant past its end is active")
	}
	f.settle()
	f.wantEnd(g.ID, GrantEndedWhy)
	g, _ = f.g.Get(g.ID)
	if g.State != GrantEnded || !g.ClosedAt.Equal(f.clock.Now()) {
		t.Fatalf("ended: %+v", g)
	}
	f.wantRefused("revoke", g.ID, grantAgent, ErrGrantState)

	evs := f.events(grantEvents...)
	if got := eventNames(evs); got != "grant.requested grant.approved grant.activated grant.ended" {
		t.Fatalf("journal: %s", got)
	}
	req := evs[0]
	for k, v := range map[string]string{
		"identity": "agent-1@corp", "provider": "corp", "issuer": "https://idp.example", "subject": "agent-1", "target": "db-prod",
		"login": "postgres", "duration.asked": "2h0m0s", "duration": "1h0m0s", "reason": "rotate the replication password",
		"ticket": "CHG-7", "role": "db-grant", "approvals": "1", "approvers": "approvers", "grant.index": strings.TrimPrefix(g.ID, "G-"),
	} {
		if req[k] != v {
			t.Errorf("grant.requested %s = %q, want %q", k, req[k], v)
		}
	}
	if evs[1]["by"] != "bob@corp" || evs[1]["comment"] != "ok by bob" || evs[1]["grant"] != g.ID {
		t.Errorf("grant.approved: %v", evs[1])
	}
	if evs[2]["start"] != timeAttr(approvedAt) || evs[2]["end"] != timeAttr(approvedAt.Add(time.Hour)) {
		t.Errorf("grant.activated: %v", evs[2])
	}
	refused := f.events(events.GrantRefused)
	var reasons []string
	for _, r := range refused {
		reasons = append(reasons, r["action"]+":"+r["reason"])
	}
	if got := strings.Join(reasons, " "); got != "approve:own_grant approve:grant_not_found approve:grant_not_found approve:grant_state deny:grant_state revoke:grant_state" {
		t.Fatalf("refusals journaled: %s", got)
	}
}

func TestGrantTwoApprovals(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 2, "bob", "carol"), nil)
	g := f.request(grantAgent, "db-1", 30*time.Minute)
	g = f.mustDecide("approve", g.ID, grantBob)
	if g.State != GrantPending || len(g.Approvals) != 1 {
		t.Fatalf("after one of two approvals: %+v", g)
	}
	f.wantRefused("approve", g.ID, grantBob, ErrAlreadyApproved)
	f.clock.Advance(time.Minute)
	g = f.mustDecide("approve", g.ID, grantCarol)
	if g.State != GrantActive || len(g.Approvals) != 2 || !g.Start.Equal(f.clock.Now()) || !g.End.Equal(f.clock.Now().Add(30*time.Minute)) {
		t.Fatalf("after two approvals: %+v", g)
	}
	if got := eventNames(f.events(grantEvents...)); got != "grant.requested grant.approved grant.approved grant.activated" {
		t.Fatalf("journal: %s", got)
	}
}

func TestGrantDeny(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob", "carol"), nil)
	g := f.request(grantAgent, "db-1", 30*time.Minute)
	f.wantRefused("deny", g.ID, grantAgent, ErrOwnGrant)
	f.wantRefused("deny", g.ID, grantMallory, ErrGrantNotFound)
	g, err := f.decide("deny", g.ID, grantBob, "use the replica")
	if err != nil || g.State != GrantDenied || g.ClosedBy != "bob@corp" || g.Comment != "use the replica" {
		t.Fatalf("deny: %v %+v", err, g)
	}
	f.wantRefused("approve", g.ID, grantCarol, ErrGrantState)
	f.wantRefused("revoke", g.ID, grantAgent, ErrGrantState)
	if len(f.g.Active("agent-1@corp", f.clock.Now())) != 0 {
		t.Fatal("a denied grant is active")
	}
	f.noEnd()
}

func TestGrantPendingExpiry(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob"), func(o *GrantsOptions) { o.PendingTTL = 10 * time.Minute })
	g := f.request(grantAgent, "db-1", 30*time.Minute)
	if !g.PendingUntil.Equal(f.clock.Now().Add(10 * time.Minute)) {
		t.Fatalf("pending until %v", g.PendingUntil)
	}
	f.clock.Advance(10 * time.Minute)
	// Due, if not yet journaled (the timer goroutine may have been quicker
	// than this test): a decision is refused already.
	if _, err := f.decide("approve", g.ID, grantBob, ""); !errors.Is(err, ErrGrantState) {
		t.Fatalf("approve an expired request: %v", err)
	}
	f.settle()
	g, _ = f.g.Get(g.ID)
	if g.State != GrantExpired || !g.ClosedAt.Equal(f.clock.Now()) {
		t.Fatalf("expired: %+v", g)
	}
	f.noEnd() // it never started
	if got := eventNames(f.events(grantEvents...)); got != "grant.requested grant.expired" {
		t.Fatalf("journal: %s", got)
	}
}

func TestGrantRevoke(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob", "carol"), nil)

	// The requester ends their own grant.
	g1 := f.request(grantAgent, "db-1", 30*time.Minute)
	f.mustDecide("approve", g1.ID, grantBob)
	f.wantRefused("revoke", g1.ID, grantMallory, ErrGrantNotFound)
	g, err := f.decide("revoke", g1.ID, grantAgent, "done early")
	if err != nil || g.State != GrantRevoked || g.ClosedBy != "agent-1@corp" {
		t.Fatalf("revoke by the requester: %v %+v", err, g)
	}
	f.wantEnd(g1.ID, GrantRevokedWhy)
	if len(f.g.Active("agent-1@corp", f.clock.Now())) != 0 {
		t.Fatal("a revoked grant is active")
	}
	f.wantRefused("revoke", g1.ID, grantBob, ErrGrantState)

	// An approver who did not approve it ends another.
	g2 := f.request(grantAgent, "db-2", 30*time.Minute)
	f.mustDecide("approve", g2.ID, grantBob)
	f.mustDecide("revoke", g2.ID, grantCarol)
	f.wantEnd(g2.ID, GrantRevokedWhy)

	// The requester withdraws a pending request: nothing was live.
	g3 := f.request(grantAgent, "db-3", 30*time.Minute)
	f.mustDecide("revoke", g3.ID, grantAgent)
	f.noEnd()
	f.wantRefused("approve", g3.ID, grantBob, ErrGrantState)
}

// TestGrantOperatorRevoke: an operator of the bastion (the admin
// socket's peer) may revoke any grant, with no identity, and nothing else;
// the journal says who, and that it was an operator; a reopened store
// agrees.
func TestGrantOperatorRevoke(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob"), nil)
	ctx := context.Background()
	g := f.request(grantAgent, "db-1", 30*time.Minute)
	if _, err := f.g.Approve(ctx, GrantDecision{ID: g.ID, Operator: "uid 0, pid 1"}); !errors.Is(err, ErrGrantInvalid) {
		t.Fatalf("an operator's approval: %v", err)
	}
	f.mustDecide("approve", g.ID, grantBob)
	r, err := f.g.Revoke(ctx, GrantDecision{ID: g.ID, Comment: "incident 77", Operator: "uid 0, pid 1"})
	if err != nil || r.State != GrantRevoked || r.ClosedBy != "operator (uid 0, pid 1)" || r.Comment != "incident 77" {
		t.Fatalf("operator revocation: %+v, %v", r, err)
	}
	f.wantEnd(g.ID, GrantRevokedWhy)
	evs := f.events(events.GrantRevoked)
	if len(evs) != 1 || evs[0]["by.kind"] != "operator" || evs[0]["by"] != "operator (uid 0, pid 1)" {
		t.Fatalf("journaled %v", evs)
	}
	f.reopen()
	if got, _ := f.g.Get(g.ID); got.State != GrantRevoked || got.ClosedBy != "operator (uid 0, pid 1)" {
		t.Fatalf("after reopening: %+v", got)
	}
}

// TestGrantTimer: the store's own goroutine journals an end once it is
// due, and calls OnEnd.
func TestGrantTimer(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob"), nil)
	g := f.request(grantAgent, "db-1", time.Minute)
	f.mustDecide("approve", g.ID, grantBob)
	f.clock.Advance(time.Minute)
	f.g.poke()
	f.wantEnd(g.ID, GrantEndedWhy)
	if g, _ := f.g.Get(g.ID); g.State != GrantEnded {
		t.Fatalf("after the timer: %+v", g)
	}
}

// TestGrantRebuild: a store reopened from the journal file is the store
// that wrote it, and journals what fell due while it was closed.
func TestGrantRebuild(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 2, "bob", "carol", "dave"), nil)
	pending := f.request(grantAgent, "db-1", 30*time.Minute)
	f.mustDecide("approve", pending.ID, grantBob)
	active := f.request(&policy.Identity{Provider: "corp", Issuer: "https://idp.example", Subject: "agent-2"}, "db-2", 20*time.Minute)
	f.mustDecide("approve", active.ID, grantBob)
	f.mustDecide("approve", active.ID, grantCarol)
	denied := f.request(grantAgent, "db-3", 30*time.Minute)
	f.decide("deny", denied.ID, grantDave, "no")
	revoked := f.request(grantAgent, "db-4", 30*time.Minute)
	f.mustDecide("approve", revoked.ID, grantCarol)
	f.mustDecide("approve", revoked.ID, grantDave)
	f.mustDecide("revoke", revoked.ID, grantBob)
	f.wantEnd(revoked.ID, GrantRevokedWhy)

	before := f.g.List(GrantFilter{})
	if len(before) != 4 {
		t.Fatalf("%d grants", len(before))
	}
	f.reopen()
	if after := f.g.List(GrantFilter{}); !reflect.DeepEqual(before, after) {
		t.Fatalf("rebuilt from the journal:\n%+v\nwant\n%+v", after, before)
	}
	if got := f.g.List(GrantFilter{State: GrantActive}); len(got) != 1 || got[0].ID != active.ID {
		t.Fatalf("active after reopen: %+v", got)
	}
	// Decisions go on where they stopped: bob's approval still counts.
	f.wantRefused("approve", pending.ID, grantBob, ErrAlreadyApproved)

	// Closed past the active grant's end and the pending one's expiry.
	f.close()
	f.clock.Advance(2 * time.Hour)
	f.openJournal()
	f.open()
	f.settle()
	f.wantEnd(active.ID, GrantEndedWhy)
	for id, want := range map[string]GrantState{pending.ID: GrantExpired, active.ID: GrantEnded, denied.ID: GrantDenied, revoked.ID: GrantRevoked} {
		if g, _ := f.g.Get(id); g.State != want {
			t.Errorf("%s is %s, want %s", id, g.State, want)
		}
	}
}

// TestGrantJournalFailure: when the journal cannot record a transition,
// it does not happen.
func TestGrantJournalFailure(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob"), nil)
	g := f.request(grantAgent, "db-1", 30*time.Minute)
	active := f.request(grantAgent, "db-2", 30*time.Minute)
	f.mustDecide("approve", active.ID, grantBob)
	if err := f.j.Close(); err != nil {
		t.Fatal(err)
	}
	f.wantRefused("approve", g.ID, grantBob, ErrGrantJournal)
	f.wantRefused("revoke", active.ID, grantAgent, ErrGrantJournal)
	if _, err := f.g.Request(context.Background(), GrantAsk{Identity: grantAgent, Target: "db-3", Login: "postgres", Duration: time.Minute, Reason: "x"}); !errors.Is(err, ErrGrantJournal) {
		t.Fatalf("request with the journal closed: %v", err)
	}
	f.clock.Advance(time.Hour)
	if _, err := f.g.settle(context.Background()); !errors.Is(err, ErrGrantJournal) {
		t.Fatalf("settle with the journal closed: %v", err)
	}
	f.noEnd()
	if got, _ := f.g.Get(active.ID); got.State != GrantActive {
		t.Fatalf("the end happened without its journal event: %+v", got)
	}
	if gs := f.g.List(GrantFilter{}); len(gs) != 2 {
		t.Fatalf("%d grants after a failed request", len(gs))
	}
}

// TestGrantPolicyChange: an approval is checked under the policy in force
// when it is given.
func TestGrantPolicyChange(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 2, "bob", "carol"), nil)
	g := f.request(grantAgent, "db-1", 30*time.Minute)
	f.mustDecide("approve", g.ID, grantBob)

	f.pol.Store(grantstest.Policy(t, 2, "dave"))
	// bob approved under the old policy: he still sees the grant, but may
	// no longer decide it; carol, never involved, no longer sees it.
	f.wantRefused("revoke", g.ID, grantBob, ErrNotApprover)
	f.wantRefused("approve", g.ID, grantCarol, ErrGrantNotFound)
	g = f.mustDecide("approve", g.ID, grantDave)
	if g.State != GrantActive || len(g.Approvals) != 2 {
		t.Fatalf("after dave's approval: %+v", g)
	}
	if vis := f.g.List(GrantFilter{VisibleTo: grantCarol}); len(vis) != 0 {
		t.Fatalf("carol sees %+v", vis)
	}
	if vis := f.g.List(GrantFilter{VisibleTo: grantDave}); len(vis) != 1 {
		t.Fatalf("dave sees %+v", vis)
	}
}

func TestGrantRequestRefused(t *testing.T) {
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob"), nil)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		ask  GrantAsk
		want error
	}{
		{"no grant-only role", GrantAsk{Identity: grantAgent, Target: "ci-1", Login: "ci", Duration: time.Minute, Reason: "x"}, ErrGrantNotAllowed},
		{"not an agent", GrantAsk{Identity: grantBob, Target: "db-1", Login: "postgres", Duration: time.Minute, Reason: "x"}, ErrGrantNotAllowed},
		{"wrong login", GrantAsk{Identity: grantAgent, Target: "db-1", Login: "root", Duration: time.Minute, Reason: "x"}, ErrGrantNotAllowed},
		{"no reason", GrantAsk{Identity: grantAgent, Target: "db-1", Login: "postgres", Duration: time.Minute, Reason: " "}, ErrGrantInvalid},
		{"long reason", GrantAsk{Identity: grantAgent, Target: "db-1", Login: "postgres", Duration: time.Minute, Reason: strings.Repeat("x", MaxGrantReason+1)}, ErrGrantInvalid},
		{"reason with a line break", GrantAsk{Identity: grantAgent, Target: "db-1", Login: "postgres", Duration: time.Minute, Reason: "a\nb"}, ErrGrantInvalid},
		{"no duration", GrantAsk{Identity: grantAgent, Target: "db-1", Login: "postgres", Reason: "x"}, ErrGrantInvalid},
		{"bad target", GrantAsk{Identity: grantAgent, Target: "db 1", Login: "postgres", Duration: time.Minute, Reason: "x"}, ErrGrantInvalid},
		{"bad ticket", GrantAsk{Identity: grantAgent, Target: "db-1", Login: "postgres", Duration: time.Minute, Reason: "x", Ticket: "a b"}, ErrGrantInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := f.g.Request(ctx, c.ask); !errors.Is(err, c.want) {
				t.Fatalf("%v, want %v", err, c.want)
			}
		})
	}
	if gs := f.g.List(GrantFilter{}); len(gs) != 0 {
		t.Fatalf("refused requests made grants: %+v", gs)
	}
	if n := len(f.events(events.GrantRefused)); n != 9 {
		t.Fatalf("%d refusals journaled, want 9", n)
	}
}
