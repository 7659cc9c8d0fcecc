package recorder

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// EvidenceNoteHeader is the first line of the text of an evidence note.
// It is not a log origin, so that no checkpoint parser reads the note as
// a checkpoint of the log.
const EvidenceNoteHeader = "bastion evidence report v1"

// An EvidenceNote is what the journal's key signs about an examiner's
// report: the journal's origin, the index of the report's
// evidence.generated leaf, and the SHA-256 of the report's files.
type EvidenceNote struct {
	Origin string
	Leaf   int64
	// SHA256HTML and SHA256JSON are the lowercase hex SHA-256 of
	// evidence.html and evidence.json.
	SHA256HTML, SHA256JSON string
}

// Text is the note's text, signed as a C2SP signed note:
//
//	bastion evidence report v1
//	<origin>
//	leaf <index>
//	sha256 evidence.html <hex>
//	sha256 evidence.json <hex>
func (n *EvidenceNote) Text() string {
	return fmt.Sprintf("%s\n%s\nleaf %d\nsha256 evidence.html %s\nsha256 evidence.json %s\n",
		EvidenceNoteHeader, n.Origin, n.Leaf, n.SHA256HTML, n.SHA256JSON)
}

func (n *EvidenceNote) check() error {
	if err := checkOrigin(n.Origin); err != nil {
		return err
	}
	if n.Leaf < 0 {
		return fmt.Errorf("recorder: evidence note: leaf %d", n.Leaf)
	}
	for _, h := range []string{n.SHA256HTML, n.SHA256JSON} {
		if !IsSHA256Hex(h) {
			return fmt.Errorf("recorder: evidence note: %q is not a SHA-256 in lowercase hex", h)
		}
	}
	return nil
}

// IsSHA256Hex reports whether s is a SHA-256 in lowercase hex (64 digits).
func IsSHA256Hex(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

// SignEvidenceNote signs n with the journal's key, whose name must be n's
// origin, and returns the signed note.
func SignEvidenceNote(key *JournalKey, n *EvidenceNote) ([]byte, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	if key.Signer.Name() != n.Origin {
		return nil, fmt.Errorf("recorder: evidence note of log %q cannot be signed with the key of %q", n.Origin, key.Signer.Name())
	}
	return note.Sign(&note.Note{Text: n.Text()}, key.Signer)
}

// SignEvidenceLeaf signs the note over evidence.generated leaf idx of the
// log key signs, whose attrs give the report's digests (sha256.html,
// sha256.json): what every writer that records a report hands back.
func SignEvidenceLeaf(key *JournalKey, idx int64, attrs Attrs) ([]byte, error) {
	msg, err := SignEvidenceNote(key, &EvidenceNote{Origin: key.Signer.Name(), Leaf: idx, SHA256HTML: attrs["sha256.html"], SHA256JSON: attrs["sha256.json"]})
	if err != nil {
		return nil, fmt.Errorf("evidence.generated is leaf %d, but its note could not be signed: %w", idx, err)
	}
	return msg, nil
}

// OpenEvidenceNote checks a signed evidence note with the journal's key
// and returns what it says. The text must be exactly what [EvidenceNote]
// Text gives, and the origin the key's name.
func OpenEvidenceNote(msg []byte, v note.Verifier) (*EvidenceNote, error) {
	nn, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("recorder: evidence note: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(nn.Text, "\n"), "\n")
	bad := errors.New("recorder: evidence note: not a bastion evidence note")
	if len(lines) != 5 || lines[0] != EvidenceNoteHeader {
		return nil, bad
	}
	n := &EvidenceNote{Origin: lines[1]}
	idx, ok := strings.CutPrefix(lines[2], "leaf ")
	if n.Leaf, err = strconv.ParseInt(idx, 10, 64); !ok || err != nil {
		return nil, bad
	}
	n.SHA256HTML, _ = strings.CutPrefix(lines[3], "sha256 evidence.html ")
	n.SHA256JSON, _ = strings.CutPrefix(lines[4], "sha256 evidence.json ")
	if n.check() != nil || n.Text() != nn.Text || n.Origin != v.Name() {
		return nil, bad
	}
	return n, nil
}
