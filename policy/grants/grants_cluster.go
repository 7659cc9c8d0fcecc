package grants

import (
	"errors"
	"fmt"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// ErrUnknownGrant means an event of another member's log names a grant
// this store has not seen requested yet: its request is in a third
// member's log not read that far. The caller applies the event again
// once it has read further.
var ErrUnknownGrant = errors.New("grants: the event names a grant not requested yet")

// Applied says what an event of another member's log did here.
type Applied struct {
	// Grant is the grant after the event; Changed is false when the
	// event changed nothing (a transition this store had made already,
	// such as a second member journaling the same grant's end).
	Grant   Grant
	Changed bool
	// Ended is set when the event ended a grant that was active (it
	// ended or was revoked); Why is GrantEndedWhy or GrantRevokedWhy.
	// The caller ends the sessions under it: OnEnd is not called.
	Ended bool
	Why   string
}

// ApplyForeign makes the grant event of another cluster member's log
// take effect here: the event at leaf idx of the log whose IndexBase is
// base, read from that log under a checkpoint that verified with its
// member's key. Every member shares the grants of all: a grant requested
// on one and approved on another is in force on every member.
//
// The members decide without a lock between them, so two may make the
// same transition (both journal a grant's end when it falls due), or one
// may decide on a state another has since left. The first transition
// this store sees wins; a later one that no longer fits is logged and
// changes nothing. An event about a grant whose request is not known yet
// returns ErrUnknownGrant.
func (s *Grants) ApplyForeign(base uint64, idx int64, name string, a recorder.Attrs) (Applied, error) {
	if !GrantEvents(name) || name == events.GrantRefused {
		return Applied{}, nil
	}
	s.tx.Lock()
	defer s.tx.Unlock()
	s.mu.Lock()
	var before GrantState
	if name != events.GrantRequested {
		g := s.m[a["grant"]]
		if g == nil {
			s.mu.Unlock()
			return Applied{}, fmt.Errorf("%w: %s of grant %q", ErrUnknownGrant, name, printableID(a["grant"]))
		}
		before = g.State
	}
	g, err := s.apply(name, base+uint64(idx), a)
	if err != nil {
		s.mu.Unlock()
		s.log.Warn("another member's grant event changes nothing here", "event", name, "grant", printableID(a["grant"]), "leaf", idx, "why", err)
		var out Applied
		if cur := s.m[a["grant"]]; cur != nil {
			out.Grant = cur.clone()
		}
		return out, nil
	}
	if name == events.GrantRequested {
		// This log's own decisions on the grant, read before its request.
		for _, e := range s.orphans[g.ID] {
			if _, err := s.apply(e.Leaf.Event, s.base+uint64(e.Index), e.Leaf.Attrs); err != nil {
				s.log.Warn("this member's grant event changes nothing", "event", e.Leaf.Event, "grant", g.ID, "leaf", e.Index, "why", err)
			}
		}
		delete(s.orphans, g.ID)
	}
	out := Applied{Grant: g.clone(), Changed: true}
	s.mu.Unlock()
	if before == GrantActive && (g.State == GrantEnded || g.State == GrantRevoked) {
		out.Ended, out.Why = true, GrantEndedWhy
		if g.State == GrantRevoked {
			out.Why = GrantRevokedWhy
		}
	}
	if name != events.GrantApproved {
		// New deadlines for the timer; not after an approval, whose
		// activation is the next leaf of the same log.
		s.poke()
	}
	return out, nil
}

// PassOverOrphans forgets this log's own events about grants requested
// in another member's log (read at load, kept until the request is read)
// whose request can no longer come: gone(number) says why not, or "" while
// it may still, for the grant's number. Each grant forgotten is logged.
func (s *Grants) PassOverOrphans(gone func(number uint64) string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, evs := range s.orphans {
		n, ok := GrantNumber(id)
		why := "its ID is not a grant number"
		if ok {
			why = gone(n)
		}
		if why != "" {
			s.log.Error("this member's events about a grant no member's log requests: passed over", "grant", printableID(id), "events", len(evs), "why", why)
			delete(s.orphans, id)
		}
	}
}
