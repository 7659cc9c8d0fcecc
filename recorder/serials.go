package recorder

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/bastionhq/bastion/recorder/events"
)

// Serials and grant numbers (docs/journal-format.md, 6.2): the serial of a
// cert.issued leaf and the grant.index of a grant.requested leaf are the
// leaf's own index plus the log's member ID << MemberShift, the value the
// writer fills in ([Options] IndexBase, [Journal.AppendIndexedEvent]).

// MemberShift is where a cluster member's ID sits in a serial or grant
// number: ID << MemberShift | the leaf's index. A standalone bastion is
// member 0.
const MemberShift = 48

// MaxIndexed is the largest leaf index a serial or grant number carries.
const MaxIndexed = 1<<MemberShift - 1

// NumberOf is the serial or grant number of leaf idx of member id's log.
func NumberOf(id uint16, idx int64) (uint64, error) {
	if idx < 0 || idx > MaxIndexed {
		return 0, fmt.Errorf("recorder: leaf index %d does not fit a serial (at most %d)", idx, int64(MaxIndexed))
	}
	return uint64(id)<<MemberShift | uint64(idx), nil
}

// SplitNumber is NumberOf's inverse: the member whose log records the
// serial or grant number n, and the index of the leaf that does.
func SplitNumber(n uint64) (id uint16, idx int64) {
	return uint16(n >> MemberShift), int64(n & MaxIndexed)
}

// NumberedAttr is the attribute of an event leaf named event that holds
// its number (a cert.issued leaf's serial, a grant.requested leaf's
// grant.index), which its writer has [Journal.AppendIndexedEvent] fill
// in; "" for the other events.
func NumberedAttr(event string) string {
	switch event {
	case events.CertIssued:
		return "serial"
	case events.GrantRequested:
		return "grant.index"
	}
	return ""
}

// serials is verification's step 10 (docs/journal-format.md, section
// 10): the log read as ReadLog reads it, every leaf proven against the
// signed head checkpoint; when it does not read whole, the steps before
// found why, and this one is skipped.
func (v *verifier) serials() error {
	log, err := ReadLog(v.ctx, v.snap, ReadLogOptions{Verifier: v.opts.Verifier, Events: EventNames(events.CertIssued, events.GrantRequested)})
	if errors.Is(err, ErrLogDamaged) {
		return nil
	}
	if err != nil {
		return err
	}
	v.r.Problems = append(v.r.Problems, NumberProblems(log, v.opts.Member)...)
	return nil
}

// NumberProblems checks the serial of every cert.issued leaf and the
// grant.index of every grant.requested leaf of log, in leaf order: each
// must be canonical decimal, its low 48 bits the leaf's own index, its
// high 16 bits member, the log's ID in a cluster (1 to 65535); with
// member 0 (outside a cluster), the ID the log's first such value
// carries.
func NumberProblems(log *Log, member uint16) []Problem {
	var out []Problem
	want, fixed := member, member != 0
	firstAt := int64(-1)
	for _, ev := range log.Events {
		attr := NumberedAttr(ev.Leaf.Event)
		if attr == "" {
			continue
		}
		where := fmt.Sprintf("leaf %d (event %s)", ev.Index, ev.Leaf.Event)
		s := ev.Leaf.Attrs[attr]
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || strconv.FormatUint(n, 10) != s {
			out = append(out, Problem{Leaf: ev.Index, Where: where, What: fmt.Sprintf("%s %q is not a number in canonical decimal", attr, s)})
			continue
		}
		id, idx := SplitNumber(n)
		if !fixed {
			want, fixed, firstAt = id, true, ev.Index
		}
		switch {
		case idx != ev.Index:
			out = append(out, Problem{Leaf: ev.Index, Where: where, What: fmt.Sprintf("%s %d is not this leaf's: its low 48 bits are %d, the leaf's index is %d", attr, n, idx, ev.Index)})
		case id != want && member != 0:
			out = append(out, Problem{Leaf: ev.Index, Where: where, What: fmt.Sprintf("%s %d carries member ID %d, and this is member %d's log", attr, n, id, want)})
		case id != want:
			out = append(out, Problem{Leaf: ev.Index, Where: where, What: fmt.Sprintf("%s %d carries member ID %d, and the log's first (leaf %d) carries %d", attr, n, id, firstAt, want)})
		}
	}
	return out
}
