package recorder

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/storage"
)

// run is the writer goroutine, owned by the Journal: started by Open,
// stopped by Close. It builds each batch (seals and hashes frames, makes
// leaves, extends the tree, signs the head) and hands it to the committer
// goroutine it owns, which writes it. When it takes the queue is the
// batching's to say (see batching.hold); Close does not wait: the last
// batch is built at once and commits after the one in flight.
func (j *Journal) run() {
	defer close(j.done)
	commits := make(chan *built, 1)
	// ready: the committer finished a batch; room for every batch that
	// can be in flight, so that no signal is lost.
	ready := make(chan struct{}, maxInflight)
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		for p := range commits {
			j.store(p)
			select {
			case ready <- struct{}{}:
			default: // only after Close: the writer has returned
			}
		}
	}()
	defer func() {
		close(commits)
		<-committed
	}()
	tick := time.NewTicker(j.interval)
	defer tick.Stop()
	w := newBatching()
	defer w.poll.Stop()
	for {
		stopping, freed, polled := false, false, false
		select {
		case <-j.wake:
		case <-tick.C:
		case <-ready:
			w.inflight--
			freed = w.inflight == 0
		case <-w.poll.C:
			polled = true
		case <-j.stop:
			stopping = true
		}
		j.mu.Lock()
		failed := j.err != nil
		// due: the interval since the last publication is past, and a
		// head is not yet published. j.head and j.published are the
		// writer's.
		interval := j.now().Sub(j.publishedAt) >= j.interval
		due := interval && j.head != nil && j.head.TreeSize > j.published
		if !failed && !stopping && w.hold(len(j.queue), j.queuedBytes.Load(), freed, polled, due) {
			j.mu.Unlock()
			continue
		}
		w.took(j.queuedBytes.Swap(0))
		ops := j.queue
		j.queue = nil
		since := j.queuedAt
		j.queuedAt = time.Time{}
		if !failed && len(ops) > 0 {
			j.inflight = append(j.inflight, since)
		}
		j.mu.Unlock()
		if failed {
			// Fail whatever arrived between the failure and now.
			j.finish(ops, j.Err())
			if stopping {
				return
			}
			continue
		}
		// A batch that grows the tree when the interval is past keeps
		// its own head (build keeps none that is not new).
		publish := stopping || due || (interval && len(ops) > 0)
		if len(ops) > 0 || publish {
			p, err := j.build(ops, publish)
			if err != nil {
				if len(ops) > 0 {
					j.landed()
				}
				j.fail(err)
				j.finish(ops, err)
			} else {
				if len(ops) > 0 {
					p.since = since
				}
				// At most one batch waits for the committer.
				commits <- p
				w.inflight++
			}
		}
		if stopping {
			return
		}
	}
}

// batching decides when the writer takes the queue; owned by the writer
// goroutine.
//
// Only when the committer is idle: whatever all sessions appended while a
// batch committed goes into the next batch whole. Building on every wake
// instead would cut a stream into as many small commits as there were
// wakes, each paying for its fsync, its signature and the b-tree pages it
// rewrites in the WAL (a terminal's output made about one commit per
// frame that way); and a frame keeps growing (see Session.append) until
// the batch that takes it is built. The exception is a full batch
// (batchTarget bytes, or batchOps ops, queued): it is built while the one
// before it commits, so that hashing and SQLite overlap on two cores.
//
// And even then a stream commits about as often as a commit takes,
// however fast it comes: at 100 MB/s and a commit a millisecond, 100 KB a
// commit. So after a batch of at least bulkBatch bytes, the writer waits
// for batchTarget bytes before it builds the next one, but no longer than
// batchLinger, and not once the appends pause for lingerPoll: a producer
// that stopped (its pipeline of uncommitted chunks is full, or it has
// nothing more) would only wait. Interactive sessions never queue that
// much between commits and never wait.
type batching struct {
	inflight int // batches built and not yet committed, at most maxInflight
	// until is when lingering for a stream's next batch ends, zero when
	// not lingering; seen is the queued bytes at the last poll.
	until     time.Time
	seen      int64
	lastBytes int64 // the frame bytes of the last batch taken
	poll      *time.Timer
}

// How the writer batches a stream (see batching). batchLinger stays below
// what a person notices.
const (
	bulkBatch   = 16 << 10
	batchTarget = 512 << 10
	batchOps    = 1024
	batchLinger = 2 * time.Millisecond
	lingerPoll  = 250 * time.Microsecond
	maxInflight = 2
)

func newBatching() *batching {
	w := &batching{poll: time.NewTimer(time.Hour)}
	w.poll.Stop()
	return w
}

// hold reports whether the writer leaves the queue (ops ops, of bytes
// frame bytes) where it is for now; freed says the committer has just
// finished a batch, polled that the poll timer fired, due that a
// checkpoint is due to be published.
func (w *batching) hold(ops int, bytes int64, freed, polled, due bool) bool {
	switch {
	case w.inflight >= maxInflight:
		return true
	case w.inflight > 0:
		return bytes < batchTarget && ops < batchOps
	case freed && ops == 0:
		// A committer done with nothing queued builds a batch only to
		// publish a checkpoint that is due: the head it just committed,
		// as soon as the interval allows.
		return !due
	case freed && w.lastBytes >= bulkBatch && bytes < batchTarget:
		w.until, w.seen = time.Now().Add(batchLinger), bytes
		w.poll.Reset(lingerPoll)
		return true
	case w.until.IsZero() || bytes >= batchTarget:
		return false
	case !polled:
		return true
	case bytes > w.seen && time.Now().Before(w.until):
		w.seen = bytes
		w.poll.Reset(lingerPoll)
		return true
	}
	return false
}

// took notes that the writer took the queue, with bytes frame bytes.
func (w *batching) took(bytes int64) {
	if !w.until.IsZero() {
		w.until = time.Time{}
		w.poll.Stop()
	}
	w.lastBytes = bytes
}

// fail makes err sticky and fails every live session.
func (j *Journal) fail(err error) {
	j.log.Error("journal write failed; stopping all sessions", "error", err)
	j.mu.Lock()
	if j.err == nil {
		j.err = fmt.Errorf("recorder: journal write failed: %w", err)
	}
	err = j.err
	live := j.liveSessions()
	j.mu.Unlock()
	// Outside j.mu: the lock order is Session.mu, then Journal.mu.
	for _, s := range live {
		s.fail(err)
	}
}

// landed notes that the oldest batch in flight is committed or failed.
func (j *Journal) landed() {
	j.mu.Lock()
	if len(j.inflight) > 0 {
		j.inflight = j.inflight[1:]
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
	bytes       int // all payload bytes, for the pipeline bound
}

// built is a batch on its way to the store, with whom to tell.
type built struct {
	batch   *storage.Batch
	ops     []op
	segs    []*segment
	leafOps []*op
	// since is when the batch's oldest op was enqueued; zero for a
	// batch of no ops (a checkpoint to publish).
	since time.Time
}

// build turns ops into one batch and advances the writer's view of the tree
// as if it committed; if it does not, the journal fails as a whole, so no
// later batch is ever committed on top of a missing one. When there is
// nothing to write, the batch is nil.
func (j *Journal) build(ops []op, publish bool) (*built, error) {
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
			f := o.sess.seal(o.frame)
			sg := open[o.sess]
			if sg == nil {
				sg = &segment{s: o.sess, first: uint64(f.Seq)}
				open[o.sess] = sg
				segs = append(segs, sg)
			}
			sg.last = uint64(f.Seq)
			copy(sg.head[:], f.Chain)
			sg.frames++
			sg.bytes += len(f.Payload)
			b.Frames = append(b.Frames, f)
		case opStart:
			o.leaf.WallNS = wall
			leaves = append(leaves, o.leaf)
			leafSession = append(leafSession, o.sess.num)
			leafOps = append(leafOps, o)
			b.NewSessions = append(b.NewSessions, storage.Session{Num: o.sess.num, ID: o.sess.id[:], StartLeaf: -1})
		case opEnd:
			flush(o.sess)
			o.sess.sealEnd(o.leaf)
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
		case opRenote:
			b.Renotes = append(b.Renotes, *o.renote)
		}
	}
	for _, sg := range segs {
		flush(sg.s)
	}

	// Extend the tree.
	size := j.treeSize
	r := j.hashReader()
	for i, l := range leaves {
		idx := size + int64(i)
		if o := leafOps[i]; o != nil && o.indexAttr != "" {
			l.Attrs[o.indexAttr] = strconv.FormatUint(j.base+uint64(idx), 10)
		}
		data, err := l.Encode()
		if err != nil {
			return nil, fmt.Errorf("encode %s leaf: %w", l.Type, err)
		}
		hs, err := tlog.StoredHashes(idx, data, r)
		if err != nil {
			return nil, fmt.Errorf("tree hashes for leaf %d: %w", idx, err)
		}
		base := tlog.StoredHashIndex(0, idx)
		for k, h := range hs {
			j.hashes[base+int64(k)] = h
			b.Hashes = append(b.Hashes, h[:])
		}
		b.Leaves = append(b.Leaves, storage.Leaf{Index: idx, Type: uint8(l.Type), Session: leafSession[i], Event: l.Event, Data: data})
		switch l.Type {
		case LeafSessionStart:
			for k := range b.NewSessions {
				if b.NewSessions[k].Num == leafSession[i] {
					b.NewSessions[k].StartLeaf = idx
				}
			}
		}
	}
	newSize := size + int64(len(leaves))

	// Sign the new head; keep it when it is time to publish.
	head := j.head
	if newSize > size || head == nil && newSize > 0 {
		root, err := tlog.TreeHash(newSize, r)
		if err != nil {
			return nil, fmt.Errorf("tree root: %w", err)
		}
		if j.head != nil && newSize < j.head.TreeSize {
			return nil, fmt.Errorf("refusing to sign tree size %d below signed size %d", newSize, j.head.TreeSize)
		}
		note, err := SignCheckpoint(Checkpoint{Origin: j.origin, Size: newSize, Root: Hash(root)}, j.key.Signer)
		if err != nil {
			return nil, fmt.Errorf("sign checkpoint: %w", err)
		}
		head = &storage.Checkpoint{TreeSize: newSize, CreatedNS: wall, Note: note}
		b.Head = head
	}
	if publish && head != nil && head.TreeSize > j.published {
		b.Published = append(b.Published, *head)
	}
	if len(b.Frames) == 0 && len(b.Leaves) == 0 && len(b.Published) == 0 && b.Head == nil && len(b.Renotes) == 0 {
		// Nothing to write, but its waiters are answered by the
		// committer, after every batch before it.
		return &built{ops: ops}, nil
	}
	j.treeSize, j.hashCount = newSize, j.hashCount+int64(len(b.Hashes))
	j.head = head
	if len(b.Published) > 0 {
		j.published, j.publishedAt = head.TreeSize, now
	}
	j.pruneHashes()
	return &built{batch: b, ops: ops, segs: segs, leafOps: leafOps}, nil
}

// store commits a built batch, then tells the sessions and callers waiting
// for it. Runs on the committer goroutine.
func (j *Journal) store(p *built) {
	err := j.commit(p)
	// SQLite copied the payloads as it bound them.
	for i := range p.ops {
		if f := p.ops[i].frame; f != nil {
			f.recycle()
		}
	}
	// The batch lands (OldestPending forgets it) before its appends are
	// answered: an append that returned is never still pending.
	if !p.since.IsZero() {
		j.landed()
	}
	if err != nil || p.batch == nil {
		j.finish(p.ops, err)
		return
	}
	for i, l := range p.batch.Leaves {
		if o := p.leafOps[i]; o != nil && o.leafIndex != nil {
			*o.leafIndex = l.Index
		}
	}
	for _, sg := range p.segs {
		sg.s.committed(sg.last, int(sg.frames), sg.bytes)
	}
	j.finish(p.ops, nil)
}

// commit writes p's batch durably, remembers the checkpoint it keeps, and
// tells the observers. A batch built on top of one that failed is not
// written; a failure of this one fails the journal.
func (j *Journal) commit(p *built) error {
	if err := j.Err(); err != nil {
		return err
	}
	if p.batch == nil {
		return nil
	}
	err := j.st.Commit(context.Background(), p.batch)
	n := len(p.batch.Published)
	if err == nil && n > 0 && j.signed != nil {
		if serr := j.signed.Save(p.batch.Published[n-1].Note); serr != nil {
			err = fmt.Errorf("remember the kept checkpoint: %w", serr)
		}
	}
	if err != nil {
		j.fail(err)
		return err
	}
	if n > 0 && j.onPublish != nil {
		c := p.batch.Published[n-1]
		j.onPublish(c.TreeSize, c.Note)
	}
	if j.onCommit != nil && !p.since.IsZero() {
		j.onCommit(time.Since(p.since), len(p.ops))
	}
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
		got, err := j.st.Hashes(context.Background(), missing)
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
	keep := frontierIndexes(j.treeSize)
	for k := range j.hashes {
		if !slices.Contains(keep, k) {
			delete(j.hashes, k)
		}
	}
}

// frontierIndexes are the stored-hash indexes (tlog's layout) of the roots
// of the complete subtrees of a tree of size leaves, the largest first:
// all a tree needs to be extended.
func frontierIndexes(size int64) []int64 {
	var out []int64
	var start int64
	for level := 62; level >= 0; level-- {
		if size&(1<<level) != 0 {
			out = append(out, tlog.StoredHashIndex(level, start>>level))
			start += 1 << level
		}
	}
	return out
}
