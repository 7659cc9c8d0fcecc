package recorder

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/storage"
)

// What the journal offers the client that pushes its kept checkpoints to
// witnesses (C2SP tlog-witness): docs/witnesses.md.

// Publish keeps a checkpoint of the whole log now (a published row), as
// the writer does about once a second while the log grows, and returns
// once it is committed. Nothing is kept when the largest kept checkpoint
// already covers every leaf. serve calls it as it stops, so that its last
// leaves are pushed to witnesses before the journal closes.
func (j *Journal) Publish(ctx context.Context) error {
	_, err := j.submit(ctx, op{kind: opPublish})
	return err
}

// AddCosignatures replaces the note of the published checkpoint of note's
// size with note: the same checkpoint, signed by the journal's key, with
// witnesses' cosignature lines after the key's own line. The cosignatures
// are not leaves (a leaf per cosignature would need a checkpoint of its
// own, to be cosigned in turn). A size no published row has is skipped.
// The caller verifies the cosignatures; this checks that note is a valid
// checkpoint of this journal, and that the row it replaces is the same
// checkpoint (docs/journal-format.md, 8.4).
func (j *Journal) AddCosignatures(ctx context.Context, note []byte) error {
	c, err := OpenCheckpoint(note, j.key.Verifier)
	if err != nil {
		return fmt.Errorf("recorder: cosigned checkpoint: %w", err)
	}
	_, err = j.submit(ctx, op{kind: opRenote, renote: &storage.Checkpoint{TreeSize: c.Size, Note: note}})
	return err
}

// ConsistencyProof is the RFC 6962 consistency proof from the tree of old
// leaves to the tree of size leaves, read from the stored tree hashes of
// a snapshot (any size up to the committed tree).
func (j *Journal) ConsistencyProof(ctx context.Context, old, size int64) (tlog.TreeProof, error) {
	snap, err := j.st.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	return tlog.ProveTree(size, old, storedHashes(ctx, snap))
}

// storedHashes reads a snapshot's stored tree hashes, unchecked: a proof
// built from them is trusted only once checked against a signed root.
func storedHashes(ctx context.Context, snap storage.Snapshot) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		got, err := snap.Hashes(ctx, idx)
		if err != nil {
			return nil, err
		}
		out := make([]tlog.Hash, len(got))
		for i := range got {
			if len(got[i]) != HashSize {
				return nil, fmt.Errorf("stored tree hash %d has %d bytes", idx[i], len(got[i]))
			}
			out[i] = tlog.Hash(got[i])
		}
		return out, nil
	})
}
