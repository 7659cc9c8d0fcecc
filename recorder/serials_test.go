package recorder_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/evidence"
	"github.com/bastionhq/bastion/recorder/recordertest"
)

func TestNumbers(t *testing.T) {
	for _, c := range []struct {
		id  uint16
		idx int64
	}{{0, 0}, {0, 17}, {1, 0}, {2, 12345}, {65535, recorder.MaxIndexed}} {
		s, err := recorder.NumberOf(c.id, c.idx)
		if err != nil {
			t.Fatal(err)
		}
		if id, idx := recorder.SplitNumber(s); id != c.id || idx != c.idx {
			t.Errorf("SplitNumber(NumberOf(%d, %d)) = %d, %d", c.id, c.idx, id, idx)
		}
	}
	if s, _ := recorder.NumberOf(0, 42); s != 42 {
		t.Errorf("a standalone bastion's serial is not its leaf index: %d", s)
	}
	if s, _ := recorder.NumberOf(1, 0); s != 1<<48 {
		t.Errorf("member 1's first serial: %d", s)
	}
	for _, idx := range []int64{-1, recorder.MaxIndexed + 1} {
		if _, err := recorder.NumberOf(1, idx); err == nil {
			t.Errorf("NumberOf(1, %d) did not fail", idx)
		}
	}
}

// TestNumberProblems checks the rule of docs/journal-format.md (section
// 10, step 10) on a log's events: a serial or grant number is ID << 48 |
// its leaf's index, with the member's ID in a cluster and one ID
// throughout a log outside one.
func TestNumberProblems(t *testing.T) {
	ev := func(idx int64, name, attr, value string) recorder.LogEvent {
		return recorder.LogEvent{Index: idx, Leaf: &recorder.Leaf{Type: recorder.LeafEvent, Event: name, Attrs: recorder.Attrs{attr: value}}}
	}
	m2 := func(idx int64) string { return strconv.FormatUint(2<<48|uint64(idx), 10) }
	log := func(evs ...recorder.LogEvent) *recorder.Log { return &recorder.Log{Events: evs} }
	type want struct {
		leaf int64
		text string
	}
	for _, c := range []struct {
		name   string
		log    *recorder.Log
		member uint16
		want   []want
	}{
		{"standalone, member 0", log(ev(3, events.CertIssued, "serial", "3"), ev(5, events.GrantRequested, "grant.index", "5")), 0, nil},
		{"standalone, one member's log", log(ev(3, events.CertIssued, "serial", m2(3)), ev(9, events.GrantRequested, "grant.index", m2(9))), 0, nil},
		{"standalone, two IDs", log(ev(3, events.CertIssued, "serial", m2(3)), ev(9, events.CertIssued, "serial", "9")),
			0, []want{{9, "serial 9 carries member ID 0, and the log's first (leaf 3) carries 2"}}},
		{"cluster, the member's ID", log(ev(3, events.CertIssued, "serial", m2(3))), 2, nil},
		{"cluster, another member's ID", log(ev(3, events.CertIssued, "serial", "3"), ev(4, events.GrantRequested, "grant.index", m2(4))),
			1, []want{{3, "serial 3 carries member ID 0, and this is member 1's log"}, {4, "grant.index " + m2(4) + " carries member ID 2"}}},
		{"another leaf's index", log(ev(3, events.CertIssued, "serial", "4")), 0, []want{{3, "its low 48 bits are 4, the leaf's index is 3"}}},
		{"not canonical", log(ev(3, events.CertIssued, "serial", "03"), ev(4, events.CertIssued, "serial", "")), 0,
			[]want{{3, `serial "03" is not a number`}, {4, `serial "" is not a number`}}},
		{"other events", log(ev(3, events.GrantApproved, "grant", "x")), 0, nil},
	} {
		got := recorder.NumberProblems(c.log, c.member)
		if len(got) != len(c.want) {
			t.Fatalf("%s: %d problems, want %d: %+v", c.name, len(got), len(c.want), got)
		}
		for i, p := range got {
			if p.Leaf != c.want[i].leaf || !strings.Contains(p.What, c.want[i].text) {
				t.Fatalf("%s: problem %d is %+v, want %+v", c.name, i, p, c.want[i])
			}
		}
	}
}

// TestVerifyNumbers: step 10 is part of Verify itself, so that every
// reader of a journal (bastion verify, the evidence report, the console)
// finds a signed serial that is not its leaf's, and one that carries
// another member's ID.
func TestVerifyNumbers(t *testing.T) {
	ctx := context.Background()
	base, _ := recorder.NumberOf(2, 0)
	j := recordertest.NewJournalWith(t, recordertest.Options{Journal: recorder.Options{IndexBase: base}})
	if _, err := j.AppendIndexedEvent(ctx, events.CertIssued, recorder.Attrs{"identity": "a"}, "serial"); err != nil {
		t.Fatal(err)
	}
	// The writer signs what it is given: a serial set by hand is a
	// leaf like any other, and only verification can tell.
	forged, err := j.AppendEvent(ctx, events.CertIssued, recorder.Attrs{"identity": "b", "serial": "7"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.AppendIndexedEvent(ctx, events.GrantRequested, recorder.Attrs{"identity": "a"}, "grant.index"); err != nil {
		t.Fatal(err)
	}
	if err := j.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		member uint16
		want   []string
	}{
		{0, []string{"serial 7 is not this leaf's"}},
		{2, []string{"serial 7 is not this leaf's"}},
		{1, []string{"carries member ID 2, and this is member 1's log", "serial 7 is not this leaf's", "grant.index"}},
	} {
		rep, err := recorder.Verify(ctx, j.Store, recorder.VerifyOptions{Verifier: j.Key.Verifier, Live: true, Member: c.member})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Intact() || len(rep.Problems) != len(c.want) {
			t.Fatalf("member %d: intact %v, problems %+v, want %q", c.member, rep.Intact(), rep.Problems, c.want)
		}
		for i, p := range rep.Problems {
			if !strings.Contains(p.What, c.want[i]) {
				t.Errorf("member %d: problem %d is %+v, want %q", c.member, i, p, c.want[i])
			}
		}
		if c.member != 1 && rep.Problems[0].Leaf != forged {
			t.Errorf("member %d: the problem is at leaf %d, the forged serial at %d", c.member, rep.Problems[0].Leaf, forged)
		}
	}
	// The examiner's report verifies as bastion verify does.
	now := time.Now()
	r, err := evidence.Build(ctx, j.Store, evidence.Options{Verifier: j.Key.Verifier, From: now.Add(-time.Hour), To: now, Now: now, Live: true, Member: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verification.Intact || len(r.Verification.Problems) != 1 || !strings.Contains(r.Verification.Problems[0].What, "serial 7 is not this leaf's") {
		t.Errorf("the evidence report's verification: intact %v, problems %+v", r.Verification.Intact, r.Verification.Problems)
	}
}
