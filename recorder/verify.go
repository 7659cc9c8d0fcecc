package recorder

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/recorder/events"
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
	// Witnesses, when it has keys, are the witnesses the auditor
	// trusts: verification checks their cosignatures on the published
	// checkpoints and finds the witnessed size ([Report.Witnessed]).
	Witnesses Witnesses
	// Live says that a running writer holds the journal (the caller
	// knows: a server answers for it): it pushes its checkpoints to the
	// witnesses, so leaves not witnessed yet are reported, not a problem.
	Live bool
	// UnwitnessedFacts reports the leaves no witnessed checkpoint covers
	// in [Report.Witnessed] only, never as problems, live or not: for
	// the evidence report, whose anchor turns amber on them instead.
	// Forged cosignature lines are problems all the same.
	UnwitnessedFacts bool
	// Member is the log's member ID in a cluster (1 to 65535): every
	// serial and grant number must carry it (step 10). Zero outside a
	// cluster: they must all carry the ID the log's first one carries.
	Member uint16
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

	// index is set for a problem of an index column or table, which
	// proves no record bad: among the problems of one leaf, it comes
	// after those that do.
	index bool
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
	// Witnessed is what the witnesses given cosigned, when any are.
	Witnessed *WitnessReport `json:"witnessed,omitempty"`

	// Unterminated sessions have no end leaf: the recorder crashed or is
	// still running. Not tampering by itself.
	Unterminated []SessionSummary `json:"unterminated"`
	// Abandoned sessions were closed by a later writer after a crash.
	Abandoned []SessionSummary `json:"abandoned"`

	// Problems, first bad record first. Empty when the journal is intact.
	Problems []Problem `json:"problems"`

	// SignedBy names the key ("NAME KEYHASH") that signed the journal's
	// checkpoints when there are some and not one is signed by the key
	// given: most likely the auditor holds another journal's key. It is
	// the first problem's finding, said apart for a reader that wants to
	// say it in one line; "" otherwise. Not part of the JSON.
	SignedBy string `json:"-"`
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

// Verify recomputes a journal from its stored records and checks it against
// its signed checkpoints, using only the auditor's key. It reads one
// consistent snapshot, so it may run while a writer appends.
func Verify(ctx context.Context, store storage.Store, opts VerifyOptions) (*Report, error) {
	if opts.Verifier == nil {
		return nil, fmt.Errorf("%w: the journal's public key is required", ErrVerify)
	}
	if err := opts.Witnesses.Check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	snap, err := store.Snapshot(ctx)
	if errors.Is(err, storage.ErrNotJournal) {
		// The file's content, not a failure to run.
		return &Report{Origin: opts.Verifier.Name(), Unterminated: []SessionSummary{}, Abandoned: []SessionSummary{},
			Problems: []Problem{{Leaf: -1, Where: "journal file", What: err.Error()}}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	defer snap.Close()
	return VerifySnapshot(ctx, snap, opts)
}

// VerifySnapshot is [Verify] on a snapshot the caller holds, so that what
// it reads next is what was verified.
func VerifySnapshot(ctx context.Context, snap storage.Snapshot, opts VerifyOptions) (*Report, error) {
	if opts.Verifier == nil {
		return nil, fmt.Errorf("%w: the journal's public key is required", ErrVerify)
	}
	if err := opts.Witnesses.Check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	v := &verifier{ctx: ctx, snap: snap, opts: opts, r: &Report{Unterminated: []SessionSummary{}, Abandoned: []SessionSummary{}, Problems: []Problem{}}}
	if err := v.run(); err != nil {
		return nil, err
	}
	sortProblems(v.r.Problems)
	return v.r, nil
}

type verifier struct {
	ctx  context.Context
	snap storage.Snapshot
	opts VerifyOptions
	r    *Report
	tree memTree // the tree recomputed from the leaves
	// recordHash is each leaf's recomputed hash, to localize damage;
	// wall each leaf's wall_ns, which checkpoint rows are stamped with.
	recordHash []tlog.Hash
	wall       []int64
	rules      logRules
	rows       map[SessionID]storage.Session // the sessions table, by ID
	// late are problems found before the tree size, where they are
	// located, was known.
	late       []Problem
	latest     *Checkpoint // the latest valid checkpoint, nil when none
	changed    []int64     // leaves whose stored hash differs; nil until needed
	foreignKey string      // a key other than the auditor's that signed a checkpoint
	// published are the valid published checkpoints, in increasing
	// size, whose cosignatures the witness step checks.
	published []publishedCheckpoint
	// readsFrom is the first of the trailing leaves that are all reads
	// a reader recorded itself (isReaderRead), -1 while reading leaves
	// when the last one is not; the tree size when there are none.
	readsFrom int64
}

func (v *verifier) problem(leaf int64, where, format string, args ...any) {
	v.r.Problems = append(v.r.Problems, Problem{Leaf: leaf, Where: where, What: fmt.Sprintf(format, args...)})
}

// indexProblem is problem for an index column or table.
func (v *verifier) indexProblem(leaf int64, where, format string, args ...any) {
	v.r.Problems = append(v.r.Problems, Problem{Leaf: leaf, Where: where, What: fmt.Sprintf(format, args...), index: true})
}

// sortProblems orders problems by the leaf they concern; among those of
// one leaf, problems of records before those of the index, and otherwise
// in the order they were found.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(a, b int) bool {
		if ps[a].Leaf != ps[b].Leaf {
			return ps[a].Leaf < ps[b].Leaf
		}
		return !ps[a].index && ps[b].index
	})
}

func (v *verifier) run() error {
	v.r.Origin = v.opts.Verifier.Name()
	if problems, err := v.snap.CheckFile(v.ctx); err != nil {
		v.problem(-1, "journal file", "unreadable: %v", err)
	} else {
		for _, p := range problems {
			v.problem(-1, "journal file", "%s", p)
		}
	}
	meta, err := v.snap.Meta(v.ctx)
	if err != nil {
		v.problem(-1, "journal metadata", "unreadable: %v", err)
		meta = map[string]string{}
	}
	v.sessionRows()
	if err := v.leaves(); err != nil {
		return err
	}
	rows, signedByKey, err := v.checkpoints()
	if err != nil {
		return err
	}
	// The metadata is not signed, so it decides nothing: the auditor's key
	// names the log, and a journal that does not verify under it fails,
	// whether the key is wrong or the journal was replaced. When no
	// checkpoint carries the key's signature, say which key signed them.
	if rows > 0 && signedByKey == 0 {
		by := "no key at all (no well-formed signature line)"
		if v.foreignKey != "" {
			by = v.foreignKey
			v.r.SignedBy = v.foreignKey
		}
		v.problem(-1, "journal", "no checkpoint is signed by the key given (%s, key hash %08x); they are signed by %s: either the key is not this journal's, or its checkpoints were replaced",
			v.r.Origin, v.opts.Verifier.KeyHash(), by)
	}
	if f := meta[MetaFormat]; f != FormatVersion {
		v.problem(-1, "journal metadata", "format is %q, want %q (the records are checked as %s)", f, FormatVersion, FormatVersion)
	}
	if o := meta[MetaOrigin]; o != v.r.Origin {
		v.problem(-1, "journal metadata", "names log %q, but the key given is for log %q: either the key is not this journal's, or the metadata was changed", o, v.r.Origin)
	} else if k := meta[MetaKey]; !sameVerifierKey(k, v.opts.Verifier) {
		v.problem(-1, "journal metadata", "its verifier_key is %q, not the key given: either the key is not this journal's, or the metadata was changed", k)
	}
	if err := v.kept(); err != nil {
		return err
	}
	v.witnessed()
	v.treeHashes()
	if err := v.frames(); err != nil {
		return err
	}
	return v.serials()
}

// sameVerifierKey reports whether vkey is the encoded form of v: the same
// text when v was parsed by [ParseVerifierKey], else the same name and
// key hash.
func sameVerifierKey(vkey string, v note.Verifier) bool {
	if k, ok := v.(*VerifierKey); ok {
		return vkey == k.Text
	}
	w, err := ParseVerifierKey(vkey)
	return err == nil && w.Name() == v.Name() && w.KeyHash() == v.KeyHash()
}

// sessionRows reads the sessions table, the map from session IDs to the
// numbers their rows are filed under. Rows that map nothing are problems.
func (v *verifier) sessionRows() {
	rows, err := v.snap.Sessions(v.ctx)
	if err != nil {
		v.late = append(v.late, Problem{Where: "sessions table", What: fmt.Sprintf("unreadable: %v", err), index: true})
	}
	var faults []Problem
	v.rows, faults = mapSessionRows(rows)
	v.late = append(v.late, faults...)
}

// leaves recomputes the tree from the leaves table, checks each leaf's
// index columns, and collects each session's segments.
func (v *verifier) leaves() error {
	v.rules = logRules{sessions: map[SessionID]*LogSession{}, keepSegments: true}
	v.readsFrom = -1
	var next int64
	err := v.snap.Leaves(v.ctx, math.MinInt64, math.MaxInt64, func(sl storage.Leaf) error {
		if sl.Index < 0 {
			// Not a leaf of the log, which starts at 0: listed, and
			// left out.
			v.late = append(v.late, strayLeafRow(sl.Index))
			return nil
		}
		if sl.Index != next {
			if sl.Index > next {
				v.problem(next, fmt.Sprintf("leaf %d", next), "missing: the log jumps from leaf %d to leaf %d (deleted)", next-1, sl.Index)
			} else {
				v.problem(next, fmt.Sprintf("leaf %d", next), "a row with index %d stands where leaf %d belongs", sl.Index, next)
			}
			return errStopLeaves
		}
		v.recordHash = append(v.recordHash, v.tree.add(sl.Data))
		v.wall = append(v.wall, leafWall(sl.Data))
		v.leaf(next, sl)
		next++
		return nil
	})
	if err != nil && !errors.Is(err, errStopLeaves) {
		v.problem(next, fmt.Sprintf("leaf %d", next), "unreadable: %v", err)
	}
	v.r.TreeSize = next
	if v.readsFrom < 0 {
		v.readsFrom = next
	}
	if next > 0 {
		root, err := v.tree.root(next)
		if err != nil {
			return err
		}
		v.r.Root = root.String()
	}
	atStart, faults := checkSessionRows(v.rules.order, v.rules.sessions, v.rows, math.MaxInt64)
	v.r.Problems = append(v.r.Problems, atStart...)
	for _, p := range append(v.late, faults...) {
		p.Leaf = next
		v.r.Problems = append(v.r.Problems, p)
	}
	for _, s := range v.rules.order {
		sum := SessionSummary{ID: uuid.UUID(s.ID).String(), StartLeaf: s.StartIndex, EndLeaf: -1, Frames: s.Frames}
		if s.End == nil {
			v.r.Unterminated = append(v.r.Unterminated, sum)
			continue
		}
		sum.EndLeaf, sum.Reason = s.EndIndex, s.End.Attrs["reason"]
		if sum.Reason == events.EndAbandoned {
			v.r.Abandoned = append(v.r.Abandoned, sum)
		}
	}
	v.r.Sessions = len(v.rules.order)
	return nil
}

var errStopLeaves = errors.New("stop")

// leafWall reads a leaf encoding's wall_ns, or 0 when it is too short to
// have one (ParseLeaf reports that).
func leafWall(data []byte) int64 {
	if len(data) < len(leafMagic)+9 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(data[len(leafMagic)+1:]))
}

func (v *verifier) leaf(idx int64, sl storage.Leaf) {
	l, err := ParseLeaf(sl.Data)
	if err != nil {
		v.readsFrom = -1
		v.problem(idx, fmt.Sprintf("leaf %d", idx), "%v", err)
		return
	}
	switch {
	case !isReaderRead(l):
		v.readsFrom = -1
	case v.readsFrom < 0:
		v.readsFrom = idx
	}
	if l.Type == LeafEvent {
		v.r.Events++
	}
	s, problem := v.rules.add(idx, l)
	if problem != "" {
		v.problem(idx, leafWhere(idx, l), "%s", problem)
	}
	if s != nil && s.StartIndex == idx && problem == "" {
		s.Num = rowNum(v.rows, s.ID)
	}
	if fault := indexFault(sl, l, s); fault != "" {
		v.indexProblem(idx, leafWhere(idx, l), "%s", fault)
	}
}

// checkpoints checks every stored checkpoint's signature, root and time.
// It returns how many rows it checked, and how many carry a signature line
// by the auditor's key, valid or not.
func (v *verifier) checkpoints() (int, int, error) {
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
		where     string
		published bool
	}
	var all []stored
	for _, c := range published {
		all = append(all, stored{c, fmt.Sprintf("checkpoint at tree size %d", c.TreeSize), true})
	}
	switch {
	case head != nil:
		all = append(all, stored{*head, fmt.Sprintf("head checkpoint at tree size %d", head.TreeSize), false})
		if head.TreeSize != v.r.TreeSize {
			v.problem(v.r.TreeSize, fmt.Sprintf("head checkpoint at tree size %d", head.TreeSize), "the head must cover every leaf, and the journal has %d", v.r.TreeSize)
		}
	case err == nil && v.r.TreeSize > 0:
		v.problem(v.r.TreeSize, "head checkpoint", "missing: every commit stores one that covers all %d leaves", v.r.TreeSize)
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
			v.problem(v.r.TreeSize, sc.where, "a checkpoint of the empty tree: the writer never signs one")
			continue
		}
		root, err := v.tree.root(c.Size)
		if err != nil {
			return 0, 0, err
		}
		if root != c.Root {
			if first := v.firstChangedLeaf(validBelow, c.Size); first < c.Size {
				v.problem(first, sc.where, "the recomputed root of leaves 0..%d differs from the signed root: leaf %d is the first whose content differs from the hash stored for it (a hint from the file: modified, inserted or reordered)", c.Size-1, first)
			} else {
				v.problem(validBelow, sc.where, "the recomputed root of leaves 0..%d differs from the signed root: the change is in leaves %d..%d (the stored hashes were rewritten too, so it cannot be narrowed further)", c.Size-1, validBelow, c.Size-1)
			}
			continue
		}
		// The row's time is the wall time of the last leaf it covers:
		// they are written in the same commit.
		if w := v.wall[c.Size-1]; sc.CreatedNS != w {
			v.indexProblem(v.r.TreeSize, sc.where, "created_ns is %d, but the last leaf it covers (%d) was committed at %d", sc.CreatedNS, c.Size-1, w)
		}
		v.r.Checkpoints++
		validBelow = c.Size
		if sc.published {
			v.published = append(v.published, publishedCheckpoint{size: c.Size, note: sc.Note})
		}
		if v.latest == nil || c.Size >= v.latest.Size {
			cc := c
			v.latest, latestNote = &cc, sc.Note
		}
	}
	if v.latest != nil {
		v.r.Covered = v.latest.Size
		v.r.Latest = string(latestNote)
	}
	return len(all), signedByKey, nil
}

// uncovered reports the leaves no valid checkpoint (or the kept one)
// covers. Not proven bad, only unprotected: listed after any record that is.
func (v *verifier) uncovered() {
	v.r.Uncovered = v.r.TreeSize - v.r.Covered
	if v.r.Uncovered == 0 {
		return
	}
	if v.r.Covered == 0 {
		v.problem(v.r.TreeSize, "journal", "no valid signed checkpoint: none of its %d leaves is covered by a signature", v.r.TreeSize)
		return
	}
	v.problem(v.r.TreeSize, fmt.Sprintf("leaves %d..%d", v.r.Covered, v.r.TreeSize-1), "not covered by any valid signed checkpoint (the latest valid one covers %d leaves)", v.r.Covered)
}

// keyID names the auditor's key as signature lines do.
func (v *verifier) keyID() string { return signerID(v.opts.Verifier) }

// signerID names a key as noteSigners does: "name hash".
func signerID(v note.Verifier) string { return fmt.Sprintf("%s %08x", v.Name(), v.KeyHash()) }

// noteSigners lists the keys ("name hash") a note's signature lines claim,
// without verifying them.
func noteSigners(msg []byte) map[string]bool {
	out := map[string]bool{}
	lines, _ := signatureLines(msg)
	for _, l := range lines {
		if raw, err := base64.StdEncoding.DecodeString(l.sig); err == nil && len(raw) >= 5 {
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
// A kept checkpoint that matches the recomputed tree covers its leaves,
// as a stored one does. It then reports what nothing covers.
func (v *verifier) kept() error {
	defer v.uncovered()
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
		v.problem(v.r.TreeSize, where, "the journal has only %d leaves: it was rolled back to an older copy (or truncated): leaves %d..%d that the kept checkpoint commits to are gone", v.r.TreeSize, v.r.TreeSize, k.Size-1)
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
		what := fmt.Sprintf("the journal is not an extension of the kept checkpoint: it was rewritten, or rolled back and written again (a fork): leaf %d is the first whose content differs from its stored hash", first)
		if first >= k.Size {
			what = fmt.Sprintf("the journal is not an extension of the kept checkpoint: it was rewritten, or rolled back and written again (a fork), in leaves 0..%d", k.Size-1)
			first = 0
		}
		v.problem(first, where, "%s", what)
		return nil
	}
	if latest == nil || latest.Size <= k.Size {
		// Nothing larger is signed to prove to: the recomputed root at
		// its size is its root, and it covers those leaves.
		res.Consistent, res.ProvedTo = true, k.Size
		if k.Size > v.r.Covered {
			v.r.Covered = k.Size
			if latest == nil || latest.Size < k.Size {
				v.r.Latest = string(v.opts.Kept)
			}
		}
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

// treeHashes compares the stored tree hashes with the recomputed tree:
// a cache for proofs and for the writer, every row must be the hash it
// claims to be, and none may be missing or added.
func (v *verifier) treeHashes() {
	want := int64(len(v.tree.hashes))
	var bad, extra, missing, first int64 = 0, 0, 0, -1
	var next int64
	err := v.snap.TreeHashes(v.ctx, func(idx int64, h []byte) error {
		for ; next < idx && next < want; next++ {
			missing++
			if first < 0 {
				first = next
			}
		}
		switch {
		case idx >= want || idx < next:
			extra++
		case !bytes.Equal(h, v.tree.hashes[idx][:]):
			bad++
			if first < 0 {
				first = idx
			}
		}
		next = max(next, idx+1)
		return nil
	})
	if err != nil {
		v.problem(v.r.TreeSize, "tree_hashes table", "unreadable: %v", err)
		return
	}
	for ; next < want; next++ {
		missing++
		if first < 0 {
			first = next
		}
	}
	if bad+missing+extra == 0 {
		return
	}
	where := "tree_hashes table"
	if first >= 0 {
		level, n := tlog.SplitStoredHashIndex(first)
		where = fmt.Sprintf("stored tree hash %d (level %d, leaves %d..%d)", first, level, n<<level, (n+1)<<level-1)
	}
	v.indexProblem(v.r.TreeSize, where, "the stored hashes do not match the tree recomputed from the leaves: %d differ, %d missing, %d extra (a cache for proofs, rewritten or damaged)", bad, missing, extra)
}

// frames recomputes each session's chain and checks it against the heads
// its segment and end leaves committed to.
func (v *verifier) frames() error {
	known := map[int64]bool{}
	for _, r := range v.rows {
		known[r.Num] = true
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
	for _, s := range v.rules.order {
		if v.opts.Session != nil && *v.opts.Session != s.ID {
			continue
		}
		row, ok := v.rows[s.ID]
		if !ok {
			continue // reported with its start leaf
		}
		v.r.SessionsRead++
		if err := v.chain(s, row.Num, progress); err != nil {
			return err
		}
	}
	if v.opts.Session != nil && v.rules.sessions[*v.opts.Session] == nil {
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
// and end leaves, and each frame against the rules of its kind. Reading
// rows (SQLite, copying) and hashing run on two goroutines, so
// verification goes at about the speed of SHA-256 alone.
func (v *verifier) chain(s *LogSession, num int64, progress func(int)) error {
	sid := uuid.UUID(s.ID).String()
	if s.bad {
		return nil
	}
	jobs := make(chan chainJob, 64)
	var pool sync.Pool
	var stopped atomic.Bool // the hasher found a bad segment: stop reading
	var hashFail *Problem   // written by the hasher, read after it is done
	var hintFail *Problem   // a stored chain value that is not c_i, in a segment that verified
	head := ChainSeed(s.ID)
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
					where := fmt.Sprintf("leaf %d (segment of session %s)", s.segLeaf[j.seg], sid)
					switch {
					case h != sg.Head:
						what := fmt.Sprintf("the chain over frames %d..%d does not match the head committed by this segment leaf", sg.First, sg.Last)
						if hint != nil {
							what += fmt.Sprintf("; frame %d is the first whose content differs from its stored chain value (a hint from the file: modified, inserted, reordered or re-timed)", *hint)
						}
						hashFail = &Problem{Leaf: s.segLeaf[j.seg], Where: where, What: what}
						stopped.Store(true)
					case hint != nil && hintFail == nil:
						hintFail = &Problem{Leaf: s.segLeaf[j.seg], Where: fmt.Sprintf("session %s frame %d", sid, *hint),
							What: "its stored chain value is not the recomputed c_i, though the frames verify: the chain column was changed", index: true}
					}
					hint = nil
				}
			}
			pool.Put(j.buf)
		}
		head = c.Head()
	}()

	var expect uint64 = 1
	var rules frameRules // the reader's: it counts the frames it hands on
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
		if err := rules.next(Kind(sf.Kind), sf.MonoNS, sf.Payload); err != nil {
			return fail(segLeaf(), where, "%v", err)
		}
		buf, _ := pool.Get().(*[]byte)
		if buf == nil {
			buf = new([]byte)
		}
		*buf = append(append((*buf)[:0], sf.Payload...), sf.Chain...)
		n := len(sf.Payload)
		j := chainJob{
			f:     Frame{Session: s.ID, Seq: seq, Kind: Kind(sf.Kind), Channel: sf.Channel, MonoNS: sf.MonoNS, WallNS: sf.WallNS, Payload: (*buf)[:n:n]},
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
	switch {
	case hashFail != nil:
		// The hasher only saw frames before any the reader rejected.
		v.r.Problems = append(v.r.Problems, *hashFail)
		return nil
	case readFail != nil:
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
	if hintFail != nil {
		v.r.Problems = append(v.r.Problems, *hintFail)
	}
	if s.End != nil {
		where := fmt.Sprintf("leaf %d (session-end of session %s)", s.EndIndex, sid)
		if s.End.Head != head {
			v.problem(s.EndIndex, where, "its chain head does not match the session's frames")
		}
		if what := rules.counts.check(s.End.Attrs); what != "" {
			v.problem(s.EndIndex, where, "%s", what)
		}
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
