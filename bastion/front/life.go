package front

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/policy"
	"github.com/bastionhq/bastion/policy/mask"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/recorder/termtext"
)

// Defaults of [Limits].
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxDuration = 8 * time.Hour
)

// ErrNoLiveSession is returned by [Sessions.Kill] for an ID that names
// no live session.
var ErrNoLiveSession = errors.New("no live session has that ID")

// Limits bound how long a front-door session may run.
type Limits struct {
	// IdleTimeout ends a session after this long without input or
	// output. Zero means DefaultIdleTimeout; negative means never.
	IdleTimeout time.Duration
	// MaxDuration ends a session this long after it started. Zero means
	// DefaultMaxDuration; negative means never.
	MaxDuration time.Duration
}

// WithDefaults is l with the defaults in place of its zero fields.
func (l Limits) WithDefaults() Limits {
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MaxDuration == 0 {
		l.MaxDuration = DefaultMaxDuration
	}
	return l
}

// A sessionEnd is why the bastion ended a live session: the cancel cause of
// the session's context. message is what the client reads on its stderr;
// reason and attrs go into the end leaf.
type sessionEnd struct {
	reason  string
	message string
	attrs   recorder.Attrs
}

func (e *sessionEnd) Error() string { return e.message }

// endCause is the sessionEnd ctx was canceled with, or nil.
func endCause(ctx context.Context) *sessionEnd {
	var e *sessionEnd
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &e) {
		return e
	}
	return nil
}

// LiveSession describes a front-door session that is running.
type LiveSession struct {
	// ID is the journal session's ID.
	ID       string    `json:"id"`
	Identity string    `json:"identity"`
	Serial   uint64    `json:"serial"`
	Login    string    `json:"login"`
	Target   string    `json:"target"`
	Client   string    `json:"client"`
	Started  time.Time `json:"started"`
	// Bytes counts the bytes recorded so far (input and output).
	Bytes int64 `json:"bytes"`
	// Rule is what allowed the session ("role:NAME"…), Grant the grant it
	// runs under, if any.
	Rule  string `json:"rule,omitempty"`
	Grant string `json:"grant,omitempty"`
	// Member, in a cluster's list, is the ID of the member whose log
	// records the session when another member holds it (0: this one);
	// its Bytes are then unknown (-1).
	Member uint16 `json:"member,omitempty"`
}

// liveSession is one session channel from its accept to its end. Its
// context is canceled, with a *sessionEnd cause, to end it.
type liveSession struct {
	info    *authInfo
	started time.Time
	cancel  context.CancelCauseFunc
	// activity is the time.Since(started) of the last byte recorded, in
	// nanoseconds; the idle timer reads it.
	activity atomic.Int64
	// bytes counts the bytes recorded.
	bytes atomic.Int64

	// limits are the front door's, which a policy decision may shorten.
	limits Limits

	mu       sync.Mutex
	id       string        // guarded by mu: the journal session's ID, "" before it starts
	grant    string        // guarded by mu: the grant the session runs under, if any
	rule     string        // guarded by mu: the policy rule that allowed it
	grantEnd time.Time     // guarded by mu: when that grant ends
	timers   []*time.Timer // guarded by mu
	stopped  bool          // guarded by mu: the timers are stopped for good
}

// touch notes input or output now.
func (l *liveSession) touch() { l.activity.Store(int64(time.Since(l.started))) }

func (l *liveSession) end(e *sessionEnd) { l.cancel(e) }

func (l *liveSession) describe() LiveSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LiveSession{ID: l.id, Identity: l.info.identity, Serial: l.info.serial, Login: l.info.login,
		Target: l.info.target.Name, Client: l.info.client, Started: l.started.UTC(),
		Bytes: l.bytes.Load(), Rule: l.rule, Grant: l.grant}
}

// Sessions is the registry of a front door's live sessions, and what ends
// them: their certificate's expiry, its revocation, idleness, a maximum
// duration, an operator, the bastion's shutdown. The server holds it
// beside the front door, to list and end sessions.
type Sessions struct {
	now func() time.Time

	mu      sync.Mutex
	limits  Limits                    // guarded by mu: for sessions that start from now on
	live    map[*liveSession]struct{} // guarded by mu
	closing bool                      // guarded by mu: no new session may start
}

// NewSessions makes a registry whose sessions get limits (zero fields
// mean the defaults); now, if nil, is time.Now.
func NewSessions(limits Limits, now func() time.Time) *Sessions {
	if now == nil {
		now = time.Now
	}
	return &Sessions{limits: limits.WithDefaults(), now: now, live: map[*liveSession]struct{}{}}
}

func (f *Front) lifecycle() *Sessions { return f.lives }

// Limits are the limits new sessions get.
func (lc *Sessions) Limits() Limits {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.limits
}

// SetLimits puts limits in force for the sessions that start from now
// on; live sessions keep theirs.
func (lc *Sessions) SetLimits(limits Limits) {
	lc.mu.Lock()
	lc.limits = limits.WithDefaults()
	lc.mu.Unlock()
}

// errShuttingDown refuses a session while the bastion stops.
var errShuttingDown = errors.New("the bastion is shutting down")

// add registers a session of info and returns its context, which ends
// when the certificate expires, at the maximum duration or after the idle
// timeout, or when end is called. remove must follow.
func (lc *Sessions) add(ctx context.Context, info *authInfo) (context.Context, *liveSession, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	l := &liveSession{info: info, started: time.Now(), cancel: cancel}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	l.limits = lc.limits
	if lc.closing {
		cancel(errShuttingDown)
		return nil, nil, errShuttingDown
	}
	lc.live[l] = struct{}{}
	l.mu.Lock()
	defer l.mu.Unlock()
	if vb := info.cert.ValidBefore; vb != ssh.CertTimeInfinity && int64(vb) > 0 {
		at := time.Unix(int64(vb), 0)
		l.timers = append(l.timers, time.AfterFunc(at.Sub(lc.now()), func() {
			// A certificate issued under a grant ends with it (its end
			// truncated to the second): the grant's end is the cause.
			l.mu.Lock()
			grant, grantEnd := l.grant, l.grantEnd
			l.mu.Unlock()
			if grant != "" && grantEnd.Before(at.Add(time.Second)) {
				l.end(grantEndedAt(grant, grantEnd))
				return
			}
			l.end(&sessionEnd{reason: events.EndExpired,
				message: "your certificate expired at " + at.UTC().Format(time.RFC3339) + ", so the session was ended (get a new one and reconnect)",
				attrs:   recorder.Attrs{"certificate.valid-before": at.UTC().Format(time.RFC3339)}})
		}))
	}
	l.maxDuration(lc.limits.MaxDuration)
	l.idleTimeout(lc.limits.IdleTimeout)
	return ctx, l, nil
}

// maxDuration ends the session d after it started (never if d <= 0).
// The caller holds l.mu.
func (l *liveSession) maxDuration(d time.Duration) {
	if d <= 0 {
		return
	}
	l.timers = append(l.timers, time.AfterFunc(d-time.Since(l.started), func() {
		l.end(&sessionEnd{reason: events.EndMaxDuration,
			message: fmt.Sprintf("the session reached its maximum duration of %v, so it was ended", d)})
	}))
}

// idleTimeout ends the session after d without input or output (never
// if d <= 0). The caller holds l.mu.
func (l *liveSession) idleTimeout(d time.Duration) {
	if d <= 0 {
		return
	}
	var idle *time.Timer
	idle = time.AfterFunc(d, func() {
		quiet := time.Since(l.started) - time.Duration(l.activity.Load())
		if quiet < d {
			// Input or output since: wait until d after it.
			l.mu.Lock()
			if !l.stopped {
				idle.Reset(d - quiet)
			}
			l.mu.Unlock()
			return
		}
		l.end(&sessionEnd{reason: events.EndIdle,
			message: fmt.Sprintf("the session had no input or output for %v, so it was ended", d)})
	})
	l.timers = append(l.timers, idle)
}

// apply adds the limits of the policy decision that let the session run:
// its role's maximum duration and idle timeout (where shorter than the
// front door's), and the end of the grant it runs under.
func (l *liveSession) apply(d policy.Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.rule = d.Rule
	lim := d.Limits
	if lim.MaxSession > 0 && (l.limits.MaxDuration <= 0 || lim.MaxSession < l.limits.MaxDuration) {
		l.maxDuration(lim.MaxSession)
	}
	if lim.IdleTimeout > 0 && (l.limits.IdleTimeout <= 0 || lim.IdleTimeout < l.limits.IdleTimeout) {
		l.idleTimeout(lim.IdleTimeout)
	}
	if d.Grant == "" {
		return
	}
	l.grant, l.grantEnd = d.Grant, lim.NotAfter
	l.timers = append(l.timers, time.AfterFunc(time.Until(lim.NotAfter), func() {
		l.end(grantEndedAt(d.Grant, lim.NotAfter))
	}))
}

// grantEndedAt is why a session is ended when its grant reached its end.
func grantEndedAt(id string, end time.Time) *sessionEnd {
	return grantEnd(id, "ended at "+end.UTC().Format(time.RFC3339))
}

// grantEnd is why a session under grant id is ended: the grant ended or
// was revoked (how says which).
func grantEnd(id, how string) *sessionEnd {
	return &sessionEnd{reason: events.EndGrant,
		message: fmt.Sprintf("the grant %s that allowed this session %s, so the session was ended", id, how),
		attrs:   recorder.Attrs{"grant": id}}
}

// GrantEnded ends the live sessions running under grant id, which
// reached its end, or was revoked, telling each client which.
func (lc *Sessions) GrantEnded(id string, end time.Time, revoked bool) []LiveSession {
	return lc.GrantEndedBy(id, end, revoked, nil)
}

// GrantEndedBy is GrantEnded for a grant whose end another cluster
// member journaled: cause (the leaf that ended it and its log) goes into
// each end leaf.
func (lc *Sessions) GrantEndedBy(id string, end time.Time, revoked bool, cause recorder.Attrs) []LiveSession {
	e := grantEndedAt(id, end)
	if revoked {
		e = grantEnd(id, "was revoked")
	}
	e.attrs.AddMissing(cause)
	return lc.endWhere(func(l *liveSession) bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.grant == id
	}, e)
}

// remove forgets a session that has ended.
func (lc *Sessions) remove(l *liveSession) {
	lc.mu.Lock()
	delete(lc.live, l)
	lc.mu.Unlock()
	l.mu.Lock()
	l.stopped = true
	for _, t := range l.timers {
		t.Stop()
	}
	l.mu.Unlock()
	l.cancel(nil)
}

// setID records the journal session ID of a session that started.
func (l *liveSession) setID(id string) {
	l.mu.Lock()
	l.id = id
	l.mu.Unlock()
}

// List describes the started live sessions, oldest first.
func (lc *Sessions) List() []LiveSession {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var out []LiveSession
	for l := range lc.live {
		if d := l.describe(); d.ID != "" {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b LiveSession) int { return a.Started.Compare(b.Started) })
	return out
}

// endWhere ends every live session for which match is true, with e, and
// returns them.
func (lc *Sessions) endWhere(match func(*liveSession) bool, e *sessionEnd) []LiveSession {
	lc.mu.Lock()
	var hit []*liveSession
	for l := range lc.live {
		if match(l) {
			hit = append(hit, l)
		}
	}
	lc.mu.Unlock()
	out := make([]LiveSession, 0, len(hit))
	for _, l := range hit {
		l.end(e)
		out = append(out, l.describe())
	}
	return out
}

// Kill ends the live session whose journal ID is id, or starts with it
// (a prefix must name one session only). The reason is kept, and told
// to the client, masked with m; the end leaf names the operator with
// operator's attributes.
func (lc *Sessions) Kill(id, reason, by string, operator recorder.Attrs, m *mask.Masker) (LiveSession, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	if id == "" {
		return LiveSession{}, ErrNoLiveSession
	}
	lc.mu.Lock()
	var hit []*liveSession
	for l := range lc.live {
		l.mu.Lock()
		if l.id != "" && strings.HasPrefix(l.id, id) {
			hit = append(hit, l)
		}
		l.mu.Unlock()
	}
	lc.mu.Unlock()
	switch len(hit) {
	case 0:
		return LiveSession{}, ErrNoLiveSession
	case 1:
	default:
		return LiveSession{}, fmt.Errorf("%d live sessions have IDs starting with %q: give more of the ID", len(hit), id)
	}
	msg := "the session was ended by an operator"
	attrs := maps.Clone(operator)
	if attrs == nil {
		attrs = recorder.Attrs{}
	}
	if by != "" {
		attrs["killed-by"] = by
	}
	if reason, masked := KillReason(m, reason); reason != "" {
		attrs["kill-reason"] = reason
		if masked != "" {
			attrs[mask.MaskedKey] = masked
		}
		msg += ": " + reason
	}
	hit[0].end(&sessionEnd{reason: events.EndKilled, message: msg, attrs: attrs})
	return hit[0].describe(), nil
}

// Revoked ends the live sessions of certificates res revoked.
func (lc *Sessions) Revoked(res *certauth.RevokeResult) []LiveSession {
	e := &sessionEnd{reason: events.EndRevoked, message: "your certificate was revoked, so the session was ended",
		attrs: recorder.Attrs{"revocation.leaf": fmt.Sprint(res.Leaf)}}
	if res.Log != "" {
		// Another cluster member's revocation: its leaf is in that log.
		e.attrs["revocation.log"] = res.Log
	}
	return lc.endWhere(func(l *liveSession) bool {
		return slices.Contains(res.Serials, l.info.serial) || res.Identity != "" && l.info.identity == res.Identity
	}, e)
}

// Shutdown refuses new sessions and ends the live ones, and returns
// how many it ended.
func (lc *Sessions) Shutdown() int {
	lc.mu.Lock()
	lc.closing = true
	lc.mu.Unlock()
	return len(lc.endWhere(func(*liveSession) bool { return true },
		&sessionEnd{reason: events.EndShutdown, message: "the bastion is shutting down, so the session was ended"}))
}

// Count is the number of live sessions, started or not.
func (lc *Sessions) Count() int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return len(lc.live)
}

// KillReason is an operator's reason for a kill as it is kept, told to
// the client and logged (by the member holding the session, and by the
// one a kill request reached): on one line, its values masked with m (before
// it is cut to 200 characters, so that a value across the cut is masked
// too), and the "masked" attribute that says what was.
func KillReason(m *mask.Masker, reason string) (string, string) {
	a := map[string]string{"kill-reason": termtext.OneLine(reason)}
	masked := m.Fields(a, "kill-reason")
	return termtext.CapRunes(a["kill-reason"], 200), masked
}
