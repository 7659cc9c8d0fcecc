package recorder

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/google/uuid"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/storage"
)

// ErrLogDamaged wraps every reason [ReadLog] does not return a log: a
// leaf missing, malformed or out of the order of section 6.3, leaves that
// do not hash to the signed root, a checkpoint that does not open with the
// key. The returned error is a *LogError naming the first bad record.
var ErrLogDamaged = errors.New("the journal's log does not verify")

// LogError is what [ReadLog] found first. Leaf locates it as a verify
// [Problem] does.
type LogError struct {
	Problem
}

func (e *LogError) Error() string { return e.Where + ": " + e.What }
func (e *LogError) Unwrap() error { return ErrLogDamaged }

// Log is a journal's log of leaves, read whole and proven: every leaf
// hashed into the tree whose root a checkpoint signed by the key commits
// to, decoded, and in the order of section 6.3. It is what the commands
// that list (sessions, certificates, grants) and the writer resuming a
// journal rely on, instead of the index columns beside the leaves.
type Log struct {
	// Checkpoint is the signed checkpoint the leaves were proven against,
	// Note its signed note; Size is the number of leaves read.
	Checkpoint Checkpoint
	Note       []byte
	// Sessions are the sessions the log starts, in the order it starts
	// them.
	Sessions []*LogSession
	// Events are the event leaves ReadLogOptions.Events selected, in
	// index order.
	Events []LogEvent
	// IndexProblems are the index columns (leaves.type, session, event;
	// the rows of the sessions table) that do not match the leaves: the
	// log verified, what only helps to find it was changed. Readers
	// present the leaves, and say so first.
	IndexProblems []Problem
	// Roots holds the root of the tree of the first n leaves, for each n
	// of ReadLogOptions.RootsAt within the log.
	Roots map[int64]Hash

	byID  map[SessionID]*LogSession
	walls []int64 // each leaf's wall_ns, when ReadLogOptions.Walls
	// frontier holds the roots of the complete subtrees of the tree, by
	// their stored-hash index (tlog's layout): what a writer extends.
	frontier map[int64]tlog.Hash
}

// WallNS is the wall_ns of leaf idx, when the log was read with
// ReadLogOptions.Walls; 0 otherwise.
func (l *Log) WallNS(idx int64) int64 {
	if idx < 0 || idx >= int64(len(l.walls)) {
		return 0
	}
	return l.walls[idx]
}

// Size is the number of leaves the log holds.
func (l *Log) Size() int64 { return l.Checkpoint.Size }

// LogSession is one session as its leaves say.
type LogSession struct {
	ID SessionID
	// Num is the number the session's rows are filed under, from the
	// sessions table (cross-checked); -1 when it has no row.
	Num        int64
	Start      *Leaf
	StartIndex int64
	// Frames and Head are what its last segment commits: the frames
	// recorded and the chain head after them (0 and c_0 without one).
	Frames      uint64
	Head        Hash
	LastSegment int64 // index of the last segment leaf, -1 when none
	// End is nil while the session is unterminated.
	End      *Leaf
	EndIndex int64

	// Kept only for verification (logRules.keepSegments).
	segments []Leaf
	segLeaf  []int64
	bad      bool // a leaf-level problem was found: later leaves are not checked
}

// LogEvent is an event leaf and its index.
type LogEvent struct {
	Index int64
	Leaf  *Leaf
}

// ReadLogOptions configure [ReadLog].
type ReadLogOptions struct {
	// Verifier is the journal's public key. Required.
	Verifier note.Verifier
	// Checkpoint, when set, is the signed checkpoint to read up to and
	// prove against; by default the journal's head checkpoint, which
	// must then cover every leaf.
	Checkpoint []byte
	// Events selects the event leaves kept in Log.Events; nil keeps none.
	Events func(name string) bool
	// RootsAt asks for the roots of the trees of the first n leaves, for
	// each n (Log.Roots): the sizes of checkpoints to compare with.
	RootsAt []int64
	// Walls keeps every leaf's wall_ns, for Log.WallNS.
	Walls bool
}

// EventNames selects events by name, for ReadLogOptions.Events.
func EventNames(names ...string) func(string) bool {
	return func(n string) bool { return slices.Contains(names, n) }
}

// ReadLog reads the log of snap, checks it as section 10.3 of
// docs/journal-format.md says, and returns it. It reads every leaf but no
// frame: "bastion verify" checks those. What does not verify is returned
// as a *LogError wrapping [ErrLogDamaged]; index columns that do not
// match the leaves are not an error, but Log.IndexProblems.
func ReadLog(ctx context.Context, snap storage.Snapshot, opts ReadLogOptions) (*Log, error) {
	if opts.Verifier == nil {
		return nil, errors.New("recorder: the journal's public key is required")
	}
	log := &Log{byID: map[SessionID]*LogSession{}, Roots: map[int64]Hash{}}
	broken := func(leaf int64, where, format string, args ...any) error {
		return &LogError{Problem{Leaf: leaf, Where: where, What: fmt.Sprintf(format, args...)}}
	}
	// What the file holds decides a verdict, never "could not run": a
	// row that cannot be read is a finding like any other.
	count, err := snap.TreeSize(ctx)
	if err != nil {
		return nil, broken(0, "leaves table", "unreadable: %v", err)
	}
	note, which := opts.Checkpoint, "checkpoint"
	var head *storage.Checkpoint // the head row, when the log is read against it
	if note == nil {
		if head, err = snap.Head(ctx); err != nil {
			return nil, broken(count, "head checkpoint", "unreadable: %v", err)
		}
		if head == nil {
			if count > 0 {
				return nil, broken(count, "head checkpoint", "missing: none of the journal's %d leaves is covered by a signature", count)
			}
			return log, nil
		}
		note, which = head.Note, "head checkpoint"
	}
	c, err := OpenCheckpoint(note, opts.Verifier)
	if err != nil {
		return nil, broken(count, which, "%v", err)
	}
	if head != nil {
		if c.Size != head.TreeSize {
			return nil, broken(count, "head checkpoint", "stored as tree size %d, but the signed note says %d", head.TreeSize, c.Size)
		}
		if c.Size < count {
			return nil, broken(count, fmt.Sprintf("leaves %d..%d", c.Size, count-1), "not covered by the head checkpoint (size %d)", c.Size)
		}
	}
	if c.Size > count {
		return nil, broken(count, fmt.Sprintf("checkpoint at tree size %d", c.Size), "commits to %d leaves but the journal has %d: leaves %d..%d are missing (truncated)", c.Size, count, count, c.Size-1)
	}
	log.Checkpoint, log.Note = c, note

	rows, err := snap.Sessions(ctx)
	if err != nil {
		return nil, broken(count, "sessions table", "unreadable: %v", err)
	}
	byID, faults := mapSessionRows(rows)
	log.addIndexProblems(count, faults)

	rules := logRules{sessions: log.byID}
	tree := NewTree()
	var failure error
	var next int64
	stop := errors.New("stop")
	var stray []int64 // rows at negative indexes: no leaf of the log
	err = snap.Leaves(ctx, math.MinInt64, c.Size, func(sl storage.Leaf) error {
		if sl.Index < 0 {
			stray = append(stray, sl.Index)
			return nil
		}
		if sl.Index != next {
			failure = broken(next, fmt.Sprintf("leaf %d", next), "missing: the log jumps from leaf %d to leaf %d (deleted)", next-1, sl.Index)
			return stop
		}
		tree.Add(sl.Data)
		if slices.Contains(opts.RootsAt, next+1) {
			log.Roots[next+1] = tree.Root()
		}
		l, err := ParseLeaf(sl.Data)
		if err != nil {
			failure = broken(next, fmt.Sprintf("leaf %d", next), "%v", err)
			return stop
		}
		if opts.Walls {
			log.walls = append(log.walls, l.WallNS)
		}
		if next+1 == c.Size && head != nil && head.CreatedNS != l.WallNS {
			// The next commit replaces the head row: its time must be
			// checked now, or a writer would erase the change.
			log.indexProblem(count, "head checkpoint", "created_ns is %d, but the last leaf it covers (%d) was committed at %d", head.CreatedNS, next, l.WallNS)
		}
		s, problem := rules.add(next, l)
		if problem != "" {
			failure = broken(next, leafWhere(next, l), "%s", problem)
			return stop
		}
		if s != nil && s.StartIndex == next {
			s.Num = rowNum(byID, s.ID)
			log.Sessions = append(log.Sessions, s)
		}
		if fault := indexFault(sl, l, s); fault != "" {
			log.indexProblem(next, leafWhere(next, l), "%s", fault)
		}
		if l.Type == LeafEvent && opts.Events != nil && opts.Events(l.Event) {
			log.Events = append(log.Events, LogEvent{Index: next, Leaf: l})
		}
		next++
		return nil
	})
	if failure != nil {
		return nil, failure
	}
	if err != nil {
		return nil, broken(next, fmt.Sprintf("leaf %d", next), "unreadable: %v", err)
	}
	if next != c.Size {
		return nil, broken(next, fmt.Sprintf("leaf %d", next), "missing: the log ends at leaf %d, the checkpoint commits to %d leaves", next-1, c.Size)
	}
	if c.Size > 0 && tree.Root() != c.Root {
		return nil, broken(c.Size, fmt.Sprintf("checkpoint at tree size %d", c.Size), "the leaves do not hash to its signed root: a leaf was changed, inserted, removed or reordered (\"bastion verify\" locates it)")
	}
	log.frontier = tree.frontier()

	// Against an older checkpoint (the evidence report's), later
	// sessions have rows; against the head, every row has its session.
	within := int64(math.MaxInt64)
	if opts.Checkpoint != nil {
		within = c.Size
	}
	rowProblems, rowFaults := checkSessionRows(log.Sessions, log.byID, byID, within)
	log.IndexProblems = append(log.IndexProblems, rowProblems...)
	log.addIndexProblems(count, rowFaults)
	for _, idx := range stray {
		log.addIndexProblems(count, []Problem{strayLeafRow(idx)})
	}
	slices.SortStableFunc(log.IndexProblems, func(a, b Problem) int { return cmp.Compare(a.Leaf, b.Leaf) })
	return log, nil
}

func (l *Log) indexProblem(leaf int64, where, format string, args ...any) {
	l.IndexProblems = append(l.IndexProblems, Problem{Leaf: leaf, Where: where, What: fmt.Sprintf(format, args...), index: true})
}

// addIndexProblems adds problems that prove no record bad, at the tree size.
func (l *Log) addIndexProblems(size int64, ps []Problem) {
	for _, p := range ps {
		p.Leaf = size
		l.IndexProblems = append(l.IndexProblems, p)
	}
}

// mapSessionRows maps the rows of the sessions table by the session ID
// they hold. A row that maps nothing (a damaged row, an ID of the wrong
// size, a second row for one ID: the first in num order stands) is a
// problem, returned without its location: the tree size.
func mapSessionRows(rows []storage.Session) (map[SessionID]storage.Session, []Problem) {
	byID := map[SessionID]storage.Session{}
	var faults []Problem
	fault := func(r storage.Session, format string, args ...any) {
		faults = append(faults, Problem{Where: fmt.Sprintf("sessions row %d", r.Num), What: fmt.Sprintf(format, args...), index: true})
	}
	for _, r := range rows {
		if r.Corrupt != "" {
			fault(r, "%s", r.Corrupt)
			continue
		}
		if len(r.ID) != SessionIDSize {
			fault(r, "its id has %d bytes, not %d", len(r.ID), SessionIDSize)
			continue
		}
		id := SessionID(r.ID)
		if _, dup := byID[id]; dup {
			fault(r, "a second row for session %s", uuid.UUID(id))
			continue
		}
		byID[id] = r
	}
	return byID, faults
}

// checkSessionRows cross-checks the sessions table with the sessions the
// log starts: each has a row, at its start leaf (a problem at the start
// leaf), and each row whose start leaf is below within is of a session the
// log starts (a problem returned without its location: the tree size).
func checkSessionRows(sessions []*LogSession, started map[SessionID]*LogSession, rows map[SessionID]storage.Session, within int64) (atStart, faults []Problem) {
	for _, s := range sessions {
		where := leafWhere(s.StartIndex, s.Start)
		switch r, ok := rows[s.ID]; {
		case !ok:
			atStart = append(atStart, Problem{Leaf: s.StartIndex, Where: where, What: "no row of the sessions table maps this session to a number (deleted)", index: true})
		case r.StartLeaf != s.StartIndex:
			atStart = append(atStart, Problem{Leaf: s.StartIndex, Where: where, What: fmt.Sprintf("its sessions row %d says it starts at leaf %d", r.Num, r.StartLeaf), index: true})
		}
	}
	for id, r := range rows {
		if started[id] == nil && r.StartLeaf < within {
			faults = append(faults, Problem{Where: "session " + uuid.UUID(id).String(), What: fmt.Sprintf("listed in the sessions table (row %d) but no leaf starts it (inserted)", r.Num), index: true})
		}
	}
	return atStart, faults
}

// strayLeafRow is the problem of a leaves row at a negative index,
// returned without its location: the tree size.
func strayLeafRow(idx int64) Problem {
	return Problem{Where: fmt.Sprintf("leaves row %d", idx), What: "a row at a negative index: no leaf of the log (inserted)", index: true}
}

// rowNum is the number the sessions table files session id under, -1
// when it has no row.
func rowNum(rows map[SessionID]storage.Session, id SessionID) int64 {
	if r, ok := rows[id]; ok {
		return r.Num
	}
	return -1
}

// indexFault compares a leaf row's index columns with the leaf they index.
// s is the session the leaf names (nil for an event), whose Num is what
// the session column must hold.
func indexFault(sl storage.Leaf, l *Leaf, s *LogSession) string {
	if sl.Corrupt != "" {
		return "its index columns are damaged: " + sl.Corrupt
	}
	if sl.Type != uint8(l.Type) {
		return fmt.Sprintf("its type column holds %d, but it is a %s leaf (%d)", sl.Type, l.Type, uint8(l.Type))
	}
	if l.Type == LeafEvent {
		switch {
		case sl.Session != -1:
			return fmt.Sprintf("its session column holds %d, but an event names no session (NULL)", sl.Session)
		case sl.NoEventColumn:
		case sl.Event == "":
			return fmt.Sprintf("its event column is NULL, but the event is %s", l.Event)
		case sl.Event != l.Event:
			return fmt.Sprintf("its event column holds %q, but the event is %s", sl.Event, l.Event)
		}
		return ""
	}
	if sl.Event != "" {
		return fmt.Sprintf("its event column holds %q, but it is not an event (NULL)", sl.Event)
	}
	if s != nil && s.Num >= 0 && sl.Session != s.Num {
		if sl.Session == -1 {
			return fmt.Sprintf("its session column is NULL, but the sessions table files session %s under %d", uuid.UUID(s.ID), s.Num)
		}
		return fmt.Sprintf("its session column holds %d, but the sessions table files session %s under %d", sl.Session, uuid.UUID(s.ID), s.Num)
	}
	return ""
}

// leafWhere names a leaf in a problem: "leaf 12 (segment of session …)".
func leafWhere(idx int64, l *Leaf) string {
	if l == nil {
		return fmt.Sprintf("leaf %d", idx)
	}
	if l.Type == LeafEvent {
		return fmt.Sprintf("leaf %d (event %s)", idx, l.Event)
	}
	return fmt.Sprintf("leaf %d (%s of session %s)", idx, l.Type, uuid.UUID(l.Session))
}

// logRules applies the rules of section 6.3 to leaves given in index
// order, keeping each session's state.
type logRules struct {
	sessions     map[SessionID]*LogSession
	order        []*LogSession
	keepSegments bool // keep every segment, for the chain checks of verify
}

// add takes the next leaf and returns the session it names (nil for an
// event) and what is wrong with it, "" when nothing is. After a problem in
// a session, its later leaves are not checked against a broken history,
// but its end is still its end.
func (r *logRules) add(idx int64, l *Leaf) (*LogSession, string) {
	if l.Type == LeafEvent {
		return nil, ""
	}
	s := r.sessions[l.Session]
	if l.Type == LeafSessionStart {
		if s != nil {
			s.bad = true
			return s, fmt.Sprintf("session already started at leaf %d (duplicate)", s.StartIndex)
		}
		s = &LogSession{ID: l.Session, Num: -1, Start: l, StartIndex: idx, Head: ChainSeed(l.Session), LastSegment: -1, EndIndex: -1}
		r.sessions[l.Session] = s
		r.order = append(r.order, s)
		return s, ""
	}
	if s == nil {
		return nil, "no session-start leaf precedes it"
	}
	if s.bad {
		if l.Type == LeafSessionEnd && s.End == nil {
			s.End, s.EndIndex = l, idx
		}
		return s, ""
	}
	if s.End != nil {
		s.bad = true
		return s, fmt.Sprintf("after the session's end at leaf %d", s.EndIndex)
	}
	switch l.Type {
	case LeafSegment:
		if l.First != s.Frames+1 {
			s.bad = true
			return s, fmt.Sprintf("commits frames %d..%d but the previous segment ended at frame %d", l.First, l.Last, s.Frames)
		}
		s.Frames, s.Head, s.LastSegment = l.Last, l.Head, idx
		if r.keepSegments {
			s.segments = append(s.segments, *l)
			s.segLeaf = append(s.segLeaf, idx)
		}
	case LeafSessionEnd:
		s.End, s.EndIndex = l, idx
		if l.Last != s.Frames {
			s.bad = true
			return s, fmt.Sprintf("ends at frame %d but the segments commit frames up to %d", l.Last, s.Frames)
		}
		if l.Head != s.Head {
			s.bad = true
			return s, "its chain head is not the one its last segment commits"
		}
	}
	return s, ""
}

// Tree is the RFC 6962 tree of a log's leaves appended in order, as a
// compact range: the roots of its complete subtrees, O(log n) of them.
// [ReadLog] checks a log's leaves against its checkpoint with it; a
// reader that follows a log as it grows keeps one, and adds each new
// leaf. The zero Tree is not usable: make one with [NewTree].
type Tree struct {
	r *compact.Range
}

var rangeFactory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// NewTree returns the tree of no leaves.
func NewTree() *Tree { return &Tree{r: rangeFactory.NewEmptyRange(0)} }

// Add appends the leaf whose data (its bytes as stored) is data.
func (t *Tree) Add(data []byte) {
	// Append fails only for a hash of the wrong size: never a leaf hash.
	if err := t.r.Append(rfc6962.DefaultHasher.HashLeaf(data), nil); err != nil {
		panic(err)
	}
}

// Size is the number of leaves added.
func (t *Tree) Size() int64 { return int64(t.r.End()) }

// Root is the tree's root hash, as a checkpoint of its size signs it.
func (t *Tree) Root() Hash {
	if t.r.End() == 0 {
		h, _ := tlog.TreeHash(0, nil)
		return Hash(h)
	}
	h, err := t.r.GetRootHash(nil)
	if err != nil {
		panic(err)
	}
	return Hash(h)
}

// Clone returns a copy of t, which leaves added to either do not change
// in the other.
func (t *Tree) Clone() *Tree {
	// NewRange fails only for hashes that do not fit the range: never
	// a range's own.
	r, err := rangeFactory.NewRange(t.r.Begin(), t.r.End(), slices.Clone(t.r.Hashes()))
	if err != nil {
		panic(err)
	}
	return &Tree{r: r}
}

// frontier maps the compact range's hashes to their stored-hash indexes
// in tlog's layout, where the writer keeps them.
func (t *Tree) frontier() map[int64]tlog.Hash {
	out := map[int64]tlog.Hash{}
	hashes := t.r.Hashes() // left to right: the largest subtree first
	for k, idx := range frontierIndexes(int64(t.r.End())) {
		out[idx] = tlog.Hash(hashes[k])
	}
	return out
}

// Events reads the log of snap as [ReadLog] does and returns its events
// named names, in index order.
func Events(ctx context.Context, snap storage.Snapshot, v note.Verifier, names ...string) ([]LogEvent, error) {
	log, err := ReadLog(ctx, snap, ReadLogOptions{Verifier: v, Events: EventNames(names...)})
	if err != nil {
		return nil, err
	}
	return log.Events, nil
}
