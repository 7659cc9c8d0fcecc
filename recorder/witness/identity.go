package witness

// A witness's own key, and the keys of the logs it witnesses.

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bastionhq/bastion/storage"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Files of a witness's home directory.
const (
	// KeyFile holds the witness's signer key (mode 0600): a signed-note
	// private key, "PRIVATE+KEY+NAME+HASH+BASE64", of type 0x04 (Ed25519
	// cosignature/v1) or 0x06 (ML-DSA-44).
	KeyFile = "witness.key"
	// PubFile holds the witness's verifier key, one line: what logs and
	// auditors configure to check its cosignatures.
	PubFile = "witness.pub"
	// StateFile is the witness's SQLite state: see [State].
	StateFile = "witness.db"
)

// maxNameBytes bounds a witness name and a log origin: the ML-DSA-44
// cosigned message stores each in a byte-length-prefixed field.
const maxNameBytes = 255

// ErrNoIdentity is returned by [LoadIdentity] when the directory holds no
// witness key yet.
var ErrNoIdentity = errors.New("no witness key")

// Identity is a witness's own key pair.
type Identity struct {
	// Signer makes cosignature/v1 signatures (timestamped).
	Signer note.Signer
	// Key is the verifier key, as written in PubFile.
	Key *Key
}

// Name is the witness's name: the key name of its cosignature lines.
func (id *Identity) Name() string { return id.Key.Name }

// CheckWitnessName reports whether name can name a witness: a signed-note
// key name of printable ASCII without "+", at most 255 bytes, such as
// "witness.example.org/w1".
func CheckWitnessName(name string) error {
	if name == "" || len(name) > maxNameBytes {
		return fmt.Errorf("witness name %q must be 1 to %d characters", name, maxNameBytes)
	}
	for _, c := range []byte(name) {
		if c < 0x21 || c > 0x7e || c == '+' {
			return fmt.Errorf("witness name %q must be printable ASCII without spaces or '+', like witness.example.org/w1", name)
		}
	}
	return nil
}

// CreateIdentity makes a new key pair for a witness named name, of
// algorithm alg (AlgMLDSA44 or AlgEd25519), and writes it into dir:
// KeyFile with mode 0600, then PubFile. It refuses to overwrite either.
func CreateIdentity(dir, name, alg string) (*Identity, error) {
	if err := CheckWitnessName(name); err != nil {
		return nil, err
	}
	var skey, vkey string
	switch alg {
	case AlgMLDSA44:
		var err error
		if skey, vkey, err = fnote.GenerateMLDSAKey(name); err != nil {
			return nil, fmt.Errorf("generate ML-DSA-44 key: %w", err)
		}
	case AlgEd25519:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate Ed25519 key: %w", err)
		}
		// Type 0x04 in both halves, so that the file cannot be mistaken
		// for (or used as) a log's Ed25519 signing key, type 0x01.
		typedPub := append([]byte{0x04}, pub...)
		h := keyHash(name, typedPub)
		skey = fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, h, base64.StdEncoding.EncodeToString(append([]byte{0x04}, priv.Seed()...)))
		vkey = fmt.Sprintf("%s+%08x+%s", name, h, base64.StdEncoding.EncodeToString(typedPub))
	default:
		return nil, fmt.Errorf("key type %q: want %s or %s", alg, AlgMLDSA44, AlgEd25519)
	}
	id, err := newIdentity(skey, vkey)
	if err != nil {
		return nil, err
	}
	keyPath, pubPath := filepath.Join(dir, KeyFile), filepath.Join(dir, PubFile)
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s already exists: a witness key is never replaced", p)
		}
	}
	if err := storage.WriteFileAtomic(keyPath, []byte(skey+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := storage.WriteFileAtomic(pubPath, []byte(vkey+"\n"), 0o644); err != nil {
		return nil, err
	}
	return id, nil
}

// LoadIdentity reads the key pair in dir. It returns an error wrapping
// ErrNoIdentity when neither file exists; it refuses a key file that
// group or others may read, and a pair whose halves differ.
func LoadIdentity(dir string) (*Identity, error) {
	keyPath, pubPath := filepath.Join(dir, KeyFile), filepath.Join(dir, PubFile)
	fi, kerr := os.Stat(keyPath)
	_, perr := os.Stat(pubPath)
	switch {
	case errors.Is(kerr, fs.ErrNotExist) && errors.Is(perr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w in %s", ErrNoIdentity, dir)
	case kerr != nil:
		return nil, fmt.Errorf("witness key: %w", kerr)
	case perr != nil:
		return nil, fmt.Errorf("witness public key: %w", perr)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("witness key %s has mode %04o: group and others must have no access (chmod 600)", keyPath, fi.Mode().Perm())
	}
	skey, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("witness key: %w", err)
	}
	vkey, err := os.ReadFile(pubPath)
	if err != nil {
		return nil, fmt.Errorf("witness public key: %w", err)
	}
	id, err := newIdentity(strings.TrimSpace(string(skey)), strings.TrimSpace(string(vkey)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return id, nil
}

// newIdentity pairs a signer key with its verifier key and checks that
// they are halves of one key: a cosignature by the signer verifies with
// the verifier key.
func newIdentity(skey, vkey string) (*Identity, error) {
	k, err := ParseKey(vkey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PubFile, err)
	}
	if !strings.HasPrefix(skey, "PRIVATE+KEY+"+k.Name+"+") {
		return nil, fmt.Errorf("%s is not a signer key named %q, as %s says", KeyFile, k.Name, PubFile)
	}
	// PRIVATE+KEY+NAME+HASH+KEY: the name has no "+", the base64 may.
	parts := strings.SplitN(skey, "+", 5)
	if raw, err := base64.StdEncoding.DecodeString(parts[len(parts)-1]); len(parts) != 5 || err != nil || len(raw) == 0 || (raw[0] != 0x04 && raw[0] != 0x06) {
		return nil, fmt.Errorf("%s is not a cosignature key (type 0x04 or 0x06)", KeyFile)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", KeyFile, err)
	}
	if s.Name() != k.Name || s.KeyHash() != k.Hash {
		return nil, fmt.Errorf("%s and %s are not one key pair", KeyFile, PubFile)
	}
	// A key hash is four bytes: sign once to be sure.
	probe := []byte("witness.invalid/probe\n1\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n")
	msg, err := note.Sign(&note.Note{Text: string(probe)}, s)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot sign: %v", KeyFile, err)
	}
	if _, err := note.Open(msg, note.VerifierList(k.Verifier())); err != nil {
		return nil, fmt.Errorf("%s and %s are not one key pair", KeyFile, PubFile)
	}
	return &Identity{Signer: s, Key: k}, nil
}

// LogKey is the verifier key of a log the witness cosigns for: a
// signed-note Ed25519 key (type 0x01) whose name is the log's origin.
type LogKey struct {
	VKey     string
	Origin   string
	Verifier note.Verifier
}

// ParseLogKey parses a log's verifier key, NAME+HASH+BASE64, such as the
// journal's journal.pub, strictly: a valid name of at most 255 bytes, 8
// lowercase hex digits of key hash matching the key, canonical base64 of
// 0x01 and a 32-byte Ed25519 public key. Surrounding white space is
// ignored.
func ParseLogKey(vkey string) (*LogKey, error) {
	vkey = strings.TrimSpace(vkey)
	name, _, raw, err := splitVKey("log key", vkey)
	if err != nil {
		return nil, err
	}
	if len(name) > maxNameBytes {
		return nil, fmt.Errorf("log key %q: the name is longer than %d bytes", vkey, maxNameBytes)
	}
	switch {
	case raw[0] == 0x04 || raw[0] == 0x06:
		return nil, fmt.Errorf("log key %q is a witness's cosignature key, not a log's signing key (type 0x01)", vkey)
	case len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x01:
		return nil, fmt.Errorf("log key %q is not an Ed25519 signed-note key (type 0x01, 32 bytes)", vkey)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("log key %q: %v", vkey, err)
	}
	return &LogKey{VKey: vkey, Origin: name, Verifier: v}, nil
}
