package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bastionhq/bastion/storage"
)

// readers is the gid of the readers' group in these tests: root may give
// a file to any group, a user only to one of theirs.
func readers(t *testing.T) int {
	t.Helper()
	if os.Getuid() == 0 {
		return 4242
	}
	gids, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gids {
		if g != os.Getgid() {
			return g
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("in CI the tests run as root")
	}
	t.Skip("needs root, or a user with a supplementary group")
	return 0
}

func modeAndGroup(t *testing.T, name string) (os.FileMode, int) {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm(), int(fi.Sys().(*syscall.Stat_t).Gid)
}

// With a readers' group, a writer gives the journal's files to it: the
// database, its WAL and the holder's description readable, the
// shared-memory file writable too, as SQLite's readers need; it accepts
// exactly that when it opens the journal again, and refuses the rest.
func TestSQLiteReaderGroup(t *testing.T) {
	gid := readers(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	open := func(group *int) (*storage.SQLite, error) {
		return storage.OpenSQLite(ctx, path, storage.Options{ReaderGroup: group})
	}
	st, err := open(&gid)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Init(ctx, map[string]string{"format": "test"}); err != nil {
		t.Fatal(err)
	}
	for suffix, want := range map[string]os.FileMode{"": 0o640, "-wal": 0o640, "-shm": 0o660, ".lock": 0o640} {
		mode, g := modeAndGroup(t, path+suffix)
		if mode != want || g != gid {
			t.Errorf("journal.db%s: mode %#o group %d, want %#o group %d", suffix, mode, g, want, gid)
		}
	}
	// A reader of the group sees the writer (sessions list names live
	// sessions by it).
	if h := storage.WriterHolder(path); !strings.Contains(h, "pid ") {
		t.Errorf("WriterHolder = %q while the writer runs", h)
	}
	st.Close()

	// Without the group, the same files are refused; with it, accepted.
	if _, err := open(nil); !errors.Is(err, storage.ErrPermissions) {
		t.Fatalf("a writer without a readers' group opened a group-readable journal: %v", err)
	}
	st, err = open(&gid)
	if err != nil {
		t.Fatalf("reopen with the group: %v", err)
	}
	st.Close()

	other := gid + 1
	for _, c := range []struct {
		name   string
		suffix string
		mode   os.FileMode
		gid    int
	}{
		{"group-writable journal", "", 0o660, gid},
		{"world-readable journal", "", 0o644, gid},
		{"another group's journal", "", 0o640, other},
		{"group-writable WAL", "-wal", 0o660, gid},
		{"world-readable shm", "-shm", 0o664, gid},
		{"another group's shm", "-shm", 0o660, other},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := path + c.suffix
			if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
				if err := os.WriteFile(file, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			mode, g := modeAndGroup(t, file)
			if err := os.Chown(file, -1, c.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, c.mode); err != nil {
				t.Fatal(err)
			}
			_, err := open(&gid)
			var pe *storage.PermissionsError
			if !errors.As(err, &pe) || pe.Path != file || pe.Mode != c.mode || pe.GID != c.gid || pe.Allowed != gid {
				t.Fatalf("open: %v, want a *PermissionsError for %s mode %#o group %d", err, file, c.mode, c.gid)
			}
			if !strings.Contains(err.Error(), "chmod 600 "+file) {
				t.Errorf("error %q does not say how to fix it", err)
			}
			os.Chown(file, -1, g)
			os.Chmod(file, mode)
		})
	}

	// A private journal is given to the group by a writer that has one.
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Chmod(path+s, 0o600)
	}
	if st, err = open(nil); err != nil {
		t.Fatalf("a private journal: %v", err)
	}
	st.Close()
	st, err = open(&gid)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if mode, g := modeAndGroup(t, path); mode != 0o640 || g != gid {
		t.Errorf("a private journal opened with a readers' group: mode %#o group %d", mode, g)
	}
}

// TestSQLiteReaderGroupDirectory: a journal shared with a readers' group
// lives in a directory only its owner may write; in one others may write,
// a file could be swapped for a symbolic link before the writer gives it
// to the group, so the writer refuses it.
func TestSQLiteReaderGroupDirectory(t *testing.T) {
	g := readers(t)
	dir := filepath.Join(t.TempDir(), "journal")
	if err := os.Mkdir(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o770); err != nil { // whatever the umask
		t.Fatal(err)
	}
	_, err := storage.OpenSQLite(context.Background(), filepath.Join(dir, "journal.db"), storage.Options{ReaderGroup: &g})
	if err == nil || !strings.Contains(err.Error(), "only its owner may write it") {
		t.Fatalf("a group-writable directory: %v", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	st, err := storage.OpenSQLite(context.Background(), filepath.Join(dir, "journal.db"), storage.Options{ReaderGroup: &g})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
}
