package storage_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/storagetest"
)

func sqliteBackend() storagetest.Backend {
	return storagetest.Backend{
		NewLocation: func(t *testing.T) string { return filepath.Join(t.TempDir(), "journal.db") },
		Open: func(ctx context.Context, loc string, ro bool) (storage.Store, error) {
			return storage.OpenSQLite(ctx, loc, storage.Options{ReadOnly: ro})
		},
	}
}

func TestSQLiteContract(t *testing.T) { storagetest.Run(t, sqliteBackend()) }

func TestSQLiteRefusesOtherFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database\n", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		if _, err := storage.OpenSQLite(ctx, garbage, storage.Options{ReadOnly: ro}); !errors.Is(err, storage.ErrNotJournal) {
			t.Errorf("open a text file (read-only %v): %v, want ErrNotJournal", ro, err)
		}
	}
	// Another application's SQLite database is not a journal either.
	other := filepath.Join(dir, "other.db")
	st, err := storage.OpenSQLite(ctx, other, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := storage.OpenSQLite(ctx, filepath.Join(dir, "missing.db"), storage.Options{ReadOnly: true}); err == nil {
		t.Error("read-only open of a missing file succeeded")
	}
	if _, err := storage.OpenSQLite(ctx, other, storage.Options{Synchronous: "sometimes"}); err == nil {
		t.Error("bad synchronous level accepted")
	}
}

func TestLockedErrorNamesHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	st, err := storage.OpenSQLite(context.Background(), path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = storage.OpenSQLite(context.Background(), path, storage.Options{})
	var le *storage.LockedError
	if !errors.As(err, &le) || !strings.Contains(le.Holder, "pid ") {
		t.Fatalf("second writer: %v", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error does not name the journal: %v", err)
	}
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, ro := range []bool{false, true} {
		if _, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: ro}); !errors.Is(err, storage.ErrSchemaTooNew) {
			t.Errorf("open a journal of schema 99 (read-only %v): %v, want ErrSchemaTooNew", ro, err)
		}
	}
}
