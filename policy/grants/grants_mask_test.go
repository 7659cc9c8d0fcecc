package grants

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/policy/grants/grantstest"
	"github.com/bastionhq/bastion/policy/mask"
)

// TestGrantTextMasked: the free text of a request and of decisions (the
// reason, the ticket, a comment) is masked before it is journaled,
// answered, rebuilt or posted to the webhook, and the leaves say what was
// masked; a command scope holding a value masking hides is refused.
func TestGrantTextMasked(t *testing.T) {
	h := newHookServer(t)
	f := newGrantsFixture(t, grantstest.Policy(t, 1, "bob"), func(o *GrantsOptions) { o.WebhookURL = h.srv.URL + "/hook" })
	const card, pw = "4111111111111111", "hunter2"
	ctx := context.Background()
	g, err := f.g.Request(ctx, GrantAsk{Identity: grantAgent, Target: "db-1", Login: "postgres", Duration: 30 * time.Minute,
		Reason: "refund card " + card + " password=" + pw, Ticket: "CHG-7"})
	if err != nil {
		t.Fatal(err)
	}
	if g.Reason != "refund card ************1111 password=*******" {
		t.Fatalf("answered reason %q", g.Reason)
	}
	if _, err := f.decide("deny", g.ID, grantBob, "not with card "+card); err != nil {
		t.Fatal(err)
	}
	_, err = f.g.Request(ctx, GrantAsk{Identity: grantAgent, Target: "db-1", Login: "postgres", Duration: 30 * time.Minute,
		Reason: "fix", Command: "psql -c 'select * from cards where pan = " + card + "'"})
	if !errors.Is(err, ErrGrantInvalid) || !strings.Contains(err.Error(), "masking hides") || strings.Contains(err.Error(), card) {
		t.Fatalf("a command scope holding a card: %v", err)
	}
	h.wait(t, 2)

	evs := f.events("grant.requested", "grant.denied", "grant.refused")
	if got := eventNames(evs); got != "grant.requested grant.denied grant.refused" {
		t.Fatalf("events %s", got)
	}
	if evs[0]["masked"] != "reason:card:1,reason:password:1" || evs[1]["masked"] != "comment:card:1" {
		t.Fatalf("masked attributes %q, %q", evs[0]["masked"], evs[1]["masked"])
	}
	all := ""
	for _, e := range evs {
		for _, v := range e {
			all += v + "\n"
		}
	}
	h.mu.Lock()
	for _, m := range h.got {
		all += m.Text + m.Comment + m.Grant.Reason + "\n"
	}
	h.mu.Unlock()
	if strings.Contains(all, card) || strings.Contains(all, pw) {
		t.Fatalf("a value was kept or posted:\n%s", all)
	}

	// Rebuilt from the journal, the grant holds what the journal holds.
	f.reopen()
	if r, ok := f.g.Get(g.ID); !ok || r.Reason != g.Reason || r.Comment != "not with card ************1111" {
		t.Fatalf("rebuilt: %+v", r)
	}

	// A masker that masks nothing keeps the text as it is.
	f2 := newGrantsFixture(t, grantstest.Policy(t, 1, "bob"), func(o *GrantsOptions) { o.TextMasker = func() *mask.Masker { return nil } })
	g2 := f2.request(grantAgent, "db-2", 30*time.Minute)
	if g2.Reason != "rotate the replication password" {
		t.Fatalf("%q", g2.Reason)
	}
}
