package main

// The conformance corpus's builder (go test -run TestConformanceCorpus
// -update-conformance): the base journal recorded through the real
// writer, copies of it damaged in plain SQL, journals the writer refuses to
// write built from the encoders with the corpus's test key, and bundles.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
	"github.com/bastionhq/bastion/storage"
)

// conformanceBuild is the state of a corpus rebuild.
type conformanceBuild struct {
	t     *testing.T
	dir   string // testdata/conformance
	tmp   string
	key   *recorder.JournalKey
	cases []conformanceCase
	// want holds, by case name, whether the case was made to verify: a
	// rebuild that disagrees with bastion fails, so that no mistake in a
	// recipe becomes the corpus's truth.
	want map[string]bool
}

// base is the corpus's base journal, recorded by the real writer.
type conformanceBase struct {
	path     string // compacted: one file, 1 KiB pages
	keptSize int64  // of kept.txt: the checkpoint after the first session ended
	treeSize int64
	sessions []*integritySession // exec, shell, no frames, live
	accessed int64               // the journal.accessed leaf
}

func buildConformance(t *testing.T) {
	b := &conformanceBuild{t: t, dir: conformanceDir, tmp: t.TempDir(), want: map[string]bool{}}
	var err error
	if b.key, err = recorder.ParseJournalKey(conformanceKey); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"journals", "bundles"} {
		if err := os.RemoveAll(filepath.Join(b.dir, sub)); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(b.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	other, err := recorder.ParseJournalKey(conformanceOther)
	if err != nil {
		t.Fatal(err)
	}
	b.write("journal.pub", []byte(b.key.VerifierKey+"\n"))
	b.write("other.pub", []byte(other.VerifierKey+"\n"))
	b.write("test-signing.key", []byte(conformanceKey+"\n"))

	base := b.base()
	b.journalCases(base)
	b.signedCases()
	b.fileCases(base)
	b.legacyCases()
	b.bundleCases(base)

	for i, c := range b.cases {
		got := runConformance(t, c)
		if want, ok := b.want[c.Name]; !ok || got.Intact != want {
			t.Fatalf("case %q: bastion says intact = %v (exit %d, %s: %s), the recipe was made to give %v", c.Name, got.Intact, got.Exit, got.FirstWhere, got.FirstWhat+got.Problem, want)
		}
		b.cases[i] = got
	}
	out, err := json.MarshalIndent(conformanceFile{
		Comment: "The conformance corpus of docs/journal-format.md: each case is a journal (with a key, and a kept checkpoint or a session " +
			"when given) or a bundle, with bastion verify's exit status, verdict, and for a journal that does not verify the first " +
			"problem's location (section 10). See README.md in this directory.",
		Spec:  "docs/journal-format.md",
		Cases: b.cases,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b.write("cases.json", append(out, '\n'))
}

func (b *conformanceBuild) write(name string, data []byte) {
	b.t.Helper()
	if err := os.WriteFile(filepath.Join(b.dir, name), data, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// add records a journal case from the journal at src.
func (b *conformanceBuild) addJournal(name, src string, intact bool, extra ...string) {
	b.t.Helper()
	file := "journals/" + conformanceFileName(name) + ".db"
	compactJournal(b.t, src, filepath.Join(b.dir, file))
	c := conformanceCase{Name: name, Journal: file, Key: "journal.pub"}
	for i := 0; i+1 < len(extra); i += 2 {
		switch extra[i] {
		case "checkpoint":
			c.Checkpoint = extra[i+1]
		case "session":
			c.Session = extra[i+1]
		case "key":
			c.Key = extra[i+1]
		}
	}
	b.cases = append(b.cases, c)
	b.want[name] = intact
}

// addDamaged records a journal case: the base journal with the root page
// of table overwritten, as a failing disk or a careless edit leaves it.
func (b *conformanceBuild) addDamaged(name, src, table string) {
	b.t.Helper()
	b.addJournal(name, src, false)
	path := filepath.Join(b.dir, b.cases[len(b.cases)-1].Journal)
	db := tamperOpen(b.t, path)
	var root, pageSize int64
	if err := db.QueryRow(`SELECT rootpage FROM sqlite_schema WHERE name = ?`, table).Scan(&root); err != nil {
		b.t.Fatal(err)
	}
	if err := db.QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
		b.t.Fatal(err)
	}
	db.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		b.t.Fatal(err)
	}
	// The page header's cell count and first cell: the page cannot be
	// read as a b-tree page any more.
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xff}, 8), (root-1)*pageSize+3); err != nil {
		b.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.t.Fatal(err)
	}
}

func (b *conformanceBuild) addBundle(name string, data []byte, intact bool, key string) {
	b.t.Helper()
	file := "bundles/" + conformanceFileName(name) + ".bundle"
	b.write(file, data)
	b.cases = append(b.cases, conformanceCase{Name: name, Bundle: file, Key: key})
	b.want[name] = intact
}

func conformanceFileName(name string) string {
	var s strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			s.WriteRune(r)
		default:
			if !strings.HasSuffix(s.String(), "-") {
				s.WriteByte('-')
			}
		}
	}
	return strings.Trim(s.String(), "-")
}

// compactJournal writes src to dst as one file with 1 KiB pages: the
// WAL copied into it, rollback-journal mode, vacuumed. The rows, the
// schema and the header fields a verifier reads are unchanged.
func compactJournal(t *testing.T, src, dst string) {
	t.Helper()
	tmp := tamperCopyJournal(t, src, filepath.Join(t.TempDir(), "compact.db"))
	db := tamperOpen(t, tmp)
	for _, stmt := range []string{"PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA journal_mode = DELETE", "PRAGMA page_size = 1024", "VACUUM"} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// conformanceClock is a clock that moves 1 ms at each reading, from
// 2026-11-02T09:00:00Z: reproducible times.
type conformanceClock struct{ t time.Time }

func (c *conformanceClock) now() time.Time {
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

// base records the base journal through the real writer: an exec
// session, an event, a shell session over several commits, a read of the
// journal, a session without frames, and a live session whose recorder
// stops.
func (b *conformanceBuild) base() *conformanceBase {
	t := b.t
	ctx := context.Background()
	raw := filepath.Join(b.tmp, "base-raw.db")
	st, err := storage.OpenSQLite(ctx, raw, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := &conformanceClock{t: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)}
	j, err := recorder.Open(ctx, st, recorder.Options{Key: b.key, Now: clock.now, Hostname: "bastion-1.example"})
	if err != nil {
		t.Fatal(err)
	}
	wait := func(s *recorder.Session, k recorder.Kind, p []byte) {
		t.Helper()
		seq, err := s.Append(k, 0, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Wait(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	attrs := func(a recorder.Attrs) []byte {
		p, err := recorder.EncodeAttrs(a)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := j.AppendEvent(ctx, "cert.issued", recorder.Attrs{"identity": "agent-1@corp", "principals": "deploy", "serial": "0"}); err != nil {
		t.Fatal(err)
	}
	start := func(a recorder.Attrs) *recorder.Session {
		s, err := j.StartSession(ctx, recorder.SessionInfo{Attrs: a})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exec := start(recorder.Attrs{"kind": "ssh", "request": "exec", "command": "uname -a", "identity": "agent-1@corp", "login": "deploy", "target": "db-1"})
	wait(exec, recorder.KindExec, []byte("uname -a"))
	wait(exec, recorder.KindOutput, []byte("Linux db-1 6.1.0 x86_64 GNU/Linux\n"))
	wait(exec, recorder.KindStderr, []byte("warning: no locale\n"))
	wait(exec, recorder.KindExit, attrs(recorder.Attrs{"status": "0"}))
	if err := exec.End(ctx, recorder.Attrs{"reason": "exited", "exit-status": "0"}); err != nil {
		t.Fatal(err)
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	head, err := snap.Head(ctx)
	snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	b.write("kept.txt", head.Note)

	shell := start(recorder.Attrs{"kind": "ssh", "request": "shell", "identity": "agent-1@corp", "login": "deploy", "target": "db-1", "term": "xterm"})
	wait(shell, recorder.KindPTY, attrs(recorder.Attrs{"cols": "80", "rows": "24", "term": "xterm"}))
	wait(shell, recorder.KindOutput, []byte("$ "))
	for _, cmd := range []string{"ls", "id", "exit"} {
		wait(shell, recorder.KindInput, []byte(cmd+"\r"))
		wait(shell, recorder.KindOutput, []byte(cmd+"\r\nout of "+cmd+"\r\n$ "))
	}
	wait(shell, recorder.KindResize, recorder.ResizePayload(132, 43))
	wait(shell, recorder.KindMarker, []byte("stdin closed: sent EOF to the command"))
	wait(shell, recorder.KindExit, attrs(recorder.Attrs{"status": "0"}))
	if err := shell.End(ctx, recorder.Attrs{"reason": "exited", "exit-status": "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.AppendEvent(ctx, recorder.EventJournalAccessed, recorder.Attrs{"action": "play", "user": "auditor", "uid": "1000"}); err != nil {
		t.Fatal(err)
	}
	empty := start(recorder.Attrs{"kind": "ssh", "request": "exec", "command": "true", "identity": "agent-2@corp", "login": "deploy", "target": "db-2"})
	if err := empty.End(ctx, recorder.Attrs{"reason": "stopped", "detail": "refused before it ran"}); err != nil {
		t.Fatal(err)
	}
	live := start(recorder.Attrs{"kind": "ssh", "request": "exec", "command": "tail -f app.log", "identity": "agent-1@corp", "login": "deploy", "target": "app-1"})
	for i := 1; i <= 3; i++ {
		wait(live, recorder.KindOutput, fmt.Appendf(nil, "log line %d\n", i))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	base := &conformanceBase{path: filepath.Join(b.tmp, "base.db")}
	compactJournal(t, raw, base.path)
	base.load(t)
	return base
}

// load reads the base journal's layout.
func (base *conformanceBase) load(t *testing.T) {
	t.Helper()
	jl := readLayout(t, base.path)
	base.treeSize, base.sessions = jl.treeSize, jl.sessions
	base.accessed = jl.events[recorder.EventJournalAccessed][0]
	k, err := os.ReadFile(filepath.Join(conformanceDir, "kept.txt"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Sscan(strings.SplitN(string(k), "\n", 3)[1], &base.keptSize)
	if len(base.sessions) != 4 || len(base.sessions[1].segments) < 5 || base.sessions[3].endLeaf != -1 {
		t.Fatalf("base journal: %d sessions, the shell has %d segments", len(base.sessions), len(base.sessions[1].segments))
	}
}

// tampered writes a copy of the base journal with edit applied.
func (b *conformanceBuild) tampered(base *conformanceBase, edit func(t *testing.T, tx *sql.Tx)) string {
	b.t.Helper()
	path := tamperCopyJournal(b.t, base.path, filepath.Join(b.t.TempDir(), "journal.db"))
	if edit != nil {
		tamperApply(b.t, path, edit)
	}
	return path
}

func (b *conformanceBuild) journalCases(base *conformanceBase) {
	exec, shell, live := base.sessions[0], base.sessions[1], base.sessions[3]
	segLeaf := shell.segments[2]
	exec1 := func(stmt string, args ...any) func(t *testing.T, tx *sql.Tx) {
		return func(t *testing.T, tx *sql.Tx) {
			if n := tamperExec(t, tx, stmt, args...); n < 1 {
				t.Fatalf("%s: no row changed", stmt)
			}
		}
	}
	frame2 := func(set string) func(t *testing.T, tx *sql.Tx) {
		return exec1(`UPDATE frames SET `+set+` WHERE session = ? AND seq = 2`, shell.num)
	}
	j := func(name string, intact bool, edit func(t *testing.T, tx *sql.Tx), extra ...string) {
		b.addJournal(name, b.tampered(base, edit), intact, extra...)
	}
	j("intact", true, nil)
	j("intact, against the kept checkpoint", true, nil, "checkpoint", "kept.txt")
	j("intact, one session checked", true, nil, "session", shell.id)
	j("the key given is another key of the same name", false, nil, "key", "other.pub")

	// The index columns and tables (section 9.2), one edit each.
	j("meta: origin row renamed", false, exec1(`UPDATE meta SET key = 'origin2' WHERE key = 'origin'`))
	j("meta: origin changed", false, exec1(`UPDATE meta SET value = 'other.example/journal' WHERE key = 'origin'`))
	j("meta: format changed", false, exec1(`UPDATE meta SET value = 'bastion-journal-v2' WHERE key = 'format'`))
	j("meta: verifier_key changed", false, exec1(`UPDATE meta SET value = replace(value, '+', '+0') WHERE key = 'verifier_key'`))
	j("meta: created_ns changed (informational)", true, exec1(`UPDATE meta SET value = '0' WHERE key = 'created_ns'`))
	j("meta: hostname changed (informational)", true, exec1(`UPDATE meta SET value = 'elsewhere' WHERE key = 'hostname'`))
	j("sessions: num changed", false, exec1(`UPDATE sessions SET num = 77 WHERE num = ?`, shell.num))
	j("sessions: id changed", false, exec1(`UPDATE sessions SET id = randomblob(16) WHERE num = ?`, shell.num))
	j("sessions: start_leaf changed", false, exec1(`UPDATE sessions SET start_leaf = start_leaf + 1 WHERE num = ?`, shell.num))
	j("sessions: row deleted", false, exec1(`DELETE FROM sessions WHERE num = ?`, exec.num))
	j("sessions: row inserted", false, exec1(`INSERT INTO sessions (num, id, start_leaf) VALUES (99, randomblob(16), 0)`))
	j("frames: row id changed (meaningless)", true, frame2(`id = id + 1000000`))
	j("frames: session changed", false, frame2(`session = 99`))
	j("frames: seq changed", false, frame2(`seq = 1000`))
	j("frames: kind changed", false, frame2(`kind = 3`))
	j("frames: channel changed", false, frame2(`channel = channel + 1`))
	j("frames: mono_ns changed", false, frame2(`mono_ns = mono_ns + 1`))
	j("frames: wall_ns changed", false, frame2(`wall_ns = wall_ns + 1`))
	j("frames: payload changed", false, frame2(`payload = CAST(X'78' || payload AS BLOB)`))
	j("frames: chain changed (the hint)", false, frame2(`chain = randomblob(32)`))
	j("leaves: last leaf's idx changed", false, exec1(`UPDATE leaves SET idx = idx + 1000 WHERE idx = ?`, base.treeSize-1))
	j("leaves: type changed", false, exec1(`UPDATE leaves SET type = 3 WHERE idx = ?`, segLeaf))
	j("leaves: session set to NULL", false, exec1(`UPDATE leaves SET session = NULL WHERE idx = ?`, segLeaf))
	j("leaves: session set to another session's", false, exec1(`UPDATE leaves SET session = ? WHERE idx = ?`, exec.num, segLeaf))
	j("leaves: a live session's last segment set to no session", false, exec1(`UPDATE leaves SET session = NULL WHERE idx = ?`, live.segments[len(live.segments)-1]))
	j("leaves: event set to NULL", false, exec1(`UPDATE leaves SET event = NULL WHERE idx = ?`, base.accessed))
	j("leaves: event renamed", false, exec1(`UPDATE leaves SET event = 'note' WHERE idx = ?`, base.accessed))
	j("leaves: event name on a segment", false, exec1(`UPDATE leaves SET event = 'note' WHERE idx = ?`, segLeaf))
	j("tree_hashes: a hash changed", false, exec1(`UPDATE tree_hashes SET hash = randomblob(32) WHERE idx = 3`))
	j("tree_hashes: a row moved", false, exec1(`UPDATE tree_hashes SET idx = idx + 100000 WHERE idx = 3`))
	j("tree_hashes: the last row deleted", false, exec1(`DELETE FROM tree_hashes WHERE idx = (SELECT max(idx) FROM tree_hashes)`))
	j("checkpoints: tree_size changed", false, exec1(`UPDATE checkpoints SET tree_size = tree_size + 1000 WHERE tree_size = (SELECT min(tree_size) FROM checkpoints)`))
	j("checkpoints: created_ns changed", false, exec1(`UPDATE checkpoints SET created_ns = created_ns + 1 WHERE tree_size = (SELECT min(tree_size) FROM checkpoints)`))
	j("checkpoints: a signature changed", false, func(t *testing.T, tx *sql.Tx) {
		tamperFlipSignature(t, tx, "checkpoints", "tree_size = (SELECT min(tree_size) FROM checkpoints) AND ? = 1", 1)
	})
	j("head: one changed", false, func(t *testing.T, tx *sql.Tx) {
		tamperExec(t, tx, `PRAGMA ignore_check_constraints = ON`)
		exec1(`UPDATE head SET one = 2`)(t, tx)
	})
	j("head: tree_size changed", false, exec1(`UPDATE head SET tree_size = tree_size - 1`))
	j("head: created_ns changed", false, exec1(`UPDATE head SET created_ns = created_ns + 1`))
	j("head: signature changed", false, func(t *testing.T, tx *sql.Tx) { tamperFlipSignature(t, tx, "head", "one = ?", 1) })
	j("head: deleted", false, exec1(`DELETE FROM head`))
	j("head: replaced by an older kept checkpoint", false, exec1(`UPDATE head SET (tree_size, created_ns, note) =
		(SELECT tree_size, created_ns, note FROM checkpoints WHERE tree_size = (SELECT min(tree_size) FROM checkpoints))`))
	j("sessions: a negative num", false, func(t *testing.T, tx *sql.Tx) {
		tamperExec(t, tx, `UPDATE sessions SET num = -5 WHERE num = ?`, shell.num)
		tamperExec(t, tx, `UPDATE leaves SET session = NULL WHERE session = ?`, shell.num)
		tamperExec(t, tx, `UPDATE frames SET session = -5 WHERE session = ?`, shell.num)
	})
	j("sessions: a row whose start leaf is beyond the log", false, exec1(`INSERT INTO sessions (num, id, start_leaf) VALUES (50, randomblob(16), 100000)`))
	for _, idx := range []string{"-1", "4611686018427387904", "9223372036854775807"} {
		j("leaves: a leaf copied to index "+idx, false, exec1(`INSERT INTO leaves (idx, type, session, data, event)
			SELECT `+idx+`, type, session, data, event FROM leaves WHERE idx = ?`, segLeaf))
	}

	// The records.
	j("a frame deleted", false, exec1(`DELETE FROM frames WHERE session = ? AND seq = 3`, shell.num))
	j("a frame added after the last commit", false, exec1(`INSERT INTO frames (session, seq, kind, channel, mono_ns, wall_ns, payload, chain)
		SELECT session, seq + 1, kind, channel, mono_ns, wall_ns, payload, chain FROM frames WHERE session = ? AND seq = (SELECT max(seq) FROM frames WHERE session = ?)`, shell.num, shell.num))
	j("two frames' payloads swapped", false, func(t *testing.T, tx *sql.Tx) {
		tamperExec(t, tx, `UPDATE frames SET seq = -4 WHERE session = ? AND seq = 4`, shell.num)
		tamperExec(t, tx, `UPDATE frames SET seq = 4 WHERE session = ? AND seq = 6`, shell.num)
		tamperExec(t, tx, `UPDATE frames SET seq = 6 WHERE session = ? AND seq = -4`, shell.num)
	})
	j("a session's frames deleted", false, exec1(`DELETE FROM frames WHERE session = ?`, shell.num))
	j("frames of no session added", false, exec1(`INSERT INTO frames (session, seq, kind, channel, mono_ns, wall_ns, payload, chain)
		SELECT 99, seq, kind, channel, mono_ns, wall_ns, payload, chain FROM frames WHERE session = ?`, exec.num))
	j("a leaf deleted", false, exec1(`DELETE FROM leaves WHERE idx = ?`, segLeaf))
	j("a leaf's encoding changed", false, func(t *testing.T, tx *sql.Tx) {
		tamperEditLeaf(t, tx, segLeaf, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
	})
	j("a leaf's encoding changed and its stored hashes rewritten", false, func(t *testing.T, tx *sql.Tx) {
		tamperEditLeaf(t, tx, segLeaf, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
		tamperRehash(t, tx)
	})
	j("every checkpoint deleted", false, func(t *testing.T, tx *sql.Tx) {
		tamperExec(t, tx, `DELETE FROM checkpoints`)
		tamperExec(t, tx, `DELETE FROM head`)
	})
	j("every checkpoint re-signed by another key of the same name", false, func(t *testing.T, tx *sql.Tx) {
		resignAll(t, tx, conformanceOther)
	})
	j("the head cosigned by a witness and by another key of the same name", true, func(t *testing.T, tx *sql.Tx) {
		var n []byte
		if err := tx.QueryRow(`SELECT note FROM head`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		n = recordertest.Cosign(t, recordertest.Cosign(t, n, conformanceWitness), conformanceOther)
		tamperExec(t, tx, `UPDATE head SET note = ?`, n)
	})
	truncate := func(t *testing.T, tx *sql.Tx) {
		// Back to the kept checkpoint's size minus the last session
		// end, consistently: what an attacker who deletes the tail
		// and puts an older signed state back leaves.
		size := exec.startLeaf
		tamperExec(t, tx, `DELETE FROM frames WHERE session >= ?`, exec.num)
		tamperExec(t, tx, `DELETE FROM sessions WHERE num >= ?`, exec.num)
		tamperExec(t, tx, `DELETE FROM leaves WHERE idx >= ?`, size)
		tamperExec(t, tx, `DELETE FROM tree_hashes WHERE idx >= ?`, tlog.StoredHashCount(size))
		tamperExec(t, tx, `DELETE FROM checkpoints WHERE tree_size > ?`, size)
		resignHead(t, tx, size)
	}
	j("rolled back consistently, without a kept checkpoint", true, truncate)
	j("rolled back consistently, against a kept checkpoint", false, truncate, "checkpoint", "kept.txt")
	j("the checkpoints after the kept one deleted, against it", false, func(t *testing.T, tx *sql.Tx) {
		tamperExec(t, tx, `DELETE FROM checkpoints WHERE tree_size > ?`, base.keptSize)
		tamperExec(t, tx, `DELETE FROM head`)
	}, "checkpoint", "kept.txt")
}

// resignAll replaces every checkpoint note by one signed by skey.
func resignAll(t *testing.T, tx *sql.Tx, skey string) {
	t.Helper()
	k, err := recorder.ParseJournalKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"checkpoints", "head"} {
		rows, err := tx.Query(`SELECT tree_size, note FROM ` + table)
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			size int64
			note []byte
		}
		var all []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.size, &r.note); err != nil {
				t.Fatal(err)
			}
			all = append(all, r)
		}
		rows.Close()
		for _, r := range all {
			lines := strings.SplitN(string(r.note), "\n", 4)
			root, err := base64.StdEncoding.DecodeString(lines[2])
			if err != nil {
				t.Fatal(err)
			}
			n, err := recorder.SignCheckpoint(recorder.Checkpoint{Origin: lines[0], Size: r.size, Root: recorder.Hash(root)}, k.Signer)
			if err != nil {
				t.Fatal(err)
			}
			tamperExec(t, tx, `UPDATE `+table+` SET note = ? WHERE tree_size = ?`, n, r.size)
		}
	}
}

// resignHead makes the head the checkpoint of the first size leaves
// that the writer signed when the log had that size (Ed25519 signatures
// are deterministic: the same bytes).
func resignHead(t *testing.T, tx *sql.Tx, size int64) {
	t.Helper()
	k, err := recorder.ParseJournalKey(conformanceKey)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(`SELECT data FROM leaves WHERE idx < ? ORDER BY idx`, size)
	if err != nil {
		t.Fatal(err)
	}
	var tree memTree
	var wall int64
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		tree.add(t, data)
		l, err := recorder.ParseLeaf(data)
		if err != nil {
			t.Fatal(err)
		}
		wall = l.WallNS
	}
	rows.Close()
	note, err := recorder.SignCheckpoint(recorder.Checkpoint{Origin: k.Signer.Name(), Size: size, Root: tree.root(t, size)}, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	tamperExec(t, tx, `UPDATE head SET tree_size = ?, created_ns = ?, note = ?`, size, wall, note)
}

func (b *conformanceBuild) fileCases(base *conformanceBase) {
	t := b.t
	notDB := filepath.Join(b.tmp, "not-a-journal.db")
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("not a journal\n"), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	file := "journals/not-an-sqlite-database.db"
	data, _ := os.ReadFile(notDB)
	b.write(file, data)
	b.cases = append(b.cases, conformanceCase{Name: "not an SQLite database", Journal: file, Key: "journal.pub"})
	b.want["not an SQLite database"] = false
	pragma := func(stmt string) func(t *testing.T, tx *sql.Tx) {
		return func(t *testing.T, tx *sql.Tx) { tamperExec(t, tx, stmt) }
	}
	b.addJournal("file: application_id changed", b.tampered(base, pragma(`PRAGMA application_id = 1`)), false)
	b.addJournal("file: user_version 99", b.tampered(base, pragma(`PRAGMA user_version = 99`)), false)
	b.addJournal("file: a trigger added", b.tampered(base, pragma(`CREATE TRIGGER hide AFTER INSERT ON leaves BEGIN UPDATE leaves SET session = NULL WHERE idx = new.idx; END`)), false)
	b.addJournal("file: an index dropped", b.tampered(base, pragma(`DROP INDEX leaves_by_session`)), false)
	b.addJournal("file: a view added", b.tampered(base, pragma(`CREATE VIEW v AS SELECT idx FROM leaves`)), false)
	b.addJournal("file: statistics added (allowed)", b.tampered(base, pragma(`ANALYZE`)), true)
	for _, table := range []string{"leaves", "frames", "sessions", "checkpoints", "tree_hashes", "meta"} {
		b.addDamaged("file: the root page of "+table+" damaged", base.path, table)
	}
	b.addJournal("file: a trigger named like a statistics table", b.tampered(base, func(t *testing.T, tx *sql.Tx) {
		tamperExec(t, tx, `PRAGMA writable_schema = ON`)
		tamperExec(t, tx, `INSERT INTO sqlite_schema VALUES ('trigger', 'sqlite_stat9', 'frames', 0,
			'CREATE TRIGGER sqlite_stat9 AFTER INSERT ON frames BEGIN UPDATE frames SET payload = CAST(''x'' AS BLOB) WHERE id = new.id; END')`)
	}), false)
	// The schema is compared by structure: a statement spelled another
	// way, or a CHECK that no reader relies on, is the same schema.
	b.addJournal("file: a table rebuilt with another spelling of its statement", b.tampered(base, func(t *testing.T, tx *sql.Tx) {
		tamperExec(t, tx, `CREATE TABLE m2 (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT`)
		tamperExec(t, tx, `INSERT INTO m2 SELECT * FROM meta`)
		tamperExec(t, tx, `DROP TABLE meta`)
		tamperExec(t, tx, `ALTER TABLE m2 RENAME TO meta`)
	}), true)
	b.addJournal("file: a column's type changed", b.tampered(base, func(t *testing.T, tx *sql.Tx) {
		tamperExec(t, tx, `PRAGMA writable_schema = ON`)
		tamperExec(t, tx, `UPDATE sqlite_schema SET sql = replace(sql, 'chain   BLOB NOT NULL', 'chain   ANY NOT NULL') WHERE name = 'frames'`)
	}), false)
}

// legacyCases are schema 2 journals, written before the sessions table
// lost its listing columns: no reader and no verifier reads those.
func (b *conformanceBuild) legacyCases() {
	src := filepath.Join("..", "..", "testdata", "play", "journal.db")
	pub, err := os.ReadFile(filepath.Join("..", "..", "testdata", "play", "journal.pub"))
	if err != nil {
		b.t.Fatal(err)
	}
	b.write("legacy.pub", pub)
	copyOf := func(edit func(t *testing.T, tx *sql.Tx)) string {
		p := tamperCopyJournal(b.t, src, filepath.Join(b.t.TempDir(), "journal.db"))
		if edit != nil {
			tamperApply(b.t, p, edit)
		}
		return p
	}
	b.addJournal("schema 2 journal", copyOf(nil), true, "key", "legacy.pub")
	b.addJournal("schema 2 journal: its listing columns changed (read by no one)", copyOf(func(t *testing.T, tx *sql.Tx) {
		tamperExec(t, tx, `UPDATE sessions SET started_ns = 978307200000000000, ended_ns = 978307201000000000, end_leaf = NULL, frames = 1, summary = 'x', in_bytes = 0, out_bytes = 0`)
	}), true, "key", "legacy.pub")
}

func (b *conformanceBuild) bundleCases(base *conformanceBase) {
	t := b.t
	ctx := context.Background()
	snap := readSnapshot(t, base.path)
	export := func(s *integritySession) *recorder.Bundle {
		id, _ := uuid.Parse(s.id)
		bun, err := recorder.ExportBundle(ctx, snap, recorder.SessionID(id), b.key.Verifier)
		if err != nil {
			t.Fatal(err)
		}
		return bun
	}
	marshal := func(bun *recorder.Bundle) []byte {
		data, err := bun.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	shell := export(base.sessions[1])
	good := marshal(shell)
	b.addBundle("bundle: an ended session", good, true, "journal.pub")
	b.addBundle("bundle: a live session", marshal(export(base.sessions[3])), true, "journal.pub")
	empty := marshal(export(base.sessions[2]))
	b.addBundle("bundle: a session without frames", empty, true, "journal.pub")
	b.addBundle("bundle: checked with another key of the same name", good, false, "other.pub")

	cosigned := *shell
	cosigned.Checkpoint = string(recordertest.Cosign(t, recordertest.Cosign(t, []byte(shell.Checkpoint), conformanceWitness), conformanceOther))
	cosigned.Leaves = slices.Clone(shell.Leaves)
	for i := range cosigned.Leaves {
		cosigned.Leaves[i].Proof = strings.Replace(cosigned.Leaves[i].Proof, shell.Checkpoint, cosigned.Checkpoint, 1)
	}
	b.addBundle("bundle: its checkpoint cosigned by a witness and another key of the same name", marshal(&cosigned), true, "journal.pub")

	edit := func(name string, fn func(bun *recorder.Bundle)) {
		c := *shell
		c.Leaves, c.Frames = slices.Clone(shell.Leaves), slices.Clone(shell.Frames)
		fn(&c)
		b.addBundle("bundle: "+name, marshal(&c), false, "journal.pub")
	}
	edit("a frame's payload changed", func(c *recorder.Bundle) {
		raw, _ := base64.StdEncoding.DecodeString(c.Frames[3])
		raw[len(raw)-1] ^= 1
		c.Frames[3] = base64.StdEncoding.EncodeToString(raw)
	})
	edit("the last frame removed", func(c *recorder.Bundle) { c.Frames = c.Frames[:len(c.Frames)-1] })
	edit("two frames swapped", func(c *recorder.Bundle) { c.Frames[2], c.Frames[3] = c.Frames[3], c.Frames[2] })
	edit("a segment leaf removed", func(c *recorder.Bundle) { c.Leaves = slices.Delete(c.Leaves, 2, 3) })
	edit("a leaf's index changed", func(c *recorder.Bundle) { c.Leaves[1].Index++ })
	edit("a proof hash changed", func(c *recorder.Bundle) {
		lines := strings.Split(c.Leaves[1].Proof, "\n")
		lines[2] = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
		c.Leaves[1].Proof = strings.Join(lines, "\n")
	})
	edit("the checkpoint's signature changed", func(c *recorder.Bundle) {
		i := strings.LastIndex(c.Checkpoint, " ") + 10
		bad := c.Checkpoint[:i] + string(rune(c.Checkpoint[i]^1)) + c.Checkpoint[i+1:]
		for k := range c.Leaves {
			c.Leaves[k].Proof = strings.Replace(c.Leaves[k].Proof, c.Checkpoint, bad, 1)
		}
		c.Checkpoint = bad
	})
	// Without its end leaf, a bundle proves the frames it holds, not
	// that the session ended: it verifies, and says it is not ended.
	noEnd := *shell
	noEnd.Leaves = shell.Leaves[:len(shell.Leaves)-1]
	b.addBundle("bundle: the end leaf removed (proves the frames, not the end)", marshal(&noEnd), true, "journal.pub")
	text := func(name string, data []byte) { b.addBundle("bundle: "+name, data, false, "journal.pub") }
	text("a space added", bytes.Replace(good, []byte(`"format": `), []byte(`"format":  `), 1))
	text("a slash escaped", bytes.Replace(good, []byte(`/`), []byte(`\/`), 1))
	text("members reordered", bytes.Replace(good, []byte("\"format\": \"bastion-session-bundle-v1\",\n  \"session\": \""+shell.Session+"\""),
		[]byte("\"session\": \""+shell.Session+"\",\n  \"format\": \"bastion-session-bundle-v1\""), 1))
	text("the final newline removed", bytes.TrimSuffix(good, []byte("\n")))
	text("the session ID in upper case", bytes.Replace(good, []byte(shell.Session), []byte(strings.ToUpper(shell.Session)), 1))
	text("frames null instead of []", bytes.Replace(empty, []byte(`"frames": []`), []byte(`"frames": null`), 1))
	text("not JSON", []byte("bastion-session-bundle-v1\n"))

	// A session the key signed with a frame that goes back in time:
	// bastion refuses to export it, so the bundle is built by hand.
	signed := b.signedJournal("bundle mono", []conformanceSession{{
		frames: []recorder.Frame{{Kind: recorder.KindOutput, MonoNS: 5, Payload: []byte("a")}, {Kind: recorder.KindOutput, MonoNS: 4, Payload: []byte("b")}},
		segs:   []uint64{2}, end: recorder.Attrs{"reason": "exited"},
	}})
	b.addBundle("bundle: signed, mono_ns goes back", handBundle(t, signed, b.key.Verifier), false, "journal.pub")
}

// handBundle builds the bundle of the only session of a journal without
// checking its frames, as bastion export would if it did not.
func handBundle(t *testing.T, path string, v note.Verifier) []byte {
	t.Helper()
	ctx := context.Background()
	snap := readSnapshot(t, path)
	rows, err := snap.Sessions(ctx)
	if err != nil || len(rows) != 1 {
		t.Fatalf("sessions %v, %v", rows, err)
	}
	id := recorder.SessionID(rows[0].ID)
	r, err := recorder.OpenSession(ctx, snap, id, recorder.OpenOptions{Verifier: v, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	bun := &recorder.Bundle{Format: recorder.BundleFormat, Session: uuid.UUID(id).String(), Checkpoint: string(r.Note), Leaves: []recorder.BundleLeaf{}, Frames: []recorder.BundleFrame{}}
	for _, l := range append(append([]recorder.ProvenLeaf{r.Start}, r.Segments...), *r.End) {
		p := "c2sp.org/tlog-proof@v1\nindex " + fmt.Sprint(l.Index) + "\n"
		for _, h := range l.Proof {
			p += base64.StdEncoding.EncodeToString(h[:]) + "\n"
		}
		bun.Leaves = append(bun.Leaves, recorder.BundleLeaf{Index: l.Index, Leaf: base64.StdEncoding.EncodeToString(l.Data), Proof: p + "\n" + string(r.Note)})
	}
	err = snap.Frames(ctx, rows[0].Num, func(f *storage.Frame) error {
		enc := recorder.AppendFrame(nil, &recorder.Frame{Session: id, Seq: uint64(f.Seq), Kind: recorder.Kind(f.Kind), Channel: f.Channel, MonoNS: f.MonoNS, WallNS: f.WallNS, Payload: f.Payload})
		bun.Frames = append(bun.Frames, base64.StdEncoding.EncodeToString(enc))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := bun.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readSnapshot opens the journal at path read-only, for the rest of the
// test, and takes a snapshot of it.
func readSnapshot(t *testing.T, path string) storage.Snapshot {
	t.Helper()
	ctx := context.Background()
	st, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snap.Close() })
	return snap
}
