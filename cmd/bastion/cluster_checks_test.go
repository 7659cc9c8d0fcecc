package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// TestClusterSerialProblems checks the serial rule of
// docs/journal-format.md (section 10, step 10) on verified logs' events:
// a serial or grant number is ID << 48 | its leaf's index, with the
// member's ID in a cluster and one ID throughout a log outside one.
func TestClusterSerialProblems(t *testing.T) {
	t.Parallel()
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
		name      string
		log       *recorder.Log
		member    uint16
		clustered bool
		want      []want
	}{
		{"standalone, member 0", log(ev(3, events.CertIssued, "serial", "3"), ev(5, events.GrantRequested, "grant.index", "5")), 0, false, nil},
		{"standalone, one member's log", log(ev(3, events.CertIssued, "serial", m2(3)), ev(9, events.GrantRequested, "grant.index", m2(9))), 0, false, nil},
		{"standalone, two IDs", log(ev(3, events.CertIssued, "serial", m2(3)), ev(9, events.CertIssued, "serial", "9")),
			0, false, []want{{9, "serial 9 carries member ID 0, and the log's first (leaf 3) carries 2"}}},
		{"cluster, the member's ID", log(ev(3, events.CertIssued, "serial", m2(3))), 2, true, nil},
		{"cluster, another member's ID", log(ev(3, events.CertIssued, "serial", "3"), ev(4, events.GrantRequested, "grant.index", m2(4))),
			1, true, []want{{3, "serial 3 carries member ID 0, and this is member 1's log"}, {4, "grant.index " + m2(4) + " carries member ID 2"}}},
		{"another leaf's index", log(ev(3, events.CertIssued, "serial", "4")), 0, false, []want{{3, "its low 48 bits are 4, the leaf's index is 3"}}},
		{"not canonical", log(ev(3, events.CertIssued, "serial", "03"), ev(4, events.CertIssued, "serial", "")), 0, false,
			[]want{{3, `serial "03" is not a number`}, {4, `serial "" is not a number`}}},
	} {
		got := serialProblems(c.log, c.member, c.clustered)
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
