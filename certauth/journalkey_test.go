package certauth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastionhq/bastion/recorder"
)

func TestCreateJournalKey(t *testing.T) {
	home := t.TempDir()
	key, err := CreateJournalKey(home, "test.example/journal")
	if err != nil {
		t.Fatal(err)
	}
	if key.Signer.Name() != "test.example/journal" {
		t.Fatalf("key name %q", key.Signer.Name())
	}
	for file, mode := range map[string]os.FileMode{JournalKeyFile: 0o600, JournalPubKeyFile: 0o644} {
		fi, err := os.Stat(filepath.Join(home, file))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", file, fi.Mode().Perm(), mode)
		}
	}
	pub, err := LoadVerifierKey(filepath.Join(home, JournalPubKeyFile))
	if err != nil || pub != key.VerifierKey {
		t.Fatalf("public key file %q, %v; want %q", pub, err, key.VerifierKey)
	}
	loaded, err := LoadJournalKey(home)
	if err != nil || loaded.VerifierKey != key.VerifierKey {
		t.Fatalf("load: %v", err)
	}

	// Never overwritten, and nothing touched when refused.
	before, _ := os.ReadFile(filepath.Join(home, JournalKeyFile))
	if _, err := CreateJournalKey(home, "other.example/journal"); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second create: %v, want ErrKeyExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(home, JournalKeyFile))
	if string(before) != string(after) {
		t.Fatal("the key file changed")
	}
}

func TestLoadJournalKeyRefuses(t *testing.T) {
	if _, err := LoadJournalKey(t.TempDir()); !errors.Is(err, ErrNoJournalKey) {
		t.Fatalf("empty home: %v, want ErrNoJournalKey", err)
	}
	home := t.TempDir()
	if _, err := CreateJournalKey(home, "test.example/journal"); err != nil {
		t.Fatal(err)
	}
	priv := filepath.Join(home, JournalKeyFile)
	if err := os.Chmod(priv, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadJournalKey(home); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("group-readable key: %v", err)
	}
	if err := os.WriteFile(priv, []byte("PRIVATE+KEY+garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadJournalKey(home); err == nil {
		t.Fatal("a malformed key loaded")
	}
}

func TestDefaultOrigin(t *testing.T) {
	a, b := DefaultOrigin("Bank-Host_01.example"), DefaultOrigin("")
	if !strings.HasPrefix(a, "bank-host01.example/bastion/") || !strings.HasPrefix(b, "localhost/bastion/") {
		t.Fatalf("origins %q, %q", a, b)
	}
	if a == DefaultOrigin("Bank-Host_01.example") {
		t.Fatal("two default origins are equal")
	}
	if _, _, err := recorder.GenerateJournalKey(a); err != nil {
		t.Fatalf("default origin %q is not a valid key name: %v", a, err)
	}
}

func TestSignedState(t *testing.T) {
	home := t.TempDir()
	db := filepath.Join(t.TempDir(), "journal.db")
	s, err := NewSignedState(home, db)
	if err != nil {
		t.Fatal(err)
	}
	if note, err := s.Load(); note != nil || err != nil {
		t.Fatalf("fresh state: %q, %v", note, err)
	}
	for _, note := range []string{"first\n", "second\n"} {
		if err := s.Save([]byte(note)); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Load(); err != nil || string(got) != note {
			t.Fatalf("load after save %q: %q, %v", note, got, err)
		}
	}
	// The same journal through a symlink has the same state.
	link := filepath.Join(t.TempDir(), "link.db")
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(db, link); err != nil {
		t.Fatal(err)
	}
	s2, err := NewSignedState(home, link)
	if err != nil || s2.Path() != s.Path() {
		t.Fatalf("state through a symlink: %q, want %q (%v)", s2.Path(), s.Path(), err)
	}
	if fi, err := os.Stat(filepath.Dir(s.Path())); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state directory: %v, %v", fi.Mode().Perm(), err)
	}
}
