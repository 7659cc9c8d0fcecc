package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
)

// isDatabase reports whether a journal location names a PostgreSQL
// database (postgres:// or postgresql://) rather than a SQLite file.
func isDatabase(loc string) bool { return postgres.IsLocation(loc) }

// openStore opens the journal at loc: a log in a PostgreSQL database when
// loc is a postgres:// or postgresql:// URL, else the SQLite file at that
// path. A database holds the logs of several bastions; log names the one
// to open, and bastion names each log by its origin (the journal key's
// name), so that a log is always the one its key signs. so's options that
// only mean something for a file are refused for a database, not ignored.
func openStore(ctx context.Context, loc, log string, so storage.Options) (storage.Store, error) {
	if !isDatabase(loc) {
		return storage.OpenSQLite(ctx, loc, so)
	}
	if so.ReaderGroup != nil {
		return nil, withHint(errors.New("access { group = ... } gives a SQLite journal's files to a group, and the journal is a PostgreSQL database"),
			"grant the readers' role access in the database instead, and remove the access block's group")
	}
	if so.Synchronous != "" && so.Synchronous != storage.SyncFull {
		return nil, fmt.Errorf("synchronous %q is SQLite's: a PostgreSQL journal is always synchronous_commit = on", so.Synchronous)
	}
	return postgres.Open(ctx, loc, log, postgres.Options{ReadOnly: so.ReadOnly, MustExist: so.MustExist, RequireMeta: so.RequireMeta})
}

// journalName is how messages name the journal at loc: its path, or its
// database's URL without the password.
func journalName(loc string) string {
	if isDatabase(loc) {
		return postgres.Redact(loc)
	}
	return loc
}
