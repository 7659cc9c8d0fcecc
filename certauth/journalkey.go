package certauth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// File names of the journal key pair inside the home directory.
const (
	JournalKeyFile    = "journal.key"
	JournalPubKeyFile = "journal.pub"
)

// ErrNoJournalKey means the home directory has no journal signing key.
var ErrNoJournalKey = errors.New("no journal signing key")

// ErrKeyExists means a key file is already there; keys are never replaced.
var ErrKeyExists = errors.New("key already exists")

// DefaultOrigin returns a log origin for a new journal key: the host name
// and a random suffix, so two bastions never share an origin by accident.
func DefaultOrigin(hostname string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	host := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return -1
	}, hostname)
	if host == "" {
		host = "localhost"
	}
	return host + "/bastion/" + hex.EncodeToString(b[:])
}

// CreateJournalKey generates the journal signing key for origin and writes
// the pair into dir. It fails with ErrKeyExists, touching nothing, if either
// file exists.
func CreateJournalKey(dir, origin string) (*recorder.JournalKey, error) {
	priv := filepath.Join(dir, JournalKeyFile)
	pub := filepath.Join(dir, JournalPubKeyFile)
	for _, p := range []string{priv, pub} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%s: %w", p, ErrKeyExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	skey, vkey, err := recorder.GenerateJournalKey(origin)
	if err != nil {
		return nil, err
	}
	if err := writeNew(priv, skey+"\n", 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(pub, vkey+"\n", 0o644); err != nil {
		os.Remove(priv)
		return nil, err
	}
	return recorder.ParseJournalKey(skey)
}

// LoadJournalKey reads the journal signing key from dir.
func LoadJournalKey(dir string) (*recorder.JournalKey, error) {
	p := filepath.Join(dir, JournalKeyFile)
	b, err := storage.ReadPrivateFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoJournalKey, dir)
	}
	if err != nil {
		return nil, err
	}
	k, err := recorder.ParseJournalKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return k, nil
}

// LoadVerifierKey reads a journal public key (signed-note verifier key)
// from a file.
func LoadVerifierKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if len(b) > 4096 {
		return "", fmt.Errorf("%s: too large for a public key", path)
	}
	return strings.Trim(string(b), " \t\r\n"), nil
}

// writeNew creates path exclusively with mode perm, writes data and syncs it.
func writeNew(path, data string, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrKeyExists)
		}
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The new name must survive a crash too.
	return storage.SyncDir(filepath.Dir(path))
}
