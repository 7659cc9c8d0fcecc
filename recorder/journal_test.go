package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastionhq/bastion/storage"
)

func testKey(t testing.TB) *JournalKey {
	t.Helper()
	skey, _, err := GenerateJournalKey("test.example/journal")
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseJournalKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openStore(t testing.TB, path string, ro bool) *storage.SQLite {
	t.Helper()
	st, err := storage.OpenSQLite(context.Background(), path, storage.Options{ReadOnly: ro, Synchronous: storage.SyncNormal})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openJournal(t testing.TB, path string, key *JournalKey) (*Journal, *storage.SQLite) {
	t.Helper()
	st := openStore(t, path, false)
	j, err := Open(context.Background(), st, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return j, st
}

// record appends frames and waits for each, as a session pump would.
func record(t testing.TB, s *Session, frames ...Frame) {
	t.Helper()
	var last uint64
	for _, f := range frames {
		seq, err := s.Append(f.Kind, f.Channel, f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	if err := s.Wait(context.Background(), last); err != nil {
		t.Fatal(err)
	}
}

func verify(t testing.TB, st storage.Store, key *JournalKey, opts VerifyOptions) *Report {
	t.Helper()
	opts.Verifier = key.Verifier
	r, err := Verify(context.Background(), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestJournalRoundTrip(t *testing.T) {
	ctx := context.Background()
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "j.db")
	j, st := openJournal(t, path, key)
	s, err := j.StartSession(ctx, SessionInfo{Attrs: Attrs{"command": "sh"}})
	if err != nil {
		t.Fatal(err)
	}
	record(t, s,
		Frame{Kind: KindResize, Payload: ResizePayload(80, 24)},
		Frame{Kind: KindInput, Payload: []byte("ls\r")},
		Frame{Kind: KindOutput, Payload: []byte("a b c\r\n")},
	)
	if _, err := j.AppendEvent(ctx, "test.event", Attrs{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if err := s.End(ctx, Attrs{"exit-status": "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(KindOutput, 0, []byte("late")); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("append after end: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	r := verify(t, st, key, VerifyOptions{})
	if !r.Intact() || r.TreeSize < 4 || r.Frames != 3 || r.Sessions != 1 || r.Events != 1 || len(r.Unterminated) != 0 {
		t.Fatalf("report: %+v", r)
	}

	// Reopen: the writer resumes on the same tree and signs a larger one.
	st.Close()
	j2, st2 := openJournal(t, path, key)
	s2, err := j2.StartSession(ctx, SessionInfo{})
	if err != nil {
		t.Fatal(err)
	}
	record(t, s2, Frame{Kind: KindOutput, Payload: []byte("again")})
	if err := s2.End(ctx, nil); err != nil {
		t.Fatal(err)
	}
	j2.Close()
	size := r.TreeSize
	r = verify(t, st2, key, VerifyOptions{})
	if !r.Intact() || r.TreeSize != size+3 || r.Sessions != 2 {
		t.Fatalf("report after reopen: %+v", r)
	}
}

func TestJournalRefusesOtherKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j, st := openJournal(t, path, testKey(t))
	j.Close()
	st.Close()
	st = openStore(t, path, false)
	if _, err := Open(context.Background(), st, Options{Key: testKey(t)}); err == nil {
		t.Fatal("opened a journal with another key")
	}
	if _, err := Open(context.Background(), st, Options{}); err == nil {
		t.Fatal("opened a journal without a key")
	}
}

func TestSecondWriterRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j, _ := openJournal(t, path, testKey(t))
	defer j.Close()
	_, err := storage.OpenSQLite(context.Background(), path, storage.Options{})
	var le *storage.LockedError
	if !errors.As(err, &le) || !errors.Is(err, storage.ErrLocked) || le.Holder == "" {
		t.Fatalf("second writer: %v", err)
	}
	// Readers still work while the writer runs.
	ro := openStore(t, path, true)
	snap, err := ro.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	snap.Close()
}

func TestAbandonedSessionClosedOnReopen(t *testing.T) {
	ctx := context.Background()
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "j.db")
	j, st := openJournal(t, path, key)
	s, err := j.StartSession(ctx, SessionInfo{})
	if err != nil {
		t.Fatal(err)
	}
	record(t, s, Frame{Kind: KindOutput, Payload: []byte("x")}, Frame{Kind: KindInput, Payload: []byte("y")})
	// Simulate a crash: the session never ends. Closing the journal
	// commits no end leaf.
	j.Close()
	r := verify(t, st, key, VerifyOptions{})
	if !r.Intact() || len(r.Unterminated) != 1 || r.Unterminated[0].Frames != 2 {
		t.Fatalf("crashed session: %+v", r)
	}
	st.Close()
	j2, st2 := openJournal(t, path, key)
	j2.Close()
	r = verify(t, st2, key, VerifyOptions{})
	if !r.Intact() || len(r.Unterminated) != 0 || len(r.Abandoned) != 1 {
		t.Fatalf("after reopen: %+v", r)
	}
}

func TestConcurrentSessions(t *testing.T) {
	ctx := context.Background()
	key := testKey(t)
	j, st := openJournal(t, filepath.Join(t.TempDir(), "j.db"), key)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := j.StartSession(ctx, SessionInfo{})
			if err != nil {
				t.Error(err)
				return
			}
			var seq uint64
			for k := 0; k < 500; k++ {
				// Two pumps on one session, as input and output.
				if seq, err = s.Append(KindOutput, 0, bytes.Repeat([]byte{byte(k)}, k)); err != nil {
					t.Error(err)
					return
				}
			}
			if err := s.Wait(ctx, seq); err != nil {
				t.Error(err)
			}
			if err := s.End(ctx, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	j.Close()
	r := verify(t, st, key, VerifyOptions{})
	if !r.Intact() || r.PayloadBytes != 8*124750 || r.Sessions != 8 {
		t.Fatalf("report: %+v", r.Problems)
	}
}

func TestPipelineBounded(t *testing.T) {
	ctx := context.Background()
	key := testKey(t)
	st := openStore(t, filepath.Join(t.TempDir(), "j.db"), false)
	j, err := Open(ctx, st, Options{Key: key, MaxPendingFrames: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	s, err := j.StartSession(ctx, SessionInfo{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := s.Append(KindOutput, 0, []byte("x")); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		p := s.pendingFr
		s.mu.Unlock()
		if p > 4 {
			t.Fatalf("%d frames pending, bound is 4", p)
		}
	}
}

// failingStore fails every commit after the first n.
type failingStore struct {
	storage.Store
	mu sync.Mutex
	n  int
}

func (f *failingStore) Commit(ctx context.Context, b *storage.Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return errors.New("disk full")
	}
	f.n--
	return f.Store.Commit(ctx, b)
}

func TestFailClosed(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "j.db"), false)
	fs := &failingStore{Store: st, n: 1}
	j, err := Open(ctx, fs, Options{Key: testKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	s, err := j.StartSession(ctx, SessionInfo{})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := s.Append(KindOutput, 0, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Wait(ctx2, seq); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait after a failed commit: %v", err)
	}
	if _, err := s.Append(KindOutput, 0, []byte("more")); err == nil {
		t.Fatal("append accepted after the journal failed")
	}
	if _, err := j.StartSession(ctx, SessionInfo{}); err == nil {
		t.Fatal("new session accepted after the journal failed")
	}
}

// countingFailStore fails every commit after the first n, concurrently with
// appends.
type countingFailStore struct {
	*storage.SQLite
	n    atomic.Int64
	fail int64
}

func (f *countingFailStore) Commit(ctx context.Context, b *storage.Batch) error {
	if f.n.Add(1) > f.fail {
		return errors.New("disk full (injected)")
	}
	return f.SQLite.Commit(ctx, b)
}

// TestFailWhileAppending fails the journal while many sessions append from
// two goroutines each: every pump must get the error and Close must return.
// (fail used to take the journal's lock, then each session's, while Append
// holds a session's lock and takes the journal's.)
//
// The failure races the appends, so one round may miss the bad order:
// twelve rounds (about 10 ms each) catch it in most runs.
func TestFailWhileAppending(t *testing.T) {
	for round := 0; round < 12; round++ {
		ctx := context.Background()
		st := openStore(t, filepath.Join(t.TempDir(), "j.db"), false)
		// A small pipeline: the appenders soon block on it (one-byte
		// frames coalesce, so a bound in frames alone would leave them
		// spinning until the failure), and the failure must wake them.
		j, err := Open(ctx, &countingFailStore{SQLite: st, fail: 4}, Options{Key: testKey(t), MaxPendingFrames: 256, MaxPendingBytes: 512})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var sessions []*Session
		done := make(chan struct{})
		// Starting sessions is under the watchdog too: a deadlock can
		// catch StartSession as well as the appends.
		go func() {
			for i := 0; i < 6; i++ {
				s, err := j.StartSession(ctx, SessionInfo{})
				if err != nil {
					break
				}
				sessions = append(sessions, s)
				for k := 0; k < 2; k++ {
					wg.Go(func() {
						for {
							seq, err := s.Append(KindOutput, uint32(k), []byte("x"))
							if err != nil {
								return
							}
							if seq%64 == 0 && s.Wait(ctx, seq) != nil {
								return
							}
						}
					})
				}
			}
			wg.Wait()
			j.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: pumps or Close still blocked 30s after the journal failed (deadlock)", round)
		}
		for _, s := range sessions {
			select {
			case <-s.Done():
			default:
				t.Fatalf("round %d: session %s not marked done after the journal failed", round, s.ID())
			}
			if s.Err() == nil {
				t.Fatalf("round %d: session %s has no error", round, s.ID())
			}
		}
	}
}

// TestStartCanceled cancels StartSession while its start leaf is queued: the
// leaf still commits, so the session must be ended, not left open.
func TestStartCanceled(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "j.db")
	j, st := openJournal(t, path, key)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, err := j.StartSession(ctx, SessionInfo{})
	switch {
	case err == nil:
		// The commit won the race with the cancellation: an ordinary
		// session, which its owner ends.
		if err := s.End(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	case !errors.Is(err, context.Canceled):
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := verify(t, st, key, VerifyOptions{})
		if r.Sessions == 1 && len(r.Unterminated) == 0 {
			if !r.Intact() {
				t.Fatalf("report: %+v", r.Problems)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the canceled start was not ended: %+v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
	j.Close()
}

func TestIndexedEvents(t *testing.T) {
	ctx := context.Background()
	key := testKey(t)
	path := filepath.Join(t.TempDir(), "j.db")
	j, st := openJournal(t, path, key)
	if _, err := j.AppendIndexedEvent(ctx, "cert.issued", Attrs{"serial": "1"}, "serial"); err == nil {
		t.Fatal("an event naming its own index attribute was accepted")
	}
	// Concurrent appends: each leaf's attribute is its own index.
	var wg sync.WaitGroup
	idx := make([]int64, 50)
	for i := range idx {
		wg.Go(func() {
			n, err := j.AppendIndexedEvent(ctx, "cert.issued", Attrs{"n": strconv.Itoa(i)}, "serial")
			if err != nil {
				t.Error(err)
			}
			idx[i] = n
		})
	}
	wg.Wait()
	if _, err := j.AppendEvent(ctx, "other", nil); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	seen := 0
	last := int64(-1)
	lg, err := ReadLog(ctx, snap, ReadLogOptions{Verifier: key.Verifier, Events: EventNames("cert.issued")})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range lg.Events {
		err = func(index int64, l *Leaf) error {
			if index <= last || l.Attrs["serial"] != strconv.FormatInt(index, 10) {
				return fmt.Errorf("leaf %d: serial %q after %d", index, l.Attrs["serial"], last)
			}
			n, _ := strconv.Atoi(l.Attrs["n"])
			if idx[n] != index {
				return fmt.Errorf("append %d returned %d, leaf is %d", n, idx[n], index)
			}
			last = index
			seen++
			return nil
		}(e.Index, e.Leaf)
		if err != nil {
			break
		}
	}
	if err != nil || seen != len(idx) {
		t.Fatalf("events: %d seen, %v", seen, err)
	}
	if r := verify(t, st, key, VerifyOptions{}); !r.Intact() || r.Events != len(idx)+1 {
		t.Fatalf("report: %+v", r)
	}
}
