package storage

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

// TestReleaseKeepsTheJournal: giving back SQLite's caches while the
// journal is quiet loses nothing and does not get in the writer's way:
// the next commit extends the journal as if nothing had happened, and a
// commit marks the caches in use again.
func TestReleaseKeepsTheJournal(t *testing.T) {
	ctx := context.Background()
	st, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "j.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Init(ctx, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 32<<10)
	commit := func(seq int64) {
		t.Helper()
		b := &Batch{Frames: []Frame{{Session: 1, Seq: seq, Payload: payload, Chain: make([]byte, 32)}}}
		if seq == 1 {
			b.NewSessions = []Session{{Num: 1, ID: bytes.Repeat([]byte{1}, 16), StartLeaf: 0}}
		}
		if err := st.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for seq := int64(1); seq <= 200; seq++ {
		commit(seq)
	}
	st.ckpt.release(ctx)
	st.ckpt.mu.Lock()
	released := st.ckpt.released
	st.ckpt.mu.Unlock()
	if !released {
		t.Fatal("release did not run")
	}
	commit(201)
	st.ckpt.mu.Lock()
	released = st.ckpt.released
	st.ckpt.mu.Unlock()
	if released {
		t.Error("a commit after the release left it marked released")
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	n := int64(0)
	if err := snap.Frames(ctx, 1, func(f *Frame) error {
		n++
		if f.Seq != n || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("frame %d: seq %d, %d bytes", n, f.Seq, len(f.Payload))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 201 {
		t.Fatalf("%d frames, want 201", n)
	}
}
