package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// Synchronous levels for a writer (SQLite's PRAGMA synchronous in WAL mode).
const (
	// SyncFull makes every commit survive a power loss or kernel crash:
	// the WAL is fsynced at each commit.
	SyncFull = "full"
	// SyncNormal makes every commit survive the crash of any process,
	// but the last commits may roll back on power loss.
	SyncNormal = "normal"
)

// Options configure [OpenSQLite].
type Options struct {
	// ReadOnly opens the journal for reading only: no writer lock is
	// taken and the file must exist.
	ReadOnly bool
	// Synchronous is SyncFull or SyncNormal; "" means SyncFull.
	Synchronous string
	// MustExist, for a writer, refuses to create the journal: the file
	// must be there (an error wrapping fs.ErrNotExist otherwise). A
	// journal opened again after a fault must be the one that failed: a
	// new file at its path is at best an empty directory where a
	// filesystem is not mounted back yet, and SQLite handles a
	// database's -wal and -shm files by name, so a connection to a file
	// under a mount point would checkpoint into that file, then delete,
	// the journal's own WAL (committed frames) once the filesystem is
	// mounted over it.
	MustExist bool
	// RequireMeta, for a writer, names metadata an existing journal must
	// hold: one whose meta has another value for any of these keys is
	// refused with ErrOtherLog before anything is written to it (not even
	// a schema migration).
	RequireMeta map[string]string
	// ReaderGroup, for a writer, is the group (its gid) whose members may
	// read the journal besides its owner: the writer gives the journal's
	// files to that group, the database, its WAL and the holder's
	// description ("<journal>.lock") mode 0640, the shared-memory file
	// (-shm) 0660, as SQLite's readers write to it; and it accepts files
	// of that group with at most those modes. Nil: only the owner may (the
	// files are 0600), and a writer refuses a journal file that grants its
	// group or others any access. A reader ignores it.
	ReaderGroup *int
	// BusyTimeout is how long a statement waits for a lock that another
	// connection to the file holds (another process, say) before it fails
	// as locked. Zero means DefaultBusyTimeout.
	BusyTimeout time.Duration
}

// DefaultBusyTimeout is how long a statement waits for a lock another
// connection holds, unless [Options] BusyTimeout says otherwise.
const DefaultBusyTimeout = 10 * time.Second

// pageSize is the page size of new journals.
const pageSize = 8192

// SQLite is the embedded [Store]: one SQLite file in WAL mode. Writes go
// through one connection, in the caller's goroutine (the recorder's single
// writer); snapshots read through their own connections and never block it.
type SQLite struct {
	path string
	rw   *sql.DB // nil when read-only; one connection
	ro   *sql.DB
	lock *writerLock   // nil when read-only
	ckpt *checkpointer // nil when read-only

	// A read-only store counts as a user of its file (see openFiles)
	// from OpenSQLite to Close when used is set; a writer's lock does.
	file fileID
	used bool

	// nextLeaf and nextHash are the indexes the next batch must start at,
	// once nextKnown; used only by Commit, which has one caller at a time.
	nextLeaf, nextHash int64
	nextKnown          bool

	// Prepared on rw; used only by Commit, which has one caller at a time.
	insFrame, insFrames, insLeaf, insHash, insSession, insPublished, putHead, renote *sql.Stmt
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed, unless read-only) the journal at path.
//
// A writer creates the file with mode 0600, refuses with a
// *PermissionsError an existing journal whose group or others have any
// access to it (but see [Options] ReaderGroup), and takes the journal's writer lock, failing with a
// *LockedError while another writer holds it, whatever name (symbolic or
// hard link) that writer opened it by. A reader checks no permissions: an
// auditor may verify a copy.
func OpenSQLite(ctx context.Context, path string, opts Options) (*SQLite, error) {
	s := &SQLite{path: path}
	sync := opts.Synchronous
	if sync == "" {
		sync = SyncFull
	}
	if sync != SyncFull && sync != SyncNormal {
		return nil, fmt.Errorf("synchronous must be %q or %q, not %q", SyncFull, SyncNormal, opts.Synchronous)
	}
	busy := opts.BusyTimeout
	if busy == 0 {
		busy = DefaultBusyTimeout
	}
	if busy < time.Millisecond {
		return nil, fmt.Errorf("busy timeout %v: want at least 1ms", opts.BusyTimeout)
	}
	if opts.ReadOnly {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("open journal: %w", err)
		}
		if id, ok := idOf(fi); ok {
			useFile(id)
			s.file, s.used = id, true
		}
	} else {
		lock, err := lockWriter(path, opts.ReaderGroup, !opts.MustExist)
		if err != nil {
			return nil, err
		}
		s.lock = lock
		rw, err := sql.Open("sqlite3", dsn(path, false, sync, busy))
		if err != nil {
			s.Close()
			return nil, err
		}
		rw.SetMaxOpenConns(1)
		rw.SetMaxIdleConns(1)
		rw.SetConnMaxLifetime(0)
		s.rw = rw
		if err := s.checkMeta(ctx, opts.RequireMeta); err != nil {
			s.Close()
			return nil, fmt.Errorf("open journal %s: %w", path, err)
		}
		if err := s.migrate(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("open journal %s: %w", path, err)
		}
		// A writer adds to the schema it expects, or to nothing: a
		// trigger or a dropped index would change what it writes.
		if problems, err := checkFile(ctx, s.rw); err != nil || len(problems) > 0 {
			s.Close()
			if err == nil {
				err = fmt.Errorf("%w: its schema was changed: %s", ErrCorrupt, strings.Join(problems, "; "))
			}
			return nil, fmt.Errorf("open journal %s: %w", path, err)
		}
		if err := s.lockedFileOpened(); err != nil {
			s.Close()
			return nil, fmt.Errorf("open journal %s: %w", path, err)
		}
		if err := s.prepare(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("open journal %s: %w", path, err)
		}
		if g := opts.ReaderGroup; g != nil {
			// The WAL and the shared-memory file exist now, made by
			// SQLite with the database's mode: the group's readers
			// must write to the latter.
			if err := shareSuffixed(path, *g); err != nil {
				s.Close()
				return nil, fmt.Errorf("open journal %s: %w", path, err)
			}
		}
	}
	ro, err := sql.Open("sqlite3", dsn(path, true, sync, busy))
	if err != nil {
		s.Close()
		return nil, err
	}
	s.ro = ro
	if !opts.ReadOnly {
		ck, err := sql.Open("sqlite3", dsn(path, false, sync, busy))
		if err != nil {
			s.Close()
			return nil, err
		}
		ck.SetMaxOpenConns(1)
		s.ckpt = startCheckpointer(ck, s.rw)
	}
	if opts.ReadOnly {
		if err := s.checkReadable(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("open journal %s: %w", path, err)
		}
	}
	return s, nil
}

// lockedFileOpened checks that the name SQLite opened, after the writer
// lock was taken, still names the locked file: it was not replaced in
// between.
func (s *SQLite) lockedFileOpened() error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	if id, ok := idOf(fi); !ok || id != s.lock.id {
		return errors.New("the file was replaced while it was being opened")
	}
	return nil
}

func dsn(path string, readOnly bool, sync string, busy time.Duration) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(busy.Milliseconds(), 10))
	if readOnly {
		q.Set("mode", "ro")
		q.Set("_query_only", "true")
	} else {
		// journal_mode=WAL is set after the page size (see migrate).
		q.Set("_synchronous", strings.ToUpper(sync))
		q.Set("_txlock", "immediate")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// checkMeta refuses a journal whose meta holds another value for a key of
// want. A file that is no journal yet, or whose meta cannot be read, is
// left to the migration and the writer's own checks.
func (s *SQLite) checkMeta(ctx context.Context, want map[string]string) error {
	if len(want) == 0 {
		return nil
	}
	var version, appID int
	if s.rw.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version) != nil ||
		s.rw.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID) != nil || version < 1 || appID != applicationID {
		return nil
	}
	meta, err := readMeta(ctx, s.rw)
	if err != nil {
		return nil
	}
	for k, v := range want {
		if got, ok := meta[k]; ok && got != v {
			return fmt.Errorf("%w: its %s is %q, not %q", ErrOtherLog, k, got, v)
		}
	}
	return nil
}

func (s *SQLite) migrate(ctx context.Context) (err error) {
	var version, appID int
	if err := s.rw.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return notJournal(err)
	}
	if err := s.rw.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return notJournal(err)
	}
	if version == 0 {
		var tables int
		if err := s.rw.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
			return notJournal(err)
		}
		if tables > 0 {
			return ErrNotJournal
		}
		// Bulk output is coalesced into frames of up to 32 KiB (see
		// recorder), whose payloads live in overflow chains. 8 KiB pages
		// halve the pages (and WAL writes) per frame against 4 KiB, for
		// about 1.6% more space (measured: 1.032 against 1.016 journal
		// bytes per payload byte; 16 KiB pages waste 6%).
		if _, err := s.rw.ExecContext(ctx, fmt.Sprintf("PRAGMA page_size = %d", pageSize)); err != nil {
			return fmt.Errorf("set page size: %w", err)
		}
	} else if appID != applicationID {
		return ErrNotJournal
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: schema version %d, this bastion knows up to %d", ErrSchemaTooNew, version, len(migrations))
	}
	defer func() {
		if err == nil {
			err = s.rw.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(new(string))
		}
	}()
	for v := version; v < len(migrations); v++ {
		tx, err := s.rw.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d; PRAGMA application_id = %d", v+1, applicationID)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// notJournal maps SQLite's "file is not a database" to ErrNotJournal.
func notJournal(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt) {
		return fmt.Errorf("%w: %v", ErrNotJournal, err)
	}
	return err
}

func (s *SQLite) checkReadable(ctx context.Context) error {
	var version, appID int
	if err := s.ro.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return notJournal(err)
	}
	if err := s.ro.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return notJournal(err)
	}
	if version == 0 || appID != applicationID {
		return ErrNotJournal
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: schema version %d, this bastion knows up to %d", ErrSchemaTooNew, version, len(migrations))
	}
	return nil
}

func (s *SQLite) prepare(ctx context.Context) error {
	// The background checkpointer does this work off the writer's thread.
	// The size limit truncates the WAL each time it restarts, so that one
	// burst does not keep its size on disk for good. The writer's page
	// cache (8 MiB) holds what appending touches: the right edges of the
	// tables and one page of the frames index per busy session, for about
	// two thousand at once. A larger one bought no throughput and stayed
	// resident once a wave of sessions had filled it.
	if _, err := s.rw.ExecContext(ctx, fmt.Sprintf("PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -8192; PRAGMA journal_size_limit = %d", walSizeLimit)); err != nil {
		return err
	}
	stmts := []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.insFrame, `INSERT INTO frames (session, seq, kind, channel, mono_ns, wall_ns, payload, chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`},
		{&s.insFrames, `INSERT INTO frames (session, seq, kind, channel, mono_ns, wall_ns, payload, chain) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?), ", framesPerInsert), ", ")},
		{&s.insLeaf, `INSERT INTO leaves (idx, type, session, event, data) VALUES (?, ?, ?, ?, ?)`},
		{&s.insHash, `INSERT INTO tree_hashes (idx, hash) VALUES (?, ?)`},
		{&s.insSession, `INSERT INTO sessions (num, id, start_leaf) VALUES (?, ?, ?)`},
		{&s.insPublished, `INSERT INTO checkpoints (tree_size, created_ns, note) VALUES (?, ?, ?)`},
		{&s.renote, `UPDATE checkpoints SET note = ?1 WHERE tree_size = ?2 AND instr(?1, note) = 1`},
		{&s.putHead, `INSERT INTO head (one, tree_size, created_ns, note) VALUES (1, ?, ?, ?)
			ON CONFLICT (one) DO UPDATE SET tree_size = excluded.tree_size, created_ns = excluded.created_ns, note = excluded.note`},
	}
	for _, st := range stmts {
		p, err := s.rw.PrepareContext(ctx, st.sql)
		if err != nil {
			return err
		}
		*st.dst = p
	}
	return nil
}

// Init implements [Store].
func (s *SQLite) Init(ctx context.Context, meta map[string]string) error {
	if s.rw == nil {
		return ErrReadOnly
	}
	tx, err := s.rw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM meta").Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return errors.New("journal is already initialized")
	}
	for k, v := range meta {
		if _, err := tx.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES (?, ?)", k, v); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// State implements [Store].
func (s *SQLite) State(ctx context.Context) (*State, error) {
	if s.rw == nil {
		return nil, ErrReadOnly
	}
	conn := s.rw
	st := &State{}
	var err error
	if st.Meta, err = readMeta(ctx, conn); err != nil {
		return nil, err
	}
	if st.TreeSize, err = treeSize(ctx, conn); err != nil {
		return nil, err
	}
	if err := conn.QueryRowContext(ctx, "SELECT coalesce(max(idx) + 1, 0) FROM tree_hashes").Scan(&st.HashCount); err != nil {
		return nil, err
	}
	// Each max is one index lookup.
	err = conn.QueryRowContext(ctx, `SELECT max(coalesce((SELECT max(num) FROM sessions), 0),
		coalesce((SELECT max(session) FROM frames), 0),
		coalesce((SELECT max(session) FROM leaves WHERE session IS NOT NULL), 0)) + 1`).Scan(&st.NextSession)
	if err != nil {
		return nil, err
	}
	if st.Head, err = readHead(ctx, conn); err != nil {
		return nil, err
	}
	var c Checkpoint
	err = conn.QueryRowContext(ctx, "SELECT tree_size, created_ns, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1").Scan(&c.TreeSize, &c.CreatedNS, &c.Note)
	switch {
	case err == nil:
		st.Published = &c
	case !errors.Is(err, sql.ErrNoRows):
		return nil, err
	}
	return st, nil
}

// Commit implements [Store].
func (s *SQLite) Commit(ctx context.Context, b *Batch) (err error) {
	if s.rw == nil {
		return ErrReadOnly
	}
	tx, err := s.rw.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	// The writer holds the journal's lock, so the next indexes are read once
	// and then tracked here, not queried at every commit.
	if !s.nextKnown {
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(idx) + 1, 0) FROM leaves").Scan(&s.nextLeaf); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(idx) + 1, 0) FROM tree_hashes").Scan(&s.nextHash); err != nil {
			return err
		}
		s.nextKnown = true
	}
	if len(b.Leaves) > 0 && b.Leaves[0].Index != s.nextLeaf {
		return fmt.Errorf("%w: first leaf index %d, journal has %d leaves", ErrConflict, b.Leaves[0].Index, s.nextLeaf)
	}
	if len(b.Hashes) > 0 && b.HashStart != s.nextHash {
		return fmt.Errorf("%w: first tree hash index %d, journal has %d", ErrConflict, b.HashStart, s.nextHash)
	}
	for _, se := range b.NewSessions {
		if _, err := tx.Stmt(s.insSession).ExecContext(ctx, se.Num, se.ID, se.StartLeaf); err != nil {
			return fmt.Errorf("insert session: %w", err)
		}
	}
	if err := s.insertFrames(ctx, tx, b.Frames); err != nil {
		return err
	}
	for i, l := range b.Leaves {
		if i > 0 && l.Index != b.Leaves[i-1].Index+1 {
			return fmt.Errorf("%w: leaf indexes not contiguous", ErrConflict)
		}
		var session, event any
		if l.Session >= 0 {
			session = l.Session
		}
		if l.Event != "" {
			event = l.Event
		}
		if _, err := tx.Stmt(s.insLeaf).ExecContext(ctx, l.Index, l.Type, session, event, l.Data); err != nil {
			return fmt.Errorf("insert leaf: %w", err)
		}
	}
	for i, h := range b.Hashes {
		if _, err := tx.Stmt(s.insHash).ExecContext(ctx, b.HashStart+int64(i), h); err != nil {
			return fmt.Errorf("insert tree hash: %w", err)
		}
	}
	for _, c := range b.Published {
		if _, err := tx.Stmt(s.insPublished).ExecContext(ctx, c.TreeSize, c.CreatedNS, c.Note); err != nil {
			return fmt.Errorf("insert checkpoint: %w", err)
		}
	}
	for _, c := range b.Renotes {
		if _, err := tx.Stmt(s.renote).ExecContext(ctx, c.Note, c.TreeSize); err != nil {
			return fmt.Errorf("add cosignatures to checkpoint %d: %w", c.TreeSize, err)
		}
	}
	if b.Head != nil {
		if _, err := tx.Stmt(s.putHead).ExecContext(ctx, b.Head.TreeSize, b.Head.CreatedNS, b.Head.Note); err != nil {
			return fmt.Errorf("store head checkpoint: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if n := len(b.Leaves); n > 0 {
		s.nextLeaf = b.Leaves[n-1].Index + 1
	}
	s.nextHash += int64(len(b.Hashes))
	s.ckpt.committed(b.size())
	if s.ckpt.writerDue() {
		// The background checkpointer cannot finish while this writer
		// keeps appending, and the WAL restarts only once every frame in
		// it is in the database. Between two appends it can finish, unless
		// a reader still uses old frames. Commit has succeeded: a failed
		// checkpoint is left for the next round.
		s.ckpt.checkpoint(ctx, s.rw, true)
	}
	return nil
}

// framesPerInsert is how many frames one INSERT statement carries: the
// per-statement overhead of database/sql dominates small frames otherwise.
const framesPerInsert = 64

func (s *SQLite) insertFrames(ctx context.Context, tx *sql.Tx, frames []Frame) error {
	args := make([]any, 0, 8*framesPerInsert)
	for len(frames) > 0 {
		n, stmt := len(frames), s.insFrame
		if n >= framesPerInsert {
			n, stmt = framesPerInsert, s.insFrames
		} else {
			n = 1
		}
		args = args[:0]
		for i := range frames[:n] {
			f := &frames[i]
			args = append(args, f.Session, f.Seq, f.Kind, f.Channel, f.MonoNS, f.WallNS, f.Payload, f.Chain)
		}
		if _, err := tx.Stmt(stmt).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert frames: %w", err)
		}
		frames = frames[n:]
	}
	return nil
}

// Hashes implements [Store].
func (s *SQLite) Hashes(ctx context.Context, indexes []int64) ([][]byte, error) {
	db := s.rw
	if db == nil {
		db = s.ro
	}
	return readHashes(ctx, db, indexes)
}

// Close implements [Store]. It releases the writer lock last, after the
// database is closed.
func (s *SQLite) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.insFrame, s.insFrames, s.insLeaf, s.insHash, s.insSession, s.insPublished, s.putHead, s.renote} {
		if st != nil {
			st.Close()
		}
	}
	if s.ckpt != nil {
		s.ckpt.stop()
		errs = append(errs, s.ckpt.db.Close())
	}
	if s.ro != nil {
		errs = append(errs, s.ro.Close())
	}
	if s.rw != nil {
		errs = append(errs, s.rw.Close())
	}
	errs = append(errs, s.lock.release())
	if s.used {
		errs = append(errs, closeFile(s.file, true, nil))
		s.used = false
	}
	return errors.Join(errs...)
}

// Snapshot implements [Store]: a read transaction on its own connection.
func (s *SQLite) Snapshot(ctx context.Context) (Snapshot, error) {
	conn, err := s.ro.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		conn.Close()
		return nil, err
	}
	// A deferred transaction takes its snapshot at the first read: the
	// header's, which no damaged table or index can make fail.
	var version int
	err = conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version)
	if err != nil {
		conn.ExecContext(context.Background(), "ROLLBACK")
		conn.Close()
		return nil, notJournal(err)
	}
	return &sqliteSnapshot{conn: conn, version: version}, nil
}

type queryerCtx interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type sqliteSnapshot struct {
	conn    *sql.Conn
	version int // the schema version: schema 1 has no leaves.event
	// stmts are the statements prepared on conn, by their text: a
	// verifier runs the same queries once per session.
	stmts map[string]*sql.Stmt
}

func (s *sqliteSnapshot) Close() error {
	var errs []error
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	_, err := s.conn.ExecContext(context.Background(), "ROLLBACK")
	return errors.Join(append(errs, err, s.conn.Close())...)
}

// query runs a query through a statement prepared once per snapshot.
func (s *sqliteSnapshot) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st := s.stmts[query]
	if st == nil {
		var err error
		if st, err = s.conn.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		if s.stmts == nil {
			s.stmts = map[string]*sql.Stmt{}
		}
		s.stmts[query] = st
	}
	return st.QueryContext(ctx, args...)
}

func (s *sqliteSnapshot) Meta(ctx context.Context) (map[string]string, error) {
	return readMeta(ctx, s.conn)
}

func (s *sqliteSnapshot) TreeSize(ctx context.Context) (int64, error) { return treeSize(ctx, s.conn) }

func (s *sqliteSnapshot) Leaves(ctx context.Context, from, to int64, fn func(Leaf) error) error {
	if to == math.MaxInt64 {
		return s.leaves(ctx, fn, "WHERE idx >= ? ORDER BY idx", from)
	}
	return s.leaves(ctx, fn, "WHERE idx >= ? AND idx < ? ORDER BY idx", from, to)
}

func (s *sqliteSnapshot) SessionLeaves(ctx context.Context, session int64, fn func(Leaf) error) error {
	return s.leaves(ctx, fn, "WHERE session = ? ORDER BY idx", session)
}

func (s *sqliteSnapshot) leaves(ctx context.Context, fn func(Leaf) error, where string, args ...any) error {
	event := "event"
	if s.version < 2 {
		event = "NULL" // a schema-1 journal, read without migrating
	}
	rows, err := s.query(ctx, "SELECT idx, type, session, "+event+", data FROM leaves "+where, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var data sql.RawBytes
	for rows.Next() {
		var l Leaf
		var typ, session intColumn
		var ev textColumn
		if err := rows.Scan(&l.Index, &typ, &session, &ev, &data); err != nil {
			return err
		}
		l.Data, l.NoEventColumn = data, s.version < 2
		// The index columns are read as they are, for readers to
		// cross-check against Data: a value the recorder never writes
		// is reported, not an error that would stop a verifier before
		// it looks at Data.
		var bad []string
		switch {
		case !typ.ok:
			bad = append(bad, "type holds "+typ.typ+", not an integer")
		case typ.v < 0 || typ.v > math.MaxUint8:
			bad = append(bad, fmt.Sprintf("type %d is out of range 0..255", typ.v))
		default:
			l.Type = uint8(typ.v)
		}
		l.Session = -1
		switch {
		case session.typ == "NULL":
		case !session.ok:
			bad = append(bad, "session holds "+session.typ+", not an integer")
		case session.v < 0:
			bad = append(bad, fmt.Sprintf("session %d is negative", session.v))
		default:
			l.Session = session.v
		}
		switch {
		case ev.typ == "NULL":
		case !ev.ok:
			bad = append(bad, "event holds "+ev.typ+", not text")
		case ev.v == "":
			bad = append(bad, "event holds an empty string, not NULL")
		default:
			l.Event = ev.v
		}
		l.Corrupt = strings.Join(bad, "; ")
		if err := fn(l); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *sqliteSnapshot) Sessions(ctx context.Context) ([]Session, error) {
	return readSessions(ctx, s.conn, "")
}

func (s *sqliteSnapshot) SessionByID(ctx context.Context, id []byte) (*Session, error) {
	list, err := readSessions(ctx, s.conn, "WHERE id = ?", id)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, ErrNotFound
	}
	return &list[0], nil
}

func (s *sqliteSnapshot) LastSeq(ctx context.Context, session int64) (int64, error) {
	var n intColumn
	if err := s.conn.QueryRowContext(ctx, "SELECT max(seq) FROM frames WHERE session = ?", session).Scan(&n); err != nil {
		return 0, err
	}
	if !n.ok {
		if n.typ == "NULL" {
			return 0, nil
		}
		return 0, fmt.Errorf("%w: a frame of session %d has a seq that holds %s", ErrCorrupt, session, n.typ)
	}
	return n.v, nil
}

func (s *sqliteSnapshot) TreeHashes(ctx context.Context, fn func(int64, []byte) error) error {
	rows, err := s.conn.QueryContext(ctx, "SELECT idx, hash FROM tree_hashes ORDER BY idx")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var idx int64
		var h sql.RawBytes
		if err := rows.Scan(&idx, &h); err != nil {
			return err
		}
		if err := fn(idx, h); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *sqliteSnapshot) CheckFile(ctx context.Context) ([]string, error) {
	return checkFile(ctx, s.conn)
}

func (s *sqliteSnapshot) FrameSessions(ctx context.Context) ([]int64, error) {
	rows, err := s.conn.QueryContext(ctx, "SELECT DISTINCT session FROM frames ORDER BY session")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n intColumn
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		if !n.ok {
			return nil, fmt.Errorf("%w: a frame's session holds %s, not an integer", ErrCorrupt, n.typ)
		}
		out = append(out, n.v)
	}
	return out, rows.Err()
}

func (s *sqliteSnapshot) Frames(ctx context.Context, session int64, fn func(*Frame) error) error {
	return s.frames(ctx, session, fn, "", nil)
}

func (s *sqliteSnapshot) FrameRange(ctx context.Context, session, from, to int64, fn func(*Frame) error) error {
	return s.frames(ctx, session, fn, " AND seq >= ? AND seq < ?", []any{from, to})
}

func (s *sqliteSnapshot) FrameAt(ctx context.Context, session, monoNS int64) (int64, error) {
	var hi int64
	if err := s.conn.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM frames WHERE session = ?", session).Scan(&hi); err != nil {
		return 0, err
	}
	// The last seq in [1, hi] whose mono_ns <= monoNS, over the unique
	// (session, seq) index: about log2(frames) point lookups.
	lo := int64(0) // invariant: frame lo is at or before monoNS (0: none is)
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		var mono intColumn
		err := s.conn.QueryRowContext(ctx, "SELECT mono_ns FROM frames WHERE session = ? AND seq = ?", session, mid).Scan(&mono)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// A gap (a deleted frame): search below it; verification
			// reports the gap.
			hi = mid - 1
			continue
		case err != nil:
			return 0, err
		}
		if mono.ok && mono.v <= monoNS {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}

func (s *sqliteSnapshot) frames(ctx context.Context, session int64, fn func(*Frame) error, where string, args []any) error {
	rows, err := s.query(ctx, "SELECT id, seq, kind, channel, mono_ns, wall_ns, payload, chain FROM frames WHERE session = ?"+where+" ORDER BY seq", append([]any{session}, args...)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	f := Frame{Session: session}
	var id int64
	var seq, kind, channel, mono, wall intColumn
	var payload, chain sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&id, &seq, &kind, &channel, &mono, &wall, &payload, &chain); err != nil {
			return fmt.Errorf("read frame of session %d: %w", session, err)
		}
		if err := checkFrame(session, id, seq, kind, channel, mono, wall); err != nil {
			return err
		}
		f.Seq, f.Kind, f.Channel, f.MonoNS, f.WallNS = seq.v, uint8(kind.v), uint32(channel.v), mono.v, wall.v
		f.Payload, f.Chain = payload, chain
		if err := fn(&f); err != nil {
			return err
		}
	}
	return rows.Err()
}

// CorruptFrameError says a stored frame holds a value no frame can have. It
// wraps [ErrCorrupt]. The frame's content is evidence to report, not a
// reason for a reader to fail: a verifier turns it into a finding about
// that frame.
type CorruptFrameError struct {
	Session int64
	// Seq is the frame's sequence number as stored; 0 when it is not an
	// integer.
	Seq     int64
	Row     int64  // the frame's row id, which names it even when Seq is bad
	Column  string // "seq", "kind", "channel", "mono_ns" or "wall_ns"
	Problem string // "258 is out of range 0..255", "holds TEXT, not an integer"
}

func (e *CorruptFrameError) Error() string {
	return fmt.Sprintf("frame of session %d with seq %d (row %d): %s %s", e.Session, e.Seq, e.Row, e.Column, e.Problem)
}

func (e *CorruptFrameError) Unwrap() error { return ErrCorrupt }

// checkFrame checks that a frame's integer columns hold values a Frame can
// carry: the recorder's unsigned sequence number, a one-byte kind and a
// four-byte channel.
func checkFrame(session, row int64, seq, kind, channel, mono, wall intColumn) error {
	cols := []struct {
		name   string
		c      intColumn
		lo, hi int64
	}{
		{"seq", seq, 0, math.MaxInt64},
		{"kind", kind, 0, math.MaxUint8},
		{"channel", channel, 0, math.MaxUint32},
		{"mono_ns", mono, math.MinInt64, math.MaxInt64},
		{"wall_ns", wall, math.MinInt64, math.MaxInt64},
	}
	for _, col := range cols {
		var problem string
		switch {
		case !col.c.ok:
			problem = fmt.Sprintf("holds %s, not an integer", col.c.typ)
		case col.c.v < col.lo || col.c.v > col.hi:
			problem = fmt.Sprintf("%d is out of range %d..%d", col.c.v, col.lo, col.hi)
		default:
			continue
		}
		e := &CorruptFrameError{Session: session, Row: row, Column: col.name, Problem: problem}
		if seq.ok {
			e.Seq = seq.v
		}
		return e
	}
	return nil
}

// textColumn reads a TEXT column of a row nobody vouches for.
type textColumn struct {
	v   string
	ok  bool   // the column held text, v
	typ string // what it held otherwise
}

func (c *textColumn) Scan(src any) error {
	var i intColumn
	i.Scan(src)
	*c = textColumn{typ: i.typ}
	switch src := src.(type) {
	case string:
		c.v, c.ok = src, true
	case int64:
		c.typ = "INTEGER"
	}
	return nil
}

// intColumn reads an INTEGER column of a row nobody vouches for. STRICT
// tables check types only on writing: a file edited byte by byte can hold
// any type in any column, and reading it must not fail for that.
type intColumn struct {
	v   int64
	ok  bool   // the column held an integer, v
	typ string // what it held otherwise: "NULL", "TEXT", "BLOB" or "REAL"
}

func (c *intColumn) Scan(src any) error {
	*c = intColumn{}
	switch src := src.(type) {
	case int64:
		c.v, c.ok = src, true
	case nil:
		c.typ = "NULL"
	case string:
		c.typ = "TEXT"
	case []byte:
		c.typ = "BLOB"
	case float64:
		c.typ = "REAL"
	default:
		c.typ = fmt.Sprintf("%T", src)
	}
	return nil
}

func (s *sqliteSnapshot) Hashes(ctx context.Context, indexes []int64) ([][]byte, error) {
	return readHashes(ctx, s.conn, indexes)
}

func (s *sqliteSnapshot) Published(ctx context.Context) ([]Checkpoint, error) {
	rows, err := s.conn.QueryContext(ctx, "SELECT tree_size, created_ns, note FROM checkpoints ORDER BY tree_size")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		var size, created intColumn
		if err := rows.Scan(&size, &created, &c.Note); err != nil {
			return nil, err
		}
		if err := checkpointRow("checkpoints", &c, size, created); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// checkpointRow fills a checkpoint row's integers, or says that they are
// not integers.
func checkpointRow(table string, c *Checkpoint, size, created intColumn) error {
	for _, col := range []struct {
		name string
		c    intColumn
	}{{"tree_size", size}, {"created_ns", created}} {
		if !col.c.ok {
			return fmt.Errorf("%w: a row of %s has a %s that holds %s, not an integer", ErrCorrupt, table, col.name, col.c.typ)
		}
	}
	c.TreeSize, c.CreatedNS = size.v, created.v
	return nil
}

func (s *sqliteSnapshot) Head(ctx context.Context) (*Checkpoint, error) { return readHead(ctx, s.conn) }

func (s *sqliteSnapshot) PayloadBytes(ctx context.Context) (int64, error) {
	var n int64
	err := s.conn.QueryRowContext(ctx, "SELECT coalesce(sum(length(payload)), 0) FROM frames").Scan(&n)
	return n, err
}

func readMeta(ctx context.Context, q queryerCtx) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT key, value FROM meta")
	if err != nil {
		return nil, notJournal(err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, rows.Err()
}

// MaxTreeSize bounds the leaf indexes a journal can hold: the largest tree
// a checkpoint may commit to (docs/journal-format.md, 8.2).
const MaxTreeSize = 1 << 62

// treeSize is the largest leaf index plus one: the number of leaves when
// they run from 0 without a gap. An index at or past MaxTreeSize gives
// MaxTreeSize+1, more than any checkpoint commits to.
func treeSize(ctx context.Context, q queryerCtx) (int64, error) {
	var last intColumn
	if err := q.QueryRowContext(ctx, "SELECT max(idx) FROM leaves").Scan(&last); err != nil {
		return 0, err
	}
	switch {
	case !last.ok || last.v < 0:
		return 0, nil
	case last.v >= MaxTreeSize:
		return MaxTreeSize + 1, nil
	}
	return last.v + 1, nil
}

func readHead(ctx context.Context, q queryerCtx) (*Checkpoint, error) {
	var c Checkpoint
	var size, created intColumn
	err := q.QueryRowContext(ctx, "SELECT tree_size, created_ns, note FROM head WHERE one = 1").Scan(&size, &created, &c.Note)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := checkpointRow("head", &c, size, created); err != nil {
		return nil, err
	}
	return &c, nil
}

func readSessions(ctx context.Context, q queryerCtx, where string, args ...any) ([]Session, error) {
	rows, err := q.QueryContext(ctx, `SELECT num, id, start_leaf FROM sessions `+where+` ORDER BY num`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		var s Session
		var start intColumn
		var id any
		if err := rows.Scan(&s.Num, &id, &start); err != nil {
			return nil, err
		}
		switch id := id.(type) {
		case []byte:
			s.ID = id
		default:
			s.Corrupt = fmt.Sprintf("id holds %T, not a blob", id)
		}
		if s.Num < 0 {
			s.Corrupt = fmt.Sprintf("num %d is negative", s.Num)
		}
		s.StartLeaf = start.v
		if !start.ok {
			s.StartLeaf = -1
			s.Corrupt = "start_leaf holds " + start.typ + ", not an integer"
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// readHashes reads stored hashes; a missing index is ErrNotFound.
func readHashes(ctx context.Context, q queryerCtx, indexes []int64) ([][]byte, error) {
	out := make([][]byte, len(indexes))
	for i, idx := range indexes {
		if err := q.QueryRowContext(ctx, "SELECT hash FROM tree_hashes WHERE idx = ?", idx).Scan(&out[i]); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("tree hash %d: %w", idx, ErrNotFound)
			}
			return nil, err
		}
	}
	return out, nil
}
