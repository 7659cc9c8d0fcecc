package recorder

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/storage"
)

// VerifyOptions configure [Verify].
type VerifyOptions struct {
	// Verifier is the journal's public key, supplied by the auditor.
	// Required: nothing in the journal itself is trusted to name it.
	Verifier note.Verifier
	// Session, when set, limits the frame checks to one session; the log
	// and its checkpoints are always checked whole.
	Session *SessionID
	// Kept is a checkpoint note the auditor kept earlier. The journal must
	// still extend it: a consistency proof from it to the latest valid
	// checkpoint is built from the recomputed tree and checked.
	Kept []byte
	// Progress, if set, is called with payload bytes checked and the total.
	Progress func(done, total int64)
}

// Problem is one finding that makes a journal fail verification.
type Problem struct {
	// Leaf is the index of the first leaf the problem concerns, the tree
	// size for problems past the end of the log, or -1 for the journal as
	// a whole (its key, its metadata); it orders problems so that the
	// first is the earliest bad record.
	Leaf int64 `json:"leaf"`
	// Where names the record: "leaf 12 (segment)", "session … frame 57".
	Where string `json:"where"`
	// What says what is wrong with it.
	What string `json:"what"`
}

func (p Problem) String() string { return p.Where + ": " + p.What }

// SessionSummary describes one session as verification found it.
type SessionSummary struct {
	ID        string `json:"id"`
	StartLeaf int64  `json:"start_leaf"`
	EndLeaf   int64  `json:"end_leaf"` // -1: unterminated
	Frames    uint64 `json:"frames"`
	Reason    string `json:"end_reason,omitempty"`
}

// Report is the result of [Verify].
type Report struct {
	Origin       string `json:"origin"`
	TreeSize     int64  `json:"tree_size"`
	Root         string `json:"root,omitempty"` // base64, of the whole tree as recomputed
	Sessions     int    `json:"sessions"`
	SessionsRead int    `json:"sessions_checked"`
	Frames       int64  `json:"frames"`
	PayloadBytes int64  `json:"payload_bytes"`
	Events       int    `json:"events"`

	// Checkpoints is how many stored checkpoints have a valid signature
	// and match the recomputed tree.
	Checkpoints int `json:"checkpoints_valid"`
	// Covered is the largest tree size a valid checkpoint commits to;
	// Uncovered counts the leaves after it, which no signature protects.
	Covered   int64 `json:"covered"`
	Uncovered int64 `json:"uncovered"`
	// Latest is the latest valid checkpoint note (empty when none).
	Latest string `json:"latest_checkpoint,omitempty"`

	// Kept is the result of checking the auditor's kept checkpoint.
	Kept *KeptResult `json:"kept,omitempty"`

	// Unterminated sessions have no end leaf: the recorder crashed or is
	// still running. Not tampering by itself.
	Unterminated []SessionSummary `json:"unterminated"`
	// Abandoned sessions were closed by a later writer after a crash.
	Abandoned []SessionSummary `json:"abandoned"`

	// Problems, first bad record first. Empty when the journal is intact.
	Problems []Problem `json:"problems"`
}

// KeptResult describes the check against a kept checkpoint.
type KeptResult struct {
	Size       int64 `json:"size"`
	Consistent bool  `json:"consistent"`
	// ProvedTo is the size of the checkpoint the consistency proof
	// reaches (the latest valid one); ProofHashes its length.
	ProvedTo    int64 `json:"proved_to"`
	ProofHashes int   `json:"proof_hashes"`
}

// Intact reports whether the journal verified: no problem, and every leaf
// covered by a valid signed checkpoint.
func (r *Report) Intact() bool { return len(r.Problems) == 0 && r.Uncovered == 0 }

// ErrVerify wraps errors that kept verification from running at all: a
// missing key, a kept checkpoint that does not verify, or a journal that
// cannot be opened. Nothing the journal file contains yields it: whatever
// is wrong inside the file is a [Problem], so that an attacker who can
// write the file cannot turn "tampered" into "could not run".
var ErrVerify = errors.New("cannot verify")

type sessionLeaves struct {
	id        SessionID
	startLeaf int64
	segments  []Leaf
	segLeaf   []int64
	end       *Leaf
	endLeaf   int64
	bad       bool // a leaf-level problem already reported
}

// Verify recomputes a journal from its stored records and checks it against
// its signed checkpoints, using only the auditor's key. It reads one
// consistent snapshot, so it may run while a writer appends.
func Verify(ctx context.Context, store storage.Store, opts VerifyOptions) (*Report, error) {
	if opts.Verifier == nil {
		return nil, fmt.Errorf("%w: the journal's public key is required", ErrVerify)
	}
	snap, err := store.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	defer snap.Close()
	v := &verifier{ctx: ctx, snap: snap, opts: opts, r: &Report{Unterminated: []SessionSummary{}, Abandoned: []SessionSummary{}, Problems: []Problem{}}}
	if err := v.run(); err != nil {
		return nil, err
	}
	sort.SliceStable(v.r.Problems, func(a, b int) bool { return v.r.Problems[a].Leaf < v.r.Problems[b].Leaf })
	return v.r, nil
}

type verifier struct {
	ctx  context.Context
	snap storage.Snapshot
	opts VerifyOptions
	r    *Report
	tree memTree // the tree recomputed from the leaves
	// recordHash is each leaf's recomputed hash, to localize damage.
	recordHash []tlog.Hash
	sessions   map[SessionID]*sessionLeaves
	order      []*sessionLeaves
	latest     *Checkpoint // the latest valid checkpoint, nil when none
	changed    []int64     // leaves whose stored hash differs; nil until needed
	foreignKey string      // a key other than the auditor's that signed a checkpoint
}

func (v *verifier) problem(leaf int64, where, format string, args ...any) {
	v.r.Problems = append(v.r.Problems, Problem{Leaf: leaf, Where: where, What: fmt.Sprintf(format, args...)})
}

func (v *verifier) run() error {
	meta, err := v.snap.Meta(v.ctx)
	if err != nil {
		v.problem(-1, "journal metadata", "unreadable: %v", err)
		meta = map[string]string{}
	}
	v.r.Origin = v.opts.Verifier.Name()
	if err := v.leaves(); err != nil {
		return err
	}
	signedByKey, err := v.checkpoints()
	if err != nil {
		return err
	}
	// The metadata is not signed, so it decides nothing: the auditor's key
	// names the log, and a journal that does not verify under it fails,
	// whether the key is wrong or the journal was replaced. When no
	// checkpoint carries the key's signature, say which key signed them.
	if signedByKey == 0 && v.foreignKey != "" {
		v.problem(-1, "journal", "no checkpoint is signed by the key given (%s, key hash %08x); they are signed by %s: either the key is not this journal's, or its checkpoints were replaced",
			v.r.Origin, v.opts.Verifier.KeyHash(), v.foreignKey)
	}
	if f := meta[MetaFormat]; f != FormatVersion {
		v.problem(-1, "journal metadata", "format is %q, want %q (the records are checked as %s)", f, FormatVersion, FormatVersion)
	}
	if o := meta[MetaOrigin]; o != v.r.Origin {
		v.problem(-1, "journal metadata", "names log %q, but the key given is for log %q: either the key is not this journal's, or the metadata was changed", o, v.r.Origin)
	}
	if err := v.kept(); err != nil {
		return err
	}
	return v.frames()
}

// leaves recomputes the tree from the leaves table and collects each
// session's segments.
func (v *verifier) leaves() error {
	v.sessions = map[SessionID]*sessionLeaves{}
	var next int64
	err := v.snap.Leaves(v.ctx, 0, 1<<62, func(sl storage.Leaf) error {
		if sl.Index != next {
			if sl.Index > next {
				v.problem(next, fmt.Sprintf("leaf %d", next), "missing: the log jumps from leaf %d to leaf %d (deleted)", next-1, sl.Index)
			} else {
				v.problem(sl.Index, fmt.Sprintf("leaf %d", sl.Index), "stored out of order")
			}
			return errStopLeaves
		}
		if err := v.tree.add(sl.Data); err != nil {
			return err
		}
		v.recordHash = append(v.recordHash, tlog.RecordHash(sl.Data))
		v.leaf(next, sl)
		next++
		return nil
	})
	if err != nil && !errors.Is(err, errStopLeaves) {
		v.problem(next, fmt.Sprintf("leaf %d", next), "unreadable: %v", err)
	}
	v.r.TreeSize = next
	if next > 0 {
		root, err := v.tree.root(next)
		if err != nil {
			return err
		}
		v.r.Root = root.String()
	}
	for _, s := range v.order {
		sum := SessionSummary{ID: uuid.UUID(s.id).String(), StartLeaf: s.startLeaf, EndLeaf: -1}
		if n := len(s.segments); n > 0 {
			sum.Frames = s.segments[n-1].Last
		}
		if s.end == nil {
			v.r.Unterminated = append(v.r.Unterminated, sum)
			continue
		}
		sum.EndLeaf, sum.Reason = s.endLeaf, s.end.Attrs["reason"]
		if sum.Reason == "abandoned" {
			v.r.Abandoned = append(v.r.Abandoned, sum)
		}
	}
	v.r.Sessions = len(v.order)
	return nil
}

var errStopLeaves = errors.New("stop")

func (v *verifier) leaf(idx int64, sl storage.Leaf) {
	where := fmt.Sprintf("leaf %d", idx)
	l, err := ParseLeaf(sl.Data)
	if err != nil {
		v.problem(idx, where, "%v", err)
		return
	}
	where = fmt.Sprintf("leaf %d (%s", idx, l.Type)
	if l.Type != LeafEvent {
		where += " of session " + uuid.UUID(l.Session).String()
	}
	where += ")"
	s := v.sessions[l.Session]
	switch l.Type {
	case LeafEvent:
		v.r.Events++
		return
	case LeafSessionStart:
		if s != nil {
			v.problem(idx, where, "session already started at leaf %d (duplicate)", s.startLeaf)
			s.bad = true
			return
		}
		s = &sessionLeaves{id: l.Session, startLeaf: idx, endLeaf: -1}
		v.sessions[l.Session] = s
		v.order = append(v.order, s)
		return
	}
	if s == nil {
		v.problem(idx, where, "no session-start leaf precedes it")
		return
	}
	if s.bad {
		// Its later leaves are not checked against a broken history,
		// but its end is still its end: it is not unterminated.
		if l.Type == LeafSessionEnd && s.end == nil {
			s.end, s.endLeaf = l, idx
		}
		return
	}
	if s.end != nil {
		v.problem(idx, where, "after the session's end at leaf %d", s.endLeaf)
		s.bad = true
		return
	}
	var last uint64
	if n := len(s.segments); n > 0 {
		last = s.segments[n-1].Last
	}
	switch l.Type {
	case LeafSegment:
		if l.First != last+1 {
			v.problem(idx, where, "commits frames %d..%d but the previous segment ended at frame %d", l.First, l.Last, last)
			s.bad = true
			return
		}
		s.segments = append(s.segments, *l)
		s.segLeaf = append(s.segLeaf, idx)
	case LeafSessionEnd:
		if l.Last != last {
			v.problem(idx, where, "ends at frame %d but the segments commit frames up to %d", l.Last, last)
			s.bad = true
		}
		s.end, s.endLeaf = l, idx
	}
}

// checkpoints checks every stored checkpoint's signature and root. It
// returns how many carry a signature line by the auditor's key, valid or not.
func (v *verifier) checkpoints() (int, error) {
	published, err := v.snap.Published(v.ctx)
	if err != nil {
		v.problem(v.r.TreeSize, "checkpoints", "unreadable: %v", err)
	}
	head, err := v.snap.Head(v.ctx)
	if err != nil {
		v.problem(v.r.TreeSize, "head checkpoint", "unreadable: %v", err)
	}
	type stored struct {
		storage.Checkpoint
		where string
	}
	var all []stored
	for _, c := range published {
		all = append(all, stored{c, fmt.Sprintf("checkpoint at tree size %d", c.TreeSize)})
	}
	if head != nil {
		all = append(all, stored{*head, fmt.Sprintf("head checkpoint at tree size %d", head.TreeSize)})
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].TreeSize < all[b].TreeSize })
	var latestNote []byte
	var validBelow int64 // the largest valid checkpoint size seen so far
	signedByKey := 0
	for _, sc := range all {
		if signers := noteSigners(sc.Note); signers[v.keyID()] {
			signedByKey++
		} else {
			for s := range signers {
				v.foreignKey = s
			}
		}
		// A row's own size is not evidence of where the damage is: bad
		// rows are listed after the records proven bad.
		c, err := OpenCheckpoint(sc.Note, v.opts.Verifier)
		if err != nil {
			v.problem(v.r.TreeSize, sc.where, "%v", err)
			continue
		}
		if c.Size != sc.TreeSize {
			v.problem(v.r.TreeSize, sc.where, "the signed note says tree size %d", c.Size)
			continue
		}
		if c.Size > v.r.TreeSize {
			v.problem(v.r.TreeSize, sc.where, "commits to %d leaves but the journal has %d: leaves %d..%d are missing (truncated)", c.Size, v.r.TreeSize, v.r.TreeSize, c.Size-1)
			continue
		}
		if c.Size == 0 {
			continue
		}
		root, err := v.tree.root(c.Size)
		if err != nil {
			return 0, err
		}
		if root != c.Root {
			if first := v.firstChangedLeaf(validBelow, c.Size); first < c.Size {
				v.problem(first, sc.where, "the recomputed root of leaves 0..%d differs from the signed root: leaf %d is the first whose content differs from the hash stored for it (a hint from the file: modified, inserted or reordered)", c.Size-1, first)
			} else {
				v.problem(validBelow, sc.where, "the recomputed root of leaves 0..%d differs from the signed root: the change is in leaves %d..%d (the stored hashes were rewritten too, so it cannot be narrowed further)", c.Size-1, validBelow, c.Size-1)
			}
			continue
		}
		v.r.Checkpoints++
		validBelow = c.Size
		if v.latest == nil || c.Size >= v.latest.Size {
			cc := c
			v.latest, latestNote = &cc, sc.Note
		}
	}
	if v.latest != nil {
		v.r.Covered = v.latest.Size
		v.r.Latest = string(latestNote)
	}
	v.r.Uncovered = v.r.TreeSize - v.r.Covered
	if v.r.Uncovered > 0 {
		if v.latest == nil {
			v.problem(0, "journal", "no valid signed checkpoint: none of its %d leaves is covered by a signature", v.r.TreeSize)
		} else {
			// Not proven bad, only unprotected: listed after any record
			// that is.
			v.problem(v.r.TreeSize, fmt.Sprintf("leaves %d..%d", v.r.Covered, v.r.TreeSize-1), "not covered by any valid signed checkpoint (the latest valid one covers %d leaves)", v.r.Covered)
		}
	}
	return signedByKey, nil
}

// keyID names the auditor's key as signature lines do.
func (v *verifier) keyID() string {
	return fmt.Sprintf("%s %08x", v.opts.Verifier.Name(), v.opts.Verifier.KeyHash())
}

// noteSigners lists the keys ("name hash") a note's signature lines claim,
// without verifying them.
func noteSigners(msg []byte) map[string]bool {
	out := map[string]bool{}
	lines, _ := signatureLines(msg)
	for _, l := range lines {
		if raw, err := base64.StdEncoding.DecodeString(l.sig); err == nil && len(raw) >= 4 {
			out[fmt.Sprintf("%s %08x", l.name, binary.BigEndian.Uint32(raw))] = true
		}
	}
	return out
}

// firstChangedLeaf localizes damage under a bad root: the first leaf in
// [from, size) whose recomputed hash differs from the hash the writer stored
// for it, or size if none does. The stored hashes are untrusted hints; if
// they were rewritten too, only the checkpoints bound the damage.
func (v *verifier) firstChangedLeaf(from, size int64) int64 {
	if v.changed == nil {
		v.changed = v.changedLeaves()
	}
	i := sort.Search(len(v.changed), func(i int) bool { return v.changed[i] >= from })
	if i < len(v.changed) && v.changed[i] < size {
		return v.changed[i]
	}
	return size
}

// changedLeaves compares every leaf's recomputed hash with its stored one,
// once, and returns the indexes that differ, ascending.
func (v *verifier) changedLeaves() []int64 {
	out := []int64{}
	const chunk = 512
	idx := make([]int64, 0, chunk)
	for start := int64(0); start < v.r.TreeSize; start += chunk {
		idx = idx[:0]
		for i := start; i < min(start+chunk, v.r.TreeSize); i++ {
			idx = append(idx, tlog.StoredHashIndex(0, i))
		}
		got, err := v.snap.Hashes(v.ctx, idx)
		for k := range idx {
			i := start + int64(k)
			if err != nil || !bytes.Equal(got[k], v.recordHash[i][:]) {
				out = append(out, i)
			}
		}
	}
	return out
}

// kept checks the auditor's kept checkpoint and proves consistency from it.
func (v *verifier) kept() error {
	if v.opts.Kept == nil {
		return nil
	}
	latest := v.latest
	k, err := OpenCheckpoint(v.opts.Kept, v.opts.Verifier)
	if err != nil {
		return fmt.Errorf("%w: kept checkpoint: %v", ErrVerify, err)
	}
	res := &KeptResult{Size: k.Size}
	v.r.Kept = res
	where := fmt.Sprintf("kept checkpoint at tree size %d", k.Size)
	if k.Size > v.r.TreeSize {
		v.problem(v.r.TreeSize, where, "the journal has only %d leaves: it was truncated or rolled back to an older copy", v.r.TreeSize)
		return nil
	}
	if k.Size == 0 {
		res.Consistent = true
		return nil
	}
	root, err := v.tree.root(k.Size)
	if err != nil {
		return err
	}
	if root != k.Root {
		first := v.firstChangedLeaf(0, k.Size)
		what := fmt.Sprintf("the journal no longer contains the log it committed to (rolled back or rewritten): leaf %d is the first whose content differs from its stored hash", first)
		if first >= k.Size {
			what = fmt.Sprintf("the journal no longer contains the log it committed to (rolled back or rewritten) in leaves 0..%d", k.Size-1)
			first = 0
		}
		v.problem(first, where, "%s", what)
		return nil
	}
	if latest == nil || latest.Size < k.Size {
		// Nothing signed to prove to; the recomputed prefix matched.
		res.Consistent, res.ProvedTo = true, k.Size
		return nil
	}
	proof, err := tlog.ProveTree(latest.Size, k.Size, &v.tree)
	if err != nil {
		return err
	}
	if err := tlog.CheckTree(proof, latest.Size, tlog.Hash(latest.Root), k.Size, tlog.Hash(k.Root)); err != nil {
		v.problem(k.Size, where, "no consistency proof to the latest checkpoint: %v", err)
		return nil
	}
	res.Consistent, res.ProvedTo, res.ProofHashes = true, latest.Size, len(proof)
	return nil
}

// frames recomputes each session's chain and checks it against the heads
// its segment and end leaves committed to.
func (v *verifier) frames() error {
	list, err := v.snap.Sessions(v.ctx)
	if err != nil {
		v.problem(v.r.TreeSize, "sessions table", "unreadable: %v", err)
	}
	byID := map[SessionID]storage.Session{}
	known := map[int64]bool{}
	for _, s := range list {
		var id SessionID
		if len(s.ID) != SessionIDSize {
			v.problem(v.r.TreeSize, fmt.Sprintf("sessions row %d", s.Num), "malformed session id")
			continue
		}
		copy(id[:], s.ID)
		byID[id] = s
		known[s.Num] = true
		if v.sessions[id] == nil && (v.opts.Session == nil || *v.opts.Session == id) {
			v.problem(v.r.TreeSize, "session "+uuid.UUID(id).String(), "listed in the sessions table but no leaf starts it (inserted)")
		}
	}
	if v.opts.Session == nil {
		nums, err := v.snap.FrameSessions(v.ctx)
		if err != nil {
			v.problem(v.r.TreeSize, "frames table", "unreadable: %v", err)
		}
		for _, n := range nums {
			if !known[n] {
				v.problem(v.r.TreeSize, fmt.Sprintf("frames of session number %d", n), "belong to no known session (inserted, or their session was deleted)")
			}
		}
	}
	total, err := v.snap.PayloadBytes(v.ctx)
	if err != nil {
		total = 0 // only for progress; the frames' own reads report damage
	}
	var done int64
	progress := func(n int) {
		done += int64(n)
		if v.opts.Progress != nil && done%(64<<20) < int64(n) {
			v.opts.Progress(done, total)
		}
	}
	for _, s := range v.order {
		if v.opts.Session != nil && *v.opts.Session != s.id {
			continue
		}
		row, ok := byID[s.id]
		if !ok {
			if len(s.segments) > 0 {
				v.problem(s.startLeaf, "session "+uuid.UUID(s.id).String(), "its frames are missing: the session was deleted from the sessions table")
			}
			continue
		}
		v.r.SessionsRead++
		if err := v.chain(s, row.Num, progress); err != nil {
			return err
		}
	}
	if v.opts.Session != nil && v.sessions[*v.opts.Session] == nil {
		v.problem(v.r.TreeSize, "session "+uuid.UUID(*v.opts.Session).String(), "no leaf of the journal starts it: it was never recorded here, or it was deleted")
	}
	if v.opts.Progress != nil {
		v.opts.Progress(done, total)
	}
	return nil
}

// chainJob is one frame on its way from the reader to the hasher.
type chainJob struct {
	f      Frame
	chain  []byte // the stored chain value (a hint)
	buf    *[]byte
	segEnd bool // the last frame of segment seg
	seg    int
}

// chain recomputes one session's chain and checks it against its segment
// and end leaves. Reading rows (SQLite, copying) and hashing run on two
// goroutines, so verification goes at about the speed of SHA-256 alone.
func (v *verifier) chain(s *sessionLeaves, num int64, progress func(int)) error {
	sid := uuid.UUID(s.id).String()
	if s.bad {
		return nil
	}
	jobs := make(chan chainJob, 64)
	var pool sync.Pool
	var stopped atomic.Bool // the hasher found a bad segment: stop reading
	var hashFail *Problem   // written by the hasher, read after it is done
	head := ChainSeed(s.id)
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		c := NewChainer(head)
		var hint *uint64 // first frame not matching its stored chain value
		for j := range jobs {
			if hashFail == nil {
				h := c.Add(&j.f)
				if hint == nil && !bytes.Equal(j.chain, h[:]) {
					seq := j.f.Seq
					hint = &seq
				}
				v.r.Frames++
				v.r.PayloadBytes += int64(len(j.f.Payload))
				progress(len(j.f.Payload))
				if j.segEnd {
					sg := s.segments[j.seg]
					if h != sg.Head {
						what := fmt.Sprintf("the chain over frames %d..%d does not match the head committed by this segment leaf", sg.First, sg.Last)
						if hint != nil {
							what += fmt.Sprintf("; frame %d is the first whose content differs from its stored chain value (a hint from the file: modified, inserted, reordered or re-timed)", *hint)
						}
						hashFail = &Problem{Leaf: s.segLeaf[j.seg], Where: fmt.Sprintf("leaf %d (segment of session %s)", s.segLeaf[j.seg], sid), What: what}
						stopped.Store(true)
					}
					hint = nil
				}
			}
			pool.Put(j.buf)
		}
		head = c.Head()
	}()

	var expect uint64 = 1
	seg := 0
	var readFail *Problem // the first problem the reader found
	stop := errors.New("stop")
	fail := func(leaf int64, where, format string, args ...any) error {
		readFail = &Problem{Leaf: leaf, Where: where, What: fmt.Sprintf(format, args...)}
		return stop
	}
	segLeaf := func() int64 {
		if seg < len(s.segLeaf) {
			return s.segLeaf[seg]
		}
		return v.r.TreeSize
	}
	err := v.snap.Frames(v.ctx, num, func(sf *storage.Frame) error {
		if stopped.Load() {
			return stop
		}
		seq := uint64(sf.Seq)
		where := fmt.Sprintf("session %s frame %d", sid, seq)
		switch {
		case sf.Seq < 1:
			return fail(segLeaf(), where, "invalid sequence number")
		case seq < expect:
			return fail(segLeaf(), where, "appears twice (inserted)")
		case seq > expect:
			return fail(segLeaf(), fmt.Sprintf("session %s frame %d", sid, expect), "missing: frames jump from %d to %d (deleted)", expect-1, seq)
		}
		if seg >= len(s.segments) {
			return fail(v.r.TreeSize, where, "no segment leaf commits it (inserted after the last commit)")
		}
		if len(sf.Payload) > MaxPayload {
			return fail(segLeaf(), where, "payload of %d bytes exceeds %d", len(sf.Payload), MaxPayload)
		}
		if Kind(sf.Kind) == KindResize {
			if _, _, err := ParseResize(sf.Payload); err != nil {
				return fail(segLeaf(), where, "%v", err)
			}
		}
		buf, _ := pool.Get().(*[]byte)
		if buf == nil {
			buf = new([]byte)
		}
		*buf = append(append((*buf)[:0], sf.Payload...), sf.Chain...)
		n := len(sf.Payload)
		j := chainJob{
			f:     Frame{Session: s.id, Seq: seq, Kind: Kind(sf.Kind), Channel: sf.Channel, MonoNS: sf.MonoNS, WallNS: sf.WallNS, Payload: (*buf)[:n:n]},
			chain: (*buf)[n:], buf: buf, seg: seg, segEnd: seq == s.segments[seg].Last,
		}
		if j.segEnd {
			seg++
		}
		expect++
		jobs <- j
		return nil
	})
	close(jobs)
	<-hashed
	if hashFail != nil {
		// The hasher only saw frames before any the reader rejected.
		v.r.Problems = append(v.r.Problems, *hashFail)
		return nil
	}
	if readFail != nil {
		v.r.Problems = append(v.r.Problems, *readFail)
		return nil
	}
	if err != nil && !errors.Is(err, stop) {
		// A row that cannot be read as a frame is damage to that session.
		v.problem(segLeaf(), "session "+sid, "frames unreadable after frame %d: %v", expect-1, err)
		return nil
	}
	if seg < len(s.segments) {
		sg := s.segments[seg]
		v.problem(s.segLeaf[seg], fmt.Sprintf("session %s frames %d..%d", sid, expect, sg.Last), "missing: committed by leaf %d but not in the journal (deleted)", s.segLeaf[seg])
		return nil
	}
	if s.end != nil && s.end.Head != head {
		v.problem(s.endLeaf, fmt.Sprintf("leaf %d (session-end of session %s)", s.endLeaf, sid), "its chain head does not match the session's frames")
	}
	return nil
}

// String renders a hash in base64, as checkpoints do.
func (h Hash) String() string { return tlog.Hash(h).String() }

// ByteCount formats n bytes in binary units, as the reports print sizes:
// "512 B", "1.5 KiB", "2.0 GiB".
func ByteCount(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
