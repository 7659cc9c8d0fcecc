package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// PermissionsError says a journal file lets users other than its owner in.
// A journal holds every keystroke of every session, passwords typed with
// echo off included, so a writer refuses to add to one that others can read.
type PermissionsError struct {
	Path string      // the file: the journal, or its -wal or -shm file
	Mode fs.FileMode // its permission bits
}

func (e *PermissionsError) Error() string {
	return fmt.Sprintf("journal file %s has mode %#o: users other than its owner can read what it records; run chmod 600 %s",
		e.Path, uint32(e.Mode.Perm()), e.Path)
}

func (e *PermissionsError) Unwrap() error { return ErrPermissions }

// journalMode is the mode of the journal files a writer creates. SQLite
// gives the -wal and -shm files the mode of the database file.
const journalMode = 0o600

// checkPrivate refuses a journal file whose mode grants its group or others
// any access.
func checkPrivate(path string, fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o077 != 0 {
		return &PermissionsError{Path: path, Mode: fi.Mode().Perm()}
	}
	return nil
}

// writerLock is an exclusive flock(2) on the journal's database file itself,
// so it follows the file, not the name it was opened by: a second writer
// through a symbolic or hard link to the same file is refused too. flock and
// SQLite's POSIX (fcntl) locks do not interact on Linux. The kernel drops the
// flock when the holder dies, so a killed writer never leaves a stale lock.
//
// "<journal>.lock" only describes the holder (pid, command, time) for the
// error another writer gets; it locks nothing.
type writerLock struct {
	db   *os.File // the database file, flocked; handed to closeFile at release
	id   fileID
	info *os.File // "<journal>.lock", nil if it could not be written
}

// lockWriter creates the journal's database file if needed (mode 0600, for
// SQLite to fill), refuses an existing one that others may read, and takes
// the writer lock on it. The returned lock counts as a user of the file (see
// openFiles) until release.
func lockWriter(journal string) (*writerLock, error) {
	f, err := os.OpenFile(journal, os.O_RDWR|os.O_CREATE, journalMode)
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", journal, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close() // not known to be a journal of ours: no Store has it open
		return nil, fmt.Errorf("open journal %s: %w", journal, err)
	}
	id, ok := idOf(fi)
	if !ok || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open journal %s: %w: not a regular file", journal, ErrNotJournal)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		// Another Store of this process may have the file open: f
		// must outlive it (see openFiles).
		closeFile(id, false, f)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &LockedError{Path: journal, Holder: lockHolder(journal + ".lock")}
		}
		return nil, fmt.Errorf("lock journal %s: %w", journal, err)
	}
	// Checked under the lock, so that a writer that is refused for the
	// mode never reports a lock held by another as its reason.
	if err := checkPrivate(journal, fi); err != nil {
		closeFile(id, false, unlocked(f))
		return nil, err
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if sfi, err := os.Stat(journal + suffix); err == nil {
			if err := checkPrivate(journal+suffix, sfi); err != nil {
				closeFile(id, false, unlocked(f))
				return nil, err
			}
		}
	}
	useFile(id)
	return &writerLock{db: f, id: id, info: writeHolder(journal + ".lock")}, nil
}

// unlocked drops f's flock and returns f.
func unlocked(f *os.File) *os.File {
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return f
}

// writeHolder describes this process in the file at path and returns it
// open, or nil if it cannot be written. O_NOFOLLOW: a symbolic link planted
// under that name must not make a writer truncate the file it points to.
func writeHolder(path string) *os.File {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, journalMode)
	if err != nil {
		return nil
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil
	}
	desc := fmt.Sprintf("pid %d (%s) since %s", os.Getpid(), commandName(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(desc+"\n"), 0)
	}
	return f
}

// lockHolder reads the holder's description from the file at path, or ""
// when there is none. The file is not the lock: a writer that was killed
// leaves its description behind, and the holder may have opened the journal
// by another name and written its own elsewhere. A description whose
// process no longer exists is therefore dropped.
func lockHolder(path string) string {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf, _ := io.ReadAll(io.LimitReader(f, 512))
	desc := strings.TrimSpace(string(buf))
	pidText, _, _ := strings.Cut(strings.TrimPrefix(desc, "pid "), " ")
	pid, err := strconv.Atoi(pidText)
	if !strings.HasPrefix(desc, "pid ") || err != nil || pid <= 0 {
		return ""
	}
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return ""
	}
	return desc
}

// WriterHolder describes the process that holds the writer lock of the
// journal at path ("pid N (COMMAND) since TIME"), from the description it
// left beside the journal, or is "" when no live process does: none holds
// it, or the one that did was killed. It never takes the lock, so a
// writer starting meanwhile is never disturbed.
func WriterHolder(path string) string { return lockHolder(path + ".lock") }

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

// release drops the lock. The caller has closed its SQLite connections.
func (l *writerLock) release() error {
	if l == nil || l.db == nil {
		return nil
	}
	var errs []error
	if l.info != nil {
		_ = l.info.Truncate(0)
		errs = append(errs, l.info.Close())
	}
	errs = append(errs, unix.Flock(int(l.db.Fd()), unix.LOCK_UN))
	errs = append(errs, closeFile(l.id, true, l.db))
	l.db, l.info = nil, nil
	return errors.Join(errs...)
}

// fileID names a file as the kernel's locks do: by device and inode.
type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}

// openFiles counts, per database file, the Stores of this process that have
// it open, and keeps the descriptors storage itself opened on it until none
// has. Closing any descriptor of a file drops every POSIX lock the process
// holds on that file (fcntl(2)), SQLite's included: in WAL mode every
// connection holds a shared lock on the database file for as long as it is
// open, which tells other processes it is not the last user. SQLite's unix
// VFS defers closing its own descriptors for that reason; the one a writer
// flocks must wait the same way, or a second writer refused in this process,
// or a writer closing while a reader of this process is open, would strip
// the other Store's locks.
var openFiles = struct {
	sync.Mutex
	m map[fileID]*openFile // guarded by the mutex
}{m: map[fileID]*openFile{}}

type openFile struct {
	users  int        // Stores of this process with the file open
	parked []*os.File // descriptors to close once users is 0
}

// useFile counts a Store that has the file open, until its closeFile.
func useFile(id fileID) {
	openFiles.Lock()
	defer openFiles.Unlock()
	openFileLocked(id).users++
}

// openFileLocked returns id's entry, creating it; openFiles must be held.
func openFileLocked(id fileID) *openFile {
	o := openFiles.m[id]
	if o == nil {
		o = &openFile{}
		openFiles.m[id] = o
	}
	return o
}

// closeFile counts one user fewer when used, and closes f (if not nil) now
// if no Store of this process has the file open, or else when the last one
// closes. f must not hold a flock any more.
func closeFile(id fileID, used bool, f *os.File) error {
	openFiles.Lock()
	defer openFiles.Unlock()
	o := openFileLocked(id)
	if used {
		o.users--
	}
	if f != nil {
		o.parked = append(o.parked, f)
	}
	if o.users > 0 {
		return nil
	}
	delete(openFiles.m, id)
	var errs []error
	for _, p := range o.parked {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}
