package bastion

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/bastionhq/bastion/recorder"
)

// Recorder is the journal side of one session, as the pumps need it. The
// recorder package's session implements it.
//
// Every method is called from several goroutines at once.
type Recorder interface {
	// Append hands one chunk to the journal and returns its sequence
	// number. It copies p. It blocks while the session's pipeline of
	// uncommitted frames is full, and returns an error once the journal
	// has failed; after an error the session must stop.
	Append(kind uint8, channel uint32, p []byte) (seq uint64, err error)

	// Wait blocks until frame seq and every frame before it are durably
	// committed. It returns the journal's error if they never will be, or
	// ctx's error.
	Wait(ctx context.Context, seq uint64) error

	// Done is closed when the session can record nothing more (the
	// journal failed or closed), so that a session doing no terminal I/O,
	// which would never meet the failure in Append or Wait, stops too.
	Done() <-chan struct{}

	// Err is why Done was closed, or nil while it is open.
	Err() error
}

// Frame kinds, as the journal format fixes them. The pumps write only
// these; the exec command and the exit status are the caller's to record.
const (
	kindInput  uint8 = 1  // bytes to the command
	kindOutput uint8 = 2  // bytes from the command
	kindResize uint8 = 4  // terminal size: cols u32 ‖ rows u32, big-endian
	kindSignal uint8 = 7  // a signal delivered to the command: its name ("HUP")
	kindMarker uint8 = 10 // an annotation by the bastion: UTF-8 text
)

// ErrRecordingFailed is wrapped by every error that ends a session because
// the journal could not take or commit its frames. A caller branches on it
// to tell an unrecordable session from a failed command.
var ErrRecordingFailed = errors.New("recording failed")

func recordingFailed(err error) error {
	return fmt.Errorf("%w: %w", ErrRecordingFailed, err)
}

// A bufPool is the fixed set of buffers that circulate between the reader
// and the forwarder of one direction of a stream. Its size bounds how many
// chunks may be read but not yet delivered, and it lets the reader hand its
// buffer over without a second copy (Append has already taken its own).
type bufPool chan []byte

func newBufPool(n, size int) bufPool {
	p := make(bufPool, n)
	for range n {
		p <- make([]byte, size)
	}
	return p
}

// put returns a buffer taken from p. It never blocks: p has room for every
// buffer it ever held.
func (p bufPool) put(b []byte) { p <- b[:cap(b)] }

// A chunk is a piece of a stream that has been appended to the journal and
// may be delivered once frame seq is committed. data lies in a pool buffer.
type chunk struct {
	seq  uint64
	data []byte
	// ctrl, if set, is a request recorded at seq (a terminal resize) to
	// carry out, in its place among the data, instead of writing data.
	ctrl func()
}

// forward delivers each chunk to dst once rec has committed its frame, and
// returns the chunk's buffer to pool. It returns when chunks is closed.
//
// After stop is closed, after ctx is done, or after the first error, it
// delivers nothing more but keeps taking chunks and recycling their
// buffers, so the producer never blocks on a full pipeline. The first error
// goes to report: a commit failure wrapped in [ErrRecordingFailed], a write
// error as dst returned it. A Wait cut short by ctx is not reported: ending
// ctx is the caller's decision, and the caller already knows.
//
// A dst that blocks forever blocks forward: the caller unblocks it (closing
// a file, a channel) when it tears the session down.
func forward(ctx context.Context, rec Recorder, chunks <-chan chunk, pool bufPool, dst io.Writer, stop <-chan struct{}, report func(error)) {
	delivering := true
	for c := range chunks {
		if delivering {
			select {
			case <-stop:
				delivering = false
			default:
			}
		}
		if delivering {
			if err := rec.Wait(ctx, c.seq); err != nil {
				delivering = false
				if ctx.Err() == nil {
					report(recordingFailed(err))
				}
			}
		}
		if c.ctrl != nil {
			if delivering {
				c.ctrl()
			}
			continue
		}
		if delivering {
			if _, err := dst.Write(c.data); err != nil {
				delivering = false
				report(err)
			}
		}
		pool.put(c.data)
	}
}

// every calls fn every interval until ctx is done.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// RecordExit records how a command ended: an exit frame holding its status
// (and the signal that killed it, if one did), and the same as "exit-"
// attributes in end, for the session's end leaf.
func RecordExit(s *recorder.Session, res Result, end recorder.Attrs) error {
	exit := recorder.Attrs{"status": strconv.Itoa(res.ExitCode)}
	if res.Signal != "" {
		exit["signal"] = res.Signal
	}
	for k, v := range exit {
		end["exit-"+k] = v
	}
	payload, err := recorder.EncodeAttrs(exit)
	if err != nil {
		return err
	}
	if _, err := s.Append(recorder.KindExit, 0, payload); err != nil {
		return fmt.Errorf("record exit status: %w", err)
	}
	return nil
}
