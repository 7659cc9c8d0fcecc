package bastion

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"

	"github.com/bastionhq/bastion/bastion/console"
	"github.com/bastionhq/bastion/bastion/front"
	"github.com/bastionhq/bastion/bastion/tick"
	"github.com/bastionhq/bastion/policy/grants"
	"github.com/bastionhq/bastion/policy/webhook"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/cluster"
	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
)

// AlarmClusterFollow is raised while another member's log cannot be read
// or does not verify with its key: nothing of it is applied here (its
// revocations, grants and kill requests included) until it verifies
// again.
const AlarmClusterFollow = "cluster.follow_failed"

// Cluster is what makes serve a member of a cluster: several instances on
// one PostgreSQL journal acting as one bastion, each appending its own
// log with its own key. The cluster file lists every member's ID and
// verifier key; it is read once, at start (a change takes a restart).
type Cluster struct {
	// Path is the cluster file read.
	Path    string
	Members *cluster.Members
	// Self is this instance, found by its journal key.
	Self cluster.Member
	// DSN is the database every member's log is in.
	DSN string
}

// IndexBase is what this member adds to a leaf's index for serials and
// grant numbers: its ID << 48.
func (c *Cluster) IndexBase() uint64 {
	if c == nil {
		return 0
	}
	b, _ := recorder.NumberOf(c.Self.ID, 0)
	return b
}

// LoadCluster finds the cluster file of cfg (its cluster attribute, else
// home's cluster.pub when that file exists) and this instance in it, by
// own, the home's journal verifier key. It returns nil without a cluster
// file. A cluster file named explicitly with a journal that is not in
// PostgreSQL is an error; home's cluster.pub beside a SQLite journal is
// ignored (a home made by "ca init --join" keeps one). A journal key the
// file does not list, or lists with another key, is an error: serve does
// not start.
func LoadCluster(cfg *Config, home string, own *recorder.VerifierKey) (*Cluster, error) {
	path, explicit := cfg.Cluster, cfg.Cluster != ""
	if !explicit {
		path = cluster.File
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(home, path)
	}
	if !explicit {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	if !postgres.IsLocation(cfg.Journal) {
		if explicit {
			return nil, fmt.Errorf("cluster = %q: the members of a cluster share a PostgreSQL journal, and this journal is the SQLite file %s", cfg.Cluster, cfg.Journal)
		}
		return nil, nil
	}
	ms, err := cluster.Load(path)
	if err != nil {
		return nil, err
	}
	self, err := ms.Self(own)
	if err != nil {
		return nil, fmt.Errorf("cluster file %s: %w", path, err)
	}
	return &Cluster{Path: path, Members: ms, Self: self, DSN: cfg.Journal}, nil
}

// clusterAttrs are the serve.started attributes that say what this
// member believed: its ID, the cluster file and every member's key.
func (c *Cluster) startedAttrs(a recorder.Attrs) {
	a["cluster.file"] = c.Path
	a["cluster.member"] = strconv.Itoa(int(c.Self.ID))
	for _, m := range c.Members.All() {
		a["cluster.member."+strconv.Itoa(int(m.ID))] = m.Key.Text
	}
}

// killWait is how long "sessions kill" of a session another member holds
// waits for that member's end leaf.
const killWait = 5 * time.Second

// pollInterval is how often the other members' logs are read when no
// notification woke the follower.
const pollInterval = time.Second

// roundGap is the least time between two rounds of the follower's own
// loop (catch-ups aside).
const roundGap = 20 * time.Millisecond

// Catch-up rounds (reads of the other logs made for a serial or a grant
// not known) at most, per second and in a burst; catchUpWait is how long
// a caller (an SSH authentication) waits for one, the wait for a round
// under way included.
const (
	catchUpRate  = 10
	catchUpBurst = 10
	catchUpWait  = 2 * time.Second
)

// roundTimeout bounds a round: its wait for the round under way and its
// reads of the database. A round that runs out reads nothing more; the
// next starts again where it stopped.
const roundTimeout = 5 * time.Second

// openRetry is how often a member's log not in the database yet is looked
// for; missingGrace how long after this member started it may be missing
// before the follow alarm is raised (a member that never started, or a
// wrong key in the cluster file, which names another log).
const (
	openRetry    = 5 * time.Second
	missingGrace = 5 * time.Minute
)

// killKeep is how long the outcome of a kill request of this member's is
// kept for "sessions kill" to find (it waits killWait at most).
const killKeep = 2 * killWait

// followedLog is one other member's log as this member follows it.
type followedLog struct {
	f     *cluster.Follower
	store storage.Store
	base  uint64 // the member's IndexBase
	// nextOpen is when the log, not in the database yet (store nil), is
	// looked for again, or before if notified: a notification named it.
	nextOpen time.Time
	notified atomic.Bool
	// queue holds the leaves verified and not yet applied; deferred the
	// grant events set aside (see apply).
	queue    []cluster.Followed
	deferred []cluster.Followed
	// readTo is the size of the log read and verified; appliedTo that of
	// the part applied (its leaves applied, or set aside).
	readTo, appliedTo int64
	// failing is the error of the last read ("" when it verified), for
	// the alarm: raised on the first failure, cleared once it verifies.
	failing string
}

// remoteSession is a session another member's log shows started and not
// ended.
type remoteSession struct {
	member cluster.Member
	start  *recorder.Leaf
	index  int64
}

// killOutcome is the end leaf a member journaled for a kill request of
// this member's.
type killOutcome struct {
	member cluster.Member
	index  int64
	end    *recorder.Leaf
	seen   time.Time // when it was applied here: kept killKeep
}

// clusterState follows the other members' logs and applies them here.
type clusterState struct {
	c   *Cluster
	s   *Server
	log hclog.Logger

	// round serializes the reads and applications of the logs (a
	// Follower is not safe for concurrent use): a round holds its one
	// token (lockRound), which guards logs and closed. A channel, so that
	// a wait for it ends with the caller's deadline.
	round   chan struct{}
	logs    []*followedLog
	byName  map[string]*followedLog // the same, by log name; not changed after openCluster
	closed  bool                    // the stores are closed (closeStores)
	started time.Time               // when this member started following

	wake chan struct{} // capacity 1: a notification, or a caller wants a round
	// catchUps bounds the rounds made for serials and grants not known.
	catchUps *rate.Limiter

	mu     sync.Mutex
	open   map[string]remoteSession // guarded by mu: by session ID
	kills  map[int64]killOutcome    // guarded by mu: by the request's leaf
	killed chan struct{}            // guarded by mu: closed and replaced when kills grows
}

// openCluster opens a read-only store on every other member's log and
// reads them up to date (their certificates, revocations and grants
// applied). A log that cannot be read or does not verify is an alarm, not
// an error: serve runs, and applies it once it verifies.
func (s *Server) openCluster(ctx context.Context, c *Cluster) error {
	cs := &clusterState{c: c, s: s, log: s.log.Named("cluster"), wake: make(chan struct{}, 1), catchUps: rate.NewLimiter(catchUpRate, catchUpBurst),
		round: make(chan struct{}, 1), started: time.Now(), byName: map[string]*followedLog{},
		open: map[string]remoteSession{}, kills: map[int64]killOutcome{}, killed: make(chan struct{})}
	for _, m := range c.Members.All() {
		if m.ID == c.Self.ID {
			continue
		}
		var st storage.Store
		pst, err := postgres.Open(ctx, c.DSN, m.Name(), postgres.Options{ReadOnly: true, MaxReaders: 2})
		switch {
		case errors.Is(err, postgres.ErrNoLog):
			// A member that never started has no log yet.
			err = nil
		case err == nil:
			st = pst
		}
		if err != nil {
			cs.closeStores()
			return fmt.Errorf("cluster: open member %d's log (%s): %w", m.ID, m.Name(), err)
		}
		base, _ := recorder.NumberOf(m.ID, 0)
		// Without a store yet, the follower is replaced once the
		// member's log exists (read).
		fl := &followedLog{store: st, base: base, f: newFollower(m, st)}
		if st == nil {
			fl.nextOpen = time.Now().Add(openRetry)
		}
		cs.logs = append(cs.logs, fl)
		cs.byName[m.Name()] = fl
	}
	s.cluster = cs
	s.registry.SetOnMiss(c.Self.ID, cs.catchUp)
	cs.followRound(ctx, false)
	for _, fl := range cs.logs {
		cs.log.Info("following a member's log", "member", fl.f.Member.ID, "log", fl.f.Member.Name(), "leaves", fl.f.Size())
	}
	return nil
}

// newFollower follows m's log, keeping the leaves applyLeaf applies.
func newFollower(m cluster.Member, st storage.Store) *cluster.Follower {
	f := cluster.NewFollower(m, st)
	f.Keep = applied
	return f
}

// applied selects the leaves of another member's log that applyLeaf
// applies.
func applied(l *recorder.Leaf) bool {
	switch l.Type {
	case recorder.LeafSessionStart, recorder.LeafSessionEnd:
		return true
	case recorder.LeafEvent:
		return l.Event == events.CertIssued || l.Event == events.CertRevoked || l.Event == events.SessionKillRequested || grants.GrantEvents(l.Event)
	}
	return false
}

// lockRound takes the round, waiting no longer than ctx allows, and
// reports whether it did.
func (cs *clusterState) lockRound(ctx context.Context) bool {
	select {
	case cs.round <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (cs *clusterState) unlockRound() { <-cs.round }

// closeStores closes the logs' stores: no round reads them after. It
// waits for the round under way, which roundTimeout bounds.
func (cs *clusterState) closeStores() {
	cs.round <- struct{}{}
	defer cs.unlockRound()
	cs.closed = true
	for _, fl := range cs.logs {
		if fl.store != nil {
			fl.store.Close()
			fl.store = nil
		}
	}
}

// run follows the logs until ctx is done: at each notification of a
// commit to another member's log, and every pollInterval besides.
func (cs *clusterState) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		postgres.Listen(ctx, cs.c.DSN, func(name string) {
			if fl := cs.byName[name]; fl != nil {
				fl.notified.Store(true)
				cs.poke()
			}
		}, func(err error) {
			cs.log.Warn("notifications of the other members' commits are not received; polling", "error", err)
		})
	})
	tick.Every(ctx, pollInterval, cs.wake, func() {
		cs.followRound(ctx, false)
		// A busy member notifies at every commit: rounds are at least
		// roundGap apart, each reading all that came meanwhile.
		select {
		case <-ctx.Done():
		case <-time.After(roundGap):
		}
	})
	wg.Wait()
	cs.closeStores()
}

func (cs *clusterState) poke() {
	select {
	case cs.wake <- struct{}{}:
	default:
	}
}

// catchUp reads the other members' logs now, for a serial the registry
// does not know (Registry.SetOnMiss): a certificate issued through
// another member a moment ago. Only a serial of another member listed in
// the cluster file makes it read, at most catchUpRate times a second (the
// front door checks the certificate's signature first, but whoever holds
// a certificate chooses when to present it): past the limit, or after
// catchUpWait, the lookup answers from what the last round read.
func (cs *clusterState) catchUp(serial uint64) {
	if m, _ := recorder.SplitNumber(serial); m == cs.c.Self.ID {
		return
	} else if _, ok := cs.c.Members.ByID(m); !ok {
		return
	}
	if !cs.catchUps.Allow() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), catchUpWait)
	defer cancel()
	cs.followRound(ctx, true)
}

// catchUpGrant is catchUp for a grant ID the grants do not know
// (GrantsOptions.CatchUp), when its number names another member.
func (cs *clusterState) catchUpGrant(id string) {
	if n, ok := grants.GrantNumber(id); ok {
		cs.catchUp(n)
	}
}

// followRound reads every other member's log and applies what verified,
// within roundTimeout (and ctx). A catch-up's round that runs out of time
// (its caller's) does not count as a failure to read a log: only the
// follower's own rounds raise the alarm.
func (cs *clusterState) followRound(parent context.Context, catchUp bool) {
	ctx, cancel := context.WithTimeout(parent, roundTimeout)
	defer cancel()
	// quiet says a read that failed was cut short by the caller (a
	// catch-up's wait, or the end of serve): no failure of the log's.
	quiet := func() bool { return parent.Err() != nil || catchUp && ctx.Err() != nil }
	if !cs.lockRound(ctx) {
		return
	}
	defer cs.unlockRound()
	if cs.closed {
		return
	}
	for _, fl := range cs.logs {
		cs.read(ctx, fl, quiet)
	}
	cs.applyAll()
	cs.prune()
}

// applyAll applies what the logs' reads queued until no log makes
// progress: an event that names a grant requested in another log waits
// for that log's request.
func (cs *clusterState) applyAll() {
	for progress := true; progress; {
		progress = false
		for _, fl := range cs.logs {
			if cs.apply(fl) {
				progress = true
			}
		}
	}
}

// prune forgets what no caller waits for any longer: the outcomes of kill
// requests older than killKeep, and this member's own events about grants
// whose request can no longer come.
func (cs *clusterState) prune() {
	cs.mu.Lock()
	for idx, k := range cs.kills {
		if time.Since(k.seen) > killKeep {
			delete(cs.kills, idx)
		}
	}
	cs.mu.Unlock()
	if cs.s.grants != nil {
		cs.s.grants.PassOverOrphans(cs.requestGone)
	}
}

// read appends the leaves fl's log gained, once they verify, to its
// queue.
func (cs *clusterState) read(ctx context.Context, fl *followedLog, quiet func() bool) {
	m := fl.f.Member
	if fl.store == nil {
		// Looked for every openRetry, not at each round (each look is a
		// connection to the database).
		if !fl.notified.Swap(false) && time.Now().Before(fl.nextOpen) {
			return
		}
		fl.nextOpen = time.Now().Add(openRetry)
		st, err := postgres.Open(ctx, cs.c.DSN, m.Name(), postgres.Options{ReadOnly: true, MaxReaders: 2})
		switch {
		case errors.Is(err, postgres.ErrNoLog):
			if time.Since(cs.started) > missingGrace {
				cs.failed(fl, fmt.Errorf("member %d (%s) has no log in the database %s after this member started: it never started, or the cluster file gives it a wrong key", m.ID, m.Name(), missingGrace),
					"is not in the database")
			}
			return
		case err != nil:
			if !quiet() {
				cs.failed(fl, err, "cannot be read")
			}
			return
		}
		fl.store, fl.f = st, newFollower(m, st)
	}
	got, err := fl.f.Next(ctx)
	if err != nil {
		what := "cannot be read"
		if errors.Is(err, cluster.ErrNotVerified) {
			what = "does not verify with its key in the cluster file"
		} else if quiet() {
			return
		}
		cs.failed(fl, err, what)
		return
	}
	if fl.failing != "" {
		fl.failing = ""
		cs.log.Info("a member's log verifies again", "member", m.ID, "log", m.Name(), "leaves", fl.f.Size())
		if !cs.anyFailing() {
			cs.s.metrics.alarm(AlarmClusterFollow, false)
		}
		postAlert(cs.s.alerts, AlarmClusterFollow, webhook.AlertCleared, fmt.Sprintf("bastion: member %d's log (%s) verifies again", m.ID, m.Name()),
			map[string]string{"member": strconv.Itoa(int(m.ID)), "log": m.Name()})
	}
	fl.queue = append(fl.queue, got...)
	fl.readTo = fl.f.Size()
}

// failed logs that fl's log cannot be followed (what says why, err in
// full) and raises the alarm, once for each new error.
func (cs *clusterState) failed(fl *followedLog, err error, what string) {
	m := fl.f.Member
	if fl.failing == err.Error() {
		return
	}
	cs.log.Error("a member's log "+what+": nothing more of it is applied here (its revocations, grants and kill requests included) until it does", "member", m.ID, "log", m.Name(), "error", err)
	if fl.failing == "" {
		cs.s.metrics.alarm(AlarmClusterFollow, true)
		postAlert(cs.s.alerts, AlarmClusterFollow, webhook.AlertRaised, fmt.Sprintf("bastion: member %d's log (%s) %s: %v", m.ID, m.Name(), what, err),
			map[string]string{"member": strconv.Itoa(int(m.ID)), "log": m.Name()})
	}
	fl.failing = err.Error()
}

func (cs *clusterState) anyFailing() bool {
	for _, fl := range cs.logs {
		if fl.failing != "" {
			return true
		}
	}
	return false
}

// apply applies fl's queued leaves in order, and reports whether it
// applied any. A grant event that names a grant whose request is in a
// log not applied that far (ErrUnknownGrant) is set aside, with the later
// events of the same grant, and tried again at each round; the log's
// other leaves go on. It is passed over (and logged) only once the
// request can no longer come (requestGone): a grant's end or revocation
// is never dropped while the log its number names may still request it.
func (cs *clusterState) apply(fl *followedLog) bool {
	progress := false
	var still []cluster.Followed
	waiting := map[string]bool{}
	// unknown reports whether e must wait for its grant's request.
	unknown := func(e cluster.Followed, err error) bool {
		if !errors.Is(err, grants.ErrUnknownGrant) {
			return false
		}
		why := "its ID is not a grant number"
		if n, ok := grants.GrantNumber(e.Leaf.Attrs["grant"]); ok {
			why = cs.requestGone(n)
		}
		if why == "" {
			return true
		}
		cs.log.Error("a member's grant event names a grant no member's log requests: passed over", "member", fl.f.Member.ID, "leaf", e.Index, "event", e.Leaf.Event, "why", why)
		return false
	}
	for _, e := range fl.deferred {
		id := e.Leaf.Attrs["grant"]
		if !waiting[id] && !unknown(e, cs.applyLeaf(fl, e.Index, e.Leaf)) {
			progress = true
			continue
		}
		waiting[id] = true
		still = append(still, e)
	}
	fl.deferred = still
	for _, e := range fl.queue {
		progress = true
		id := e.Leaf.Attrs["grant"]
		if e.Leaf.Type == recorder.LeafEvent && id != "" && waiting[id] && grants.GrantEvents(e.Leaf.Event) {
			fl.deferred = append(fl.deferred, e)
			continue
		}
		if unknown(e, cs.applyLeaf(fl, e.Index, e.Leaf)) {
			waiting[id] = true
			fl.deferred = append(fl.deferred, e)
		}
	}
	fl.queue = nil
	// A request is never set aside: every request up to readTo is in.
	fl.appliedTo = fl.readTo
	return progress
}

// requestGone says why the request of grant number n can no longer come,
// or "" while it may: n names its member and the leaf of the request
// (recorder.SplitNumber). It can no longer come once that member's log is
// applied here past that leaf, or when n names this member (whose own
// log is all read at start) or no member of the cluster.
func (cs *clusterState) requestGone(n uint64) string {
	id, leaf := recorder.SplitNumber(n)
	if id == cs.c.Self.ID {
		return fmt.Sprintf("its number names this member's leaf %d, which is not its request", leaf)
	}
	for _, fl := range cs.logs {
		if fl.f.Member.ID == id {
			if fl.appliedTo > leaf {
				return fmt.Sprintf("member %d's log, applied here to leaf %d, requests no such grant at leaf %d", id, fl.appliedTo-1, leaf)
			}
			return ""
		}
	}
	return fmt.Sprintf("its number names member %d, not in the cluster file", id)
}

// applyLeaf makes leaf idx of another member's log take effect here. Only
// ErrUnknownGrant is returned: what cannot be applied otherwise is logged
// and passed over.
func (cs *clusterState) applyLeaf(fl *followedLog, idx int64, l *recorder.Leaf) error {
	s, m := cs.s, fl.f.Member
	switch l.Type {
	case recorder.LeafSessionStart:
		cs.mu.Lock()
		cs.open[uuid.UUID(l.Session).String()] = remoteSession{member: m, start: l, index: idx}
		cs.mu.Unlock()
		return nil
	case recorder.LeafSessionEnd:
		cs.mu.Lock()
		delete(cs.open, uuid.UUID(l.Session).String())
		if l.Attrs["kill.log"] == cs.c.Self.Name() {
			if req, err := strconv.ParseInt(l.Attrs["kill.leaf"], 10, 64); err == nil {
				cs.kills[req] = killOutcome{member: m, index: idx, end: l, seen: time.Now()}
				close(cs.killed)
				cs.killed = make(chan struct{})
			}
		}
		cs.mu.Unlock()
		return nil
	case recorder.LeafEvent:
	default:
		return nil
	}
	switch name := l.Event; {
	case name == events.CertIssued || name == events.CertRevoked:
		res, err := s.registry.ApplyForeign(m.ID, m.Name(), idx, l, s.now())
		if err != nil {
			cs.log.Error("a member's certificate event is not applied", "member", m.ID, "leaf", idx, "error", err)
			return nil
		}
		if res == nil {
			return nil
		}
		cs.log.Info("certificates revoked through another member", "member", m.ID, "leaf", idx, "serials", fmt.Sprint(res.Serials), "identity", res.Identity)
		if s.front != nil {
			for _, ls := range s.life.Revoked(res) {
				s.log.Info("ssh session ended: its certificate was revoked through another member", "session", ls.ID, "serial", ls.Serial, "member", m.ID, "leaf", idx)
			}
		}
		if err := s.writeKRL(); err != nil {
			cs.log.Error("rewrite the KRL", "error", err)
		}
	case grants.GrantEvents(name):
		if s.grants == nil {
			return nil
		}
		a, err := s.grants.ApplyForeign(fl.base, idx, name, l.Attrs)
		if err != nil {
			return err
		}
		if a.Ended && s.front != nil {
			cause := recorder.Attrs{"grant.log": m.Name(), "grant.leaf": strconv.FormatInt(idx, 10)}
			for _, ls := range s.life.GrantEndedBy(a.Grant.ID, a.Grant.End, a.Why == grants.GrantRevokedWhy, cause) {
				s.log.Info("ssh session ended: its grant "+a.Why+" through another member", "session", ls.ID, "grant", a.Grant.ID, "member", m.ID, "leaf", idx)
			}
		}
	case name == events.SessionKillRequested:
		cs.killRequested(m, idx, l.Attrs)
	}
	return nil
}

// killRequested ends the session a member's kill request names, if this
// member holds it; its end leaf names the request.
func (cs *clusterState) killRequested(m cluster.Member, idx int64, a recorder.Attrs) {
	s := cs.s
	if s.front == nil || a["member"] != cs.c.Self.Name() || a["session"] == "" {
		return
	}
	attrs := recorder.Attrs{"kill.log": m.Name(), "kill.leaf": strconv.FormatInt(idx, 10)}
	for k, v := range a {
		if strings.HasPrefix(k, "operator") {
			attrs[k] = v
		}
	}
	l, err := s.life.Kill(a["session"], a["reason"], a["by"], attrs, s.textMasker())
	if err != nil {
		cs.log.Warn("a member asked to kill a session this member does not hold live", "member", m.ID, "leaf", idx, "session", a["session"], "error", err)
		return
	}
	s.log.Info("ssh session killed at another member's request", "session", l.ID, "identity", l.Identity, "member", m.ID, "leaf", idx, "by", a["by"])
}

// RemoteKill is the outcome of "sessions kill" of a session another
// member holds.
type RemoteKill struct {
	// Member is the log of the member that holds the session.
	Member string `json:"member"`
	// RequestLeaf is the kill request's leaf in this member's log;
	// EndLeaf the session's end leaf in the holder's.
	RequestLeaf int64 `json:"request_leaf"`
	EndLeaf     int64 `json:"end_leaf"`
	// Reason is how the session ended, as its end leaf says.
	Reason string `json:"end_reason"`
}

// killRemote journals a request to kill the session id (or the one whose
// ID starts with id) that another member's log shows open, and waits for
// that member's end leaf. It returns ErrNoLiveSession when no member's
// log shows such a session open.
func (cs *clusterState) killRemote(ctx context.Context, id, reason, by string, operator recorder.Attrs) (LiveSessionResult, error) {
	cs.followRound(ctx, false)
	id = strings.ToLower(strings.TrimSpace(id))
	cs.mu.Lock()
	var hits []string
	for sid := range cs.open {
		if id != "" && strings.HasPrefix(sid, id) {
			hits = append(hits, sid)
		}
	}
	var rs remoteSession
	if len(hits) == 1 {
		rs = cs.open[hits[0]]
	}
	cs.mu.Unlock()
	switch {
	case len(hits) == 0:
		return LiveSessionResult{}, ErrNoLiveSession
	case len(hits) > 1:
		return LiveSessionResult{}, fmt.Errorf("%d live sessions of other members have IDs starting with %q: give more of the ID", len(hits), id)
	}
	m := cs.s.textMasker()
	kept, masked := front.KillReason(m, reason)
	a := recorder.Attrs{"session": hits[0], "member": rs.member.Name(), "member.id": strconv.Itoa(int(rs.member.ID))}
	if kept != "" {
		a["reason"] = kept
		if masked != "" {
			a["masked"] = masked
		}
	}
	if by != "" {
		a["by"] = by
	}
	a.AddMissing(operator)
	idx, err := cs.s.journal.AppendEvent(context.WithoutCancel(ctx), events.SessionKillRequested, a)
	if err != nil {
		return LiveSessionResult{}, fmt.Errorf("journal the kill request (nothing was asked): %w", err)
	}
	cs.log.Info("asked another member to kill a session", "session", hits[0], "member", rs.member.ID, "leaf", idx, "by", by)
	out := LiveSessionResult{LiveSession: describeStart(hits[0], rs.start),
		Remote: &RemoteKill{Member: rs.member.Name(), RequestLeaf: idx, EndLeaf: -1}}
	deadline := time.NewTimer(killWait)
	defer deadline.Stop()
	for {
		cs.poke()
		cs.mu.Lock()
		k, done := cs.kills[idx]
		delete(cs.kills, idx)
		wait := cs.killed
		cs.mu.Unlock()
		if done {
			out.Remote.EndLeaf, out.Remote.Reason = k.index, k.end.Attrs["reason"]
			return out, nil
		}
		select {
		case <-wait:
		case <-deadline.C:
			return out, fmt.Errorf("asked member %d (%s) to kill session %s (this member's leaf %d), but its log shows no end of the session after %s: the member may be down (its log still shows the session open)",
				rs.member.ID, rs.member.Name(), hits[0], idx, killWait)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// remoteLive lists the sessions the other members' logs show open, as
// their start leaves describe them: member, who, where, since, the rule
// or grant; their bytes are not known here (-1).
func (cs *clusterState) remoteLive() []front.LiveSession {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := make([]front.LiveSession, 0, len(cs.open))
	for id, rs := range cs.open {
		l := describeStart(id, rs.start)
		l.Rule, l.Grant, l.Bytes, l.Member = rs.start.Attrs["policy.rule"], rs.start.Attrs["policy.grant"], -1, rs.member.ID
		out = append(out, l)
	}
	return out
}

// memberLog is the log of the member that records the session id, which
// another member's log shows open: its store (read-only; closed when
// serve stops) and that member's key, for a reader of the session here.
func (cs *clusterState) memberLog(ctx context.Context, id string) (console.MemberLog, bool) {
	cs.mu.Lock()
	rs, ok := cs.open[id]
	cs.mu.Unlock()
	if !ok {
		return console.MemberLog{}, false
	}
	fl := cs.byName[rs.member.Name()]
	if fl == nil || !cs.lockRound(ctx) {
		return console.MemberLog{}, false
	}
	defer cs.unlockRound()
	if cs.closed || fl.store == nil {
		return console.MemberLog{}, false
	}
	return console.MemberLog{Store: fl.store, Verifier: rs.member.Key.Verifier, Member: rs.member.ID, Name: rs.member.Name()}, true
}

// describeStart describes a session from its start leaf in another
// member's log.
func describeStart(id string, l *recorder.Leaf) front.LiveSession {
	out := front.LiveSession{ID: id, Identity: l.Attrs["identity"], Login: l.Attrs["login"], Target: l.Attrs["target"], Client: l.Attrs["client"],
		Started: time.Unix(0, l.WallNS).UTC()}
	if n, err := strconv.ParseUint(l.Attrs["serial"], 10, 64); err == nil {
		out.Serial = n
	}
	return out
}

// LiveSessionResult is the answer to a kill: the session ended and, when
// another member held it, what that member did.
type LiveSessionResult struct {
	front.LiveSession
	Remote *RemoteKill `json:"remote,omitempty"`
}
