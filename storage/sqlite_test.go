package storage_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/storagetest"
)

func sqliteBackend() storagetest.Backend {
	return storagetest.Backend{
		NewLocation: func(t *testing.T) string { return filepath.Join(t.TempDir(), "journal.db") },
		Open: func(ctx context.Context, loc string, ro bool) (storage.Store, error) {
			return storage.OpenSQLite(ctx, loc, storage.Options{ReadOnly: ro})
		},
	}
}

func TestSQLiteContract(t *testing.T) { storagetest.Run(t, sqliteBackend()) }

func TestSQLiteRefusesOtherFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database\n", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		if _, err := storage.OpenSQLite(ctx, garbage, storage.Options{ReadOnly: ro}); !errors.Is(err, storage.ErrNotJournal) {
			t.Errorf("open a text file (read-only %v): %v, want ErrNotJournal", ro, err)
		}
	}
	// Another application's SQLite database is not a journal either.
	other := filepath.Join(dir, "other.db")
	st, err := storage.OpenSQLite(ctx, other, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := storage.OpenSQLite(ctx, filepath.Join(dir, "missing.db"), storage.Options{ReadOnly: true}); err == nil {
		t.Error("read-only open of a missing file succeeded")
	}
	if _, err := storage.OpenSQLite(ctx, other, storage.Options{Synchronous: "sometimes"}); err == nil {
		t.Error("bad synchronous level accepted")
	}
}

func TestLockedErrorNamesHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	st, err := storage.OpenSQLite(context.Background(), path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = storage.OpenSQLite(context.Background(), path, storage.Options{})
	var le *storage.LockedError
	if !errors.As(err, &le) || !strings.Contains(le.Holder, "pid ") {
		t.Fatalf("second writer: %v", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error does not name the journal: %v", err)
	}
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, ro := range []bool{false, true} {
		if _, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: ro}); !errors.Is(err, storage.ErrSchemaTooNew) {
			t.Errorf("open a journal of schema 99 (read-only %v): %v, want ErrSchemaTooNew", ro, err)
		}
	}
}

// A journal holds every keystroke: the writer creates its files private to
// their owner.
func TestSQLiteCreatesPrivateFiles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Init(ctx, map[string]string{"format": "test"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", filepath.Base(name), perm)
		}
	}
}

// A writer refuses a journal others can read, naming the file and how to
// fix it; a reader (an auditor verifying a copy) does not.
func TestSQLiteRefusesSharedJournal(t *testing.T) {
	tests := []struct {
		name   string
		file   string // suffix of the file whose mode is widened
		mode   os.FileMode
		refuse bool
	}{
		{"world-readable", "", 0o644, true},
		{"group-readable", "", 0o640, true},
		{"group-writable", "", 0o620, true},
		{"others execute", "", 0o601, true},
		{"private", "", 0o600, false},
		{"owner read-write only, WAL world-readable", "-wal", 0o644, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "journal.db")
			st, err := storage.OpenSQLite(ctx, path, storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Init(ctx, map[string]string{"format": "test"}); err != nil {
				t.Fatal(err)
			}
			st.Close()
			file := path + tt.file
			widen := func() {
				t.Helper()
				// A WAL is gone once its last user closed the journal;
				// one that a crashed writer left behind may be empty.
				if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
					if err := os.WriteFile(file, nil, 0o600); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.Chmod(file, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			widen()

			st, err = storage.OpenSQLite(ctx, path, storage.Options{})
			if !tt.refuse {
				if err != nil {
					t.Fatalf("open a journal of mode %#o: %v", tt.mode, err)
				}
				st.Close()
				return
			}
			if err == nil {
				st.Close()
				t.Fatalf("a writer opened a journal whose %s has mode %#o", filepath.Base(file), tt.mode)
			}
			var pe *storage.PermissionsError
			if !errors.Is(err, storage.ErrPermissions) || !errors.As(err, &pe) {
				t.Fatalf("open: %v, want a *PermissionsError", err)
			}
			if pe.Path != file || pe.Mode != tt.mode {
				t.Errorf("error names %s mode %#o, want %s mode %#o", pe.Path, pe.Mode, file, tt.mode)
			}
			if want := fmt.Sprintf("%#o", tt.mode); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "chmod 600 "+file) {
				t.Errorf("error %q does not give the mode %s and the chmod to run", err, want)
			}
			// Refused before the lock was kept: fixing the mode is enough.
			if err := os.Chmod(file, 0o600); err != nil {
				t.Fatal(err)
			}
			st, err = storage.OpenSQLite(ctx, path, storage.Options{})
			if err != nil {
				t.Fatalf("open after chmod 600: %v", err)
			}
			st.Close()
			widen()
			ro, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("read-only open of a journal of mode %#o: %v", tt.mode, err)
			}
			ro.Close()
		})
	}
}

// writeFrames makes a journal at path with session 1: frames 1..3 and two
// leaves that name it.
func writeFrames(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Init(ctx, map[string]string{"format": "test"}); err != nil {
		t.Fatal(err)
	}
	b := &storage.Batch{
		NewSessions: []storage.Session{{Num: 1, ID: make([]byte, 16), StartLeaf: 0}},
		Leaves: []storage.Leaf{
			{Index: 0, Type: 1, Session: 1, Data: []byte("start")},
			{Index: 1, Type: 2, Session: 1, Data: []byte("segment")},
		},
	}
	for seq := int64(1); seq <= 3; seq++ {
		b.Frames = append(b.Frames, storage.Frame{Session: 1, Seq: seq, Kind: 2, Channel: 0, Payload: []byte("out"), Chain: make([]byte, 32)})
	}
	if err := st.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// tamper runs statements on the journal at path as someone editing the file
// would. With loose, the frames and leaves tables first lose STRICT, as a
// file edited byte by byte can hold any type in any column.
func tamper(t *testing.T, path string, loose bool, stmts ...string) {
	t.Helper()
	if loose {
		db, err := sql.Open("sqlite3", path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.Exec(`PRAGMA writable_schema = ON;
			UPDATE sqlite_schema SET sql = replace(sql, ') STRICT', ')') WHERE name IN ('frames', 'leaves');
			PRAGMA writable_schema = OFF`)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// A frame row holding a value no frame can have is reported as a corrupt
// frame, named by its session and seq, not as a failure to read.
func TestSQLiteCorruptFrame(t *testing.T) {
	tests := []struct {
		name    string
		loose   bool
		update  string
		seq     int64
		column  string
		problem string
	}{
		{"kind above a byte", false, "UPDATE frames SET kind = 258 WHERE seq = 2", 2, "kind", "258 is out of range 0..255"},
		{"negative kind", false, "UPDATE frames SET kind = -1 WHERE seq = 2", 2, "kind", "-1 is out of range"},
		{"negative channel", false, "UPDATE frames SET channel = -1 WHERE seq = 3", 3, "channel", "-1 is out of range 0..4294967295"},
		{"channel above 32 bits", false, "UPDATE frames SET channel = 4294967296 WHERE seq = 1", 1, "channel", "4294967296 is out of range"},
		{"negative seq", false, "UPDATE frames SET seq = -7 WHERE seq = 2", -7, "seq", "-7 is out of range"},
		{"text kind", true, "UPDATE frames SET kind = 'abc' WHERE seq = 2", 2, "kind", "holds TEXT, not an integer"},
		{"text wall time", true, "UPDATE frames SET wall_ns = x'00' WHERE seq = 2", 2, "wall_ns", "holds BLOB, not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "journal.db")
			writeFrames(t, path)
			tamper(t, path, tt.loose, tt.update)
			st, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			snap, err := st.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer snap.Close()
			var before []int64
			err = snap.Frames(ctx, 1, func(f *storage.Frame) error {
				before = append(before, f.Seq)
				return nil
			})
			var ce *storage.CorruptFrameError
			if !errors.Is(err, storage.ErrCorrupt) || !errors.As(err, &ce) {
				t.Fatalf("Frames: %v, want a *CorruptFrameError", err)
			}
			if ce.Session != 1 || ce.Seq != tt.seq || ce.Column != tt.column || !strings.Contains(ce.Problem, tt.problem) {
				t.Errorf("error = %+v, want session 1 seq %d column %s: %s", ce, tt.seq, tt.column, tt.problem)
			}
			if msg := err.Error(); !strings.Contains(msg, "session 1") || !strings.Contains(msg, fmt.Sprintf("seq %d", tt.seq)) {
				t.Errorf("error %q does not name the session and seq", msg)
			}
			for _, s := range before {
				if s >= tt.seq && tt.seq > 0 {
					t.Errorf("frame %d was delivered at or after the corrupt one", s)
				}
			}
		})
	}
}

// A frame session that is not an integer is corrupt too, for the listing
// of frame sessions.
func TestSQLiteCorruptFrameSession(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	writeFrames(t, path)
	tamper(t, path, true, "UPDATE frames SET session = 'one' WHERE seq = 3")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if _, err := snap.FrameSessions(ctx); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("FrameSessions: %v, want ErrCorrupt", err)
	}
}

// A leaf's type and session are derived columns nobody trusts: a value no
// leaf can have reads as none (type 0, session -1), and the leaf's data is
// still there for the verifier to judge.
func TestSQLiteLeafColumnsOutOfRange(t *testing.T) {
	tests := []struct {
		name        string
		loose       bool
		update      string
		wantType    uint8
		wantSession int64
	}{
		{"type above a byte", false, "UPDATE leaves SET type = 300 WHERE idx = 1", 0, 1},
		{"negative type", false, "UPDATE leaves SET type = -1 WHERE idx = 1", 0, 1},
		{"negative session", false, "UPDATE leaves SET session = -5 WHERE idx = 1", 2, -1},
		{"text type", true, "UPDATE leaves SET type = 'segment' WHERE idx = 1", 0, 1},
		{"blob session", true, "UPDATE leaves SET session = x'01' WHERE idx = 1", 2, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "journal.db")
			writeFrames(t, path)
			tamper(t, path, tt.loose, tt.update)
			st, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			snap, err := st.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer snap.Close()
			var got []storage.Leaf
			if err := snap.Leaves(ctx, 0, 2, func(l storage.Leaf) error {
				got = append(got, l)
				return nil
			}); err != nil {
				t.Fatalf("Leaves: %v", err)
			}
			if len(got) != 2 {
				t.Fatalf("read %d leaves, want 2", len(got))
			}
			l := got[1]
			if l.Type != tt.wantType || l.Session != tt.wantSession || string(l.Data) != "segment" {
				t.Errorf("leaf 1 = type %d session %d data %q, want type %d session %d data %q",
					l.Type, l.Session, l.Data, tt.wantType, tt.wantSession, "segment")
			}
			if err := snap.SessionLeaves(ctx, 1, func(storage.Leaf) error { return nil }); err != nil {
				t.Errorf("SessionLeaves: %v", err)
			}
		})
	}
}

// Under sustained output the background checkpointer always finishes behind
// the writer, so the WAL never restarts by itself; the writer checkpoints
// between commits once it is past its limit. Before that, the WAL grew by
// every byte written (168 MiB here).
func TestSQLiteWALStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 160 MiB")
	}
	const (
		total = 160 << 20
		limit = 120 << 20 // what the WAL may reach: its 64 MiB limit, plus a checkpoint round in flight
	)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 2<<10) // 32 KiB, as the recorder coalesces
	chain := make([]byte, 32)
	var peak int64
	for seq := int64(1); seq <= total/int64(len(payload)); {
		b := &storage.Batch{}
		for range 16 {
			b.Frames = append(b.Frames, storage.Frame{Session: 1, Seq: seq, Kind: 2, Payload: payload, Chain: chain})
			seq++
		}
		if err := st.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path + "-wal"); err == nil {
			peak = max(peak, fi.Size())
		}
	}
	t.Logf("WAL peaked at %.1f MiB", float64(peak)/(1<<20))
	if peak > limit {
		t.Errorf("WAL reached %.1f MiB after %d MiB written, want at most %d MiB", float64(peak)/(1<<20), total>>20, limit>>20)
	}
}

// Commits too small to kick the background checkpointer are copied into
// the database once the journal is quiet, so that the WAL can restart.
func TestSQLiteIdleCheckpoint(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	payload := bytes.Repeat([]byte{7}, 32<<10)
	b := &storage.Batch{}
	for seq := int64(1); seq <= 64; seq++ { // 2 MiB: an eighth of the kick
		b.Frames = append(b.Frames, storage.Frame{Session: 1, Seq: seq, Kind: 2, Payload: payload, Chain: make([]byte, 32)})
	}
	if err := st.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2500 * time.Millisecond)
	for {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() >= 2<<20 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("database file is %d bytes 2.5 s after a 2 MiB commit: the WAL was not checkpointed", fi.Size())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A writer that requires metadata refuses a journal that holds another
// value, before it writes anything to it.
func TestRequireMeta(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "j.db")
	s, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(ctx, map[string]string{"verifier_key": "a"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = storage.OpenSQLite(ctx, path, storage.Options{RequireMeta: map[string]string{"verifier_key": "b"}})
	if !errors.Is(err, storage.ErrOtherLog) {
		t.Fatalf("another key: %v, want ErrOtherLog", err)
	}
	s, err = storage.OpenSQLite(ctx, path, storage.Options{RequireMeta: map[string]string{"verifier_key": "a"}})
	if err != nil {
		t.Fatalf("the same key: %v", err)
	}
	s.Close()
}

// TestMustExist: a writer told the journal must exist (serve, opening it
// again after a fault) creates nothing where there is none (a mount point
// whose filesystem is not mounted back yet), and opens one that is there.
func TestMustExist(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.db")
	if _, err := storage.OpenSQLite(ctx, path, storage.Options{MustExist: true}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open a missing journal: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files created: %v", ents)
	}
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = storage.OpenSQLite(ctx, path, storage.Options{MustExist: true})
	if err != nil {
		t.Fatalf("open an existing journal: %v", err)
	}
	st.Close()
}

// TestBusyTimeout: a write that meets a lock another connection holds
// fails as locked once the store's busy timeout has passed, and succeeds
// once the lock is gone; a busy timeout under a millisecond is refused
// before anything is created.
func TestBusyTimeout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.db")
	if _, err := storage.OpenSQLite(ctx, path, storage.Options{BusyTimeout: time.Microsecond}); err == nil || !strings.Contains(err.Error(), "busy timeout") {
		t.Fatalf("a busy timeout of 1µs: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files created: %v", ents)
	}
	st, err := storage.OpenSQLite(ctx, path, storage.Options{BusyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	if err := st.Init(ctx, map[string]string{"origin": "test"}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("a write under another connection's lock: %v", err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := st.Init(ctx, map[string]string{"origin": "test"}); err != nil {
		t.Fatalf("the write once the lock is gone: %v", err)
	}
}
