package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/evidence"
	"github.com/bastionhq/bastion/recorder/witness"
	"github.com/bastionhq/bastion/storage"
)

// cliWitness is a witness's cosignature key pair, made as a witness
// makes it: vkey is its verifier key, file a file holding it.
type cliWitness struct {
	vkey, file string
	signer     *fnote.Signer
}

func newCLIWitness(t *testing.T, name, alg string) *cliWitness {
	t.Helper()
	var skey, vkey string
	var err error
	if alg == witness.AlgEd25519 {
		var vk string
		if skey, vk, err = note.GenerateKey(rand.Reader, name); err == nil {
			vkey, err = fnote.VKeyToCosignatureV1(vk)
		}
	} else {
		skey, vkey, err = fnote.GenerateMLDSAKey(name)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "witness.pub")
	if err := os.WriteFile(file, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &cliWitness{vkey: vkey, file: file, signer: s}
}

// cosign appends w's cosignature line to a checkpoint note.
func (w *cliWitness) cosign(t *testing.T, msg []byte) []byte {
	t.Helper()
	text := msg[:bytes.LastIndex(msg, []byte("\n\n"))+1]
	signed, err := note.Sign(&note.Note{Text: string(text)}, w.signer)
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.Clone(msg), signed[bytes.LastIndex(signed, []byte("\n\n"))+2:]...)
}

// cosignRows appends, to each published checkpoint row of the journal at
// path, the lines of the witnesses sign gives for its size, as serve's
// witness client stores them.
func cosignRows(t *testing.T, path string, sign func(size int64) []*cliWitness) []int64 {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT tree_size, note FROM checkpoints ORDER BY tree_size`)
	if err != nil {
		t.Fatal(err)
	}
	notes := map[int64][]byte{}
	var sizes []int64
	for rows.Next() {
		var n int64
		var b []byte
		if err := rows.Scan(&n, &b); err != nil {
			t.Fatal(err)
		}
		sizes, notes[n] = append(sizes, n), b
	}
	rows.Close()
	for _, n := range sizes {
		msg := notes[n]
		for _, w := range sign(n) {
			msg = w.cosign(t, msg)
		}
		if _, err := db.Exec(`UPDATE checkpoints SET note = ? WHERE tree_size = ?`, msg, n); err != nil {
			t.Fatal(err)
		}
	}
	return sizes
}

// cosignedHome makes a home with a journal of one session and a few
// events over two writers, so that it has several published checkpoints.
func cosignedHome(t *testing.T) (home, db, pub string) {
	t.Helper()
	ctx := context.Background()
	home = t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"--home", home, "ca", "init"}, &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("ca init: %s", stderr.String())
	}
	key, err := certauth.LoadJournalKey(home)
	if err != nil {
		t.Fatal(err)
	}
	db, pub = filepath.Join(home, "journal.db"), filepath.Join(home, certauth.JournalPubKeyFile)
	for round := range 2 {
		st, err := storage.OpenSQLite(ctx, db, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		j, err := recorder.Open(ctx, st, recorder.Options{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		s, err := j.StartSession(ctx, recorder.SessionInfo{Attrs: recorder.Attrs{"command": "sh"}})
		if err != nil {
			t.Fatal(err)
		}
		seq, err := s.Append(recorder.KindOutput, 0, []byte("round "+strconv.Itoa(round)+"\r\n"))
		if err == nil {
			err = s.Wait(ctx, seq)
		}
		if err == nil {
			err = s.End(ctx, recorder.Attrs{"exit-status": "0"})
		}
		if err == nil {
			_, err = j.AppendEvent(ctx, "test.event", recorder.Attrs{"round": strconv.Itoa(round)})
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	return home, db, pub
}

// witnessVerifyJSON is the part of "verify --json" these tests read.
type witnessVerifyJSON struct {
	Intact    bool                    `json:"intact"`
	TreeSize  int64                   `json:"tree_size"`
	Witnessed *recorder.WitnessReport `json:"witnessed"`
	Problems  []recorder.Problem      `json:"problems"`
}

func TestVerifyWitnessFlags(t *testing.T) {
	t.Parallel()
	home, db, pub := cosignedHome(t)
	w1 := newCLIWitness(t, "w1.example/witness", witness.AlgEd25519)
	w2 := newCLIWitness(t, "w2.example/witness", witness.AlgMLDSA44)
	sizes := cosignRows(t, db, func(n int64) []*cliWitness { return []*cliWitness{w1, w2} })
	last, prev := sizes[len(sizes)-1], sizes[len(sizes)-2]
	// The latest row cosigned by w1 alone.
	resetLatest(t, db, last, w1)

	verify := func(args ...string) (int, string, string) {
		return runArgs(append([]string{"--home", home, "verify", "--unrecorded", "--db", db, "--key", pub}, args...)...)
	}
	both := []string{"--witness", w1.file, "--witness", w2.vkey}

	code, stdout, stderr := verify(append(both, "--json")...)
	var r witnessVerifyJSON
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("verify --json: %v\n%s%s", err, stdout, stderr)
	}
	wantWhat := "not witnessed: the latest published checkpoint (tree size " + strconv.FormatInt(last, 10) + ") has 1 of the 2 cosignatures required: w1.example/witness"
	if code != 1 || r.Intact || r.Witnessed == nil || r.Witnessed.Size != prev || r.Witnessed.Threshold != 2 || r.Witnessed.Live ||
		len(r.Problems) != 1 || r.Problems[0].Leaf != r.TreeSize || !strings.HasPrefix(r.Problems[0].What, wantWhat) {
		t.Fatalf("threshold 2, latest cosigned by one: exit %d\n%s%s", code, stdout, stderr)
	}
	ws := r.Witnessed.Witnesses
	if len(ws) != 2 || ws[0].Algorithm != witness.AlgEd25519 || ws[1].Algorithm != witness.AlgMLDSA44 ||
		ws[0].Cosigned != len(sizes) || ws[1].Cosigned != len(sizes)-1 || ws[0].Largest != last || ws[1].Largest != prev || ws[1].Key != w2.vkey {
		t.Errorf("witness summaries: %+v", ws)
	}

	code, stdout, stderr = verify(append(both, "--witness-threshold", "1")...)
	for _, want := range []string{
		"  witnesses:    2 given, 1 must cosign a checkpoint\n",
		"    w1.example/witness (ed25519): cosigned " + strconv.Itoa(len(sizes)) + " published checkpoint(s), the largest of size " + strconv.FormatInt(last, 10) + " at ",
		"    w2.example/witness (ml-dsa-44): cosigned " + strconv.Itoa(len(sizes)-1) + " published checkpoint(s), the largest of size " + strconv.FormatInt(prev, 10) + " at ",
		"  witnessed:    size " + strconv.FormatInt(last, 10) + ", cosigned by w1.example/witness at ",
		"\"bastion witness latest\"",
		"result: intact\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("threshold 1: exit %d, no %q in\n%s%s", code, want, stdout, stderr)
		}
	}
	if code != 0 {
		t.Errorf("threshold 1: exit %d", code)
	}

	// While a writer holds the journal, the same lag is reported, not a
	// problem.
	t.Run("live", func(t *testing.T) {
		ctx := context.Background()
		key, err := certauth.LoadJournalKey(home)
		if err != nil {
			t.Fatal(err)
		}
		st, err := storage.OpenSQLite(ctx, db, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		j, err := recorder.Open(ctx, st, recorder.Options{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		code, stdout, stderr := verify(both...)
		if code != 0 || !strings.Contains(stdout, "lag, not a problem") || !strings.Contains(stdout, "  witnessed:    size "+strconv.FormatInt(prev, 10)+", cosigned by w1.example/witness at ") {
			t.Errorf("live: exit %d\n%s%s", code, stdout, stderr)
		}
	})

	// A forged line by a given witness.
	t.Run("forged", func(t *testing.T) {
		forgeFirst(t, db, sizes[0], w1, w2)
		code, stdout, stderr := verify(append(both, "--witness-threshold", "1")...)
		if code != 1 || !strings.Contains(stdout, "checkpoint at tree size "+strconv.FormatInt(sizes[0], 10)+": a cosignature line by witness w2.example/witness") ||
			!strings.Contains(stdout, "1 line(s) by its key do NOT verify") {
			t.Errorf("forged: exit %d\n%s%s", code, stdout, stderr)
		}
	})

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"threshold above the witnesses", append(both, "--witness-threshold", "3"), "--witness-threshold 3: give a number from 1 to 2"},
		{"threshold 0", append(both, "--witness-threshold", "0"), "--witness-threshold 0: give a number from 1 to 2"},
		{"threshold not a number", append(both, "--witness-threshold", "two"), `"two" is not a number`},
		{"threshold without witnesses", []string{"--witness-threshold", "1"}, "--witness-threshold needs --witness keys"},
		{"not a key nor a file", []string{"--witness", "w1.example/witness+0000"}, "is neither a witness key"},
		{"the log's own key", []string{"--witness", pub}, "is a log's signing key (type 0x01)"},
		{"a key twice", []string{"--witness", w1.file, "--witness", w1.vkey}, "is given twice"},
		{"with --report", []string{"--report", t.TempDir(), "--witness", w1.file}, "--report takes only --key and --db"},
	} {
		code, stdout, stderr := verify(c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("%s: exit %d, stderr %q, stdout %q", c.name, code, stderr, stdout)
		}
	}
}

// resetLatest gives the published row of size n w's line alone.
func resetLatest(t *testing.T, db string, n int64, w *cliWitness) {
	t.Helper()
	h, err := sql.Open("sqlite3", db)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var msg []byte
	if err := h.QueryRow(`SELECT note FROM checkpoints WHERE tree_size = ?`, n).Scan(&msg); err != nil {
		t.Fatal(err)
	}
	// The log's own line is the first: keep the text and it.
	text, lines, ok := witness.NoteSignatures(msg)
	if !ok || len(lines) == 0 {
		t.Fatal("malformed note")
	}
	own := append(append(bytes.Clone(text), '\n'), lines[0].String()...)
	if _, err := h.Exec(`UPDATE checkpoints SET note = ? WHERE tree_size = ?`, w.cosign(t, own), n); err != nil {
		t.Fatal(err)
	}
}

// forgeFirst replaces the row of size n's lines by w1's and a damaged one
// of w2's.
func forgeFirst(t *testing.T, db string, n int64, w1, w2 *cliWitness) {
	t.Helper()
	h, err := sql.Open("sqlite3", db)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var msg []byte
	if err := h.QueryRow(`SELECT note FROM checkpoints WHERE tree_size = ?`, n).Scan(&msg); err != nil {
		t.Fatal(err)
	}
	text, lines, ok := witness.NoteSignatures(msg)
	if !ok {
		t.Fatal("malformed note")
	}
	out := append(bytes.Clone(text), '\n')
	for _, l := range lines {
		if l.Name == "w2.example/witness" {
			l.Sig = bytes.Clone(l.Sig)
			l.Sig[len(l.Sig)-1] ^= 1
		}
		out = append(out, l.String()...)
	}
	if _, err := h.Exec(`UPDATE checkpoints SET note = ? WHERE tree_size = ?`, out, n); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyBundleWitnesses(t *testing.T) {
	t.Parallel()
	home, db, pub := cosignedHome(t)
	w1 := newCLIWitness(t, "w1.example/witness", witness.AlgEd25519)
	w2 := newCLIWitness(t, "w2.example/witness", witness.AlgMLDSA44)
	w3 := newCLIWitness(t, "w3.example/witness", witness.AlgEd25519)
	cosignRows(t, db, func(n int64) []*cliWitness { return []*cliWitness{w1, w2} })
	code, stdout, stderr := runArgs("--home", home, "sessions", "list", "--json")
	if code != 0 {
		t.Fatalf("sessions list: %d %s", code, stderr)
	}
	var sessions []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(stdout), &sessions); err != nil || len(sessions) == 0 {
		t.Fatalf("sessions list: %v\n%s", err, stdout)
	}
	bundle := filepath.Join(t.TempDir(), "s.bundle")
	if code, _, stderr := runArgs("--home", home, "export", "--unrecorded", "--format", "bundle", "--out", bundle, sessions[0].ID); code != 0 {
		t.Fatalf("export: %d %s", code, stderr)
	}
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("— w1.example/witness ")) || !bytes.Contains(data, []byte("— w2.example/witness ")) {
		t.Fatalf("the bundle's checkpoint carries no cosignature:\n%s", data)
	}
	code, stdout, stderr = runArgs("--home", home, "verify", "--bundle", bundle, "--key", pub, "--witness", w1.file, "--witness", w2.file)
	if code != 0 || !strings.Contains(stdout, "  witnesses:   2 of the 2 required cosigned the checkpoint: w1.example/witness at ") || !strings.Contains(stdout, "result: intact") {
		t.Errorf("verify --bundle --witness: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runArgs("--home", home, "verify", "--bundle", bundle, "--key", pub, "--witness", w1.file, "--witness", w2.file, "--witness", w3.vkey)
	if code != 1 || !strings.Contains(stdout, "no valid cosignature by w3.example/witness") ||
		!strings.Contains(stdout, "result: FAILED: the bundle does not verify: witnesses: the checkpoint carries valid cosignatures by 2 of the 3 witnesses required (missing: w3.example/witness)") {
		t.Errorf("a third witness that did not cosign: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runArgs("--home", home, "verify", "--bundle", bundle, "--key", pub, "--witness", w3.vkey, "--json")
	var jr struct {
		Intact  bool                   `json:"intact"`
		Problem string                 `json:"problem"`
		Report  *recorder.BundleReport `json:"report"`
	}
	if err := json.Unmarshal([]byte(stdout), &jr); err != nil || code != 1 || jr.Intact || jr.Report == nil || jr.Report.Witnesses == nil ||
		len(jr.Report.Witnesses.Valid) != 0 || !strings.Contains(jr.Problem, "by 0 of the 1 witnesses required") {
		t.Errorf("--json, threshold unmet: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
}

func TestEvidenceWitnesses(t *testing.T) {
	t.Parallel()
	ej := buildEvidenceJournal(t)
	db := filepath.Join(ej.home, "journal.db")
	w1 := newCLIWitness(t, "w1.example/witness", witness.AlgEd25519)
	w2 := newCLIWitness(t, "w2.example/witness", witness.AlgMLDSA44)
	// The period ends after the journal was written, so the last
	// published checkpoint covers it, and before the witnesses cosign:
	// their cosignatures show they held it once the period was over.
	// The reports' own reads come after.
	second := func() time.Time {
		now := time.Now().UTC().Truncate(time.Second)
		time.Sleep(time.Until(now.Add(1100 * time.Millisecond)))
		return now
	}
	end := second()
	second()
	sizes := cosignRows(t, db, func(n int64) []*cliWitness { return []*cliWitness{w1, w2} })
	second()
	staleEnd := second() // a whole second after the cosignatures' second
	second()
	period := []string{"--to", end.Format(time.RFC3339), "--now", end.Format(time.RFC3339)}
	ws := []string{"--witness", w1.file, "--witness", w2.file}

	// A period that ends after the cosignatures: they cover its records,
	// but a copy restored from before its end would carry them too.
	r, _ := runEvidenceCmd(t, ej, filepath.Join(t.TempDir(), "stale"), append([]string{"--to", staleEnd.Format(time.RFC3339), "--now", staleEnd.Format(time.RFC3339)}, ws...)...)
	if a := r.Anchor; a.Level != evidence.AnchorAmber || a.Basis != "witnesses" || a.Witnesses == nil || !a.Witnesses.CoversPeriod ||
		a.Witnesses.CosignedAfterPeriod != 0 || !hasFinding(r.Summary.Exceptions, evidence.FindingAnchor) || !strings.Contains(a.What, "a copy of the journal restored from that time") {
		t.Fatalf("cosigned before the period's end: %+v", a)
	}

	out := filepath.Join(t.TempDir(), "green")
	r, data := runEvidenceCmd(t, ej, out, append(period, ws...)...)
	a := r.Anchor
	if a.Level != evidence.AnchorGreen || a.Basis != "witnesses" || a.Witnesses == nil || !a.Witnesses.CoversPeriod || a.Witnesses.CosignedAfterPeriod != 2 ||
		a.Witnesses.WitnessedSize != sizes[len(sizes)-1] || len(a.Witnesses.Cosignatures) != 2 || hasFinding(r.Summary.Exceptions, evidence.FindingAnchor) ||
		!strings.Contains(a.What, "is cosigned by w1.example/witness (at ") {
		t.Fatalf("all cosigned: %+v", a)
	}
	if !strings.Contains(r.Checkpoint.Why, "the witnesses cosigned") || !strings.Contains(r.Checkpoint.Note, "— w2.example/witness ") ||
		!strings.Contains(r.VerifyCommand, "--witness "+w1.file) {
		t.Errorf("the report's checkpoint: %+v, command %s", r.Checkpoint, r.VerifyCommand)
	}
	html, err := os.ReadFile(filepath.Join(out, evidence.HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<dt>Witnesses</dt>", "<code>w2.example/witness</code>", "ml-dsa-44", `<div class="verdict green">The journal verifies, and its checkpoint of tree size`} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("evidence.html has no %q", want)
		}
	}
	sch, err := jsonschema.NewCompiler().Compile("../../docs/evidence.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("evidence.json with witnesses does not match the schema: %v", err)
	}
	// The report's bundles carry the cosignatures, and verify with them.
	bundles, _ := filepath.Glob(filepath.Join(out, "bundles", "*.bundle"))
	if len(bundles) == 0 {
		t.Fatal("no bundles")
	}
	for _, b := range bundles {
		code, stdout, stderr := runArgs("--home", ej.home, "verify", "--bundle", b, "--key", filepath.Join(ej.home, certauth.JournalPubKeyFile), "--witness", w1.file, "--witness", w2.file)
		if code != 0 {
			t.Errorf("verify --bundle %s --witness: exit %d\n%s%s", filepath.Base(b), code, stdout, stderr)
		}
	}

	// A third witness that cosigned nothing, all three required: amber.
	w3 := newCLIWitness(t, "w3.example/witness", witness.AlgEd25519)
	r, _ = runEvidenceCmd(t, ej, filepath.Join(t.TempDir(), "amber"), append(period, append(ws, "--witness", w3.vkey)...)...)
	a = r.Anchor
	if a.Level != evidence.AnchorAmber || a.Basis != "witnesses" || a.Witnesses == nil || a.Witnesses.CoversPeriod || a.Witnesses.WitnessedSize != 0 ||
		!hasFinding(r.Summary.Exceptions, evidence.FindingAnchor) || !strings.Contains(a.What, "No published checkpoint carries valid cosignatures by 3 of the 3 witnesses you gave") {
		t.Errorf("a witness that cosigned nothing: %+v", a)
	}
	// Two of three: green again; with a kept checkpoint too, the cover
	// says the verdict rests on both.
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--home", ej.home, "checkpoint"}, &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}); code != 0 {
		t.Fatalf("checkpoint: %s", stderr.String())
	}
	kept := filepath.Join(t.TempDir(), "kept.txt")
	if err := os.WriteFile(kept, stdout.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	r, _ = runEvidenceCmd(t, ej, filepath.Join(t.TempDir(), "both"), append(period, append(ws, "--witness", w3.vkey, "--witness-threshold", "2", "--checkpoint", kept)...)...)
	a = r.Anchor
	if a.Level != evidence.AnchorGreen || a.Basis != "witnesses" || !strings.Contains(a.What, "the verdict rests on both") || a.CheckpointSize == 0 {
		t.Errorf("witnesses and a kept checkpoint: %+v", a)
	}
	// A bad threshold is a usage error, before anything is read.
	code, _, errOut := runArgs(append([]string{"--home", ej.home, "evidence", "--from", ej.from.Format(time.RFC3339), "--out", filepath.Join(t.TempDir(), "x")}, append(period, append(ws, "--witness-threshold", "5")...)...)...)
	if code != 2 || !strings.Contains(errOut, "give a number from 1 to 2") {
		t.Errorf("evidence --witness-threshold 5: exit %d, %s", code, errOut)
	}
}
