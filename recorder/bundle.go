package recorder

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/google/uuid"
	"github.com/transparency-dev/formats/proof"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/storage"
)

// BundleFormat names the session bundle format (docs/journal-format.md,
// section 12).
const BundleFormat = "bastion-session-bundle-v1"

// ErrBundle wraps every reason a bundle does not verify.
var ErrBundle = errors.New("the bundle does not verify")

// Bundle is one session, verifiable offline with the journal's public key
// alone: its frames in exactly the encoding the chain hashes, its leaves,
// each leaf's inclusion proof (a C2SP tlog-proof) and the signed checkpoint
// the proofs lead to. Its JSON encoding, as [Bundle.Marshal] writes it, is
// the only valid one: [VerifyBundle] rejects any other spelling, so that
// every byte of a bundle file is covered by the check.
type Bundle struct {
	Format     string        `json:"format"`
	Session    string        `json:"session"`
	Checkpoint string        `json:"checkpoint"`
	Leaves     []BundleLeaf  `json:"leaves"`
	Frames     []BundleFrame `json:"frames"`
}

// BundleLeaf is a leaf of the session and its inclusion proof.
type BundleLeaf struct {
	Index int64  `json:"index"`
	Leaf  string `json:"leaf"`  // base64 of the leaf encoding
	Proof string `json:"proof"` // the C2SP tlog-proof text
}

// BundleFrame is one frame encoding, base64.
type BundleFrame = string

// Marshal is the canonical encoding of b: indented JSON, keys in the order
// of the struct, HTML characters not escaped, one trailing newline.
func (b *Bundle) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ExportBundle is [ExportBundleWitnessed] without witness keys.
func ExportBundle(ctx context.Context, snap storage.Snapshot, id SessionID, v note.Verifier) (*Bundle, error) {
	return ExportBundleWitnessed(ctx, snap, id, v, Witnesses{})
}

// ExportBundleWitnessed reads session id from snap, verifies it as
// [OpenSession] and [SessionRecord.ReadFrames] do, and returns its
// bundle. A session that does not verify is not exported.
//
// The bundle's checkpoint is the published checkpoint that covers all the
// session's leaves and carries cosignatures by the most distinct witness
// keys (ties: the smallest), so that the bundle carries them; with w's
// keys, only their valid cosignatures count, and a checkpoint with a
// line by one of them that does not verify is passed over; without,
// every well-formed timestamped line by a key other than the log's
// counts. When none carries any, it is the head, as the session was read.
func ExportBundleWitnessed(ctx context.Context, snap storage.Snapshot, id SessionID, v note.Verifier, w Witnesses) (*Bundle, error) {
	r, err := OpenSession(ctx, snap, id, OpenOptions{Verifier: v})
	if err != nil {
		return nil, err
	}
	leaves := append([]ProvenLeaf{r.Start}, r.Segments...)
	if r.End != nil {
		leaves = append(leaves, *r.End)
	}
	cpNote := r.Note
	if c, msg := cosignedCheckpoint(ctx, snap, v, w, leaves[len(leaves)-1].Index+1, r.Checkpoint.Size); c != nil {
		if proven, err := proveAll(ctx, snap, *c, leaves); err == nil {
			leaves, cpNote = proven, msg
		}
	}
	b := &Bundle{Format: BundleFormat, Session: uuid.UUID(id).String(), Checkpoint: string(cpNote), Leaves: []BundleLeaf{}, Frames: []BundleFrame{}}
	for _, l := range leaves {
		p := proof.TLogProof{Index: uint64(l.Index), Checkpoint: cpNote}
		for _, h := range l.Proof {
			p.Hashes = append(p.Hashes, h)
		}
		b.Leaves = append(b.Leaves, BundleLeaf{Index: l.Index, Leaf: base64.StdEncoding.EncodeToString(l.Data), Proof: string(p.Marshal())})
	}
	var enc []byte
	err = r.ReadFrames(ctx, snap, 1, func(f *Frame) error {
		enc = AppendFrame(enc[:0], f)
		b.Frames = append(b.Frames, base64.StdEncoding.EncodeToString(enc))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// cosignedCheckpoint picks, among the published checkpoints of sizes need
// to upTo that open with v, the one with cosignatures by the most distinct
// witness keys (ties: the smallest size), or nil when none has any. Only
// a row whose lines, unverified, could beat the best so far is opened and
// checked: most rows carry no cosignature, and a journal has one row a
// second of activity.
func cosignedCheckpoint(ctx context.Context, snap storage.Snapshot, v note.Verifier, w Witnesses, need, upTo int64) (*Checkpoint, []byte) {
	rows, err := snap.Published(ctx)
	if err != nil {
		return nil, nil
	}
	var best *Checkpoint
	var bestNote []byte
	bestScore := 0
	for _, row := range rows { // in increasing size: a later row wins only with more keys
		if row.TreeSize < need || row.TreeSize > upTo {
			continue
		}
		// The most this row can score: its distinct lines by other keys.
		keys := noteSigners(row.Note)
		delete(keys, signerID(v))
		if len(keys) <= bestScore {
			continue
		}
		c, err := OpenCheckpoint(row.Note, v)
		if err != nil || c.Size != row.TreeSize {
			continue
		}
		score := len(keys)
		if len(w.Keys) > 0 {
			score = 0
			if cc := CheckCosignatures(row.Note, w); len(cc.Invalid) == 0 {
				score = len(cc.Valid)
			}
		}
		if score > bestScore {
			best, bestNote, bestScore = &c, row.Note, score
		}
	}
	return best, bestNote
}

// proveAll proves leaves again, against c.
func proveAll(ctx context.Context, snap storage.Snapshot, c Checkpoint, leaves []ProvenLeaf) ([]ProvenLeaf, error) {
	reader := storedHashes(ctx, snap)
	out := make([]ProvenLeaf, len(leaves))
	for i, l := range leaves {
		p, err := tlog.ProveRecord(c.Size, l.Index, reader)
		if err == nil {
			err = tlog.CheckRecord(p, c.Size, tlog.Hash(c.Root), l.Index, tlog.RecordHash(l.Data))
		}
		if err != nil {
			return nil, err
		}
		l.Proof = p
		out[i] = l
	}
	return out, nil
}

// BundleReport is what a verified bundle proves.
type BundleReport struct {
	Session      string `json:"session"`
	Origin       string `json:"origin"`
	TreeSize     int64  `json:"tree_size"`
	Root         string `json:"root"`
	Leaves       int    `json:"leaves"`
	Frames       uint64 `json:"frames"`
	PayloadBytes int64  `json:"payload_bytes"`
	// Ended is false for a session still being recorded when the bundle
	// was made: the bundle proves its frames so far, not that none
	// followed.
	Ended     bool   `json:"ended"`
	EndReason string `json:"end_reason,omitempty"`
	// Witnesses is the check of the checkpoint's cosignatures, when the
	// auditor gave witness keys.
	Witnesses *CosignatureCheck `json:"witnesses,omitempty"`
}

// maxBundle bounds the bundle a verifier reads into memory.
const maxBundle = 8 << 30

// ReadBundle reads a bundle file's bytes, refusing one above the size limit.
func ReadBundle(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxBundle+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxBundle {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBundle, int64(maxBundle))
	}
	return data, nil
}

// VerifyBundle checks a bundle with the journal's public key v, supplied by
// the auditor, and nothing else: the bundle's encoding is canonical; the
// checkpoint's signature verifies with v; each leaf is included in the
// checkpoint's tree by its proof; the leaves are the session's start, its
// segments in order and its end if it ended; each frame decodes, belongs to
// the session and follows the previous one; and the chain over the frames
// reaches every head the segments commit. Any failure wraps [ErrBundle].
func VerifyBundle(data []byte, v note.Verifier) (*BundleReport, error) {
	return VerifyBundleWitnessed(data, v, Witnesses{})
}

// VerifyBundleWitnessed is [VerifyBundle], and then, with w's keys, checks
// the cosignatures the bundle's checkpoint carries: a line by one of them
// that does not verify, or fewer valid ones than w's threshold, fails
// (wrapping [ErrBundle]), with the report, whose Witnesses says which.
func VerifyBundleWitnessed(data []byte, v note.Verifier, w Witnesses) (*BundleReport, error) {
	if err := w.Check(); err != nil {
		return nil, err
	}
	rep, cp, err := verifyBundle(data, v)
	if err != nil || len(w.Keys) == 0 {
		return rep, err
	}
	rep.Witnesses = CheckCosignatures(cp, w)
	if !rep.Witnesses.Met() {
		return rep, fmt.Errorf("%w: witnesses: %s", ErrBundle, rep.Witnesses.Problem())
	}
	return rep, nil
}

// verifyBundle is VerifyBundle, which also returns the checkpoint note.
func verifyBundle(data []byte, v note.Verifier) (*BundleReport, []byte, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBundle, fmt.Sprintf(format, args...))
	}
	var b Bundle
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, nil, bad("not a bundle: %v", err)
	}
	if b.Leaves == nil || b.Frames == nil {
		return nil, nil, bad("leaves and frames must be arrays (an empty one is [], never null)")
	}
	if canon, err := b.Marshal(); err != nil || !bytes.Equal(canon, data) {
		return nil, nil, bad("not in the canonical encoding (changed, or not written by bastion export)")
	}
	if b.Format != BundleFormat {
		return nil, nil, bad("format %q, want %q", b.Format, BundleFormat)
	}
	u, err := uuid.Parse(b.Session)
	if err != nil || u.String() != b.Session {
		return nil, nil, bad("session %q is not a session ID", b.Session)
	}
	id := SessionID(u)
	c, err := OpenCheckpoint([]byte(b.Checkpoint), v)
	if err != nil {
		return nil, nil, bad("checkpoint: %v", err)
	}
	rep := &BundleReport{Session: b.Session, Origin: c.Origin, TreeSize: c.Size, Root: c.Root.String(), Leaves: len(b.Leaves)}
	var segs []*Leaf
	var end *Leaf
	prevIndex := int64(-1)
	for i, bl := range b.Leaves {
		where := fmt.Sprintf("leaf %d (bundle entry %d)", bl.Index, i)
		data, err := strictBase64(bl.Leaf)
		if err != nil {
			return nil, nil, bad("%s: %v", where, err)
		}
		if bl.Index <= prevIndex || bl.Index >= c.Size {
			return nil, nil, bad("%s: index out of order or outside the checkpoint's %d leaves", where, c.Size)
		}
		prevIndex = bl.Index
		var p proof.TLogProof
		if err := p.Unmarshal([]byte(bl.Proof)); err != nil {
			return nil, nil, bad("%s: proof: %v", where, err)
		}
		if !bytes.Equal(p.Marshal(), []byte(bl.Proof)) || p.ExtraData != nil {
			return nil, nil, bad("%s: proof is not a canonical tlog-proof without extra data", where)
		}
		if p.Index != uint64(bl.Index) {
			return nil, nil, bad("%s: proof is for index %d", where, p.Index)
		}
		if string(p.Checkpoint) != b.Checkpoint {
			return nil, nil, bad("%s: proof is against another checkpoint than the bundle's", where)
		}
		rp := make(tlog.RecordProof, len(p.Hashes))
		for k, h := range p.Hashes {
			rp[k] = h
		}
		if err := tlog.CheckRecord(rp, c.Size, tlog.Hash(c.Root), bl.Index, tlog.RecordHash(data)); err != nil {
			return nil, nil, bad("%s: not included in the checkpoint's tree: %v", where, err)
		}
		l, err := ParseLeaf(data)
		if err != nil {
			return nil, nil, bad("%s: %v", where, err)
		}
		if l.Type == LeafEvent || l.Session != id {
			return nil, nil, bad("%s: a %s leaf not of session %s", where, l.Type, b.Session)
		}
		var last uint64
		if n := len(segs); n > 0 {
			last = segs[n-1].Last
		}
		switch {
		case i == 0 && l.Type != LeafSessionStart:
			return nil, nil, bad("%s: the first leaf must start the session, not be a %s leaf", where, l.Type)
		case i > 0 && l.Type == LeafSessionStart:
			return nil, nil, bad("%s: starts the session a second time", where)
		case end != nil:
			return nil, nil, bad("%s: comes after the session's end", where)
		case l.Type == LeafSegment:
			if l.First != last+1 {
				return nil, nil, bad("%s: commits frames %d..%d after frame %d", where, l.First, l.Last, last)
			}
			segs = append(segs, l)
		case l.Type == LeafSessionEnd:
			head := ChainSeed(id)
			if n := len(segs); n > 0 {
				head = segs[n-1].Head
			}
			if l.Last != last || l.Head != head {
				return nil, nil, bad("%s: the end does not match the last segment", where)
			}
			end = l
		}
	}
	if len(b.Leaves) == 0 {
		return nil, nil, bad("no leaves")
	}
	chain := NewChainer(ChainSeed(id))
	k := 0
	var rules frameRules
	for i, s := range b.Frames {
		seq := uint64(i) + 1
		where := fmt.Sprintf("frame %d", seq)
		enc, err := strictBase64(s)
		if err != nil {
			return nil, nil, bad("%s: %v", where, err)
		}
		f, rest, err := ParseFrame(enc)
		if err != nil {
			return nil, nil, bad("%s: %v", where, err)
		}
		if len(rest) != 0 {
			return nil, nil, bad("%s: %d bytes after the frame", where, len(rest))
		}
		if f.Session != id || f.Seq != seq {
			return nil, nil, bad("%s: holds frame %d of session %s", where, f.Seq, uuid.UUID(f.Session))
		}
		if k >= len(segs) {
			return nil, nil, bad("%s: no segment leaf commits it", where)
		}
		if err := rules.next(f.Kind, f.MonoNS, f.Payload); err != nil {
			return nil, nil, bad("%s: %v", where, err)
		}
		h := chain.Add(&f)
		rep.Frames++
		rep.PayloadBytes += int64(len(f.Payload))
		if seq == segs[k].Last {
			if h != segs[k].Head {
				return nil, nil, bad("frames %d..%d: the chain does not reach the head their segment leaf commits (a frame was changed, added, removed or reordered)", segs[k].First, segs[k].Last)
			}
			k++
		}
	}
	if k < len(segs) {
		return nil, nil, bad("frames %d..%d are committed by the leaves but missing", rep.Frames+1, segs[len(segs)-1].Last)
	}
	if end != nil {
		if what := rules.counts.check(end.Attrs); what != "" {
			return nil, nil, bad("the end leaf: %s", what)
		}
		rep.Ended, rep.EndReason = true, end.Attrs["reason"]
	}
	return rep, []byte(b.Checkpoint), nil
}

// strictBase64 decodes standard padded base64 that has exactly one spelling.
func strictBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("not canonical base64")
	}
	return b, nil
}
