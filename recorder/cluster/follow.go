package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// ErrNotVerified wraps every reason [Follower.Next] passes on no leaf: a
// head checkpoint that does not open with the member's key, leaves that
// do not hash to its root, a log shorter than what was already read.
var ErrNotVerified = errors.New("the member's log does not verify")

// Followed is a leaf of another member's log, read under a checkpoint
// that verified with that member's key.
type Followed struct {
	Index int64
	Leaf  *recorder.Leaf
}

// Follower reads another member's log as it grows, and passes on only
// leaves that a checkpoint signed by that member's key (the cluster
// file's, never the log's own metadata) commits to: each call of Next
// opens the log's head checkpoint with the key, reads the leaves after
// those already passed on, and checks that all the leaves read so far
// hash to the checkpoint's root. A log that was rewritten, truncated or
// signed by another key passes nothing on, and Next says why, until a
// checkpoint again verifies over the leaves already read.
//
// A Follower is not safe for concurrent use.
type Follower struct {
	Member Member
	// Keep, if set, selects the leaves Next passes on: the others are
	// read and verified, not kept (a follower reads the whole log again
	// after each restart, and keeps in memory only what it applies).
	Keep  func(*recorder.Leaf) bool
	store storage.Store
	tree  *recorder.Tree // the leaves passed on
	chunk int64          // how many leaves Next asks the store for at a time
}

// NewFollower follows m's log in store (a read-only store on that log),
// from its first leaf.
func NewFollower(m Member, store storage.Store) *Follower {
	return &Follower{Member: m, store: store, tree: recorder.NewTree(), chunk: 4096}
}

// Size is the number of leaves passed on so far.
func (f *Follower) Size() int64 { return f.tree.Size() }

// Next returns the leaves the log gained since the last call (those Keep
// selects), in index order (none when it did not grow), once the log's head checkpoint
// verifies with the member's key over every leaf read. Errors that are
// about the log's content wrap ErrNotVerified; others (the database
// cannot be reached) do not. Either way nothing is passed on, and the
// next call tries again from the same leaf.
func (f *Follower) Next(ctx context.Context) ([]Followed, error) {
	snap, err := f.store.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s's log: %w", f.Member.Name(), err)
	}
	defer snap.Close()
	head, err := snap.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s's head checkpoint: %w", f.Member.Name(), err)
	}
	size := f.tree.Size()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("member %d (%s): %w: %s", f.Member.ID, f.Member.Name(), ErrNotVerified, fmt.Sprintf(format, args...))
	}
	if head == nil {
		if size > 0 {
			return nil, bad("its head checkpoint is gone, after %d leaves were read", size)
		}
		return nil, nil
	}
	c, err := recorder.OpenCheckpoint(head.Note, f.Member.Key)
	if err != nil {
		return nil, bad("head checkpoint: %v", err)
	}
	switch {
	case c.Size < size:
		return nil, bad("its head checkpoint commits to %d leaves, but %d were read already (rolled back)", c.Size, size)
	case c.Size == size:
		if f.tree.Root() != c.Root {
			return nil, bad("the %d leaves read do not hash to the root its head checkpoint signs (forked)", size)
		}
		return nil, nil
	}
	tree := f.tree.Clone()
	var out []Followed
	next := size
	for from := size; err == nil && from < c.Size && next == from; from += f.chunk {
		err = snap.Leaves(ctx, from, min(from+f.chunk, c.Size), func(sl storage.Leaf) error {
			if sl.Index != next {
				return bad("leaf %d is missing", next)
			}
			l, err := recorder.ParseLeaf(sl.Data)
			if err != nil {
				return bad("leaf %d: %v", next, err)
			}
			tree.Add(sl.Data)
			if f.Keep == nil || f.Keep(l) {
				out = append(out, Followed{Index: next, Leaf: l})
			}
			next++
			return nil
		})
	}
	if err != nil {
		if errors.Is(err, ErrNotVerified) {
			return nil, err
		}
		return nil, fmt.Errorf("read %s's leaves: %w", f.Member.Name(), err)
	}
	if next != c.Size {
		return nil, bad("the log ends at leaf %d, its head checkpoint commits to %d", next, c.Size)
	}
	if tree.Root() != c.Root {
		return nil, bad("leaves %d..%d do not hash to the root its head checkpoint signs", size, c.Size-1)
	}
	f.tree = tree
	return out, nil
}
