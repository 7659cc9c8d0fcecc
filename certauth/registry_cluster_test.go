package certauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

func issuedLeaf(serial uint64, now time.Time) *recorder.Leaf {
	return &recorder.Leaf{Type: recorder.LeafEvent, Event: events.CertIssued, WallNS: now.UnixNano(), Attrs: recorder.Attrs{
		"serial": strconv.FormatUint(serial, 10), "identity": "alice@dev", "provider": "dev", "subject": "alice",
		"principals": "root", "valid_after": now.Add(-time.Minute).UTC().Format(time.RFC3339),
		"valid_before": now.Add(time.Hour).UTC().Format(time.RFC3339),
	}}
}

// TestRegistryApplyForeign: a member's issuance is registered only with a
// serial of that member's ID and that leaf; its revocations revoke any
// member's certificates, name its log, and go into the KRL; LoadRegistryOf
// refuses a log whose serials carry another ID.
func TestRegistryApplyForeign(t *testing.T) {
	t.Parallel()
	now := time.Now()
	r := NewRegistry()
	mine, _ := recorder.NumberOf(1, 4)
	r.add(&CertRecord{Serial: mine, Identity: "bob@dev", ValidBefore: now.Add(time.Hour)})
	theirs, _ := recorder.NumberOf(2, 9)
	if _, err := r.ApplyForeign(2, "b.example/journal", 9, issuedLeaf(theirs, now), now); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup(theirs); !ok {
		t.Fatal("member 2's certificate is not registered")
	}
	// Member 2 claiming a serial of member 1's, or of another leaf.
	for _, s := range []uint64{mine + 1, theirs + 1} {
		if _, err := r.ApplyForeign(2, "b.example/journal", 9, issuedLeaf(s, now), now); err == nil || !strings.Contains(err.Error(), "not member 2's serial") {
			t.Errorf("serial %d from member 2's leaf 9: %v", s, err)
		}
	}
	rev := &recorder.Leaf{Type: recorder.LeafEvent, Event: events.CertRevoked, WallNS: now.UnixNano(),
		Attrs: recorder.Attrs{"serials": strconv.FormatUint(mine, 10) + "," + strconv.FormatUint(theirs, 10), "reason": "test"}}
	res, err := r.ApplyForeign(2, "b.example/journal", 12, rev, now)
	if err != nil || res == nil || res.Log != "b.example/journal" || res.Leaf != 12 || !slices.Equal(res.Serials, []uint64{mine, theirs}) {
		t.Fatalf("revocation: %+v %v", res, err)
	}
	if !r.IsRevoked(mine) || !r.IsRevoked(theirs) {
		t.Fatal("the revocation through member 2 did not revoke both")
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	ca, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	k := r.KRL([]ssh.PublicKey{ca}, now)
	if len(k.Revoked) != 1 || !slices.Equal(k.Revoked[0].Serials, []uint64{mine, theirs}) {
		t.Fatalf("KRL: %+v", k.Revoked)
	}

	// A revocation read before the issuance it names (the issuing
	// member's log not read that far): the certificate is revoked when
	// it comes. Likewise one of an identity revoked after it was issued.
	late, _ := recorder.NumberOf(3, 2)
	early := &recorder.Leaf{Type: recorder.LeafEvent, Event: events.CertRevoked, WallNS: now.UnixNano(),
		Attrs: recorder.Attrs{"serials": strconv.FormatUint(late, 10)}}
	if _, err := r.ApplyForeign(2, "b.example/journal", 13, early, now); err != nil {
		t.Fatal(err)
	}
	byID := &recorder.Leaf{Type: recorder.LeafEvent, Event: events.CertRevoked, WallNS: now.Add(time.Second).UnixNano(),
		Attrs: recorder.Attrs{"identity": "carol@dev"}}
	if _, err := r.ApplyForeign(2, "b.example/journal", 14, byID, now); err != nil {
		t.Fatal(err)
	}
	carols, _ := recorder.NumberOf(3, 3)
	carol := issuedLeaf(carols, now)
	carol.Attrs["identity"] = "carol@dev"
	for _, l := range []*recorder.Leaf{issuedLeaf(late, now), carol} {
		serial, _ := strconv.ParseUint(l.Attrs["serial"], 10, 64)
		_, idx := recorder.SplitNumber(serial)
		if _, err := r.ApplyForeign(3, "c.example/journal", idx, l, now); err != nil {
			t.Fatal(err)
		}
		if !r.IsRevoked(serial) {
			t.Errorf("serial %d, revoked before its issuance was read, is not revoked", serial)
		}
	}

	log := &recorder.Log{Events: []recorder.LogEvent{{Index: 3, Leaf: issuedLeaf(mine&^recorder.MaxIndexed|3, now)}}}
	if _, err := LoadRegistryOf(log, 1, now, false); err != nil {
		t.Fatalf("member 1's own log: %v", err)
	}
	if _, err := LoadRegistryOf(log, 2, now, false); err == nil {
		t.Fatal("member 2 loaded a log of member 1's serials")
	}
	if _, err := LoadRegistry(log, now, false); err != nil {
		t.Fatalf("LoadRegistry of a member's log: %v", err)
	}
}

// TestRegistryBlockAcrossMembers: member 1 revokes an identity with a
// block; member 2 issues it a certificate during the block, before it has
// read member 1's leaf. Whichever of the two leaves a registry reads
// first, the certificate is revoked; one issued after the block is not.
func TestRegistryBlockAcrossMembers(t *testing.T) {
	t.Parallel()
	now := time.Now()
	block := &recorder.Leaf{Type: recorder.LeafEvent, Event: events.CertRevoked, WallNS: now.UnixNano(),
		Attrs: recorder.Attrs{"identity": "alice@dev", "reason": "left", "blocked_until": now.Add(time.Hour).UTC().Format(time.RFC3339Nano)}}
	during, _ := recorder.NumberOf(2, 7)
	after, _ := recorder.NumberOf(2, 8)
	duringLeaf := issuedLeaf(during, now.Add(time.Minute))
	afterLeaf := issuedLeaf(after, now.Add(2*time.Hour))
	for _, order := range []string{"revocation first", "issuance first"} {
		t.Run(strings.ReplaceAll(order, " ", "_"), func(t *testing.T) {
			// The registry of a third member, reading both logs.
			r := NewRegistry()
			r.SetOnMiss(3, nil)
			revoke := func() {
				res, err := r.ApplyForeign(1, "a.example/journal", 5, block, now)
				if err != nil || res.Identity != "alice@dev" {
					t.Fatalf("revocation: %+v %v", res, err)
				}
			}
			issue := func(serial uint64, l *recorder.Leaf) {
				_, idx := recorder.SplitNumber(serial)
				if _, err := r.ApplyForeign(2, "b.example/journal", idx, l, now); err != nil {
					t.Fatal(err)
				}
			}
			if order == "revocation first" {
				revoke()
				issue(during, duringLeaf)
			} else {
				issue(during, duringLeaf)
				revoke()
			}
			issue(after, afterLeaf)
			if !r.IsRevoked(during) {
				t.Error("a certificate issued through member 2 during member 1's block is not revoked")
			}
			if r.IsRevoked(after) {
				t.Error("a certificate issued after the block is revoked")
			}
		})
	}
}
