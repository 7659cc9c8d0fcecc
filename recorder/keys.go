package recorder

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// JournalKey is the journal's signing key with its public half. The key
// name is the log's origin: every checkpoint the key signs names it.
type JournalKey struct {
	Signer      note.Signer
	Verifier    note.Verifier
	VerifierKey string // the public key in signed-note verifier-key form
}

// GenerateJournalKey returns a new Ed25519 signed-note key pair for origin,
// as the encoded private (signer) and public (verifier) keys.
func GenerateJournalKey(origin string) (skey, vkey string, err error) {
	if err := checkOrigin(origin); err != nil {
		return "", "", err
	}
	return note.GenerateKey(rand.Reader, origin)
}

func checkOrigin(origin string) error {
	if origin == "" || len(origin) > 200 || strings.ContainsAny(origin, "+ \t\n\r") {
		return fmt.Errorf("recorder: origin %q must be 1 to 200 characters without spaces or '+'", origin)
	}
	for _, r := range origin {
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("recorder: origin %q must be printable ASCII", origin)
		}
	}
	return nil
}

// ParseJournalKey parses an encoded signer key ("PRIVATE+KEY+…") and derives
// its verifier, so a journal can never be signed by one key and described
// by another.
func ParseJournalKey(skey string) (*JournalKey, error) {
	skey = strings.TrimSpace(skey)
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("recorder: journal signing key: %w", err)
	}
	// PRIVATE+KEY+<name>+<hash>+<keydata>: the name has no '+', the
	// base64 key data may.
	parts := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(parts[len(parts)-1])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, fmt.Errorf("recorder: journal signing key: not an Ed25519 signed-note key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), pub)
	if err != nil {
		return nil, err
	}
	verifier, err := ParseVerifierKey(vkey)
	if err != nil {
		return nil, err
	}
	if verifier.KeyHash() != signer.KeyHash() {
		return nil, fmt.Errorf("recorder: journal signing key: key hash does not match the key")
	}
	return &JournalKey{Signer: signer, Verifier: verifier, VerifierKey: vkey}, nil
}

// VerifierKey is a journal's public key as [ParseVerifierKey] read it: a
// signed-note verifier, and its one canonical text.
type VerifierKey struct {
	note.Verifier
	Text string // <name>+<key hash, 8 lowercase hex>+<base64(0x01 ‖ Ed25519 key)>
}

// ParseVerifierKey parses the journal's public key, a signed-note verifier
// key, strictly (docs/journal-format.md, section 8): the name is a valid
// origin; the name, the key hash and the key data are split at the first
// two '+' (base64 may hold more); the key hash is 8 lowercase hex digits
// and matches the key; the key data is canonical padded base64 of 0x01 and
// a 32-byte Ed25519 public key. Whitespace around the key is ignored.
func ParseVerifierKey(vkey string) (*VerifierKey, error) {
	vkey = strings.Trim(vkey, " \t\r\n")
	bad := func(format string, args ...any) (*VerifierKey, error) {
		return nil, fmt.Errorf("recorder: journal public key: "+format, args...)
	}
	name, rest, ok1 := strings.Cut(vkey, "+")
	hash, data, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return bad("want NAME+HASH+KEY, as in journal.pub")
	}
	if err := checkOrigin(name); err != nil {
		return bad("name %q is not a log origin", name)
	}
	if len(hash) != 8 || strings.Trim(hash, "0123456789abcdef") != "" {
		return bad("key hash %q is not 8 lowercase hex digits", hash)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(data)
	if err != nil || base64.StdEncoding.EncodeToString(raw) != data {
		return bad("key data is not canonical base64")
	}
	if len(raw) != 1+ed25519.PublicKeySize || raw[0] != 1 {
		return bad("not an Ed25519 key (algorithm 1, 32 bytes)")
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return bad("%v", err)
	}
	return &VerifierKey{Verifier: v, Text: vkey}, nil
}
