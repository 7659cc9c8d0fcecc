package main

import (
	"context"
	"errors"
	"fmt"
)

func init() {
	register(&command{
		name:    "checkpoint",
		summary: "print the journal's latest signed checkpoint",
		usage:   checkpointUsage,
		run:     runCheckpoint,
	})
}

const checkpointUsage = `Usage:
    bastion checkpoint [--db FILE]

Prints the journal's latest signed checkpoint: the log's origin, its size
and root hash, signed with the journal key (C2SP tlog-checkpoint, as a
signed note). Keep it somewhere the bastion cannot write: later,
"bastion verify --checkpoint FILE" proves that the journal still extends it,
which catches truncation and the restore of an older copy.

Flags:
    --db FILE   the journal (default: journal.db in the home directory)

Examples:
    $ bastion checkpoint > checkpoints/$(date +%F).txt
    $ bastion checkpoint --db /var/lib/bastion/journal.db`

func runCheckpoint(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("checkpoint takes no arguments")
	}
	snap, st, path, err := openSnapshot(ctx, e, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	defer snap.Close()
	head, err := snap.Head(ctx)
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	if head == nil {
		return withHint(errors.New("the journal at "+path+" has no checkpoint yet"), "a checkpoint is signed as soon as a session is recorded")
	}
	_, err = e.stdout.Write(head.Note)
	return err
}
