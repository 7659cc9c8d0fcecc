package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
)

// FormatVersion names the journal format this package writes and verifies.
const FormatVersion = "bastion-journal-v1"

// Meta keys the journal stores at creation.
const (
	MetaFormat   = "format"
	MetaOrigin   = "origin"
	MetaKey      = "verifier_key"
	MetaCreated  = "created_ns"
	MetaHostname = "hostname"
)

// Errors callers branch on.
var (
	// ErrClosed is returned by appends after the journal or session closed.
	ErrClosed = errors.New("recorder: journal closed")
	// ErrSessionEnded is returned by Append after End.
	ErrSessionEnded = errors.New("recorder: session ended")
	// ErrJournalDamaged means the journal's stored state does not match its
	// latest signed checkpoint: it must be verified, never extended.
	ErrJournalDamaged = errors.New("recorder: journal does not match its signed checkpoint")
)

// Options configure [Open].
type Options struct {
	// Key signs checkpoints. Required: a journal is never unsigned.
	Key *JournalKey
	// Logger receives the writer's log lines. If nil, nothing is logged.
	Logger hclog.Logger
	// Now is the clock: wall times, and frames' offsets from their
	// session's start (monotonic with time.Now). If nil, time.Now is used.
	Now func() time.Time
	// PublishInterval is how often a checkpoint is kept while the log
	// grows (every commit is signed; this is how often one is kept
	// forever). Zero means one second.
	PublishInterval time.Duration
	// MaxPendingFrames and MaxPendingBytes bound each session's pipeline
	// of uncommitted frames; Append blocks beyond them. Zero means 4096
	// frames and 16 MiB.
	MaxPendingFrames int
	MaxPendingBytes  int
	// Hostname is recorded in a new journal's metadata.
	Hostname string
	// IndexBase is added to the leaf index in the attribute
	// AppendIndexedEvent fills: a cluster member's ID << 48 (see
	// recorder/cluster), so that serials and grant numbers are unique
	// across the members' logs. Zero (a standalone bastion) leaves the
	// leaf index.
	IndexBase uint64
	// Signed, if set, remembers outside the journal the latest checkpoint
	// the writer kept, so that a journal rolled back behind it (a copy of
	// an older file put back, checkpoints and all) is refused rather than
	// extended: extending it would have the key sign a second history. If
	// nil, only the journal's own checkpoints are checked.
	Signed SignedState
	// OnCommit, if not nil, is called after each batch is durably
	// committed, before the appends in it are answered, with the time
	// from the batch's oldest append to its commit (wall-clock
	// monotonic time, not Now) and the number of appends in it. It runs
	// on the writer's committer goroutine: it must return at once.
	OnCommit func(d time.Duration, appends int)
	// OnPublish, if not nil, is called with each checkpoint the writer
	// keeps (a published row), once it is durably committed, and by Open
	// with the largest one the journal already holds: serve pushes them
	// to witnesses. It runs on the writer's committer goroutine (or
	// Open's): it must return at once. note is never written again: it
	// may be kept.
	OnPublish func(size int64, note []byte)
}

// SignedState stores the latest kept checkpoint note of one journal
// somewhere its writer can reach but an attacker on the journal's file
// cannot (next to the key). Load returns nil, nil when there is none.
type SignedState interface {
	Load() ([]byte, error)
	Save(note []byte) error
}

// Journal appends sessions and events to a store, in one writer goroutine
// doing group commit: whatever all sessions appended while the previous
// transaction committed goes into the next one. Every commit carries a
// segment leaf per session it touched, extends the Merkle tree and stores a
// newly signed head checkpoint, so everything committed is always covered by
// a signature, even after a crash.
type Journal struct {
	st       storage.Store
	key      *JournalKey
	origin   string
	base     uint64 // Options.IndexBase
	log      hclog.Logger
	now      func() time.Time
	interval time.Duration
	maxFr    int
	maxBytes int

	wake chan struct{} // capacity 1: the writer has work
	// queuedBytes counts the frame payload bytes appended since the
	// writer last took the queue (coalesced chunks too, which do not
	// wake it): how much a batch built now would carry.
	queuedBytes atomic.Int64
	stop        chan struct{} // closed by Close
	done        chan struct{} // closed when the writer goroutine returns

	mu       sync.Mutex
	queue    []op                  // guarded by mu; taken whole by the writer
	sessions map[*Session]struct{} // guarded by mu; live sessions, failed together
	err      error                 // guarded by mu; sticky: once set, nothing more is written
	closed   bool                  // guarded by mu
	// queuedAt (guarded by mu) is when the oldest op in queue was
	// enqueued, zero when queue is empty; inflight (guarded by mu) holds
	// the same for each batch the writer took and has not yet committed
	// or failed, oldest first. See OldestPending.
	queuedAt  time.Time
	inflight  []time.Time
	onCommit  func(d time.Duration, appends int)
	onPublish func(size int64, note []byte)

	// Owned by the writer goroutine (and Open before it starts).
	treeSize    int64
	hashCount   int64
	nextSession int64
	published   int64 // largest kept checkpoint size
	publishedAt time.Time
	head        *storage.Checkpoint
	hashes      map[int64]tlog.Hash // new and frontier stored hashes

	signed SignedState // nil: none; Save is called by the committer

	abandoned int // sessions Open ended for a previous writer; set before Open returns
}

type opKind uint8

const (
	opFrame opKind = iota
	opStart
	opEnd
	opEvent
	opPublish // keep a checkpoint of the whole log now
	opRenote  // replace a published checkpoint's note (cosignatures added)
)

type op struct {
	kind  opKind
	sess  *Session
	frame *pendingFrame // opFrame
	leaf  *Leaf         // opStart, opEnd, opEvent
	// done receives the commit's result for every op but opFrame, whose
	// result is published through its session.
	done chan error
	// leafIndex is set before done is signalled, for opStart/opEnd/opEvent.
	leafIndex *int64
	// indexAttr, when set on an opEvent, is the attribute the writer sets
	// to the leaf's own index before encoding it.
	indexAttr string
	// renote is an opRenote's checkpoint: its size and the new note.
	renote *storage.Checkpoint
}

// Open starts a journal writer on store, creating the journal if it is
// empty. It refuses a journal whose stored tree does not match its latest
// signed checkpoint or which belongs to another key, and ends sessions a
// previous writer left open (crashed) with an "abandoned" end leaf.
func Open(ctx context.Context, store storage.Store, opts Options) (*Journal, error) {
	if opts.Key == nil {
		return nil, errors.New("recorder: a journal signing key is required")
	}
	j := &Journal{
		st:        store,
		key:       opts.Key,
		origin:    opts.Key.Signer.Name(),
		base:      opts.IndexBase,
		log:       opts.Logger,
		now:       opts.Now,
		interval:  opts.PublishInterval,
		maxFr:     opts.MaxPendingFrames,
		maxBytes:  opts.MaxPendingBytes,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		sessions:  map[*Session]struct{}{},
		hashes:    map[int64]tlog.Hash{},
		signed:    opts.Signed,
		onCommit:  opts.OnCommit,
		onPublish: opts.OnPublish,
	}
	if j.log == nil {
		j.log = hclog.NewNullLogger()
	}
	if j.now == nil {
		j.now = time.Now
	}
	if j.interval <= 0 {
		j.interval = time.Second
	}
	if j.maxFr <= 0 {
		j.maxFr = 4096
	}
	if j.maxBytes <= 0 {
		j.maxBytes = 16 << 20
	}
	st, err := store.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("recorder: read journal state: %w", err)
	}
	if len(st.Meta) == 0 {
		if st.TreeSize != 0 {
			return nil, fmt.Errorf("recorder: journal has %d leaves but no metadata: %w", st.TreeSize, ErrJournalDamaged)
		}
		meta := map[string]string{
			MetaFormat:   FormatVersion,
			MetaOrigin:   j.origin,
			MetaKey:      j.key.VerifierKey,
			MetaCreated:  fmt.Sprint(j.now().UnixNano()),
			MetaHostname: opts.Hostname,
		}
		if err := store.Init(ctx, meta); err != nil {
			return nil, fmt.Errorf("recorder: create journal: %w", err)
		}
		st.Meta = meta
	}
	if f := st.Meta[MetaFormat]; f != FormatVersion {
		return nil, fmt.Errorf("recorder: journal format %q, this bastion writes %q", f, FormatVersion)
	}
	if o := st.Meta[MetaOrigin]; o != j.origin {
		return nil, fmt.Errorf("recorder: journal belongs to log %q but the signing key is for %q", o, j.origin)
	}
	if k := st.Meta[MetaKey]; k != j.key.VerifierKey {
		return nil, fmt.Errorf("recorder: journal was created with key %q, not with this signing key (%q)", k, j.key.VerifierKey)
	}
	j.treeSize, j.hashCount, j.nextSession = st.TreeSize, st.HashCount, st.NextSession
	if j.hashCount != tlog.StoredHashCount(j.treeSize) {
		return nil, fmt.Errorf("recorder: journal has %d tree hashes for %d leaves: %w", j.hashCount, j.treeSize, ErrJournalDamaged)
	}
	j.head = st.Head
	if st.Head == nil && st.TreeSize > 0 {
		return nil, fmt.Errorf("recorder: journal has %d leaves and no signed checkpoint: %w", st.TreeSize, ErrJournalDamaged)
	}
	remembered, err := j.loadSigned()
	if err != nil {
		return nil, err
	}
	open, err := j.rebuild(ctx, st, remembered)
	if err != nil {
		return nil, err
	}
	if p := st.Published; p != nil {
		j.published = p.TreeSize
		j.publishedAt = time.Unix(0, p.CreatedNS)
	}
	if j.signed != nil && remembered == nil && j.head != nil {
		if err := j.signed.Save(j.head.Note); err != nil {
			return nil, fmt.Errorf("recorder: remember the checkpoint: %w", err)
		}
	}
	go j.run()
	if p := st.Published; p != nil && j.onPublish != nil {
		j.onPublish(p.TreeSize, p.Note)
	}
	if err := j.closeAbandoned(ctx, open); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// abandoned is a session a previous writer left open, as the journal's
// signed leaves and chained frames prove it: where it ends, and what it
// recorded.
type abandoned struct {
	num    int64
	id     SessionID
	last   uint64
	head   Hash
	counts byteCounts
}

// rebuild reads back, from the signed leaves and the chained frames alone,
// the state this writer extends: the tree (every leaf hashed again, the
// root compared with the head checkpoint's, and the stored hashes it will
// extend from compared with the recomputed ones) and the sessions left
// open. Nothing the index tables say is taken without a check: a journal
// that does not match is refused, and nothing is signed.
func (j *Journal) rebuild(ctx context.Context, st *storage.State, remembered *Checkpoint) ([]abandoned, error) {
	if st.TreeSize == 0 {
		if remembered != nil && remembered.Size > 0 {
			return nil, fmt.Errorf("recorder: the journal is empty, but the key kept a checkpoint of %d leaves for the journal at this path: it was deleted or replaced: %w", remembered.Size, ErrJournalDamaged)
		}
		// A log without leaves has nothing else either: its first
		// commit would sign beside rows no leaf accounts for.
		if st.Head != nil || st.Published != nil || st.NextSession != 1 {
			return nil, fmt.Errorf("recorder: the journal has no leaves, but checkpoints, sessions or frames: %w", ErrJournalDamaged)
		}
		return nil, nil
	}
	snap, err := j.st.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	opts := ReadLogOptions{Verifier: j.key.Verifier}
	if remembered != nil {
		if remembered.Size > st.TreeSize {
			return nil, fmt.Errorf("recorder: the key last kept a checkpoint of %d leaves, the journal has %d: it was truncated or an older copy was put back: %w", remembered.Size, st.TreeSize, ErrJournalDamaged)
		}
		opts.RootsAt = append(opts.RootsAt, remembered.Size)
	}
	// The largest kept checkpoint decides when the next is kept: trusted
	// as far as its signature and the leaves' root go, so that a row
	// copied from another journal or forged in size is refused.
	var published *Checkpoint
	if p := st.Published; p != nil {
		c, err := OpenCheckpoint(p.Note, j.key.Verifier)
		if err != nil || c.Size != p.TreeSize || c.Size > st.TreeSize || c.Size < 1 {
			return nil, fmt.Errorf("recorder: the largest kept checkpoint (size %d) is not valid for this journal: %w", p.TreeSize, ErrJournalDamaged)
		}
		published = &c
		opts.RootsAt = append(opts.RootsAt, c.Size)
	}
	log, err := ReadLog(ctx, snap, opts)
	if err != nil {
		return nil, fmt.Errorf("recorder: %v: %w", err, ErrJournalDamaged)
	}
	if n := len(log.IndexProblems); n > 0 {
		p := log.IndexProblems[0]
		return nil, fmt.Errorf("recorder: the journal's index does not match its signed leaves (%d finding(s); first, %s: %s): %w", n, p.Where, p.What, ErrJournalDamaged)
	}
	if log.Size() != st.TreeSize {
		return nil, fmt.Errorf("recorder: latest checkpoint covers %d leaves, journal has %d: %w", log.Size(), st.TreeSize, ErrJournalDamaged)
	}
	if remembered != nil && remembered.Size > 0 && log.Roots[remembered.Size] != remembered.Root {
		return nil, fmt.Errorf("recorder: the journal's first %d leaves are not those of the checkpoint the key last kept: it was rewritten or replaced: %w", remembered.Size, ErrJournalDamaged)
	}
	if published != nil && log.Roots[published.Size] != published.Root {
		return nil, fmt.Errorf("recorder: the largest kept checkpoint (size %d) is not a checkpoint of this journal's leaves: %w", published.Size, ErrJournalDamaged)
	}
	// The next leaves are hashed with the stored frontier: it must be the
	// recomputed one.
	idx := make([]int64, 0, len(log.frontier))
	for i := range log.frontier {
		idx = append(idx, i)
	}
	stored, err := j.st.Hashes(ctx, idx)
	if err != nil {
		return nil, fmt.Errorf("recorder: read the tree's stored hashes: %v: %w", err, ErrJournalDamaged)
	}
	for k, i := range idx {
		if h := log.frontier[i]; !bytes.Equal(stored[k], h[:]) {
			return nil, fmt.Errorf("recorder: stored tree hash %d is not the hash of the leaves under it: %w", i, ErrJournalDamaged)
		}
		j.hashes[i] = log.frontier[i]
	}
	var open []abandoned
	for _, s := range log.Sessions {
		if s.End != nil {
			continue
		}
		a, err := checkOpen(ctx, snap, s)
		if err != nil {
			return nil, fmt.Errorf("recorder: session %s, left open by a previous writer: %v: %w", uuid.UUID(s.ID), err, ErrJournalDamaged)
		}
		open = append(open, a)
	}
	return open, nil
}

// checkOpen reads the frames of a session the log leaves open: they must
// be exactly those its segments commit, chained to the head of the last
// one. It counts the bytes its end leaf will carry.
func checkOpen(ctx context.Context, snap storage.Snapshot, s *LogSession) (abandoned, error) {
	a := abandoned{num: s.Num, id: s.ID, last: s.Frames, head: s.Head}
	if last, err := snap.LastSeq(ctx, s.Num); err != nil {
		return a, err
	} else if uint64(last) != s.Frames {
		return a, fmt.Errorf("the journal holds frames up to %d, its segments commit %d", last, s.Frames)
	}
	chain := NewChainer(ChainSeed(s.ID))
	var expect uint64 = 1
	err := snap.Frames(ctx, s.Num, func(f *storage.Frame) error {
		if uint64(f.Seq) != expect {
			return fmt.Errorf("frame %d is missing", expect)
		}
		expect++
		chain.Add(&Frame{Session: s.ID, Seq: uint64(f.Seq), Kind: Kind(f.Kind), Channel: f.Channel, MonoNS: f.MonoNS, WallNS: f.WallNS, Payload: f.Payload})
		a.counts.add(Kind(f.Kind), len(f.Payload))
		return nil
	})
	if err != nil {
		return a, err
	}
	if chain.Head() != s.Head {
		return a, fmt.Errorf("its frames do not chain to the head its last segment (leaf %d) commits", s.LastSegment)
	}
	return a, nil
}

// loadSigned reads the latest checkpoint the key kept for this journal,
// remembered outside it; nil when there is none.
func (j *Journal) loadSigned() (*Checkpoint, error) {
	if j.signed == nil {
		return nil, nil
	}
	note, err := j.signed.Load()
	if err != nil {
		return nil, fmt.Errorf("recorder: read the remembered checkpoint: %w", err)
	}
	if note == nil {
		return nil, nil
	}
	c, err := OpenCheckpoint(note, j.key.Verifier)
	if err != nil {
		return nil, fmt.Errorf("recorder: the remembered checkpoint: %w", err)
	}
	return &c, nil
}

// closeAbandoned ends sessions that a writer left open, at the chain head
// of their last committed segment, with the bytes their frames hold.
func (j *Journal) closeAbandoned(ctx context.Context, open []abandoned) error {
	for _, a := range open {
		s := &Session{j: j, id: a.id, num: a.num, counts: a.counts}
		s.chain = NewChainer(a.head)
		s.nextSeq = a.last
		s.progress = make(chan struct{})
		s.failed = make(chan struct{})
		j.mu.Lock()
		j.sessions[s] = struct{}{}
		j.mu.Unlock()
		if err := s.End(ctx, Attrs{
			"reason": events.EndAbandoned,
			"detail": "the recorder stopped without ending the session; closed when the journal was next opened",
		}); err != nil {
			return fmt.Errorf("recorder: close abandoned session %s: %w", s.ID(), err)
		}
		j.log.Warn("closed a session left open by a previous writer", "session", s.ID(), "frames", a.last)
		j.abandoned++
	}
	return nil
}

// Abandoned is how many sessions a previous writer left open that Open
// ended (reason "abandoned").
func (j *Journal) Abandoned() int { return j.abandoned }

// ReadLog reads the journal's log as [ReadLog] does, with the journal's own
// key, keeping the events events selects: what a server rebuilds its
// registries from. An index that does not match the leaves is an error
// here too: nothing is read from a journal the writer would refuse.
func (j *Journal) ReadLog(ctx context.Context, events func(name string) bool) (*Log, error) {
	snap, err := j.st.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	log, err := ReadLog(ctx, snap, ReadLogOptions{Verifier: j.key.Verifier, Events: events})
	if err != nil {
		return nil, fmt.Errorf("recorder: %v: %w", err, ErrJournalDamaged)
	}
	if len(log.IndexProblems) > 0 {
		p := log.IndexProblems[0]
		return nil, fmt.Errorf("recorder: the journal's index does not match its signed leaves (%s: %s): %w", p.Where, p.What, ErrJournalDamaged)
	}
	return log, nil
}

// Store is the journal's store: readers take their own snapshots of it
// while the writer appends.
func (j *Journal) Store() storage.Store { return j.st }

// Verifier checks the journal's checkpoints: the public half of its key.
func (j *Journal) Verifier() note.Verifier { return j.key.Verifier }

// Err is the error that stopped the journal, or nil.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Probe checks, without writing, that the store still reaches where the
// journal lives, for a store that can lose it while idle (a
// [storage.Pinger], such as a PostgreSQL database): a journal that has
// lost it fails now, as a failed commit fails it, so that it is reported
// (and recovered) before the next session tries to record. It returns
// the error that stopped the journal, or nil.
func (j *Journal) Probe(ctx context.Context) error {
	if err := j.Err(); err != nil {
		return err
	}
	p, ok := j.st.(storage.Pinger)
	if !ok {
		return nil
	}
	if err := p.Ping(ctx); err != nil {
		j.fail(fmt.Errorf("the journal's store does not answer: %w", err))
	}
	return j.Err()
}

// OldestPending is when the oldest append that is neither committed nor
// failed yet was made (wall-clock time), or the zero time when there is
// none: how long the journal has kept a session or an event waiting. An
// idle journal has none.
func (j *Journal) OldestPending() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.inflight) > 0 {
		return j.inflight[0]
	}
	return j.queuedAt
}

// enqueue hands ops to the writer. It fails once the journal has failed or
// closed, so nothing is accepted that cannot be committed.
func (j *Journal) enqueue(ops ...op) error {
	j.mu.Lock()
	if j.err != nil {
		err := j.err
		j.mu.Unlock()
		return err
	}
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	if len(j.queue) == 0 {
		j.queuedAt = time.Now()
	}
	j.queue = append(j.queue, ops...)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return nil
}

// submit enqueues one leaf op and waits for its commit.
func (j *Journal) submit(ctx context.Context, o op) (int64, error) {
	return j.submitThen(ctx, o, nil)
}

// submitThen is submit; if ctx ends first, the op is still committed (it
// cannot be taken back), and late, if not nil, is called from another
// goroutine once it is.
func (j *Journal) submitThen(ctx context.Context, o op, late func()) (int64, error) {
	o.done = make(chan error, 1)
	var idx int64 = -1
	o.leafIndex = &idx
	if err := j.enqueue(o); err != nil {
		return -1, err
	}
	select {
	case err := <-o.done:
		return idx, err
	case <-ctx.Done():
		if late != nil {
			go func() {
				if <-o.done == nil {
					late()
				}
			}()
		}
		return -1, ctx.Err()
	}
}

// EventJournal is the part of a [*Journal] that records audit events: what
// the certificate authority and the grants take, so that the server can
// hand them the journal it runs (and tests one that fails).
type EventJournal interface {
	AppendEvent(ctx context.Context, name string, attrs Attrs) (int64, error)
	AppendIndexedEvent(ctx context.Context, name string, attrs Attrs, indexAttr string) (int64, error)
}

// AppendEvent commits an audit event leaf and returns its index.
func (j *Journal) AppendEvent(ctx context.Context, name string, attrs Attrs) (int64, error) {
	return j.AppendIndexedEvent(ctx, name, attrs, "")
}

// AppendIndexedEvent commits an audit event leaf whose attribute indexAttr
// (unless "") holds the leaf's own index in decimal (plus
// Options.IndexBase), and returns the index.
// An event can so carry a number that is unique, increasing, and names the
// leaf that records it: a certificate's serial is the index of its issuance
// leaf. attrs must not name indexAttr; it is copied, never modified.
func (j *Journal) AppendIndexedEvent(ctx context.Context, name string, attrs Attrs, indexAttr string) (int64, error) {
	a := make(Attrs, len(attrs)+1)
	for k, v := range attrs {
		a[k] = v
	}
	if indexAttr != "" {
		if _, ok := a[indexAttr]; ok {
			return -1, fmt.Errorf("recorder: event %s: attribute %q is set by the journal", name, indexAttr)
		}
		a[indexAttr] = "9223372036854775807" // the longest value, to validate the size
	}
	// Refuse a bad event here, not in the writer, where it would fail the
	// journal.
	if name == "" || len(name) > maxEventName || !validKey(name) {
		return -1, fmt.Errorf("recorder: invalid event name %q", name)
	}
	if err := a.check(); err != nil {
		return -1, err
	}
	l := &Leaf{Type: LeafEvent, Event: name, Attrs: a}
	return j.submit(ctx, op{kind: opEvent, leaf: l, indexAttr: indexAttr})
}

// Close stops accepting appends, commits what is queued, keeps a final
// checkpoint and stops the writer. Live sessions fail with ErrClosed.
func (j *Journal) Close() error {
	j.mu.Lock()
	already := j.closed
	j.closed = true
	j.mu.Unlock()
	if !already {
		close(j.stop)
	}
	<-j.done
	j.mu.Lock()
	err := j.err
	live := j.liveSessions()
	j.mu.Unlock()
	for _, s := range live {
		s.fail(ErrClosed)
	}
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return err
}

// liveSessions copies the live sessions; j.mu must be held. Callers fail
// them after releasing j.mu: the lock order is Session.mu, then Journal.mu.
func (j *Journal) liveSessions() []*Session {
	out := make([]*Session, 0, len(j.sessions))
	for s := range j.sessions {
		out = append(out, s)
	}
	return out
}
