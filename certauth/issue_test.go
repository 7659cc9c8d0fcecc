package certauth

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"testing"

	"golang.org/x/time/rate"

	"github.com/bastionhq/bastion/certauth/oidc"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/recordertest"
)

type denyAll struct{}

func (denyAll) Certificate(policy.CertRequest) policy.CertDecision {
	return policy.CertDecision{Reason: "test"}
}

// TestRefusalJournalBudget: a flood of garbage tokens is journaled up to
// the refusal budget; the rest are counted, and the next refusal journaled
// says how many were left out.
func TestRefusalJournalBudget(t *testing.T) {
	ctx := context.Background()
	auth, err := CreateAuthorities(t.TempDir(), AlgorithmEd25519)
	if err != nil {
		t.Fatal(err)
	}
	j := recordertest.NewJournal(t)
	v, err := oidc.NewVerifier([]oidc.ProviderConfig{{Name: "corp", Issuer: "https://idp.example", Audiences: []string{"b"}}}, oidc.VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	is, err := NewIssuer(ctx, IssuerOptions{CA: auth.User, Verifier: v, Policy: denyAll{}, Journal: j.Journal, Registry: NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	// A budget of 10 that never refills, so the test does not depend on
	// how fast the machine journals.
	is.refusals = rate.NewLimiter(0, 10)
	const flood = 300
	for range flood {
		_, err := is.Issue(ctx, IssueRequest{Token: "garbage", ClientAddress: netip.MustParseAddr("192.0.2.1")})
		var rf *Refusal
		if !errors.As(err, &rf) || rf.Reason != events.ReasonTokenMalformed {
			t.Fatalf("garbage token: %v", err)
		}
	}
	is.refusals = rate.NewLimiter(rate.Inf, 1) // the budget refills
	if _, err := is.Issue(ctx, IssueRequest{Token: "garbage"}); err == nil {
		t.Fatal("garbage accepted")
	}
	if err := j.Journal.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := j.Store.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var journaled, left int
	evs, err := recorder.Events(ctx, snap, j.Key.Verifier, events.CertRefused)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		journaled++
		if n := e.Leaf.Attrs["refusals_not_journaled"]; n != "" {
			left, _ = strconv.Atoi(n)
		}
	}
	if journaled != 11 || left != flood-10 {
		t.Fatalf("%d refusals journaled, %d said left out, of %d", journaled, left, flood+1)
	}
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":     "::ffff:192.0.2.7",
		"2001:db8:1:3:3:4:5:6": "2001:db8:1:3::/64",
	} {
		if got := AddrKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
