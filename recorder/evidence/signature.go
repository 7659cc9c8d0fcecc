package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// SignatureFile is the signed note beside a report, over its files'
// digests.
const SignatureFile = "evidence.sig"

// signatureHeader is the first line of a report's signed note. It is not
// the journal's origin, so the note can never be read as a checkpoint of
// the log the same key signs.
const signatureHeader = "bastion evidence report v1"

// ReportFiles are the report's files the signature covers, in the order
// its body lists them.
var ReportFiles = []string{"evidence.html", "evidence.json"}

// Signature is what a report's signed note says: the journal that
// recorded the report, the leaf of its evidence.generated record, and the
// SHA-256 of each of ReportFiles.
type Signature struct {
	Origin string
	Leaf   int64
	SHA256 map[string]string // file name → lower-case hex
}

// Body is the note's text (docs/evidence.md, "Custody of the report").
func (s *Signature) Body() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n%s\nleaf %d\n", signatureHeader, s.Origin, s.Leaf)
	for _, f := range ReportFiles {
		fmt.Fprintf(&b, "sha256 %s %s\n", f, s.SHA256[f])
	}
	return b.Bytes()
}

// DigestFiles returns the SHA-256 of each of ReportFiles in dir.
func DigestFiles(dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range ReportFiles {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		out[f] = hex.EncodeToString(sum[:])
	}
	return out, nil
}

// ErrSignature wraps every problem with a report's signed note.
var ErrSignature = errors.New("report signature")

// OpenSignature checks msg's signature with v (the journal's key) and
// parses its body.
func OpenSignature(msg []byte, v note.Verifier) (*Signature, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) != 3+len(ReportFiles) || lines[0] != signatureHeader {
		return nil, fmt.Errorf("%w: not a bastion evidence report note", ErrSignature)
	}
	s := &Signature{Origin: lines[1], SHA256: map[string]string{}}
	if s.Origin != v.Name() {
		return nil, fmt.Errorf("%w: the note names journal %q, the key is %q's", ErrSignature, s.Origin, v.Name())
	}
	leaf, ok := strings.CutPrefix(lines[2], "leaf ")
	if s.Leaf, err = strconv.ParseInt(leaf, 10, 64); !ok || err != nil || s.Leaf < 0 {
		return nil, fmt.Errorf("%w: malformed line %q", ErrSignature, lines[2])
	}
	for i, f := range ReportFiles {
		h, ok := strings.CutPrefix(lines[3+i], "sha256 "+f+" ")
		if raw, err := hex.DecodeString(h); !ok || err != nil || len(raw) != sha256.Size || h != strings.ToLower(h) {
			return nil, fmt.Errorf("%w: malformed line %q", ErrSignature, lines[3+i])
		}
		s.SHA256[f] = h
	}
	return s, nil
}
