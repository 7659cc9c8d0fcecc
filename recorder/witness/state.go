package witness

// The witness's SQLite state.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver
	"golang.org/x/mod/sumdb/tlog"
)

// MaxRefusals bounds the refusals a witness keeps per log; past it, it
// only counts them (Refusal rows are deduplicated first, so this many
// different refused checkpoints).
const MaxRefusals = 1000

// ErrNotCosigned is returned by [State.Latest] for a log the witness has
// cosigned nothing for.
var ErrNotCosigned = errors.New("no checkpoint cosigned")

// schema is the state's tables. Rows of cosigned are never changed or
// deleted: they are the witness's record of what it vouched for.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;
-- Every checkpoint the witness cosigned, in order.
CREATE TABLE IF NOT EXISTS cosigned (
	id          INTEGER PRIMARY KEY,
	origin      TEXT NOT NULL,
	size        INTEGER NOT NULL CHECK (size >= 0),
	root        BLOB NOT NULL CHECK (length(root) = 32),
	received    BLOB NOT NULL, -- the checkpoint note as the log sent it
	log_lines   TEXT NOT NULL, -- its signature lines that verified with a log key
	cosignature TEXT NOT NULL, -- the witness's own signature line
	time        INTEGER NOT NULL -- the cosignature's timestamp, Unix seconds
) STRICT;
CREATE INDEX IF NOT EXISTS cosigned_origin ON cosigned (origin, size);
-- The latest cosigned checkpoint of each log, and how many refusals were
-- not kept for lack of room.
CREATE TABLE IF NOT EXISTS logs (
	origin           TEXT PRIMARY KEY,
	latest           INTEGER NOT NULL REFERENCES cosigned (id),
	refusals_dropped INTEGER NOT NULL DEFAULT 0
) STRICT;
-- Validly signed checkpoints refused as a rollback or a fork of what was
-- cosigned: evidence against the log, one row per checkpoint and reason.
CREATE TABLE IF NOT EXISTS refusals (
	id         INTEGER PRIMARY KEY,
	origin     TEXT NOT NULL,
	size       INTEGER NOT NULL,
	root       BLOB NOT NULL,
	reason     TEXT NOT NULL,
	status     INTEGER NOT NULL, -- the HTTP status answered
	received   BLOB NOT NULL,    -- the first such checkpoint note, as sent
	first_seen INTEGER NOT NULL, -- Unix seconds
	last_seen  INTEGER NOT NULL,
	count      INTEGER NOT NULL,
	UNIQUE (origin, size, root, reason)
) STRICT;
`

// State is a witness's state in a SQLite file (WAL): per log, every
// checkpoint it cosigned and the latest, and the refusals kept as
// evidence. A State opened read-only (by "witness latest") can read it
// while the witness runs.
type State struct {
	db *sql.DB
}

// Cosigned is a checkpoint the witness cosigned.
type Cosigned struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	// Received is the checkpoint note as the log sent it.
	Received []byte
	// Checkpoint is the note as the witness publishes it: the
	// checkpoint's text, the lines that verified with the log's keys,
	// and the witness's cosignature line.
	Checkpoint []byte
	// Line is the witness's cosignature line.
	Line SigLine
	Time time.Time
}

// Refusal is a validly signed checkpoint the witness refused because it
// contradicts what the witness cosigned.
type Refusal struct {
	Origin              string
	Size                int64
	Root                tlog.Hash
	Reason              string
	Status              int
	Received            []byte
	FirstSeen, LastSeen time.Time
	Count               int64
}

func stateDSN(path string, readOnly bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", "10000")
	q.Set("_foreign_keys", "true")
	if readOnly {
		q.Set("mode", "ro")
		q.Set("_query_only", "true")
	} else {
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", "FULL")
		q.Set("_txlock", "immediate")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// OpenState opens the state at path for writing, creating it (mode 0600)
// if needed. identity is the witness's verifier key: a state made by one
// key is never used with another, since what it records is what that key
// vouched for.
func OpenState(ctx context.Context, path, identity string) (*State, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("witness state: %w", err)
	}
	f.Close()
	db, err := sql.Open("sqlite3", stateDSN(path, false))
	if err != nil {
		return nil, fmt.Errorf("witness state %s: %w", path, err)
	}
	// One connection: every write is one transaction after another.
	db.SetMaxOpenConns(1)
	s := &State{db: db}
	if err := s.init(ctx, identity); err != nil {
		db.Close()
		return nil, fmt.Errorf("witness state %s: %w", path, err)
	}
	return s, nil
}

func (s *State) init(ctx context.Context, identity string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return err
	}
	var have string
	switch err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'witness_key'`).Scan(&have); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('witness_key', ?)`, identity); err != nil {
			return err
		}
	case err != nil:
		return err
	case have != identity:
		return fmt.Errorf("it records what the key %s cosigned, not %s", have, identity)
	}
	return tx.Commit()
}

// OpenStateReadOnly opens the state at path for reading only.
func OpenStateReadOnly(ctx context.Context, path string) (*State, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("witness state: %w", err)
	}
	db, err := sql.Open("sqlite3", stateDSN(path, true))
	if err != nil {
		return nil, fmt.Errorf("witness state %s: %w", path, err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM meta WHERE key = 'witness_key'`).Scan(&n); err != nil || n != 1 {
		db.Close()
		if err == nil {
			err = errors.New("no witness key recorded")
		}
		return nil, fmt.Errorf("witness state %s is not a witness's state: %w", path, err)
	}
	return &State{db: db}, nil
}

// Close closes the database.
func (s *State) Close() error { return s.db.Close() }

// Key is the witness's verifier key the state was made by.
func (s *State) Key(ctx context.Context) (string, error) {
	var k string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'witness_key'`).Scan(&k)
	return k, err
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const cosignedColumns = `c.origin, c.size, c.root, c.received, c.log_lines, c.cosignature, c.time`

// Latest returns the latest checkpoint cosigned for origin, or an error
// wrapping ErrNotCosigned.
func (s *State) Latest(ctx context.Context, origin string) (*Cosigned, error) {
	return latest(ctx, s.db, origin)
}

func latest(ctx context.Context, q querier, origin string) (*Cosigned, error) {
	row := q.QueryRowContext(ctx, `SELECT `+cosignedColumns+` FROM logs l JOIN cosigned c ON c.id = l.latest WHERE l.origin = ?`, origin)
	c, err := scanCosigned(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w for %q", ErrNotCosigned, origin)
	}
	return c, err
}

// History returns every checkpoint cosigned for origin, oldest first.
func (s *State) History(ctx context.Context, origin string) ([]*Cosigned, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+cosignedColumns+` FROM cosigned c WHERE c.origin = ? ORDER BY c.id`, origin)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Cosigned
	for rows.Next() {
		c, err := scanCosigned(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func scanCosigned(scan func(...any) error) (*Cosigned, error) {
	var c Cosigned
	var root []byte
	var logLines, line string
	var ts int64
	if err := scan(&c.Origin, &c.Size, &root, &c.Received, &logLines, &line, &ts); err != nil {
		return nil, err
	}
	if len(root) != len(c.Root) {
		return nil, fmt.Errorf("witness state: cosigned root of %d bytes", len(root))
	}
	copy(c.Root[:], root)
	lines, err := ParseSignatureLines([]byte(line))
	if err != nil || len(lines) != 1 {
		return nil, fmt.Errorf("witness state: stored cosignature line: %v", err)
	}
	c.Line = lines[0]
	c.Time = time.Unix(ts, 0).UTC()
	text, _, _ := NoteSignatures(c.Received)
	if text == nil {
		return nil, errors.New("witness state: a stored checkpoint is not a signed note")
	}
	c.Checkpoint = append(append(append(append([]byte{}, text...), '\n'), logLines...), line...)
	return &c, nil
}

// Origins lists the logs the witness cosigned for, by origin.
func (s *State) Origins(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT origin FROM logs ORDER BY origin`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Refusals lists the refusals kept for origin, oldest first, and how many
// more were only counted.
func (s *State) Refusals(ctx context.Context, origin string) (kept []Refusal, dropped int64, err error) {
	rows, err := s.db.QueryContext(ctx, `SELECT origin, size, root, reason, status, received, first_seen, last_seen, count
		FROM refusals WHERE origin = ? ORDER BY id`, origin)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var r Refusal
		var root []byte
		var first, last int64
		if err := rows.Scan(&r.Origin, &r.Size, &root, &r.Reason, &r.Status, &r.Received, &first, &last, &r.Count); err != nil {
			return nil, 0, err
		}
		copy(r.Root[:], root)
		r.FirstSeen, r.LastSeen = time.Unix(first, 0).UTC(), time.Unix(last, 0).UTC()
		kept = append(kept, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	err = s.db.QueryRowContext(ctx, `SELECT refusals_dropped FROM logs WHERE origin = ?`, origin).Scan(&dropped)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return kept, dropped, err
}

// addCosigned records c as cosigned and as the latest for its origin.
func addCosigned(ctx context.Context, tx *sql.Tx, c *Cosigned, logLines string) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO cosigned (origin, size, root, received, log_lines, cosignature, time) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		c.Origin, c.Size, c.Root[:], c.Received, logLines, c.Line.String(), c.Time.Unix())
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO logs (origin, latest) VALUES (?, ?)
		ON CONFLICT (origin) DO UPDATE SET latest = excluded.latest`, c.Origin, id)
	return err
}

// addRefusal records r (Count and the times are set here), or counts it
// when the log has MaxRefusals kept already.
func addRefusal(ctx context.Context, tx *sql.Tx, r *Refusal, now time.Time) error {
	res, err := tx.ExecContext(ctx, `UPDATE refusals SET last_seen = ?, count = count + 1
		WHERE origin = ? AND size = ? AND root = ? AND reason = ?`, now.Unix(), r.Origin, r.Size, r.Root[:], r.Reason)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	var kept int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM refusals WHERE origin = ?`, r.Origin).Scan(&kept); err != nil {
		return err
	}
	if kept >= MaxRefusals {
		_, err := tx.ExecContext(ctx, `UPDATE logs SET refusals_dropped = refusals_dropped + 1 WHERE origin = ?`, r.Origin)
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO refusals (origin, size, root, reason, status, received, first_seen, last_seen, count)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)`, r.Origin, r.Size, r.Root[:], r.Reason, r.Status, r.Received, now.Unix(), now.Unix())
	return err
}
