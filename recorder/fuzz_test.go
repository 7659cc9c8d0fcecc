package recorder_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder"
)

// The fuzz targets below cover every decoder of bytes the journal stores or
// exports. Each checks the same contract: the decoder never panics, every
// error wraps the package's sentinel, and whatever it accepts encodes back
// to exactly the bytes it consumed. The last property is what makes the
// format canonical: if two byte strings decoded to the same record, one of
// them would fail the round trip. The targets live in the external test
// package so they exercise only what an outside verifier can call.

// Domain-separation tags, copied from the specification rather than from
// the package, so the tests notice if the code drifts from the document.
const (
	specChainSeedTag = "bastion-journal-v1 chain-seed\x00"
	specFrameTag     = "bastion-journal-v1 frame\x00"
	specLeafMagic    = "bastion-journal-v1 leaf\x00"
)

// addTruncations seeds every interesting prefix of enc: empty, one byte,
// each boundary given in cuts, and one byte short of the whole.
func addTruncations(f *testing.F, enc []byte, cuts ...int) {
	f.Add(enc[:0])
	f.Add(enc[:1])
	for _, n := range cuts {
		if n > 0 && n < len(enc) {
			f.Add(enc[:n])
			f.Add(enc[:n-1])
		}
	}
	if len(enc) > 1 {
		f.Add(enc[:len(enc)-1])
	}
}

// addMalformed seeds the corpus with the fixtures of testdata/vectors that
// decoder must reject, so the fuzzer starts right next to each check.
func addMalformed(f *testing.F, decoder string) {
	for _, c := range malformedCases(f) {
		if c.Decoder == decoder {
			f.Add(c.input)
		}
	}
}

// frameHeaderLen is the fixed part of a frame encoding: session id (16),
// seq (8), kind (1), channel (4), mono (8), wall (8), payload length (4).
const frameHeaderLen = 16 + 8 + 1 + 4 + 8 + 8 + 4

func FuzzParseFrame(f *testing.F) {
	frames := seedFrames(f)
	for i := range frames {
		enc := recorder.AppendFrame(nil, &frames[i])
		f.Add(enc)
		addTruncations(f, enc, frameHeaderLen)
	}
	// Two frames back to back: ParseFrame must consume exactly the first.
	f.Add(recorder.AppendFrame(recorder.AppendFrame(nil, &frames[0]), &frames[1]))
	addMalformed(f, "frame")

	f.Fuzz(func(t *testing.T, b []byte) {
		fr, rest, err := recorder.ParseFrame(b)
		if err != nil {
			if !errors.Is(err, recorder.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			if rest != nil {
				t.Fatalf("rest = %d bytes on error", len(rest))
			}
			return
		}
		if len(rest) > len(b)-frameHeaderLen {
			t.Fatalf("consumed %d bytes, less than a frame header", len(b)-len(rest))
		}
		consumed := b[:len(b)-len(rest)]
		if !bytes.Equal(rest, b[len(consumed):]) {
			t.Fatal("rest is not the tail of the input")
		}
		if got := recorder.AppendFrame(nil, &fr); !bytes.Equal(got, consumed) {
			t.Fatalf("round trip:\n got %x\nwant %x", got, consumed)
		}
		if len(fr.Payload) > recorder.MaxPayload {
			t.Fatalf("accepted a payload of %d bytes", len(fr.Payload))
		}
		// The chainer hashes the header and the payload separately; it
		// must hash exactly the frame encoding, as the spec says.
		var prev recorder.Hash
		copy(prev[:], b)
		want := sha256.Sum256(append(append([]byte(specFrameTag), prev[:]...), consumed...))
		if got := recorder.NewChainer(prev).Add(&fr); got != recorder.Hash(want) {
			t.Fatalf("chain value %x, want SHA-256(tag ‖ prev ‖ encoding) = %x", got, want)
		}
	})
}

func FuzzParseLeaf(f *testing.F) {
	for _, l := range seedLeaves(f) {
		enc, err := l.Encode()
		if err != nil {
			f.Fatalf("encode %s leaf: %v", l.Type, err)
		}
		f.Add(enc)
		// Cut inside the magic, after the type and time, after the
		// session id, and inside the body.
		addTruncations(f, enc, len(specLeafMagic), len(specLeafMagic)+9, len(specLeafMagic)+9+16, len(enc)/2)
		f.Add(append(bytes.Clone(enc), 0))
	}
	f.Add([]byte(specLeafMagic))
	addMalformed(f, "leaf")

	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := recorder.ParseLeaf(b)
		if err != nil {
			if !errors.Is(err, recorder.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			if l != nil {
				t.Fatal("a leaf returned with an error")
			}
			return
		}
		got, err := l.Encode()
		if err != nil {
			t.Fatalf("accepted a leaf that does not encode: %v", err)
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("round trip (a second encoding of the same leaf):\n got %x\nwant %x", got, b)
		}
	})
}

func FuzzParseAttrs(f *testing.F) {
	for _, a := range seedAttrs() {
		enc, err := recorder.EncodeAttrs(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		addTruncations(f, enc, 2, 4, len(enc)/2)
		f.Add(append(bytes.Clone(enc), 0xff))
	}
	// Hand-built near misses, so the fuzzer starts next to the canonical
	// checks: keys out of order, a duplicate key, an uppercase key.
	f.Add(rawAttrs("b", "1", "a", "2"))
	f.Add(rawAttrs("a", "1", "a", "2"))
	f.Add(rawAttrs("A", "1"))
	f.Add(rawAttrs("", "1"))
	addMalformed(f, "attrs")

	f.Fuzz(func(t *testing.T, b []byte) {
		a, rest, err := recorder.ParseAttrs(b)
		pa, perr := recorder.ParseAttrsPayload(b)
		if err != nil {
			if !errors.Is(err, recorder.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			if perr == nil {
				t.Fatal("ParseAttrsPayload accepted what ParseAttrs rejected")
			}
			return
		}
		consumed := b[:len(b)-len(rest)]
		got, err := recorder.EncodeAttrs(a)
		if err != nil {
			t.Fatalf("accepted attributes that do not encode: %v", err)
		}
		if !bytes.Equal(got, consumed) {
			t.Fatalf("round trip (non-canonical encoding accepted):\n got %x\nwant %x", got, consumed)
		}
		switch {
		case len(rest) == 0 && perr != nil:
			t.Fatalf("ParseAttrsPayload rejected a complete list: %v", perr)
		case len(rest) != 0 && perr == nil:
			t.Fatalf("ParseAttrsPayload accepted %d trailing bytes", len(rest))
		case perr == nil && len(pa) != len(a):
			t.Fatalf("ParseAttrsPayload gave %d attributes, ParseAttrs %d", len(pa), len(a))
		}
	})
}

func FuzzParseResize(f *testing.F) {
	for _, p := range [][]byte{
		recorder.ResizePayload(80, 24),
		recorder.ResizePayload(0, 0),
		recorder.ResizePayload(1<<32-1, 1<<32-1),
		{}, make([]byte, 7), make([]byte, 9),
	} {
		f.Add(p)
	}
	addMalformed(f, "resize")
	f.Fuzz(func(t *testing.T, p []byte) {
		cols, rows, err := recorder.ParseResize(p)
		if err != nil {
			if !errors.Is(err, recorder.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			if len(p) == 8 {
				t.Fatalf("rejected an 8-byte payload: %v", err)
			}
			return
		}
		if got := recorder.ResizePayload(cols, rows); !bytes.Equal(got, p) {
			t.Fatalf("round trip:\n got %x\nwant %x", got, p)
		}
	})
}

func FuzzOpenCheckpoint(f *testing.F) {
	key := vectorsKey(f)
	for _, c := range []recorder.Checkpoint{
		{Origin: vectorsOrigin, Size: 0},
		{Origin: vectorsOrigin, Size: 1, Root: recorder.Hash{1}},
		{Origin: vectorsOrigin, Size: 9, Root: recorder.Hash(sha256.Sum256([]byte("root")))},
		{Origin: vectorsOrigin, Size: 1 << 62, Root: recorder.Hash{0xff}},
		// Signable but out of range: OpenCheckpoint must refuse them.
		{Origin: vectorsOrigin, Size: 1<<62 + 1},
		{Origin: vectorsOrigin, Size: -1},
	} {
		msg, err := recorder.SignCheckpoint(c, key.Signer)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
		addTruncations(f, msg, strings.Index(string(msg), "\n\n"))
		// With a cosignature by a key the verifier does not know, as a
		// witness would add.
		f.Add(append(bytes.Clone(msg), "— witness.example/w AAAAAQ==\n"...))
	}
	addMalformed(f, "checkpoint")

	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := recorder.OpenCheckpoint(msg, key.Verifier)
		if err != nil {
			if !errors.Is(err, recorder.ErrCheckpoint) {
				t.Fatalf("error does not wrap ErrCheckpoint: %v", err)
			}
			return
		}
		if c.Origin != vectorsOrigin || c.Size < 0 || c.Size > 1<<62 {
			t.Fatalf("accepted origin %q size %d", c.Origin, c.Size)
		}
		n, err := note.Open(msg, note.VerifierList(key.Verifier))
		if err != nil {
			t.Fatalf("accepted a note that does not verify: %v", err)
		}
		if n.Text != string(c.Body()) {
			t.Fatalf("accepted a note whose body is not the checkpoint's:\n%q\nwant\n%q", n.Text, c.Body())
		}
		resigned, err := recorder.SignCheckpoint(c, key.Signer)
		if err != nil {
			t.Fatalf("cannot re-sign an accepted checkpoint: %v", err)
		}
		// Ed25519 signatures are deterministic and nobody but the signer
		// can make another valid one, so a note with a single signature
		// line, spelled in canonical base64, is exactly what our signer
		// produced, byte for byte. (Other spellings of the signature line
		// and extra cosignatures are accepted: see the report.)
		sigs := msg[len(n.Text)+1:]
		if bytes.Count(sigs, []byte("\n")) == 1 && canonicalSigLine(sigs) && !bytes.Equal(resigned, msg) {
			t.Fatalf("accepted a single-signature note that differs from our signature:\n got %q\nwant %q", msg, resigned)
		}
	})
}

// canonicalSigLine reports whether the signature line "— name b64\n" spells
// its signature in canonical padded base64.
func canonicalSigLine(line []byte) bool {
	_, b64, ok := strings.Cut(strings.TrimSuffix(string(line), "\n"), " ")
	if !ok {
		return false
	}
	_, b64, _ = strings.Cut(b64, " ")
	raw, err := base64.StdEncoding.DecodeString(b64)
	return err == nil && base64.StdEncoding.EncodeToString(raw) == b64
}

// seedAttrs covers the shapes of attribute lists: none, one, many, an empty
// value, a binary value and the longest key.
func seedAttrs() []recorder.Attrs {
	return []recorder.Attrs{
		{},
		{"status": "0"},
		{"command": "uname -a", "identity": "https://issuer.example#agent-7", "login": "deploy", "target": "db-1", "term": "xterm-256color"},
		{"detail": ""},
		{"policy.sha256": string(bytes.Repeat([]byte{0x00, 0xff, 0x80, '\n'}, 8))},
		{strings.Repeat("k", 128): "longest key", "a-b_c.d9": "every key character class"},
	}
}

// rawAttrs encodes key/value pairs in the order given, bypassing the
// encoder's sorting and validation, for non-canonical seeds and fixtures.
func rawAttrs(kv ...string) []byte {
	b := []byte{0, byte(len(kv) / 2)}
	for i := 0; i < len(kv); i += 2 {
		b = append(b, 0, byte(len(kv[i])))
		b = append(b, kv[i]...)
		b = append(b, 0, 0, 0, byte(len(kv[i+1])))
		b = append(b, kv[i+1]...)
	}
	return b
}

func seedFrames(tb testing.TB) []recorder.Frame {
	tb.Helper()
	exit, err := recorder.EncodeAttrs(recorder.Attrs{"status": "0"})
	if err != nil {
		tb.Fatal(err)
	}
	id := recorder.SessionID{0x01, 0x9a, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1}
	return []recorder.Frame{
		{Session: id, Seq: 1, Kind: recorder.KindResize, MonoNS: 0, WallNS: 1767225600000000000, Payload: recorder.ResizePayload(80, 24)},
		{Session: id, Seq: 2, Kind: recorder.KindInput, MonoNS: 1500000, WallNS: 1767225600001500000, Payload: []byte("ls\r")},
		{Session: id, Seq: 3, Kind: recorder.KindOutput, Channel: 0, MonoNS: 2000000, WallNS: 1767225600002000000, Payload: []byte("naïve €\r\n")},
		{Session: id, Seq: 4, Kind: recorder.KindExec, Payload: []byte("uname -a")},
		{Session: id, Seq: 5, Kind: recorder.KindExit, Channel: 7, Payload: exit},
		{Session: id, Seq: 6, Kind: recorder.KindMarker, Payload: []byte{}},
		// Extremes: negative times, an unknown kind, every bit set.
		{Session: recorder.SessionID{}, Seq: 0, Kind: 0, MonoNS: -1, WallNS: -1 << 63, Payload: nil},
		{Session: recorder.SessionID(bytes.Repeat([]byte{0xff}, 16)), Seq: 1<<64 - 1, Kind: 255, Channel: 1<<32 - 1, MonoNS: 1<<63 - 1, WallNS: 1<<63 - 1, Payload: []byte{0, 0xff}},
	}
}

func seedLeaves(tb testing.TB) []*recorder.Leaf {
	tb.Helper()
	id := recorder.SessionID{0x01, 0x9a, 0, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1}
	head := recorder.Hash(sha256.Sum256([]byte("head")))
	var leaves []*recorder.Leaf
	for _, a := range seedAttrs() {
		leaves = append(leaves,
			&recorder.Leaf{Type: recorder.LeafSessionStart, WallNS: 1767225600000000000, Session: id, Attrs: a},
			&recorder.Leaf{Type: recorder.LeafSessionEnd, WallNS: 1767225601000000000, Session: id, Last: 7, Head: head, Attrs: a},
			&recorder.Leaf{Type: recorder.LeafEvent, WallNS: 1767225599000000000, Event: "cert-issued", Attrs: a},
		)
	}
	return append(leaves,
		&recorder.Leaf{Type: recorder.LeafSegment, WallNS: 1767225600500000000, Session: id, First: 1, Last: 3, Head: head},
		&recorder.Leaf{Type: recorder.LeafSegment, WallNS: -1, Session: id, First: 1, Last: 1, Head: head},
		&recorder.Leaf{Type: recorder.LeafSegment, Session: id, First: 1<<64 - 1, Last: 1<<64 - 1},
		// A session that ended without frames ends at its chain seed.
		&recorder.Leaf{Type: recorder.LeafSessionEnd, Session: id, Last: 0, Head: recorder.ChainSeed(id), Attrs: recorder.Attrs{}},
		&recorder.Leaf{Type: recorder.LeafEvent, Event: strings.Repeat("e", 128), Attrs: recorder.Attrs{}},
	)
}

// TestOpenCheckpointOneSpelling checks that a checkpoint note has one
// accepted spelling: neither a non-canonical base64 signature nor a second,
// unverified signature line by the log's own key gets through. Both would
// keep the authenticated body intact, but two notes for one checkpoint
// would compare unequal as bytes.
func TestOpenCheckpointOneSpelling(t *testing.T) {
	key := vectorsKey(t)
	msg, err := recorder.SignCheckpoint(recorder.Checkpoint{Origin: vectorsOrigin, Size: 3}, key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	// The last base64 digit before "=" of a 68-byte signature carries two
	// unused bits; setting one decodes to the same signature.
	loose := bytes.Clone(msg)
	loose[len(loose)-3]++
	// A second line by the same key, with its signature of another
	// checkpoint: not valid for this body.
	other, err := recorder.SignCheckpoint(recorder.Checkpoint{Origin: vectorsOrigin, Size: 4}, key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	dup := append(bytes.Clone(msg), other[bytes.Index(other, []byte("\n\n"))+2:]...)
	for name, in := range map[string][]byte{"non-canonical base64": loose, "duplicate signature line": dup} {
		if _, err := recorder.OpenCheckpoint(in, key.Verifier); err == nil {
			t.Errorf("%s: accepted %q", name, in)
		}
	}
}
