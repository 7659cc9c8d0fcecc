package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/bastionhq/bastion/recorder"
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
    bastion checkpoint [--db FILE] [--key FILE]

Prints the journal's latest signed checkpoint: the log's origin, its size
and root hash, signed with the journal key (C2SP tlog-checkpoint, as a
signed note). Keep it somewhere the bastion cannot write: later,
"bastion verify --checkpoint FILE" proves that the journal still extends it,
which catches truncation and the restore of an older copy.

Before printing it, checkpoint checks it as an auditor would: its signature
verifies with the journal's public key, and it commits to exactly the
leaves the journal holds, every one read and hashed. It never hands out a
checkpoint that does not match the journal (exit 1). If the index beside
the leaves was changed, the checkpoint is still printed (it is the key's,
and proves the leaves), but that is said on stderr and it exits 1.

Flags:
    --db FILE    the journal (default: journal.db in the home directory)
    --key FILE   the journal's public key (default: journal.pub in the home
                 directory)

Examples:
    $ bastion checkpoint > checkpoints/$(date +%F).txt
    $ bastion checkpoint --db /var/lib/bastion/journal.db`

func runCheckpoint(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	db := fs.String("db", "", "journal `FILE`")
	keyFile := fs.String("key", "", "public key `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("checkpoint takes no arguments")
	}
	v, _, err := loadVerifier(e, *keyFile)
	if err != nil {
		return err
	}
	path, err := e.dbPath(*db)
	if err != nil {
		return err
	}
	st, err := openReadOnly(ctx, path, v.Name())
	if err != nil {
		return err
	}
	defer st.Close()
	log, err := recorder.LatestCheckpoint(ctx, st, v)
	if errors.Is(err, recorder.ErrNoCheckpoint) {
		return withHint(fmt.Errorf("the journal at %s has no checkpoint yet", path), "a checkpoint is signed as soon as a session is recorded")
	}
	if err != nil {
		return exitCode(1, withHint(fmt.Errorf("journal %s: %w", path, err),
			"a checkpoint that does not match the journal is never handed out; run \"bastion verify\" to find out why"))
	}
	warnIndex(e, log)
	if _, err := e.stdout.Write(log.Note); err != nil {
		return err
	}
	return indexErr(path, log)
}
