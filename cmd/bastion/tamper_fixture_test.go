package main

// The tamper matrix's fixture: a journal of three recorded sessions, and the
// attacker's tools, plain SQL on a copy of it.

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/recorder"
)

// tamperOrigin is the log origin of the fixture journal.
const tamperOrigin = "tamper.example/journal"

// tamperFixture is a journal of three recorded sessions, with what the
// cases need to know about it. Nothing in it is modified after it is built.
type tamperFixture struct {
	home     string // its journal key
	pristine string // the journal after all three sessions
	treeSize int64

	// early is a copy of the journal taken after session 1, earlySize its
	// tree size: an older copy an attacker might restore.
	early     string
	earlySize int64

	// keptFile is the checkpoint "bastion checkpoint" printed after
	// session 2, as an auditor keeps it; keptSize is its tree size.
	keptFile string
	keptSize int64

	published []int64 // tree sizes of the kept (published) checkpoints
	sessions  []*tamperSession
}

type tamperSession struct {
	num                int64
	id                 string
	sid                recorder.SessionID
	startLeaf, endLeaf int64
	frames             []tamperFrame // in seq order
	segments           []tamperSegment
}

type tamperFrame struct {
	seq     int64
	kind    int
	payload []byte
}

type tamperSegment struct {
	leaf        int64
	first, last int64
}

// newTamperFixture records the journal through the CLI: three sessions of
// real commands in a terminal. Sessions 2 and 3 print one line per commit
// (the sleeps make each line its own commit, on a machine loaded by other
// tests too), so that session 2 has several segment leaves and session 3
// has more leaves than session 2.
func newTamperFixture(t *testing.T) *tamperFixture {
	t.Helper()
	dir := t.TempDir()
	fx := &tamperFixture{
		home:     filepath.Join(dir, "home"),
		pristine: filepath.Join(dir, "journal.db"),
		early:    filepath.Join(dir, "early", "journal.db"),
		keptFile: filepath.Join(dir, "kept.txt"),
	}
	if code, _, stderr := runArgs("--home", fx.home, "ca", "init", "--origin", tamperOrigin); code != 0 {
		t.Fatalf("ca init: exit %d: %s", code, stderr)
	}
	record := func(script string) {
		t.Helper()
		code, stdout, stderr := runArgs("--home", fx.home, "record", "-q", "--db", fx.pristine, "--", "sh", "-c", script)
		if code != 0 {
			t.Fatalf("record %q: exit %d\nstdout: %s\nstderr: %s", script, code, stdout, stderr)
		}
	}
	record(`echo one; echo "session one"`)
	if err := os.MkdirAll(filepath.Dir(fx.early), 0o700); err != nil {
		t.Fatal(err)
	}
	tamperCopyJournal(t, fx.pristine, fx.early)
	record(`for i in 1 2 3 4 5 6; do echo "two $i"; sleep 0.25; done`)
	code, kept, stderr := runArgs("--home", fx.home, "checkpoint", "--db", fx.pristine)
	if code != 0 {
		t.Fatalf("checkpoint: exit %d: %s", code, stderr)
	}
	if err := os.WriteFile(fx.keptFile, []byte(kept), 0o600); err != nil {
		t.Fatal(err)
	}
	record(`for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "three $i"; sleep 0.25; done`)

	fx.earlySize = tamperTreeSize(t, fx.early)
	fx.load(t)
	if fx.keptSize != fx.sessions[1].endLeaf+1 {
		t.Fatalf("fixture: kept checkpoint at tree size %d, want %d (the end of session 2)", fx.keptSize, fx.sessions[1].endLeaf+1)
	}
	if fx.earlySize != fx.sessions[1].startLeaf {
		t.Fatalf("fixture: early copy has %d leaves, want %d (session 1 alone)", fx.earlySize, fx.sessions[1].startLeaf)
	}
	return fx
}

// load reads what the cases need from the pristine journal, directly.
func (fx *tamperFixture) load(t *testing.T) {
	t.Helper()
	db := tamperOpen(t, fx.pristine)
	defer db.Close()
	if err := db.QueryRow(`SELECT count(*) FROM leaves`).Scan(&fx.treeSize); err != nil {
		t.Fatal(err)
	}
	fx.published = tamperInts(t, db, `SELECT tree_size FROM checkpoints ORDER BY tree_size`)
	k, err := os.ReadFile(fx.keptFile)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.SplitN(string(k), "\n", 3); len(lines) < 3 || lines[0] != tamperOrigin {
		t.Fatalf("kept checkpoint is not a checkpoint of %s:\n%s", tamperOrigin, k)
	} else if _, err := fmt.Sscan(lines[1], &fx.keptSize); err != nil {
		t.Fatalf("kept checkpoint size %q: %v", lines[1], err)
	}

	rows, err := db.Query(`SELECT num, id FROM sessions ORDER BY num`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		s := &tamperSession{}
		var id []byte
		if err := rows.Scan(&s.num, &id); err != nil {
			t.Fatal(err)
		}
		copy(s.sid[:], id)
		s.id = uuid.UUID(s.sid).String()
		fx.sessions = append(fx.sessions, s)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if len(fx.sessions) != 3 {
		t.Fatalf("fixture has %d sessions, want 3", len(fx.sessions))
	}
	for _, s := range fx.sessions {
		fr, err := db.Query(`SELECT seq, kind, payload FROM frames WHERE session = ? ORDER BY seq`, s.num)
		if err != nil {
			t.Fatal(err)
		}
		for fr.Next() {
			var f tamperFrame
			if err := fr.Scan(&f.seq, &f.kind, &f.payload); err != nil {
				t.Fatal(err)
			}
			s.frames = append(s.frames, f)
		}
		if err := fr.Close(); err != nil {
			t.Fatal(err)
		}
		lv, err := db.Query(`SELECT idx, data FROM leaves WHERE session = ? ORDER BY idx`, s.num)
		if err != nil {
			t.Fatal(err)
		}
		for lv.Next() {
			var idx int64
			var data []byte
			if err := lv.Scan(&idx, &data); err != nil {
				t.Fatal(err)
			}
			l, err := recorder.ParseLeaf(data)
			if err != nil {
				t.Fatalf("leaf %d: %v", idx, err)
			}
			switch l.Type {
			case recorder.LeafSessionStart:
				s.startLeaf = idx
			case recorder.LeafSegment:
				s.segments = append(s.segments, tamperSegment{leaf: idx, first: int64(l.First), last: int64(l.Last)})
			case recorder.LeafSessionEnd:
				s.endLeaf = idx
			}
		}
		if err := lv.Close(); err != nil {
			t.Fatal(err)
		}
		if s.endLeaf <= s.startLeaf {
			t.Fatalf("fixture: session %s did not end", s.id)
		}
	}
}

// outputs returns the session's output frames.
func (s *tamperSession) outputs() []tamperFrame {
	var out []tamperFrame
	for _, f := range s.frames {
		if f.kind == int(recorder.KindOutput) {
			out = append(out, f)
		}
	}
	return out
}

// segmentLeaf is the index of the segment leaf that commits frame seq.
func (s *tamperSession) segmentLeaf(t *testing.T, seq int64) int64 {
	t.Helper()
	for _, sg := range s.segments {
		if sg.first <= seq && seq <= sg.last {
			return sg.leaf
		}
	}
	t.Fatalf("fixture: no segment leaf of session %s commits frame %d", s.id, seq)
	return -1
}

// firstCheckpointIn is the tree size of the smallest kept checkpoint that
// commits to leaf `after` and fits in a tree of size limit: the first
// signature that a change at leaf `after` breaks. (Verify checks the kept
// checkpoints by size, then the head, which is never the first: the end of
// the last session was kept at the head's size.)
func (fx *tamperFixture) firstCheckpointIn(t *testing.T, after, limit int64) int64 {
	t.Helper()
	for _, size := range fx.published {
		if after < size && size <= limit {
			return size
		}
	}
	t.Fatalf("fixture: no checkpoint covers leaf %d in a tree of %d leaves (session 3 must have more leaves than session 2)", after, limit)
	return -1
}

// lastCheckpointUpTo is the size of the largest kept checkpoint that does
// not reach leaf idx: what still verifies when leaf idx changes.
func (fx *tamperFixture) lastCheckpointUpTo(t *testing.T, idx int64) int64 {
	t.Helper()
	var best int64 = -1
	for _, size := range fx.published {
		if size <= idx {
			best = size
		}
	}
	if best < 0 {
		t.Fatalf("fixture: no checkpoint before leaf %d", idx)
	}
	return best
}

// truncate cuts the journal back to just before session s, consistently:
// leaves, frames, sessions rows, tree hashes and checkpoints after that
// point go, and the head becomes the checkpoint kept at that size.
func (fx *tamperFixture) truncate(t *testing.T, db *sql.Tx, s *tamperSession) {
	t.Helper()
	size := s.startLeaf
	tamperExec(t, db, `DELETE FROM frames WHERE session >= ?`, s.num)
	tamperExec(t, db, `DELETE FROM sessions WHERE num >= ?`, s.num)
	tamperExec(t, db, `DELETE FROM leaves WHERE idx >= ?`, size)
	tamperExec(t, db, `DELETE FROM tree_hashes WHERE idx >= ?`, tlog.StoredHashCount(size))
	tamperExec(t, db, `DELETE FROM checkpoints WHERE tree_size > ?`, size)
	n := tamperExec(t, db, `UPDATE head SET (tree_size, created_ns, note) =
		(SELECT tree_size, created_ns, note FROM checkpoints WHERE tree_size = ?)`, size)
	if n != 1 {
		t.Fatalf("no kept checkpoint at tree size %d to make the head", size)
	}
}

// tamperReport is the JSON that "bastion verify --json" prints.
type tamperReport struct {
	Journal string `json:"journal"`
	Intact  bool   `json:"intact"`
	recorder.Report
}

type tamperVerification struct {
	code   int
	report tamperReport // from --json
	human  string       // the same verification without --json
	stderr string
}

// verify runs "bastion verify" on db twice, with and without --json, with
// the fixture's public key, and checks that both agree.
func (fx *tamperFixture) verify(t *testing.T, db string, args ...string) tamperVerification {
	t.Helper()
	base := append([]string{"--home", fx.home, "verify", "--unrecorded", "--db", db}, args...)
	var v tamperVerification
	var stdout string
	v.code, stdout, v.stderr = runArgs(append(base, "--json")...)
	if v.code == 0 || v.code == 1 {
		if err := json.Unmarshal([]byte(stdout), &v.report); err != nil {
			t.Fatalf("verify --json exited %d with output that is not JSON: %v\n%s", v.code, err, stdout)
		}
		if v.report.Intact != (v.code == 0) {
			t.Errorf("verify --json exited %d but says intact = %v", v.code, v.report.Intact)
		}
		if v.report.Problems == nil || v.report.Unterminated == nil || v.report.Abandoned == nil {
			t.Errorf("verify --json has null lists; they must be [] when empty:\n%s", stdout)
		}
	}
	code, human, _ := runArgs(base...)
	if code != v.code {
		t.Errorf("verify exited %d, but %d with --json", code, v.code)
	}
	v.human = human
	return v
}

// tamperCopyJournal copies a closed journal file to dst, with its WAL if
// one is left, and returns dst.
func tamperCopyJournal(t *testing.T, src, dst string) string {
	t.Helper()
	for _, suffix := range []string{"", "-wal"} {
		in, err := os.Open(src + suffix)
		if suffix != "" && os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(dst+suffix, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			in.Close()
			t.Fatal(err)
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// tamperOpen opens a journal the way an attacker would: as a plain SQLite
// database, read-write, without the writer lock or any bastion code.
func tamperOpen(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	return db
}

// tamperApply runs fn in one transaction on the journal at path and closes
// the database, which folds the WAL back into the file.
func tamperApply(t *testing.T, path string, fn func(t *testing.T, tx *sql.Tx)) {
	t.Helper()
	db := tamperOpen(t, path)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	fn(t, tx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// tamperApplyNew creates an SQLite database at path with the statement.
func tamperApplyNew(t *testing.T, path, stmt string) {
	t.Helper()
	tamperApply(t, path, func(t *testing.T, tx *sql.Tx) { tamperExec(t, tx, stmt) })
}

// tamperExec runs one statement and returns how many rows it changed.
func tamperExec(t *testing.T, tx *sql.Tx, stmt string, args ...any) int64 {
	t.Helper()
	res, err := tx.Exec(stmt, args...)
	if err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func tamperInts(t *testing.T, db *sql.DB, query string, args ...any) []int64 {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func tamperTreeSize(t *testing.T, path string) int64 {
	t.Helper()
	db := tamperOpen(t, path)
	defer db.Close()
	return tamperInts(t, db, `SELECT count(*) FROM leaves`)[0]
}

// tamperShiftSeqs adds delta to the seq of the session's frames from seq
// from on. It goes through negative numbers so that no intermediate state
// collides with the (session, seq) unique index.
func tamperShiftSeqs(t *testing.T, tx *sql.Tx, session, from, delta int64) {
	t.Helper()
	tamperExec(t, tx, `UPDATE frames SET seq = -seq WHERE session = ? AND seq >= ?`, session, from)
	tamperExec(t, tx, `UPDATE frames SET seq = -seq + ? WHERE session = ? AND seq < 0`, delta, session)
}

// tamperRechain recomputes the stored chain value of every frame of s from
// the frames as they now are, with the public chain algorithm, as an
// attacker covering their tracks would.
func tamperRechain(t *testing.T, tx *sql.Tx, s *tamperSession) {
	t.Helper()
	rows, err := tx.Query(`SELECT id, seq, kind, channel, mono_ns, wall_ns, payload FROM frames WHERE session = ? ORDER BY seq`, s.num)
	if err != nil {
		t.Fatal(err)
	}
	type update struct {
		id    int64
		chain []byte
	}
	var updates []update
	c := recorder.NewChainer(recorder.ChainSeed(s.sid))
	for rows.Next() {
		var id int64
		var f recorder.Frame
		var kind uint8
		if err := rows.Scan(&id, &f.Seq, &kind, &f.Channel, &f.MonoNS, &f.WallNS, &f.Payload); err != nil {
			t.Fatal(err)
		}
		f.Session, f.Kind = s.sid, recorder.Kind(kind)
		h := c.Add(&f)
		updates = append(updates, update{id, h[:]})
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	for _, u := range updates {
		tamperExec(t, tx, `UPDATE frames SET chain = ? WHERE id = ?`, u.chain, u.id)
	}
}

// tamperEditStart changes one letter of a value in the session-start leaf
// of s ("two" becomes "TWO" in the command).
func tamperEditStart(t *testing.T, tx *sql.Tx, s *tamperSession) {
	t.Helper()
	tamperEditLeaf(t, tx, s.startLeaf, func(data []byte) []byte {
		edited := bytes.Replace(data, []byte("two"), []byte("TWO"), 1)
		if bytes.Equal(edited, data) {
			t.Fatalf("fixture: session-start leaf %d has no %q to change", s.startLeaf, "two")
		}
		return edited
	})
}

// tamperEditLeaf replaces the data of leaf idx by edit's result, which
// must still be a well-formed leaf: the cases are about content that only
// the tree root, checked against the signed checkpoints, can tell apart.
func tamperEditLeaf(t *testing.T, tx *sql.Tx, idx int64, edit func([]byte) []byte) {
	t.Helper()
	var data []byte
	if err := tx.QueryRow(`SELECT data FROM leaves WHERE idx = ?`, idx).Scan(&data); err != nil {
		t.Fatal(err)
	}
	edited := edit(bytes.Clone(data))
	if _, err := recorder.ParseLeaf(edited); err != nil {
		t.Fatalf("edited leaf %d no longer parses, which is not the case under test: %v", idx, err)
	}
	tamperExec(t, tx, `UPDATE leaves SET data = ? WHERE idx = ?`, edited, idx)
}

// tamperRehash recomputes every stored tree hash from the leaves as they
// now are, so that the stored hashes agree with the tampered leaves.
func tamperRehash(t *testing.T, tx *sql.Tx) {
	t.Helper()
	rows, err := tx.Query(`SELECT data FROM leaves ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	var leaves [][]byte
	for rows.Next() {
		var d []byte
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, d)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	var tree memTree
	for _, d := range leaves {
		tree.add(t, d)
	}
	tamperExec(t, tx, `DELETE FROM tree_hashes`)
	for i, h := range tree.hashes {
		tamperExec(t, tx, `INSERT INTO tree_hashes (idx, hash) VALUES (?, ?)`, i, h[:])
	}
}

// memTree is a tree's stored hashes, in tlog's layout, kept in memory: for
// fixtures that build or rebuild a tree leaf by leaf.
type memTree struct {
	hashes []tlog.Hash
	leaves int64
}

func (m *memTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = m.hashes[x]
	}
	return out, nil
}

// add appends the next leaf's stored hashes.
func (m *memTree) add(t *testing.T, data []byte) {
	t.Helper()
	hs, err := tlog.StoredHashes(m.leaves, data, m)
	if err != nil {
		t.Fatal(err)
	}
	m.hashes, m.leaves = append(m.hashes, hs...), m.leaves+1
}

// root is the root of the tree of the first size leaves.
func (m *memTree) root(t *testing.T, size int64) recorder.Hash {
	t.Helper()
	h, err := tlog.TreeHash(size, m)
	if err != nil {
		t.Fatal(err)
	}
	return recorder.Hash(h)
}

// tamperFlipSignature changes one base64 character in the middle of the
// signature line of the checkpoint note in table's row where.
func tamperFlipSignature(t *testing.T, tx *sql.Tx, table, where string, arg any) {
	t.Helper()
	var note []byte
	if err := tx.QueryRow(`SELECT note FROM `+table+` WHERE `+where, arg).Scan(&note); err != nil {
		t.Fatalf("%s where %s: %v", table, where, err)
	}
	// "— <name> <base64 key hash and signature>\n": aim past the 4-byte
	// key hash, into the signature itself.
	sig := bytes.LastIndexByte(note, ' ') + 1
	i := sig + (len(note)-sig)/2
	if sig <= 0 || i >= len(note)-1 {
		t.Fatalf("no signature line in %q", note)
	}
	edited := bytes.Clone(note)
	if edited[i] == 'A' {
		edited[i] = 'B'
	} else {
		edited[i] = 'A'
	}
	if n := tamperExec(t, tx, `UPDATE `+table+` SET note = ? WHERE `+where, edited, arg); n != 1 {
		t.Fatalf("%s where %s: %d rows changed", table, where, n)
	}
}

func tamperFlipFirstByte(p []byte) []byte {
	q := bytes.Clone(p)
	q[0] ^= 0x20 // "t" becomes "T": a change a reader might not even see
	return q
}
