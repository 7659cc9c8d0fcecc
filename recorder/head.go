package recorder

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionhq/bastion/storage"
)

// ErrNoCheckpoint means the journal has no signed checkpoint yet.
var ErrNoCheckpoint = errors.New("recorder: the journal has no checkpoint yet")

// LatestCheckpoint returns the journal's latest signed checkpoint note after
// checking it the way an auditor will: its signature verifies with v, it
// covers every leaf, and its root is the root of the leaves as stored. A
// checkpoint handed out for safekeeping must not be one an attacker chose.
// It reads the leaves, not the frames: "bastion verify" checks those.
func LatestCheckpoint(ctx context.Context, store storage.Store, v note.Verifier) ([]byte, Checkpoint, error) {
	snap, err := store.Snapshot(ctx)
	if err != nil {
		return nil, Checkpoint{}, err
	}
	defer snap.Close()
	head, err := snap.Head(ctx)
	if err != nil {
		return nil, Checkpoint{}, fmt.Errorf("recorder: read head checkpoint: %w", err)
	}
	if head == nil {
		return nil, Checkpoint{}, ErrNoCheckpoint
	}
	c, err := OpenCheckpoint(head.Note, v)
	if err != nil {
		return nil, c, fmt.Errorf("recorder: latest checkpoint: %w", err)
	}
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(hashes)) {
				return nil, fmt.Errorf("tree hash %d not computed", x)
			}
			out[i] = hashes[x]
		}
		return out, nil
	})
	var n int64
	err = snap.Leaves(ctx, 0, 1<<62, func(l storage.Leaf) error {
		if l.Index != n {
			return fmt.Errorf("leaf %d is missing", n)
		}
		hs, err := tlog.StoredHashes(n, l.Data, r)
		if err != nil {
			return err
		}
		hashes = append(hashes, hs...)
		n++
		return nil
	})
	if err != nil {
		return nil, c, fmt.Errorf("recorder: read leaves: %w", err)
	}
	if c.Size != n {
		return nil, c, fmt.Errorf("recorder: the latest checkpoint covers %d leaves but the journal has %d: %w", c.Size, n, ErrJournalDamaged)
	}
	if n > 0 {
		root, err := tlog.TreeHash(n, r)
		if err != nil {
			return nil, c, err
		}
		if Hash(root) != c.Root {
			return nil, c, fmt.Errorf("recorder: the latest checkpoint's root is not the root of the stored leaves: %w", ErrJournalDamaged)
		}
	}
	return head.Note, c, nil
}
