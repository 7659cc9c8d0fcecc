package witness_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
	"github.com/bastionhq/bastion/recorder/witness"
	"github.com/bastionhq/bastion/recorder/witness/witnesstest"
	"github.com/bastionhq/bastion/storage"
)

// journal opens a journal in a temporary directory whose kept checkpoints
// go to publish.
func journal(t *testing.T, origin string, publish func(int64, []byte)) (*recorder.Journal, *recorder.JournalKey, storage.Store) {
	t.Helper()
	skey, _, err := recorder.GenerateJournalKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	key, err := recorder.ParseJournalKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	j := recordertest.NewJournalWith(t, recordertest.Options{
		Journal: recorder.Options{Key: key, PublishInterval: 20 * time.Millisecond, OnPublish: publish},
	})
	return j.Journal, key, j.Store
}

// relay hands kept checkpoints to a client created after the journal.
type relay struct {
	mu   sync.Mutex
	c    *witness.Client
	size int64
	note []byte
}

func (r *relay) publish(size int64, note []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.size, r.note = size, note
	if r.c != nil {
		r.c.Publish(size, note)
	}
}

func (r *relay) attach(c *witness.Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c = c
	if r.note != nil {
		c.Publish(r.size, r.note)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// latestCosigned is the largest published checkpoint of st carrying a
// valid cosignature by every key.
func latestCosigned(t *testing.T, st storage.Store, keys ...*witness.Key) int64 {
	t.Helper()
	snap, err := st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	pub, err := snap.Published(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	best := int64(0)
	for _, p := range pub {
		valid, bad := witness.Cosignatures(p.Note, keys)
		if len(bad) > 0 {
			t.Fatalf("checkpoint %d holds a cosignature that does not verify: %v", p.TreeSize, bad)
		}
		if len(valid) == len(keys) {
			best = p.TreeSize
		}
	}
	return best
}

// TestClientLitewitness pushes a real journal's kept checkpoints to
// litewitness: the first with old size 0, the next with consistency
// proofs; the cosignatures land in the journal's published rows and
// verify; a witness stopped and started again catches up.
func TestClientLitewitness(t *testing.T) {
	ctx := context.Background()
	r := &relay{}
	j, key, st := journal(t, "bastion.test/witnessed", r.publish)
	lw := witnesstest.Start(t, "lw.test/w1", key.VerifierKey)
	wk, err := witness.ParseKey(lw.VKey)
	if err != nil {
		t.Fatalf("litewitness's key %s: %v", lw.VKey, err)
	}
	var changes []string
	var mu sync.Mutex
	c, err := witness.NewClient(witness.ClientOptions{
		Witnesses:  []witness.Endpoint{{Name: "lw", URL: lw.URL, Key: wk}},
		StaleAfter: time.Second, Log: j, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		OnChange: func(before, now witness.Status) {
			mu.Lock()
			changes = append(changes, before.State+">"+now.State)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.attach(c)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.Run(runCtx)

	event := func(n int) {
		for i := range n {
			if _, err := j.AppendEvent(ctx, "test.event", recorder.Attrs{"n": string(rune('a' + i%26))}); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	event(3)
	if err := c.Flush(withTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("first checkpoint: %v\n%s", err, lw.Log())
	}
	first := latestCosigned(t, st, wk)
	if first < 3 {
		t.Fatalf("the journal's largest cosigned checkpoint is %d", first)
	}
	for range 5 {
		event(7)
	}
	if err := c.Flush(withTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("growth: %v\n%s", err, lw.Log())
	}
	grown := latestCosigned(t, st, wk)
	if grown <= first || lw.Latest("bastion.test/witnessed") != grown {
		t.Fatalf("cosigned %d after %d; the witness holds %d", grown, first, lw.Latest("bastion.test/witnessed"))
	}

	// Down: a checkpoint waits, and the witness goes stale; sessions
	// (appends) never wait for it. Up again: one push catches it up.
	lw.Stop()
	event(5)
	waitFor(t, 5*time.Second, "the stale state", func() bool { return c.Status()[0].State == witness.StateStale })
	event(4)
	before := c.Status()[0]
	lw.Start()
	if err := c.Flush(withTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("catching up: %v\n%s", err, lw.Log())
	}
	s := c.Status()[0]
	if s.State != witness.StateOK || latestCosigned(t, st, wk) != s.Cosigned || lw.Latest("bastion.test/witnessed") != s.Cosigned {
		t.Fatalf("after the witness came back: %+v", s)
	}
	// One request that succeeded: from the size it cosigned before it
	// stopped to the latest, one consistency proof.
	if ok := (s.Pushes - s.Failures) - (before.Pushes - before.Failures); ok != 1 {
		t.Fatalf("%d successful pushes to catch up, want 1", ok)
	}

	// Idle: no checkpoint is kept, but the latest is pushed again every
	// half stale_after, so a witness that goes away is noticed all the
	// same, and one that comes back is seen back.
	latest := c.Status()[0].Latest
	lw.Stop()
	waitFor(t, 5*time.Second, "the stale state while idle", func() bool { return c.Status()[0].State == witness.StateStale })
	lw.Start()
	waitFor(t, 10*time.Second, "the witness back while idle", func() bool { return c.Status()[0].State == witness.StateOK })
	if s := c.Status()[0]; s.Latest != latest {
		t.Fatalf("a checkpoint was kept while idle: %+v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"failing>stale", "stale>ok", "failing>stale", "stale>ok"}; !slices.Equal(changes, want) {
		t.Fatalf("state changes told: %v, want %v", changes, want)
	}
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
