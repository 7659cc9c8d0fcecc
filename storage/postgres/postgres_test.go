package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
	"github.com/bastionhq/bastion/storage/postgres/pgtest"
	"github.com/bastionhq/bastion/storage/storagetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var logs atomic.Int64

// A location in these tests is a database URL and a log name, joined by
// "#".
func location(dsn string) string { return fmt.Sprintf("%s#log-%d", dsn, logs.Add(1)) }

func splitLocation(loc string) (dsn, name string) {
	i := strings.LastIndexByte(loc, '#')
	return loc[:i], loc[i+1:]
}

func backend() storagetest.Backend {
	return storagetest.Backend{
		NewLocation: func(t *testing.T) string { return location(pgtest.Shared(t).NewDatabase(t)) },
		Open: func(ctx context.Context, loc string, readOnly bool) (storage.Store, error) {
			dsn, name := splitLocation(loc)
			return postgres.Open(ctx, dsn, name, postgres.Options{ReadOnly: readOnly})
		},
		OtherLog: func(t *testing.T, loc string) string {
			dsn, _ := splitLocation(loc)
			return location(dsn)
		},
	}
}

func TestContract(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, backend())
}

func openWriter(t *testing.T, dsn, name string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, name, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSecondWriterNamesHolder(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Shared(t).NewDatabase(t)
	openWriter(t, dsn, "a")
	_, err := postgres.Open(context.Background(), dsn, "a", postgres.Options{})
	var le *storage.LockedError
	if !errors.As(err, &le) || !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("second writer: %v, want a *storage.LockedError", err)
	}
	if !strings.Contains(le.Holder, fmt.Sprintf("pid %d ", os.Getpid())) || !strings.Contains(le.Holder, "database session") {
		t.Errorf("holder %q does not name this process and its session", le.Holder)
	}
	u, _ := url.Parse(dsn)
	if pw, ok := u.User.Password(); !ok || pw == "" {
		t.Fatalf("the test database's URL %q has no password to hide", dsn)
	} else if strings.Contains(err.Error(), pw) {
		t.Errorf("the error shows the database's password: %v", err)
	}
	if !strings.Contains(err.Error(), `log "a"`) {
		t.Errorf("the error does not name the log: %v", err)
	}
}

// TestLockGoesWithSession: when the writer's database session ends (its
// process killed, its connection cut), the lock is free for the next
// writer, and the old store writes nothing more.
func TestLockGoesWithSession(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	old := openWriter(t, dsn, "a")
	if err := old.Commit(ctx, batch(1, 0)); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var pid int32
	err = admin.QueryRow(ctx, `SELECT l.pid FROM pg_locks l JOIN bastion.logs g ON l.objid::integer = g.id
		WHERE l.locktype = 'advisory' AND l.classid = $1 AND g.name = 'a' AND l.granted
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`, int64(0x6273746a)).Scan(&pid)
	if err != nil {
		t.Fatalf("find the writer's session: %v", err)
	}
	reader, err := postgres.Open(ctx, dsn, "a", postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if holder, err := reader.WriterHolder(ctx); err != nil || !strings.Contains(holder, fmt.Sprintf("database session %d", pid)) {
		t.Fatalf("the writer holder, while it writes: %q, %v", holder, err)
	}
	if err := old.Ping(ctx); err != nil {
		t.Fatalf("ping the writer's connection: %v", err)
	}
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1, 10000)", pid); err != nil {
		t.Fatal(err)
	}
	if holder, err := reader.WriterHolder(ctx); err != nil || holder != "" {
		t.Fatalf("the writer holder, once its session ended: %q, %v", holder, err)
	}
	if err := old.Ping(ctx); err == nil {
		t.Fatal("a writer whose session ended answers a ping")
	}
	next := openWriter(t, dsn, "a")
	if err := old.Commit(ctx, batch(2, 2)); err == nil {
		t.Fatal("a writer whose session ended committed")
	}
	st, err := next.State(ctx)
	if err != nil || st.TreeSize != 2 {
		t.Fatalf("state %+v, %v", st, err)
	}
	if err := next.Commit(ctx, batch(2, 2)); err != nil {
		t.Fatal(err)
	}
}

func TestDurabilityRequired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Shared(t)
	for _, setting := range []string{"off", "local"} {
		dsn := srv.NewDatabase(t)
		db := dsn[strings.LastIndexByte(dsn, '/')+1 : strings.IndexByte(dsn, '?')]
		srv.Exec(t, db, "ALTER DATABASE "+db+" SET synchronous_commit = "+setting)
		_, err := postgres.Open(ctx, dsn, "a", postgres.Options{})
		if !errors.Is(err, postgres.ErrNotDurable) || !strings.Contains(err.Error(), "synchronous_commit") {
			t.Errorf("synchronous_commit = %s: %v, want ErrNotDurable", setting, err)
		}
	}
	// remote_write waits for the local flush too.
	dsn := srv.NewDatabase(t)
	db := dsn[strings.LastIndexByte(dsn, '/')+1 : strings.IndexByte(dsn, '?')]
	srv.Exec(t, db, "ALTER DATABASE "+db+" SET synchronous_commit = remote_write")
	openWriter(t, dsn, "a")
}

func TestFsyncOffRefused(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"fsync": "off"}})
	dsn := srv.NewDatabase(t)
	_, err := postgres.Open(context.Background(), dsn, "a", postgres.Options{})
	if !errors.Is(err, postgres.ErrNotDurable) || !strings.Contains(err.Error(), "fsync") {
		t.Fatalf("fsync off: %v, want ErrNotDurable", err)
	}
}

func TestSchemaChecked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Shared(t)
	dsn := srv.NewDatabase(t)
	db := dsn[strings.LastIndexByte(dsn, '/')+1 : strings.IndexByte(dsn, '?')]
	w := openWriter(t, dsn, "a")
	snap, err := w.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := snap.CheckFile(ctx); err != nil || len(problems) != 0 {
		t.Fatalf("a new database's schema: %q, %v", problems, err)
	}
	snap.Close()
	w.Close()
	srv.Exec(t, db, `DROP INDEX bastion.leaves_by_event;
		CREATE FUNCTION bastion.nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
		CREATE TRIGGER swallow BEFORE INSERT ON bastion.frames FOR EACH ROW EXECUTE FUNCTION bastion.nothing();
		ALTER TABLE bastion.leaves ADD COLUMN note text;
		ALTER TABLE bastion.head ENABLE ROW LEVEL SECURITY`)
	r, err := postgres.Open(ctx, dsn, "a", postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	snap, err = r.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	problems, err := snap.CheckFile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(problems, "\n")
	for _, want := range []string{"index leaves_by_event is missing", "trigger swallow on frames", "function nothing", "table leaves differs", "table head differs"} {
		if !strings.Contains(text, want) {
			t.Errorf("CheckFile does not report %q:\n%s", want, text)
		}
	}
	if _, err := postgres.Open(ctx, dsn, "a", postgres.Options{}); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("a writer on a changed schema: %v, want ErrCorrupt", err)
	}
}

func TestOpenRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Shared(t)
	empty := srv.NewDatabase(t)
	if _, err := postgres.Open(ctx, empty, "a", postgres.Options{ReadOnly: true}); !errors.Is(err, storage.ErrNotJournal) {
		t.Errorf("reader of a database without the schema: %v, want ErrNotJournal", err)
	}
	if _, err := postgres.Open(ctx, empty, "a", postgres.Options{MustExist: true}); !errors.Is(err, postgres.ErrNoLog) {
		t.Errorf("writer that must find its log, in an empty database: %v, want ErrNoLog", err)
	}
	w := openWriter(t, empty, "a")
	if err := w.Init(ctx, map[string]string{"verifier_key": "k1"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := postgres.Open(ctx, empty, "b", postgres.Options{ReadOnly: true}); !errors.Is(err, postgres.ErrNoLog) {
		t.Errorf("reader of a log that does not exist: %v, want ErrNoLog", err)
	}
	if _, err := postgres.Open(ctx, empty, "a", postgres.Options{RequireMeta: map[string]string{"verifier_key": "k2"}}); !errors.Is(err, storage.ErrOtherLog) {
		t.Errorf("writer with another key: %v, want ErrOtherLog", err)
	}
	s, err := postgres.Open(ctx, empty, "a", postgres.Options{MustExist: true, RequireMeta: map[string]string{"verifier_key": "k1"}})
	if err != nil {
		t.Errorf("writer of its own log: %v", err)
	} else {
		s.Close()
	}
	for _, name := range []string{"", " a", "a\nb", strings.Repeat("x", 201)} {
		if _, err := postgres.Open(ctx, empty, name, postgres.Options{}); err == nil || !strings.Contains(err.Error(), "log name") {
			t.Errorf("log name %q: %v", name, err)
		}
	}
	other := srv.NewDatabase(t)
	db := other[strings.LastIndexByte(other, '/')+1 : strings.IndexByte(other, '?')]
	srv.Exec(t, db, "CREATE SCHEMA bastion; CREATE TABLE bastion.accounts (id int)")
	if _, err := postgres.Open(ctx, other, "a", postgres.Options{}); !errors.Is(err, storage.ErrNotJournal) {
		t.Errorf("writer on a schema bastion of something else: %v, want ErrNotJournal", err)
	}
	if _, err := postgres.Open(ctx, "postgres://nobody:secret@127.0.0.1:1/none?connect_timeout=2", "a", postgres.Options{}); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("unreachable database: %v (the password must not show)", err)
	}
}

// TestManyFrames commits enough frames in one batch to go through COPY.
func TestManyFrames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := openWriter(t, pgtest.Shared(t).NewDatabase(t), "a")
	b := batch(1, 0)
	for i := 1; i <= 1000; i++ {
		b.Frames = append(b.Frames, storage.Frame{Session: 1, Seq: int64(i), Kind: 2, MonoNS: int64(i), WallNS: int64(i), Payload: bytes.Repeat([]byte{byte(i)}, 100), Chain: make([]byte, 32)})
	}
	start := time.Now()
	if err := w.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	t.Logf("1000 frames of 100 bytes in one commit: %v", time.Since(start))
	snap, err := w.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var n int64
	if err := snap.Frames(ctx, 1, func(f *storage.Frame) error {
		n++
		if f.Seq != n || !bytes.Equal(f.Payload, bytes.Repeat([]byte{byte(n)}, 100)) {
			return fmt.Errorf("frame %d read back as %+v", n, f)
		}
		return nil
	}); err != nil || n != 1000 {
		t.Fatalf("%d frames, %v", n, err)
	}
	// A duplicate among many fails the whole batch.
	bad := batch(2, 2)
	for i := 1; i <= 300; i++ {
		bad.Frames = append(bad.Frames, storage.Frame{Session: 2, Seq: int64(i % 299), Payload: []byte("x"), Chain: make([]byte, 32)})
	}
	if err := w.Commit(ctx, bad); err == nil {
		t.Fatal("a batch with duplicate frames committed")
	}
	if st, err := w.State(ctx); err != nil || st.TreeSize != 2 || st.NextSession != 2 {
		t.Fatalf("state after a failed commit %+v, %v", st, err)
	}
}

// batch starts session num at leaf idx: two leaves, their hashes, a head.
func batch(num, idx int64) *storage.Batch {
	return &storage.Batch{
		NewSessions: []storage.Session{{Num: num, ID: bytes.Repeat([]byte{byte(num)}, 16), StartLeaf: idx}},
		Leaves: []storage.Leaf{
			{Index: idx, Type: 1, Session: num, Data: []byte("start")},
			{Index: idx + 1, Type: 2, Session: num, Data: []byte("segment")},
		},
		HashStart: idx,
		Hashes:    [][]byte{make([]byte, 32), make([]byte, 32)},
		Head:      &storage.Checkpoint{TreeSize: idx + 2, CreatedNS: 1, Note: []byte("head")},
	}
}

// TestWriterHolderIsTheDatabases: a reader asks whether its log's writer
// lock is held in its own database. Two databases on one server number
// their logs alike (the first is 1 in each): a writer of one must not make
// the other's log look written.
func TestWriterHolderIsTheDatabases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := pgtest.Shared(t)
	busy, idle := srv.NewDatabase(t), srv.NewDatabase(t)
	w := openWriter(t, busy, "a")
	defer w.Close()
	quiet := openWriter(t, idle, "a")
	if err := quiet.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := postgres.Open(ctx, idle, "a", postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if holder, err := r.WriterHolder(ctx); err != nil || holder != "" {
		t.Fatalf("the idle database's log: held by %q, %v; want no writer", holder, err)
	}
	rb, err := postgres.Open(ctx, busy, "a", postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	if holder, err := rb.WriterHolder(ctx); err != nil || holder == "" {
		t.Fatalf("the busy database's log: held by %q, %v; want its writer", holder, err)
	}
}

// TestRedact: nothing secret in a database URL shows, whether the password
// is in the user part or a parameter.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://bastion:s3cret@db.example:5432/journal?sslmode=verify-full":                 "postgres://bastion@db.example:5432/journal?sslmode=verify-full",
		"postgres://bastion@db.example/journal?password=s3cret&sslmode=require":                 "postgres://bastion@db.example/journal?sslmode=require",
		"postgresql://u@h/db?sslpassword=s3cret&sslkey=/k&passfile=/p&application_name=bastion": "postgresql://u@h/db?application_name=bastion",
		"postgres://:s3cret@h1,h2/db#frag":                                                      "postgres://@h1,h2/db",
		"not a url":                                                                             "the database",
	} {
		got := postgres.Redact(in)
		if got != want || strings.Contains(got, "s3cret") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
