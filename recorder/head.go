package recorder

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"

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
	var tree memTree
	err = snap.Leaves(ctx, 0, 1<<62, func(l storage.Leaf) error {
		if l.Index != tree.size {
			return fmt.Errorf("leaf %d is missing", tree.size)
		}
		return tree.add(l.Data)
	})
	if err != nil {
		return nil, c, fmt.Errorf("recorder: read leaves: %w", err)
	}
	n := tree.size
	if c.Size != n {
		return nil, c, fmt.Errorf("recorder: the latest checkpoint covers %d leaves but the journal has %d: %w", c.Size, n, ErrJournalDamaged)
	}
	if n > 0 {
		root, err := tree.root(n)
		if err != nil {
			return nil, c, err
		}
		if root != c.Root {
			return nil, c, fmt.Errorf("recorder: the latest checkpoint's root is not the root of the stored leaves: %w", ErrJournalDamaged)
		}
	}
	return head.Note, c, nil
}
