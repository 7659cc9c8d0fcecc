// Package witness speaks the C2SP tlog-witness protocol on both sides: the
// client serve uses to push the journal's kept checkpoints to witnesses
// and collect their cosignatures, and bastion's own witness. It also
// parses and verifies C2SP tlog-cosignature lines, for verify, evidence
// and bundles.
//
// Specifications: https://c2sp.org/tlog-witness, https://c2sp.org/tlog-cosignature,
// https://c2sp.org/signed-note. docs/witnesses.md says what a witness
// proves and what it does not.
package witness

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Limits of the protocol's messages.
const (
	// MaxProofLines is the most consistency proof lines a request may
	// carry (the specification's bound: a proof in a tree of 2^63 leaves).
	MaxProofLines = 63
	// MaxRequestBytes bounds an add-checkpoint request body: the old
	// size line, 63 proof lines and a checkpoint of at most 16 KiB.
	MaxRequestBytes = 24 << 10
	// MaxResponseBytes bounds a witness's answer (a few signature lines;
	// an ML-DSA-44 cosignature line is about 3.3 KB).
	MaxResponseBytes = 32 << 10
	// maxSignatureLines bounds the lines read from a response.
	maxSignatureLines = 16
)

// Key algorithms of a witness's cosignature key (the vkey's type byte).
const (
	AlgEd25519 = "ed25519"   // type 0x04: Ed25519 cosignature/v1
	AlgMLDSA44 = "ml-dsa-44" // type 0x06: ML-DSA-44 cosignature/v1
)

// ErrProtocol wraps every message that breaks the protocol's rules.
var ErrProtocol = errors.New("witness protocol")

// AddCheckpoint is the body of an add-checkpoint request: the size of the
// checkpoint the witness last cosigned for the log (as the client
// believes), an RFC 6962 consistency proof from that size to the new
// checkpoint, and the new checkpoint (a signed note).
type AddCheckpoint struct {
	Old        int64
	Proof      []tlog.Hash
	Checkpoint []byte
}

// Marshal is the request body.
func (r *AddCheckpoint) Marshal() []byte {
	var b bytes.Buffer
	b.Grow(16 + 45*len(r.Proof) + 1 + len(r.Checkpoint))
	fmt.Fprintf(&b, "old %d\n", r.Old)
	for _, h := range r.Proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(r.Checkpoint)
	return b.Bytes()
}

// ParseAddCheckpoint parses a request body strictly: "old N" in canonical
// decimal, at most 63 proof lines of canonical base64 of 32 bytes, an
// empty line, then the checkpoint (not checked here beyond being there).
// Every line ends in LF.
func ParseAddCheckpoint(body []byte) (*AddCheckpoint, error) {
	if len(body) > MaxRequestBytes {
		return nil, fmt.Errorf("%w: request of %d bytes, at most %d", ErrProtocol, len(body), MaxRequestBytes)
	}
	head, cp, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("%w: no empty line before the checkpoint", ErrProtocol)
	}
	if len(cp) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint after the empty line", ErrProtocol)
	}
	lines := strings.Split(string(head), "\n")
	old, ok := strings.CutPrefix(lines[0], "old ")
	if !ok {
		return nil, fmt.Errorf("%w: the first line is not \"old SIZE\"", ErrProtocol)
	}
	n, err := ParseSize(old)
	if err != nil {
		return nil, fmt.Errorf("%w: old size: %v", ErrProtocol, err)
	}
	if len(lines)-1 > MaxProofLines {
		return nil, fmt.Errorf("%w: %d consistency proof lines, at most %d", ErrProtocol, len(lines)-1, MaxProofLines)
	}
	r := &AddCheckpoint{Old: n, Checkpoint: cp}
	for i, l := range lines[1:] {
		h, err := parseHash(l)
		if err != nil {
			return nil, fmt.Errorf("%w: proof line %d: %v", ErrProtocol, i+1, err)
		}
		r.Proof = append(r.Proof, h)
	}
	return r, nil
}

// ParseSize parses a tree size: ASCII decimal without sign or leading
// zeros ("0" alone for zero), at most 2^63-1.
func ParseSize(s string) (int64, error) {
	if s == "" || len(s) > 19 || (s[0] == '0' && len(s) > 1) {
		return 0, fmt.Errorf("%q is not a tree size in canonical decimal", s)
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a tree size in canonical decimal", s)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a tree size: %v", s, err)
	}
	return n, nil
}

// ParseConflict parses the body of a 409 answer: the size of the latest
// checkpoint the witness cosigned, and a newline.
func ParseConflict(body []byte) (int64, error) {
	s, ok := strings.CutSuffix(string(body), "\n")
	if !ok {
		return 0, fmt.Errorf("%w: a conflict answer is a size and a newline", ErrProtocol)
	}
	n, err := ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("%w: conflict answer: %v", ErrProtocol, err)
	}
	return n, nil
}

// parseHash parses a proof line: canonical standard base64 of 32 bytes.
func parseHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != len(h) || base64.StdEncoding.EncodeToString(raw) != s {
		return h, fmt.Errorf("not canonical base64 of a 32-byte hash")
	}
	copy(h[:], raw)
	return h, nil
}

// SigLine is one signature line of a signed note, as written ("— name
// base64"), not verified.
type SigLine struct {
	Name string
	// Hash is the key hash: the first four bytes of Sig.
	Hash uint32
	// Sig is the decoded signature, key hash included.
	Sig []byte
}

// String is the line, with its newline.
func (l SigLine) String() string {
	return "— " + l.Name + " " + base64.StdEncoding.EncodeToString(l.Sig) + "\n"
}

// parseSigLine parses one line without its newline.
func parseSigLine(line string) (SigLine, error) {
	rest, ok := strings.CutPrefix(line, "— ")
	if !ok {
		return SigLine{}, errors.New("does not start with \"— \"")
	}
	name, b64, ok := strings.Cut(rest, " ")
	if !ok || !validName(name) {
		return SigLine{}, errors.New("no valid key name")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(raw) < 5 || base64.StdEncoding.EncodeToString(raw) != b64 {
		return SigLine{}, errors.New("the signature is not canonical base64 of at least 5 bytes")
	}
	return SigLine{Name: name, Hash: binary.BigEndian.Uint32(raw), Sig: raw}, nil
}

// validName is a signed note key name: not empty, valid UTF-8, no Unicode
// white space, no "+".
func validName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// ParseSignatureLines parses a witness's answer to add-checkpoint: one or
// more signature lines, each ending in LF, and nothing else.
func ParseSignatureLines(body []byte) ([]SigLine, error) {
	if len(body) > MaxResponseBytes {
		return nil, fmt.Errorf("%w: answer of %d bytes, at most %d", ErrProtocol, len(body), MaxResponseBytes)
	}
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: answer is not UTF-8", ErrProtocol)
	}
	s, ok := strings.CutSuffix(string(body), "\n")
	if !ok || s == "" {
		return nil, fmt.Errorf("%w: an answer is signature lines, each ending in a newline", ErrProtocol)
	}
	parts := strings.Split(s, "\n")
	if len(parts) > maxSignatureLines {
		return nil, fmt.Errorf("%w: %d signature lines, at most %d", ErrProtocol, len(parts), maxSignatureLines)
	}
	out := make([]SigLine, 0, len(parts))
	for i, p := range parts {
		l, err := parseSigLine(p)
		if err != nil {
			return nil, fmt.Errorf("%w: signature line %d: %v", ErrProtocol, i+1, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// NoteSignatures splits a signed note into its text (up to and including
// the LF before the blank line) and its signature lines. Lines that do not
// parse are skipped, and reported by ok = false.
func NoteSignatures(msg []byte) (text []byte, lines []SigLine, ok bool) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 || !bytes.HasSuffix(msg, []byte("\n")) {
		return nil, nil, false
	}
	text, ok = msg[:i+1], true
	for _, p := range strings.Split(strings.TrimSuffix(string(msg[i+2:]), "\n"), "\n") {
		l, err := parseSigLine(p)
		if err != nil {
			ok = false
			continue
		}
		lines = append(lines, l)
	}
	return text, lines, ok
}

// Key is a witness's cosignature verifier key: a signed-note verifier key
// (vkey) of type 0x04 (Ed25519 cosignature/v1) or 0x06 (ML-DSA-44), whose
// key hash is checked against its name and key.
type Key struct {
	// VKey is the key as given, Name its name, Hash its key hash, Alg
	// AlgEd25519 or AlgMLDSA44.
	VKey string
	Name string
	Hash uint32
	Alg  string
	v    note.Verifier
}

// ParseKey parses a witness's verifier key, NAME+HASH+BASE64. A log's
// Ed25519 key (type 0x01) is refused: a witness cosigns with a
// cosignature key, type 0x04 or 0x06.
func ParseKey(vkey string) (*Key, error) {
	vkey = strings.TrimSpace(vkey)
	name, h, raw, err := splitVKey("witness key", vkey)
	if err != nil {
		return nil, err
	}
	k := &Key{VKey: vkey, Name: name, Hash: h}
	switch raw[0] {
	case 0x04:
		k.Alg = AlgEd25519
	case 0x06:
		k.Alg = AlgMLDSA44
	case 0x01:
		return nil, fmt.Errorf("witness key %q is a log's signing key (type 0x01), not a witness's cosignature key (type 0x04 or 0x06)", vkey)
	default:
		return nil, fmt.Errorf("witness key %q has type 0x%02x: bastion knows Ed25519 (0x04) and ML-DSA-44 (0x06) cosignature keys", vkey, raw[0])
	}
	if want := keyHash(name, raw); want != k.Hash {
		return nil, fmt.Errorf("witness key %q: the key hash is %08x, but the name and key give %08x", vkey, k.Hash, want)
	}
	if k.v, err = fnote.NewVerifierForCosignatureV1(vkey); err != nil {
		return nil, fmt.Errorf("witness key %q: %v", vkey, err)
	}
	if k.v.KeyHash() != k.Hash {
		return nil, fmt.Errorf("witness key %q: the key hash does not match", vkey)
	}
	return k, nil
}

// splitVKey splits a signed-note verifier key, NAME+HASH+KEY, strictly: a
// valid name, 8 lowercase hex digits of key hash, and canonical standard
// base64 of at least one byte (the key's type, then the key). what names
// the key in errors. The hash is not checked against the key here.
func splitVKey(what, vkey string) (name string, hash uint32, typedKey []byte, err error) {
	name, rest, ok1 := strings.Cut(vkey, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || !validName(name) || len(hash16) != 8 {
		return "", 0, nil, fmt.Errorf("%s %q is not NAME+HASH+KEY", what, vkey)
	}
	h, err := strconv.ParseUint(hash16, 16, 32)
	if err != nil || strings.ToLower(hash16) != hash16 {
		return "", 0, nil, fmt.Errorf("%s %q: the key hash is not 8 lowercase hex digits", what, vkey)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(key64)
	if err != nil || len(raw) == 0 || base64.StdEncoding.EncodeToString(raw) != key64 {
		return "", 0, nil, fmt.Errorf("%s %q: the key is not canonical base64", what, vkey)
	}
	return name, uint32(h), raw, nil
}

// String is the verifier key.
func (k *Key) String() string { return k.VKey }

// Verifier is k as a signed-note verifier (of cosignatures).
func (k *Key) Verifier() note.Verifier { return k.v }

// Owns reports whether a signature line claims to be by k (name and key
// hash), whether or not it verifies.
func (k *Key) Owns(l SigLine) bool { return l.Name == k.Name && l.Hash == k.Hash }

// Cosignature is a cosignature by a witness key that verified.
type Cosignature struct {
	Key  *Key
	Time time.Time // the witness's timestamp, whole seconds
	Line SigLine
}

// ErrCosignature wraps why a line by a witness key does not verify.
var ErrCosignature = errors.New("invalid cosignature")

// Verify checks a signature line claimed by k on a checkpoint whose
// signed text is text: the signature must verify, and its timestamp must
// be above zero and below 2^63.
func (k *Key) Verify(text []byte, l SigLine) (Cosignature, error) {
	if !k.Owns(l) {
		return Cosignature{}, fmt.Errorf("%w: the line is not by %s+%08x", ErrCosignature, k.Name, k.Hash)
	}
	if len(l.Sig) < 4+8 {
		return Cosignature{}, fmt.Errorf("%w: %d bytes, too short for a timestamped signature", ErrCosignature, len(l.Sig))
	}
	ts := binary.BigEndian.Uint64(l.Sig[4:])
	if ts == 0 || ts >= 1<<63 {
		return Cosignature{}, fmt.Errorf("%w: timestamp %d is out of range", ErrCosignature, ts)
	}
	// An ML-DSA-44 cosignature signs the values, not the text: only
	// their one canonical spelling may carry it.
	if _, _, err := parseCheckpointText(text); err != nil {
		return Cosignature{}, fmt.Errorf("%w: the checkpoint is not in canonical form: %v", ErrCosignature, err)
	}
	if !k.v.Verify(text, l.Sig[4:]) {
		return Cosignature{}, fmt.Errorf("%w: the signature by %s does not verify", ErrCosignature, k.Name)
	}
	return Cosignature{Key: k, Time: time.Unix(int64(ts), 0).UTC(), Line: l}, nil
}

// Cosignatures checks a checkpoint note's signature lines against keys:
// the cosignatures that verify, at most one per key (the first), and an
// error for each line claimed by one of keys that does not verify (a
// forged or damaged cosignature). Lines by other keys are ignored.
func Cosignatures(msg []byte, keys []*Key) (valid []Cosignature, bad []error) {
	text, lines, _ := NoteSignatures(msg)
	if text == nil {
		return nil, nil
	}
	seen := map[*Key]bool{}
	for _, l := range lines {
		for _, k := range keys {
			if !k.Owns(l) {
				continue
			}
			c, err := k.Verify(text, l)
			switch {
			case err != nil:
				bad = append(bad, err)
			case !seen[k]:
				seen[k] = true
				valid = append(valid, c)
			}
		}
	}
	return valid, bad
}

// keyHash is the signed-note key hash of a name and its typed key:
// the first four bytes of SHA-256(name ‖ "\n" ‖ key), big-endian.
func keyHash(name string, typedKey []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write(typedKey)
	return binary.BigEndian.Uint32(h.Sum(nil))
}
