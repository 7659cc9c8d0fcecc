// Package storagetest is the contract every storage backend must meet. A
// backend's tests call [Run] with a [Backend] that opens stores at fresh
// locations; the same suite then runs against every backend.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/bastionhq/bastion/storage"
)

// Backend opens stores of one kind.
type Backend struct {
	// NewLocation returns a fresh, empty place for a journal (a file
	// path for SQLite).
	NewLocation func(t *testing.T) string
	// Open opens the journal at loc, for writing unless readOnly.
	Open func(ctx context.Context, loc string, readOnly bool) (storage.Store, error)
	// OtherLog, for a backend that keeps several logs in one place (a
	// PostgreSQL database), returns a fresh location for another log
	// beside the one at loc. Nil for a backend of one log per place.
	OtherLog func(t *testing.T, loc string) string
}

// Run runs the contract suite.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"EmptyState", testEmptyState},
		{"InitOnce", testInitOnce},
		{"CommitAndRead", testCommitAndRead},
		{"LeafIndexMustExtend", testLeafIndexMustExtend},
		{"FailedCommitWritesNothing", testFailedCommitWritesNothing},
		{"SnapshotIsolation", testSnapshotIsolation},
		{"HeadReplacedPublishedKept", testHeadAndPublished},
		{"OneWriter", testOneWriter},
		{"ReadOnly", testReadOnly},
		{"Reopen", testReopen},
		{"FrameRangeAndAt", testFrameRangeAndAt},
	}
	if b.OtherLog != nil {
		tests = append(tests, struct {
			name string
			fn   func(t *testing.T, b Backend)
		}{"LogsIsolated", testLogsIsolated})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, b) })
	}
}

func open(t *testing.T, b Backend, loc string, ro bool) storage.Store {
	t.Helper()
	s, err := b.Open(context.Background(), loc, ro)
	if err != nil {
		t.Fatalf("open %s (read-only %v): %v", loc, ro, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func snapshot(t *testing.T, s storage.Store) storage.Snapshot {
	t.Helper()
	snap, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snap.Close() })
	return snap
}

var meta = map[string]string{"format": "test", "origin": "example/test"}

func hash(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 32) }

// batch returns a batch that starts session num at leaf index idx with n
// frames, one segment leaf, and a head checkpoint.
func batch(num, idx int64, n int) *storage.Batch {
	b := &storage.Batch{
		NewSessions: []storage.Session{{Num: num, ID: bytes.Repeat([]byte{byte(num)}, 16), StartLeaf: idx}},
		Leaves: []storage.Leaf{
			{Index: idx, Type: 1, Session: num, Data: []byte(fmt.Sprint("start ", num))},
			{Index: idx + 1, Type: 2, Session: num, Data: []byte(fmt.Sprint("segment ", num))},
		},
		HashStart: idx,
		Hashes:    [][]byte{hash(int(idx)), hash(int(idx + 1))},
		Head:      &storage.Checkpoint{TreeSize: idx + 2, CreatedNS: 5, Note: []byte(fmt.Sprint("head ", idx+2))},
	}
	for i := 1; i <= n; i++ {
		b.Frames = append(b.Frames, storage.Frame{Session: num, Seq: int64(i), Kind: 2, Channel: 0, MonoNS: int64(i), WallNS: int64(i * 10), Payload: []byte(fmt.Sprintf("%03d", i)), Chain: hash(i)})
	}
	return b
}

func testEmptyState(t *testing.T, b Backend) {
	s := open(t, b, b.NewLocation(t), false)
	st, err := s.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Meta) != 0 || st.TreeSize != 0 || st.HashCount != 0 || st.NextSession != 1 || st.Head != nil || st.Published != nil {
		t.Fatalf("empty journal state: %+v", st)
	}
}

func testInitOnce(t *testing.T, b Backend) {
	ctx := context.Background()
	s := open(t, b, b.NewLocation(t), false)
	if err := s.Init(ctx, meta); err != nil {
		t.Fatal(err)
	}
	if err := s.Init(ctx, meta); err == nil {
		t.Fatal("second Init succeeded")
	}
	st, err := s.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Meta["origin"] != "example/test" {
		t.Fatalf("meta: %v", st.Meta)
	}
}

func testCommitAndRead(t *testing.T, b Backend) {
	ctx := context.Background()
	s := open(t, b, b.NewLocation(t), false)
	if err := s.Init(ctx, meta); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, batch(1, 0, 5)); err != nil {
		t.Fatal(err)
	}
	end := &storage.Batch{
		Leaves:    []storage.Leaf{{Index: 2, Type: 3, Session: 1, Data: []byte("end 1")}, {Index: 3, Type: 4, Session: -1, Event: "cert.issued", Data: []byte("event")}},
		HashStart: 2, Hashes: [][]byte{hash(2), hash(3)},
	}
	if err := s.Commit(ctx, end); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, batch(2, 4, 2)); err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, s)
	if n, err := snap.TreeSize(ctx); err != nil || n != 6 {
		t.Fatalf("tree size %d, %v", n, err)
	}
	var types []uint8
	err := snap.Leaves(ctx, 1, 5, func(l storage.Leaf) error {
		types = append(types, l.Type)
		return nil
	})
	if err != nil || !bytes.Equal(types, []byte{2, 3, 4, 1}) {
		t.Fatalf("leaves 1..4 types %v, %v", types, err)
	}
	var all []storage.Leaf
	if err := snap.Leaves(ctx, 0, 6, func(l storage.Leaf) error {
		l.Data = bytes.Clone(l.Data) // valid only during the call
		all = append(all, l)
		return nil
	}); err != nil || len(all) != 6 {
		t.Fatalf("leaves %+v, %v", all, err)
	}
	if ev := all[3]; ev.Index != 3 || ev.Event != "cert.issued" || ev.Session != -1 || ev.Type != 4 || string(ev.Data) != "event" || ev.Corrupt != "" {
		t.Fatalf("event leaf read back as %+v", ev)
	}
	if sl := all[2]; sl.Event != "" || sl.Session != 1 || sl.Type != 3 || sl.Corrupt != "" {
		t.Fatalf("end leaf read back as %+v", sl)
	}
	var own []int64
	if err := snap.SessionLeaves(ctx, 1, func(l storage.Leaf) error { own = append(own, l.Index); return nil }); err != nil || fmt.Sprint(own) != "[0 1 2]" {
		t.Fatalf("session 1 leaves %v, %v", own, err)
	}
	sessions, err := snap.Sessions(ctx)
	if err != nil || len(sessions) != 2 {
		t.Fatalf("sessions %+v, %v", sessions, err)
	}
	if s1 := sessions[0]; s1.Num != 1 || s1.StartLeaf != 0 || !bytes.Equal(s1.ID, bytes.Repeat([]byte{1}, 16)) || s1.Corrupt != "" {
		t.Fatalf("session 1: %+v", s1)
	}
	if s2 := sessions[1]; s2.StartLeaf != 4 {
		t.Fatalf("session 2: %+v", s2)
	}
	if n, err := snap.LastSeq(ctx, 1); err != nil || n != 5 {
		t.Fatalf("last seq of session 1: %d, %v", n, err)
	}
	if n, err := snap.LastSeq(ctx, 7); err != nil || n != 0 {
		t.Fatalf("last seq of a session without frames: %d, %v", n, err)
	}
	var hashIdx []int64
	if err := snap.TreeHashes(ctx, func(i int64, h []byte) error {
		if !bytes.Equal(h, hash(int(i))) {
			return fmt.Errorf("tree hash %d read back as %x", i, h)
		}
		hashIdx = append(hashIdx, i)
		return nil
	}); err != nil || fmt.Sprint(hashIdx) != "[0 1 2 3 4 5]" {
		t.Fatalf("tree hashes %v, %v", hashIdx, err)
	}
	byID, err := snap.SessionByID(ctx, bytes.Repeat([]byte{2}, 16))
	if err != nil || byID.Num != 2 {
		t.Fatalf("session by id: %+v, %v", byID, err)
	}
	if _, err := snap.SessionByID(ctx, make([]byte, 16)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing session: %v", err)
	}
	if nums, err := snap.FrameSessions(ctx); err != nil || fmt.Sprint(nums) != "[1 2]" {
		t.Fatalf("frame sessions %v, %v", nums, err)
	}
	var payload []byte
	var seqs []int64
	err = snap.Frames(ctx, 1, func(f *storage.Frame) error {
		seqs = append(seqs, f.Seq)
		payload = append(payload, f.Payload...)
		if !bytes.Equal(f.Chain, hash(int(f.Seq))) || f.WallNS != f.Seq*10 || f.MonoNS != f.Seq || f.Kind != 2 {
			return fmt.Errorf("frame %d read back wrong: %+v", f.Seq, f)
		}
		return nil
	})
	if err != nil || fmt.Sprint(seqs) != "[1 2 3 4 5]" || string(payload) != "001002003004005" {
		t.Fatalf("frames %v %q, %v", seqs, payload, err)
	}
	if n, err := snap.PayloadBytes(ctx); err != nil || n != 21 {
		t.Fatalf("payload bytes %d, %v", n, err)
	}
	hs, err := snap.Hashes(ctx, []int64{0, 5, 3})
	if err != nil || !bytes.Equal(hs[0], hash(0)) || !bytes.Equal(hs[1], hash(5)) || !bytes.Equal(hs[2], hash(3)) {
		t.Fatalf("hashes %x, %v", hs, err)
	}
	if _, err := snap.Hashes(ctx, []int64{99}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing hash: %v", err)
	}
	st, err := s.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TreeSize != 6 || st.HashCount != 6 || st.NextSession != 3 || st.Head == nil || st.Head.TreeSize != 6 {
		t.Fatalf("state: %+v", st)
	}
}

func testLeafIndexMustExtend(t *testing.T, b Backend) {
	ctx := context.Background()
	s := open(t, b, b.NewLocation(t), false)
	if err := s.Commit(ctx, batch(1, 0, 1)); err != nil {
		t.Fatal(err)
	}
	for _, idx := range []int64{0, 1, 3} {
		bad := batch(2, idx, 1)
		if err := s.Commit(ctx, bad); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("batch at leaf %d after 2 leaves: %v, want ErrConflict", idx, err)
		}
	}
}

func testFailedCommitWritesNothing(t *testing.T, b Backend) {
	ctx := context.Background()
	s := open(t, b, b.NewLocation(t), false)
	if err := s.Commit(ctx, batch(1, 0, 3)); err != nil {
		t.Fatal(err)
	}
	// A duplicate (session, seq) fails midway: nothing of the batch stays.
	bad := batch(2, 2, 3)
	bad.Frames = append(bad.Frames, bad.Frames[0])
	if err := s.Commit(ctx, bad); err == nil {
		t.Fatal("batch with a duplicate frame committed")
	}
	snap := snapshot(t, s)
	if n, _ := snap.TreeSize(ctx); n != 2 {
		t.Fatalf("tree size %d after a failed commit, want 2", n)
	}
	if nums, _ := snap.FrameSessions(ctx); len(nums) != 1 {
		t.Fatalf("frames of %v after a failed commit", nums)
	}
}

func testSnapshotIsolation(t *testing.T, b Backend) {
	ctx := context.Background()
	s := open(t, b, b.NewLocation(t), false)
	if err := s.Commit(ctx, batch(1, 0, 2)); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	if n, _ := before.TreeSize(ctx); n != 2 {
		t.Fatalf("tree size %d", n)
	}
	// A commit while a snapshot is open neither blocks nor shows in it.
	if err := s.Commit(ctx, batch(2, 2, 2)); err != nil {
		t.Fatal(err)
	}
	if n, _ := before.TreeSize(ctx); n != 2 {
		t.Fatalf("open snapshot sees tree size %d, want 2", n)
	}
	if n, _ := snapshot(t, s).TreeSize(ctx); n != 4 {
		t.Fatalf("new snapshot sees tree size %d, want 4", n)
	}
}

func testHeadAndPublished(t *testing.T, b Backend) {
	ctx := context.Background()
	s := open(t, b, b.NewLocation(t), false)
	b1 := batch(1, 0, 1)
	b1.Published = []storage.Checkpoint{*b1.Head}
	if err := s.Commit(ctx, b1); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, batch(2, 2, 1)); err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, s)
	head, err := snap.Head(ctx)
	if err != nil || head == nil || head.TreeSize != 4 || string(head.Note) != "head 4" {
		t.Fatalf("head %+v, %v", head, err)
	}
	pub, err := snap.Published(ctx)
	if err != nil || len(pub) != 1 || pub[0].TreeSize != 2 || string(pub[0].Note) != "head 2" {
		t.Fatalf("published %+v, %v", pub, err)
	}
	st, err := s.State(ctx)
	if err != nil || st.Published == nil || st.Published.TreeSize != 2 {
		t.Fatalf("state published %+v, %v", st, err)
	}

	// A published row's note is replaced (witnesses' cosignatures added)
	// only by one that begins with it; a size no row has is skipped, and
	// the head is left alone.
	renote := &storage.Batch{Renotes: []storage.Checkpoint{{TreeSize: 2, Note: []byte("head 2 cosigned")}, {TreeSize: 3, Note: []byte("nothing")}}}
	if err := s.Commit(ctx, &storage.Batch{Renotes: []storage.Checkpoint{{TreeSize: 2, Note: []byte("head 3 forged")}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, renote); err != nil {
		t.Fatal(err)
	}
	snap2 := snapshot(t, s)
	pub, err = snap2.Published(ctx)
	if err != nil || len(pub) != 1 || pub[0].TreeSize != 2 || string(pub[0].Note) != "head 2 cosigned" {
		t.Fatalf("published after renote %+v, %v", pub, err)
	}
	if head, err := snap2.Head(ctx); err != nil || string(head.Note) != "head 4" {
		t.Fatalf("head after renote %+v, %v", head, err)
	}
	if pub, err := snap.Published(ctx); err != nil || string(pub[0].Note) != "head 2" {
		t.Fatalf("an older snapshot sees the renote: %+v, %v", pub, err)
	}
}

func testOneWriter(t *testing.T, b Backend) {
	loc := b.NewLocation(t)
	open(t, b, loc, false)
	_, err := b.Open(context.Background(), loc, false)
	if !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("second writer: %v, want ErrLocked", err)
	}
	// Readers work while the writer holds the journal.
	snapshot(t, open(t, b, loc, true))
}

func testReadOnly(t *testing.T, b Backend) {
	ctx := context.Background()
	loc := b.NewLocation(t)
	w := open(t, b, loc, false)
	if err := w.Init(ctx, meta); err != nil {
		t.Fatal(err)
	}
	r := open(t, b, loc, true)
	if err := r.Commit(ctx, batch(1, 0, 1)); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("commit on read-only store: %v", err)
	}
	if err := r.Init(ctx, meta); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("init on read-only store: %v", err)
	}
	m, err := snapshot(t, r).Meta(ctx)
	if err != nil || m["format"] != "test" {
		t.Fatalf("meta %v, %v", m, err)
	}
}

func testReopen(t *testing.T, b Backend) {
	ctx := context.Background()
	loc := b.NewLocation(t)
	s, err := b.Open(ctx, loc, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, batch(1, 0, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, b, loc, false)
	st, err := s2.State(ctx)
	if err != nil || st.TreeSize != 2 || st.NextSession != 2 || st.Head == nil {
		t.Fatalf("reopened state %+v, %v", st, err)
	}
	if err := s2.Commit(ctx, batch(2, 2, 1)); err != nil {
		t.Fatal(err)
	}
}

func testFrameRangeAndAt(t *testing.T, b Backend) {
	ctx := context.Background()
	s := open(t, b, b.NewLocation(t), false)
	if err := s.Init(ctx, meta); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, batch(1, 0, 20)); err != nil { // frame i at mono_ns i
		t.Fatal(err)
	}
	snap := snapshot(t, s)
	var seqs []int64
	if err := snap.FrameRange(ctx, 1, 5, 8, func(f *storage.Frame) error {
		seqs = append(seqs, f.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[5 6 7]" {
		t.Errorf("FrameRange(5, 8) = %v", seqs)
	}
	for _, tc := range []struct{ mono, want int64 }{{0, 0}, {1, 1}, {7, 7}, {20, 20}, {1000, 20}} {
		got, err := snap.FrameAt(ctx, 1, tc.mono)
		if err != nil || got != tc.want {
			t.Errorf("FrameAt(%d) = %d, %v; want %d", tc.mono, got, err, tc.want)
		}
	}
	if got, err := snap.FrameAt(ctx, 99, 5); err != nil || got != 0 {
		t.Errorf("FrameAt of a session without frames = %d, %v", got, err)
	}
}

// testLogsIsolated opens two logs in one place: their writers do not
// contend, and neither sees the other's rows.
func testLogsIsolated(t *testing.T, b Backend) {
	ctx := context.Background()
	locA := b.NewLocation(t)
	locB := b.OtherLog(t, locA)
	a := open(t, b, locA, false)
	w := open(t, b, locB, false) // a writer of the other log is not refused
	if err := a.Init(ctx, meta); err != nil {
		t.Fatal(err)
	}
	if err := w.Init(ctx, map[string]string{"format": "test", "origin": "example/other"}); err != nil {
		t.Fatal(err)
	}
	// Both logs start at leaf 0, session 1: the same keys, apart.
	if err := a.Commit(ctx, batch(1, 0, 3)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, batch(1, 0, 5)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, batch(2, 2, 1)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s        storage.Store
		loc      string
		origin   string
		size     int64
		sessions int
		payload  int64
	}{{a, locA, "example/test", 2, 1, 9}, {w, locB, "example/other", 4, 2, 18}} {
		for _, ro := range []bool{false, true} {
			st := tc.s
			if ro {
				st = open(t, b, tc.loc, true)
			}
			snap := snapshot(t, st)
			m, err := snap.Meta(ctx)
			if err != nil || m["origin"] != tc.origin || len(m) != 2 {
				t.Errorf("%s: meta %v, %v", tc.origin, m, err)
			}
			if n, err := snap.TreeSize(ctx); err != nil || n != tc.size {
				t.Errorf("%s: tree size %d, %v; want %d", tc.origin, n, err, tc.size)
			}
			if list, err := snap.Sessions(ctx); err != nil || len(list) != tc.sessions {
				t.Errorf("%s: sessions %+v, %v", tc.origin, list, err)
			}
			if n, err := snap.PayloadBytes(ctx); err != nil || n != tc.payload {
				t.Errorf("%s: payload bytes %d, %v; want %d", tc.origin, n, err, tc.payload)
			}
			var hashes int64
			if err := snap.TreeHashes(ctx, func(int64, []byte) error { hashes++; return nil }); err != nil || hashes != tc.size {
				t.Errorf("%s: %d tree hashes, %v", tc.origin, hashes, err)
			}
			if head, err := snap.Head(ctx); err != nil || head == nil || head.TreeSize != tc.size {
				t.Errorf("%s: head %+v, %v", tc.origin, head, err)
			}
		}
	}
	sa, err := a.State(ctx)
	if err != nil || sa.TreeSize != 2 || sa.NextSession != 2 || sa.HashCount != 2 {
		t.Fatalf("state of the first log %+v, %v", sa, err)
	}
	// Each log's indexes go on from its own rows.
	if err := a.Commit(ctx, batch(2, 4, 1)); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("leaf 4 in a log of 2 leaves: %v, want ErrConflict", err)
	}
	if err := a.Commit(ctx, batch(2, 2, 1)); err != nil {
		t.Fatal(err)
	}
}
