package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/sumdb/tlog"

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
	// Signed, if set, remembers outside the journal the latest checkpoint
	// the writer kept, so that a journal rolled back behind it (a copy of
	// an older file put back, checkpoints and all) is refused rather than
	// extended: extending it would have the key sign a second history. If
	// nil, only the journal's own checkpoints are checked.
	Signed SignedState
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
	log      hclog.Logger
	now      func() time.Time
	interval time.Duration
	maxFr    int
	maxBytes int

	wake chan struct{} // capacity 1: the writer has work
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the writer goroutine returns

	mu       sync.Mutex
	queue    []op                  // guarded by mu; taken whole by the writer
	sessions map[*Session]struct{} // guarded by mu; live sessions, failed together
	err      error                 // guarded by mu; sticky: once set, nothing more is written
	closed   bool                  // guarded by mu

	// Owned by the writer goroutine (and Open before it starts).
	treeSize    int64
	hashCount   int64
	nextSession int64
	published   int64 // largest kept checkpoint size
	publishedAt time.Time
	head        *storage.Checkpoint
	hashes      map[int64]tlog.Hash // new and frontier stored hashes

	signed SignedState // nil: none; Save is called by the committer
}

type opKind uint8

const (
	opFrame opKind = iota
	opStart
	opEnd
	opEvent
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
		st:       store,
		key:      opts.Key,
		origin:   opts.Key.Signer.Name(),
		log:      opts.Logger,
		now:      opts.Now,
		interval: opts.PublishInterval,
		maxFr:    opts.MaxPendingFrames,
		maxBytes: opts.MaxPendingBytes,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		sessions: map[*Session]struct{}{},
		hashes:   map[int64]tlog.Hash{},
		signed:   opts.Signed,
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
	if err := j.checkHead(ctx, st); err != nil {
		return nil, err
	}
	if err := j.checkSigned(); err != nil {
		return nil, err
	}
	if p := st.Published; p != nil {
		// Trust the row only as far as its signature and size go: a
		// forged size would stop checkpoints from ever being kept again.
		if c, err := OpenCheckpoint(p.Note, j.key.Verifier); err != nil || c.Size != p.TreeSize || c.Size > st.TreeSize {
			return nil, fmt.Errorf("recorder: the largest kept checkpoint (size %d) is not valid for this journal: %w", p.TreeSize, ErrJournalDamaged)
		}
		j.published = p.TreeSize
		j.publishedAt = time.Unix(0, p.CreatedNS)
	}
	go j.run()
	if err := j.closeAbandoned(ctx, st.Open); err != nil {
		j.Close()
		return nil, err
	}
	return j, nil
}

// checkHead makes sure the journal we are about to extend is the one the
// key last signed: same size, same root. Extending a damaged or rolled-back
// journal would make a valid-looking signature over it.
func (j *Journal) checkHead(ctx context.Context, st *storage.State) error {
	j.head = st.Head
	if st.Head == nil {
		if st.TreeSize == 0 {
			return nil
		}
		return fmt.Errorf("recorder: journal has %d leaves and no signed checkpoint: %w", st.TreeSize, ErrJournalDamaged)
	}
	c, err := OpenCheckpoint(st.Head.Note, j.key.Verifier)
	if err != nil {
		return fmt.Errorf("recorder: latest checkpoint: %v: %w", err, ErrJournalDamaged)
	}
	if c.Size != st.TreeSize || c.Size != st.Head.TreeSize {
		return fmt.Errorf("recorder: latest checkpoint covers %d leaves, journal has %d: %w", c.Size, st.TreeSize, ErrJournalDamaged)
	}
	root, err := tlog.TreeHash(c.Size, j.hashReader())
	if err != nil {
		return fmt.Errorf("recorder: compute tree root: %w", err)
	}
	if Hash(root) != c.Root {
		return fmt.Errorf("recorder: tree root differs from the latest checkpoint: %w", ErrJournalDamaged)
	}
	return nil
}

// checkSigned refuses a journal that does not extend the latest checkpoint
// remembered outside it, and remembers the current head on first use.
func (j *Journal) checkSigned() error {
	if j.signed == nil {
		return nil
	}
	note, err := j.signed.Load()
	if err != nil {
		return fmt.Errorf("recorder: read the remembered checkpoint: %w", err)
	}
	if note == nil {
		if j.head == nil {
			return nil
		}
		return j.signed.Save(j.head.Note)
	}
	c, err := OpenCheckpoint(note, j.key.Verifier)
	if err != nil {
		return fmt.Errorf("recorder: the remembered checkpoint: %w", err)
	}
	if c.Size > j.treeSize && j.treeSize == 0 {
		return fmt.Errorf("recorder: the journal is empty, but the key kept a checkpoint of %d leaves for the journal at this path: it was deleted or replaced: %w", c.Size, ErrJournalDamaged)
	}
	if c.Size > j.treeSize {
		return fmt.Errorf("recorder: the key last kept a checkpoint of %d leaves, the journal has %d: it was truncated or an older copy was put back: %w", c.Size, j.treeSize, ErrJournalDamaged)
	}
	if c.Size == 0 {
		return nil
	}
	root, err := tlog.TreeHash(c.Size, j.hashReader())
	if err != nil {
		return fmt.Errorf("recorder: compute tree root: %w", err)
	}
	if Hash(root) != c.Root {
		return fmt.Errorf("recorder: the journal's first %d leaves are not those of the checkpoint the key last kept: it was rewritten or replaced: %w", c.Size, ErrJournalDamaged)
	}
	return nil
}

// closeAbandoned ends sessions that a writer left open, at the chain head
// of their last committed segment.
func (j *Journal) closeAbandoned(ctx context.Context, open []storage.Session) error {
	for _, se := range open {
		if len(se.ID) != SessionIDSize {
			return fmt.Errorf("recorder: session %d has a malformed id: %w", se.Num, ErrJournalDamaged)
		}
		// The key signs what it ends: only a session the log started.
		if err := j.checkStarted(ctx, se); err != nil {
			return err
		}
		s := &Session{j: j, num: se.Num}
		copy(s.id[:], se.ID)
		head := ChainSeed(s.id)
		var last uint64
		snap, err := j.st.Snapshot(ctx)
		if err != nil {
			return err
		}
		err = snap.SessionLeaves(ctx, se.Num, func(l storage.Leaf) error {
			if l.Type != uint8(LeafSegment) {
				return nil
			}
			pl, err := ParseLeaf(l.Data)
			if err != nil {
				return fmt.Errorf("leaf %d: %w", l.Index, err)
			}
			last, head = pl.Last, pl.Head
			return nil
		})
		snap.Close()
		if err != nil {
			return fmt.Errorf("recorder: recover session %d: %w", se.Num, err)
		}
		s.chain = NewChainer(head)
		s.nextSeq = last
		s.progress = make(chan struct{})
		s.failed = make(chan struct{})
		j.mu.Lock()
		j.sessions[s] = struct{}{}
		j.mu.Unlock()
		if err := s.End(ctx, Attrs{
			"reason": "abandoned",
			"detail": "the recorder stopped without ending the session; closed when the journal was next opened",
		}); err != nil {
			return fmt.Errorf("recorder: close abandoned session %x: %w", s.id, err)
		}
		j.log.Warn("closed a session left open by a previous writer", "session", s.ID(), "frames", last)
	}
	return nil
}

// checkStarted makes sure se's start leaf is in the log and starts it.
func (j *Journal) checkStarted(ctx context.Context, se storage.Session) error {
	snap, err := j.st.Snapshot(ctx)
	if err != nil {
		return err
	}
	defer snap.Close()
	found := false
	err = snap.Leaves(ctx, se.StartLeaf, se.StartLeaf+1, func(l storage.Leaf) error {
		pl, err := ParseLeaf(l.Data)
		found = err == nil && pl.Type == LeafSessionStart && bytes.Equal(pl.Session[:], se.ID)
		return nil
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("recorder: open session %d has no start leaf at %d: %w", se.Num, se.StartLeaf, ErrJournalDamaged)
	}
	return nil
}

// Err is the error that stopped the journal, or nil.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
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

// AppendEvent commits an audit event leaf and returns its index.
func (j *Journal) AppendEvent(ctx context.Context, name string, attrs Attrs) (int64, error) {
	return j.AppendIndexedEvent(ctx, name, attrs, "")
}

// AppendIndexedEvent commits an audit event leaf whose attribute indexAttr
// (unless "") holds the leaf's own index in decimal, and returns the index.
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

// Events calls fn with each event leaf named name whose index is at least
// from, in index order, parsed. It reads from snap, so a reader process can
// use it beside a writer.
func Events(ctx context.Context, snap storage.Snapshot, name string, from int64, fn func(index int64, l *Leaf) error) error {
	return snap.Events(ctx, name, from, func(sl storage.Leaf) error {
		l, err := ParseLeaf(sl.Data)
		if err != nil {
			return fmt.Errorf("leaf %d: %w", sl.Index, err)
		}
		if l.Type != LeafEvent || l.Event != name {
			return fmt.Errorf("leaf %d: %w: indexed as event %s but holds %s %q", sl.Index, storage.ErrCorrupt, name, l.Type, l.Event)
		}
		return fn(sl.Index, l)
	})
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
