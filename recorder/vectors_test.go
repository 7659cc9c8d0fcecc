package recorder_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
)

// The test vectors in testdata/vectors let an auditor check an independent
// verifier against this one without reading Go. The files are built here
// from the encoders alone (never through the Journal writer, whose session
// IDs and clocks are random), so every byte in them is reproducible: Ed25519
// signatures are deterministic too. Without -update the tests rebuild the
// files and compare, then read them back as an outside verifier would.

var update = flag.Bool("update", false, "rewrite testdata/vectors/*.json from the encoders")

const (
	vectorsOrigin = "vectors.example/journal"
	// vectorsSignerKey is a TEST KEY, published on purpose so that anyone
	// can reproduce the vectors' signatures. It signs nothing real; never
	// configure a journal with it. Made once with
	// recorder.GenerateJournalKey(vectorsOrigin).
	vectorsSignerKey = "PRIVATE+KEY+vectors.example/journal+a3f3b89d+AZaIAbuQdwSLdDrPjPEiEZbOANjfya5dLNJ1wunmJBCM"
	// vectorsImpostorKey is a second TEST KEY with the same name, for the
	// fixture of a checkpoint signed by the wrong key.
	vectorsImpostorKey = "PRIVATE+KEY+vectors.example/journal+80517c98+ATOaR78rnESNSEFxjUJWvHwaAZ9U6KpwbUMC0zQBTkLE"

	vectorsPath   = "../testdata/vectors/journal-v1.json"
	malformedPath = "../testdata/vectors/malformed.json"

	// vectorsEpoch is 2026-01-01T00:00:00Z in Unix nanoseconds.
	vectorsEpoch int64 = 1767225600_000000000
	ms                 = int64(1_000_000)
)

func vectorsKey(tb testing.TB) *recorder.JournalKey {
	tb.Helper()
	k, err := recorder.ParseJournalKey(vectorsSignerKey)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// The JSON shapes. Every byte string is lowercase hex in a field ending in
// _hex; the other fields are the decoded values, for reading and for
// comparing a decoder's output against.
type (
	vectorFile struct {
		Comment     string            `json:"comment"`
		Format      string            `json:"format"`
		Spec        string            `json:"spec"`
		Origin      string            `json:"origin"`
		SignerKey   string            `json:"signer_key"`
		VerifierKey string            `json:"verifier_key"`
		TagsHex     map[string]string `json:"tags_hex"`
		Attrs       []attrsVector     `json:"attrs"`
		Sessions    []sessionVector   `json:"sessions"`
		Leaves      []leafVector      `json:"leaves"`
		Tree        []treeVector      `json:"tree"`
		Checkpoints []checkpointVec   `json:"checkpoints"`
	}
	attrVector struct {
		Key      string `json:"key"`
		ValueHex string `json:"value_hex"`
		// ValueText repeats a printable UTF-8 value as text, for reading.
		ValueText *string `json:"value_text,omitempty"`
	}
	attrsVector struct {
		Comment     string       `json:"comment"`
		Attrs       []attrVector `json:"attrs"`
		EncodingHex string       `json:"attrs_encoding_hex"`
	}
	sessionVector struct {
		Comment      string        `json:"comment"`
		SessionIDHex string        `json:"session_id_hex"`
		ChainSeedHex string        `json:"chain_seed_hex"`
		Frames       []frameVector `json:"frames"`
	}
	frameVector struct {
		Seq              uint64        `json:"seq"`
		Kind             uint8         `json:"kind"`
		KindName         string        `json:"kind_name"`
		Channel          uint32        `json:"channel"`
		MonoNS           int64         `json:"mono_ns"`
		WallNS           int64         `json:"wall_ns"`
		PayloadHex       string        `json:"payload_hex"`
		PayloadText      *string       `json:"payload_text,omitempty"`
		Resize           *resizeVector `json:"payload_resize,omitempty"`
		PayloadAttrs     []attrVector  `json:"payload_attrs,omitempty"`
		FrameEncodingHex string        `json:"frame_encoding_hex"`
		ChainHex         string        `json:"chain_hex"`
	}
	resizeVector struct {
		Cols uint32 `json:"cols"`
		Rows uint32 `json:"rows"`
	}
	leafVector struct {
		Index           int64        `json:"index"`
		Type            uint8        `json:"type"`
		TypeName        string       `json:"type_name"`
		WallNS          int64        `json:"wall_ns"`
		SessionIDHex    string       `json:"session_id_hex,omitempty"`
		First           *uint64      `json:"first,omitempty"`
		Last            *uint64      `json:"last,omitempty"`
		HeadHex         string       `json:"head_hex,omitempty"`
		Event           string       `json:"event,omitempty"`
		Attrs           []attrVector `json:"attrs,omitempty"`
		LeafEncodingHex string       `json:"leaf_encoding_hex"`
		LeafHashHex     string       `json:"leaf_hash_hex"`
	}
	treeVector struct {
		Size       int64  `json:"size"`
		RootHex    string `json:"root_hex"`
		RootBase64 string `json:"root_base64"`
	}
	checkpointVec struct {
		Comment string `json:"comment,omitempty"`
		Size    int64  `json:"size"`
		RootHex string `json:"root_hex"`
		Note    string `json:"note"`
	}
)

// mustAttrs encodes an attribute list.
func mustAttrs(tb testing.TB, a recorder.Attrs) []byte {
	tb.Helper()
	b, err := recorder.EncodeAttrs(a)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// vectorSession is the input the journal vectors are built from.
type vectorSession struct {
	comment string
	id      recorder.SessionID
	frames  []recorder.Frame
}

func vectorSessions(tb testing.TB) []vectorSession {
	tb.Helper()
	attrs := func(a recorder.Attrs) []byte { return mustAttrs(tb, a) }
	a := recorder.SessionID{0x01, 0x9b, 0x77, 0x1c, 0x4e, 0x28, 0x70, 0x00, 0x80, 0x00, 0, 0, 0, 0, 0, 0x0a}
	b := recorder.SessionID{0x01, 0x9b, 0x77, 0x1c, 0x52, 0x10, 0x70, 0x00, 0x80, 0x00, 0, 0, 0, 0, 0, 0x0b}
	aStart, bStart := vectorsEpoch+1000*ms, vectorsEpoch+2000*ms
	frame := func(id recorder.SessionID, start int64, seq uint64, k recorder.Kind, mono int64, p []byte) recorder.Frame {
		return recorder.Frame{Session: id, Seq: seq, Kind: k, Channel: 0, MonoNS: mono, WallNS: start + mono, Payload: p}
	}
	return []vectorSession{{
		comment: "an interactive shell in a PTY; frame 4 has multi-byte UTF-8",
		id:      a,
		frames: []recorder.Frame{
			frame(a, aStart, 1, recorder.KindResize, 0, recorder.ResizePayload(80, 24)),
			frame(a, aStart, 2, recorder.KindOutput, 15*ms, []byte("$ ")),
			frame(a, aStart, 3, recorder.KindInput, 1200*ms, []byte("ls\r")),
			frame(a, aStart, 4, recorder.KindOutput, 1210*ms, []byte("ls\r\nnaïve-café.txt  €uro.csv  日本.md\r\n$ ")),
			frame(a, aStart, 5, recorder.KindResize, 2500*ms, recorder.ResizePayload(132, 43)),
			frame(a, aStart, 6, recorder.KindInput, 3000*ms, []byte("exit\r")),
			frame(a, aStart, 7, recorder.KindOutput, 3005*ms, []byte("exit\r\n")),
			frame(a, aStart, 8, recorder.KindExit, 3010*ms, attrs(recorder.Attrs{"status": "0"})),
		},
	}, {
		comment: "an exec request ended by bastion; frame 4 has an empty payload (length 0)",
		id:      b,
		frames: []recorder.Frame{
			frame(b, bStart, 1, recorder.KindExec, 0, []byte("uname -a")),
			frame(b, bStart, 2, recorder.KindOutput, 40*ms, []byte("Linux db-1 6.1.0-28-amd64 x86_64 GNU/Linux\n")),
			frame(b, bStart, 3, recorder.KindStderr, 41*ms, []byte("locale: cannot set LC_ALL to ‘fr_FR.UTF-8’\n")),
			frame(b, bStart, 4, recorder.KindOutput, 42*ms, []byte{}),
			frame(b, bStart, 5, recorder.KindMarker, 60000*ms, []byte("grant g-42 expired; session ended by bastion")),
			frame(b, bStart, 6, recorder.KindExit, 60001*ms, attrs(recorder.Attrs{"signal": "TERM", "status": "143"})),
		},
	}}
}

// vectorBytes is what a session-end leaf counts: the payload bytes of the
// input frames, and of the output and stderr frames, in decimal.
func vectorBytes(s vectorSession) (in, out string) {
	var i, o int
	for _, f := range s.frames {
		switch f.Kind {
		case recorder.KindInput:
			i += len(f.Payload)
		case recorder.KindOutput, recorder.KindStderr:
			o += len(f.Payload)
		}
	}
	return strconv.Itoa(i), strconv.Itoa(o)
}

// vectorLeaves lays the sessions out in the log as the writer would:
// starts, segments committed in batches, ends, and an audit event.
func vectorLeaves(s []vectorSession, heads [][]recorder.Hash) []*recorder.Leaf {
	aIn, aOut := vectorBytes(s[0])
	bIn, bOut := vectorBytes(s[1])
	a, b := s[0].id, s[1].id
	seg := func(wall int64, i int, first, last uint64) *recorder.Leaf {
		return &recorder.Leaf{Type: recorder.LeafSegment, WallNS: wall, Session: s[i].id, First: first, Last: last, Head: heads[i][last]}
	}
	keyHash := sha256.Sum256([]byte("agent-7 public key"))
	t := func(msec int64) int64 { return vectorsEpoch + msec*ms }
	return []*recorder.Leaf{
		{Type: recorder.LeafEvent, WallNS: t(0), Event: "cert-issued", Attrs: recorder.Attrs{
			"identity":     "https://issuer.example/#agent-7",
			"key-id":       "agent-7/42",
			"principals":   "deploy",
			"public-key":   string(keyHash[:]), // a binary value
			"serial":       "42",
			"valid-after":  "1767225540",
			"valid-before": "1767225900",
		}},
		{Type: recorder.LeafSessionStart, WallNS: t(1000), Session: a, Attrs: recorder.Attrs{
			"client":   "192.0.2.10:50122",
			"identity": "https://issuer.example/#agent-7",
			"login":    "deploy",
			"target":   "db-1.internal.example",
			"term":     "xterm-256color",
		}},
		seg(t(1100), 0, 1, 2),
		{Type: recorder.LeafSessionStart, WallNS: t(2000), Session: b, Attrs: recorder.Attrs{
			"command":  "uname -a",
			"identity": "https://issuer.example/#agent-7",
			"login":    "deploy",
			"target":   "db-1.internal.example",
		}},
		seg(t(2300), 0, 3, 4),
		seg(t(2300), 1, 1, 2),
		seg(t(4100), 0, 5, 8),
		{Type: recorder.LeafSessionEnd, WallNS: t(4100), Session: a, Last: 8, Head: heads[0][8], Attrs: recorder.Attrs{
			"exit-status": "0",
			"in-bytes":    aIn,
			"out-bytes":   aOut,
			"reason":      "exited",
		}},
		seg(t(62100), 1, 3, 6),
		{Type: recorder.LeafSessionEnd, WallNS: t(62100), Session: b, Last: 6, Head: heads[1][6], Attrs: recorder.Attrs{
			"detail":    "grant g-42 expired",
			"in-bytes":  bIn,
			"out-bytes": bOut,
			"reason":    "killed",
		}},
	}
}

// vectorCheckpointSizes are the tree sizes signed: after the first session
// ended (the writer keeps a checkpoint at every session end) and at the end.
var vectorCheckpointSizes = []int64{8, 10}

func buildJournalVectors(tb testing.TB) *vectorFile {
	tb.Helper()
	key := vectorsKey(tb)
	vf := &vectorFile{
		Comment: "Test vectors for the bastion journal format, built from the encoders. " +
			"Byte strings are lowercase hex; see README.md in this directory and docs/journal-format.md. " +
			"signer_key is a published TEST KEY: it signs nothing real.",
		Format:      recorder.FormatVersion,
		Spec:        "docs/journal-format.md",
		Origin:      vectorsOrigin,
		SignerKey:   vectorsSignerKey,
		VerifierKey: key.VerifierKey,
		TagsHex: map[string]string{
			"chain_seed": hex.EncodeToString([]byte(specChainSeedTag)),
			"frame":      hex.EncodeToString([]byte(specFrameTag)),
			"leaf":       hex.EncodeToString([]byte(specLeafMagic)),
		},
	}
	for i, a := range seedAttrs() {
		enc, err := recorder.EncodeAttrs(a)
		if err != nil {
			tb.Fatal(err)
		}
		vf.Attrs = append(vf.Attrs, attrsVector{Comment: attrsComments[i], Attrs: attrList(a), EncodingHex: hex.EncodeToString(enc)})
	}

	sessions := vectorSessions(tb)
	heads := make([][]recorder.Hash, len(sessions)) // heads[i][seq] = c_seq
	for i, s := range sessions {
		sv := sessionVector{Comment: s.comment, SessionIDHex: hex.EncodeToString(s.id[:])}
		seed := recorder.ChainSeed(s.id)
		sv.ChainSeedHex = hex.EncodeToString(seed[:])
		heads[i] = []recorder.Hash{seed}
		c := recorder.NewChainer(seed)
		for _, f := range s.frames {
			head := c.Add(&f)
			heads[i] = append(heads[i], head)
			sv.Frames = append(sv.Frames, frameVec(tb, &f, head))
		}
		vf.Sessions = append(vf.Sessions, sv)
	}

	var encs [][]byte
	for i, l := range vectorLeaves(sessions, heads) {
		enc, err := l.Encode()
		if err != nil {
			tb.Fatalf("leaf %d: %v", i, err)
		}
		encs = append(encs, enc)
		vf.Leaves = append(vf.Leaves, leafVec(int64(i), l, enc))
	}
	roots := treeRoots(tb, encs)
	for i, r := range roots {
		vf.Tree = append(vf.Tree, treeVector{Size: int64(i + 1), RootHex: hex.EncodeToString(r[:]), RootBase64: r.String()})
	}
	for _, n := range vectorCheckpointSizes {
		msg, err := recorder.SignCheckpoint(recorder.Checkpoint{Origin: vectorsOrigin, Size: n, Root: roots[n-1]}, key.Signer)
		if err != nil {
			tb.Fatal(err)
		}
		vf.Checkpoints = append(vf.Checkpoints, checkpointVec{Size: n, RootHex: hex.EncodeToString(roots[n-1][:]), Note: string(msg)})
	}
	// The last checkpoint again, cosigned: by a witness, and by another
	// key that has the log's name (a different key hash). Both lines are
	// other keys': the note is valid with exactly the log's own line.
	last := vf.Checkpoints[len(vf.Checkpoints)-1]
	cosigned := []byte(last.Note)
	for _, skey := range []string{vectorsWitnessKey, vectorsImpostorKey} {
		cosigned = recordertest.Cosign(tb, cosigned, skey)
	}
	vf.Checkpoints = append(vf.Checkpoints, checkpointVec{
		Comment: "the same checkpoint with two more signature lines: a witness's, and one by another key of the same name " +
			"(key hash 80517c98): signed notes identify a key by name and key hash, so both are other keys' and are ignored",
		Size: last.Size, RootHex: last.RootHex, Note: string(cosigned),
	})
	return vf
}

// vectorsWitnessKey is a TEST KEY of a witness, for the cosigned
// checkpoint vector.
const vectorsWitnessKey = "PRIVATE+KEY+witness.example/w1+f7aefaa0+AeH/1xZ+saxwC0mzEsPZKqE4VozXJ2RyhEeF/X8fwXFK"

var attrsComments = []string{
	"no attributes: just the count",
	"one attribute",
	"several attributes, encoded in ascending key order",
	"an empty value",
	"a binary value",
	"the longest key (128 bytes) and every key character class",
}

func attrList(a recorder.Attrs) []attrVector {
	enc, _ := recorder.EncodeAttrs(a)
	// Decoding the canonical encoding gives the keys in their encoded order.
	var out []attrVector
	for b := enc[2:]; len(b) > 0; {
		kl := int(b[0])<<8 | int(b[1])
		k := string(b[2 : 2+kl])
		b = b[2+kl:]
		vl := int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		b = b[4+vl:]
		out = append(out, attrVector{Key: k, ValueHex: hex.EncodeToString([]byte(a[k])), ValueText: printable(a[k])})
	}
	if out == nil {
		out = []attrVector{}
	}
	return out
}

// printable returns s if it is UTF-8 text without control characters other
// than CR, LF and tab, else nil: such values are shown as text too.
func printable(s string) *string {
	if !utf8.ValidString(s) {
		return nil
	}
	for _, r := range s {
		if r < 0x20 && r != '\r' && r != '\n' && r != '\t' || r == 0x7f {
			return nil
		}
	}
	return &s
}

func frameVec(tb testing.TB, f *recorder.Frame, head recorder.Hash) frameVector {
	tb.Helper()
	v := frameVector{
		Seq: f.Seq, Kind: uint8(f.Kind), KindName: f.Kind.String(), Channel: f.Channel,
		MonoNS: f.MonoNS, WallNS: f.WallNS, PayloadHex: hex.EncodeToString(f.Payload),
		FrameEncodingHex: hex.EncodeToString(recorder.AppendFrame(nil, f)),
		ChainHex:         hex.EncodeToString(head[:]),
	}
	switch f.Kind {
	case recorder.KindResize:
		cols, rows, err := recorder.ParseResize(f.Payload)
		if err != nil {
			tb.Fatal(err)
		}
		v.Resize = &resizeVector{Cols: cols, Rows: rows}
	case recorder.KindExit, recorder.KindSubsystem, recorder.KindMask, recorder.KindPTY, recorder.KindEnv:
		a, err := recorder.ParseAttrsPayload(f.Payload)
		if err != nil {
			tb.Fatal(err)
		}
		v.PayloadAttrs = attrList(a)
	default:
		v.PayloadText = printable(string(f.Payload))
	}
	return v
}

func leafVec(idx int64, l *recorder.Leaf, enc []byte) leafVector {
	h := tlog.RecordHash(enc)
	v := leafVector{
		Index: idx, Type: uint8(l.Type), TypeName: l.Type.String(), WallNS: l.WallNS,
		LeafEncodingHex: hex.EncodeToString(enc), LeafHashHex: hex.EncodeToString(h[:]),
	}
	if l.Type != recorder.LeafEvent {
		v.SessionIDHex = hex.EncodeToString(l.Session[:])
	}
	first, last := l.First, l.Last
	switch l.Type {
	case recorder.LeafSegment:
		v.First, v.Last, v.HeadHex = &first, &last, hex.EncodeToString(l.Head[:])
	case recorder.LeafSessionEnd:
		v.Last, v.HeadHex = &last, hex.EncodeToString(l.Head[:])
	case recorder.LeafEvent:
		v.Event = l.Event
	}
	if l.Type != recorder.LeafSegment {
		v.Attrs = attrList(l.Attrs)
	}
	return v
}

// treeRoots returns the root of the tree of the first n leaves, for every n,
// computed with tlog as the journal does.
func treeRoots(tb testing.TB, encs [][]byte) []recorder.Hash {
	tb.Helper()
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(stored)) {
				return nil, errors.New("hash not stored")
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	var roots []recorder.Hash
	for i, enc := range encs {
		hs, err := tlog.StoredHashes(int64(i), enc, r)
		if err != nil {
			tb.Fatal(err)
		}
		stored = append(stored, hs...)
		root, err := tlog.TreeHash(int64(i+1), r)
		if err != nil {
			tb.Fatal(err)
		}
		roots = append(roots, recorder.Hash(root))
	}
	return roots
}

// rfc6962Root is the Merkle tree hash of RFC 6962 section 2.1, written out
// from the RFC as an auditor would, to check the tlog-computed roots.
func rfc6962Root(leafHashes [][]byte) []byte {
	if len(leafHashes) == 1 {
		return leafHashes[0]
	}
	k := 1
	for k*2 < len(leafHashes) {
		k *= 2
	}
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(rfc6962Root(leafHashes[:k]))
	h.Write(rfc6962Root(leafHashes[k:]))
	return h.Sum(nil)
}

// marshalVectors is the one JSON spelling of the vector files: indented,
// with "<", ">" and "&" left as they are, ending in a newline.
func marshalVectors(tb testing.TB, v any) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// checkGolden compares want with the file at path, or rewrites the file
// under -update.
func checkGolden(t *testing.T, path string, want []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./recorder -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		line := 0
		for line < len(gl) && line < len(wl) && gl[line] == wl[line] {
			line++
		}
		g, w := "<end of file>", "<end of file>"
		if line < len(gl) {
			g = gl[line]
		}
		if line < len(wl) {
			w = wl[line]
		}
		t.Fatalf("%s differs from what the encoders produce, first at line %d:\n file: %s\n want: %s\n"+
			"The journal format is a contract: if this change is intended, record it in docs/journal-format.md "+
			"and run go test ./recorder -run %s -update", path, line+1, g, w, t.Name())
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func unhex(t *testing.T, what, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return b
}

func TestJournalVectors(t *testing.T) {
	checkGolden(t, vectorsPath, marshalVectors(t, buildJournalVectors(t)))
	if *update {
		return
	}
	// From here on, read the file as an independent verifier would: the
	// spec's formulas computed directly, and the package's decoders.
	var vf vectorFile
	readJSON(t, vectorsPath, &vf)
	for name, tag := range map[string]string{"chain_seed": specChainSeedTag, "frame": specFrameTag, "leaf": specLeafMagic} {
		if got := string(unhex(t, "tags_hex", vf.TagsHex[name])); got != tag {
			t.Errorf("tags_hex.%s = %q, want %q", name, got, tag)
		}
	}
	checkAttrsVectors(t, vf.Attrs)
	heads := map[string][]string{} // session id hex -> chain_hex by seq, c_0 first
	for _, s := range vf.Sessions {
		heads[s.SessionIDHex] = checkSessionVectors(t, &s)
	}
	leafHashes := checkLeafVectors(t, vf.Leaves, heads)
	checkTreeVectors(t, vf.Tree, leafHashes)
	checkCheckpointVectors(t, &vf)
}

func checkAttrsVectors(t *testing.T, vs []attrsVector) {
	for i, v := range vs {
		enc := unhex(t, "attrs_encoding_hex", v.EncodingHex)
		a, err := recorder.ParseAttrsPayload(enc)
		if err != nil {
			t.Errorf("attrs %d: %v", i, err)
			continue
		}
		if !sameAttrs(t, a, v.Attrs) {
			t.Errorf("attrs %d: decoded %q, file says %v", i, a, v.Attrs)
		}
		if re, err := recorder.EncodeAttrs(a); err != nil || !bytes.Equal(re, enc) {
			t.Errorf("attrs %d: re-encodes to %x (%v)", i, re, err)
		}
	}
}

// sameAttrs reports whether a holds exactly the listed attributes, and the
// list is in strictly ascending key order.
func sameAttrs(t *testing.T, a recorder.Attrs, list []attrVector) bool {
	t.Helper()
	if len(a) != len(list) {
		return false
	}
	for i, kv := range list {
		if i > 0 && kv.Key <= list[i-1].Key {
			return false
		}
		v, ok := a[kv.Key]
		if !ok || v != string(unhex(t, "value_hex", kv.ValueHex)) || kv.ValueText != nil && *kv.ValueText != v {
			return false
		}
	}
	return true
}

// checkSessionVectors checks one session's frames and chain and returns its
// chain values as hex, c_0 first.
func checkSessionVectors(t *testing.T, s *sessionVector) []string {
	t.Helper()
	var id recorder.SessionID
	copy(id[:], unhex(t, "session_id_hex", s.SessionIDHex))
	seed := sha256.Sum256(append([]byte(specChainSeedTag), id[:]...))
	if hex.EncodeToString(seed[:]) != s.ChainSeedHex {
		t.Errorf("session %s: chain_seed_hex is not SHA-256(chain-seed tag ‖ id)", s.SessionIDHex)
	}
	if recorder.ChainSeed(id) != recorder.Hash(seed) {
		t.Errorf("session %s: ChainSeed differs from the spec", s.SessionIDHex)
	}
	chain := []string{s.ChainSeedHex}
	prev := seed[:]
	c := recorder.NewChainer(recorder.Hash(seed))
	for _, fv := range s.Frames {
		where := "session " + s.SessionIDHex + " frame " + strconv.FormatUint(fv.Seq, 10)
		enc := unhex(t, where, fv.FrameEncodingHex)
		f, rest, err := recorder.ParseFrame(enc)
		if err != nil || len(rest) != 0 {
			t.Fatalf("%s: ParseFrame: %v, %d bytes left", where, err, len(rest))
		}
		payload := unhex(t, where, fv.PayloadHex)
		if f.Session != id || f.Seq != fv.Seq || uint8(f.Kind) != fv.Kind || f.Kind.String() != fv.KindName ||
			f.Channel != fv.Channel || f.MonoNS != fv.MonoNS || f.WallNS != fv.WallNS || !bytes.Equal(f.Payload, payload) {
			t.Errorf("%s: decodes to %+v, which differs from the file's fields", where, f)
		}
		if fv.PayloadText != nil && *fv.PayloadText != string(payload) {
			t.Errorf("%s: payload_text differs from payload_hex", where)
		}
		if fv.Resize != nil {
			if cols, rows, err := recorder.ParseResize(payload); err != nil || cols != fv.Resize.Cols || rows != fv.Resize.Rows {
				t.Errorf("%s: resize decodes to %dx%d (%v)", where, cols, rows, err)
			}
		}
		if fv.PayloadAttrs != nil {
			if a, err := recorder.ParseAttrsPayload(payload); err != nil || !sameAttrs(t, a, fv.PayloadAttrs) {
				t.Errorf("%s: attribute payload decodes to %q (%v)", where, a, err)
			}
		}
		next := sha256.Sum256(append(append([]byte(specFrameTag), prev...), enc...))
		if hex.EncodeToString(next[:]) != fv.ChainHex {
			t.Errorf("%s: chain_hex is not SHA-256(frame tag ‖ previous chain value ‖ frame encoding)", where)
		}
		if got := c.Add(&f); got != recorder.Hash(next) {
			t.Errorf("%s: Chainer gives %x, spec %x", where, got, next)
		}
		prev = next[:]
		chain = append(chain, fv.ChainHex)
	}
	return chain
}

// checkLeafVectors decodes each leaf, checks that segment and end leaves
// commit to the chain values of their sessions, and returns the leaf hashes.
func checkLeafVectors(t *testing.T, leaves []leafVector, heads map[string][]string) [][]byte {
	t.Helper()
	var hashes [][]byte
	for i, lv := range leaves {
		where := "leaf " + strconv.Itoa(i)
		if lv.Index != int64(i) {
			t.Fatalf("%s: index %d", where, lv.Index)
		}
		enc := unhex(t, where, lv.LeafEncodingHex)
		h := sha256.Sum256(append([]byte{0}, enc...))
		if hex.EncodeToString(h[:]) != lv.LeafHashHex {
			t.Errorf("%s: leaf_hash_hex is not SHA-256(0x00 ‖ leaf encoding)", where)
		}
		hashes = append(hashes, h[:])
		l, err := recorder.ParseLeaf(enc)
		if err != nil {
			t.Errorf("%s: ParseLeaf: %v", where, err)
			continue
		}
		if re, err := l.Encode(); err != nil || !bytes.Equal(re, enc) {
			t.Errorf("%s: re-encodes to %x (%v)", where, re, err)
		}
		if uint8(l.Type) != lv.Type || l.Type.String() != lv.TypeName || l.WallNS != lv.WallNS || l.Event != lv.Event {
			t.Errorf("%s: decodes to %+v, which differs from the file's fields", where, l)
		}
		if lv.SessionIDHex != "" && hex.EncodeToString(l.Session[:]) != lv.SessionIDHex {
			t.Errorf("%s: session %x, file says %s", where, l.Session, lv.SessionIDHex)
		}
		if l.Type != recorder.LeafSegment && !sameAttrs(t, l.Attrs, lv.Attrs) {
			t.Errorf("%s: attributes %q, file says %v", where, l.Attrs, lv.Attrs)
		}
		if lv.Last != nil {
			if (lv.First != nil && l.First != *lv.First) || l.Last != *lv.Last || hex.EncodeToString(l.Head[:]) != lv.HeadHex {
				t.Errorf("%s: frames %d..%d head %x differ from the file's fields", where, l.First, l.Last, l.Head)
			}
			// The head a segment or end leaf commits to is c_last of its session.
			if chain := heads[lv.SessionIDHex]; *lv.Last >= uint64(len(chain)) || chain[*lv.Last] != lv.HeadHex {
				t.Errorf("%s: head_hex is not the session's chain value after frame %d", where, *lv.Last)
			}
		}
	}
	return hashes
}

func checkTreeVectors(t *testing.T, tree []treeVector, leafHashes [][]byte) {
	t.Helper()
	if len(tree) != len(leafHashes) {
		t.Fatalf("%d tree roots for %d leaves", len(tree), len(leafHashes))
	}
	for i, tv := range tree {
		root := rfc6962Root(leafHashes[:i+1])
		if tv.Size != int64(i+1) || tv.RootHex != hex.EncodeToString(root) || tv.RootBase64 != base64.StdEncoding.EncodeToString(root) {
			t.Errorf("tree of size %d: root %s / %s, RFC 6962 gives %x", tv.Size, tv.RootHex, tv.RootBase64, root)
		}
	}
}

func checkCheckpointVectors(t *testing.T, vf *vectorFile) {
	t.Helper()
	v, err := recorder.ParseVerifierKey(vf.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name() != vf.Origin {
		t.Errorf("verifier key names %q, origin is %q", v.Name(), vf.Origin)
	}
	key := vectorsKey(t)
	if key.VerifierKey != vf.VerifierKey {
		t.Errorf("verifier_key is not the public half of signer_key")
	}
	if len(vf.Checkpoints) == 0 {
		t.Fatal("no checkpoints")
	}
	for _, cv := range vf.Checkpoints {
		c, err := recorder.OpenCheckpoint([]byte(cv.Note), v)
		if err != nil {
			t.Errorf("checkpoint at size %d: %v", cv.Size, err)
			continue
		}
		if c.Size != cv.Size || c.Size < 1 || c.Size > int64(len(vf.Tree)) ||
			hex.EncodeToString(c.Root[:]) != cv.RootHex || cv.RootHex != vf.Tree[c.Size-1].RootHex {
			t.Errorf("checkpoint at size %d: signs size %d root %x, not the tree's", cv.Size, c.Size, c.Root)
		}
		// Signatures are deterministic: re-signing gives the same bytes
		// (the log's own line comes first).
		if re, err := recorder.SignCheckpoint(c, key.Signer); err != nil || !strings.HasPrefix(cv.Note, string(re)) {
			t.Errorf("checkpoint at size %d: re-signs to %q (%v)", cv.Size, re, err)
		}
	}
}

// malformedCase is a byte string that a decoder must reject.
type malformedCase struct {
	Name     string `json:"name"`
	Decoder  string `json:"decoder"`
	InputHex string `json:"input_hex"`
	// Note is the input as text, for the checkpoint cases.
	Note string `json:"note,omitempty"`

	input []byte
	// want is a fragment of our decoder's error, so a fixture that fails
	// for another reason than the one it was made for is noticed. It is
	// not in the file: other implementations word errors their own way.
	want string
}

type malformedFile struct {
	Comment     string            `json:"comment"`
	Spec        string            `json:"spec"`
	Decoders    map[string]string `json:"decoders"`
	VerifierKey string            `json:"verifier_key"`
	Cases       []malformedCase   `json:"cases"`
}

var malformedDecoders = map[string]string{
	"frame":      "one frame encoding at the start of the input (ParseFrame); bytes after a complete frame are the next frame's",
	"leaf":       "exactly one leaf encoding (ParseLeaf)",
	"attrs":      "exactly one attribute list, as in an attribute-list frame payload (ParseAttrsPayload)",
	"resize":     "a resize frame payload (ParseResize)",
	"checkpoint": "a signed checkpoint note, checked with verifier_key (OpenCheckpoint)",
}

func malformedCases(tb testing.TB) []malformedCase {
	tb.Helper()
	var cases []malformedCase
	add := func(decoder, name, want string, input []byte) {
		cases = append(cases, malformedCase{Name: name, Decoder: decoder, input: input, want: want})
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	u64 := func(v uint64) []byte {
		return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	}

	// Frames.
	frame := recorder.AppendFrame(nil, &vectorSessions(tb)[0].frames[2])
	add("frame", "empty input", "frame header", []byte{})
	add("frame", fmt.Sprintf("frame header truncated: %d of %d bytes", frameHeaderLen-1, frameHeaderLen), "frame header", frame[:frameHeaderLen-1])
	add("frame", "payload length beyond the buffer: says 3 bytes, has 2", "truncated", frame[:len(frame)-1])
	over := bytes.Clone(frame[:frameHeaderLen])
	copy(over[frameHeaderLen-4:], []byte{0x00, 0x10, 0x00, 0x01})
	add("frame", "payload length above the 1 MiB limit (1048577)", "exceeds", over)

	// Leaves, made from valid encodings with one thing wrong.
	id := vectorSessions(tb)[0].id
	head := sha256.Sum256([]byte("head"))
	wall := u64(uint64(vectorsEpoch))
	leafHdr := func(typ byte) []byte { return cat([]byte(specLeafMagic), []byte{typ}, wall) }
	segment := func(first, last uint64) []byte { return cat(leafHdr(2), id[:], u64(first), u64(last), head[:]) }
	noAttrs := []byte{0, 0}
	wrongMagic := segment(1, 3)
	copy(wrongMagic, "bastion-journal-v2")
	add("leaf", "empty input", "not a bastion-journal-v1 leaf", []byte{})
	add("leaf", "wrong magic (v2)", "not a bastion-journal-v1 leaf", wrongMagic)
	add("leaf", "magic without the NUL", "not a bastion-journal-v1 leaf", segment(1, 3)[1:])
	add("leaf", "magic only: type and time missing", "not a bastion-journal-v1 leaf", []byte(specLeafMagic))
	add("leaf", "unknown leaf type 0", "unknown leaf type", cat(leafHdr(0), id[:], noAttrs))
	add("leaf", "unknown leaf type 5", "unknown leaf type", cat(leafHdr(5), id[:], noAttrs))
	add("leaf", "segment with a trailing byte", "trailing bytes", cat(segment(1, 3), []byte{0}))
	add("leaf", "segment with first = 0", "empty or inverted", segment(0, 3))
	add("leaf", "segment with last < first", "empty or inverted", segment(4, 3))
	add("leaf", "segment truncated: head 31 of 32 bytes", "truncated", segment(1, 3)[:len(segment(1, 3))-1])
	add("leaf", "session-start with session id truncated", "truncated", cat(leafHdr(1), id[:15]))
	add("leaf", "session-start without its attribute list", "truncated", cat(leafHdr(1), id[:]))
	add("leaf", "session-start with attribute keys out of order", "not strictly ascending", cat(leafHdr(1), id[:], rawAttrs("target", "db-1", "login", "deploy")))
	add("leaf", "session-start with a trailing byte after the attributes", "trailing bytes", cat(leafHdr(1), id[:], noAttrs, []byte{0}))
	add("leaf", "session-end without its attribute list", "truncated", cat(leafHdr(3), id[:], u64(8), head[:]))
	add("leaf", "event with an empty name", "invalid event name", cat(leafHdr(4), []byte{0, 0}, noAttrs))
	add("leaf", "event name with an uppercase letter", "invalid event name", cat(leafHdr(4), []byte{0, 11}, []byte("Cert-issued"), noAttrs))
	add("leaf", "event name length beyond the buffer", "truncated", cat(leafHdr(4), []byte{0, 40}, []byte("cert-issued"), noAttrs))

	// Attribute lists.
	add("attrs", "empty input: count missing", "count truncated", []byte{})
	add("attrs", "count says 2, one attribute present", "truncated", cat([]byte{0, 2}, rawAttrs("a", "1")[2:]))
	add("attrs", "keys out of order", "not strictly ascending", rawAttrs("status", "0", "reason", "exited"))
	add("attrs", "duplicate key", "not strictly ascending", rawAttrs("status", "0", "status", "1"))
	add("attrs", "uppercase key", "invalid key", rawAttrs("Status", "0"))
	add("attrs", "empty key", "invalid key", rawAttrs("", "0"))
	add("attrs", "key with a space", "invalid key", rawAttrs("exit status", "0"))
	add("attrs", "key with a non-ASCII letter", "invalid key", rawAttrs("clé", "0"))
	long := cat([]byte{0, 1, 0, 129}, bytes.Repeat([]byte("k"), 129), []byte{0, 0, 0, 0})
	add("attrs", "key of 129 bytes (at most 128)", "invalid key", long)
	add("attrs", "value length beyond the buffer", "truncated", rawAttrs("status", "0")[:len(rawAttrs("status", "0"))-1])
	add("attrs", "trailing byte after the list", "after attribute list", cat(rawAttrs("status", "0"), []byte{0}))
	add("attrs", "value length above the 1 MiB limit", "too long", cat([]byte{0, 1, 0, 1, 'v', 0x00, 0x10, 0x00, 0x01}))
	add("attrs", "count above the limit of 1024", "at most", []byte{0x04, 0x01})

	// Resize payloads.
	add("resize", "empty", "want 8", []byte{})
	add("resize", "7 bytes", "want 8", recorder.ResizePayload(80, 24)[:7])
	add("resize", "9 bytes", "want 8", cat(recorder.ResizePayload(80, 24), []byte{0}))

	// Checkpoints, signed by the vectors' key unless said otherwise, so
	// each is rejected for its content and not for a bad signature.
	key := vectorsKey(tb)
	impostor, err := note.NewSigner(vectorsImpostorKey)
	if err != nil {
		tb.Fatal(err)
	}
	root := sha256.Sum256([]byte("root"))
	root64 := base64.StdEncoding.EncodeToString(root[:])
	sign := func(text string, s note.Signer) []byte {
		msg, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			tb.Fatal(err)
		}
		return msg
	}
	body := func(origin, size, root string) string { return origin + "\n" + size + "\n" + root + "\n" }
	good := sign(body(vectorsOrigin, "9", root64), key.Signer)
	// The last base64 digit of a 32-byte value carries 2 unused bits.
	nonCanon := []byte(root64)
	nonCanon[len(nonCanon)-2]++
	add("checkpoint", "size with a leading zero", "canonical decimal", sign(body(vectorsOrigin, "09", root64), key.Signer))
	add("checkpoint", "size with a plus sign", "size invalid", sign(body(vectorsOrigin, "+9", root64), key.Signer))
	add("checkpoint", "negative size", "size invalid", sign(body(vectorsOrigin, "-1", root64), key.Signer))
	add("checkpoint", "size above 2^62", "out of range", sign(body(vectorsOrigin, "4611686018427387905", root64), key.Signer))
	add("checkpoint", "origin differs from the key's name", "Origin", sign(body("other.example/journal", "9", root64), key.Signer))
	add("checkpoint", "extension line after the root", "extension lines", sign(body(vectorsOrigin, "9", root64)+"extra\n", key.Signer))
	add("checkpoint", "root hash of 31 bytes", "root hash is 31 bytes", sign(body(vectorsOrigin, "9", base64.StdEncoding.EncodeToString(root[:31])), key.Signer))
	add("checkpoint", "root hash in non-canonical base64 (unused bits set)", "canonical form", sign(body(vectorsOrigin, "9", string(nonCanon)), key.Signer))
	add("checkpoint", "root hash in base64 without padding", "invalid hash", sign(body(vectorsOrigin, "9", strings.TrimRight(root64, "=")), key.Signer))
	add("checkpoint", "signed by another key with the same name", "verify signatures", sign(body(vectorsOrigin, "9", root64), impostor))
	add("checkpoint", "size changed after signing", "verify signatures", bytes.Replace(good, []byte("\n9\n"), []byte("\n8\n"), 1))
	add("checkpoint", "no signature", "verify signatures", []byte(body(vectorsOrigin, "9", root64)+"\n"))
	add("checkpoint", "CRLF line endings", "verify signatures", bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")))
	ownLine := good[bytes.LastIndex(good, []byte("\n\n"))+2:]
	add("checkpoint", "the key's signature line twice", "2 signature lines by the key", append(bytes.Clone(good), ownLine...))
	// 68 bytes of key hash and signature: the last base64 digit before
	// the padding carries 2 unused bits.
	nonCanonSig := bytes.Clone(good)
	nonCanonSig[len(nonCanonSig)-3]++
	add("checkpoint", "the key's signature in non-canonical base64 (unused bits set)", "not canonical base64", nonCanonSig)
	many := bytes.Clone(good)
	witness := recordertest.Cosign(tb, good, vectorsWitnessKey)
	for range 100 {
		many = append(many, witness[len(good):]...)
	}
	add("checkpoint", "101 signature lines (at most 100)", "verify signatures", many)

	for i := range cases {
		cases[i].InputHex = hex.EncodeToString(cases[i].input)
		if cases[i].Decoder == "checkpoint" {
			cases[i].Note = string(cases[i].input)
		}
	}
	return cases
}

// decodeMalformed runs the decoder a case names and returns its error,
// checking that it wraps the sentinel for bytes that break the format.
func decodeMalformed(t *testing.T, decoder string, input []byte, v note.Verifier) error {
	t.Helper()
	var err error
	sentinel := recorder.ErrMalformed
	switch decoder {
	case "frame":
		_, _, err = recorder.ParseFrame(input)
	case "leaf":
		_, err = recorder.ParseLeaf(input)
	case "attrs":
		_, err = recorder.ParseAttrsPayload(input)
	case "resize":
		_, _, err = recorder.ParseResize(input)
	case "checkpoint":
		_, err = recorder.OpenCheckpoint(input, v)
		sentinel = recorder.ErrCheckpoint
	default:
		t.Fatalf("unknown decoder %q", decoder)
	}
	if err != nil && !errors.Is(err, sentinel) {
		t.Errorf("error does not wrap %v: %v", sentinel, err)
	}
	return err
}

func TestMalformedVectors(t *testing.T) {
	key := vectorsKey(t)
	cases := malformedCases(t)
	checkGolden(t, malformedPath, marshalVectors(t, &malformedFile{
		Comment: "Byte strings that a journal decoder must reject, each with one thing wrong. " +
			"input_hex is the exact input; note repeats checkpoint inputs as text. See README.md in this directory.",
		Spec:        "docs/journal-format.md",
		Decoders:    malformedDecoders,
		VerifierKey: key.VerifierKey,
		Cases:       cases,
	}))
	if *update {
		return
	}
	// The cases as the file has them, so the file itself is what is tested.
	var mf malformedFile
	readJSON(t, malformedPath, &mf)
	v, err := recorder.ParseVerifierKey(mf.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(mf.Cases) != len(cases) {
		t.Fatalf("%d cases in the file, %d built", len(mf.Cases), len(cases))
	}
	for i, c := range mf.Cases {
		t.Run(c.Decoder+"/"+c.Name, func(t *testing.T) {
			if _, ok := mf.Decoders[c.Decoder]; !ok {
				t.Fatalf("decoder %q is not described in the file", c.Decoder)
			}
			err := decodeMalformed(t, c.Decoder, unhex(t, c.Name, c.InputHex), v)
			if err == nil {
				t.Fatalf("accepted %s", c.InputHex)
			}
			if !strings.Contains(err.Error(), cases[i].want) {
				t.Errorf("rejected for another reason than the case is about: %v (want %q)", err, cases[i].want)
			}
		})
	}
}

// payloadsPath holds frame payloads that pass or break the payload rules
// of section 4.2.
const payloadsPath = "../testdata/vectors/payloads.json"

type payloadCase struct {
	Name       string `json:"name"`
	Kind       uint8  `json:"kind"`
	PayloadHex string `json:"payload_hex"`
	Valid      bool   `json:"valid"`
}

type payloadsFile struct {
	Comment string        `json:"comment"`
	Spec    string        `json:"spec"`
	Cases   []payloadCase `json:"cases"`
}

func payloadCases(tb testing.TB) []payloadCase {
	tb.Helper()
	attrs := func(a recorder.Attrs) []byte { return mustAttrs(tb, a) }
	var out []payloadCase
	add := func(name string, k recorder.Kind, p []byte, valid bool) {
		out = append(out, payloadCase{Name: name, Kind: uint8(k), PayloadHex: hex.EncodeToString(p), Valid: valid})
	}
	add("input: any bytes, invalid UTF-8 included", recorder.KindInput, []byte{0xff, 0x00, 0x1b, '['}, true)
	add("output: empty", recorder.KindOutput, []byte{}, true)
	add("stderr: any bytes", recorder.KindStderr, []byte("\xfe\xff"), true)
	add("resize: 8 bytes", recorder.KindResize, recorder.ResizePayload(80, 24), true)
	add("resize: zero columns and rows", recorder.KindResize, recorder.ResizePayload(0, 0), true)
	add("resize: 7 bytes", recorder.KindResize, recorder.ResizePayload(80, 24)[:7], false)
	add("resize: 9 bytes", recorder.KindResize, append(recorder.ResizePayload(80, 24), 0), false)
	add("exec: any bytes", recorder.KindExec, []byte("psql -c 'select 1'\x00"), true)
	add("exit: status", recorder.KindExit, attrs(recorder.Attrs{"status": "0"}), true)
	add("exit: an empty list (keys are not checked)", recorder.KindExit, attrs(nil), true)
	add("exit: key Status (uppercase is not in the key alphabet)", recorder.KindExit, rawAttrs("Status", "0"), false)
	add("exit: a byte after the list", recorder.KindExit, append(attrs(recorder.Attrs{"status": "0"}), 0), false)
	add("exit: not an attribute list", recorder.KindExit, []byte("0"), false)
	add("signal: any bytes", recorder.KindSignal, []byte("KILL"), true)
	add("subsystem: attributes", recorder.KindSubsystem, attrs(recorder.Attrs{"name": "sftp", "op": "open", "path": "/etc/passwd"}), true)
	add("subsystem: keys out of order", recorder.KindSubsystem, rawAttrs("path", "/", "name", "sftp"), false)
	add("mask: attributes", recorder.KindMask, attrs(recorder.Attrs{"count": "1", "detector": "card", "positions": "10+16"}), true)
	add("mask: empty payload (no count)", recorder.KindMask, []byte{}, false)
	add("marker: UTF-8 text", recorder.KindMarker, []byte("stdin closed: sent EOF to the command — ok"), true)
	add("marker: invalid UTF-8", recorder.KindMarker, []byte("bad \xff byte"), false)
	add("pty: attributes", recorder.KindPTY, attrs(recorder.Attrs{"cols": "80", "rows": "24", "term": "xterm"}), true)
	add("env: duplicate key", recorder.KindEnv, rawAttrs("lang", "C", "lang", "C"), false)
	add("kind 0 (reserved)", recorder.Kind(0), []byte("x"), false)
	add("kind 13 (reserved)", recorder.Kind(13), []byte("x"), false)
	add("kind 255 (reserved)", recorder.Kind(255), []byte{}, false)
	return out
}

func TestPayloadVectors(t *testing.T) {
	checkGolden(t, payloadsPath, marshalVectors(t, &payloadsFile{
		Comment: "Frame payloads against the payload rules of docs/journal-format.md, section 4.2: each with its frame kind, " +
			"and whether a frame of that kind with that payload verifies. See README.md in this directory.",
		Spec:  "docs/journal-format.md",
		Cases: payloadCases(t),
	}))
	if *update {
		return
	}
	var pf payloadsFile
	readJSON(t, payloadsPath, &pf)
	for _, c := range pf.Cases {
		err := recorder.CheckPayload(recorder.Kind(c.Kind), unhex(t, c.Name, c.PayloadHex))
		if (err == nil) != c.Valid {
			t.Errorf("%s: valid %v, but CheckPayload says %v", c.Name, c.Valid, err)
		}
	}
}
