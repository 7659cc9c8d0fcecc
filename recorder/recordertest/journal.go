package recordertest

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// DefaultOrigin is the origin of the key NewJournal makes.
const DefaultOrigin = "test.example/journal"

// A Journal is a journal open for writing on a real SQLite file that
// belongs to one test, as [NewJournal] makes it. The test's cleanup
// closes it, if the test has not.
type Journal struct {
	// Journal is the writer.
	*recorder.Journal
	// Store is the journal's SQLite store, and Path its file.
	Store *storage.SQLite
	Path  string
	// Key signs the journal's checkpoints; Key.Verifier checks them.
	Key *recorder.JournalKey

	closeOnce sync.Once
	closeErr  error
}

// Options change the journal [NewJournalWith] opens. The zero value is
// what [NewJournal] opens.
type Options struct {
	// Path is the journal's file: it is created, or opened if it exists.
	// If empty, journal.db in a new temporary directory of the test.
	Path string
	// Storage are the options the store is opened with.
	Storage storage.Options
	// Journal are the writer's options. If Journal.Key is nil, a new key
	// for DefaultOrigin signs.
	Journal recorder.Options
	// Wrap, if set, wraps the store the writer commits to (to slow its
	// commits or make them fail); Journal.Store stays the SQLite store.
	Wrap func(storage.Store) storage.Store
}

// NewJournal opens a new journal in a temporary directory of tb's, signed
// by a new key, with the default options of the store and the writer.
func NewJournal(tb testing.TB) *Journal {
	tb.Helper()
	return NewJournalWith(tb, Options{})
}

// NewJournalWith opens a journal as opts say. It fails tb if the key, the
// store or the writer cannot be made.
func NewJournalWith(tb testing.TB, opts Options) *Journal {
	tb.Helper()
	ctx := context.Background()
	path := opts.Path
	if path == "" {
		path = filepath.Join(tb.TempDir(), "journal.db")
	}
	jopts := opts.Journal
	if jopts.Key == nil {
		jopts.Key, _ = NewKey(tb, DefaultOrigin)
	}
	st, err := storage.OpenSQLite(ctx, path, opts.Storage)
	if err != nil {
		tb.Fatal(err)
	}
	var store storage.Store = st
	if opts.Wrap != nil {
		store = opts.Wrap(st)
	}
	w, err := recorder.Open(ctx, store, jopts)
	if err != nil {
		st.Close()
		tb.Fatal(err)
	}
	j := &Journal{Journal: w, Store: st, Path: path, Key: jopts.Key}
	tb.Cleanup(func() { j.Close() })
	return j
}

// NewKey makes a new journal key of origin: the key that signs, and its
// public key as a cluster file or journal.pub holds it. It fails tb if
// the key cannot be made.
func NewKey(tb testing.TB, origin string) (*recorder.JournalKey, *recorder.VerifierKey) {
	tb.Helper()
	skey, vkey, err := recorder.GenerateJournalKey(origin)
	if err != nil {
		tb.Fatal(err)
	}
	k, err := recorder.ParseJournalKey(skey)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := recorder.ParseVerifierKey(vkey)
	if err != nil {
		tb.Fatal(err)
	}
	return k, v
}

// Close closes the writer, then its store, which releases the writer's
// lock on the file. Only the first call closes; later ones return its
// result.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		j.closeErr = errors.Join(j.Journal.Close(), j.Store.Close())
	})
	return j.closeErr
}
