package pump

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/bastionhq/bastion/recorder"
)

// StderrChannel is the frame channel of a command's stderr: SSH's extended
// data type 1.
const StderrChannel = 1

// Ends are the ends of a session without a terminal: the client's input
// and where it goes, the target's output and error and where they go.
type Ends struct {
	// Stdin is the client's input; nil for none. The goroutine reading
	// it is not waited for (a Read cannot be interrupted).
	Stdin io.Reader
	// Input is the target's stdin; EndInput, if not nil, is called once
	// the client's input has ended and every chunk before the end is
	// delivered (or the session stopped).
	Input    io.Writer
	EndInput func()
	// Stdout and Stderr are read to their end; their bytes go to
	// ToStdout and ToStderr. A nil Stderr is none (a port forward).
	Stdout, Stderr     io.Reader
	ToStdout, ToStderr io.Writer
	// Filter, if not nil, gives each stream its filter (nil for none):
	// the input is (KindInput, 0), the output (KindOutput, 0), the error
	// (KindStderr, StderrChannel).
	Filter func(kind recorder.Kind, channel uint32) Filter
}

// Pipes are the streams of a session without a terminal, record then
// forward in both directions: input recorded as kind input, output as
// kind output, the target's stderr as kind stderr on channel 1.
type Pipes struct {
	*Pump
	in         *Stream
	outputDone chan struct{}
}

// StartPipes starts the streams of ends, recorded by rec. kill is called
// once, at the first stop, to end the target (which makes its output
// end). ctx bounds every wait for a commit.
func StartPipes(ctx context.Context, rec Recorder, ends Ends, kill func()) *Pipes {
	p := &Pipes{
		Pump:       New(ctx, rec, Options{OnStop: func(error) { kill() }}),
		outputDone: make(chan struct{}),
	}
	filter := func(kind recorder.Kind, channel uint32) Filter {
		if ends.Filter == nil {
			return nil
		}
		return ends.Filter(kind, channel)
	}
	outputs := int32(1)
	if ends.Stderr != nil {
		outputs++
	}
	var left atomic.Int32
	left.Store(outputs)
	outputEnded := func() {
		if left.Add(-1) == 0 {
			close(p.outputDone)
		}
	}
	p.start(ends.ToStdout, ends.Stdout, recorder.KindOutput, 0, StreamOptions{Filter: filter(recorder.KindOutput, 0)}, outputEnded)
	if ends.Stderr != nil {
		p.start(ends.ToStderr, ends.Stderr, recorder.KindStderr, StderrChannel, StreamOptions{Filter: filter(recorder.KindStderr, StderrChannel)}, outputEnded)
	}
	// A write to the target that fails means it is gone, which its
	// output's end tells; the client's input after a stop is not kept.
	p.in = p.Copy(ends.Input, ends.Stdin, recorder.KindInput, 0, StreamOptions{
		Filter:            filter(recorder.KindInput, 0),
		Detached:          true,
		EndOnStop:         true,
		IgnoreWriteErrors: true,
		Delivered:         ends.EndInput,
	})
	return p
}

// OutputDone is closed once Stdout and Stderr are read to their end and
// everything read from them is delivered or dropped.
func (p *Pipes) OutputDone() <-chan struct{} { return p.outputDone }

// Inject records frames in their place among the input and has do carry
// out the request there (see [Stream.Inject]). Once the input has ended
// it returns [ErrClosed], and the caller records and delivers the request
// itself.
func (p *Pipes) Inject(do func(), frames ...Frame) error { return p.in.Inject(do, frames...) }
