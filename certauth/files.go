package certauth

import (
	"os"

	"github.com/bastionhq/bastion/storage"
)

// WriteFileAtomic replaces path with data, atomically and durably
// ([storage.WriteFileAtomic]), so sshd never reads half a KRL.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return storage.WriteFileAtomic(path, data, perm)
}
