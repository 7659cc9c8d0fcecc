package recorder

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// memTree is the RFC 6962 tree of leaves appended in index order, every
// stored hash (in tlog's layout) kept in memory: what verification
// recomputes, trusting none of the hashes in the journal. It is a
// tlog.HashReader, for roots and proofs.
type memTree struct {
	hashes []tlog.Hash
	size   int64
}

// add appends the next leaf's encoding.
func (t *memTree) add(data []byte) error {
	hs, err := tlog.StoredHashes(t.size, data, t)
	if err != nil {
		return err
	}
	t.hashes = append(t.hashes, hs...)
	t.size++
	return nil
}

// root is the tree hash of the first n leaves.
func (t *memTree) root(n int64) (Hash, error) {
	h, err := tlog.TreeHash(n, t)
	return Hash(h), err
}

// ReadHashes implements tlog.HashReader.
func (t *memTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(t.hashes)) {
			return nil, fmt.Errorf("tree hash %d not computed", x)
		}
		out[i] = t.hashes[x]
	}
	return out, nil
}
