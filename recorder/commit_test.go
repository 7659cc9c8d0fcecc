package recorder

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastionhq/bastion/storage"
)

// gatedStore holds every commit until its gate is opened.
type gatedStore struct {
	storage.Store
	gate atomic.Pointer[chan struct{}]
}

func (g *gatedStore) hold() chan struct{} {
	c := make(chan struct{})
	g.gate.Store(&c)
	return c
}

func (g *gatedStore) Commit(ctx context.Context, b *storage.Batch) error {
	<-*g.gate.Load()
	return g.Store.Commit(ctx, b)
}

// OnCommit sees every committed append, with the time from the oldest
// append of its batch to the commit; OldestPending is zero on an idle
// journal and names the oldest append a stuck commit holds.
func TestCommitObserver(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "j.db"), false)
	gs := &gatedStore{Store: st}
	close(gs.hold()) // Open commits the journal's first leaves freely.
	var mu sync.Mutex
	var appends int
	var longest time.Duration
	// No checkpoint is kept on the writer's ticker: only the test's
	// appends commit, so that what is pending is theirs alone.
	j, err := Open(ctx, gs, Options{Key: testKey(t), PublishInterval: time.Hour, OnCommit: func(d time.Duration, n int) {
		mu.Lock()
		defer mu.Unlock()
		appends += n
		longest = max(longest, d)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.AppendEvent(ctx, "test.one", Attrs{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if appends < 1 {
		t.Errorf("OnCommit counted %d appends after one event", appends)
	}
	mu.Unlock()
	if p := j.OldestPending(); !p.IsZero() {
		t.Errorf("OldestPending of an idle journal = %v, want zero", p)
	}

	// A stuck commit: the event waits, and OldestPending says since when.
	gate := gs.hold()
	before := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := j.AppendEvent(ctx, "test.two", Attrs{})
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for j.OldestPending().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("OldestPending stayed zero while a commit was held")
		}
		time.Sleep(time.Millisecond)
	}
	if p := j.OldestPending(); p.Before(before) || p.After(time.Now()) {
		t.Errorf("OldestPending = %v, want between %v and now", p, before)
	}
	time.Sleep(50 * time.Millisecond)
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if longest < 50*time.Millisecond {
		t.Errorf("longest commit observed = %v, want at least the 50ms it was held", longest)
	}
	mu.Unlock()
	deadline = time.Now().Add(5 * time.Second)
	for !j.OldestPending().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("OldestPending stayed set after the commit")
		}
		time.Sleep(time.Millisecond)
	}
}
