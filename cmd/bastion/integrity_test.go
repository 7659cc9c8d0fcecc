package main

// Evidence that cannot lie: the index columns beside the signed records
// are edited, one by one, the way an attacker with write access to the
// journal file but not to the key would, and every reader is checked: verify
// fails at the right place, and sessions list, sessions show and evidence
// never present an edited value as verified. The writer never signs over
// the damage.

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/recorder"
)

const integrityOrigin = "integrity.example/journal"

// integrityFixture is a journal of five sessions (four ended, recorded by
// "bastion record"; one left live, its recorder gone, with four frames in
// four segments), and a read of the journal (a journal.accessed event).
type integrityFixture struct {
	home     string
	pristine string
	from, to string // a period that holds every session
	treeSize int64
	sessions []*integritySession // in start order
	accessed []int64             // the journal.accessed leaves
	live     *integritySession
}

type integritySession struct {
	num                int64
	id                 string
	startLeaf, endLeaf int64 // endLeaf -1 while live
	segments           []int64
	frameSegments      map[int64]int64 // seq → the segment leaf that commits it
}

func newIntegrityFixture(t *testing.T) *integrityFixture {
	t.Helper()
	dir := t.TempDir()
	fx := &integrityFixture{home: filepath.Join(dir, "home"), pristine: filepath.Join(dir, "journal.db")}
	if code, _, stderr := runArgs("--home", fx.home, "ca", "init", "--origin", integrityOrigin); code != 0 {
		t.Fatalf("ca init: exit %d: %s", code, stderr)
	}
	fx.from = time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	for i, script := range []string{
		`echo one`,
		`for i in 1 2 3; do echo "two $i"; sleep 0.25; done`,
		`echo three; exit 3`,
		`printf 'four\n'`,
	} {
		code, stdout, stderr := runArgs("--home", fx.home, "record", "-q", "--db", fx.pristine, "--", "sh", "-c", script)
		if code != 0 && !(i == 2 && code == 3) {
			t.Fatalf("record %q: exit %d\nstdout: %s\nstderr: %s", script, code, stdout, stderr)
		}
	}
	// A read of the journal, recorded in it.
	first := integritySessionIDs(t, fx.pristine)[0]
	if code, _, stderr := runArgs("--home", fx.home, "export", "--db", fx.pristine, "--format", "asciicast", first); code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	// The live session: its recorder commits four frames, one per commit,
	// and stops without ending it.
	ctx := context.Background()
	j, _, closeJournal, err := openJournalAt(ctx, fx.home, fx.pristine)
	if err != nil {
		t.Fatal(err)
	}
	s, err := j.StartSession(ctx, recorder.SessionInfo{Attrs: recorder.Attrs{"kind": "record", "command": "tail -f /var/log/app.log", "user": "ops", "host": "app-1"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		seq, err := s.Append(recorder.KindOutput, 0, fmt.Appendf(nil, "line %d\n", i))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Wait(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := closeJournal(); err != nil {
		t.Fatal(err)
	}
	fx.to = time.Now().UTC().Add(time.Hour).Format(time.RFC3339)
	fx.load(t)
	return fx
}

// integritySessionIDs lists the session IDs of a journal, by number.
func integritySessionIDs(t *testing.T, path string) []string {
	t.Helper()
	db := tamperOpen(t, path)
	defer db.Close()
	rows, err := db.Query(`SELECT id FROM sessions ORDER BY num`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id []byte
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, uuid.UUID(id).String())
	}
	return out
}

// journalLayout is where a journal's records are, read from its leaf
// encodings (and the sessions table, for the numbers).
type journalLayout struct {
	treeSize int64
	sessions []*integritySession // in start order
	events   map[string][]int64  // event leaves by name
}

func readLayout(t *testing.T, path string) *journalLayout {
	t.Helper()
	db := tamperOpen(t, path)
	defer db.Close()
	jl := &journalLayout{events: map[string][]int64{}}
	byID := map[recorder.SessionID]*integritySession{}
	rows, err := db.Query(`SELECT num, id FROM sessions ORDER BY num`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		s := &integritySession{endLeaf: -1, frameSegments: map[int64]int64{}}
		var id []byte
		if err := rows.Scan(&s.num, &id); err != nil {
			t.Fatal(err)
		}
		s.id = uuid.UUID(id).String()
		byID[recorder.SessionID(id)] = s
	}
	rows.Close()
	lv, err := db.Query(`SELECT idx, data FROM leaves ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	defer lv.Close()
	for lv.Next() {
		var idx int64
		var data []byte
		if err := lv.Scan(&idx, &data); err != nil {
			t.Fatal(err)
		}
		jl.treeSize = idx + 1
		l, err := recorder.ParseLeaf(data)
		if err != nil {
			t.Fatal(err)
		}
		if l.Type == recorder.LeafEvent {
			jl.events[l.Event] = append(jl.events[l.Event], idx)
			continue
		}
		s := byID[l.Session]
		switch l.Type {
		case recorder.LeafSessionStart:
			s.startLeaf = idx
			jl.sessions = append(jl.sessions, s)
		case recorder.LeafSegment:
			s.segments = append(s.segments, idx)
			for q := l.First; q <= l.Last; q++ {
				s.frameSegments[int64(q)] = idx
			}
		case recorder.LeafSessionEnd:
			s.endLeaf = idx
		}
	}
	return jl
}

// load reads what the cases need from the pristine journal.
func (fx *integrityFixture) load(t *testing.T) {
	t.Helper()
	jl := readLayout(t, fx.pristine)
	fx.treeSize, fx.sessions, fx.accessed = jl.treeSize, jl.sessions, jl.events[recorder.EventJournalAccessed]
	if len(fx.sessions) != 5 || len(fx.accessed) != 1 {
		t.Fatalf("fixture: %d sessions and %d reads, want 5 and 1", len(fx.sessions), len(fx.accessed))
	}
	fx.live = fx.sessions[4]
	if fx.live.endLeaf != -1 || len(fx.live.segments) != 4 {
		t.Fatalf("fixture: the live session has end leaf %d and %d segments, want none and 4", fx.live.endLeaf, len(fx.live.segments))
	}
	if len(fx.sessions[1].segments) < 2 {
		t.Fatalf("fixture: session 2 has %d segment leaves, want several", len(fx.sessions[1].segments))
	}
}

// copy returns a copy of the pristine journal with edit applied, in plain
// SQL, as an attacker with the file but not the key would make it.
func (fx *integrityFixture) copy(t *testing.T, edit func(t *testing.T, tx *sql.Tx)) string {
	t.Helper()
	path := tamperCopyJournal(t, fx.pristine, filepath.Join(t.TempDir(), "journal.db"))
	if edit != nil {
		tamperApply(t, path, edit)
	}
	return path
}

// integrityRun is one command's result.
type integrityRun struct {
	code           int
	stdout, stderr string
}

// run runs bastion with the fixture's home; reads of the journal are
// not recorded (see unrecorded).
func (fx *integrityFixture) run(args ...string) integrityRun {
	code, stdout, stderr := runArgs(unrecorded(append([]string{"--home", fx.home}, args...))...)
	return integrityRun{code, stdout, stderr}
}

// verifyJSON runs "bastion verify --json" on db.
func (fx *integrityFixture) verifyJSON(t *testing.T, db string) (int, tamperReport) {
	t.Helper()
	r := fx.run("verify", "--db", db, "--json")
	var rep tamperReport
	if r.code != 0 && r.code != 1 {
		t.Fatalf("verify: exit %d: %s", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, r.stdout)
	}
	return r.code, rep
}

// list runs "bastion sessions list --json" on db and decodes what it
// printed (nil when nothing).
func (fx *integrityFixture) list(t *testing.T, db string) (integrityRun, []sessionJSON) {
	t.Helper()
	r := fx.run("sessions", "list", "--db", db, "--json")
	var out []sessionJSON
	if r.stdout != "" {
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("sessions list --json: %v\n%s", err, r.stdout)
		}
	}
	return r, out
}

// evidenceReport is what the cases read of evidence.json.
type evidenceReport struct {
	Verification struct {
		Intact   bool `json:"intact"`
		Problems []struct {
			Leaf int64 `json:"leaf"`
		} `json:"problems"`
	} `json:"verification"`
	Summary struct {
		Exceptions []struct {
			Kind string `json:"kind"`
		} `json:"exceptions"`
	} `json:"summary"`
	Sessions []struct {
		ID       string `json:"id"`
		Frames   int64  `json:"frames"`
		Verified bool   `json:"verified"`
		Problem  string `json:"problem"`
	} `json:"sessions"`
	Custody struct {
		Accesses []struct {
			Leaf   int64  `json:"leaf"`
			Action string `json:"action"`
		} `json:"accesses"`
	} `json:"custody"`
}

// evidence runs "bastion evidence" on db over the fixture's period. It
// writes the journal it reads (the report is recorded in it): db must be
// a copy.
func (fx *integrityFixture) evidence(t *testing.T, db string) (integrityRun, *evidenceReport) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "evidence")
	r := fx.run("evidence", "--db", db, "--from", fx.from, "--to", fx.to, "--out", out)
	if r.code == 2 {
		return r, nil
	}
	b, err := os.ReadFile(filepath.Join(out, "evidence.json"))
	if err != nil {
		t.Fatalf("evidence exited %d without a report: %v\n%s", r.code, err, r.stderr)
	}
	var rep evidenceReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return r, &rep
}

// leafCount is the number of leaves of db, and its head checkpoint.
func integrityHead(t *testing.T, db string) (int64, string) {
	t.Helper()
	d := tamperOpen(t, db)
	defer d.Close()
	var n int64
	var note []byte
	if err := d.QueryRow(`SELECT count(*) FROM leaves`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := d.QueryRow(`SELECT note FROM head`).Scan(&note); err != nil {
		t.Fatal(err)
	}
	return n, string(note)
}

// wantVerifyFails checks that verify exits 1 with its first problem at
// leaf, and a what that contains what.
func wantVerifyFails(t *testing.T, fx *integrityFixture, db string, leaf int64, what string) tamperReport {
	t.Helper()
	code, rep := fx.verifyJSON(t, db)
	switch {
	case code != 1 || rep.Intact:
		t.Fatalf("verify exited %d (intact %v), want 1", code, rep.Intact)
	case len(rep.Problems) == 0:
		t.Fatal("verify failed without a problem")
	case rep.Problems[0].Leaf != leaf || !strings.Contains(rep.Problems[0].What, what):
		t.Fatalf("first problem %+v, want one at leaf %d that says %q; all: %+v", rep.Problems[0], leaf, what, rep.Problems)
	}
	return rep
}

// wantListFromRecords checks that sessions list said the index is wrong
// (stderr, exit 1) and listed every session as the signed records have it.
func wantListFromRecords(t *testing.T, fx *integrityFixture, db string, pristine []sessionJSON) {
	t.Helper()
	r, got := fx.list(t, db)
	if r.code != 1 || !strings.Contains(r.stderr, "the journal's index does not match its signed records") {
		t.Fatalf("sessions list exited %d, stderr %q; want 1 and a warning first", r.code, r.stderr)
	}
	if g, p := integrityJSON(t, got), integrityJSON(t, pristine); g != p {
		t.Fatalf("sessions list shows\n%+v\nwant what the records say\n%+v", got, pristine)
	}
}

// integrityJSON is v as JSON, to compare.
func integrityJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantEvidenceRed checks that evidence wrote a report that says the
// journal does not verify, and exited 1.
func wantEvidenceRed(t *testing.T, fx *integrityFixture, db string) *evidenceReport {
	t.Helper()
	r, rep := fx.evidence(t, db)
	if r.code != 1 || rep == nil || rep.Verification.Intact || len(rep.Summary.Exceptions) == 0 || rep.Summary.Exceptions[0].Kind != "journal-not-intact" {
		t.Fatalf("evidence exited %d with report %+v; want 1, not intact, the first exception saying so", r.code, rep)
	}
	return rep
}

// TestIntegrityScenarios are the five ways an index edit used to change
// what the readers showed while verify said intact, and the key signed
// over damage.
func TestIntegrityScenarios(t *testing.T) {
	t.Parallel()
	fx := newIntegrityFixture(t)
	pristineCode, pristineList := fx.list(t, fx.pristine)
	if pristineCode.code != 0 || len(pristineList) != 5 {
		t.Fatalf("pristine list: exit %d, %d sessions: %s", pristineCode.code, len(pristineList), pristineCode.stderr)
	}
	if code, rep := fx.verifyJSON(t, fx.pristine); code != 0 || len(rep.Unterminated) != 1 {
		t.Fatalf("pristine verify: exit %d, %+v", code, rep)
	}
	{
		r, rep := fx.evidence(t, fx.copy(t, nil))
		if r.code != 0 || !rep.Verification.Intact || len(rep.Sessions) != 5 || len(rep.Custody.Accesses) < 1 {
			t.Fatalf("pristine evidence: exit %d, %+v\n%s", r.code, rep, r.stderr)
		}
	}
	s2 := fx.sessions[1]

	t.Run("a session moved out of the period", func(t *testing.T) {
		// The listing times are no longer columns beside the records.
		db := fx.copy(t, nil)
		d := tamperOpen(t, db)
		_, err := d.Exec(`UPDATE sessions SET started_ns = 978307200000000000, ended_ns = 978307201000000000 WHERE num = ?`, s2.num)
		d.Close()
		if err == nil || !strings.Contains(err.Error(), "no such column") {
			t.Fatalf("sessions.started_ns still exists: %v", err)
		}
		// The time left to change is the start leaf's own: signed.
		db = fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperEditLeaf(t, tx, s2.startLeaf, func(b []byte) []byte {
				binary.BigEndian.PutUint64(b[len("bastion-journal-v1 leaf\x00")+1:], uint64(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()))
				return b
			})
		})
		wantVerifyFails(t, fx, db, s2.startLeaf, "differs from the signed root")
		if r, list := fx.list(t, db); r.code != 1 || list != nil || !strings.Contains(r.stderr, "does not verify") {
			t.Errorf("sessions list on a log that does not verify: exit %d, %d sessions listed, stderr %q", r.code, len(list), r.stderr)
		}
		wantEvidenceRed(t, fx, db)

		// A schema 2 journal still has the columns: no reader uses them.
		legacy := tamperCopyJournal(t, filepath.Join("..", "..", "testdata", "play", "journal.db"), filepath.Join(t.TempDir(), "legacy.db"))
		tamperApply(t, legacy, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `UPDATE sessions SET started_ns = 978307200000000000, ended_ns = 978307201000000000 WHERE num = 1`)
		})
		key := filepath.Join("..", "..", "testdata", "play", "journal.pub")
		out := filepath.Join(t.TempDir(), "evidence")
		if r := fx.run("evidence", "--db", legacy, "--key", key, "--from", "2026-11-27T08:00:00Z", "--to", "2026-11-27T10:00:00Z", "--out", out); r.code != 0 {
			t.Fatalf("evidence of the schema 2 journal: exit %d: %s", r.code, r.stderr)
		}
		var rep evidenceReport
		if b, err := os.ReadFile(filepath.Join(out, "evidence.json")); err != nil || json.Unmarshal(b, &rep) != nil || len(rep.Sessions) != 2 || !rep.Verification.Intact {
			t.Errorf("evidence of the schema 2 journal with edited listing columns: %+v, %v", rep, err)
		}
		if r := fx.run("sessions", "list", "--db", legacy, "--key", key, "--json"); r.code != 0 || !strings.Contains(r.stdout, `"started": "2026-11-27T09:00:00Z"`) {
			t.Errorf("sessions list of the schema 2 journal: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// A recorded evidence cannot record its read (the home's key is
		// not the journal's): it is refused, and it did not open the
		// journal to write, nor migrate it.
		if code, _, stderr := runArgs("--home", fx.home, "evidence", "--db", legacy, "--key", key, "--from", "2026-11-27T08:00:00Z", "--to", "2026-11-27T10:00:00Z", "--out", filepath.Join(t.TempDir(), "e2")); code != 1 || !strings.Contains(stderr, "cannot be recorded") {
			t.Errorf("a recorded evidence of another key's journal: exit %d, %s", code, stderr)
		}
		if v := tamperInts(t, tamperOpen(t, legacy), `PRAGMA user_version`); len(v) != 1 || v[0] != 2 {
			t.Errorf("the schema 2 journal of another key was migrated to %v", v)
		}
	})

	t.Run("a read removed from custody", func(t *testing.T) {
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `UPDATE leaves SET event = NULL WHERE event = ?`, recorder.EventJournalAccessed)
		})
		wantVerifyFails(t, fx, db, fx.accessed[0], "its event column is NULL, but the event is journal.accessed")
		wantListFromRecords(t, fx, db, pristineList)
		rep := wantEvidenceRed(t, fx, db)
		if !slices.ContainsFunc(rep.Custody.Accesses, func(a struct {
			Leaf   int64  `json:"leaf"`
			Action string `json:"action"`
		}) bool {
			return a.Leaf == fx.accessed[0] && a.Action == "export"
		}) {
			t.Errorf("the report's custody lost the read at leaf %d: %+v", fx.accessed[0], rep.Custody.Accesses)
		}
	})

	t.Run("a finished session shown as live", func(t *testing.T) {
		// The listing columns are gone; what is left is to hide the end
		// leaf from the index.
		s1 := fx.sessions[0]
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `UPDATE leaves SET session = NULL, type = 4, event = 'note' WHERE idx = ?`, s1.endLeaf)
		})
		wantVerifyFails(t, fx, db, s1.endLeaf, "its type column holds 4")
		wantListFromRecords(t, fx, db, pristineList)
		// Its end is not where the index says: show finds the leaf by
		// its encoding and refuses to show the session as live.
		if r := fx.run("sessions", "show", "--db", db, s1.id); r.code != 1 || !strings.Contains(r.stderr, "is of this session, but the index does not file it under it") {
			t.Errorf("sessions show: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := fx.run("sessions", "show", "--db", db, "--force", s1.id); r.code != 1 || !strings.HasPrefix(r.stdout, "SESSION "+s1.id+" DOES NOT VERIFY") {
			t.Errorf("sessions show --force: exit %d; the problem must come first:\n%s", r.code, r.stdout)
		}
		wantEvidenceRed(t, fx, db)
	})

	t.Run("a leaf's type or session changed", func(t *testing.T) {
		seg := s2.segments[1]
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `UPDATE leaves SET type = 3 WHERE idx = ?`, seg)
		})
		wantVerifyFails(t, fx, db, seg, "its type column holds 3, but it is a segment leaf (2)")
		wantListFromRecords(t, fx, db, pristineList)
		if r := fx.run("sessions", "show", "--db", db, s2.id); r.code != 1 || !strings.Contains(r.stderr, "index columns do not match") {
			t.Errorf("sessions show of the session: exit %d, stderr %q", r.code, r.stderr)
		}
		db = fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `UPDATE leaves SET session = ? WHERE idx = ?`, fx.sessions[2].num, seg)
		})
		wantVerifyFails(t, fx, db, seg, "its session column holds")
		wantListFromRecords(t, fx, db, pristineList)
		wantEvidenceRed(t, fx, db)
	})

	t.Run("a live session's last segment hidden", func(t *testing.T) {
		live := fx.live
		last := live.segments[len(live.segments)-1]
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `UPDATE leaves SET session = NULL WHERE idx = ?`, last)
		})
		size, head := integrityHead(t, db)
		wantVerifyFails(t, fx, db, last, "its session column is NULL")
		// The listing reads the leaves: the session has its 4 frames.
		r, list := fx.list(t, db)
		if r.code != 1 || len(list) != 5 || list[4].ID != live.id || list[4].Frames != 4 || list[4].State != StateUnterminated {
			t.Errorf("sessions list: exit %d, %+v", r.code, list)
		}
		if r := fx.run("sessions", "show", "--db", db, live.id); r.code != 1 || !strings.Contains(r.stderr, "hidden from the index") {
			t.Errorf("sessions show: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		// A writer (export records its read) refuses the journal: it
		// neither closes the session nor signs anything; the export is
		// refused, as its read cannot be recorded, and the bundle is not
		// made.
		bundle := filepath.Join(t.TempDir(), "live.bundle")
		code, _, stderr := runArgs("--home", fx.home, "export", "--db", db, "--format", "bundle", "--out", bundle, live.id)
		if code != 1 || !strings.Contains(stderr, "this export cannot be recorded in the journal, so it is refused") || !strings.Contains(stderr, "index does not match") {
			t.Errorf("export: exit %d, stderr %q", code, stderr)
		}
		if _, err := os.Stat(bundle); err == nil {
			t.Error("a bundle of the session was written")
		}
		if n, h := integrityHead(t, db); n != size || h != head {
			t.Errorf("the export's writer signed over the damage: %d leaves (was %d), head changed %v", n, size, h != head)
		}
		wantVerifyFails(t, fx, db, last, "its session column is NULL")
		wantEvidenceRed(t, fx, db)

		// With the hidden segment's frame deleted too, the leaf is
		// still found by its encoding.
		db = fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `UPDATE leaves SET session = NULL WHERE idx = ?`, last)
			tamperExec(t, tx, `DELETE FROM frames WHERE session = ? AND seq = 4`, live.num)
		})
		if r := fx.run("sessions", "show", "--db", db, live.id); r.code != 1 || !strings.Contains(r.stderr, "is of this session, but the index does not file it under it") {
			t.Errorf("sessions show: exit %d, stderr %q", r.code, r.stderr)
		}
		if r := fx.run("export", "--db", db, "--format", "bundle", "--out", bundle, live.id); r.code == 0 {
			t.Errorf("export of a session with a hidden segment: exit 0")
		}
		wantVerifyFails(t, fx, db, last, "")
	})
}

// TestIndexColumnMatrix edits every column of every table of the journal,
// one at a time, and checks each reader: verify fails at the place the
// format names (docs/journal-format.md, 9.2), or the column is one the
// document names as read by no reader and no verifier, and then verify,
// sessions list, sessions show and evidence are unchanged; sessions list
// and sessions show never print an edited value (their output is the
// pristine one, or they exit non-zero), and evidence is never green on a
// journal verify rejects.
func TestIndexColumnMatrix(t *testing.T) {
	t.Parallel()
	fx := newIntegrityFixture(t)
	s2 := fx.sessions[1]
	seg2 := s2.frameSegments[2] // the segment leaf that commits frame 2 of session 2
	segLeaf := s2.segments[1]
	unused := int64(-2) // verify must stay intact
	frame2 := func(set string) func(t *testing.T, tx *sql.Tx) {
		return func(t *testing.T, tx *sql.Tx) {
			if n := tamperExec(t, tx, `UPDATE frames SET `+set+` WHERE session = ? AND seq = 2`, s2.num); n != 1 {
				t.Fatalf("%d frames changed", n)
			}
		}
	}
	exec := func(stmt string, args ...any) func(t *testing.T, tx *sql.Tx) {
		return func(t *testing.T, tx *sql.Tx) {
			if n := tamperExec(t, tx, stmt, args...); n < 1 {
				t.Fatalf("%s: no row changed", stmt)
			}
		}
	}
	type edit struct {
		name string
		fn   func(t *testing.T, tx *sql.Tx)
		leaf int64 // where verify's first problem is; unused: nowhere
	}
	cases := map[string][]edit{
		"meta.key": {{"origin renamed", exec(`UPDATE meta SET key = 'origin2' WHERE key = 'origin'`), -1}},
		"meta.value": {
			{"origin", exec(`UPDATE meta SET value = 'other.example/journal' WHERE key = 'origin'`), -1},
			{"format", exec(`UPDATE meta SET value = 'bastion-journal-v2' WHERE key = 'format'`), -1},
			{"verifier_key", exec(`UPDATE meta SET value = replace(value, '+', '+0') WHERE key = 'verifier_key'`), -1},
			{"created_ns (informational)", exec(`UPDATE meta SET value = '0' WHERE key = 'created_ns'`), unused},
			{"hostname (informational)", exec(`UPDATE meta SET value = 'elsewhere' WHERE key = 'hostname'`), unused},
		},
		"sessions.num":        {{"renumbered", exec(`UPDATE sessions SET num = 77 WHERE num = ?`, s2.num), s2.startLeaf}},
		"sessions.id":         {{"another id", exec(`UPDATE sessions SET id = randomblob(16) WHERE num = ?`, s2.num), s2.startLeaf}},
		"sessions.start_leaf": {{"another start", exec(`UPDATE sessions SET start_leaf = start_leaf + 1 WHERE num = ?`, s2.num), s2.startLeaf}},
		"frames.id":           {{"row id (meaningless)", frame2(`id = id + 1000000`), unused}},
		"frames.session":      {{"moved to no session", frame2(`session = 99`), seg2}},
		"frames.seq":          {{"renumbered", frame2(`seq = 1000`), seg2}},
		"frames.kind":         {{"output as stderr", frame2(`kind = 3`), seg2}},
		"frames.channel":      {{"another channel", frame2(`channel = channel + 1`), seg2}},
		"frames.mono_ns":      {{"re-timed", frame2(`mono_ns = mono_ns + 1`), seg2}},
		"frames.wall_ns":      {{"re-timed", frame2(`wall_ns = wall_ns + 1`), seg2}},
		"frames.payload":      {{"a byte more", frame2(`payload = CAST(X'78' || payload AS BLOB)`), seg2}},
		"frames.chain":        {{"hint rewritten", frame2(`chain = randomblob(32)`), seg2}},
		"leaves.idx":          {{"last leaf moved", exec(`UPDATE leaves SET idx = idx + 1000 WHERE idx = ?`, fx.treeSize-1), fx.treeSize - 1}},
		"leaves.type":         {{"segment as end", exec(`UPDATE leaves SET type = 3 WHERE idx = ?`, segLeaf), segLeaf}},
		"leaves.session":      {{"segment under no session", exec(`UPDATE leaves SET session = NULL WHERE idx = ?`, segLeaf), segLeaf}},
		"leaves.event":        {{"event renamed", exec(`UPDATE leaves SET event = 'note' WHERE idx = ?`, fx.accessed[0]), fx.accessed[0]}},
		"leaves.data": {{"segment head changed", func(t *testing.T, tx *sql.Tx) {
			tamperEditLeaf(t, tx, segLeaf, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
		}, segLeaf}},
		"tree_hashes.idx":        {{"a row moved", exec(`UPDATE tree_hashes SET idx = idx + 100000 WHERE idx = 3`), fx.treeSize}},
		"tree_hashes.hash":       {{"a hash changed", exec(`UPDATE tree_hashes SET hash = randomblob(32) WHERE idx = 3`), fx.treeSize}},
		"checkpoints.tree_size":  {{"size changed", exec(`UPDATE checkpoints SET tree_size = tree_size + 1000 WHERE tree_size = (SELECT min(tree_size) FROM checkpoints)`), fx.treeSize}},
		"checkpoints.created_ns": {{"time changed", exec(`UPDATE checkpoints SET created_ns = created_ns + 1 WHERE tree_size = (SELECT min(tree_size) FROM checkpoints)`), fx.treeSize}},
		"checkpoints.note": {{"signature changed", func(t *testing.T, tx *sql.Tx) {
			var size int64
			if err := tx.QueryRow(`SELECT min(tree_size) FROM checkpoints`).Scan(&size); err != nil {
				t.Fatal(err)
			}
			tamperFlipSignature(t, tx, "checkpoints", "tree_size = ?", size)
		}, fx.treeSize}},
		"head.one": {{"not 1", func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `PRAGMA ignore_check_constraints = ON`)
			exec(`UPDATE head SET one = 2`)(t, tx)
		}, fx.treeSize}},
		"head.tree_size":  {{"size changed", exec(`UPDATE head SET tree_size = tree_size - 1`), fx.treeSize}},
		"head.created_ns": {{"time changed", exec(`UPDATE head SET created_ns = created_ns + 1`), fx.treeSize}},
		"head.note":       {{"signature changed", func(t *testing.T, tx *sql.Tx) { tamperFlipSignature(t, tx, "head", "one = ?", 1) }, fx.treeSize}},
	}

	// Every column of every table has its case: a new column must get
	// one, and a place in the format's table (9.2).
	db := tamperOpen(t, fx.pristine)
	var columns []string
	for _, table := range []string{"meta", "sessions", "frames", "leaves", "tree_hashes", "checkpoints", "head"} {
		for _, c := range tamperStrings(t, db, `SELECT name FROM pragma_table_info(?)`, table) {
			columns = append(columns, table+"."+c)
		}
	}
	tables := tamperStrings(t, db, `SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name`)
	db.Close()
	if want := []string{"checkpoints", "frames", "head", "leaves", "meta", "sessions", "tree_hashes"}; !slices.Equal(tables, want) {
		t.Fatalf("the journal's tables are %v, want %v: a new table needs its cases", tables, want)
	}
	for _, c := range columns {
		if len(cases[c]) == 0 {
			t.Errorf("no tamper case for column %s", c)
		}
	}
	format, err := os.ReadFile(filepath.Join("..", "..", "docs", "journal-format.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, unusedCol := range []string{"| `meta.created_ns`, `meta.hostname` |", "| `frames.id` |"} {
		i := strings.Index(string(format), unusedCol)
		if i < 0 || !strings.Contains(strings.SplitN(string(format)[i:], "\n", 2)[0], "read by no reader and no verifier") {
			t.Errorf("docs/journal-format.md does not name %s as read by no reader and no verifier", unusedCol)
		}
	}

	show := func(db string) integrityRun { return fx.run("sessions", "show", "--db", db, "--json", s2.id) }
	pristineList, _ := fx.list(t, fx.pristine)
	pristineShow := show(fx.pristine)
	_, pristineEvidence := fx.evidence(t, fx.copy(t, nil))
	if pristineList.code != 0 || pristineShow.code != 0 || pristineEvidence == nil || !pristineEvidence.Verification.Intact {
		t.Fatalf("pristine: list exit %d, show exit %d (%s), evidence %+v", pristineList.code, pristineShow.code, pristineShow.stderr, pristineEvidence)
	}
	for _, col := range columns {
		for _, c := range cases[col] {
			t.Run(col+"/"+c.name, func(t *testing.T) {
				db := fx.copy(t, c.fn)
				code, rep := fx.verifyJSON(t, db)
				if c.leaf == unused {
					if code != 0 {
						t.Fatalf("verify of an edit of a column no one reads: exit %d, %+v", code, rep.Problems)
					}
				} else if code != 1 || len(rep.Problems) == 0 || rep.Problems[0].Leaf != c.leaf {
					t.Fatalf("verify: exit %d, problems %+v; want exit 1, the first at leaf %d", code, rep.Problems, c.leaf)
				}
				if r := fx.run("sessions", "list", "--db", db, "--json"); r.code == 0 && r.stdout != pristineList.stdout || r.stdout != "" && r.stdout != pristineList.stdout {
					t.Errorf("sessions list (exit %d) shows what the records do not say:\n%s\nwant\n%s", r.code, r.stdout, pristineList.stdout)
				} else if c.leaf != unused && r.code == 0 && c.leaf <= fx.treeSize && strings.HasPrefix(col, "leaves.") {
					t.Errorf("sessions list exits 0 on an edited index of the log it reads")
				}
				if r := show(db); r.code == 0 && r.stdout != pristineShow.stdout {
					t.Errorf("sessions show exits 0 with what the records do not say:\n%s", r.stdout)
				}
				r, ev := fx.evidence(t, db)
				switch {
				case ev == nil:
					t.Fatalf("evidence: exit %d without a report: %s", r.code, r.stderr)
				case code == 1 && (r.code != 1 || ev.Verification.Intact || len(ev.Summary.Exceptions) == 0):
					t.Errorf("evidence on a journal verify rejects: exit %d, intact %v", r.code, ev.Verification.Intact)
				case code == 0 && (r.code != 0 || integrityJSON(t, ev.Sessions) != integrityJSON(t, pristineEvidence.Sessions)):
					t.Errorf("evidence of an intact journal: exit %d, sessions %+v, want %+v", r.code, ev.Sessions, pristineEvidence.Sessions)
				}
				// evidence wrote its read to the journal if it could: a
				// writer that opened it never erased or signed over the
				// damage, which verify still finds where it was.
				if c.leaf != unused {
					code, rep := fx.verifyJSON(t, db)
					first := rep.Problems
					switch {
					case code != 1 || len(first) == 0:
						t.Errorf("after a writer ran, verify exits %d: the damage is gone", code)
					case c.leaf < fx.treeSize && first[0].Leaf != c.leaf,
						c.leaf >= fx.treeSize && first[0].Leaf < fx.treeSize:
						t.Errorf("after a writer ran, the first problem is %+v, want it at leaf %d", first[0], c.leaf)
					}
				}
			})
		}
	}
}

// tamperStrings runs a query for one text column.
func tamperStrings(t *testing.T, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestIntegrityAttacks are edits a review of the readers found; each once
// made a reader show an edited value as verified, made verify say intact,
// or had the writer sign over it.
func TestIntegrityAttacks(t *testing.T) {
	t.Parallel()
	fx := newIntegrityFixture(t)
	s2, live := fx.sessions[1], fx.live
	writerRefuses := func(t *testing.T, db string) {
		t.Helper()
		size, head := integrityHead(t, db)
		r := fx.run("record", "-q", "--db", db, "--", "true")
		if r.code == 0 {
			t.Errorf("a writer opened the journal and recorded")
		}
		if n, h := integrityHead(t, db); n != size || h != head {
			t.Errorf("the writer signed: %d leaves (was %d)", n, size)
		}
	}
	t.Run("an older checkpoint put in the head's place, later frames deleted", func(t *testing.T) {
		var size int64
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			// The largest kept checkpoint before the live session's
			// last segment.
			if err := tx.QueryRow(`SELECT max(tree_size) FROM checkpoints WHERE tree_size <= ?`, live.segments[len(live.segments)-1]).Scan(&size); err != nil {
				t.Fatal(err)
			}
			tamperExec(t, tx, `UPDATE head SET (tree_size, created_ns, note) = (SELECT tree_size, created_ns, note FROM checkpoints WHERE tree_size = ?)`, size)
			tamperExec(t, tx, `DELETE FROM frames WHERE session = ? AND seq > 1`, live.num)
		})
		for _, args := range [][]string{
			{"sessions", "show", "--db", db, live.id},
			{"play", "--db", db, "--speed", "max", live.id},
			{"export", "--db", db, "--format", "bundle", live.id},
			{"sessions", "list", "--db", db},
		} {
			if r := fx.run(args...); r.code != 1 {
				t.Errorf("%s: exit %d, want 1\n%s%s", args[:2], r.code, r.stdout, r.stderr)
			}
		}
		wantVerifyFails(t, fx, db, live.segments[1], "")
	})
	t.Run("a trigger named like SQLite's statistics", func(t *testing.T) {
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `PRAGMA writable_schema = ON`)
			tamperExec(t, tx, `INSERT INTO sqlite_schema VALUES ('trigger', 'sqlite_stat9', 'frames', 0,
				'CREATE TRIGGER sqlite_stat9 AFTER INSERT ON frames BEGIN UPDATE frames SET payload = CAST(''x'' AS BLOB) WHERE id = new.id; END')`)
		})
		wantVerifyFails(t, fx, db, -1, "trigger sqlite_stat9")
		writerRefuses(t, db)
	})
	t.Run("a negative session number", func(t *testing.T) {
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `UPDATE sessions SET num = -5 WHERE num = ?`, s2.num)
			tamperExec(t, tx, `UPDATE leaves SET session = NULL WHERE session = ?`, s2.num)
			tamperExec(t, tx, `UPDATE frames SET session = -5 WHERE session = ?`, s2.num)
		})
		wantVerifyFails(t, fx, db, s2.startLeaf, "")
		writerRefuses(t, db)
	})
	for _, c := range []struct {
		name string
		idx  string
	}{{"a leaf copied to index -1", "-1"}, {"a leaf copied to index 2^62", "4611686018427387904"}, {"a leaf copied to the largest index", "9223372036854775807"}} {
		t.Run(c.name, func(t *testing.T) {
			db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
				tamperExec(t, tx, `INSERT INTO leaves (idx, type, session, data, event) SELECT `+c.idx+`, type, session, data, event FROM leaves WHERE idx = ?`, s2.segments[0])
			})
			wantVerifyFails(t, fx, db, fx.treeSize, "")
			if r, _ := fx.list(t, db); r.code != 1 {
				t.Errorf("sessions list: exit %d, want 1: %s", r.code, r.stderr)
			}
			writerRefuses(t, db)
		})
	}
	t.Run("a sessions row beyond the log", func(t *testing.T) {
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `INSERT INTO sessions (num, id, start_leaf) VALUES (50, randomblob(16), 100000)`)
		})
		wantVerifyFails(t, fx, db, fx.treeSize, "no leaf starts it")
		if r, _ := fx.list(t, db); r.code != 1 || !strings.Contains(r.stderr, "no leaf starts it") {
			t.Errorf("sessions list: exit %d, stderr %q", r.code, r.stderr)
		}
		writerRefuses(t, db)
	})
	t.Run("play from an offset the index's times were changed for", func(t *testing.T) {
		// Frame 2 of session 2 claims a late time: the binary search
		// lands after it, and the frames in between would be skipped.
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `UPDATE frames SET mono_ns = 9000000000 WHERE session = ? AND seq = 2`, s2.num)
		})
		if r := fx.run("play", "--db", db, "--speed", "max", "--from", "1ms", s2.id); r.code != 1 {
			t.Errorf("play --from: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("a checkpoint row's time that is not a number", func(t *testing.T) {
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `PRAGMA writable_schema = ON`)
			tamperExec(t, tx, `UPDATE sqlite_schema SET sql = replace(sql, 'created_ns INTEGER NOT NULL', 'created_ns ANY NOT NULL') WHERE name = 'head'`)
		})
		// The schema change is a problem already; the value is next.
		d := tamperOpen(t, db)
		if _, err := d.Exec(`UPDATE head SET created_ns = 'abc'`); err != nil {
			t.Fatal(err)
		}
		d.Close()
		if r, _ := fx.list(t, db); r.code != 1 {
			t.Errorf("sessions list: exit %d, want 1: %s", r.code, r.stderr)
		}
		wantVerifyFails(t, fx, db, -1, "")
	})
	t.Run("the largest kept checkpoint taken from another journal of the same key", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.db")
		for _, script := range []string{"echo a", "echo b", "echo c", "echo d"} {
			if r := fx.run("record", "-q", "--db", other, "--", "sh", "-c", script); r.code != 0 {
				t.Fatalf("record: %s", r.stderr)
			}
		}
		var size int64
		var created int64
		var note []byte
		o := tamperOpen(t, other)
		if err := o.QueryRow(`SELECT tree_size, created_ns, note FROM checkpoints WHERE tree_size < ? ORDER BY tree_size DESC LIMIT 1`, fx.treeSize).Scan(&size, &created, &note); err != nil {
			t.Fatal(err)
		}
		o.Close()
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `DELETE FROM checkpoints WHERE tree_size >= ?`, size)
			tamperExec(t, tx, `INSERT INTO checkpoints (tree_size, created_ns, note) VALUES (?, ?, ?)`, size, created, note)
		})
		if code, rep := fx.verifyJSON(t, db); code != 1 || !strings.Contains(rep.Problems[0].What, "differs from the signed root") {
			t.Errorf("verify: exit %d, %+v", code, rep.Problems)
		}
		writerRefuses(t, db)
	})
	t.Run("an empty log beside other rows", func(t *testing.T) {
		db := fx.copy(t, func(t *testing.T, tx *sql.Tx) {
			tamperExec(t, tx, `DELETE FROM leaves`)
			tamperExec(t, tx, `DELETE FROM tree_hashes`)
			tamperExec(t, tx, `DELETE FROM head`)
			tamperExec(t, tx, `DELETE FROM checkpoints`)
		})
		r := fx.run("record", "-q", "--db", db, "--", "true")
		if r.code == 0 {
			t.Errorf("a writer opened an empty log with sessions and frames beside it")
		}
	})
}
