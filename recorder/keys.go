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
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	if verifier.KeyHash() != signer.KeyHash() {
		return nil, fmt.Errorf("recorder: journal signing key: key hash does not match the key")
	}
	return &JournalKey{Signer: signer, Verifier: verifier, VerifierKey: vkey}, nil
}

// ParseVerifierKey parses an encoded verifier key (the journal's public key).
func ParseVerifierKey(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("recorder: journal public key: %w", err)
	}
	return v, nil
}
