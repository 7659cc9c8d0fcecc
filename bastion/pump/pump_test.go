package pump

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
	"github.com/bastionhq/bastion/storage"
)

// failingStore is a real SQLite store whose commits fail once fail is set,
// as a full or vanished disk would make them.
type failingStore struct {
	storage.Store
	fail atomic.Bool
}

var errDiskGone = errors.New("the disk is gone")

func (s *failingStore) Commit(ctx context.Context, b *storage.Batch) error {
	if s.fail.Load() {
		return errDiskGone
	}
	return s.Store.Commit(ctx, b)
}

// newSession starts a session in a new journal, a SQLite file in a
// temporary directory, and returns it with the journal's store.
func newSession(t testing.TB) (*recorder.Session, *failingStore) {
	t.Helper()
	fs := &failingStore{}
	j := recordertest.NewJournalWith(t, recordertest.Options{
		Wrap: func(st storage.Store) storage.Store { fs.Store = st; return fs },
	})
	sess, err := j.StartSession(context.Background(), recorder.SessionInfo{Attrs: recorder.Attrs{"kind": "test"}})
	if err != nil {
		t.Fatal(err)
	}
	return sess, fs
}

func benchSession(b *testing.B) *recorder.Session {
	s, _ := newSession(b)
	return s
}

// tracked is a journal session that notes, for the bytes of each kind
// appended, which frame holds them, so that a destination can check that
// what it is given is committed.
type tracked struct {
	*recorder.Session
	mu    sync.Mutex
	ends  map[recorder.Kind][]int // bytes of kind appended, after each append
	seqs  map[recorder.Kind][]uint64
	kinds []recorder.Kind // of every frame, in order
	data  map[recorder.Kind][]byte
}

func track(s *recorder.Session) *tracked {
	return &tracked{Session: s, ends: map[recorder.Kind][]int{}, seqs: map[recorder.Kind][]uint64{}, data: map[recorder.Kind][]byte{}}
}

func (r *tracked) Append(kind recorder.Kind, channel uint32, p []byte) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, err := r.Session.Append(kind, channel, p)
	if err != nil {
		return seq, err
	}
	r.kinds = append(r.kinds, kind)
	r.data[kind] = append(r.data[kind], p...)
	r.ends[kind] = append(r.ends[kind], len(r.data[kind]))
	r.seqs[kind] = append(r.seqs[kind], seq)
	return seq, nil
}

// committed reports whether the first n bytes of kind are in committed
// frames.
func (r *tracked) committed(kind recorder.Kind, n int) bool {
	if n == 0 {
		return true
	}
	r.mu.Lock()
	var seq uint64
	found := false
	for i, end := range r.ends[kind] {
		if end >= n {
			seq, found = r.seqs[kind][i], true
			break
		}
	}
	r.mu.Unlock()
	if !found {
		return false
	}
	// A Wait that is already satisfied returns nil before it looks at
	// its context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return r.Session.Wait(ctx, seq) == nil
}

func (r *tracked) recorded(kind recorder.Kind) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.data[kind])
}

// checked is a destination that fails the test if it is given a byte
// before the frame holding it is committed.
type checked struct {
	t    *testing.T
	rec  *tracked
	kind recorder.Kind

	mu  sync.Mutex
	got []byte
}

func (w *checked) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, p...)
	if !w.rec.committed(w.kind, len(w.got)) {
		w.t.Errorf("delivered byte %d before the frame holding it was committed", len(w.got))
	}
	return len(p), nil
}

func (w *checked) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.got)
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never happened", what)
	}
}

// TestCopyRecordThenForward: every byte of a stream is recorded, in order,
// and reaches its destination only once committed, through a real journal
// (synchronous=FULL); the stream's buffers all come back.
func TestCopyRecordThenForward(t *testing.T) {
	sess, _ := newSession(t)
	rec := track(sess)
	pool := NewPool(DefaultLimit)
	data := make([]byte, 3<<20)
	rand.Read(data)
	pr, pw := io.Pipe()
	go func() {
		// Writes of every size, so that reads fill buffers, or not.
		rest := data
		for i := 1; len(rest) > 0; i++ {
			n := min(len(rest), i*997%70000+1)
			pw.Write(rest[:n])
			rest = rest[n:]
		}
		pw.Close()
	}()
	dst := &checked{t: t, rec: rec, kind: recorder.KindOutput}
	p := New(context.Background(), rec, Options{Pool: pool})
	s := p.Copy(dst, pr, recorder.KindOutput, 0, StreamOptions{})
	wait(t, s.Done(), "the end of the stream")
	if err := p.Err(); err != nil {
		t.Fatalf("the pump stopped: %v", err)
	}
	if got := dst.bytes(); !bytes.Equal(got, data) {
		t.Fatalf("delivered %d bytes, not the %d sent", len(got), len(data))
	}
	if got := rec.recorded(recorder.KindOutput); !bytes.Equal(got, data) {
		t.Fatalf("recorded %d bytes, not the %d sent", len(got), len(data))
	}
	if n := pool.InUse(); n != 0 {
		t.Errorf("%d bytes of buffers still held after the stream ended", n)
	}
}

// eventLog is a destination that logs what it is given and the requests
// injected among it, in the order they happen.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) Write(p []byte) (int, error) {
	l.add(string(p))
	return len(p), nil
}

// TestInject: a request injected between two writes is recorded between
// their frames and carried out between their deliveries; once the stream
// has ended, Inject says so and records nothing.
func TestInject(t *testing.T) {
	sess, _ := newSession(t)
	rec := track(sess)
	pr, pw := io.Pipe()
	log := &eventLog{}
	p := New(context.Background(), rec, Options{})
	s := p.Copy(log, pr, recorder.KindInput, 0, StreamOptions{})
	io.WriteString(pw, "ls\r")
	// Its place: after what is recorded before it.
	deadline := time.Now().Add(30 * time.Second)
	for string(rec.recorded(recorder.KindInput)) != "ls\r" {
		if time.Now().After(deadline) {
			t.Fatal("the input was never recorded")
		}
		time.Sleep(time.Millisecond)
	}
	resize := Frame{Kind: recorder.KindResize, Payload: []byte{0, 0, 0, 100, 0, 0, 0, 40}}
	if err := s.Inject(func() { log.add("resize") }, resize); err != nil {
		t.Fatal(err)
	}
	io.WriteString(pw, "exit\r")
	pw.Close()
	wait(t, s.Done(), "the end of the stream")
	if got := strings.Join(log.events, "|"); got != "ls\r|resize|exit\r" {
		t.Fatalf("delivered %q, want ls, the resize, exit", got)
	}
	if got := fmt.Sprint(rec.kinds); got != fmt.Sprint([]recorder.Kind{recorder.KindInput, recorder.KindResize, recorder.KindInput}) {
		t.Fatalf("recorded kinds %v", got)
	}
	if err := s.Inject(func() { log.add("late") }, resize); !errors.Is(err, ErrClosed) {
		t.Fatalf("Inject after the end: %v, want ErrClosed", err)
	}
	if len(rec.kinds) != 3 {
		t.Fatalf("Inject after the end recorded a frame: %v", rec.kinds)
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	n       atomic.Int64
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// zeros is an endless source of full reads.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestPoolBound: a bulk stream whose destination does not take its bytes
// holds its reserve and what the pool's bound allows, never more; another
// stream of the same pool still runs on its own reserve; once the first
// destination takes its bytes, everything goes through and every buffer
// comes back.
func TestPoolBound(t *testing.T) {
	const limit = 4 * BufSize
	pool := NewPool(limit)
	sess, _ := newSession(t)
	p := New(context.Background(), sess, Options{Pool: pool})

	const bulkSize = 8 << 20
	stuck := &blockingWriter{release: make(chan struct{})}
	bulk := p.Copy(stuck, io.LimitReader(zeros{}, bulkSize), recorder.KindOutput, 0, StreamOptions{})
	// The bulk stream fills its reserve and the pool, then waits.
	deadline := time.Now().Add(30 * time.Second)
	for bulk.held.Load() < Reserved+limit/BufSize {
		if time.Now().After(deadline) {
			t.Fatalf("the bulk stream holds %d buffers, never its reserve and the pool's bound", bulk.held.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if n := pool.InFlight(); n != limit {
		t.Fatalf("in flight beyond the reserves: %d bytes, want the bound %d", n, limit)
	}

	// The other stream is not starved.
	other := &bytes.Buffer{}
	msg := strings.Repeat("interactive ", 10000)
	small := p.Copy(other, strings.NewReader(msg), recorder.KindStderr, StderrChannel, StreamOptions{})
	wait(t, small.Done(), "the second stream's end while the first held the pool")
	if other.String() != msg {
		t.Fatalf("the second stream delivered %d bytes of %d", other.Len(), len(msg))
	}
	if n := bulk.held.Load(); n > Reserved+limit/BufSize {
		t.Fatalf("the bulk stream holds %d buffers, beyond its reserve and the bound", n)
	}

	close(stuck.release)
	wait(t, bulk.Done(), "the bulk stream's end")
	if n := stuck.n.Load(); n != bulkSize {
		t.Fatalf("delivered %d bytes of %d", n, bulkSize)
	}
	if n, m := pool.InFlight(), pool.InUse(); n != 0 || m != 0 {
		t.Fatalf("after the streams ended: %d bytes in flight, %d in use", n, m)
	}
}

// TestIdleBuffers: a stream waiting on a pollable source (a pipe) holds
// no buffer; one waiting on a source that cannot be waited on holds one
// small buffer after a small read, and a whole one only after a read that
// needed it.
func TestIdleBuffers(t *testing.T) {
	sess, _ := newSession(t)
	idle := func(t *testing.T, pool *Pool, want int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for pool.InUse() != want {
			if time.Now().After(deadline) {
				t.Fatalf("an idle stream holds %d bytes of buffers, want %d", pool.InUse(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	t.Run("pollable", func(t *testing.T) {
		pool := NewPool(DefaultLimit)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		out := newDeliveries()
		p := New(context.Background(), sess, Options{Pool: pool})
		s := p.Copy(out, r, recorder.KindOutput, 0, StreamOptions{})
		w.Write(bytes.Repeat([]byte("x"), 10000))
		out.waitFor(t, 10000)
		idle(t, pool, 0)
		w.Close()
		wait(t, s.Done(), "the end of the stream")
		r.Close()
	})
	t.Run("not pollable", func(t *testing.T) {
		pool := NewPool(DefaultLimit)
		pr, pw := io.Pipe()
		defer pw.Close()
		out := newDeliveries()
		p := New(context.Background(), sess, Options{Pool: pool})
		s := p.Copy(out, pr, recorder.KindInput, 0, StreamOptions{})
		idle(t, pool, SmallBufSize)
		pw.Write(bytes.Repeat([]byte("y"), 5000)) // fills the small buffer
		out.waitFor(t, SmallBufSize)
		idle(t, pool, BufSize) // then a whole one
		out.waitFor(t, 5000)
		pw.Write([]byte("z")) // a small read
		out.waitFor(t, 5001)
		idle(t, pool, SmallBufSize)
		pw.Close()
		wait(t, s.Done(), "the end of the stream")
		idle(t, pool, 0)
	})
}

// deliveries counts the bytes a stream delivers.
type deliveries struct {
	mu      sync.Mutex
	n       int
	changed chan struct{}
}

func newDeliveries() *deliveries { return &deliveries{changed: make(chan struct{})} }

func (d *deliveries) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n += len(p)
	close(d.changed)
	d.changed = make(chan struct{})
	return len(p), nil
}

func (d *deliveries) waitFor(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		d.mu.Lock()
		got, changed := d.n, d.changed
		d.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("delivered %d bytes, never %d", got, n)
		}
	}
}

type brokenWriter struct{}

var errBrokenPipe = errors.New("broken pipe")

func (brokenWriter) Write([]byte) (int, error) { return 0, errBrokenPipe }

// TestStop: a failed write stops the pump (OnStop once, the write's error
// its cause), and a recording failure that comes later replaces it; a
// stream whose input is kept after a stop records on, while one with
// EndOnStop records nothing more.
func TestStop(t *testing.T) {
	sess, _ := newSession(t)
	rec := track(sess)
	var stops atomic.Int32
	p := New(context.Background(), rec, Options{OnStop: func(error) { stops.Add(1) }})
	out := p.Copy(brokenWriter{}, strings.NewReader("output"), recorder.KindOutput, 0, StreamOptions{})
	wait(t, out.Done(), "the end of the stream")
	wait(t, p.Stopped(), "the stop")
	if err := p.Err(); !errors.Is(err, errBrokenPipe) || !strings.HasPrefix(err.Error(), "write output: ") || errors.Is(err, ErrRecordingFailed) {
		t.Fatalf("cause %v, want the write error", err)
	}

	// After the stop: a stream goes on recording its source, delivering
	// nothing; one with EndOnStop ends.
	kept := &bytes.Buffer{}
	after := p.Copy(kept, strings.NewReader("more output"), recorder.KindStderr, StderrChannel, StreamOptions{})
	wait(t, after.Done(), "the end of the stream after the stop")
	if kept.Len() != 0 || string(rec.recorded(recorder.KindStderr)) != "more output" {
		t.Fatalf("after the stop: delivered %q, recorded %q", kept.String(), rec.recorded(recorder.KindStderr))
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	in := p.Copy(nil, pr, recorder.KindInput, 0, StreamOptions{EndOnStop: true, Detached: true})
	wait(t, in.Done(), "the end of an EndOnStop stream after the stop")
	if got := rec.recorded(recorder.KindInput); len(got) != 0 {
		t.Fatalf("recorded input %q after the stop", got)
	}

	p.Stop(RecordingFailed(errDiskGone))
	if err := p.Err(); !errors.Is(err, ErrRecordingFailed) || !errors.Is(err, errDiskGone) {
		t.Fatalf("cause %v, want the recording failure", err)
	}
	wait(t, p.Failed(), "Failed")
	p.Stop(errors.New("a later cause"))
	if err := p.Err(); !errors.Is(err, errDiskGone) {
		t.Fatalf("cause %v, want the recording failure kept", err)
	}
	if n := stops.Load(); n != 1 {
		t.Fatalf("OnStop called %d times", n)
	}
}

// TestRecordingFails: when the journal can no longer commit, the pump
// stops for a recording failure (Until sees it too), nothing uncommitted
// is delivered, and the source is no longer read.
func TestRecordingFails(t *testing.T) {
	sess, store := newSession(t)
	rec := track(sess)
	pr, pw := io.Pipe()
	dst := &checked{t: t, rec: rec, kind: recorder.KindOutput}
	p := New(context.Background(), rec, Options{})
	s := p.Copy(dst, pr, recorder.KindOutput, 0, StreamOptions{})
	io.WriteString(pw, "before")
	store.fail.Store(true)
	go func() {
		for range 100 {
			if _, err := io.WriteString(pw, "after the failure"); err != nil {
				return
			}
		}
	}()
	p.Until(s.Done())
	if err := p.Err(); !errors.Is(err, ErrRecordingFailed) || !errors.Is(err, errDiskGone) {
		t.Fatalf("cause %v, want the recording failure", err)
	}
	pr.CloseWithError(errors.New("test over"))
	if got := dst.bytes(); !bytes.HasPrefix([]byte("before"), got) {
		t.Fatalf("delivered %q", got)
	}
}

// lineFilter is a Filter that releases whole lines, upper-cased in the
// journal while the destination gets them as read, and holds a partial
// line until the stream is quiet or ends.
type lineFilter struct {
	held    []byte
	ready   []byte
	out     []byte
	flushes int
}

func (f *lineFilter) release(n int) Out {
	f.ready = append(f.ready[:0], f.held[:n]...)
	f.held = append(f.held[:0], f.held[n:]...)
	f.out = bytes.ToUpper(f.ready)
	return Out{Record: f.out, Deliver: f.ready}
}

func (f *lineFilter) Filter(_ Recorder, p []byte) (Out, error) {
	f.held = append(f.held, p...)
	return f.release(bytes.LastIndexByte(f.held, '\n') + 1), nil
}

func (f *lineFilter) Flush(Recorder) (Out, error) {
	f.flushes++
	return f.release(len(f.held)), nil
}

func (f *lineFilter) End(Recorder) (Out, error) { return f.release(len(f.held)), nil }

func (f *lineFilter) Idle() time.Duration {
	if len(f.held) > 0 {
		return time.Millisecond
	}
	return 0
}

// TestFilter: a filter's record and delivery differ as it says; what it
// holds is released once the stream is quiet, and at the end.
func TestFilter(t *testing.T) {
	sess, _ := newSession(t)
	rec := track(sess)
	pr, pw := io.Pipe()
	out := &eventLog{}
	f := &lineFilter{}
	p := New(context.Background(), rec, Options{})
	s := p.Copy(out, pr, recorder.KindOutput, 0, StreamOptions{Filter: f})
	io.WriteString(pw, "one\ntw")
	io.WriteString(pw, "o\nprompt> ")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.HasSuffix(string(rec.recorded(recorder.KindOutput)), "PROMPT> ") {
		if time.Now().After(deadline) {
			t.Fatalf("the held prompt was never released: recorded %q", rec.recorded(recorder.KindOutput))
		}
		time.Sleep(time.Millisecond)
	}
	io.WriteString(pw, "last")
	pw.Close()
	wait(t, s.Done(), "the end of the stream")
	if got := strings.Join(out.events, ""); got != "one\ntwo\nprompt> last" {
		t.Fatalf("delivered %q", got)
	}
	if got := string(rec.recorded(recorder.KindOutput)); got != "ONE\nTWO\nPROMPT> LAST" {
		t.Fatalf("recorded %q", got)
	}
	if f.flushes == 0 {
		t.Fatal("the idle flush never ran")
	}
}
