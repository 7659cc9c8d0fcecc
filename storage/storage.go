// Package storage is the durable, ordered persistence under the journal.
//
// It stores opaque rows (sessions, frames, leaves, stored tree hashes and
// signed checkpoints) and knows nothing of how they are hashed or signed: the
// recorder package owns the journal format. A [Store] commits one [Batch] at a
// time atomically, allows exactly one writer process per journal, and serves
// readers a consistent [Snapshot] that never blocks the writer.
//
// # Backends
//
// [SQLite] is the embedded backend (WAL mode, STRICT tables, schema
// migrations). Package storage/postgres keeps several logs in one
// PostgreSQL database behind the same [Store] interface; the contract tests
// in storagetest run against both.
package storage

import (
	"context"
	"errors"
)

// Sentinel errors callers branch on.
var (
	// ErrLocked means another process holds the journal for writing.
	// The returned error is a *LockedError naming that process.
	ErrLocked = errors.New("journal is held by another writer")
	// ErrReadOnly is returned by writes on a store opened for reading.
	ErrReadOnly = errors.New("journal is open read-only")
	// ErrNotJournal means the file exists but is not a bastion journal.
	ErrNotJournal = errors.New("not a bastion journal")
	// ErrSchemaTooNew means the journal was written by a newer bastion.
	ErrSchemaTooNew = errors.New("journal schema is newer than this bastion")
	// ErrOtherLog means a journal's metadata names another log than the
	// writer asked for (Options.RequireMeta).
	ErrOtherLog = errors.New("journal is another log's")
	// ErrNotFound means a requested row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a batch does not extend the stored state (for
	// example a leaf index that is not the next one): a bug or a second
	// writer, never to be papered over.
	ErrConflict = errors.New("batch does not extend the journal")
	// ErrPermissions means a journal file lets users other than its owner
	// in, and a writer refuses to add to it. The returned error is a
	// *PermissionsError naming the file and its mode.
	ErrPermissions = errors.New("journal file is not private to its owner")
	// ErrCorrupt means a stored row holds a value no row of its kind can
	// have (a frame kind above 255, a negative channel): the file was
	// damaged or edited. The returned error names the row; reading
	// stopped there.
	ErrCorrupt = errors.New("journal row is corrupt")
)

// Session is a row of the sessions table: the local number a session's
// frames and leaves are filed under, for the 16-byte session identifier the
// journal format hashes. Everything else about a session (when, who, how it
// ended, how much it recorded) is read from its signed leaves, never stored
// beside them.
type Session struct {
	Num       int64
	ID        []byte
	StartLeaf int64
	// Corrupt, when not "", says the row holds a value no row can (a start
	// leaf that is not an integer): the file was damaged or edited.
	Corrupt string
}

// Frame is one recorded frame as stored. Chain is the recorder's chain value
// after this frame: a hint for locating damage, never trusted by verification.
type Frame struct {
	Session int64
	Seq     int64
	Kind    uint8
	Channel uint32
	MonoNS  int64
	WallNS  int64
	Payload []byte
	Chain   []byte
}

// Leaf is one entry of the global log. Type, Session and Event are index
// columns the recorder derives from Data for queries; readers cross-check
// them against Data. Session is -1 when the column is NULL (the leaf names
// no session), Event is "" when it is NULL (the leaf is not an event).
type Leaf struct {
	Index   int64
	Type    uint8
	Session int64
	Event   string
	Data    []byte
	// NoEventColumn is set for a schema 1 journal, which has no
	// leaves.event: Event is then "" whatever the leaf is.
	NoEventColumn bool
	// Corrupt, when not "", says an index column holds a value the
	// recorder never writes there (a type outside 0..255, a negative or
	// non-integer session, an event that is not text or is empty); Type,
	// Session and Event are then not what is stored.
	Corrupt string
}

// Checkpoint is a signed checkpoint note over the first TreeSize leaves.
type Checkpoint struct {
	TreeSize  int64
	CreatedNS int64
	Note      []byte
}

// Batch is everything one group commit writes, atomically.
type Batch struct {
	NewSessions []Session
	Frames      []Frame
	Leaves      []Leaf
	// HashStart is the stored-hash index of Hashes[0]; Hashes are the
	// tree's stored hashes in index order, contiguous with those stored.
	HashStart int64
	Hashes    [][]byte
	// Head, when set, replaces the latest signed checkpoint.
	Head *Checkpoint
	// Published checkpoints are kept forever.
	Published []Checkpoint
	// Renotes replace the note of published checkpoints already stored
	// (their TreeSize; CreatedNS is ignored) by a note that begins with
	// the stored one: the same checkpoint with witnesses' cosignature
	// lines added. A row of another size, or whose note the new one does
	// not begin with, is left as it is.
	Renotes []Checkpoint
}

// size estimates the bytes b writes.
func (b *Batch) size() int {
	n := 0
	for i := range b.Frames {
		n += len(b.Frames[i].Payload) + 64
	}
	for i := range b.Leaves {
		n += len(b.Leaves[i].Data) + 16
	}
	for i := range b.Renotes {
		n += len(b.Renotes[i].Note)
	}
	return n + 40*len(b.Hashes) + 512
}

// State is what a writer needs to resume appending. It comes from the
// tables as stored: the recorder checks it against the signed leaves
// before it extends anything.
type State struct {
	Meta      map[string]string
	TreeSize  int64
	HashCount int64
	// NextSession is above every session number the tables use (sessions,
	// frames and leaves alike), so that a new session never collides with
	// rows an edit left behind.
	NextSession int64
	Head        *Checkpoint // nil when none
	Published   *Checkpoint // the largest published checkpoint, nil when none
}

// Pinger is a [Store] whose journal lives behind a connection that can
// be lost while nothing is written (a database server): Ping reports,
// without writing, whether the writer's connection still works. A store
// busy committing answers nil at once: its commit tells. A file needs no
// such probe: its next write tells.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Store is a journal's persistence. A Store opened for writing holds the
// journal's writer lock until Close.
type Store interface {
	// Init sets up an empty journal with the given metadata; it fails if
	// the journal already holds metadata.
	Init(ctx context.Context, meta map[string]string) error
	// State reads what a writer needs to resume.
	State(ctx context.Context) (*State, error)
	// Commit writes b atomically and durably, or not at all. It keeps
	// nothing of b once it returns: the caller reuses its buffers.
	Commit(ctx context.Context, b *Batch) error
	// Snapshot opens a consistent read view. It never blocks Commit.
	Snapshot(ctx context.Context) (Snapshot, error)
	// Hashes reads stored tree hashes by index (for the writer's tree).
	Hashes(ctx context.Context, indexes []int64) ([][]byte, error)
	Close() error
}

// Snapshot is a consistent read view of a journal. It is not safe for
// concurrent use; open one per goroutine.
type Snapshot interface {
	Meta(ctx context.Context) (map[string]string, error)
	TreeSize(ctx context.Context) (int64, error)
	// Leaves calls fn for leaves with from <= index < to, in index order;
	// to = math.MaxInt64 sets no upper bound. The Leaf's Data is valid
	// only during the call.
	Leaves(ctx context.Context, from, to int64, fn func(Leaf) error) error
	// SessionLeaves calls fn for the leaves that name session, in index
	// order. The Leaf's Data is valid only during the call.
	SessionLeaves(ctx context.Context, session int64, fn func(Leaf) error) error
	// Sessions lists the sessions table in Num order.
	Sessions(ctx context.Context) ([]Session, error)
	// SessionByID returns the session with the given 16-byte ID.
	SessionByID(ctx context.Context, id []byte) (*Session, error)
	// FrameSessions lists the distinct session numbers frames refer to.
	FrameSessions(ctx context.Context) ([]int64, error)
	// LastSeq is the largest Seq among the frames of session, 0 when it
	// has none: one index lookup.
	LastSeq(ctx context.Context, session int64) (int64, error)
	// Frames calls fn for the frames of one session in Seq order. The
	// Frame's slices are valid only during the call.
	Frames(ctx context.Context, session int64, fn func(*Frame) error) error
	// FrameRange is Frames for the frames with from <= Seq < to only,
	// found through the (session, seq) index without reading the others.
	FrameRange(ctx context.Context, session, from, to int64, fn func(*Frame) error) error
	// FrameAt returns the Seq of the last frame of session whose MonoNS is
	// at most monoNS, or 0 when there is none. It relies on the recorder
	// writing MonoNS non-decreasing in Seq and does a binary search over
	// Seq, a few index lookups whatever the session's size. On frames
	// whose times were edited it returns some frame; verification is what
	// finds the edit.
	FrameAt(ctx context.Context, session, monoNS int64) (int64, error)
	// Hashes reads stored tree hashes by index.
	Hashes(ctx context.Context, indexes []int64) ([][]byte, error)
	// TreeHashes calls fn for every stored tree hash row, in index order.
	// The hash is valid only during the call.
	TreeHashes(ctx context.Context, fn func(index int64, hash []byte) error) error
	// Published lists published checkpoints in TreeSize order.
	Published(ctx context.Context) ([]Checkpoint, error)
	// Head is the latest signed checkpoint, nil when none.
	Head(ctx context.Context) (*Checkpoint, error)
	// PayloadBytes is the sum of frame payload lengths (for progress).
	PayloadBytes(ctx context.Context) (int64, error)
	// CheckFile lists what makes the file other than a journal of a
	// schema this package knows: its application ID, its schema version,
	// and tables, columns, indexes, triggers or views that differ from
	// the schema's. Nil when there is nothing.
	CheckFile(ctx context.Context) ([]string, error)
	Close() error
}
