package bastion

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
)

// EventJournalRecovered is the first event a journal reopened after a
// fault records, after the end leaves of the sessions the fault ended:
// cause (the error that failed it), first-failure (when, RFC 3339),
// duration (until it could write again), sessions-ended (the sessions
// the fault cut off, ended by the reopening), attempts.
const EventJournalRecovered = events.JournalRecovered

// DefaultJournalRecovery is how long serve tries to bring a failed
// journal back before it exits (journal_recovery in the config).
const DefaultJournalRecovery = 60 * time.Second

// How often serve checks that an idle journal still reaches its store
// (see recorder.Journal.Probe), and how long it waits for an answer: a
// PostgreSQL server that went away while nothing was written is noticed
// within about a second.
const (
	journalProbeInterval = time.Second
	journalProbeTimeout  = 3 * time.Second
)

// A JournalOpener opens the journal again after a fault: a new store on
// the same file and lock, and a writer that rebuilds and checks the tail
// it will extend. close closes both.
type JournalOpener func(ctx context.Context) (j *recorder.Journal, close func() error, err error)

// liveJournal is the journal the server records to: the one it was given,
// or the one a recovery opened in its place. Everything the server hands
// a journal to (the front door, grants, the issuer) holds this, so that a
// recovery reaches them all at once.
type liveJournal struct {
	mu    sync.RWMutex
	j     *recorder.Journal // guarded by mu
	close func() error      // closes j and its store; guarded by mu
}

func (l *liveJournal) current() *recorder.Journal {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.j
}

// Err is why the journal in force failed, or nil.
func (l *liveJournal) Err() error { return l.current().Err() }

func (l *liveJournal) StartSession(ctx context.Context, info recorder.SessionInfo) (*recorder.Session, error) {
	return l.current().StartSession(ctx, info)
}

func (l *liveJournal) AppendEvent(ctx context.Context, name string, attrs recorder.Attrs) (int64, error) {
	return l.current().AppendEvent(ctx, name, attrs)
}

func (l *liveJournal) AppendIndexedEvent(ctx context.Context, name string, attrs recorder.Attrs, indexAttr string) (int64, error) {
	return l.current().AppendIndexedEvent(ctx, name, attrs, indexAttr)
}

// Store is the store of the journal in force, for readers.
func (l *liveJournal) Store() storage.Store { return l.current().Store() }

// swap puts j in force in place of the failed journal, which is closed.
func (l *liveJournal) swap(j *recorder.Journal, close func() error) {
	l.mu.Lock()
	l.j, l.close = j, close
	l.mu.Unlock()
}

// Close closes the journal in force (and its store, if the server was
// given how).
func (l *liveJournal) Close() error {
	// Closed outside mu: closing a journal on a failing disk can take a
	// while, and readers (the probes, a session's start) must get the
	// failed journal's error meanwhile, not wait.
	l.mu.Lock()
	j, closeJ := l.j, l.close
	l.close = nil
	l.mu.Unlock()
	if closeJ == nil {
		return j.Close()
	}
	return closeJ()
}

// CloseJournal closes the journal the server records to (the one it was
// given, or the one a recovery opened), with its store, when the server
// was given how (ServerOptions.CloseJournal). Call it after Run returns.
func (s *Server) CloseJournal() error { return s.journal.Close() }

// watchJournal brings the journal back when it fails: it closes the
// failed one (whose descriptors may be dead, after an I/O error), then
// opens it again with backoff until it works or journal_recovery has
// passed. It returns an error, which ends Run (and serve, non-zero, for a
// supervisor to restart it), when it cannot.
func (s *Server) watchJournal(ctx context.Context) error {
	if s.opts.ReopenJournal == nil {
		return nil
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var probed time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cause := s.journal.Err()
		if cause == nil && time.Since(probed) >= journalProbeInterval {
			// A journal behind a connection (PostgreSQL) can lose it
			// while idle: the probe fails it then, so that /readyz
			// and the alarms say so and the recovery starts before a
			// session finds out.
			// Not cut short when serve stops: a ping cancelled
			// halfway fails the journal (and may close the writer's
			// connection, as pgx does with a query it abandons) just
			// as serve must write its last leaves and checkpoint.
			probed = time.Now()
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), journalProbeTimeout)
			cause = s.journal.current().Probe(pctx)
			cancel()
			if ctx.Err() != nil {
				return nil
			}
		}
		if cause == nil {
			continue
		}
		if err := s.recoverJournal(ctx, cause); err != nil {
			return err
		}
	}
}

func (s *Server) recoverJournal(ctx context.Context, cause error) error {
	first := s.now()
	limit := s.opts.Config.JournalRecovery
	if limit <= 0 {
		limit = DefaultJournalRecovery
	}
	// A journal that fails again within journal_recovery of its last
	// recovery is the same fault, not a new one: its window is not
	// renewed, so a journal that keeps failing (a disk still full, the
	// reopened journal failing at its next write) still ends serve.
	if !s.recoveredAt.IsZero() && first.Sub(s.recoveredAt) < limit {
		first = s.faultSince
	}
	s.faultSince = first
	if since := s.now().Sub(first); since >= limit {
		return fmt.Errorf("the journal keeps failing (%v): it failed again after each recovery for %v, more than journal_recovery (%v)", cause, since.Round(time.Millisecond), limit)
	}
	s.log.Error("the journal failed: new sessions and logins are refused while it is opened again", "error", cause, "give-up-after", limit)
	if s.health != nil {
		s.health.failed(cause)
	}
	if err := s.journal.Close(); err != nil && !errors.Is(err, cause) {
		s.log.Debug("close the failed journal", "error", err)
	}
	backoff := 250 * time.Millisecond
	var last error
	for attempt := 1; ; attempt++ {
		j, closeJ, err := s.opts.ReopenJournal(ctx)
		if err == nil {
			attrs := recorder.Attrs{
				"cause": cause.Error(), "first-failure": first.UTC().Format(time.RFC3339Nano),
				"duration":       s.now().Sub(first).Round(time.Millisecond).String(),
				"sessions-ended": strconv.Itoa(j.Abandoned()), "attempts": strconv.Itoa(attempt),
			}
			if _, err = j.AppendEvent(ctx, EventJournalRecovered, attrs); err == nil {
				s.journal.swap(j, closeJ)
				s.recoveredAt = s.now()
				s.log.Info("the journal recovered: sessions and logins are accepted again", "duration", attrs["duration"], "sessions-ended", attrs["sessions-ended"], "attempts", attempt)
				return nil
			}
			closeJ()
		}
		last = err
		if ctx.Err() != nil {
			return nil
		}
		if s.now().Sub(first) >= limit {
			return fmt.Errorf("the journal failed (%v) and could not be opened again within %v: %w", cause, limit, last)
		}
		s.log.Warn("the journal could not be opened again yet", "attempt", attempt, "error", err, "retry-in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
