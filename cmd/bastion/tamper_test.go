package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	_ "github.com/mattn/go-sqlite3"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/recorder"
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
		// skip, if set, is why the case is skipped: a bug it exposes.
		skip string
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
			leaf: s2.startLeaf, what: fmt.Sprintf("leaf %d is the first whose content differs from its stored hash", s2.startLeaf),
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
			code: 1, where: "session " + s2.id, leaf: s2.startLeaf, what: "its frames are missing",
		},
		{
			name: "session inserted",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `INSERT INTO sessions (num, id, start_leaf, started_ns, summary) VALUES (99, ?, 0, 0, 'sh')`, fakeID[:])
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
			what: fmt.Sprintf("the journal has only %d leaves: it was truncated or rolled back", s2.startLeaf),
		},
		{
			name: "older copy restored, without the kept checkpoint", restore: fx.early, code: 0,
		},
		{
			name: "older copy restored, against the kept checkpoint", restore: fx.early,
			args: []string{"--checkpoint", fx.keptFile},
			code: 1, where: fmt.Sprintf("kept checkpoint at tree size %d", fx.keptSize), leaf: fx.earlySize,
			what: "truncated or rolled back to an older copy",
		},
		{
			name: "kept checkpoint's signature altered in the journal",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperFlipSignature(t, db, `checkpoints`, `tree_size = ?`, fx.keptSize)
			},
			code: 1, where: fmt.Sprintf("checkpoint at tree size %d", fx.keptSize), leaf: fx.keptSize, what: "invalid checkpoint",
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
			code: 1, where: "journal", leaf: 0, what: "no valid signed checkpoint",
		},
		{
			name: "all checkpoints deleted",
			tamper: func(t *testing.T, db *sql.Tx) {
				tamperExec(t, db, `DELETE FROM checkpoints`)
				tamperExec(t, db, `DELETE FROM head`)
			},
			code: 1, where: "journal", leaf: 0,
			what: fmt.Sprintf("no valid signed checkpoint: none of its %d leaves is covered by a signature", fx.treeSize),
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
			leaf: s2.startLeaf, what: fmt.Sprintf("leaf %d is the first whose content differs from its stored hash", s2.startLeaf),
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
			leaf: segMid.leaf, what: fmt.Sprintf("leaf %d is the first whose content differs from its stored hash", segMid.leaf),
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
			if c.skip != "" {
				t.Skip(c.skip)
			}
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
	cannot := []struct {
		name   string
		args   []string
		stderr string
		skip   string // why the case is skipped: a bug it exposes
	}{
		{"key of another log", []string{"--db", fx.pristine, "--key", filepath.Join(otherLog, "journal.pub")},
			`bastion: error: cannot verify: the key is for log "other.example/journal" but the journal says it is log "` + tamperOrigin + `"`, ""},
		{"another key with the journal's name", []string{"--db", fx.pristine, "--key", filepath.Join(sameName, "journal.pub")},
			"bastion: error: cannot verify: no checkpoint in the journal is signed by the key given", ""},
		{"not a database", []string{"--db", notJournal}, "not a bastion journal", ""},
		{"a database but not a journal", []string{"--db", otherDB}, "not a bastion journal", ""},
		{"missing file", []string{"--db", filepath.Join(t.TempDir(), "nowhere.db")}, "bastion: error: no journal at ", ""},
	}
	for _, c := range cannot {
		t.Run("cannot run/"+c.name, func(t *testing.T) {
			if c.skip != "" {
				t.Skip(c.skip)
			}
			for _, extra := range [][]string{{"--json"}, nil} {
				args := append([]string{"--home", fx.home, "verify"}, c.args...)
				code, stdout, stderr := runArgs(append(args, extra...)...)
				if code != 2 {
					t.Errorf("verify %q exited %d, want 2\nstdout: %s\nstderr: %s", extra, code, stdout, stderr)
				}
				if stdout != "" {
					t.Errorf("verify %q printed a report although it could not run:\n%s", extra, stdout)
				}
				if !strings.Contains(stderr, c.stderr) {
					t.Errorf("verify %q stderr = %q, want it to contain %q", extra, stderr, c.stderr)
				}
			}
		})
	}
}

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
// (the sleeps make each line its own commit), so that session 2 has several
// segment leaves and session 3 has more leaves than session 2.
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
	record(`for i in 1 2 3 4 5 6; do echo "two $i"; sleep 0.1; done`)
	code, kept, stderr := runArgs("--home", fx.home, "checkpoint", "--db", fx.pristine)
	if code != 0 {
		t.Fatalf("checkpoint: exit %d: %s", code, stderr)
	}
	if err := os.WriteFile(fx.keptFile, []byte(kept), 0o600); err != nil {
		t.Fatal(err)
	}
	record(`for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "three $i"; sleep 0.1; done`)

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
	base := append([]string{"--home", fx.home, "verify", "--db", db}, args...)
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
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, d := range leaves {
		hs, err := tlog.StoredHashes(int64(i), d, r)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
	}
	tamperExec(t, tx, `DELETE FROM tree_hashes`)
	for i, h := range hashes {
		tamperExec(t, tx, `INSERT INTO tree_hashes (idx, hash) VALUES (?, ?)`, i, h[:])
	}
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
