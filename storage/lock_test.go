package storage_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bastionhq/bastion/storage"
)

// The writer lock belongs to the file, not to the name: a second writer
// that reaches the same file by another name is refused, and takes the
// journal once the first has closed it.
func TestWriterLockFollowsTheFile(t *testing.T) {
	tests := []struct {
		name string
		link func(oldname, newname string) error
	}{
		{"symbolic link", os.Symlink},
		{"hard link", os.Link},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			path := filepath.Join(dir, "journal.db")
			first, err := storage.OpenSQLite(ctx, path, storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			other := filepath.Join(dir, "other.db")
			if err := tt.link(path, other); err != nil {
				t.Fatal(err)
			}
			second, err := storage.OpenSQLite(ctx, other, storage.Options{})
			if !errors.Is(err, storage.ErrLocked) {
				if err == nil {
					second.Close()
				}
				t.Fatalf("second writer through a %s: %v, want ErrLocked", tt.name, err)
			}
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			second, err = storage.OpenSQLite(ctx, other, storage.Options{})
			if err != nil {
				t.Fatalf("writer through a %s after the first closed: %v", tt.name, err)
			}
			second.Close()
		})
	}
}

// The holder's description lives next to the name it opened the journal
// by; one left behind by a writer that died must not be blamed for a lock
// that another writer now holds through another name.
func TestLockedErrorSkipsDeadHolder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "journal.db")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("pid %d (bastion record) since 2026-01-01T00:00:00Z\n", dead.Process.Pid)
	if err := os.WriteFile(path+".lock", []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	holder, err := storage.OpenSQLite(ctx, link, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	_, err = storage.OpenSQLite(ctx, path, storage.Options{})
	var le *storage.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second writer: %v, want a *LockedError", err)
	}
	if le.Holder != "" {
		t.Errorf("holder = %q, from a description whose process is gone", le.Holder)
	}
}

// Closing any descriptor of a file drops every POSIX lock the process holds
// on it, and in WAL mode each SQLite connection holds one on the database
// file for as long as it is open. The descriptor a writer flocks must
// therefore not be closed while another store of the process has the file
// open: not when a second writer is refused, and not when the writer closes
// before a reader.
func TestWriterLockKeepsSQLiteLocks(t *testing.T) {
	if _, err := os.Stat("/proc/locks"); err != nil {
		// In CI a missing tool fails the test rather than skipping it.
		if os.Getenv("CI") == "true" {
			t.Fatal("no /proc/locks to observe the locks")
		}
		t.Skip("no /proc/locks to observe the locks")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	w, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Init(ctx, map[string]string{"format": "test"}); err != nil {
		t.Fatal(err)
	}
	if !holdsPOSIXLock(t, path) {
		t.Fatal("the writer's connections hold no POSIX lock on the journal")
	}
	if _, err := storage.OpenSQLite(ctx, path, storage.Options{}); !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("second writer: %v, want ErrLocked", err)
	}
	if !holdsPOSIXLock(t, path) {
		t.Error("a refused second writer dropped the first writer's POSIX locks")
	}

	r, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	snap, err := r.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !holdsPOSIXLock(t, path) {
		t.Error("closing the writer dropped the reader's POSIX locks")
	}
	// The writer lock itself is gone: another writer takes the journal.
	w2, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatalf("writer after the first closed: %v", err)
	}
	w2.Close()
}

// holdsPOSIXLock reports whether this process holds a POSIX (fcntl) lock
// on the file at path, as /proc/locks lists them.
func holdsPOSIXLock(t *testing.T, path string) bool {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	f, err := os.Open("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pid := strconv.Itoa(os.Getpid())
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "1: POSIX  ADVISORY  READ 1234 fe:00:5678 1073741826 1073742335"
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "POSIX" || fields[4] != pid {
			continue
		}
		if i := strings.LastIndexByte(fields[5], ':'); i >= 0 && fields[5][i+1:] == strconv.FormatUint(ino, 10) {
			return true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return false
}
