// Package postgres is the PostgreSQL [storage.Store]: several logs in one
// database, each written by one process at a time, through
// github.com/jackc/pgx/v5.
//
// # Logs
//
// A database holds the logs of several serve instances, each with its own
// origin and signing key. Every table is keyed by the log's id (see
// bastion.logs), and a [Store] is opened on one log by name: it reads and
// writes that log's rows only, and two stores on two logs never contend.
//
// # One writer per log
//
// A writer holds a session-level advisory lock on its log for as long as
// the store is open, on the one connection all its writes go through: a
// write is never made without the lock, and the lock goes when that
// session ends, whether the store is closed or its process killed. A
// second writer gets a [*storage.LockedError] naming the holder, whose
// description the writer keeps in its log's row.
//
// # Durability
//
// A commit returns only once PostgreSQL has flushed it to its WAL: a
// writer refuses a server whose fsync or full_page_writes is off, or whose
// synchronous_commit (for the writer's role and database) is off or local,
// and sets synchronous_commit = on for its own session.
//
// # Snapshots
//
// A [storage.Snapshot] is a read-only REPEATABLE READ transaction on a
// connection of its own, taken when it is opened: it sees every commit
// before and none after, and blocks no writer.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bastionhq/bastion/storage"
)

// ErrNoLog means the database holds no log of the name a reader (or a
// writer that must not create one) asked for.
var ErrNoLog = errors.New("no such log in the database")

// Options configure [Open].
type Options struct {
	// ReadOnly opens the log for reading only: no writer lock is taken,
	// and the log must exist.
	ReadOnly bool
	// MustExist, for a writer, refuses to create the log: a writer that
	// opens a log again after a fault must find the one that failed.
	MustExist bool
	// RequireMeta, for a writer, names metadata an existing log must hold
	// (see storage.Options RequireMeta): one that holds another value for
	// any of these keys is refused with storage.ErrOtherLog.
	RequireMeta map[string]string
	// MaxReaders bounds the connections snapshots use at once; 0 means 4.
	MaxReaders int32
}

// Store is a [storage.Store] on one log of a PostgreSQL database.
type Store struct {
	where string // the database (password hidden) and the log, for errors
	name  string // the log's name
	logID int32

	// mu guards w, nextLeaf, nextHash and nextKnown: pgx connections are
	// not safe for concurrent use, and Hashes may be called beside Commit.
	mu sync.Mutex
	// w is the writer's connection: it holds the log's advisory lock, and
	// every write goes through it. Nil when read-only.
	w *pgx.Conn
	// locked is set once w holds the log's writer lock.
	locked bool
	// nextLeaf and nextHash are the indexes the next batch must start at,
	// once nextKnown.
	nextLeaf, nextHash int64
	nextKnown          bool

	pool *pgxpool.Pool // snapshots' connections
}

var _ storage.Store = (*Store)(nil)

// IsLocation reports whether a journal location names a PostgreSQL
// database: a URL of scheme postgres or postgresql.
func IsLocation(loc string) bool {
	return strings.HasPrefix(loc, "postgres://") || strings.HasPrefix(loc, "postgresql://")
}

// shownParams are the URL query parameters Redact keeps: none of them
// holds or names a secret. Every other one (password, sslpassword, sslkey,
// passfile, service files and whatever the driver learns next) is dropped.
var shownParams = map[string]bool{
	"sslmode":              true,
	"connect_timeout":      true,
	"application_name":     true,
	"target_session_attrs": true,
}

// Redact returns what errors, logs and the journal may show of dsn: its
// scheme, user, hosts, database and the query parameters that hold no
// secret. The password, in the user part or as a parameter, never shows.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "the database"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	q := u.Query()
	for k := range q {
		if !shownParams[k] {
			q.Del(k)
		}
	}
	u.RawQuery = q.Encode()
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// Identity names the log called name in the database dsn names, the same
// whatever user, password or options connect to it: "postgres://HOST:PORT/
// DATABASE log NAME". What a writer remembers of a log outside the
// database (its latest checkpoint, against rollback) is filed under it.
func Identity(dsn, name string) (string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("journal %s: %w", Redact(dsn), err)
	}
	return fmt.Sprintf("postgres://%s/%s log %s", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), cfg.Database, name), nil
}

// CheckLogName says what is wrong with a log name, or nil: 1 to 200
// printable characters, no white space but spaces inside.
func CheckLogName(name string) error {
	switch {
	case name == "":
		return errors.New("log name is empty")
	case len(name) > 200:
		return fmt.Errorf("log name is %d bytes long, more than 200", len(name))
	case !utf8.ValidString(name):
		return errors.New("log name is not UTF-8")
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("log name %q begins or ends with white space", name)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("log name %q holds a character that is not printable", name)
		}
	}
	return nil
}

// Open opens the log called name in the PostgreSQL database dsn names (a
// URL or key=value connection string, as pgx reads it). A writer creates
// the schema and the log if needed (unless MustExist), refuses a server
// that does not make commits durable, and takes the log's writer lock,
// failing with a *storage.LockedError while another writer holds it.
func Open(ctx context.Context, dsn, name string, opts Options) (*Store, error) {
	if err := CheckLogName(name); err != nil {
		return nil, err
	}
	s := &Store{where: fmt.Sprintf("%s log %q", Redact(dsn), name), name: name}
	cfg, err := connConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", s.where, err)
	}
	if opts.ReadOnly {
		err = s.openReader(ctx, cfg, opts)
	} else {
		err = s.openWriter(ctx, cfg, opts)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open journal %s: %w", s.where, err)
	}
	return s, nil
}

// connConfig is the connection configuration dsn gives, with the
// application name "bastion" unless dsn names one: how the database's
// views (pg_stat_activity) tell bastion's connections.
func connConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "bastion"
	}
	return cfg, nil
}

// Logs lists the names of the logs in the database dsn names, sorted: what
// a reader of a whole cluster checks against its cluster file, so that no
// log is left out unnoticed. A database without bastion's schema holds
// none.
func Logs(ctx context.Context, dsn string) ([]string, error) {
	cfg, err := connConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("list logs in %s: %w", Redact(dsn), err)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("list logs in %s: %w", Redact(dsn), err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := schemaVersion(ctx, c); err != nil {
		return nil, fmt.Errorf("list logs in %s: %w", Redact(dsn), err)
	}
	rows, err := c.Query(ctx, "SELECT name FROM bastion.logs ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list logs in %s: %w", Redact(dsn), err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list logs in %s: %w", Redact(dsn), err)
	}
	return names, nil
}

func (s *Store) openWriter(ctx context.Context, cfg *pgx.ConnConfig, opts Options) error {
	w, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	s.w = w
	if err := checkDurable(ctx, w); err != nil {
		return err
	}
	if err := keepAlive(ctx, w); err != nil {
		return err
	}
	if err := migrate(ctx, w); err != nil {
		return err
	}
	// A writer adds to the schema it expects, or to nothing: a trigger,
	// a rule or a dropped index would change what it writes.
	if problems, err := checkSchema(ctx, w); err != nil || len(problems) > 0 {
		if err == nil {
			err = fmt.Errorf("%w: its schema was changed: %s", storage.ErrCorrupt, strings.Join(problems, "; "))
		}
		return err
	}
	id, found, err := logID(ctx, w, s.name)
	if err != nil {
		return err
	}
	if found {
		if err := checkMeta(ctx, w, id, opts.RequireMeta); err != nil {
			return err
		}
	} else {
		if opts.MustExist {
			return fmt.Errorf("%w: %q (it must exist: a writer opens again only the log that failed)", ErrNoLog, s.name)
		}
		err := w.QueryRow(ctx, `INSERT INTO bastion.logs (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id`, s.name).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) { // another writer made it meanwhile
			id, _, err = logID(ctx, w, s.name)
		}
		if err != nil {
			return fmt.Errorf("create log: %w", err)
		}
	}
	s.logID = id
	var locked bool
	if err := w.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", int32(lockClass), id).Scan(&locked); err != nil {
		return fmt.Errorf("lock log: %w", err)
	}
	if !locked {
		var holder string
		if err := w.QueryRow(ctx, "SELECT holder FROM bastion.logs WHERE id = $1", id).Scan(&holder); err != nil {
			holder = ""
		}
		return &storage.LockedError{Path: s.where, Holder: holder}
	}
	s.locked = true
	if _, err := w.Exec(ctx, "UPDATE bastion.logs SET holder = $2 WHERE id = $1", id, holderDescription(w)); err != nil {
		return fmt.Errorf("describe the writer: %w", err)
	}
	return s.openPool(ctx, cfg, opts)
}

func (s *Store) openReader(ctx context.Context, cfg *pgx.ConnConfig, opts Options) error {
	if err := s.openPool(ctx, cfg, opts); err != nil {
		return err
	}
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	if _, err := schemaVersion(ctx, c.Conn()); err != nil {
		return err
	}
	id, found, err := logID(ctx, c.Conn(), s.name)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrNoLog, s.name)
	}
	s.logID = id
	return nil
}

func (s *Store) openPool(ctx context.Context, cfg *pgx.ConnConfig, opts Options) error {
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return err
	}
	pcfg.ConnConfig = cfg.Copy()
	pcfg.MaxConns = opts.MaxReaders
	if pcfg.MaxConns <= 0 {
		pcfg.MaxConns = 4
	}
	pcfg.MinConns = 0
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	s.pool = pool
	return nil
}

// durabilitySettings are the server settings a writer requires, with the
// values that make a commit durable when it returns.
var durabilitySettings = []struct {
	name string
	ok   []string
	why  string
}{
	{"fsync", []string{"on"}, "without it a crash of the database's machine can lose or corrupt committed rows"},
	{"full_page_writes", []string{"on"}, "without it a crash can leave torn pages that recovery cannot repair"},
	// on, remote_write and remote_apply all wait for the local WAL flush,
	// and for a synchronous standby (if any) to have at least received
	// the commit. local does not wait for a standby, so a failover may
	// lose commits already forwarded; off does not even wait for the
	// local flush.
	{"synchronous_commit", []string{"on", "remote_write", "remote_apply"}, "a commit must be durable before its bytes are forwarded (record, then forward)"},
}

// checkDurable refuses a server or database whose settings let a commit
// return before it is durable, then forces synchronous_commit = on for the
// writer's own session, whatever its role or database defaults say.
func checkDurable(ctx context.Context, c *pgx.Conn) error {
	for _, d := range durabilitySettings {
		var v string
		if err := c.QueryRow(ctx, "SELECT current_setting($1)", d.name).Scan(&v); err != nil {
			return fmt.Errorf("read setting %s: %w", d.name, err)
		}
		ok := false
		for _, want := range d.ok {
			ok = ok || v == want
		}
		if !ok {
			return fmt.Errorf("%w: %s is %q, want %s: %s", ErrNotDurable, d.name, v, strings.Join(d.ok, " or "), d.why)
		}
	}
	if _, err := c.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		return err
	}
	var v string
	if err := c.QueryRow(ctx, "SHOW synchronous_commit").Scan(&v); err != nil || v != "on" {
		return fmt.Errorf("%w: synchronous_commit stays %q after SET, %v", ErrNotDurable, v, err)
	}
	return nil
}

// The writer's session asks the server to probe its connection when idle
// (TCP keepalives, where it comes over TCP): when the writer's machine or
// the network between them dies, the server ends the session, and with it
// the writer lock and any transaction still open, within
// keepAliveIdle + keepAliveCount x keepAliveInterval (about 11 s), not
// the operating system's default of two hours. Until then the log stays
// locked and a writer that takes over is refused. The server's own
// settings apply where they are shorter.
const (
	keepAliveIdle     = 5 // seconds
	keepAliveInterval = 2 // seconds
	keepAliveCount    = 3
)

func keepAlive(ctx context.Context, c *pgx.Conn) error {
	for _, set := range []struct {
		name  string
		value int
	}{{"tcp_keepalives_idle", keepAliveIdle}, {"tcp_keepalives_interval", keepAliveInterval}, {"tcp_keepalives_count", keepAliveCount}} {
		var cur int
		if err := c.QueryRow(ctx, "SELECT current_setting($1)::int", set.name).Scan(&cur); err != nil {
			return fmt.Errorf("read setting %s: %w", set.name, err)
		}
		// 0: the operating system's default (or not a TCP connection,
		// where the setting means nothing).
		if cur == 0 || cur > set.value {
			if _, err := c.Exec(ctx, "SELECT set_config($1, $2, false)", set.name, strconv.Itoa(set.value)); err != nil {
				return fmt.Errorf("set %s: %w", set.name, err)
			}
		}
	}
	return nil
}

// ErrNotDurable means the database lets a commit return before it is
// durable: a writer refuses it.
var ErrNotDurable = errors.New("the database does not make commits durable")

// migrate brings the shared schema to the newest version, under a lock so
// that writers of two logs starting at once do not both migrate.
func migrate(ctx context.Context, c *pgx.Conn) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, 0)", int32(lockClass)); err != nil {
		return fmt.Errorf("lock the schema: %w", err)
	}
	var exists, hasVersion bool
	var others int
	err = tx.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'bastion'),
		to_regclass('bastion.schema_version') IS NOT NULL,
		(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'bastion')`).Scan(&exists, &hasVersion, &others)
	if err != nil {
		return err
	}
	if exists && !hasVersion && others > 0 {
		return fmt.Errorf("%w: the database's schema bastion holds tables of something else", storage.ErrNotJournal)
	}
	if _, err := tx.Exec(ctx, bootstrap); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	version := 0
	err = tx.QueryRow(ctx, "SELECT version FROM bastion.schema_version WHERE one = 1").Scan(&version)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("%w: schema version %d, this bastion knows up to %d", storage.ErrSchemaTooNew, version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	if version < len(migrations) {
		if _, err := tx.Exec(ctx, `INSERT INTO bastion.schema_version (one, version) VALUES (1, $1)
			ON CONFLICT (one) DO UPDATE SET version = excluded.version`, len(migrations)); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// schemaVersion reads the schema's version: storage.ErrNotJournal when
// the database has none, storage.ErrSchemaTooNew when it is newer than
// this package knows.
func schemaVersion(ctx context.Context, q querier) (int, error) {
	var present bool
	if err := q.QueryRow(ctx, "SELECT to_regclass('bastion.schema_version') IS NOT NULL").Scan(&present); err != nil {
		return 0, err
	}
	if !present {
		return 0, fmt.Errorf("%w: the database has no bastion schema", storage.ErrNotJournal)
	}
	var v int
	err := q.QueryRow(ctx, "SELECT version FROM bastion.schema_version WHERE one = 1").Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && v < 1) {
		return 0, fmt.Errorf("%w: the bastion schema has no version", storage.ErrNotJournal)
	}
	if err != nil {
		return 0, err
	}
	if v > len(migrations) {
		return 0, fmt.Errorf("%w: schema version %d, this bastion knows up to %d", storage.ErrSchemaTooNew, v, len(migrations))
	}
	return v, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func logID(ctx context.Context, q querier, name string) (id int32, found bool, err error) {
	err = q.QueryRow(ctx, "SELECT id FROM bastion.logs WHERE name = $1", name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return id, true, nil
}

func checkMeta(ctx context.Context, q querier, id int32, want map[string]string) error {
	if len(want) == 0 {
		return nil
	}
	meta, err := readMeta(ctx, q, id)
	if err != nil {
		return err
	}
	for k, v := range want {
		if got, ok := meta[k]; ok && got != v {
			return fmt.Errorf("%w: its %s is %q, not %q", storage.ErrOtherLog, k, got, v)
		}
	}
	return nil
}

// holderDescription describes this process for the error a second writer
// gets: its pid, command and host, the time, and its database session.
func holderDescription(c *pgx.Conn) string {
	host, _ := os.Hostname()
	name := "unknown"
	if len(os.Args) > 0 {
		name = os.Args[0]
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
		if len(os.Args) > 1 {
			name += " " + os.Args[1]
		}
	}
	return fmt.Sprintf("pid %d (%s) on %s since %s, database session %d",
		os.Getpid(), name, host, time.Now().UTC().Format(time.RFC3339), c.PgConn().PID())
}

// WriterHolder describes the writer that holds the log's writer lock now
// (as a refused writer is told), or returns "" when none does: a writer
// killed, or cut off, loses the lock with its database session, so a
// reader learns from it whether sessions without an end are still being
// recorded. Any store on the log may ask, a reader's too.
func (s *Store) WriterHolder(ctx context.Context) (string, error) {
	if s.pool == nil {
		return "", errors.New("the store is closed")
	}
	var held bool
	var holder string
	err := s.pool.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 2),
		coalesce((SELECT holder FROM bastion.logs WHERE id = $2), '')`, int64(lockClass), int64(s.logID)).Scan(&held, &holder)
	if err != nil {
		return "", fmt.Errorf("journal %s: who writes the log: %w", s.where, err)
	}
	if !held {
		return "", nil
	}
	if holder == "" {
		holder = "a writer"
	}
	return holder, nil
}

// Name is the log's name.
func (s *Store) Name() string { return s.name }

// Init implements [storage.Store].
func (s *Store) Init(ctx context.Context, meta map[string]string) error {
	if s.w == nil {
		return storage.ErrReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.w.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM bastion.meta WHERE log_id = $1", s.logID).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return errors.New("journal is already initialized")
	}
	for k, v := range meta {
		if _, err := tx.Exec(ctx, "INSERT INTO bastion.meta (log_id, key, value) VALUES ($1, $2, $3)", s.logID, k, v); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// State implements [storage.Store].
func (s *Store) State(ctx context.Context) (*storage.State, error) {
	if s.w == nil {
		return nil, storage.ErrReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.w.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	st := &storage.State{}
	if st.Meta, err = readMeta(ctx, tx, s.logID); err != nil {
		return nil, err
	}
	if st.TreeSize, err = treeSize(ctx, tx, s.logID); err != nil {
		return nil, err
	}
	err = tx.QueryRow(ctx, `SELECT
		coalesce((SELECT max(idx) + 1 FROM bastion.tree_hashes WHERE log_id = $1), 0),
		greatest(coalesce((SELECT max(num) FROM bastion.sessions WHERE log_id = $1), 0),
			coalesce((SELECT max(session) FROM bastion.frames WHERE log_id = $1), 0),
			coalesce((SELECT max(session) FROM bastion.leaves WHERE log_id = $1 AND session IS NOT NULL), 0)) + 1`,
		s.logID).Scan(&st.HashCount, &st.NextSession)
	if err != nil {
		return nil, err
	}
	if st.Head, err = readHead(ctx, tx, s.logID); err != nil {
		return nil, err
	}
	var c storage.Checkpoint
	err = tx.QueryRow(ctx, "SELECT tree_size, created_ns, note FROM bastion.checkpoints WHERE log_id = $1 ORDER BY tree_size DESC LIMIT 1", s.logID).Scan(&c.TreeSize, &c.CreatedNS, &c.Note)
	switch {
	case err == nil:
		st.Published = &c
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, err
	}
	return st, nil
}

// copyFramesFrom is the number of frames from which a commit sends them
// with COPY rather than in one INSERT of arrays: COPY costs a round trip
// of its own, which many frames repay.
const copyFramesFrom = 256

// Commit implements [storage.Store]: one transaction, whose statements
// go to the server in one round trip (or a COPY, for many frames). It
// returns once the commit is flushed to the server's WAL (see
// checkDurable). A commit whose context ends midway loses the writer's
// connection, and with it the lock: every later call fails, and the
// journal must be opened again.
func (s *Store) Commit(ctx context.Context, b *storage.Batch) (err error) {
	if s.w == nil {
		return storage.ErrReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i < len(b.Leaves); i++ {
		if b.Leaves[i].Index != b.Leaves[i-1].Index+1 {
			return fmt.Errorf("%w: leaf indexes not contiguous", storage.ErrConflict)
		}
	}
	tx, err := s.w.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	// The writer holds the log's lock, so the next indexes are read once
	// and then tracked here, not queried at every commit.
	if !s.nextKnown {
		err := tx.QueryRow(ctx, `SELECT
			coalesce((SELECT max(idx) + 1 FROM bastion.leaves WHERE log_id = $1), 0),
			coalesce((SELECT max(idx) + 1 FROM bastion.tree_hashes WHERE log_id = $1), 0)`, s.logID).Scan(&s.nextLeaf, &s.nextHash)
		if err != nil {
			return err
		}
		s.nextKnown = true
	}
	if len(b.Leaves) > 0 && b.Leaves[0].Index != s.nextLeaf {
		return fmt.Errorf("%w: first leaf index %d, journal has %d leaves", storage.ErrConflict, b.Leaves[0].Index, s.nextLeaf)
	}
	if len(b.Hashes) > 0 && b.HashStart != s.nextHash {
		return fmt.Errorf("%w: first tree hash index %d, journal has %d", storage.ErrConflict, b.HashStart, s.nextHash)
	}
	if len(b.Frames) >= copyFramesFrom {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{schemaName, "frames"},
			[]string{"log_id", "session", "seq", "kind", "channel", "mono_ns", "wall_ns", "payload", "chain"},
			pgx.CopyFromSlice(len(b.Frames), func(i int) ([]any, error) {
				f := &b.Frames[i]
				return []any{s.logID, f.Session, f.Seq, int64(f.Kind), int64(f.Channel), f.MonoNS, f.WallNS, f.Payload, f.Chain}, nil
			}))
		if err != nil {
			return fmt.Errorf("insert frames: %w", err)
		}
	}
	q := &pgx.Batch{}
	what := []string{}
	add := func(desc, sql string, args ...any) {
		q.Queue(sql, args...)
		what = append(what, desc)
	}
	if n := len(b.NewSessions); n > 0 {
		nums, starts, ids := make([]int64, n), make([]int64, n), make([][]byte, n)
		for i, se := range b.NewSessions {
			nums[i], ids[i], starts[i] = se.Num, se.ID, se.StartLeaf
		}
		add("insert sessions", `INSERT INTO bastion.sessions (log_id, num, id, start_leaf)
			SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::bigint[])`, s.logID, nums, ids, starts)
	}
	if n := len(b.Frames); n > 0 && n < copyFramesFrom {
		sess, seq, kind, ch, mono, wall := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		payload, chain := make([][]byte, n), make([][]byte, n)
		for i := range b.Frames {
			f := &b.Frames[i]
			sess[i], seq[i], kind[i], ch[i], mono[i], wall[i] = f.Session, f.Seq, int64(f.Kind), int64(f.Channel), f.MonoNS, f.WallNS
			payload[i], chain[i] = f.Payload, f.Chain
		}
		add("insert frames", `INSERT INTO bastion.frames (log_id, session, seq, kind, channel, mono_ns, wall_ns, payload, chain)
			SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bytea[], $9::bytea[])`,
			s.logID, sess, seq, kind, ch, mono, wall, payload, chain)
	}
	if n := len(b.Leaves); n > 0 {
		idx, typ := make([]int64, n), make([]int64, n)
		session, event, data := make([]*int64, n), make([]*string, n), make([][]byte, n)
		for i := range b.Leaves {
			l := &b.Leaves[i]
			idx[i], typ[i], data[i] = l.Index, int64(l.Type), l.Data
			if l.Session >= 0 {
				session[i] = &l.Session
			}
			if l.Event != "" {
				event[i] = &l.Event
			}
		}
		add("insert leaves", `INSERT INTO bastion.leaves (log_id, idx, type, session, event, data)
			SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bytea[])`, s.logID, idx, typ, session, event, data)
	}
	if n := len(b.Hashes); n > 0 {
		idx := make([]int64, n)
		for i := range idx {
			idx[i] = b.HashStart + int64(i)
		}
		add("insert tree hashes", `INSERT INTO bastion.tree_hashes (log_id, idx, hash)
			SELECT $1, * FROM unnest($2::bigint[], $3::bytea[])`, s.logID, idx, b.Hashes)
	}
	if n := len(b.Published); n > 0 {
		size, created, note := make([]int64, n), make([]int64, n), make([][]byte, n)
		for i, c := range b.Published {
			size[i], created[i], note[i] = c.TreeSize, c.CreatedNS, c.Note
		}
		add("insert checkpoints", `INSERT INTO bastion.checkpoints (log_id, tree_size, created_ns, note)
			SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bytea[])`, s.logID, size, created, note)
	}
	for _, c := range b.Renotes {
		add(fmt.Sprintf("add cosignatures to checkpoint %d", c.TreeSize), `UPDATE bastion.checkpoints SET note = $3
			WHERE log_id = $1 AND tree_size = $2 AND substring($3::bytea FROM 1 FOR length(note)) = note`, s.logID, c.TreeSize, c.Note)
	}
	if h := b.Head; h != nil {
		add("store head checkpoint", `INSERT INTO bastion.head (log_id, tree_size, created_ns, note) VALUES ($1, $2, $3, $4)
			ON CONFLICT (log_id) DO UPDATE SET tree_size = excluded.tree_size, created_ns = excluded.created_ns, note = excluded.note`,
			s.logID, h.TreeSize, h.CreatedNS, h.Note)
		// The other members of a cluster follow this log: the
		// notification is delivered when (and only if) the commit is.
		add("notify the log's followers", `SELECT pg_notify($1, $2)`, NotifyChannel, s.name)
	}
	if q.Len() > 0 {
		br := tx.SendBatch(ctx, q)
		for _, desc := range what {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return fmt.Errorf("%s: %w", desc, err)
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if n := len(b.Leaves); n > 0 {
		s.nextLeaf = b.Leaves[n-1].Index + 1
	}
	s.nextHash += int64(len(b.Hashes))
	return nil
}

// Ping implements [storage.Pinger]: a round trip on the writer's
// connection. A writer busy committing answers nil at once (the commit
// tells); a reader, or a closed store, answers nil.
func (s *Store) Ping(ctx context.Context) error {
	if !s.mu.TryLock() {
		return nil
	}
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	if err := s.w.Ping(ctx); err != nil {
		return fmt.Errorf("journal %s: %w", s.where, err)
	}
	return nil
}

var _ storage.Pinger = (*Store)(nil)

// Hashes implements [storage.Store].
func (s *Store) Hashes(ctx context.Context, indexes []int64) ([][]byte, error) {
	if s.w != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return readHashes(ctx, s.w, s.logID, indexes)
	}
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	return readHashes(ctx, c.Conn(), s.logID, indexes)
}

// Close implements [storage.Store]. Closing the writer's connection ends
// its session, and with it the writer lock.
func (s *Store) Close() error {
	var errs []error
	if s.pool != nil {
		s.pool.Close()
		s.pool = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if s.locked && !s.w.IsClosed() {
			// Best effort: the description of a writer that is gone
			// would mislead nobody (a refused writer reads it only
			// while the lock is held), but an empty one is plainer.
			_, _ = s.w.Exec(ctx, "UPDATE bastion.logs SET holder = '' WHERE id = $1", s.logID)
			// Let go of the lock before the connection: the server ends
			// a closed connection's session (and its locks) a moment
			// after Close returns, and a writer opened at once (a
			// restart, the next test) would be refused meanwhile.
			_, _ = s.w.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", int32(lockClass), s.logID)
		}
		errs = append(errs, s.w.Close(ctx))
		s.w = nil
	}
	return errors.Join(errs...)
}
