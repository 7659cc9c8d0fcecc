package recorder

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a signed statement of the log's size and root hash, in the
// C2SP tlog-checkpoint format, signed as a C2SP signed note:
//
//	<origin>\n<size, decimal>\n<root hash, base64>\n
//	\n
//	— <key name> <base64 signature>\n
type Checkpoint struct {
	Origin string
	Size   int64
	Root   Hash
}

// ErrCheckpoint is wrapped by every checkpoint parsing or signature error.
var ErrCheckpoint = errors.New("invalid checkpoint")

// maxCheckpointSize bounds a checkpoint note; real ones are ~250 bytes.
const maxCheckpointSize = 16 << 10

// Body is the checkpoint text that the note signs.
func (c Checkpoint) Body() []byte {
	return log.Checkpoint{Origin: c.Origin, Size: uint64(c.Size), Hash: c.Root[:]}.Marshal()
}

// SignCheckpoint returns the signed note for c.
func SignCheckpoint(c Checkpoint, signer note.Signer) ([]byte, error) {
	if c.Origin != signer.Name() {
		return nil, fmt.Errorf("recorder: checkpoint origin %q differs from key name %q", c.Origin, signer.Name())
	}
	return note.Sign(&note.Note{Text: string(c.Body())}, signer)
}

// OpenCheckpoint verifies a signed checkpoint note with v and parses it
// strictly: the origin must equal v's name, the size must be canonical
// decimal, the root exactly 32 bytes, and no extension lines may follow.
func OpenCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	var c Checkpoint
	if len(msg) > maxCheckpointSize {
		return c, fmt.Errorf("%w: %d bytes, at most %d", ErrCheckpoint, len(msg), maxCheckpointSize)
	}
	cp, rest, _, err := log.ParseCheckpoint(msg, v.Name(), v)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	if len(rest) != 0 {
		return c, fmt.Errorf("%w: unexpected extension lines", ErrCheckpoint)
	}
	if len(cp.Hash) != HashSize {
		return c, fmt.Errorf("%w: root hash is %d bytes, want %d", ErrCheckpoint, len(cp.Hash), HashSize)
	}
	// The library accepts "007"; a canonical encoding has one spelling.
	lines := bytes.SplitN(msg, []byte("\n"), 3)
	if len(lines) < 3 || string(lines[1]) != strconv.FormatUint(cp.Size, 10) {
		return c, fmt.Errorf("%w: tree size is not canonical decimal", ErrCheckpoint)
	}
	if cp.Size > 1<<62 {
		return c, fmt.Errorf("%w: tree size %d out of range", ErrCheckpoint, cp.Size)
	}
	c.Origin, c.Size = cp.Origin, int64(cp.Size)
	copy(c.Root[:], cp.Hash)
	// The body must be the canonical text of the values it carries, so a
	// checkpoint has exactly one valid encoding.
	if n, _ := note.Open(msg, note.VerifierList(v)); n == nil || n.Text != string(c.Body()) {
		return c, fmt.Errorf("%w: body is not in canonical form", ErrCheckpoint)
	}
	if err := checkOwnSignature(msg, v); err != nil {
		return c, err
	}
	return c, nil
}

// checkOwnSignature requires exactly one signature line by the log's key,
// identified as signed notes identify keys, by name and key hash, in
// canonical base64. The signed-note library verifies the first line by a
// key and skips later ones, and accepts base64 with stray low bits: both
// would give one checkpoint several spellings, one with a line nobody
// checked. Lines by other keys (witness cosignatures, a key of the same
// name but another hash) are left alone.
func checkOwnSignature(msg []byte, v note.Verifier) error {
	lines, wellFormed := signatureLines(msg)
	if len(lines) == 0 || !wellFormed {
		return fmt.Errorf("%w: malformed signature block", ErrCheckpoint)
	}
	own := 0
	for _, l := range lines {
		if l.name != v.Name() {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(l.sig)
		if err != nil || len(raw) < 5 || binary.BigEndian.Uint32(raw) != v.KeyHash() {
			continue // another key's line, or one no key can have written
		}
		own++
		if canon, err := base64.StdEncoding.Strict().DecodeString(l.sig); err != nil || base64.StdEncoding.EncodeToString(canon) != l.sig {
			return fmt.Errorf("%w: signature is not canonical base64", ErrCheckpoint)
		}
	}
	if own != 1 {
		return fmt.Errorf("%w: %d signature lines by the key %s+%08x, want exactly one", ErrCheckpoint, own, v.Name(), v.KeyHash())
	}
	return nil
}

// sigLine is one signature line of a signed note, as written: not verified.
type sigLine struct {
	name string // the key name
	sig  string // base64(key hash ‖ signature)
}

// signatureLines splits a note's signature block ("— name base64" lines
// after the last blank line). wellFormed is false when a line has another
// shape; the lines that do parse are returned all the same.
func signatureLines(msg []byte) (lines []sigLine, wellFormed bool) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil, false
	}
	wellFormed = true
	for _, line := range strings.Split(strings.TrimSuffix(string(msg[i+2:]), "\n"), "\n") {
		rest, ok := strings.CutPrefix(line, "— ")
		name, sig, ok2 := strings.Cut(rest, " ")
		if !ok || !ok2 {
			wellFormed = false
			continue
		}
		lines = append(lines, sigLine{name: name, sig: sig})
	}
	return lines, wellFormed
}
