package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3"
)

// TestVerifyTamperMatrix is the tamper half of the journal's "must show"
// suite. It records one journal with three real sessions, then, for each
// kind of tampering an attacker with write access to the SQLite file (but
// not to the signing key) could try, copies it, tampers with the copy in
// plain SQL and runs "bastion verify" on it: the exit status must be 1 and
// the first problem must name the record that was touched. The untouched
// journal must verify, and verify must refuse to run (exit 2) rather than
// report on a journal it cannot read or a key that is not the journal's.
func TestVerifyTamperMatrix(t *testing.T) {
	t.Parallel()
	fx := newTamperFixture(t)
	s2, s3 := fx.sessions[1], fx.sessions[2]

	// The frames the cases touch, all in the middle session, so that damage
	// must be found between two sessions that verify.
	outs := s2.outputs()
	if len(outs) < 4 || len(s2.segments) < 3 {
		t.Fatalf("fixture: session 2 has %d output frames, and %d segment leaves; the cases need 4 and 3", len(outs), len(s2.segments))
	}
	target := outs[2] // an output frame with output frames before and after it
	swapA, swapB := outs[1], outs[3]
	if bytes.Equal(swapA.payload, swapB.payload) {
		t.Fatalf("fixture: frames %d and %d of session 2 have the same payload %q", swapA.seq, swapB.seq, swapA.payload)
	}
	last := s2.frames[len(s2.frames)-1]
	segOf := func(seq int64) string {
		return fmt.Sprintf("leaf %d (segment of session %s)", s2.segmentLeaf(t, seq), s2.id)
	}
	firstDiffers := func(seq int64) string {
		return fmt.Sprintf("frame %d is the first whose content differs from its stored chain value", seq)
	}
	// Three consecutive segment leaves of session 2, the middle one
	// preferably not the first leaf after a kept checkpoint.
	segPrev, segMid, segNext := s2.segments[0], s2.segments[1], s2.segments[2]
	for i := 1; i+1 < len(s2.segments); i++ {
		if !slices.Contains(fx.published, s2.segments[i].leaf) {
			segPrev, segMid, segNext = s2.segments[i-1], s2.segments[i], s2.segments[i+1]
			break
		}
	}
	fakeID := uuid.New()
	// After session 2's leaves are cut out, later leaves move down; the
	// first signed checkpoint that covers the changed position fails.
	n2 := s2.endLeaf - s2.startLeaf + 1
	cutTree := fx.treeSize - n2

	type tc struct {
		name   string
		tamper func(t *testing.T, db *sql.Tx) // nil: none
		// restore, if set, replaces the pristine copy by another file
		// before tamper runs.
		restore string
		args    []string // more verify flags
		code    int
		// For code 1: the first problem's where, exactly; its leaf; a
		// substring its what must contain, and one it must not. anyFirst
		// leaves the first problem unchecked, for damage the product does
		// not name yet.
		anyFirst bool
		where    string
		leaf     int64
		what     string
		notWhat  string
		check    func(t *testing.T, r *tamperReport)
	}
	cases := []tc{
		{
			name: "untouched", code: 0,
			check: func(t *testing.T, r *tamperReport) {
				if r.TreeSize != fx.treeSize || r.Sessions != 3 || r.Uncovered != 0 || r.Covered != fx.treeSize {
					t.Errorf("tree %d, sessions %d, covered %d, uncovered %d; want %d, 3, %d, 0",
						r.TreeSize, r.Sessions, r.Covered, r.Uncovered, fx.treeSize, fx.treeSize)
				}
			},
		},
		{
			name: "untouched, against the kept checkpoint", code: 0,
			args: []string{"--checkpoint", fx.keptFile},
			check: func(t *testing.T, r *tamperReport) {
				k := r.Kept
				if k == nil || !k.Consistent || k.Size != fx.keptSize || k.ProvedTo != fx.treeSize || k.ProofHashes == 0 {
					t.Errorf("kept = %+v, want consistent size %d proved to %d with a non-empty proof", k, fx.keptSize, fx.treeSize)
				}
			},
		},
		{
			name: "output byte changed",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `UPDATE frames SET payload = CAST(? AS BLOB) WHERE session = ? AND seq = ?`,
					tamperFlipFirstByte(target.payload), s2.num, target.seq)
			},
			code: 1, where: segOf(target.seq), leaf: s2.segmentLeaf(t, target.seq), what: firstDiffers(target.seq),
		},
		{
			// The stored chain values are only hints: an attacker can
			// recompute them with the public algorithm. The segment leaf,
			// covered by a signed checkpoint, is what they cannot forge.
			name: "output byte changed, chain recomputed",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `UPDATE frames SET payload = CAST(? AS BLOB) WHERE session = ? AND seq = ?`,
					tamperFlipFirstByte(target.payload), s2.num, target.seq)
				tamperRechain(t, db, s2)
			},
			code: 1, where: segOf(target.seq), leaf: s2.segmentLeaf(t, target.seq),
			what: "does not match the head committed by this segment leaf", notWhat: "first whose content differs",
		},
		{
			name: "wall time changed",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `UPDATE frames SET wall_ns = wall_ns + 1000000000 WHERE session = ? AND seq = ?`, s2.num, target.seq)
			},
			code: 1, where: segOf(target.seq), leaf: s2.segmentLeaf(t, target.seq), what: firstDiffers(target.seq),
		},
		{
			name: "monotonic time changed",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `UPDATE frames SET mono_ns = mono_ns - 1 WHERE session = ? AND seq = ?`, s2.num, target.seq)
			},
			code: 1, where: segOf(target.seq), leaf: s2.segmentLeaf(t, target.seq), what: firstDiffers(target.seq),
		},
		{
			name: "frame deleted",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `DELETE FROM frames WHERE session = ? AND seq = ?`, s2.num, target.seq)
			},
			code: 1, where: fmt.Sprintf("session %s frame %d", s2.id, target.seq),
			leaf: s2.segmentLeaf(t, target.seq), what: fmt.Sprintf("missing: frames jump from %d to %d (deleted)", target.seq-1, target.seq+1),
		},
		{
			name: "last frame deleted",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `DELETE FROM frames WHERE session = ? AND seq = ?`, s2.num, last.seq)
			},
			code: 1, where: fmt.Sprintf("session %s frames %d..%d", s2.id, last.seq, last.seq),
			leaf: s2.segmentLeaf(t, last.seq), what: "not in the journal (deleted)",
		},
		{
			name: "frame deleted, later frames renumbered, chain recomputed",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `DELETE FROM frames WHERE session = ? AND seq = ?`, s2.num, target.seq)
				tamperShiftSeqs(t, db, s2.num, target.seq+1, -1)
				tamperRechain(t, db, s2)
			},
			code: 1, where: segOf(target.seq), leaf: s2.segmentLeaf(t, target.seq),
			what: "does not match the head committed by this segment leaf",
		},
		{
			name: "frame inserted in the middle, later frames renumbered, chain recomputed",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperShiftSeqs(t, db, s2.num, target.seq, +1)
				tamperExec(t, db, `INSERT INTO frames (session, seq, kind, channel, mono_ns, wall_ns, payload, chain)
					SELECT session, ?, kind, channel, mono_ns, wall_ns, CAST('rm -rf /\r\n' AS BLOB), chain
					FROM frames WHERE session = ? AND seq = ?`, target.seq, s2.num, target.seq+1)
				tamperRechain(t, db, s2)
			},
			code: 1, where: segOf(target.seq), leaf: s2.segmentLeaf(t, target.seq),
			what: "does not match the head committed by this segment leaf",
		},
		{
			name: "frame inserted after the last",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `INSERT INTO frames (session, seq, kind, channel, mono_ns, wall_ns, payload, chain)
					SELECT session, seq + 1, 2, channel, mono_ns + 1, wall_ns + 1, CAST('one more line\r\n' AS BLOB), chain
					FROM frames WHERE session = ? AND seq = ?`, s2.num, last.seq)
				tamperRechain(t, db, s2)
			},
			code: 1, where: fmt.Sprintf("session %s frame %d", s2.id, last.seq+1), leaf: fx.treeSize,
			what: "no segment leaf commits it (inserted after the last commit)",
		},
		{
			name: "two frames swapped",
			tamper: func(t *testing.T, db *sql.Tx) {
				for _, p := range [][2]tamperFrame{{swapA, swapB}, {swapB, swapA}} {
					tamperExec(t, db, `UPDATE frames SET kind = ?, payload = CAST(? AS BLOB) WHERE session = ? AND seq = ?`,
						p[1].kind, p[1].payload, s2.num, p[0].seq)
				}
			},
			code: 1, where: segOf(swapA.seq), leaf: s2.segmentLeaf(t, swapA.seq), what: firstDiffers(swapA.seq),
		},
		{
			// The log is recomputed from contiguous leaves, so the gap is
			// not visible in the leaves table: the tree root is. The first
			// signed checkpoint over the changed position fails, and names
			// the first leaf that differs.
			name: "session deleted with its leaves, later leaves renumbered",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `DELETE FROM frames WHERE session = ?`, s2.num)
				tamperExec(t, db, `DELETE FROM sessions WHERE num = ?`, s2.num)
				tamperExec(t, db, `DELETE FROM leaves WHERE idx BETWEEN ? AND ?`, s2.startLeaf, s2.endLeaf)
				tamperExec(t, db, `UPDATE leaves SET idx = -idx WHERE idx > ?`, s2.endLeaf)
				tamperExec(t, db, `UPDATE leaves SET idx = -idx - ? WHERE idx < 0`, n2)
			},
			code: 1, where: fmt.Sprintf("checkpoint at tree size %d", fx.firstCheckpointIn(t, s2.startLeaf, cutTree)),
			leaf: s2.startLeaf, what: fmt.Sprintf("leaf %d is the first whose content differs from the hash stored for it", s2.startLeaf),
		},
		{
			name: "session deleted with its leaves, leaves not renumbered",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `DELETE FROM frames WHERE session = ?`, s2.num)
				tamperExec(t, db, `DELETE FROM sessions WHERE num = ?`, s2.num)
				tamperExec(t, db, `DELETE FROM leaves WHERE idx BETWEEN ? AND ?`, s2.startLeaf, s2.endLeaf)
			},
			code: 1, where: fmt.Sprintf("leaf %d", s2.startLeaf), leaf: s2.startLeaf,
			what: fmt.Sprintf("the log jumps from leaf %d to leaf %d (deleted)", s2.startLeaf-1, s2.endLeaf+1),
		},
		{
			name: "session's frames and sessions row deleted",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `DELETE FROM frames WHERE session = ?`, s2.num)
				tamperExec(t, db, `DELETE FROM sessions WHERE num = ?`, s2.num)
			},
			code: 1, where: fmt.Sprintf("leaf %d (session-start of session %s)", s2.startLeaf, s2.id), leaf: s2.startLeaf,
			what: "no row of the sessions table maps this session to a number (deleted)",
		},
		{
			name: "session inserted",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `INSERT INTO sessions (num, id, start_leaf) VALUES (99, ?, 0)`, fakeID[:])
				tamperExec(t, db, `INSERT INTO frames (session, seq, kind, channel, mono_ns, wall_ns, payload, chain)
					SELECT 99, seq, kind, channel, mono_ns, wall_ns, payload, chain FROM frames WHERE session = ?`, s2.num)
			},
			code: 1, where: "session " + fakeID.String(), leaf: fx.treeSize, what: "no leaf starts it (inserted)",
		},
		{
			name: "frames inserted for no session",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `INSERT INTO frames (session, seq, kind, channel, mono_ns, wall_ns, payload, chain)
					SELECT 99, seq, kind, channel, mono_ns, wall_ns, payload, chain FROM frames WHERE session = ?`, s2.num)
			},
			code: 1, where: "frames of session number 99", leaf: fx.treeSize, what: "belong to no known session",
		},
		{
			// Cut back to the state after session 1, consistently: what
			// remains is a journal the key did sign. Only a checkpoint kept
			// outside the journal shows that it once was longer.
			name:   "tail truncated, without the kept checkpoint",
			tamper: func(t *testing.T, db *sql.Tx) { fx.truncate(t, db, s2) },
			code:   0,
			check: func(t *testing.T, r *tamperReport) {
				if r.TreeSize != s2.startLeaf || r.Sessions != 1 {
					t.Errorf("tree size %d with %d sessions, want the %d leaves of session 1 alone", r.TreeSize, r.Sessions, s2.startLeaf)
				}
			},
		},
		{
			name:   "tail truncated, against the kept checkpoint",
			tamper: func(t *testing.T, db *sql.Tx) { fx.truncate(t, db, s2) },
			args:   []string{"--checkpoint", fx.keptFile},
			code:   1, where: fmt.Sprintf("kept checkpoint at tree size %d", fx.keptSize), leaf: s2.startLeaf,
			what: fmt.Sprintf("the journal has only %d leaves: it was rolled back to an older copy (or truncated)", s2.startLeaf),
		},
		{
			name: "older copy restored, without the kept checkpoint", restore: fx.early, code: 0,
		},
		{
			name: "older copy restored, against the kept checkpoint", restore: fx.early,
			args: []string{"--checkpoint", fx.keptFile},
			code: 1, where: fmt.Sprintf("kept checkpoint at tree size %d", fx.keptSize), leaf: fx.earlySize,
			what: "rolled back to an older copy (or truncated)",
		},
		{
			name: "kept checkpoint's signature altered in the journal",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperFlipSignature(t, db, `checkpoints`, `tree_size = ?`, fx.keptSize)
			},
			// A checkpoint row's own size says nothing about where the
			// damage is: it sorts after every record proven bad.
			code: 1, where: fmt.Sprintf("checkpoint at tree size %d", fx.keptSize), leaf: fx.treeSize, what: "invalid checkpoint",
		},
		{
			name: "head checkpoint's signature altered",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperFlipSignature(t, db, `head`, `one = ?`, 1)
			},
			code: 1, where: fmt.Sprintf("head checkpoint at tree size %d", fx.treeSize), leaf: fx.treeSize, what: "invalid checkpoint",
		},
		{
			name: "every checkpoint's signature altered",
			tamper: func(t *testing.T, db *sql.Tx) {
				for _, size := range fx.published {
					tamperFlipSignature(t, db, `checkpoints`, `tree_size = ?`, size)
				}
				tamperFlipSignature(t, db, `head`, `one = ?`, 1)
			},
			code: 1, where: fmt.Sprintf("checkpoint at tree size %d", fx.published[0]), leaf: fx.treeSize, what: "invalid checkpoint",
			check: func(t *testing.T, r *tamperReport) {
				if last := r.Problems[len(r.Problems)-1]; last.Where != "journal" || !strings.Contains(last.What, "no valid signed checkpoint") {
					t.Errorf("last problem %+v, want the journal as a whole: no valid signed checkpoint", last)
				}
			},
		},
		{
			name: "all checkpoints deleted",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `DELETE FROM checkpoints`)
				tamperExec(t, db, `DELETE FROM head`)
			},
			code: 1, where: "head checkpoint", leaf: fx.treeSize, what: "missing: every commit stores one",
			check: func(t *testing.T, r *tamperReport) {
				if r.Covered != 0 || r.Uncovered != fx.treeSize || r.Checkpoints != 0 {
					t.Errorf("covered %d, uncovered %d, valid checkpoints %d; want 0, %d, 0", r.Covered, r.Uncovered, r.Checkpoints, fx.treeSize)
				}
			},
		},
		{
			name:   "session-start leaf modified",
			tamper: func(t *testing.T, db *sql.Tx) { tamperEditStart(t, db, s2) },
			code:   1, where: fmt.Sprintf("checkpoint at tree size %d", fx.firstCheckpointIn(t, s2.startLeaf, fx.treeSize)),
			leaf: s2.startLeaf, what: fmt.Sprintf("leaf %d is the first whose content differs from the hash stored for it", s2.startLeaf),
		},
		{
			// A leaf in the middle of a session, after the last checkpoint
			// that still verifies: the first bad record is that leaf, not
			// the intact leaves between the checkpoint and it.
			name: "segment leaf modified",
			tamper: func(t *testing.T, db *sql.Tx) {
				// The last byte is in the chain head the segment commits.
				tamperEditLeaf(t, db, segMid.leaf, func(data []byte) []byte {
					data[len(data)-1] ^= 1
					return data
				})
			},
			code: 1, where: fmt.Sprintf("checkpoint at tree size %d", fx.firstCheckpointIn(t, segMid.leaf, fx.treeSize)),
			leaf: segMid.leaf, what: fmt.Sprintf("leaf %d is the first whose content differs from the hash stored for it", segMid.leaf),
		},
		{
			// Reordering the log: each segment leaf must continue where the
			// previous one of its session ended.
			name: "two segment leaves swapped",
			tamper: func(t *testing.T, db *sql.Tx) {
				a, b := segMid.leaf, segNext.leaf
				tamperExec(t, db, `UPDATE leaves SET data = CASE idx WHEN ? THEN (SELECT data FROM leaves WHERE idx = ?)
					ELSE (SELECT data FROM leaves WHERE idx = ?) END WHERE idx IN (?, ?)`, a, b, a, a, b)
			},
			code: 1, where: fmt.Sprintf("leaf %d (segment of session %s)", segMid.leaf, s2.id), leaf: segMid.leaf,
			what: fmt.Sprintf("commits frames %d..%d but the previous segment ended at frame %d",
				segNext.first, segNext.last, segPrev.last),
			check: func(t *testing.T, r *tamperReport) {
				for _, u := range r.Unterminated {
					if u.ID == s2.id {
						t.Errorf("the tampered session %s is listed as unterminated (\"not tampering by itself\"), but it has an end leaf", s2.id)
					}
				}
			},
		},
		{
			// With the stored tree hashes recomputed too, nothing in the
			// file localizes the change; the signed checkpoints still bound
			// it: between the last one that verifies and the first that
			// does not.
			name: "session-start leaf modified, stored tree hashes recomputed",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperEditStart(t, db, s2)
				tamperRehash(t, db)
			},
			code: 1, where: fmt.Sprintf("checkpoint at tree size %d", fx.firstCheckpointIn(t, s2.startLeaf, fx.treeSize)),
			leaf: fx.lastCheckpointUpTo(t, s2.startLeaf),
			what: fmt.Sprintf("the change is in leaves %d..%d", fx.lastCheckpointUpTo(t, s2.startLeaf), fx.firstCheckpointIn(t, s2.startLeaf, fx.treeSize)-1),
		},
		{
			// The metadata is not signed: the auditor's key names the log.
			// Damage to it is damage to the journal, which verify must
			// report (exit 1) rather than give up on (exit 2), or an
			// attacker could choose which of the two an audit records.
			name: "metadata origin changed",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `UPDATE meta SET value = 'elsewhere.example/journal' WHERE key = 'origin'`)
			},
			code: 1, anyFirst: true,
		},
		{
			name:   "metadata deleted",
			tamper: func(t *testing.T, db *sql.Tx) { tamperExec(t, db, `DELETE FROM meta`) },
			code:   1, anyFirst: true,
		},
		{
			// The log and its checkpoints are checked whole even when
			// verify is asked about one session: a tampered journal must
			// not pass for intact because the damage is elsewhere.
			name:   "session-start leaf of another session modified, one session checked",
			tamper: func(t *testing.T, db *sql.Tx) { tamperEditStart(t, db, s2) },
			args:   []string{"--session", s3.id},
			code:   1, where: fmt.Sprintf("checkpoint at tree size %d", fx.firstCheckpointIn(t, s2.startLeaf, fx.treeSize)),
			leaf: s2.startLeaf,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := fx.pristine
			if c.restore != "" {
				src = c.restore
			}
			db := tamperCopyJournal(t, src, filepath.Join(t.TempDir(), "journal.db"))
			if c.tamper != nil {
				tamperApply(t, db, c.tamper)
			}
			v := fx.verify(t, db, c.args...)
			if v.code != c.code {
				t.Fatalf("verify exited %d, want %d\nstderr: %s\nreport:\n%s", v.code, c.code, v.stderr, v.human)
			}
			r := &v.report
			if c.code == 0 {
				if !r.Intact || len(r.Problems) != 0 || !strings.Contains(v.human, "\nresult: intact\n") {
					t.Errorf("exit 0 but not reported intact:\n%s", v.human)
				}
			} else {
				if r.Intact || len(r.Problems) == 0 {
					t.Fatalf("exit 1 but the report has no problem:\n%s", v.human)
				}
				p := r.Problems[0]
				switch {
				case c.anyFirst:
				case p.Where != c.where:
					t.Errorf("first problem at %q, want %q\nall problems:\n%s", p.Where, c.where, v.human)
				case p.Leaf != c.leaf:
					t.Errorf("first problem's leaf = %d, want %d (%s)", p.Leaf, c.leaf, p)
				case !strings.Contains(p.What, c.what):
					t.Errorf("first problem says %q, want it to say %q", p.What, c.what)
				case c.notWhat != "" && strings.Contains(p.What, c.notWhat):
					t.Errorf("first problem says %q, which it cannot know (%q)", p.What, c.notWhat)
				}
				for _, want := range []string{"\nresult: FAILED, ", "\nfirst bad record: " + p.String() + "\n"} {
					if !strings.Contains(v.human, want) {
						t.Errorf("human report lacks %q:\n%s", want, v.human)
					}
				}
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}

	// Verify could not run: exit 2, an error on stderr and no report.
	otherLog := filepath.Join(t.TempDir(), "other")
	if code, _, stderr := runArgs("--home", otherLog, "ca", "init", "--origin", "other.example/journal"); code != 0 {
		t.Fatalf("ca init for another log: exit %d: %s", code, stderr)
	}
	sameName := filepath.Join(t.TempDir(), "same-name")
	if code, _, stderr := runArgs("--home", sameName, "ca", "init", "--origin", tamperOrigin); code != 0 {
		t.Fatalf("ca init for another key of the same log: exit %d: %s", code, stderr)
	}
	notJournal := filepath.Join(t.TempDir(), "notes.db")
	if err := os.WriteFile(notJournal, []byte("this is not a database\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherDB := filepath.Join(t.TempDir(), "other.db")
	tamperApplyNew(t, otherDB, `CREATE TABLE leaves (idx INTEGER PRIMARY KEY, data BLOB)`)
	// Whatever is wrong inside the file, a wrong key included, is a finding
	// (exit 1, a report whose first problem says what): an attacker who can
	// write the file must not be able to turn "tampered" into "could not
	// run". Only what is outside the file makes verify give up (exit 2).
	cases2 := []struct {
		name string
		args []string
		code int
		want string // in the first problem (exit 1) or on stderr (exit 2)
	}{
		{"key of another log", []string{"--db", fx.pristine, "--key", filepath.Join(otherLog, "journal.pub")},
			1, "no checkpoint is signed by the key given (other.example/journal, key hash "},
		{"another key with the journal's name", []string{"--db", fx.pristine, "--key", filepath.Join(sameName, "journal.pub")},
			1, "no checkpoint is signed by the key given (" + tamperOrigin + ", key hash "},
		{"not a database", []string{"--db", notJournal}, 1, "not a bastion journal"},
		{"a database but not a journal", []string{"--db", otherDB}, 1, "not a bastion journal"},
		{"missing file", []string{"--db", filepath.Join(t.TempDir(), "nowhere.db")}, 2, "bastion: error: no journal at "},
		{"missing key", []string{"--db", fx.pristine, "--key", filepath.Join(t.TempDir(), "none.pub")}, 2, "bastion: error: journal public key "},
	}
	for _, c := range cases2 {
		t.Run("wrong input/"+c.name, func(t *testing.T) {
			for _, extra := range [][]string{{"--json"}, nil} {
				args := append([]string{"--home", fx.home, "verify", "--unrecorded"}, c.args...)
				code, stdout, stderr := runArgs(append(args, extra...)...)
				if code != c.code {
					t.Fatalf("verify %q exited %d, want %d\nstdout: %s\nstderr: %s", extra, code, c.code, stdout, stderr)
				}
				if c.code == 2 {
					if stdout != "" || !strings.Contains(stderr, c.want) {
						t.Errorf("verify %q could not run but printed %q, stderr %q; want stderr to contain %q", extra, stdout, stderr, c.want)
					}
					continue
				}
				if extra == nil && strings.Contains(c.want, "signed by the key given") {
					// A key that signed none of the checkpoints is one
					// finding, said in one line, naming both keys.
					keyName, _, _ := strings.Cut(strings.TrimPrefix(c.want, "no checkpoint is signed by the key given ("), ",")
					re := regexp.MustCompile(`(?m)^result: FAILED: the key given \(` + regexp.QuoteMeta(keyName) + ` [0-9a-f]{8}, from \S+journal\.pub\) is not this journal's: its checkpoints are signed by ` +
						regexp.QuoteMeta(tamperOrigin) + ` [0-9a-f]{8}, or were replaced; pass the journal's own public key with --key \(--json lists all \d+ problems\)\n$`)
					if !re.MatchString(stdout) || strings.Contains(stdout, "no verifiable signatures") {
						t.Errorf("verify with another key does not say so in one last line:\n%s", stdout)
					}
					continue
				}
				if extra == nil {
					if !strings.Contains(stdout, "\nfirst bad record: ") || !strings.Contains(stdout, c.want) {
						t.Errorf("verify report lacks %q:\n%s", c.want, stdout)
					}
					continue
				}
				var r tamperReport
				if err := json.Unmarshal([]byte(stdout), &r); err != nil {
					t.Fatalf("verify --json: %v\n%s", err, stdout)
				}
				if r.Intact || len(r.Problems) == 0 || !strings.Contains(r.Problems[0].What, c.want) {
					t.Errorf("first problem %+v, want it to say %q", r.Problems, c.want)
				}
			}
		})
	}
}
