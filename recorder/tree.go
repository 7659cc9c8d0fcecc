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

// add appends the next leaf's encoding and returns its leaf hash. It
// stores what tlog.StoredHashes would: the leaf hash, then the hash of
// each complete subtree the leaf completes, its left half being the
// stored hash of the level below.
func (t *memTree) add(data []byte) tlog.Hash {
	leaf := tlog.RecordHash(data)
	h := leaf
	t.hashes = append(t.hashes, h)
	n := t.size
	for level := 0; n&1 == 1; level++ {
		left := t.hashes[tlog.StoredHashIndex(level, n-1)]
		h = tlog.NodeHash(left, h)
		t.hashes = append(t.hashes, h)
		n >>= 1
	}
	t.size++
	return leaf
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
