package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/bastionhq/bastion/storage"
)

// Snapshot implements [storage.Store]: a read-only REPEATABLE READ
// transaction on a connection of its own, whose view is fixed before it
// returns.
func (s *Store) Snapshot(ctx context.Context) (storage.Snapshot, error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		c.Release()
		return nil, err
	}
	// The transaction's snapshot is taken at its first statement.
	if _, err := schemaVersion(ctx, tx); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		c.Release()
		return nil, err
	}
	return &snapshot{conn: c, tx: tx, log: s.logID}, nil
}

type snapshot struct {
	conn *pgxpool.Conn
	tx   pgx.Tx
	log  int32
}

var _ storage.Snapshot = (*snapshot)(nil)

func (s *snapshot) Close() error {
	err := s.tx.Rollback(context.Background())
	s.conn.Release()
	return err
}

func (s *snapshot) Meta(ctx context.Context) (map[string]string, error) {
	return readMeta(ctx, s.tx, s.log)
}

func (s *snapshot) TreeSize(ctx context.Context) (int64, error) { return treeSize(ctx, s.tx, s.log) }

func (s *snapshot) Leaves(ctx context.Context, from, to int64, fn func(storage.Leaf) error) error {
	if to == math.MaxInt64 {
		return s.leaves(ctx, fn, "AND idx >= $2 ORDER BY idx", from)
	}
	return s.leaves(ctx, fn, "AND idx >= $2 AND idx < $3 ORDER BY idx", from, to)
}

func (s *snapshot) SessionLeaves(ctx context.Context, session int64, fn func(storage.Leaf) error) error {
	return s.leaves(ctx, fn, "AND session = $2 ORDER BY idx", session)
}

func (s *snapshot) leaves(ctx context.Context, fn func(storage.Leaf) error, where string, args ...any) error {
	rows, err := s.tx.Query(ctx, "SELECT idx, type, session, event, data FROM bastion.leaves WHERE log_id = $1 "+where, append([]any{s.log}, args...)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var l storage.Leaf
		var typ int64
		var session *int64
		var event *string
		if err := rows.Scan(&l.Index, &typ, &session, &event, &l.Data); err != nil {
			return err
		}
		// The index columns are read as they are, for readers to
		// cross-check against Data: a value the recorder never writes
		// is reported, not an error that would stop a verifier.
		var bad []string
		if typ < 0 || typ > math.MaxUint8 {
			bad = append(bad, fmt.Sprintf("type %d is out of range 0..255", typ))
		} else {
			l.Type = uint8(typ)
		}
		l.Session = -1
		switch {
		case session == nil:
		case *session < 0:
			bad = append(bad, fmt.Sprintf("session %d is negative", *session))
		default:
			l.Session = *session
		}
		switch {
		case event == nil:
		case *event == "":
			bad = append(bad, "event holds an empty string, not NULL")
		default:
			l.Event = *event
		}
		l.Corrupt = strings.Join(bad, "; ")
		if err := fn(l); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *snapshot) Sessions(ctx context.Context) ([]storage.Session, error) {
	return s.sessions(ctx, "")
}

func (s *snapshot) SessionByID(ctx context.Context, id []byte) (*storage.Session, error) {
	list, err := s.sessions(ctx, "AND id = $2", id)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, storage.ErrNotFound
	}
	return &list[0], nil
}

func (s *snapshot) sessions(ctx context.Context, where string, args ...any) ([]storage.Session, error) {
	rows, err := s.tx.Query(ctx, "SELECT num, id, start_leaf FROM bastion.sessions WHERE log_id = $1 "+where+" ORDER BY num", append([]any{s.log}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.Session
	for rows.Next() {
		var se storage.Session
		if err := rows.Scan(&se.Num, &se.ID, &se.StartLeaf); err != nil {
			return nil, err
		}
		if se.Num < 0 {
			se.Corrupt = fmt.Sprintf("num %d is negative", se.Num)
		}
		out = append(out, se)
	}
	return out, rows.Err()
}

func (s *snapshot) FrameSessions(ctx context.Context) ([]int64, error) {
	rows, err := s.tx.Query(ctx, "SELECT DISTINCT session FROM bastion.frames WHERE log_id = $1 ORDER BY session", s.log)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

func (s *snapshot) LastSeq(ctx context.Context, session int64) (int64, error) {
	var n int64
	err := s.tx.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM bastion.frames WHERE log_id = $1 AND session = $2", s.log, session).Scan(&n)
	return n, err
}

func (s *snapshot) Frames(ctx context.Context, session int64, fn func(*storage.Frame) error) error {
	return s.frames(ctx, session, fn, "")
}

func (s *snapshot) FrameRange(ctx context.Context, session, from, to int64, fn func(*storage.Frame) error) error {
	return s.frames(ctx, session, fn, " AND seq >= $3 AND seq < $4", from, to)
}

func (s *snapshot) frames(ctx context.Context, session int64, fn func(*storage.Frame) error, where string, args ...any) error {
	rows, err := s.tx.Query(ctx, "SELECT seq, kind, channel, mono_ns, wall_ns, payload, chain FROM bastion.frames WHERE log_id = $1 AND session = $2"+where+" ORDER BY seq",
		append([]any{s.log, session}, args...)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	f := storage.Frame{Session: session}
	var kind, channel int64
	for rows.Next() {
		if err := rows.Scan(&f.Seq, &kind, &channel, &f.MonoNS, &f.WallNS, &f.Payload, &f.Chain); err != nil {
			return fmt.Errorf("read frame of session %d: %w", session, err)
		}
		if err := checkFrame(session, f.Seq, kind, channel); err != nil {
			return err
		}
		f.Kind, f.Channel = uint8(kind), uint32(channel)
		if err := fn(&f); err != nil {
			return err
		}
	}
	return rows.Err()
}

// checkFrame checks that a frame's columns hold values a Frame can carry.
// The database keeps their types; their ranges are wider than a frame's.
func checkFrame(session, seq, kind, channel int64) error {
	var col, problem string
	switch {
	case seq < 0:
		col, problem = "seq", fmt.Sprintf("%d is out of range 0..%d", seq, int64(math.MaxInt64))
	case kind < 0 || kind > math.MaxUint8:
		col, problem = "kind", fmt.Sprintf("%d is out of range 0..255", kind)
	case channel < 0 || channel > math.MaxUint32:
		col, problem = "channel", fmt.Sprintf("%d is out of range 0..%d", channel, uint32(math.MaxUint32))
	default:
		return nil
	}
	// A frame's row is named by its seq: the primary key.
	return &storage.CorruptFrameError{Session: session, Seq: seq, Row: seq, Column: col, Problem: problem}
}

func (s *snapshot) FrameAt(ctx context.Context, session, monoNS int64) (int64, error) {
	hi, err := s.LastSeq(ctx, session)
	if err != nil {
		return 0, err
	}
	// The last seq in [1, hi] whose mono_ns <= monoNS, over the primary
	// key: about log2(frames) point lookups.
	lo := int64(0) // invariant: frame lo is at or before monoNS (0: none is)
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		var mono int64
		err := s.tx.QueryRow(ctx, "SELECT mono_ns FROM bastion.frames WHERE log_id = $1 AND session = $2 AND seq = $3", s.log, session, mid).Scan(&mono)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// A gap (a deleted frame): search below it; verification
			// reports the gap.
			hi = mid - 1
			continue
		case err != nil:
			return 0, err
		}
		if mono <= monoNS {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}

func (s *snapshot) Hashes(ctx context.Context, indexes []int64) ([][]byte, error) {
	return readHashes(ctx, s.tx, s.log, indexes)
}

func (s *snapshot) TreeHashes(ctx context.Context, fn func(int64, []byte) error) error {
	rows, err := s.tx.Query(ctx, "SELECT idx, hash FROM bastion.tree_hashes WHERE log_id = $1 ORDER BY idx", s.log)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var idx int64
		var h []byte
		if err := rows.Scan(&idx, &h); err != nil {
			return err
		}
		if err := fn(idx, h); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (s *snapshot) Published(ctx context.Context) ([]storage.Checkpoint, error) {
	rows, err := s.tx.Query(ctx, "SELECT tree_size, created_ns, note FROM bastion.checkpoints WHERE log_id = $1 ORDER BY tree_size", s.log)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storage.Checkpoint
	for rows.Next() {
		var c storage.Checkpoint
		if err := rows.Scan(&c.TreeSize, &c.CreatedNS, &c.Note); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *snapshot) Head(ctx context.Context) (*storage.Checkpoint, error) {
	return readHead(ctx, s.tx, s.log)
}

func (s *snapshot) PayloadBytes(ctx context.Context) (int64, error) {
	var n int64
	err := s.tx.QueryRow(ctx, "SELECT coalesce(sum(length(payload)), 0) FROM bastion.frames WHERE log_id = $1", s.log).Scan(&n)
	return n, err
}

// CheckFile implements [storage.Snapshot] for a database: what makes the
// bastion schema other than the one this package makes. The schema is
// shared by every log of the database, so a problem here concerns them
// all.
func (s *snapshot) CheckFile(ctx context.Context) ([]string, error) {
	return checkSchema(ctx, s.tx)
}

func readMeta(ctx context.Context, q querier, log int32) (map[string]string, error) {
	rows, err := q.Query(ctx, "SELECT key, value FROM bastion.meta WHERE log_id = $1", log)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, rows.Err()
}

// treeSize is the largest leaf index plus one (see storage's treeSize).
func treeSize(ctx context.Context, q querier, log int32) (int64, error) {
	var last *int64
	if err := q.QueryRow(ctx, "SELECT max(idx) FROM bastion.leaves WHERE log_id = $1", log).Scan(&last); err != nil {
		return 0, err
	}
	switch {
	case last == nil || *last < 0:
		return 0, nil
	case *last >= storage.MaxTreeSize:
		return storage.MaxTreeSize + 1, nil
	}
	return *last + 1, nil
}

func readHead(ctx context.Context, q querier, log int32) (*storage.Checkpoint, error) {
	var c storage.Checkpoint
	err := q.QueryRow(ctx, "SELECT tree_size, created_ns, note FROM bastion.head WHERE log_id = $1", log).Scan(&c.TreeSize, &c.CreatedNS, &c.Note)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// readHashes reads stored hashes in one query; a missing index is
// storage.ErrNotFound.
func readHashes(ctx context.Context, q querier, log int32, indexes []int64) ([][]byte, error) {
	if len(indexes) == 0 {
		return [][]byte{}, nil
	}
	rows, err := q.Query(ctx, "SELECT idx, hash FROM bastion.tree_hashes WHERE log_id = $1 AND idx = ANY($2)", log, indexes)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byIdx := make(map[int64][]byte, len(indexes))
	for rows.Next() {
		var idx int64
		var h []byte
		if err := rows.Scan(&idx, &h); err != nil {
			return nil, err
		}
		byIdx[idx] = h
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([][]byte, len(indexes))
	for i, idx := range indexes {
		h, ok := byIdx[idx]
		if !ok {
			return nil, fmt.Errorf("tree hash %d: %w", idx, storage.ErrNotFound)
		}
		out[i] = h
	}
	return out, nil
}
