package witness_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastionhq/bastion/recorder/witness"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// FuzzParseAddCheckpoint: a request body that parses is the one
// encoding of what it parsed to.
func FuzzParseAddCheckpoint(f *testing.F) {
	log := newTestLog(&testing.T{}, "bastion.test/journal")
	log.grow(9)
	f.Add(log.request(0, 3))
	f.Add(log.request(3, 9))
	f.Add(log.request(9, 9))
	f.Add([]byte("old 0\n\nx"))
	f.Add([]byte("old 01\n\nx"))
	f.Add([]byte("old 3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\nx"))
	f.Add([]byte("old 3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n\nx"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := witness.ParseAddCheckpoint(body)
		if err != nil {
			return
		}
		if len(r.Proof) > witness.MaxProofLines || len(r.Checkpoint) == 0 || r.Old < 0 {
			t.Fatalf("parsed out of bounds: %d proof lines, %d checkpoint bytes, old %d", len(r.Proof), len(r.Checkpoint), r.Old)
		}
		if got := r.Marshal(); !bytes.Equal(got, body) {
			t.Fatalf("round trip:\n%q\nbecame\n%q", body, got)
		}
	})
}

// FuzzParseSignatureLines: an answer that parses is the concatenation of
// the lines it parsed to.
func FuzzParseSignatureLines(f *testing.F) {
	f.Add([]byte("— witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n"))
	f.Add([]byte("— a AAAAAAA=\n— b AAAAAAA=\n"))
	f.Add([]byte("— a AAAAAAB=\n"))
	f.Add([]byte("— a+b AAAAAAA=\n"))
	f.Add([]byte("— a AAAAAAA="))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		lines, err := witness.ParseSignatureLines(body)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, l := range lines {
			if len(l.Sig) < 5 {
				t.Fatalf("a line of %d signature bytes", len(l.Sig))
			}
			b.WriteString(l.String())
		}
		if b.String() != string(body) {
			t.Fatalf("round trip:\n%q\nbecame\n%q", body, b.String())
		}
	})
}

// cosignedNote is a checkpoint signed by a log, with a witness's
// cosignature line first after the blank line: flipping any byte before
// the log's line changes the text or the witness's line.
type cosignedNote struct {
	key  *witness.Key
	note []byte
	end  int // the end of the witness's line
}

func cosignedNotes(tb testing.TB) []cosignedNote {
	log := newTestLog(&testing.T{}, "bastion.test/journal")
	log.grow(5)
	cp := log.checkpoint(5)
	text := cp[:bytes.Index(cp, []byte("\n\n"))+1]
	logLine := cp[len(text)+1:]
	var out []cosignedNote
	for _, alg := range []string{witness.AlgEd25519, witness.AlgMLDSA44} {
		id, err := witness.CreateIdentity(tb.TempDir(), "witness.test/"+alg, alg)
		if err != nil {
			tb.Fatal(err)
		}
		signed, err := note.Sign(&note.Note{Text: string(text)}, id.Signer)
		if err != nil {
			tb.Fatal(err)
		}
		line := signed[len(text)+1:]
		msg := append(append(append(bytes.Clone(text), '\n'), line...), logLine...)
		out = append(out, cosignedNote{key: id.Key, note: msg, end: len(text) + 1 + len(line)})
		if valid, bad := witness.Cosignatures(msg, []*witness.Key{id.Key}); len(valid) != 1 || len(bad) != 0 {
			tb.Fatalf("%s: the cosignature does not verify: %v", alg, bad)
		}
	}
	return out
}

// FuzzCosignatures: checking any note against witness keys never panics;
// a valid cosignature stays valid with lines by other keys around it; and
// no byte of the checkpoint's text or of the cosignature line can be
// changed with the cosignature still valid.
func FuzzCosignatures(f *testing.F) {
	notes := cosignedNotes(f)
	keys := []*witness.Key{notes[0].key, notes[1].key}
	for _, n := range notes {
		f.Add(n.note, uint16(0), byte(1))
		f.Add(n.note, uint16(n.end-2), byte(0x40))
	}
	// A root hash's last base64 digit with other padding bits: the same
	// root, which an ML-DSA-44 cosignature signs, spelled another way.
	for _, n := range notes {
		i := bytes.Index(n.note, []byte("=\n")) - 1
		const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
		d := strings.IndexByte(digits, n.note[i])
		f.Add(n.note, uint16(i), n.note[i]^digits[d^1])
	}
	f.Add([]byte("a\n\n— witness.test/ed25519 AAAAAAAAAAAAAAAA\n"), uint16(0), byte(0))
	f.Add([]byte("— witness.test/ed25519 AAAAAAAAAAAAAAAA\n— other.test/w AAAAAAAAAAAAAAAA\n"), uint16(1), byte(0))
	f.Fuzz(func(t *testing.T, msg []byte, at uint16, xor byte) {
		// Any note: no panic, and a valid one is by one of keys, once.
		valid, _ := witness.Cosignatures(msg, keys)
		seen := map[*witness.Key]bool{}
		for _, c := range valid {
			if seen[c.Key] || !c.Key.Owns(c.Line) || c.Time.IsZero() {
				t.Fatalf("cosignature %+v: twice, not by its key, or no time", c)
			}
			seen[c.Key] = true
		}

		// Signature lines appended, whatever they are, keep a valid
		// cosignature valid.
		n := notes[int(at)%len(notes)]
		if _, err := witness.ParseSignatureLines(msg); err == nil {
			if v, _ := witness.Cosignatures(append(bytes.Clone(n.note), msg...), []*witness.Key{n.key}); len(v) != 1 {
				t.Fatalf("the cosignature stopped verifying with these lines after it: %q", msg)
			}
		}

		// One byte of the text or of the witness's line changed.
		if xor == 0 {
			return
		}
		flipped := bytes.Clone(n.note)
		flipped[int(at)%n.end] ^= xor
		if v, _ := witness.Cosignatures(flipped, []*witness.Key{n.key}); len(v) != 0 {
			t.Fatalf("%s cosignature still valid with byte %d changed:\n%s", n.key.Alg, int(at)%n.end, flipped)
		}
	})
}

// FuzzWitnessRequest: whatever the body, the add-checkpoint handler never
// panics, answers with a status the protocol allows, never cosigns a
// checkpoint without a valid signature by the log's key, and never
// cosigns one smaller than one it cosigned.
func FuzzWitnessRequest(f *testing.F) {
	log := newTestLog(&testing.T{}, "bastion.test/journal")
	log.grow(12)
	dir := f.TempDir()
	id, err := witness.CreateIdentity(dir, "witness.test/w1", witness.AlgEd25519)
	if err != nil {
		f.Fatal(err)
	}
	st, err := witness.OpenState(context.Background(), filepath.Join(dir, witness.StateFile), id.Key.VKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	lk, err := witness.ParseLogKey(log.vkey)
	if err != nil {
		f.Fatal(err)
	}
	w, err := witness.New(witness.Config{Identity: id, Logs: []*witness.LogKey{lk}, State: st})
	if err != nil {
		f.Fatal(err)
	}
	logKeys := note.VerifierList(lk.Verifier)
	f.Add(log.request(0, 4))
	f.Add(log.request(4, 9))
	f.Add(log.request(9, 12))
	f.Add(log.request(0, 0))
	f.Add(log.request(9, 5))
	f.Add(forgeLastLine(&testing.T{}, log.request(0, 3)))
	f.Add([]byte("old 0\n\nbastion.test/journal\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— bastion.test/journal AAAAAAAAAA==\n"))
	allowed := map[int]bool{200: true, 400: true, 403: true, 404: true, 409: true, 413: true, 422: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		before, _ := st.Latest(context.Background(), log.origin)
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/add-checkpoint", bytes.NewReader(body)))
		if !allowed[rec.Code] {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			return
		}
		req, err := witness.ParseAddCheckpoint(body)
		if err != nil {
			t.Fatalf("cosigned a request that does not parse: %v", err)
		}
		n, err := note.Open(req.Checkpoint, logKeys)
		if err != nil {
			t.Fatalf("cosigned a checkpoint without a valid log signature: %v", err)
		}
		valid, bad := witness.Cosignatures(append(bytes.Clone(req.Checkpoint), rec.Body.Bytes()...), []*witness.Key{id.Key})
		if len(valid) != 1 || len(bad) != 0 {
			t.Fatalf("the answer is not a valid cosignature: %q", rec.Body)
		}
		after, err := st.Latest(context.Background(), log.origin)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(n.Text, log.origin+"\n") || after.Received == nil {
			t.Fatalf("state after a cosignature: %+v", after)
		}
		if before != nil && (after.Size < before.Size || (after.Size == before.Size && after.Root != before.Root)) {
			t.Fatalf("rolled back or forked from %d to %d", before.Size, after.Size)
		}
		if before != nil && after.Size > before.Size {
			if err := tlog.CheckTree(req.Proof, after.Size, after.Root, before.Size, before.Root); before.Size > 0 && err != nil {
				t.Fatalf("cosigned size %d without a proof from %d: %v", after.Size, before.Size, err)
			}
		}
	})
}
