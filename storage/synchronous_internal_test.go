package storage

import (
	"context"
	"path/filepath"
	"testing"
)

// TestWriterSynchronous: the writer's connection runs at the synchronous
// level asked for, FULL unless told otherwise: in WAL mode, FULL syncs
// the WAL at every commit, which record-then-forward relies on.
func TestWriterSynchronous(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		opt  string
		want int
	}{{"", 2}, {SyncFull, 2}, {SyncNormal, 1}} {
		st, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "j.db"), Options{Synchronous: c.opt})
		if err != nil {
			t.Fatal(err)
		}
		var got int
		err = st.rw.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&got)
		st.Close()
		if err != nil || got != c.want {
			t.Errorf("Synchronous %q: PRAGMA synchronous = %d, %v; want %d", c.opt, got, err, c.want)
		}
	}
}
