package recorder

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bastionhq/bastion/storage"
)

// FuzzTamperJournal edits one value of one row of a small journal, as an
// attacker with the file but not the key would, and checks what every
// reader makes of it:
//
//   - verify never fails to run: whatever the file holds is a problem;
//   - an edit of any column but those the format names as read by no one
//     (frames.id, and the informational rows of meta) makes verify fail;
//   - when verify says intact, the log reads (ReadLog) with no index
//     problem, and every session opens and reads whole (OpenSession,
//     ReadFrames): no reader is stricter than verify;
//   - when the log reads with no index problem, what it lists is what the
//     untouched journal lists: no reader presents an edited value.
func FuzzTamperJournal(f *testing.F) {
	for _, seed := range []struct {
		table, row, col uint8
		value           []byte
	}{
		{0, 3, 1, []byte{4}}, {0, 5, 2, []byte{}}, {0, 2, 3, []byte("cert.issued")}, {0, 7, 4, []byte{1}},
		{1, 2, 0, []byte{9}}, {1, 2, 1, []byte{3}}, {1, 4, 7, []byte{0xff}}, {1, 1, 8, []byte{1, 2}},
		{2, 0, 1, []byte{0}}, {2, 1, 2, []byte{7}}, {3, 2, 1, []byte{0}}, {4, 0, 2, []byte("x")},
		{5, 0, 1, []byte{1}}, {6, 0, 1, []byte("other")}, {6, 3, 1, []byte("0")},
	} {
		f.Add(seed.table, seed.row, seed.col, seed.value)
	}
	f.Fuzz(func(t *testing.T, table, row, col uint8, value []byte) {
		tj := tamperTemplate(t)
		path := filepath.Join(t.TempDir(), "j.db")
		if err := os.WriteFile(path, tj.data, 0o600); err != nil {
			t.Fatal(err)
		}
		edit, changed, unused := tamperEdit(t, path, table, row, col, value)
		if !changed {
			return // the edit was refused by the schema, or wrote the same value
		}
		ctx := context.Background()
		st, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: true})
		if err != nil {
			return // not a journal any more: the CLI reports that as a problem
		}
		defer st.Close()
		r, err := Verify(ctx, st, VerifyOptions{Verifier: tj.key.Verifier})
		if err != nil {
			t.Fatalf("%s: verify could not run: %v", edit, err)
		}
		if r.Intact() && !unused {
			t.Fatalf("%s: verify says intact", edit)
		}
		if !r.Intact() && unused {
			t.Fatalf("%s (a column no one reads): verify fails: %v", edit, r.Problems)
		}
		snap, err := st.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close()
		log, logErr := ReadLog(ctx, snap, ReadLogOptions{Verifier: tj.key.Verifier, Events: func(string) bool { return true }})
		if r.Intact() {
			if logErr != nil || len(log.IndexProblems) > 0 {
				t.Fatalf("%s: verify says intact, the log does not read: %v %v", edit, logErr, log)
			}
			for _, s := range log.Sessions {
				rec, err := OpenSession(ctx, snap, s.ID, OpenOptions{Verifier: tj.key.Verifier})
				if err == nil {
					err = rec.ReadFrames(ctx, snap, 1, func(*Frame) error { return nil })
				}
				if err != nil {
					t.Fatalf("%s: verify says intact, session %x does not read: %v", edit, s.ID, err)
				}
			}
		}
		if logErr == nil && len(log.IndexProblems) == 0 {
			if got := describeLog(log); got != tj.listing {
				t.Fatalf("%s: the log reads without a problem but lists\n%s\nnot\n%s", edit, got, tj.listing)
			}
		}
	})
}

// tamperJournal is the fuzz target's template.
type tamperJournal struct {
	key     *JournalKey
	data    []byte // the journal file, WAL copied in
	listing string // describeLog of it
}

var (
	tamperOnce sync.Once
	tamperTJ   *tamperJournal
	tamperErr  error
)

// tamperTemplate records, once per process, a journal of two ended
// sessions, a live one and events, through the real writer.
func tamperTemplate(t *testing.T) *tamperJournal {
	tamperOnce.Do(func() { tamperTJ, tamperErr = buildTamperTemplate(t) })
	if tamperErr != nil {
		t.Fatal(tamperErr)
	}
	return tamperTJ
}

func buildTamperTemplate(t *testing.T) (*tamperJournal, error) {
	dir, err := os.MkdirTemp("", "bastion-fuzz-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	key := testKey(t)
	path := filepath.Join(dir, "j.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		return nil, err
	}
	j, err := Open(ctx, st, Options{Key: key})
	if err != nil {
		return nil, err
	}
	exit, _ := EncodeAttrs(Attrs{"status": "0"})
	for i, frames := range [][]Frame{
		{{Kind: KindExec, Payload: []byte("id")}, {Kind: KindOutput, Payload: []byte("uid=0\n")}, {Kind: KindExit, Payload: exit}},
		{{Kind: KindResize, Payload: ResizePayload(80, 24)}, {Kind: KindInput, Payload: []byte("ls\r")}, {Kind: KindOutput, Payload: []byte("a b\r\n")}},
		{{Kind: KindOutput, Payload: []byte("live\n")}, {Kind: KindOutput, Payload: []byte("more\n")}},
	} {
		if _, err := j.AppendIndexedEvent(ctx, "cert.issued", Attrs{"identity": fmt.Sprint("agent-", i)}, "serial"); err != nil {
			return nil, err
		}
		s, err := j.StartSession(ctx, SessionInfo{Attrs: Attrs{"command": fmt.Sprint("cmd ", i)}})
		if err != nil {
			return nil, err
		}
		for _, f := range frames {
			seq, err := s.Append(f.Kind, 0, f.Payload)
			if err != nil {
				return nil, err
			}
			if err := s.Wait(ctx, seq); err != nil {
				return nil, err
			}
		}
		if i < 2 {
			if err := s.End(ctx, Attrs{"reason": "exited"}); err != nil {
				return nil, err
			}
		}
	}
	if err := j.Close(); err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		return nil, err
	}
	for _, stmt := range []string{"PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA journal_mode = DELETE"} {
		if _, err := db.Exec(stmt); err != nil {
			return nil, err
		}
	}
	db.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rst, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer rst.Close()
	snap, err := rst.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	log, err := ReadLog(ctx, snap, ReadLogOptions{Verifier: key.Verifier, Events: func(string) bool { return true }})
	if err != nil {
		return nil, err
	}
	return &tamperJournal{key: key, data: data, listing: describeLog(log)}, nil
}

// describeLog is what a listing shows of a log.
func describeLog(l *Log) string {
	var b bytes.Buffer
	for _, s := range l.Sessions {
		fmt.Fprintf(&b, "session %x start %d %d %v frames %d head %x", s.ID, s.StartIndex, s.Start.WallNS, s.Start.Attrs, s.Frames, s.Head)
		if s.End != nil {
			fmt.Fprintf(&b, " end %d %d %v", s.EndIndex, s.End.WallNS, s.End.Attrs)
		}
		b.WriteByte('\n')
	}
	for _, e := range l.Events {
		fmt.Fprintf(&b, "event %d %s %v\n", e.Index, e.Leaf.Event, e.Leaf.Attrs)
	}
	return b.String()
}

// tamperTables are the journal's tables and columns, in the order the
// fuzzer picks them.
var tamperTables = []struct {
	name string
	cols []string
	key  string // orders the rows
}{
	{"leaves", []string{"idx", "type", "session", "event", "data"}, "idx"},
	{"frames", []string{"id", "session", "seq", "kind", "channel", "mono_ns", "wall_ns", "payload", "chain"}, "id"},
	{"sessions", []string{"num", "id", "start_leaf"}, "num"},
	{"tree_hashes", []string{"idx", "hash"}, "idx"},
	{"checkpoints", []string{"tree_size", "created_ns", "note"}, "tree_size"},
	{"head", []string{"one", "tree_size", "created_ns", "note"}, "one"},
	{"meta", []string{"key", "value"}, "key"},
}

// tamperEdit sets one value and reports what it did, whether the row
// changed, and whether the column is one the format names as read by no
// reader and no verifier.
func tamperEdit(t *testing.T, path string, table, row, col uint8, value []byte) (string, bool, bool) {
	tt := tamperTables[int(table)%len(tamperTables)]
	column := tt.cols[int(col)%len(tt.cols)]
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rowid int64
	var before []byte
	var typ string
	err = db.QueryRow(fmt.Sprintf(`SELECT rowid, CAST(%s AS BLOB), typeof(%s) FROM %s ORDER BY %s LIMIT 1 OFFSET ?`, column, column, tt.name, tt.key), int(row)).Scan(&rowid, &before, &typ)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, false
	}
	if err != nil {
		t.Fatal(err)
	}
	if typ == "null" {
		typ = "integer"
		if column == "event" {
			typ = "text"
		}
	}
	var v any
	switch typ {
	case "integer":
		var n int64
		for _, c := range value {
			n = n<<8 | int64(c)
		}
		if len(value) > 0 && value[0]&0x80 != 0 {
			n = -n
		}
		v = n
	case "text":
		v = string(value)
	default:
		v = value
	}
	edit := fmt.Sprintf("%s.%s of row %d (%s %q) set to %v", tt.name, column, rowid, typ, before, v)
	res, err := db.Exec(fmt.Sprintf(`UPDATE %s SET %s = ? WHERE rowid = ? AND %s IS NOT ?`, tt.name, column, column), v, rowid, v)
	if err != nil {
		return edit, false, false // a constraint or a type the schema refuses
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return edit, false, false
	}
	var key string
	if tt.name == "meta" {
		db.QueryRow(`SELECT key FROM meta WHERE rowid = ?`, rowid).Scan(&key)
	}
	unused := tt.name == "frames" && column == "id" ||
		tt.name == "meta" && (column == "key" && (string(before) == MetaCreated || string(before) == MetaHostname) ||
			column == "value" && (key == MetaCreated || key == MetaHostname))
	return edit, true, unused
}
