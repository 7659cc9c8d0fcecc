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
	// Now is the wall clock. If nil, time.Now is used.
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
}

// Journal appends sessions and events to a store, in one writer goroutine
// doing group commit: whatever all sessions appended while the previous
// transaction committed goes into the next one. Every commit carries a
// segment leaf per session it touched, extends the Merkle tree and stores a
// newly signed head checkpoint, so everything committed is always covered by
// a signature, even after a crash.
type Journal struct {
	store    storage.Store
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
}

type opKind uint8

const (
	opFrame opKind = iota
	opStart
	opEnd
	opEvent
	opPublish
)

type op struct {
	kind  opKind
	sess  *Session
	frame storage.Frame // opFrame
	leaf  *Leaf         // opStart, opEnd, opEvent
	// done receives the commit's result for every op but opFrame, whose
	// result is published through its session.
	done chan error
	// leafIndex is set before done is signalled, for opStart/opEnd/opEvent.
	leafIndex *int64
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
		store:    store,
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
	if st.Published != nil {
		j.published = st.Published.TreeSize
		j.publishedAt = time.Unix(0, st.Published.CreatedNS)
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

// closeAbandoned ends sessions that a writer left open, at the chain head
// of their last committed segment.
func (j *Journal) closeAbandoned(ctx context.Context, open []storage.Session) error {
	for _, se := range open {
		if len(se.ID) != SessionIDSize {
			return fmt.Errorf("recorder: session %d has a malformed id: %w", se.Num, ErrJournalDamaged)
		}
		s := &Session{j: j, num: se.Num}
		copy(s.id[:], se.ID)
		head := ChainSeed(s.id)
		var last uint64
		snap, err := j.store.Snapshot(ctx)
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

// Origin is the log's origin, the name of its key.
func (j *Journal) Origin() string { return j.origin }

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
		return -1, ctx.Err()
	}
}

// AppendEvent commits an audit event leaf and returns its index.
func (j *Journal) AppendEvent(ctx context.Context, name string, attrs Attrs) (int64, error) {
	l := &Leaf{Type: LeafEvent, Event: name, Attrs: attrs}
	if _, err := l.Encode(); err != nil { // refuse it here, not in the writer
		return -1, err
	}
	return j.submit(ctx, op{kind: opEvent, leaf: l})
}

// Publish commits and keeps a checkpoint over everything appended so far,
// now rather than at the next interval.
func (j *Journal) Publish(ctx context.Context) error {
	_, err := j.submit(ctx, op{kind: opPublish})
	return err
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
	for s := range j.sessions {
		s.fail(ErrClosed)
	}
	j.mu.Unlock()
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return err
}

// run is the writer goroutine, owned by the Journal: started by Open,
// stopped by Close.
func (j *Journal) run() {
	defer close(j.done)
	tick := time.NewTicker(j.interval)
	defer tick.Stop()
	for {
		stopping := false
		select {
		case <-j.wake:
		case <-tick.C:
		case <-j.stop:
			stopping = true
		}
		j.mu.Lock()
		ops := j.queue
		j.queue = nil
		failed := j.err != nil
		j.mu.Unlock()
		if failed {
			// Fail whatever arrived between the failure and now.
			j.finish(ops, j.Err())
			if stopping {
				return
			}
			continue
		}
		publish := stopping || (j.head != nil && j.head.TreeSize > j.published && j.now().Sub(j.publishedAt) >= j.interval)
		if len(ops) > 0 || publish {
			if err := j.commit(ops, publish); err != nil {
				j.fail(err)
				j.finish(ops, err)
			}
		}
		if stopping {
			return
		}
	}
}

// fail makes err sticky and fails every live session.
func (j *Journal) fail(err error) {
	j.log.Error("journal write failed; stopping all sessions", "error", err)
	j.mu.Lock()
	if j.err == nil {
		j.err = fmt.Errorf("recorder: journal write failed: %w", err)
	}
	for s := range j.sessions {
		s.fail(j.err)
	}
	j.mu.Unlock()
}

// finish reports a commit's result to the ops that wait for one.
func (j *Journal) finish(ops []op, err error) {
	for i := range ops {
		if ops[i].done != nil {
			ops[i].done <- err
		}
	}
}

type segment struct {
	s           *Session
	first, last uint64
	head        Hash
	frames      int64
	in, out     int64
	bytes       int // all payload bytes, for the pipeline bound
}

// commit writes ops as one transaction.
func (j *Journal) commit(ops []op, publish bool) error {
	now := j.now()
	wall := now.UnixNano()
	b := &storage.Batch{HashStart: j.hashCount}
	var leaves []*Leaf
	var leafSession []int64
	var leafOps []*op
	var segs []*segment
	open := map[*Session]*segment{}
	flush := func(s *Session) {
		if sg := open[s]; sg != nil {
			leaves = append(leaves, &Leaf{Type: LeafSegment, WallNS: wall, Session: s.id, First: sg.first, Last: sg.last, Head: sg.head})
			leafSession = append(leafSession, s.num)
			leafOps = append(leafOps, nil)
			delete(open, s)
		}
	}
	for i := range ops {
		o := &ops[i]
		switch o.kind {
		case opFrame:
			sg := open[o.sess]
			if sg == nil {
				sg = &segment{s: o.sess, first: uint64(o.frame.Seq)}
				open[o.sess] = sg
				segs = append(segs, sg)
			}
			sg.last = uint64(o.frame.Seq)
			copy(sg.head[:], o.frame.Chain)
			sg.frames++
			sg.bytes += len(o.frame.Payload)
			switch Kind(o.frame.Kind) {
			case KindInput:
				sg.in += int64(len(o.frame.Payload))
			case KindOutput, KindStderr:
				sg.out += int64(len(o.frame.Payload))
			}
			b.Frames = append(b.Frames, o.frame)
		case opStart:
			o.leaf.WallNS = wall
			leaves = append(leaves, o.leaf)
			leafSession = append(leafSession, o.sess.num)
			leafOps = append(leafOps, o)
			b.NewSessions = append(b.NewSessions, storage.Session{
				Num: o.sess.num, ID: o.sess.id[:], StartLeaf: -1, StartedNS: wall, Summary: o.sess.summary,
			})
		case opEnd:
			flush(o.sess)
			o.leaf.WallNS = wall
			leaves = append(leaves, o.leaf)
			leafSession = append(leafSession, o.sess.num)
			leafOps = append(leafOps, o)
			publish = true // every session end is kept
		case opEvent:
			o.leaf.WallNS = wall
			leaves = append(leaves, o.leaf)
			leafSession = append(leafSession, -1)
			leafOps = append(leafOps, o)
		case opPublish:
			publish = true
		}
	}
	for _, sg := range segs {
		flush(sg.s)
	}

	// Extend the tree.
	size := j.treeSize
	r := j.hashReader()
	for i, l := range leaves {
		data, err := l.Encode()
		if err != nil {
			return fmt.Errorf("encode %s leaf: %w", l.Type, err)
		}
		idx := size + int64(i)
		hs, err := tlog.StoredHashes(idx, data, r)
		if err != nil {
			return fmt.Errorf("tree hashes for leaf %d: %w", idx, err)
		}
		base := tlog.StoredHashIndex(0, idx)
		for k, h := range hs {
			j.hashes[base+int64(k)] = h
			b.Hashes = append(b.Hashes, h[:])
		}
		b.Leaves = append(b.Leaves, storage.Leaf{Index: idx, Type: uint8(l.Type), Session: leafSession[i], Data: data})
		switch l.Type {
		case LeafSessionStart:
			for k := range b.NewSessions {
				if b.NewSessions[k].Num == leafSession[i] {
					b.NewSessions[k].StartLeaf = idx
				}
			}
		case LeafSessionEnd:
			b.Sessions = append(b.Sessions, storage.SessionDelta{Num: leafSession[i], EndLeaf: idx, EndedNS: wall})
		}
	}
	for _, sg := range segs {
		b.Sessions = append(b.Sessions, storage.SessionDelta{Num: sg.s.num, Frames: sg.frames, InBytes: sg.in, OutBytes: sg.out, EndLeaf: -1})
	}
	newSize := size + int64(len(leaves))

	// Sign the new head; keep it when it is time to publish.
	head := j.head
	if newSize > size || head == nil && newSize > 0 {
		root, err := tlog.TreeHash(newSize, r)
		if err != nil {
			return fmt.Errorf("tree root: %w", err)
		}
		if j.head != nil && newSize < j.head.TreeSize {
			return fmt.Errorf("refusing to sign tree size %d below signed size %d", newSize, j.head.TreeSize)
		}
		note, err := SignCheckpoint(Checkpoint{Origin: j.origin, Size: newSize, Root: Hash(root)}, j.key.Signer)
		if err != nil {
			return fmt.Errorf("sign checkpoint: %w", err)
		}
		head = &storage.Checkpoint{TreeSize: newSize, CreatedNS: wall, Note: note}
		b.Head = head
	}
	if publish && head != nil && head.TreeSize > j.published {
		b.Published = append(b.Published, *head)
	}
	if len(b.Frames) == 0 && len(b.Leaves) == 0 && len(b.Published) == 0 && b.Head == nil {
		j.finish(ops, nil)
		return nil
	}

	if err := j.store.Commit(context.Background(), b); err != nil {
		return err
	}

	// Committed: advance state, then tell the sessions and callers.
	j.treeSize, j.hashCount = newSize, j.hashCount+int64(len(b.Hashes))
	j.head = head
	if len(b.Published) > 0 {
		j.published, j.publishedAt = head.TreeSize, now
	}
	j.pruneHashes()
	for i, l := range b.Leaves {
		if o := leafOps[i]; o != nil && o.leafIndex != nil {
			*o.leafIndex = l.Index
		}
	}
	for _, sg := range segs {
		sg.s.committed(sg.last, int(sg.frames), sg.bytes)
	}
	j.finish(ops, nil)
	return nil
}

// hashReader reads stored hashes from the writer's cache, then the store.
func (j *Journal) hashReader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		var missing []int64
		for i, x := range idx {
			if h, ok := j.hashes[x]; ok {
				out[i] = h
			} else {
				missing = append(missing, x)
			}
		}
		if len(missing) == 0 {
			return out, nil
		}
		got, err := j.store.Hashes(context.Background(), missing)
		if err != nil {
			return nil, err
		}
		k := 0
		for i, x := range idx {
			if _, ok := j.hashes[x]; ok {
				continue
			}
			if len(got[k]) != HashSize {
				return nil, fmt.Errorf("tree hash %d has %d bytes: %w", x, len(got[k]), ErrJournalDamaged)
			}
			copy(out[i][:], got[k])
			j.hashes[x] = out[i]
			k++
		}
		return out, nil
	})
}

// pruneHashes keeps only the frontier of the tree: the roots of the complete
// subtrees that the next leaves and roots are computed from.
func (j *Journal) pruneHashes() {
	keep := map[int64]bool{}
	var start int64
	for level := 62; level >= 0; level-- {
		if j.treeSize&(1<<level) != 0 {
			keep[tlog.StoredHashIndex(level, start>>level)] = true
			start += 1 << level
		}
	}
	for k := range j.hashes {
		if !keep[k] {
			delete(j.hashes, k)
		}
	}
}

// Checkpoint returns the latest signed checkpoint note the writer made.
func (j *Journal) Checkpoint(ctx context.Context) ([]byte, error) {
	snap, err := j.store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	h, err := snap.Head(ctx)
	if err != nil || h == nil {
		return nil, err
	}
	return bytes.Clone(h.Note), nil
}
