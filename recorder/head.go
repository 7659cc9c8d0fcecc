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
// covers every leaf, and its root is the root of the leaves as stored
// ([ReadLog]). A checkpoint handed out for safekeeping must not be one an
// attacker chose. It reads the leaves, not the frames: "bastion verify"
// checks those. The log it read comes with it: Log.Note is the checkpoint,
// and Log.IndexProblems says whether the index beside the leaves matches.
func LatestCheckpoint(ctx context.Context, store storage.Store, v note.Verifier) (*Log, error) {
	snap, err := store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	head, err := snap.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("recorder: read head checkpoint: %w", err)
	}
	if n, err := snap.TreeSize(ctx); err == nil && head == nil && n == 0 {
		return nil, ErrNoCheckpoint
	}
	log, err := ReadLog(ctx, snap, ReadLogOptions{Verifier: v})
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	return log, nil
}
