package storage

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LockedError says which process holds a journal for writing.
type LockedError struct {
	Path   string // the journal
	Holder string // "pid 1234 (bastion record) since 2026-11-27T05:40:00Z", or "" if unknown
}

func (e *LockedError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("journal %s is held by another writer", e.Path)
	}
	return fmt.Sprintf("journal %s is held by another writer: %s", e.Path, e.Holder)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// writerLock is an exclusive flock(2) on "<journal>.lock". The kernel drops it
// when the holder dies, so a killed writer never leaves a stale lock; the
// file's content (pid, command, time) only serves the error message.
type writerLock struct {
	f *os.File
}

func lockWriter(journal string) (*writerLock, error) {
	path := journal + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open writer lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder, _ := os.ReadFile(path)
			return nil, &LockedError{Path: journal, Holder: strings.TrimSpace(string(holder))}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	desc := fmt.Sprintf("pid %d (%s) since %s", os.Getpid(), commandName(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(desc+"\n"), 0)
	}
	return &writerLock{f: f}, nil
}

func commandName() string {
	args := os.Args
	if len(args) == 0 {
		return "unknown"
	}
	name := args[0]
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if len(args) > 1 {
		name += " " + args[1]
	}
	return name
}

func (l *writerLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing drops the flock
	l.f = nil
	return err
}
