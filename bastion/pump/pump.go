// Package pump carries the bytes of recorded sessions, record then
// forward: a byte read from one side reaches the other only after the
// journal has committed the frame that holds it. It is the one place that
// rule lives, for every byte path of bastion: a local command's terminal
// or pipes, an SSH target's channel, an sftp subsystem, the sessions of
// ssh -J, port forwards, and the masking stage between a read and its
// record.
//
// A stream ([Pump.Copy], shaped like io.Copy) reads its source, appends
// each read to the journal as a frame of its kind and channel, and writes
// it to its destination once that frame is committed. A request that must
// happen in its place among the data (a terminal resize) is recorded and
// queued with it ([Stream.Inject]). The streams of one session belong to
// one [Pump], which stops them together and keeps the first cause.
// [StartPipes] assembles the three streams of a session without a
// terminal.
//
// # The path of a byte
//
// stream.go holds it (pool.go the buffers it takes, waiter.go its wait
// for a readable source). A byte read by a stream without a filter meets:
//
//   - Two goroutines of the stream: its reader, which waits until the
//     source is readable (when the source can say so), takes a buffer,
//     reads, appends the read to the recorder and queues it; and its
//     forwarder, which waits for the frame's commit and writes the
//     buffer to the destination. The forwarder runs only while something
//     is queued: an idle stream has its reader alone. The journal's own
//     writer goroutines commit the frame.
//   - One copy in this process: the recorder's Append copies the read
//     into its pending frame. The read lands in a pool buffer, and that
//     same buffer is what the forwarder writes; it then goes back to the
//     pool. A filter adds what it needs (masking builds its output).
//   - Two locks of the stream's, each taken once: its order lock (held
//     across the Append and the queueing, so that injected requests and
//     data keep their order) and the queue's lock (a few instructions:
//     the reader queues, the forwarder takes the queue whole, one batch
//     at a time). The buffer accounting is atomics. The recorder takes
//     its own: a [recorder.Session] takes its lock in Append and in each
//     Wait, and the journal's queue lock in Append when the frame is new.
//
// # Buffers
//
// Buffers come from a [Pool] shared by the process, on demand: a stream
// takes one when it has bytes to read into and gives it back once they
// are delivered, and idle buffers are left to the garbage collector
// (sync.Pool). A stream whose source is pollable (a terminal, a pipe)
// waits for it to be readable before it takes a buffer, so an idle one
// holds none; a stream reading a source that cannot be waited on (an SSH
// channel) holds one while it waits, a small one after a small read. Each
// stream may always hold [Reserved] buffers; more, up to [MaxInFlight],
// only while the pool's bound on the bytes in flight across the process
// has room. One bulk session cannot starve the others: they keep their
// reserve.
package pump

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/bastionhq/bastion/recorder"
)

// Recorder is the journal side of one session, as the streams need it.
// [recorder.Session] implements it.
//
// Every method is called from several goroutines at once.
type Recorder interface {
	// Append hands one frame to the journal and returns its sequence
	// number. It copies p. It blocks while the session's pipeline of
	// uncommitted frames is full, and returns an error once the journal
	// has failed; after an error the session must stop.
	Append(kind recorder.Kind, channel uint32, p []byte) (seq uint64, err error)

	// Wait blocks until frame seq and every frame before it are durably
	// committed. It returns the journal's error if they never will be, or
	// ctx's error.
	Wait(ctx context.Context, seq uint64) error

	// Done is closed when the session can record nothing more (the
	// journal failed or closed), so that a session doing no I/O, which
	// would never meet the failure in Append or Wait, stops too.
	Done() <-chan struct{}

	// Err is why Done was closed, or nil while it is open.
	Err() error
}

var _ Recorder = (*recorder.Session)(nil)

// ErrRecordingFailed is wrapped by every error that ends a session because
// the journal could not take or commit its frames. A caller branches on it
// to tell an unrecordable session from a failed command.
var ErrRecordingFailed = errors.New("recording failed")

// RecordingFailed wraps err, the journal's, in [ErrRecordingFailed]. An
// error that already wraps it is returned as it is.
func RecordingFailed(err error) error {
	if errors.Is(err, ErrRecordingFailed) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrRecordingFailed, err)
}

// errRecorderDone stands in for the cause of a recorder whose Done channel
// closed while its Err still says nil, which breaks Recorder's contract.
var errRecorderDone = errors.New("recorder can record nothing more")

// RecorderErr is why rec's Done channel closed.
func RecorderErr(rec Recorder) error {
	if err := rec.Err(); err != nil {
		return err
	}
	return errRecorderDone
}

// Canceled is the error for a session whose context ended: ctx.Err(), plus
// the cause if the canceler gave one.
func Canceled(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return err
	}
	return fmt.Errorf("%w: %w", err, cause)
}

// Options adjust a [Pump].
type Options struct {
	// Pool is where the streams take their buffers; nil means [Shared].
	Pool *Pool
	// OnStop, if not nil, is called once, at the first Stop, with its
	// cause, on the goroutine that called Stop: it ends the session's
	// target, so that its output ends. It must not wait for the streams.
	OnStop func(cause error)
}

// A Pump is the streams of one session, which stop together. Its methods
// are safe for concurrent use.
type Pump struct {
	ctx    context.Context
	rec    Recorder
	pool   *Pool
	onStop func(error)

	stopped  chan struct{} // closed by the first Stop
	failed   chan struct{} // closed by the first Stop for a recording failure
	stopOnce sync.Once
	failOnce sync.Once

	mu    sync.Mutex
	cause error // guarded by mu: the first Stop's, unless a recording failure came later
}

// New returns the pump of a session recorded by rec. ctx bounds every wait
// for a commit: once it ends, nothing more is delivered (the caller ends
// it at teardown, and knows why).
func New(ctx context.Context, rec Recorder, opts Options) *Pump {
	pool := opts.Pool
	if pool == nil {
		pool = Shared()
	}
	return &Pump{
		ctx: ctx, rec: rec, pool: pool, onStop: opts.OnStop,
		stopped: make(chan struct{}), failed: make(chan struct{}),
	}
}

// Recorder is the recorder the pump's streams append to.
func (p *Pump) Recorder() Recorder { return p.rec }

// Stop ends the session early because of err: from now on no stream
// delivers anything, and OnStop is called (once). Streams go on reading
// and recording their sources to their end, unless err is a recording
// failure (wrapping [ErrRecordingFailed]): then nothing more is recorded
// either. The first cause is kept, unless a recording failure comes later.
func (p *Pump) Stop(err error) {
	failure := errors.Is(err, ErrRecordingFailed)
	p.mu.Lock()
	first := p.cause == nil
	if first || failure && !errors.Is(p.cause, ErrRecordingFailed) {
		p.cause = err
	}
	p.mu.Unlock()
	if failure {
		p.failOnce.Do(func() { close(p.failed) })
	}
	p.stopOnce.Do(func() {
		close(p.stopped)
		if p.onStop != nil {
			p.onStop(err)
		}
	})
}

// Stopped is closed by the first Stop.
func (p *Pump) Stopped() <-chan struct{} { return p.stopped }

// Failed is closed once recording has failed (a Stop for a recording
// failure): nothing is recorded or delivered after it.
func (p *Pump) Failed() <-chan struct{} { return p.failed }

// Err is why the pump stopped, or nil if it has not.
func (p *Pump) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cause
}

// Until returns once done is closed. If the recorder fails or ctx ends
// first, it stops the pump (a recording failure, or [Canceled]) and goes
// on waiting for done: stopping is what makes done close.
func (p *Pump) Until(done <-chan struct{}) {
	select {
	case <-done:
		return
	case <-p.rec.Done():
		p.Stop(RecordingFailed(RecorderErr(p.rec)))
	case <-p.ctx.Done():
		p.Stop(Canceled(p.ctx))
	}
	<-done
}

func (p *Pump) failing() bool {
	select {
	case <-p.failed:
		return true
	default:
		return false
	}
}
