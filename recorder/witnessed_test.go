package recorder

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder/witness"
)

// testWitness is a witness's cosignature key pair, made as a witness
// makes it.
type testWitness struct {
	key    *witness.Key
	signer *fnote.Signer
}

func newTestWitness(t testing.TB, name, alg string) *testWitness {
	t.Helper()
	var skey, vkey string
	var err error
	switch alg {
	case witness.AlgEd25519:
		var vk string
		skey, vk, err = note.GenerateKey(rand.Reader, name)
		if err == nil {
			vkey, err = fnote.VKeyToCosignatureV1(vk)
		}
	case witness.AlgMLDSA44:
		skey, vkey, err = fnote.GenerateMLDSAKey(name)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	k, err := witness.ParseKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if k.Alg != alg {
		t.Fatalf("key algorithm %s, want %s", k.Alg, alg)
	}
	return &testWitness{key: k, signer: s}
}

// cosign appends w's cosignature line to a checkpoint note.
func (w *testWitness) cosign(t testing.TB, msg []byte) []byte {
	t.Helper()
	text := msg[:bytes.LastIndex(msg, []byte("\n\n"))+1]
	signed, err := note.Sign(&note.Note{Text: string(text)}, w.signer)
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.Clone(msg), signed[bytes.LastIndex(signed, []byte("\n\n"))+2:]...)
}

// rawDB opens a journal's file for a test to write rows as the lead's
// writer op will: cosignature lines appended to published rows.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// publishedRows are the sizes and notes of the published checkpoints.
func publishedRows(t testing.TB, db *sql.DB) ([]int64, map[int64][]byte) {
	t.Helper()
	rows, err := db.Query(`SELECT tree_size, note FROM checkpoints ORDER BY tree_size`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var sizes []int64
	notes := map[int64][]byte{}
	for rows.Next() {
		var n int64
		var b []byte
		if err := rows.Scan(&n, &b); err != nil {
			t.Fatal(err)
		}
		sizes, notes[n] = append(sizes, n), b
	}
	return sizes, notes
}

func setNote(t testing.TB, db *sql.DB, size int64, msg []byte) {
	t.Helper()
	if _, err := db.Exec(`UPDATE checkpoints SET note = ? WHERE tree_size = ?`, msg, size); err != nil {
		t.Fatal(err)
	}
}

// witnessedJournal writes a journal with a session and events over two
// writers, so that it has several published checkpoints, and returns its
// path, its key, and a copy of it as the first writer left it.
func witnessedJournal(t *testing.T) (path string, key *JournalKey, backup string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	path, backup, key = filepath.Join(dir, "j.db"), filepath.Join(dir, "backup.db"), testKey(t)
	j, st := openJournal(t, path, key)
	s, err := j.StartSession(ctx, SessionInfo{Attrs: Attrs{"command": "sh"}})
	if err != nil {
		t.Fatal(err)
	}
	record(t, s, Frame{Kind: KindOutput, Payload: []byte("hello\r\n")})
	if err := s.End(ctx, Attrs{"exit-status": "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.AppendEvent(ctx, "test.event", Attrs{"n": "1"}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	copyJournal(t, path, backup)
	j, st = openJournal(t, path, key)
	if _, err := j.AppendEvent(ctx, "test.event", Attrs{"n": "2"}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	return path, key, backup
}

func copyJournal(t testing.TB, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(from + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func verifyWitnessed(t *testing.T, path string, key *JournalKey, opts VerifyOptions) *Report {
	t.Helper()
	st := openStore(t, path, true)
	defer st.Close()
	r := verify(t, st, key, opts)
	if r.Witnessed == nil && len(opts.Witnesses.Keys) > 0 {
		t.Fatal("no witness report")
	}
	return r
}

func problemsText(r *Report) string {
	var b strings.Builder
	for _, p := range r.Problems {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

func TestVerifyWitnessed(t *testing.T) {
	path, key, _ := witnessedJournal(t)
	w1 := newTestWitness(t, "w1.example/witness", witness.AlgEd25519)
	w2 := newTestWitness(t, "w2.example/witness", witness.AlgMLDSA44)
	both := Witnesses{Keys: []*witness.Key{w1.key, w2.key}}
	db := rawDB(t, path)
	sizes, notes := publishedRows(t, db)
	if len(sizes) < 3 {
		t.Fatalf("published checkpoints at %v: want at least 3", sizes)
	}
	last := sizes[len(sizes)-1]

	// No cosignature anywhere: nothing is witnessed.
	r := verifyWitnessed(t, path, key, VerifyOptions{Witnesses: both})
	if r.Intact() || r.Witnessed.Size != 0 || r.Witnessed.Unwitnessed != r.TreeSize ||
		!strings.Contains(r.Problems[0].What, "no published checkpoint carries valid cosignatures by 2 of the 2 witnesses given") ||
		r.Problems[0].Leaf != r.TreeSize {
		t.Fatalf("uncosigned journal: %+v\n%s", r.Witnessed, problemsText(r))
	}
	// Without witnesses, the same journal is intact: the step is not run.
	if r := verifyWitnessed(t, path, key, VerifyOptions{}); !r.Intact() || r.Witnessed != nil {
		t.Fatalf("without --witness: %s", problemsText(r))
	}

	// Every published checkpoint cosigned by both.
	for _, n := range sizes {
		setNote(t, db, n, w2.cosign(t, w1.cosign(t, notes[n])))
	}
	r = verifyWitnessed(t, path, key, VerifyOptions{Witnesses: both})
	if !r.Intact() {
		t.Fatalf("all cosigned: %s", problemsText(r))
	}
	wr := r.Witnessed
	if wr.Size != last || wr.Unwitnessed != r.TreeSize-last || wr.Threshold != 2 || len(wr.Cosignatures) != 2 || wr.LatestSize != last || len(wr.LatestCosigners) != 2 {
		t.Fatalf("all cosigned: %+v", wr)
	}
	for i, s := range wr.Witnesses {
		if s.Cosigned != len(sizes) || s.Largest != last || s.LargestAt == nil || s.Invalid != 0 || s.Algorithm != both.Keys[i].Alg || s.Key != both.Keys[i].VKey {
			t.Errorf("witness %d: %+v", i, s)
		}
	}
	// A line by a key the auditor did not give is ignored (8.2 rule 5).
	r = verifyWitnessed(t, path, key, VerifyOptions{Witnesses: Witnesses{Keys: []*witness.Key{w1.key}}})
	if !r.Intact() || r.Witnessed.Size != last || len(r.Witnessed.Cosignatures) != 1 {
		t.Fatalf("one witness given: %+v\n%s", r.Witnessed, problemsText(r))
	}

	// The latest cosigned by w1 only: threshold 2 is unmet on a stopped
	// journal, reported only on a live one, met with threshold 1.
	prev := sizes[len(sizes)-2]
	setNote(t, db, last, w1.cosign(t, notes[last]))
	r = verifyWitnessed(t, path, key, VerifyOptions{Witnesses: both})
	want := Problem{Leaf: r.TreeSize, Where: "leaves " + itoa(prev) + ".." + itoa(last-1),
		What: "not witnessed: the latest published checkpoint (tree size " + itoa(last) + ") has 1 of the 2 cosignatures required: w1.example/witness; no writer holds the journal, so no server will push them to the witnesses"}
	if r.Intact() || len(r.Problems) != 1 || r.Problems[0].Where != want.Where || r.Problems[0].What != want.What || r.Problems[0].Leaf != want.Leaf {
		t.Fatalf("threshold unmet, stopped:\n got %s\nwant %s", problemsText(r), want)
	}
	if r.Witnessed.Size != prev || r.Witnessed.Unwitnessed != r.TreeSize-prev {
		t.Fatalf("threshold unmet: %+v", r.Witnessed)
	}
	r = verifyWitnessed(t, path, key, VerifyOptions{Witnesses: both, Live: true})
	if !r.Intact() || r.Witnessed.Size != prev || !r.Witnessed.Live || r.Witnessed.Unwitnessed != r.TreeSize-prev {
		t.Fatalf("threshold unmet, live: %+v\n%s", r.Witnessed, problemsText(r))
	}
	// The evidence report's mode: the same facts, its anchor judges them.
	r = verifyWitnessed(t, path, key, VerifyOptions{Witnesses: both, UnwitnessedFacts: true})
	if !r.Intact() || r.Witnessed.Size != prev || r.Witnessed.Live || r.Witnessed.Unwitnessed != r.TreeSize-prev {
		t.Fatalf("threshold unmet, as facts: %+v\n%s", r.Witnessed, problemsText(r))
	}
	r = verifyWitnessed(t, path, key, VerifyOptions{Witnesses: Witnesses{Keys: both.Keys, Threshold: 1}})
	if !r.Intact() || r.Witnessed.Size != last || r.Witnessed.Threshold != 1 {
		t.Fatalf("threshold 1: %+v\n%s", r.Witnessed, problemsText(r))
	}

	// A forged cosignature by a given key is a problem, live or not, and
	// counts for nothing.
	for _, flip := range []int{10, 40} { // in the timestamp, in the signature
		forged := forgeLine(t, w2.cosign(t, w1.cosign(t, notes[sizes[0]])), w2.key, flip)
		setNote(t, db, sizes[0], forged)
		r = verifyWitnessed(t, path, key, VerifyOptions{Witnesses: Witnesses{Keys: both.Keys, Threshold: 1}, Live: true})
		if r.Intact() || len(r.Problems) != 1 || r.Problems[0].Where != "checkpoint at tree size "+itoa(sizes[0]) ||
			!strings.Contains(r.Problems[0].What, "a cosignature line by witness w2.example/witness") || !strings.Contains(r.Problems[0].What, "(forged or damaged)") ||
			r.Witnessed.Witnesses[1].Invalid != 1 || r.Witnessed.Witnesses[1].Cosigned != len(sizes)-2 {
			t.Fatalf("forged line (byte %d): %+v\n%s", flip, r.Witnessed.Witnesses, problemsText(r))
		}
	}
}

// forgeLine flips a byte of k's signature line in msg.
func forgeLine(t testing.TB, msg []byte, k *witness.Key, at int) []byte {
	t.Helper()
	text, lines, ok := witness.NoteSignatures(msg)
	if !ok {
		t.Fatal("malformed note")
	}
	out := append(bytes.Clone(text), '\n')
	found := false
	for _, l := range lines {
		if k.Owns(l) {
			l.Sig = bytes.Clone(l.Sig)
			l.Sig[at] ^= 1
			found = true
		}
		out = append(out, l.String()...)
	}
	if !found {
		t.Fatal("no line by the key")
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestVerifyWitnessedReads: reads a reader records while no server runs
// are published by it and never pushed; they need no witness, anything
// else after the witnessed size does.
func TestVerifyWitnessedReads(t *testing.T) {
	ctx := context.Background()
	path, key, _ := witnessedJournal(t)
	w1 := newTestWitness(t, "w1.example/witness", witness.AlgEd25519)
	ws := Witnesses{Keys: []*witness.Key{w1.key}}
	db := rawDB(t, path)
	sizes, notes := publishedRows(t, db)
	for _, n := range sizes {
		setNote(t, db, n, w1.cosign(t, notes[n]))
	}
	witnessed := sizes[len(sizes)-1]
	appendAndClose := func(event string, attrs Attrs) {
		j, st := openJournal(t, path, key)
		if _, err := j.AppendEvent(ctx, event, attrs); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	appendAndClose(EventJournalAccessed, Attrs{"action": "verify", "via": "reader", "uid": "0"})
	appendAndClose(EventEvidenceGenerated, Attrs{"via": "reader", "uid": "0"})
	r := verifyWitnessed(t, path, key, VerifyOptions{Witnesses: ws})
	if !r.Intact() || r.Witnessed.Size != witnessed || r.Witnessed.ReadsFrom != witnessed || r.Witnessed.Unwitnessed != r.TreeSize-witnessed {
		t.Fatalf("reads after the witnessed size: %+v\n%s", r.Witnessed, problemsText(r))
	}
	// A read recorded through serve is serve's: it pushes it.
	appendAndClose(EventJournalAccessed, Attrs{"action": "verify", "via": "serve", "uid": "0"})
	r = verifyWitnessed(t, path, key, VerifyOptions{Witnesses: ws})
	if r.Intact() || r.Witnessed.ReadsFrom != r.TreeSize || len(r.Problems) != 1 ||
		r.Problems[0].Where != "leaves "+itoa(witnessed)+".."+itoa(r.TreeSize-1) {
		t.Fatalf("a serve read after the witnessed size: %+v\n%s", r.Witnessed, problemsText(r))
	}
	appendAndClose(EventJournalAccessed, Attrs{"action": "verify", "via": "reader", "uid": "0"})
	r = verifyWitnessed(t, path, key, VerifyOptions{Witnesses: ws})
	if r.Intact() || r.Witnessed.ReadsFrom != r.TreeSize-1 || len(r.Problems) != 1 ||
		r.Problems[0].Where != "leaves "+itoa(witnessed)+".."+itoa(r.TreeSize-2) ||
		!strings.HasSuffix(r.Problems[0].What, "(leaves "+itoa(r.TreeSize-1)+".."+itoa(r.TreeSize-1)+" after them are reads recorded by their readers since, which need none)") {
		t.Fatalf("a reader's read after a serve read: %+v\n%s", r.Witnessed, problemsText(r))
	}
}

// TestVerifyKeptRollback: a kept checkpoint as a witness keeps it (with
// its cosignature) names a rolled-back journal, and a fork.
func TestVerifyKeptRollback(t *testing.T) {
	ctx := context.Background()
	path, key, backup := witnessedJournal(t)
	w1 := newTestWitness(t, "w1.example/witness", witness.AlgEd25519)
	db := rawDB(t, path)
	sizes, notes := publishedRows(t, db)
	last := sizes[len(sizes)-1]
	kept := w1.cosign(t, notes[last])

	r := verifyWitnessed(t, path, key, VerifyOptions{Kept: kept})
	if !r.Intact() || r.Kept == nil || !r.Kept.Consistent {
		t.Fatalf("the journal the kept checkpoint came from: %+v\n%s", r.Kept, problemsText(r))
	}
	r = verifyWitnessed(t, backup, key, VerifyOptions{Kept: kept})
	if r.Intact() || r.Problems[0].Leaf != r.TreeSize || r.Problems[0].Where != "kept checkpoint at tree size "+itoa(last) ||
		!strings.Contains(r.Problems[0].What, "rolled back to an older copy (or truncated)") {
		t.Fatalf("rolled back: %s", problemsText(r))
	}
	// The restored copy written again up to the kept size: a fork.
	j, st := openJournal(t, backup, key)
	for n := r.TreeSize; n < last; n++ {
		if _, err := j.AppendEvent(ctx, "test.event", Attrs{"n": "other"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	r = verifyWitnessed(t, backup, key, VerifyOptions{Kept: kept})
	if r.Intact() || r.TreeSize != last || !strings.Contains(r.Problems[0].What, "not an extension of the kept checkpoint: it was rewritten, or rolled back and written again (a fork)") {
		t.Fatalf("fork: %s", problemsText(r))
	}
}

func TestWitnessesCheck(t *testing.T) {
	w1 := newTestWitness(t, "w1.example/witness", witness.AlgEd25519).key
	w2 := newTestWitness(t, "w2.example/witness", witness.AlgEd25519).key
	for _, c := range []struct {
		name string
		w    Witnesses
		ok   bool
	}{
		{"none", Witnesses{}, true},
		{"one", Witnesses{Keys: []*witness.Key{w1}}, true},
		{"two of two", Witnesses{Keys: []*witness.Key{w1, w2}, Threshold: 2}, true},
		{"threshold above the keys", Witnesses{Keys: []*witness.Key{w1, w2}, Threshold: 3}, false},
		{"negative threshold", Witnesses{Keys: []*witness.Key{w1}, Threshold: -1}, false},
		{"threshold without keys", Witnesses{Threshold: 1}, false},
		{"a key twice", Witnesses{Keys: []*witness.Key{w1, w1}}, false},
	} {
		if err := c.w.Check(); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	_, err := Verify(context.Background(), nil, VerifyOptions{Verifier: testKey(t).Verifier, Witnesses: Witnesses{Keys: []*witness.Key{w1}, Threshold: 2}})
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("Verify with a bad threshold: %v", err)
	}
}

func TestCheckCosignatures(t *testing.T) {
	path, _, _ := witnessedJournal(t)
	_, notes := publishedRows(t, rawDB(t, path))
	var msg []byte
	for _, n := range notes {
		msg = n
		break
	}
	w1 := newTestWitness(t, "w1.example/witness", witness.AlgEd25519)
	w2 := newTestWitness(t, "w2.example/witness", witness.AlgMLDSA44)
	ws := Witnesses{Keys: []*witness.Key{w1.key, w2.key}}
	c := CheckCosignatures(w1.cosign(t, msg), ws)
	if c.Met() || len(c.Valid) != 1 || len(c.Missing) != 1 || c.Missing[0] != "w2.example/witness" ||
		c.Problem() != "the checkpoint carries valid cosignatures by 1 of the 2 witnesses required (missing: w2.example/witness)" {
		t.Fatalf("one of two: %+v: %s", c, c.Problem())
	}
	c = CheckCosignatures(w2.cosign(t, w1.cosign(t, msg)), ws)
	if !c.Met() || c.Problem() != "" || len(c.Valid) != 2 {
		t.Fatalf("two of two: %+v", c)
	}
	c = CheckCosignatures(forgeLine(t, w2.cosign(t, w1.cosign(t, msg)), w1.key, 30), ws)
	if c.Met() || len(c.Invalid) != 1 || !strings.Contains(c.Problem(), "(forged or damaged)") {
		t.Fatalf("forged: %+v", c)
	}
}

// exportFirst exports the journal's first session, with witness keys w.
func exportFirst(t *testing.T, path string, key *JournalKey, w Witnesses) []byte {
	t.Helper()
	ctx := context.Background()
	st := openStore(t, path, true)
	defer st.Close()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	rows, err := snap.Sessions(ctx)
	if err != nil || len(rows) == 0 {
		t.Fatal(err)
	}
	b, err := ExportBundleWitnessed(ctx, snap, SessionID(rows[0].ID), key.Verifier, w)
	if err != nil {
		t.Fatal(err)
	}
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func bundleCheckpoint(t *testing.T, data []byte) string {
	t.Helper()
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	return b.Checkpoint
}

func TestBundleCosignedCheckpoint(t *testing.T) {
	path, key, _ := witnessedJournal(t)
	w1 := newTestWitness(t, "w1.example/witness", witness.AlgEd25519)
	w2 := newTestWitness(t, "w2.example/witness", witness.AlgMLDSA44)
	both := Witnesses{Keys: []*witness.Key{w1.key, w2.key}}
	db := rawDB(t, path)
	sizes, notes := publishedRows(t, db)
	st := openStore(t, path, true)
	snap, err := st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	head, err := snap.Head(context.Background())
	snap.Close()
	st.Close()
	if err != nil || head == nil {
		t.Fatal(err)
	}

	// Nothing cosigned: the head, as before witnesses.
	data := exportFirst(t, path, key, Witnesses{})
	if got := bundleCheckpoint(t, data); got != string(head.Note) {
		t.Fatalf("no cosignature: the bundle's checkpoint is\n%s, want the head\n%s", got, head.Note)
	}
	if _, err := VerifyBundleWitnessed(data, key.Verifier, both); !errors.Is(err, ErrBundle) || !strings.Contains(err.Error(), "by 0 of the 2 witnesses required") {
		t.Fatalf("uncosigned bundle with --witness: %v", err)
	}
	if _, err := VerifyBundle(data, key.Verifier); err != nil {
		t.Fatalf("uncosigned bundle without --witness: %v", err)
	}

	// Of the published checkpoints that cover the session, the one with
	// the most cosigning keys wins; ties: the smallest.
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	need := b.Leaves[len(b.Leaves)-1].Index + 1
	var covering []int64
	for _, n := range sizes {
		if n >= need {
			covering = append(covering, n)
		} else {
			// One that does not cover it is never chosen.
			setNote(t, db, n, w2.cosign(t, w1.cosign(t, notes[n])))
		}
	}
	if len(covering) < 3 || len(covering) == len(sizes) {
		t.Fatalf("published checkpoints %v, the session needs %d: want 3 that cover it, and one that does not", sizes, need)
	}
	first, second, last := covering[0], covering[1], covering[len(covering)-1]
	setNote(t, db, first, w1.cosign(t, notes[first]))
	setNote(t, db, second, w1.cosign(t, notes[second]))
	setNote(t, db, last, w2.cosign(t, w1.cosign(t, notes[last])))
	for _, w := range []Witnesses{{}, both} {
		data = exportFirst(t, path, key, w)
		if got := bundleCheckpoint(t, data); !strings.HasPrefix(got, string(notes[last])) {
			t.Fatalf("keys %d: the bundle's checkpoint is\n%s, want the one of size %d", len(w.Keys), got, last)
		}
		rep, err := VerifyBundleWitnessed(data, key.Verifier, both)
		if err != nil || rep.TreeSize != last || rep.Witnesses == nil || len(rep.Witnesses.Valid) != 2 || !rep.Witnesses.Met() {
			t.Fatalf("keys %d: verify with both witnesses: %+v, %v", len(w.Keys), rep, err)
		}
	}
	setNote(t, db, last, notes[last])
	data = exportFirst(t, path, key, Witnesses{})
	if got := bundleCheckpoint(t, data); !strings.HasPrefix(got, string(notes[first])) {
		t.Fatalf("a tie: the bundle's checkpoint is\n%s, want the smallest, of size %d", got, first)
	}
	rep, err := VerifyBundleWitnessed(data, key.Verifier, both)
	if !errors.Is(err, ErrBundle) || rep == nil || rep.Witnesses == nil || len(rep.Witnesses.Valid) != 1 ||
		!strings.Contains(err.Error(), "witnesses: the checkpoint carries valid cosignatures by 1 of the 2 witnesses required (missing: w2.example/witness)") {
		t.Fatalf("threshold 2 unmet: %+v, %v", rep, err)
	}
	if rep, err := VerifyBundleWitnessed(data, key.Verifier, Witnesses{Keys: both.Keys, Threshold: 1}); err != nil || !rep.Witnesses.Met() {
		t.Fatalf("threshold 1: %+v, %v", rep, err)
	}

	// A forged line by a given key: passed over at export with the key,
	// and a failure when a bundle carries it.
	setNote(t, db, first, forgeLine(t, w1.cosign(t, notes[first]), w1.key, 20))
	data = exportFirst(t, path, key, both)
	if got := bundleCheckpoint(t, data); !strings.HasPrefix(got, string(notes[second])) {
		t.Fatalf("a forged line: the bundle's checkpoint is\n%s, want the one of size %d", got, second)
	}
	data = exportFirst(t, path, key, Witnesses{})
	if _, err := VerifyBundleWitnessed(data, key.Verifier, Witnesses{Keys: both.Keys, Threshold: 1}); !errors.Is(err, ErrBundle) || !strings.Contains(err.Error(), "(forged or damaged)") {
		t.Fatalf("a bundle with a forged line: %v", err)
	}
	// A bundle's own check is untouched by its cosignatures.
	if _, err := VerifyBundle(data, key.Verifier); err != nil {
		t.Fatal(err)
	}
}
