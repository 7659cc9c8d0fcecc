package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/storage"
)

// ErrSessionBroken wraps every reason a session's record does not verify:
// a leaf not included in the signed tree, segments that do not follow each
// other, frames whose chain does not reach the head a segment committed.
var ErrSessionBroken = errors.New("the session's record does not verify")

// SessionRecord is one session as the signed log commits to it: its leaves,
// each proven included in a signed checkpoint, from which its frames are
// read and checked segment by segment ([SessionRecord.Frames]). It is what
// playback, export and bundles read instead of trusting the tables.
//
// It checks this session's leaves and frames against the journal's latest
// signed checkpoint, and that the index found them all (section 10.2 of
// docs/journal-format.md): "bastion verify" is what checks the whole log.
type SessionRecord struct {
	ID  SessionID
	Num int64 // the storage session number
	// Checkpoint is the signed checkpoint the leaves are proven against,
	// and Note its signed note.
	Checkpoint Checkpoint
	Note       []byte

	Start    ProvenLeaf
	Segments []ProvenLeaf
	End      *ProvenLeaf // nil while the session is unterminated

	// Problems lists what did not verify when the record was opened or
	// read with Force; without Force the first one is returned as an
	// error instead.
	Problems []string

	v       note.Verifier
	force   bool
	scanned int64 // leaves below this index have been looked at
	// hashes caches stored tree hashes: the proofs of one session's
	// leaves share most of their nodes.
	hashes map[int64]tlog.Hash
}

// ProvenLeaf is a leaf with its inclusion proof in the record's checkpoint.
type ProvenLeaf struct {
	Index int64
	Data  []byte // the leaf encoding
	Leaf  *Leaf
	Proof tlog.RecordProof
}

// OpenOptions configure [OpenSession].
type OpenOptions struct {
	// Verifier is the journal's public key. Required.
	Verifier note.Verifier
	// Force turns what does not verify into Problems instead of errors,
	// so that a damaged session can still be read, as far as it goes.
	Force bool
}

// OpenSession reads the session id from snap and proves each of its leaves
// included in the latest signed checkpoint. It fails with an error wrapping
// [storage.ErrNotFound] when the journal has no such session, and with one
// wrapping [ErrSessionBroken] when its leaves do not verify (unless Force).
func OpenSession(ctx context.Context, snap storage.Snapshot, id SessionID, opts OpenOptions) (*SessionRecord, error) {
	if opts.Verifier == nil {
		return nil, errors.New("recorder: the journal's public key is required")
	}
	row, err := snap.SessionByID(ctx, id[:])
	if errors.Is(err, storage.ErrNotFound) {
		// No row: either no such session, or its row was deleted. Only
		// the leaves can tell.
		if start, ok := findStart(ctx, snap, id); ok {
			return nil, fmt.Errorf("session %s: %w: the sessions table has no row for it, but leaf %d starts it: the index was changed", uuid.UUID(id), ErrSessionBroken, start)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("recorder: session %s: %w", uuid.UUID(id), err)
	}
	r := &SessionRecord{ID: id, Num: row.Num, v: opts.Verifier, force: opts.Force, hashes: map[int64]tlog.Hash{}}
	if row.Corrupt != "" {
		return r, r.fail("its sessions row %d is damaged: %s", row.Num, row.Corrupt)
	}
	head, err := snap.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("recorder: read head checkpoint: %w", err)
	}
	if head == nil {
		return r, r.fail("the journal has no signed checkpoint")
	}
	c, err := OpenCheckpoint(head.Note, opts.Verifier)
	if err != nil {
		return r, r.fail("the latest checkpoint: %v", err)
	}
	r.Checkpoint, r.Note = c, head.Note
	// The head covers every leaf (it is written with them): an older
	// checkpoint put in its place would hide the leaves after it.
	if n, err := snap.TreeSize(ctx); err != nil {
		return r, r.fail("read the log's size: %v", err)
	} else if n != c.Size || head.TreeSize != c.Size {
		if err := r.fail("the head checkpoint covers %d leaves (its row says %d), the journal has %d: it is not the latest", c.Size, head.TreeSize, n); err != nil {
			return r, err
		}
	}
	var leaves []storage.Leaf
	var beyond int64 = -1
	err = snap.SessionLeaves(ctx, row.Num, func(l storage.Leaf) error {
		if l.Index >= c.Size {
			beyond = l.Index
			return nil
		}
		l.Data = bytes.Clone(l.Data)
		leaves = append(leaves, l)
		return nil
	})
	if err != nil {
		return r, r.fail("read its leaves: %v", err)
	}
	if beyond >= 0 {
		if err := r.fail("leaf %d is filed under the session, beyond the %d leaves the head checkpoint covers", beyond, c.Size); err != nil {
			return r, err
		}
	}
	r.scanned = c.Size
	started := false
	for _, l := range leaves {
		if err := r.add(ctx, snap, l, &started); err != nil {
			return r, err
		}
	}
	if !started {
		return r, r.fail("no leaf of the log starts it")
	}
	if r.Start.Index != row.StartLeaf {
		if err := r.fail("its sessions row says it starts at leaf %d, the log starts it at leaf %d: the index was changed", row.StartLeaf, r.Start.Index); err != nil {
			return r, err
		}
	}
	if err := r.complete(ctx, snap, leaves); err != nil {
		return r, err
	}
	return r, nil
}

// findStart looks for the start leaf of session id by the leaves'
// encodings, all of them: what a reader does when the index has no row
// for the session.
func findStart(ctx context.Context, snap storage.Snapshot, id SessionID) (int64, bool) {
	found := int64(-1)
	stop := errors.New("stop")
	snap.Leaves(ctx, 0, 1<<62, func(l storage.Leaf) error {
		if leafOfSession(l.Data, id) && LeafType(l.Data[len(leafMagic)]) == LeafSessionStart {
			found = l.Index
			return stop
		}
		return nil
	})
	return found, found >= 0
}

// complete makes sure the index hid no leaf of the session. An ended
// session's segments are consecutive and end where its end leaf says, so
// none is missing before the end; the journal holds no frame after the
// last segment found (a hidden segment leaves its frames behind); and while
// it has no end, no leaf after the last one found is the session's.
func (r *SessionRecord) complete(ctx context.Context, snap storage.Snapshot, found []storage.Leaf) error {
	last, err := snap.LastSeq(ctx, r.Num)
	if err != nil {
		return r.fail("read its frames: %v", err)
	}
	if uint64(last) > r.Frames() {
		if err := r.fail("the journal holds frames up to %d, but the segment leaves found through the index commit %d: a segment leaf of the session is hidden from the index, or frames were added", last, r.Frames()); err != nil {
			return err
		}
	}
	if r.End != nil {
		return nil
	}
	from := r.Start.Index + 1
	if n := len(found); n > 0 {
		from = max(from, found[n-1].Index+1)
	}
	return r.scanFrom(ctx, snap, from, r.Checkpoint.Size, nil)
}

// scanFrom reads the leaves from..to-1 by their encodings, not by the
// index: a leaf of the session the index does not file under it is a
// problem; add, when set, is given the session's leaves.
func (r *SessionRecord) scanFrom(ctx context.Context, snap storage.Snapshot, from, to int64, add func(storage.Leaf)) error {
	var failure error
	stop := errors.New("stop")
	err := snap.Leaves(ctx, from, to, func(l storage.Leaf) error {
		mine := leafOfSession(l.Data, r.ID)
		indexed := l.Session == r.Num && l.Corrupt == ""
		switch {
		case mine && indexed && add != nil:
			l.Data = bytes.Clone(l.Data)
			add(l)
		case mine && !indexed:
			failure = r.fail("leaf %d is of this session, but the index does not file it under it (leaves.session was changed)", l.Index)
		case !mine && indexed:
			failure = r.fail("leaf %d is filed under this session, but is not one of its leaves", l.Index)
		}
		if failure != nil {
			return stop
		}
		return nil
	})
	if failure != nil {
		return failure
	}
	if err != nil {
		return r.fail("read the leaves after leaf %d: %v", from-1, err)
	}
	return nil
}

// leafOfSession reports whether data encodes a start, segment or end leaf
// of session id, without decoding the rest of it.
func leafOfSession(data []byte, id SessionID) bool {
	const at = len(leafMagic) + 9
	if len(data) < at+SessionIDSize || string(data[:len(leafMagic)]) != leafMagic {
		return false
	}
	switch LeafType(data[len(leafMagic)]) {
	case LeafSessionStart, LeafSegment, LeafSessionEnd:
		return string(data[at:at+SessionIDSize]) == string(id[:])
	}
	return false
}

// fail records a problem, and returns it as an error unless forced.
func (r *SessionRecord) fail(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if !slices.Contains(r.Problems, msg) {
		r.Problems = append(r.Problems, msg)
	}
	if r.force {
		return nil
	}
	return fmt.Errorf("session %s: %w: %s", uuid.UUID(r.ID), ErrSessionBroken, msg)
}

// add checks one leaf of the session, in index order, and proves it.
func (r *SessionRecord) add(ctx context.Context, snap storage.Snapshot, sl storage.Leaf, started *bool) error {
	where := fmt.Sprintf("leaf %d", sl.Index)
	l, err := ParseLeaf(sl.Data)
	if err != nil {
		return r.fail("%s: %v", where, err)
	}
	if l.Type == LeafEvent || l.Session != r.ID {
		// Indexed under this session but not about it: a tampered
		// index, not a leaf of the session.
		return r.fail("%s is indexed under this session but is a %s leaf of another", where, l.Type)
	}
	if sl.Corrupt != "" || sl.Type != uint8(l.Type) || sl.Event != "" {
		if err := r.fail("%s: its index columns do not match it (type %d, event %q%s): the index was changed", where, sl.Type, sl.Event, strings.TrimSuffix("; "+sl.Corrupt, "; ")); err != nil {
			return err
		}
	}
	proof, err := r.prove(ctx, snap, sl.Index, sl.Data)
	if err != nil {
		return r.fail("%s: not included in the signed checkpoint of size %d: %v", where, r.Checkpoint.Size, err)
	}
	pl := ProvenLeaf{Index: sl.Index, Data: sl.Data, Leaf: l, Proof: proof}
	var last uint64
	if n := len(r.Segments); n > 0 {
		last = r.Segments[n-1].Leaf.Last
	}
	switch {
	case !*started && l.Type != LeafSessionStart:
		return r.fail("%s (%s) comes before the session's start", where, l.Type)
	case l.Type == LeafSessionStart:
		if *started {
			return r.fail("%s starts the session a second time", where)
		}
		*started = true
		r.Start = pl
	case r.End != nil:
		return r.fail("%s (%s) comes after the session's end at leaf %d", where, l.Type, r.End.Index)
	case l.Type == LeafSegment:
		if l.First != last+1 {
			return r.fail("%s commits frames %d..%d but the previous segment ended at frame %d", where, l.First, l.Last, last)
		}
		r.Segments = append(r.Segments, pl)
	case l.Type == LeafSessionEnd:
		head := ChainSeed(r.ID)
		if n := len(r.Segments); n > 0 {
			head = r.Segments[n-1].Leaf.Head
		}
		if l.Last != last || l.Head != head {
			return r.fail("%s ends the session at frame %d, but its segments commit frames up to %d", where, l.Last, last)
		}
		r.End = &pl
	}
	return nil
}

// prove builds the inclusion proof of a leaf from the stored tree hashes and
// checks it against the checkpoint's root: stored hashes are trusted only
// as far as the signed root confirms them.
func (r *SessionRecord) prove(ctx context.Context, snap storage.Snapshot, index int64, data []byte) (tlog.RecordProof, error) {
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		var missing []int64
		for _, x := range idx {
			if _, ok := r.hashes[x]; !ok {
				missing = append(missing, x)
			}
		}
		if len(missing) > 0 {
			got, err := snap.Hashes(ctx, missing)
			if err != nil {
				return nil, err
			}
			for i, x := range missing {
				if len(got[i]) != HashSize {
					return nil, fmt.Errorf("stored tree hash %d has %d bytes", x, len(got[i]))
				}
				r.hashes[x] = tlog.Hash(got[i])
			}
		}
		for i, x := range idx {
			out[i] = r.hashes[x]
		}
		return out, nil
	})
	proof, err := tlog.ProveRecord(r.Checkpoint.Size, index, reader)
	if err != nil {
		return nil, err
	}
	if err := tlog.CheckRecord(proof, r.Checkpoint.Size, tlog.Hash(r.Checkpoint.Root), index, tlog.RecordHash(data)); err != nil {
		return nil, err
	}
	return proof, nil
}

// Refresh takes in what was committed since the record was read: it reads
// the newer signed checkpoint of snap, proves it consistent with the one
// the record holds, and adds and proves the session's new leaves. It
// reports whether anything was added. Proofs of earlier leaves stay
// against the older checkpoint, which the consistency proof extends.
func (r *SessionRecord) Refresh(ctx context.Context, snap storage.Snapshot) (bool, error) {
	head, err := snap.Head(ctx)
	if err != nil {
		return false, fmt.Errorf("recorder: read head checkpoint: %w", err)
	}
	if head == nil || head.TreeSize <= r.Checkpoint.Size {
		return false, nil
	}
	c, err := OpenCheckpoint(head.Note, r.v)
	if err != nil {
		return false, r.fail("the latest checkpoint: %v", err)
	}
	if c.Size <= r.Checkpoint.Size {
		return false, nil
	}
	old := r.Checkpoint
	r.Checkpoint, r.Note = c, head.Note
	if old.Size > 0 {
		proof, err := tlog.ProveTree(c.Size, old.Size, storedHashes(ctx, snap))
		if err == nil {
			err = tlog.CheckTree(proof, c.Size, tlog.Hash(c.Root), old.Size, tlog.Hash(old.Root))
		}
		if err != nil {
			return false, r.fail("the checkpoint of size %d does not extend the one of size %d: %v", c.Size, old.Size, err)
		}
	}
	// The proofs of new leaves need the new tree's hashes. The new leaves
	// are found by their encodings, and must be filed under the session.
	clear(r.hashes)
	var leaves []storage.Leaf
	if err := r.scanFrom(ctx, snap, r.scanned, c.Size, func(l storage.Leaf) { leaves = append(leaves, l) }); err != nil {
		return false, err
	}
	r.scanned = c.Size
	started := true
	n, ended := len(r.Segments), r.End != nil
	for _, l := range leaves {
		if err := r.add(ctx, snap, l, &started); err != nil {
			return false, err
		}
	}
	return len(r.Segments) > n || (r.End != nil) != ended, nil
}

// Frames returns the number of frames the record's segments commit.
func (r *SessionRecord) Frames() uint64 {
	if n := len(r.Segments); n > 0 {
		return r.Segments[n-1].Leaf.Last
	}
	return 0
}

// maxSegmentBuffer bounds the frames held back while their segment is
// checked: the writer commits at most 16 MiB of a session at once.
const maxSegmentBuffer = 256 << 20

// ReadFrames calls fn with the session's frames from sequence number from
// on, in order, each only after the segment that commits it verified: the
// segment's frames, hashed onto the chain from the previous segment's head
// (c_0 for the first), must give the head the segment leaf commits. It
// starts at the segment holding from, through the storage index, without
// reading the frames before it. A frame is passed to fn once; its Payload
// is valid only during the call.
//
// With Force, frames are passed as they are read, checked or not, and what
// does not verify is added to Problems.
func (r *SessionRecord) ReadFrames(ctx context.Context, snap storage.Snapshot, from uint64, fn func(*Frame) error) error {
	from = max(from, 1)
	total := r.Frames()
	if from > total {
		return nil
	}
	k := sort.Search(len(r.Segments), func(i int) bool { return r.Segments[i].Leaf.Last >= from })
	head := ChainSeed(r.ID)
	if k > 0 {
		head = r.Segments[k-1].Leaf.Head
	}
	chain := NewChainer(head)
	seg := r.Segments[k].Leaf
	expect := seg.First
	var held []Frame
	heldBytes := 0
	var rules frameRules
	stop := errors.New("stop")
	var failure error
	problem := func(format string, args ...any) error {
		failure = r.fail(format, args...)
		if failure != nil {
			return stop
		}
		return nil
	}
	err := snap.FrameRange(ctx, r.Num, int64(seg.First), int64(total)+1, func(sf *storage.Frame) error {
		seq := uint64(sf.Seq)
		if seq != expect {
			if err := problem("frame %d is missing: the frames jump from %d to %d", expect, expect-1, seq); err != nil {
				return err
			}
			expect = seq
		}
		expect++
		// Checked before the payload is copied: a row can hold far more
		// than a frame may.
		if err := rules.next(Kind(sf.Kind), sf.MonoNS, sf.Payload); err != nil {
			if err := problem("frame %d: %v", seq, err); err != nil {
				return err
			}
		}
		f := Frame{Session: r.ID, Seq: seq, Kind: Kind(sf.Kind), Channel: sf.Channel, MonoNS: sf.MonoNS, WallNS: sf.WallNS, Payload: sf.Payload}
		h := chain.Add(&f)
		if r.force {
			if seq >= from {
				if err := fn(&f); err != nil {
					return err
				}
			}
			if seq == seg.Last && h != seg.Head {
				r.fail("the chain over frames %d..%d does not match the head committed by leaf %d", seg.First, seg.Last, r.Segments[k].Index)
			}
		} else {
			if seq >= from {
				f.Payload = bytes.Clone(sf.Payload)
				held = append(held, f)
				heldBytes += len(f.Payload)
				if heldBytes > maxSegmentBuffer {
					return problem("segment leaf %d commits more than %d bytes of frames", r.Segments[k].Index, maxSegmentBuffer)
				}
			}
			if seq == seg.Last {
				if h != seg.Head {
					return problem("the chain over frames %d..%d does not match the head committed by leaf %d: a frame was changed, inserted, removed or re-timed", seg.First, seg.Last, r.Segments[k].Index)
				}
				for i := range held {
					if err := fn(&held[i]); err != nil {
						return err
					}
				}
				held, heldBytes = held[:0], 0
			}
		}
		if seq == seg.Last && k+1 < len(r.Segments) {
			k++
			seg = r.Segments[k].Leaf
			// From the committed head: under Force, the next segment is
			// checked on its own even when this one did not verify.
			chain = NewChainer(r.Segments[k-1].Leaf.Head)
		}
		return nil
	})
	if failure != nil {
		return failure
	}
	if err != nil {
		return err
	}
	if expect <= total {
		if err := problem("frames %d..%d are committed by the log but missing", expect, total); err != nil {
			return failure
		}
	}
	return nil
}
