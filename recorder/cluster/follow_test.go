package cluster

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
)

// memberJournal is a journal signed by a new key of origin, and the
// member that key is with id.
func memberJournal(t *testing.T, id uint16, origin string, base uint64) (*recordertest.Journal, Member) {
	t.Helper()
	jk, vk := recordertest.NewKey(t, origin)
	j := recordertest.NewJournalWith(t, recordertest.Options{Journal: recorder.Options{Key: jk, IndexBase: base}})
	return j, Member{ID: id, Key: vk}
}

func appendEvents(t *testing.T, j *recordertest.Journal, n int) []int64 {
	t.Helper()
	var idx []int64
	for i := range n {
		k, err := j.AppendEvent(context.Background(), "test.event", recorder.Attrs{"n": strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		idx = append(idx, k)
	}
	return idx
}

// TestFollowerPassesOnVerifiedLeaves: a follower passes on each leaf once,
// in order, as the log grows; indexed attributes carry the IndexBase.
func TestFollowerPassesOnVerifiedLeaves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base, _ := recorder.NumberOf(7, 0)
	j, m := memberJournal(t, 7, "a.example/journal", base)
	f := NewFollower(m, j.Store)
	if got, err := f.Next(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty log: %v %v", got, err)
	}
	want := appendEvents(t, j, 3)
	got, err := f.Next(ctx)
	if err != nil || len(got) != 3 {
		t.Fatalf("Next: %d leaves, %v", len(got), err)
	}
	for i, g := range got {
		if g.Index != want[i] || g.Leaf.Event != "test.event" || g.Leaf.Attrs["n"] != strconv.Itoa(i) {
			t.Errorf("leaf %d: %+v", i, g)
		}
	}
	if again, err := f.Next(ctx); err != nil || len(again) != 0 {
		t.Fatalf("Next without growth: %v %v", again, err)
	}
	idx, err := j.AppendIndexedEvent(ctx, "cert.issued", recorder.Attrs{}, "serial")
	if err != nil {
		t.Fatal(err)
	}
	got, err = f.Next(ctx)
	if err != nil || len(got) != 1 || got[0].Index != idx {
		t.Fatalf("Next after an indexed event: %v %v", got, err)
	}
	if serial, _ := recorder.NumberOf(7, idx); got[0].Leaf.Attrs["serial"] != strconv.FormatUint(serial, 10) {
		t.Errorf("serial attribute %q, want member 7's serial for leaf %d", got[0].Leaf.Attrs["serial"], idx)
	}
	if f.Size() != idx+1 {
		t.Errorf("Size %d after leaf %d", f.Size(), idx)
	}
}

// TestFollowerRefuses: a log signed by another key than the cluster
// file's, a leaf changed before the follower read it, and a log shorter
// than what was read pass nothing on, and keep failing until the log
// verifies again.
func TestFollowerRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	j, _ := memberJournal(t, 1, "a.example/journal", 0)
	appendEvents(t, j, 2)
	_, wrong := memberJournal(t, 1, "a.example/journal", 0)
	if got, err := NewFollower(wrong, j.Store).Next(ctx); !errors.Is(err, ErrNotVerified) || got != nil {
		t.Errorf("a log signed by another key: %v %v", got, err)
	}

	j, m := memberJournal(t, 1, "a.example/journal", 0)
	appendEvents(t, j, 2)
	f := NewFollower(m, j.Store)
	if _, err := f.Next(ctx); err != nil {
		t.Fatal(err)
	}
	idx := appendEvents(t, j, 1)[0]
	db, err := sql.Open("sqlite3", "file:"+j.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE leaves SET data = CAST(replace(CAST(data AS TEXT), 'test.event', 'test.evenu') AS BLOB) WHERE idx = ?`, idx); err != nil {
		t.Fatal(err)
	}
	size := f.Size()
	for range 2 {
		got, err := f.Next(ctx)
		if !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "do not hash to the root") || got != nil || f.Size() != size {
			t.Fatalf("a leaf changed: %v %v (size %d, was %d)", got, err, f.Size(), size)
		}
	}

	// A log shorter than the one read: rolled back.
	short, sm := memberJournal(t, 1, "a.example/journal", 0)
	appendEvents(t, short, 1)
	g := NewFollower(sm, short.Store)
	if _, err := g.Next(ctx); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, short, 2)
	if _, err := g.Next(ctx); err != nil {
		t.Fatal(err)
	}
	// The follower read 3 leaves; its store now holds a shorter log of
	// the same key.
	other := recordertest.NewJournalWith(t, recordertest.Options{Journal: recorder.Options{Key: short.Key}})
	appendEvents(t, other, 1)
	g.store = other.Store
	if got, err := g.Next(ctx); !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "rolled back") || got != nil {
		t.Errorf("a rolled-back log: %v %v", got, err)
	}
}

// TestFollowerKeeps: a follower with Keep passes on only the leaves it
// selects, reading the log a chunk at a time, and still verifies every
// leaf: Size counts them all.
func TestFollowerKeeps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	j, m := memberJournal(t, 1, "a.example/journal", 0)
	var kept []int64
	for i := range 7 {
		name := "test.other"
		if i%3 == 0 {
			name = "test.kept"
		}
		idx, err := j.AppendEvent(ctx, name, recorder.Attrs{"n": strconv.Itoa(i)})
		if err != nil {
			t.Fatal(err)
		}
		if name == "test.kept" {
			kept = append(kept, idx)
		}
	}
	f := NewFollower(m, j.Store)
	f.Keep = func(l *recorder.Leaf) bool { return l.Event == "test.kept" }
	f.chunk = 2
	got, err := f.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var idx []int64
	for _, g := range got {
		idx = append(idx, g.Index)
	}
	if !slices.Equal(idx, kept) {
		t.Fatalf("passed on leaves %v, want %v", idx, kept)
	}
	if st, err := j.Store.State(ctx); err != nil || f.Size() != st.TreeSize || f.Size() < 7 {
		t.Fatalf("Size %d, log %+v %v", f.Size(), st, err)
	}
}
