package storage

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxKeyFile bounds what is read of a key file.
const maxKeyFile = 64 << 10

// ReadPrivateFile reads a private key file, refusing one that is not a
// regular file, that group or others may access, or that is too large for
// a key. The mode is checked on the file opened, not on the name, so it
// cannot be swapped between the check and the read.
func ReadPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v): refusing to use it; chmod 600 it", path, perm)
	}
	return ReadKeyFile(f)
}

// ReadKeyFile reads f, refusing more than a key file can hold (64 KiB).
func ReadKeyFile(f *os.File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s: too large for a key", f.Name())
	}
	return b, nil
}

// WriteFileAtomic replaces path with data: it writes a temporary file in
// the same directory, syncs it, sets perm, renames it over path and syncs
// the directory. A crash leaves either the old file or the new one, never
// a mix: keys, the KRL sshd reads, a client profile.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes the names in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SQLiteBytes is the size of the SQLite journal at path: its file and its
// write-ahead log; 0 for what is not there (a PostgreSQL location).
func SQLiteBytes(path string) int64 {
	var n int64
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			n += fi.Size()
		}
	}
	return n
}
