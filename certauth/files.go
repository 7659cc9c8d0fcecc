package certauth

import (
	"fmt"
	"io"
	"os"

	"github.com/bastionhq/bastion/storage"
)

// maxKeyFile bounds what is read of a key file.
const maxKeyFile = 64 << 10

// readPrivate reads a private key file, refusing one that is not a regular
// file, that group or others may access, or that is too large for a key.
// The mode is checked on the file opened, not on the name, so it cannot be
// swapped between the check and the read.
func readPrivate(path string) ([]byte, error) {
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
	return readKeyFile(f)
}

// readKeyFile reads f, refusing more than a key file can hold.
func readKeyFile(f *os.File) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s: too large for a key", f.Name())
	}
	return b, nil
}

// WriteFileAtomic replaces path with data, atomically and durably
// ([storage.WriteFileAtomic]), so sshd never reads half a KRL.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return storage.WriteFileAtomic(path, data, perm)
}
