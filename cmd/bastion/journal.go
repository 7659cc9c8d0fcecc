package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/certauth"
	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/termtext"
	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
)

// openJournal opens the journal for writing with the home's signing key.
// close commits what is queued, keeps a final checkpoint and releases the
// journal.
func openJournal(ctx context.Context, e *env, dbFlag string) (j *recorder.Journal, path string, close func() error, err error) {
	home, err := e.home()
	if err != nil {
		return nil, "", nil, err
	}
	path, err = e.dbPath(dbFlag)
	if err != nil {
		return nil, "", nil, err
	}
	j, _, close, err = openJournalAt(ctx, home, path)
	return j, path, close, err
}

// openJournalAt opens the journal at path for writing with the signing key
// of home, and returns its store too.
func openJournalAt(ctx context.Context, home, path string) (j *recorder.Journal, st storage.Store, close func() error, err error) {
	return openJournalWith(ctx, home, path, recorder.Options{}, storage.Options{})
}

// openJournalWith is openJournalAt with the writer's logger and commit
// observer taken from opts (its key, hostname and signed state are set
// here), and the store's ReaderGroup (the group of the journal's readers;
// nil for none) and MustExist taken from so.
func openJournalWith(ctx context.Context, home, path string, opts recorder.Options, so storage.Options) (j *recorder.Journal, st storage.Store, close func() error, err error) {
	key, err := certauth.LoadJournalKey(home)
	if errors.Is(err, certauth.ErrNoJournalKey) {
		return nil, nil, nil, withHint(fmt.Errorf("%w: a journal is never written unsigned", err),
			`run "bastion ca init" to create the keys, or pass --home DIR of an initialized bastion`)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	// A journal of another key is refused before it is opened to write:
	// a read that play, export or evidence records never migrates it.
	st, err = openStore(ctx, path, key.Signer.Name(), storage.Options{RequireMeta: map[string]string{recorder.MetaKey: key.VerifierKey}, ReaderGroup: so.ReaderGroup, MustExist: so.MustExist})
	if err != nil {
		return nil, nil, nil, journalError(err)
	}
	var signed *certauth.SignedState
	if isDatabase(path) {
		var id string
		if id, err = postgres.Identity(path, key.Signer.Name()); err == nil {
			signed, err = certauth.NewSignedStateOf(home, id)
		}
	} else {
		signed, err = certauth.NewSignedState(home, path)
	}
	if err != nil {
		st.Close()
		return nil, nil, nil, err
	}
	host, _ := os.Hostname()
	opts.Key, opts.Hostname, opts.Signed = key, host, signed
	j, err = recorder.Open(ctx, st, opts)
	if err != nil {
		st.Close()
		if errors.Is(err, recorder.ErrJournalDamaged) {
			return nil, nil, nil, withHint(fmt.Errorf("journal %s: %w", path, err),
				"run \"bastion verify --db "+path+" --checkpoint "+signed.Path()+"\" to find the damage; a damaged journal is never extended",
				"if the journal was removed or replaced on purpose, keep the old one as evidence, then remove "+signed.Path()+" to start a new journal at this path")
		}
		return nil, nil, nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return j, st, func() error {
		return errors.Join(j.Close(), st.Close())
	}, nil
}

// openReadOnly opens the journal at path for reading. In a database, log
// names the log: the name of the key it is verified with.
func openReadOnly(ctx context.Context, path, log string) (storage.Store, error) {
	st, err := openStore(ctx, path, log, storage.Options{ReadOnly: true})
	if errors.Is(err, postgres.ErrNoLog) {
		return nil, withHint(fmt.Errorf("no log %q in %s", log, journalName(path)),
			"a log in a database is named by its key's origin: pass --key FILE with the public key of the bastion that wrote it")
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, withHint(fmt.Errorf("no journal at %s", path),
			`record a session first ("bastion record -- CMD"), or name the journal with --db FILE`)
	}
	if err != nil {
		return nil, journalError(err)
	}
	return st, nil
}

func journalError(err error) error {
	switch {
	case errors.Is(err, storage.ErrLocked):
		return withHint(err, "only one process writes a journal at a time: wait until that one ends (stop it, if it is a \"bastion serve\" you may stop), or write another journal with --db FILE; readers such as verify and sessions list work meanwhile")
	case errors.Is(err, storage.ErrNotJournal):
		return withHint(err, "--db must name a journal that bastion created")
	case errors.Is(err, storage.ErrOtherLog):
		return withHint(err, "a journal is written only with the key that created it: pass --home DIR of that bastion")
	case errors.Is(err, storage.ErrPermissions):
		return withHint(err, "a journal holds every keystroke, passwords typed at a prompt included: only its owner, and the group of serve's access { group = ... }, may read it")
	}
	return err
}

// verifiedLog is a journal opened read-only and its log, read and checked
// with the auditor's key as the commands that list read it
// (docs/journal-format.md, section 10.3).
type verifiedLog struct {
	*recorder.Log
	snap storage.Snapshot
	st   storage.Store
	path string
}

func (l *verifiedLog) Close() {
	l.snap.Close()
	l.st.Close()
}

// readLog opens the journal and reads its log: exit 2 when it cannot be
// read at all, exit 1 when the log does not verify. Index columns that do
// not match the leaves are printed on stderr at once, before anything the
// command shows from the leaves; the command ends with l.indexErr.
func readLog(ctx context.Context, e *env, keyFile, db string, events func(string) bool) (*verifiedLog, error) {
	v, _, err := loadVerifier(e, keyFile)
	if err != nil {
		return nil, exitCode(2, err)
	}
	path, err := e.dbPath(db)
	if err != nil {
		return nil, exitCode(2, err)
	}
	return readLogAt(ctx, e, path, v, events)
}

// readLogAt is readLog of the log v names in the journal at path.
func readLogAt(ctx context.Context, e *env, path string, v note.Verifier, events func(string) bool) (*verifiedLog, error) {
	st, err := openReadOnly(ctx, path, v.Name())
	if err != nil {
		return nil, exitCode(2, err)
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		st.Close()
		return nil, exitCode(2, journalError(err))
	}
	log, err := recorder.ReadLog(ctx, snap, recorder.ReadLogOptions{Verifier: v, Events: events})
	if err != nil {
		snap.Close()
		st.Close()
		if errors.Is(err, recorder.ErrLogDamaged) {
			return nil, exitCode(1, withHint(fmt.Errorf("journal %s does not verify: %w", path, err),
				`nothing is shown from a log that does not verify; run "bastion verify --db `+path+`" for every finding`))
		}
		return nil, exitCode(2, fmt.Errorf("journal %s: %w", path, err))
	}
	warnIndex(e, log)
	return &verifiedLog{Log: log, snap: snap, st: st, path: path}, nil
}

// warnIndex says, on stderr, what of the journal's index does not match
// its signed records: before anything is shown from them.
func warnIndex(e *env, log *recorder.Log) {
	for _, p := range log.IndexProblems {
		fmt.Fprintf(e.stderr, "bastion: warning: the journal's index does not match its signed records: %s: %s\n", termtext.Line(p.Where), termtext.Line(p.What))
	}
}

// indexErr is the exit status of a command that showed what the leaves
// say of a journal whose index was changed: the leaves verified, but the
// journal does not.
func (l *verifiedLog) indexErr() error { return indexErr(l.path, l.Log) }

func indexErr(path string, log *recorder.Log) error {
	if len(log.IndexProblems) == 0 {
		return nil
	}
	return exitCode(1, withHint(fmt.Errorf("journal %s does not verify: %d index finding(s), shown above; what is shown comes from the signed records", path, len(log.IndexProblems)),
		`run "bastion verify --db `+path+`" for every finding`))
}
