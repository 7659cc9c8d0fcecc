package certauth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bastionhq/bastion/storage"
)

// signedDir is where, under the home directory, the writer remembers the
// latest checkpoint it kept for each journal.
const signedDir = "signed"

// SignedState remembers the latest checkpoint kept for one journal in a file
// under the home directory, next to the key that signed it: a journal put
// back from an older copy, checkpoints and all, no longer extends it, and
// the writer refuses to sign over it. It implements recorder.SignedState.
//
// The file is named after the journal's absolute, symlink-free path, so a
// journal moved elsewhere starts afresh; it holds the signed note itself,
// which the writer checks with the key before trusting it.
type SignedState struct {
	path string
}

// NewSignedState returns the state for the journal at dbPath, kept in home.
func NewSignedState(home, dbPath string) (*SignedState, error) {
	abs, err := filepath.Abs(dbPath)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	sum := sha256.Sum256([]byte(abs))
	return &SignedState{path: filepath.Join(home, signedDir, hex.EncodeToString(sum[:16])+".checkpoint")}, nil
}

// NewSignedStateOf is NewSignedState for a journal that is not a file: a
// log in a database, named by id (a name that does not depend on how the
// database is reached, such as storage/postgres's Identity).
func NewSignedStateOf(home, id string) (*SignedState, error) {
	if id == "" {
		return nil, errors.New("signed state: empty journal identity")
	}
	sum := sha256.Sum256([]byte("database " + id))
	return &SignedState{path: filepath.Join(home, signedDir, hex.EncodeToString(sum[:16])+".checkpoint")}, nil
}

// Path is the file that holds the state.
func (s *SignedState) Path() string { return s.path }

// Load returns the remembered checkpoint note, or nil if there is none.
func (s *SignedState) Load() ([]byte, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", s.path)
	}
	return b, nil
}

// Save replaces the remembered checkpoint: write a temporary file, sync it,
// rename it over the old one and sync the directory, so a crash leaves
// either the old note or the new one.
func (s *SignedState) Save(note []byte) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return storage.WriteFileAtomic(s.path, note, 0o600)
}
