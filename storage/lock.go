package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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

// PermissionsError says a journal file lets users other than its owner in,
// beyond what the writer allows (see [Options] ReaderGroup). A journal
// holds every keystroke of every session, passwords typed with echo off
// included, so a writer refuses to add to one that others can read.
type PermissionsError struct {
	Path string      // the file: the journal, or its -wal or -shm file
	Mode fs.FileMode // its permission bits
	// GID is the file's group. Allowed is the group whose members may
	// read the journal (Options.ReaderGroup), or -1 when none may.
	GID, Allowed int
}

func (e *PermissionsError) Error() string {
	if e.Allowed < 0 {
		return fmt.Sprintf("journal file %s has mode %#o: users other than its owner can read what it records; run chmod 600 %s",
			e.Path, uint32(e.Mode.Perm()), e.Path)
	}
	return fmt.Sprintf("journal file %s has mode %#o and group %d: only the owner and the readers' group %d may read what it records (at most mode 0640, the -shm file 0660, of that group); run chmod 600 %s and the writer gives it to the group",
		e.Path, uint32(e.Mode.Perm()), e.GID, e.Allowed, e.Path)
}

func (e *PermissionsError) Unwrap() error { return ErrPermissions }

// journalMode is the mode of the journal files a writer creates. SQLite
// gives the -wal and -shm files the mode of the database file.
const journalMode = 0o600

// The modes of the journal's files when a group may read it: the database,
// its WAL and the holder's description are readable by the group; the
// shared-memory index is writable too, as SQLite's readers record there
// which part of the WAL they read.
const (
	groupMode    = 0o640
	groupShmMode = 0o660
)

// checkMode refuses a journal file whose mode grants others any access, or
// its group more than allowed: nothing, unless group is the readers' group
// (not nil) and the file is that group's, then at most the group bits of
// most.
func checkMode(path string, fi fs.FileInfo, group *int, most fs.FileMode) error {
	perm := fi.Mode().Perm()
	gid := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		gid = int(st.Gid)
	}
	allowed := -1
	if group != nil {
		allowed = *group
	}
	switch {
	case perm&0o007 != 0,
		perm&0o070 != 0 && (group == nil || gid != *group || perm&0o070&^(most&0o070) != 0):
		return &PermissionsError{Path: path, Mode: perm, GID: gid, Allowed: allowed}
	}
	return nil
}

// shareFile gives the open file f to the readers' group with mode, unless
// it is so already.
func shareFile(f *os.File, gid int, mode fs.FileMode) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Gid) != gid {
		if err := f.Chown(-1, gid); err != nil {
			return fmt.Errorf("give journal file %s to group %d: %w", f.Name(), gid, err)
		}
	}
	if fi.Mode().Perm() != mode {
		if err := f.Chmod(mode); err != nil {
			return fmt.Errorf("give journal file %s to group %d: %w", f.Name(), gid, err)
		}
	}
	return nil
}

// suffixModes are SQLite's files beside the journal, with the mode they
// have when the journal is shared with a readers' group (and the most a
// writer accepts).
var suffixModes = []struct {
	suffix string
	mode   fs.FileMode
}{{"-wal", groupMode}, {"-shm", groupShmMode}}

// shareSuffixed gives the journal's -wal and -shm files, where they exist,
// to the readers' group. It works on their names and never opens them:
// closing a descriptor of a file drops every POSIX lock this process
// holds on it (see openFiles), and SQLite's lock on the -shm file is what
// keeps another process from taking it for a fresh one and truncating it
// under this one's mapping. The journal's directory is not writable by
// others, so the names are not swapped meanwhile.
func shareSuffixed(journal string, gid int) error {
	for _, s := range suffixModes {
		name := journal + s.suffix
		fi, err := os.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && !fi.Mode().IsRegular() {
			err = errors.New("not a regular file")
		}
		if err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Gid) != gid {
				err = os.Lchown(name, -1, gid)
			}
		}
		if err == nil && fi.Mode().Perm() != s.mode {
			err = os.Chmod(name, s.mode)
		}
		if err != nil {
			return fmt.Errorf("give journal file %s to group %d: %w", name, gid, err)
		}
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

// lockWriter creates the journal's database file if needed and create is
// set (mode 0600, for SQLite to fill), refuses an existing one that others may read beyond
// what group allows (see [Options] ReaderGroup), and takes the writer lock
// on it; with a group, it gives the files to that group. The returned lock
// counts as a user of the file (see openFiles) until release.
func lockWriter(journal string, group *int, create bool) (*writerLock, error) {
	if group != nil {
		if err := checkJournalDir(journal); err != nil {
			return nil, err
		}
	}
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(journal, flags, journalMode)
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
	if err := checkMode(journal, fi, group, groupMode); err != nil {
		closeFile(id, false, unlocked(f))
		return nil, err
	}
	for _, s := range suffixModes {
		if sfi, err := os.Stat(journal + s.suffix); err == nil {
			if err := checkMode(journal+s.suffix, sfi, group, s.mode); err != nil {
				closeFile(id, false, unlocked(f))
				return nil, err
			}
		}
	}
	if group != nil {
		err := shareFile(f, *group, groupMode)
		if err == nil {
			err = shareSuffixed(journal, *group)
		}
		if err != nil {
			closeFile(id, false, unlocked(f))
			return nil, err
		}
	}
	useFile(id)
	info := writeHolder(journal + ".lock")
	if info != nil && group != nil {
		// Readers of the group learn from it that a writer runs.
		_ = shareFile(info, *group, groupMode)
	}
	return &writerLock{db: f, id: id, info: info}, nil
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

// checkJournalDir refuses, for a journal shared with a readers' group, a
// directory that anyone but its owner may write, or that is owned by
// another user than the writer and root: the writer gives the journal's
// files (and serve its socket) to the group by name, and whoever could
// put a symbolic link in their place would have it give them anything.
func checkJournalDir(journal string) error {
	dir := filepath.Dir(journal)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("journal directory %s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("journal directory %s has mode %#o: with a readers' group, only its owner may write it (chmod go-w %s)", dir, uint32(fi.Mode().Perm()), dir)
	case ok && st.Uid != 0 && int(st.Uid) != os.Getuid():
		return fmt.Errorf("journal directory %s is owned by uid %d: with a readers' group, it must be the writer's (uid %d) or root's", dir, st.Uid, os.Getuid())
	}
	return nil
}
