package grants

import (
	"context"
	"slices"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
)

// poke wakes the timer goroutine to look at the deadlines again.
func (s *Grants) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run is the timer goroutine: it sleeps until the next deadline (or a
// poke), then journals what fell due.
func (s *Grants) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	retry := time.Second
	for {
		next, err := s.settle(ctx)
		wait := time.Hour
		if !next.IsZero() {
			wait = min(wait, next.Sub(s.now()))
		}
		if err != nil {
			// The journal failed: try again later, backing off.
			wait = min(wait, retry)
			retry = min(2*retry, 30*time.Second)
		} else {
			retry = time.Second
		}
		t.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
	}
}

// settle journals every expiry, activation and end due at now, calls OnEnd
// for the ends, and returns the next deadline (zero if none).
func (s *Grants) settle(ctx context.Context) (time.Time, error) {
	s.tx.Lock()
	now := s.now()
	type due struct {
		g     Grant
		event string
	}
	var todo []due
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	s.mu.Lock()
	for _, g := range s.m {
		switch {
		case g.State == GrantPending && len(g.Approvals) >= g.ApprovalsNeeded:
			todo = append(todo, due{g.clone(), events.GrantActivated})
		case g.State == GrantPending && !now.Before(g.PendingUntil):
			todo = append(todo, due{g.clone(), events.GrantExpired})
		case g.State == GrantPending:
			soonest(g.PendingUntil)
		case g.State == GrantActive && !now.Before(g.End):
			todo = append(todo, due{g.clone(), events.GrantEnded})
		case g.State == GrantActive:
			soonest(g.End)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(todo, func(a, b due) int { return compareGrantIDs(a.g.ID, b.g.ID) })
	var ended []endedGrant
	var failed error
	for _, d := range todo {
		var g Grant
		var err error
		switch d.event {
		case events.GrantActivated:
			g, err = s.activate(ctx, d.g, now)
			if err == nil {
				soonest(g.End)
			}
		case events.GrantExpired:
			g, err = s.commit(ctx, events.GrantExpired, d.g.ID, recorder.Attrs{"at": timeAttr(now), "pending_until": timeAttr(d.g.PendingUntil)})
			if err == nil {
				s.log.Info("grant request expired", "grant", g.ID, "identity", g.Identity)
				s.notify(events.GrantExpired, g, "", "")
			}
		case events.GrantEnded:
			g, err = s.commit(ctx, events.GrantEnded, d.g.ID, recorder.Attrs{"at": timeAttr(now), "end": timeAttr(d.g.End)})
			if err == nil {
				s.log.Info("grant ended", "grant", g.ID, "identity", g.Identity)
				s.notify(events.GrantEnded, g, "", "")
				ended = append(ended, endedGrant{g, GrantEndedWhy})
			}
		}
		if err != nil {
			failed = err
			break
		}
	}
	s.tx.Unlock()
	s.ended(ended)
	return next, failed
}
