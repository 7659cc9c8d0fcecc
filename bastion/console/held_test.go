package console

import (
	"context"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/time/rate"

	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// A console session that ends (signed out, expired, ended for its
// person's sake, or pushed out by their own newer sign-ins) gives back
// the report it held: the held reports' bytes count only sessions still
// held.
func TestEndedSessionGivesBackItsReport(t *testing.T) {
	_, vkey, err := note.GenerateKey(rand.Reader, "test")
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	c, err := New(Options{
		Provider: "dev", Issuer: "https://issuer.invalid", ClientID: "c", RedirectURL: "https://api.invalid/ui/callback",
		VerifyIDToken: func(context.Context, string, string, string, string) (*policy.Identity, error) { return nil, nil },
		Policy:        func() *policy.Policy { return nil },
		Live:          func() []front.LiveSession { return nil },
		Journal:       func(context.Context, string, recorder.Attrs) error { return nil },
		Store:         func() storage.Store { return nil },
		Verifier:      v,
		RecordRead: func(context.Context, *policy.Identity, netip.Addr, certauth.ReadRequest) (*certauth.ReadResponse, error) {
			return nil, nil
		},
		Kill: func(context.Context, KillRequest) (front.LiveSession, error) { return front.LiveSession{}, nil },
		Now:  func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	held := func() int64 {
		c.reports.mu.Lock()
		defer c.reports.mu.Unlock()
		return c.reports.heldBytes
	}
	person := func(sub string) *session {
		id := &policy.Identity{Subject: sub, Provider: "dev"}
		return &session{id: id, who: id.String(), created: now, lastSeen: now}
	}
	a, b := person("alice"), person("carol")
	for i, s := range []*session{a, b} {
		if !c.hold(random(), s, now) {
			t.Fatal("hold")
		}
		c.holdReport(&viewer{session: s}, &madeReport{Zip: make([]byte, 1000*(i+1))}, 1<<20)
	}
	if n := held(); n != 3000 {
		t.Fatalf("held %d bytes, want 3000", n)
	}
	// A report finished after its console session ended is not held.
	gone := person("erin")
	if c.holdReport(&viewer{session: gone}, &madeReport{Zip: make([]byte, 700)}, 1<<20) {
		t.Error("a report of a console session not held was held")
	}
	if n := held(); n != 3000 {
		t.Errorf("after a report of an ended session: held %d bytes, want 3000", n)
	}
	c.end(a) // a sign-out, or an identity refused
	if n := held(); n != 2000 {
		t.Errorf("after alice's session ended: held %d bytes, want 2000", n)
	}
	// carol's session expires: the next look at the sessions forgets it.
	now = now.Add(DefaultIdleTimeout)
	if !c.hold(random(), person("lena"), now) {
		t.Fatal("hold")
	}
	if n := held(); n != 0 {
		t.Errorf("after carol's session expired: held %d bytes, want 0", n)
	}
	// A person's own newer sign-ins push out their oldest, and its report.
	first := person("dave")
	c.hold(random(), first, now)
	c.holdReport(&viewer{session: first}, &madeReport{Zip: make([]byte, 500)}, 1<<20)
	for range MaxSessionsPerIdentity {
		now = now.Add(time.Second)
		c.hold(random(), person("dave"), now)
	}
	if n := held(); n != 0 {
		t.Errorf("after dave's oldest session was pushed out: held %d bytes, want 0", n)
	}
}

// Refused sign-ins are journaled within a budget: past its burst they are
// not, and the next one journaled counts them.
func TestRefusalBudget(t *testing.T) {
	var b refusalBudget
	for i := range RefusalBurst {
		if n, ok := b.take(); !ok || n != 0 {
			t.Fatalf("refusal %d within the burst: %d %v", i, n, ok)
		}
	}
	for range 2 {
		if _, ok := b.take(); ok {
			t.Fatal("a refusal past the burst was to be journaled")
		}
	}
	b.lim = rate.NewLimiter(rate.Inf, 1) // time has passed
	if n, ok := b.take(); !ok || n != 2 {
		t.Errorf("the next refusal journaled: counts %d not journaled (%v), want 2", n, ok)
	}
	if n, _ := b.take(); n != 0 {
		t.Errorf("the count was not reset: %d", n)
	}
}
