package pump

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bastionhq/bastion/recorder"
)

// This file is the hot path: what a byte meets between its read and its
// delivery (see the package doc).

// A Filter is a stage of a stream between its reads and their record:
// masking. It may change what is recorded (a value masked), what is
// delivered (the same masked bytes, or the bytes as read while the journal
// keeps them masked), record frames of its own before them (what it
// masked), and hold back bytes that may begin a value the next read
// completes.
//
// A stream calls its filter's methods one at a time, in the stream's
// order, never concurrently. An error a method returns is the recorder's
// (a frame of its own it could not record): the pump stops as for a
// recording failure.
type Filter interface {
	// Filter takes the bytes of one read (p; not retained) and returns
	// what is ready.
	Filter(rec Recorder, p []byte) (Out, error)
	// Flush is called once the stream has been quiet for Idle: it
	// releases what the filter holds back.
	Flush(rec Recorder) (Out, error)
	// End is called once, at the end of the stream's source: it releases
	// everything held.
	End(rec Recorder) (Out, error)
	// Idle is how long held bytes may wait for more: 0 when nothing is
	// held.
	Idle() time.Duration
}

// Out is what a [Filter] releases: Record is appended to the journal as
// one frame of the stream's kind and channel, and Deliver goes to the
// stream's destination once that frame is committed. Both are valid until
// the filter's next call.
type Out struct {
	Record, Deliver []byte
}

// A Frame is a frame [Stream.Inject] records.
type Frame struct {
	Kind    recorder.Kind
	Channel uint32
	Payload []byte
}

// ErrClosed is [Stream.Inject]'s answer once the stream takes nothing
// more: the caller records and carries out its request itself.
var ErrClosed = errors.New("pump: the stream is closed")

// StreamOptions adjust a stream.
type StreamOptions struct {
	// Filter, if not nil, is the stage between the stream's reads and
	// their record.
	Filter Filter

	// ReadError, if not nil, tells what the error that ended the source
	// means: a cause to stop the pump for, or nil for the source's end.
	// If ReadError is nil, every error is the end (io.EOF, a closed
	// pipe).
	ReadError func(err error) error

	// OnEnd, if not nil, is called by the stream's reader with the
	// stream and the error that ended the source (io.EOF at its end),
	// after every byte read before it is recorded, unless the stream is
	// closed by then. The stream then stays open for Inject until Close.
	// If OnEnd is nil, the stream closes at the source's end.
	OnEnd func(s *Stream, err error)

	// Delivered, if not nil, is called once the stream is closed and
	// everything recorded before is delivered (or dropped, after a
	// stop): the target's input can be closed.
	Delivered func()

	// Detached says nothing waits for the stream's reader (Done does
	// not), because its Read cannot be interrupted (a client's input).
	// Once the stream is closed, the reader records and delivers nothing
	// more: it returns after its next Read, and what that Read returns
	// is dropped.
	Detached bool

	// EndOnStop closes the stream when the pump stops: nothing read from
	// the source after the stop is recorded (a client's input to a
	// session that is ending). Otherwise a stream goes on reading and
	// recording its source to its end (a target's output, so that the
	// target is not blocked on it), delivering nothing.
	EndOnStop bool

	// IgnoreWriteErrors: a failed write to the destination stops the
	// stream's deliveries, not the pump (the input of a terminal that is
	// gone). Otherwise the pump stops for it.
	IgnoreWriteErrors bool
}

// Whose buffer a chunk's data is in.
const (
	refNone     uint8 = iota // not the pool's
	refReserved              // one of the stream's reserve
	refCharged               // counted against the pool's bound
)

// A chunk is what the forwarder delivers: data appended to the journal as
// frame seq (or a frame before it), or a request recorded as frame seq
// to carry out in its place (ctrl).
type chunk struct {
	seq  uint64
	data []byte
	ref  uint8
	ctrl func()
}

// A Stream is one direction of a session: its source read, recorded and
// delivered to its destination (see [Pump.Copy]). Its methods are safe for
// concurrent use.
type Stream struct {
	p       *Pump
	src     io.Reader
	dst     io.Writer
	kind    recorder.Kind
	channel uint32
	opts    StreamOptions
	onDone  func() // called when done closes

	// The reader's own.
	wait func() error // waits until src is readable; nil if it cannot

	// mu orders what enters the stream: each record (the filter, the
	// Append) and its queueing happen under it, so that chunks are
	// queued in the order of their frames, injected requests among them.
	mu      sync.Mutex
	closed  bool        // guarded by mu
	armed   bool        // guarded by mu: an idle flush is due at flushAt
	flushAt time.Time   // guarded by mu
	timer   *time.Timer // guarded by mu: the idle flush's
	// got is set by the reader between a read that returned bytes and
	// their record: an idle flush waits for them rather than decide a
	// value whose rest has arrived.
	got atomic.Bool

	// qmu guards the queue between the reader (and Inject) and the
	// forwarder, which runs only while there is something to deliver:
	// push starts it, and it returns once the queue is empty.
	qmu        sync.Mutex
	queue      []chunk // guarded by qmu
	spare      []chunk // guarded by qmu: the forwarder's last batch, for reuse
	forwarding bool    // guarded by qmu: a forwarder runs
	qclosed    bool    // guarded by qmu: Close was called; nothing more is queued
	finished   bool    // guarded by qmu: closed and everything delivered or dropped
	// delivering is the forwarders', one at a time: false once the
	// stream delivers nothing more.
	delivering bool

	// Buffers held: counted by the reader's take and the forwarder's
	// give.
	held     atomic.Int32
	reserved atomic.Int32
	returned chan struct{} // a buffer came back; buffered

	closing chan struct{}   // closed by Close
	stop    <-chan struct{} // the pump's stopped, with EndOnStop; else nil
	running atomic.Int32    // goroutines Done waits for
	done    chan struct{}
}

// Copy starts a stream that reads src, appends each read to the journal as
// a frame of kind and channel, and writes it to dst once that frame is
// committed, until src ends (or the stream is closed). A nil src is an
// empty one; a nil dst discards. The stream stops delivering at the
// pump's first stop, at the first failed write or commit (which stops the
// pump), or once the pump's context ends.
//
// A src that can say when it is readable without being read (a method
// WaitReadable() error, or a pollable file through syscall.Conn) is
// waited on before a buffer is taken: an idle stream then holds none.
func (p *Pump) Copy(dst io.Writer, src io.Reader, kind recorder.Kind, channel uint32, opts StreamOptions) *Stream {
	return p.start(dst, src, kind, channel, opts, nil)
}

func (p *Pump) start(dst io.Writer, src io.Reader, kind recorder.Kind, channel uint32, opts StreamOptions, onDone func()) *Stream {
	if src == nil {
		src = eof{}
	}
	if dst == nil {
		dst = io.Discard
	}
	s := &Stream{
		p: p, src: src, dst: dst, kind: kind, channel: channel, opts: opts, onDone: onDone,
		returned: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{}),
		delivering: true,
	}
	if opts.EndOnStop {
		s.stop = p.stopped
	}
	s.wait = WaiterOf(src)
	if opts.Detached {
		s.running.Store(1)
	} else {
		s.running.Store(2)
	}
	go s.read()
	return s
}

// Done is closed once the stream is closed, everything it queued is
// delivered or dropped, and its reader has returned (unless it is
// Detached).
func (s *Stream) Done() <-chan struct{} { return s.done }

// Close ends the stream: nothing more is recorded or injected, and what
// was queued before is still delivered (unless the pump has stopped). It
// does not wait.
func (s *Stream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.disarm()
	s.mu.Unlock()
	close(s.closing)
	s.qmu.Lock()
	s.qclosed = true
	idle := !s.forwarding
	s.qmu.Unlock()
	if idle {
		// Nothing queued, and no forwarder to see the close.
		s.finish()
	}
}

// Inject records frames, in their place among the stream's data, and has
// the forwarder call do there: after the data recorded before them has
// been delivered, before the data recorded after (a terminal resize, in
// order with the keystrokes). do runs once the last frame is committed,
// unless the pump has stopped by then; a nil do only records. The frames
// are recorded as given, not filtered. Once the stream is closed (or
// stopped, with EndOnStop, or recording has failed) it returns ErrClosed,
// and records nothing.
func (s *Stream) Inject(do func(), frames ...Frame) error {
	s.mu.Lock()
	if !s.accepting() {
		s.mu.Unlock()
		return ErrClosed
	}
	var seq uint64
	for _, f := range frames {
		var err error
		if seq, err = s.p.rec.Append(f.Kind, f.Channel, f.Payload); err != nil {
			s.mu.Unlock()
			err = RecordingFailed(err)
			s.p.Stop(err)
			return err
		}
	}
	if do != nil && len(frames) > 0 {
		s.push(chunk{seq: seq, ctrl: do})
	}
	s.mu.Unlock()
	return nil
}

// accepting reports whether the stream still records. s.mu is held.
func (s *Stream) accepting() bool {
	if s.closed || s.p.failing() {
		return false
	}
	select {
	case <-s.stop:
		return false
	default:
		return true
	}
}

// read is the stream's reader: wait for the source, take a buffer, read,
// record, queue; until the source ends or the stream takes nothing more.
func (s *Stream) read() {
	if !s.opts.Detached {
		defer s.exit()
	}
	large := false
	for {
		var werr error
		waited := false
		if s.wait != nil {
			// Readable before a buffer is taken: an idle stream
			// holds none. An error here (a closed or non-pollable
			// file) is left for the Read to report, or to show that
			// the source cannot be waited on.
			werr = s.wait()
			waited = werr == nil
		}
		size := SmallBufSize
		if large || waited {
			size = BufSize
		}
		buf, ref := s.take(size)
		if buf == nil {
			s.Close()
			return
		}
		n, err := s.src.Read(buf)
		if werr != nil && err == nil {
			s.wait = nil
		}
		if n > 0 {
			if s.opts.Filter != nil {
				s.got.Store(true)
			}
			if !s.record(buf, n, ref) {
				s.Close()
				return
			}
		} else {
			s.give(buf, ref)
		}
		if err != nil {
			s.end(err)
			return
		}
		// A source that cannot be waited on is read into a small
		// buffer after a small read: an interactive stream then
		// holds little while it waits. A read that needed more than
		// a small buffer is bulk: the next read gets a whole one.
		large = n >= SmallBufSize
	}
}

// take returns a buffer of size bytes to read into, waiting while the
// stream holds as many as it may; nil once the stream takes nothing more.
func (s *Stream) take(size int) ([]byte, uint8) {
	for {
		select {
		case <-s.closing:
			return nil, refNone
		case <-s.p.failed:
			return nil, refNone
		case <-s.stop:
			return nil, refNone
		default:
		}
		if s.held.Load() < MaxInFlight {
			if s.reserved.Load() < Reserved {
				s.reserved.Add(1)
				s.held.Add(1)
				return s.p.pool.get(size), refReserved
			}
			if s.p.pool.charge(size) {
				s.held.Add(1)
				return s.p.pool.get(size), refCharged
			}
		}
		// Every buffer held comes back once delivered or dropped.
		select {
		case <-s.returned:
		case <-s.closing:
		case <-s.p.failed:
		case <-s.stop:
		}
	}
}

// give returns a buffer that take returned; data without one (ref
// refNone) is left to the garbage collector.
func (s *Stream) give(b []byte, ref uint8) {
	switch ref {
	case refNone:
		return
	case refReserved:
		s.reserved.Add(-1)
	case refCharged:
		s.p.pool.credit(cap(b))
	}
	s.held.Add(-1)
	s.p.pool.put(b)
	select {
	case s.returned <- struct{}{}:
	default:
	}
}

// record filters and records buf[:n], read into a buffer of ref, and
// queues it for delivery. It reports false if the stream takes nothing
// more.
func (s *Stream) record(buf []byte, n int, ref uint8) bool {
	s.mu.Lock()
	if !s.accepting() {
		s.got.Store(false)
		s.mu.Unlock()
		s.give(buf, ref)
		return false
	}
	out := Out{Record: buf[:n], Deliver: buf[:n]}
	var err error
	if f := s.opts.Filter; f != nil {
		s.got.Store(false)
		out, err = f.Filter(s.p.rec, buf[:n])
		s.arm()
	}
	if err == nil {
		err = s.queueLocked(out, buf, ref)
	} else {
		s.give(buf, ref)
	}
	s.mu.Unlock()
	if err != nil {
		s.p.Stop(RecordingFailed(err))
		return false
	}
	return true
}

// queueLocked appends out.Record to the journal and queues out.Deliver
// for the forwarder, in buf (a pool buffer of ref, or nil) if it fits,
// which is then the chunk's. Whatever happens, buf is given back or
// handed on. s.mu is held.
func (s *Stream) queueLocked(out Out, buf []byte, ref uint8) error {
	if len(out.Record) == 0 && len(out.Deliver) == 0 {
		s.give(buf, ref)
		return nil
	}
	seq, err := s.p.rec.Append(s.kind, s.channel, out.Record)
	if err != nil {
		s.give(buf, ref)
		return err
	}
	c := chunk{seq: seq}
	switch d := out.Deliver; {
	case len(d) == 0:
		s.give(buf, ref)
		return nil
	case len(buf) > 0 && &d[0] == &buf[0]:
		c.data, c.ref = d, ref // delivered as read: no copy
	case len(d) <= cap(buf):
		c.data, c.ref = buf[:copy(buf[:cap(buf)], d)], ref
	default:
		s.give(buf, ref)
		c.data = bytes.Clone(d)
	}
	s.push(c)
	return nil
}

// end is the reader's last act: the source returned err.
func (s *Stream) end(err error) {
	var cause error
	if s.opts.ReadError != nil {
		cause = s.opts.ReadError(err)
	}
	if f := s.opts.Filter; f != nil {
		var ferr error
		s.mu.Lock()
		if s.accepting() {
			s.disarm()
			var out Out
			if out, ferr = f.End(s.p.rec); ferr == nil {
				ferr = s.queueLocked(out, nil, refNone)
			}
		}
		s.mu.Unlock()
		if ferr != nil {
			s.p.Stop(RecordingFailed(ferr))
			s.Close()
			return
		}
	}
	if cause != nil {
		s.p.Stop(cause)
	}
	if s.opts.OnEnd == nil {
		s.Close()
		return
	}
	select {
	case <-s.closing:
	default:
		s.opts.OnEnd(s, err)
	}
}

// arm schedules an idle flush if the filter holds bytes back. s.mu is
// held.
func (s *Stream) arm() {
	d := s.opts.Filter.Idle()
	if d <= 0 {
		s.armed = false
		return
	}
	s.armed = true
	s.flushAt = time.Now().Add(d)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.flushIdle)
	} else {
		s.timer.Reset(d)
	}
}

// disarm cancels the idle flush. s.mu is held.
func (s *Stream) disarm() {
	s.armed = false
	if s.timer != nil {
		s.timer.Stop()
	}
}

// flushIdle releases what the filter holds once the source has been quiet
// for the filter's Idle. It runs on a timer's goroutine.
func (s *Stream) flushIdle() {
	s.mu.Lock()
	if !s.armed || s.got.Load() || !s.accepting() {
		// Disarmed, or a read has come that re-arms it.
		s.mu.Unlock()
		return
	}
	if d := time.Until(s.flushAt); d > 0 {
		// A timer set before the last read: not quiet for long enough.
		s.timer.Reset(d)
		s.mu.Unlock()
		return
	}
	out, err := s.opts.Filter.Flush(s.p.rec)
	if err == nil {
		s.arm()
		err = s.queueLocked(out, nil, refNone)
	}
	s.mu.Unlock()
	if err != nil {
		s.p.Stop(RecordingFailed(err))
	}
}

// push queues c for the forwarder, and starts one if none runs. s.mu is
// held, so Close has not come yet.
func (s *Stream) push(c chunk) {
	s.qmu.Lock()
	s.queue = append(s.queue, c)
	start := !s.forwarding
	s.forwarding = true
	s.qmu.Unlock()
	if start {
		go s.forward()
	}
}

// forward is the stream's forwarder: it takes the queue whole, delivers
// each chunk once its frame is committed, and gives its buffer back, until
// the queue is empty; then it returns (an idle stream has no forwarder),
// and finishes the stream if it is closed. After the pump stops, after a
// failed write or commit, or once the pump's context ends, it delivers
// nothing more but goes on taking chunks and giving their buffers back, so
// that the reader never waits on a stream that delivers nothing.
//
// A dst that blocks forever blocks the forwarder: the caller unblocks it
// (closes a file, a channel) when it tears the session down.
func (s *Stream) forward() {
	for {
		s.qmu.Lock()
		if len(s.queue) == 0 {
			// Idle: neither the goroutine nor the queue's memory is kept.
			s.forwarding = false
			s.queue, s.spare = nil, nil
			closed := s.qclosed
			s.qmu.Unlock()
			if closed {
				s.finish()
			}
			return
		}
		batch := s.queue
		s.queue, s.spare = s.spare[:0], nil
		s.qmu.Unlock()
		for i := range batch {
			c := &batch[i]
			if s.delivering {
				s.delivering = s.deliver(c)
			}
			s.give(c.data, c.ref)
			*c = chunk{}
		}
		s.qmu.Lock()
		s.spare = batch[:0]
		s.qmu.Unlock()
	}
}

// finish is called once the stream is closed and everything queued is
// delivered or dropped.
func (s *Stream) finish() {
	s.qmu.Lock()
	done := s.finished
	s.finished = true
	s.qmu.Unlock()
	if done {
		return
	}
	if s.opts.Delivered != nil {
		s.opts.Delivered()
	}
	s.exit()
}

// deliver waits for c's frame to commit, then writes c's data or carries
// out its request. It reports whether the stream goes on delivering. A
// Wait cut short by the pump's context stops nothing: ending it is the
// caller's decision, and the caller knows.
func (s *Stream) deliver(c *chunk) bool {
	select {
	case <-s.p.stopped:
		return false
	default:
	}
	if err := s.p.rec.Wait(s.p.ctx, c.seq); err != nil {
		if s.p.ctx.Err() == nil {
			s.p.Stop(RecordingFailed(err))
		}
		return false
	}
	if c.ctrl != nil {
		c.ctrl()
		return true
	}
	if _, err := s.dst.Write(c.data); err != nil {
		if !s.opts.IgnoreWriteErrors {
			what := "output"
			if s.kind == recorder.KindInput {
				what = "input"
			}
			s.p.Stop(fmt.Errorf("write %s: %w", what, err))
		}
		return false
	}
	return true
}

// exit ends one of the goroutines Done waits for.
func (s *Stream) exit() {
	if s.running.Add(-1) == 0 {
		close(s.done)
		if s.onDone != nil {
			s.onDone()
		}
	}
}

// eof is the source of a stream without one.
type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }

// WaiterOf returns how to wait until src is readable without reading it,
// or nil if src cannot say: src's own WaitReadable method, or a [Waiter]
// on its file (syscall.Conn).
func WaiterOf(src io.Reader) func() error {
	if r, ok := src.(interface{ WaitReadable() error }); ok {
		return r.WaitReadable
	}
	if sc, ok := src.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return NewWaiter(raw).WaitReadable
		}
	}
	return nil
}
