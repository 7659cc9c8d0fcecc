package bastion

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bastionhq/bastion/recorder"
)

// stderrChannel is the frame channel of a command's stderr: SSH's
// extended data type 1.
const stderrChannel = 1

// PipeConfig describes a command run with pipes, not a terminal: an exec
// request without a PTY, whose bytes must pass unchanged.
type PipeConfig struct {
	Argv []string
	Env  []string
	// Dir and Credential are as in LocalConfig: the working directory
	// ("" for this process's) and the user the command runs as (nil for
	// this process's).
	Dir        string
	Credential *syscall.Credential
	// Stdin is the client's input; its end closes the command's stdin.
	// RunPiped does not wait for the goroutine reading it (see RunLocal).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Output, if not nil, filters the command's stdout (channel 0) and
	// stderr (channel 1) before they are recorded and forwarded (masking).
	Output func(r io.Reader, channel uint32) io.Reader
}

// RunPiped runs cfg.Argv with pipes for stdin, stdout and stderr and pumps
// them through rec, record then forward, as RunLocal does for a terminal.
// If recording fails it kills the command's process group and returns an
// error wrapping [ErrRecordingFailed]; if ctx ends, it kills it and returns
// ctx's error.
func RunPiped(ctx context.Context, cfg PipeConfig, rec Recorder) (Result, error) {
	if len(cfg.Argv) == 0 {
		return Result{}, errors.New("run command: no command")
	}
	cmd := exec.Command(cfg.Argv[0], cfg.Argv[1:]...)
	cmd.Env = cfg.Env
	cmd.Dir = cfg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cfg.Credential}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return Result{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return Result{}, err
	}
	// As startCommand does: the command gets SIGKILL if bastion dies, and
	// the goroutine that started it keeps its thread until it is reaped
	// (after its pipes are read to their end, as exec.Cmd requires).
	pumped := make(chan struct{})
	waited := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		setParentDeathSignal(cmd)
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		<-pumped
		_ = cmd.Wait()
		close(waited)
	}()
	if err := <-started; err != nil {
		return Result{}, fmt.Errorf("run command: start %s: %w", cfg.Argv[0], err)
	}

	var out, errOut io.Reader = stdout, stderr
	if cfg.Output != nil {
		out, errOut = cfg.Output(stdout, 0), cfg.Output(stderr, stderrChannel)
	}
	p := startPipes(ctx, rec, pipeEnds{
		Stdin: cfg.Stdin, Input: stdin, EndInput: func() { stdin.Close() },
		Stdout: out, Stderr: errOut, ToStdout: writerOr(cfg.Stdout), ToStderr: writerOr(cfg.Stderr),
	}, func() { _ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL) })
	go func() { <-p.outputDone; close(pumped) }()
	stop := p.stop
	select {
	case <-pumped:
	case <-rec.Done():
		stop(recordingFailed(recorderErr(rec)))
	case <-ctx.Done():
		stop(canceled(ctx))
	}
	<-pumped
	// The pipes are at their end: the command has exited, or closed
	// them and runs on, as long as the session may.
	select {
	case <-waited:
	case <-rec.Done():
		stop(recordingFailed(recorderErr(rec)))
	case <-ctx.Done():
		stop(canceled(ctx))
	}
	<-waited
	return exitResult(cmd.ProcessState), p.err()
}

// pipeEnds are the ends of a session without a terminal: the client's
// input and where it goes, the target's output and error and where they go.
type pipeEnds struct {
	// Stdin is the client's input; nil for none. The goroutine reading
	// it is not waited for (a Read cannot be interrupted).
	Stdin io.Reader
	// Input is the target's stdin; EndInput is called once the client's
	// input has ended and every chunk before the end is delivered (or
	// the session stopped).
	Input    io.Writer
	EndInput func()
	// Stdout and Stderr are read to their end; their bytes go to
	// ToStdout and ToStderr.
	Stdout, Stderr     io.Reader
	ToStdout, ToStderr io.Writer
}

// pipes pumps the streams of a session without a terminal through a
// recorder, record then forward, in both directions: a byte reaches the
// target or the client only once its frame is committed. Input is
// recorded as kind input, output as kind output, the target's stderr as
// kind stderr on channel 1.
type pipes struct {
	// outputDone is closed once Stdout and Stderr are read to their end
	// and everything read from them is delivered or dropped.
	outputDone chan struct{}

	stopped chan struct{} // closed by the first stop
	once    sync.Once
	kill    func()
	mu      sync.Mutex
	first   error // guarded by mu: the cause of the first stop

	// inMu orders what enters the input: each record and its send to
	// inChunks happen under it, so chunks reach the target in the order
	// of their records.
	inMu     sync.Mutex
	inChunks chan chunk // closed (under inMu, inClosed set) when input ends
	inClosed bool
	rec      Recorder
}

// errInputClosed is inject's answer once the input has ended.
var errInputClosed = errors.New("the input has ended")

// inject records a request (kind, payload) in its place among the input
// and has deliver carry it out there: after the input recorded before it
// has reached the target, before the input recorded after. Once the input
// has ended it returns errInputClosed and the caller delivers it itself.
func (p *pipes) inject(kind uint8, payload []byte, deliver func()) error {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.inClosed {
		return errInputClosed
	}
	seq, err := p.rec.Append(kind, 0, payload)
	if err != nil {
		p.stop(recordingFailed(err))
		return recordingFailed(err)
	}
	p.inChunks <- chunk{seq: seq, ctrl: deliver}
	return nil
}

// startPipes starts the pumps of ends. kill is called once, at the first
// stop, to end the target (which makes its output end).
func startPipes(ctx context.Context, rec Recorder, ends pipeEnds, kill func()) *pipes {
	p := &pipes{outputDone: make(chan struct{}), stopped: make(chan struct{}), kill: kill, rec: rec}
	report := func(err error) {
		if errors.Is(err, ErrRecordingFailed) {
			p.stop(err)
			return
		}
		p.stop(fmt.Errorf("write output: %w", err))
	}

	var output sync.WaitGroup
	pump := func(r io.Reader, kind uint8, channel uint32, dst io.Writer) {
		pool := newBufPool(outputBufs, outputBufSize)
		chunks := make(chan chunk, outputBufs)
		output.Go(func() { forward(ctx, rec, chunks, pool, dst, p.stopped, report) })
		output.Go(func() {
			defer close(chunks)
			for {
				buf := <-pool
				n, rerr := r.Read(buf)
				if n > 0 {
					seq, err := rec.Append(kind, channel, buf[:n])
					if err != nil {
						pool.put(buf)
						p.stop(recordingFailed(err))
						return
					}
					chunks <- chunk{seq: seq, data: buf[:n]}
				} else {
					pool.put(buf)
				}
				if rerr != nil {
					return
				}
			}
		})
	}
	pump(ends.Stdout, kindOutput, 0, ends.ToStdout)
	pump(ends.Stderr, uint8(recorder.KindStderr), stderrChannel, ends.ToStderr)
	go func() { output.Wait(); close(p.outputDone) }()

	// Input: not waited for (a Read cannot be interrupted); its end,
	// once every chunk before it is delivered, ends the target's input.
	inPool := newBufPool(inputBufs, inputBufSize)
	inChunks := make(chan chunk, inputBufs)
	p.inChunks = inChunks
	go func() {
		forward(ctx, rec, inChunks, inPool, ends.Input, p.stopped, func(err error) {
			if errors.Is(err, ErrRecordingFailed) {
				p.stop(err)
			}
		})
		ends.EndInput()
	}()
	go func() {
		defer func() {
			p.inMu.Lock()
			p.inClosed = true
			close(inChunks)
			p.inMu.Unlock()
		}()
		if ends.Stdin == nil {
			return
		}
		for {
			var buf []byte
			select {
			case buf = <-inPool:
			case <-p.stopped:
				return
			}
			n, rerr := ends.Stdin.Read(buf)
			if n > 0 {
				p.inMu.Lock()
				seq, err := rec.Append(kindInput, 0, buf[:n])
				if err == nil {
					inChunks <- chunk{seq: seq, data: buf[:n]}
				}
				p.inMu.Unlock()
				if err != nil {
					p.stop(recordingFailed(err))
					return
				}
			} else {
				inPool.put(buf)
			}
			if rerr != nil {
				return
			}
		}
	}()
	return p
}

// stop ends the session early because of err: nothing more is delivered,
// and the target is killed. The first cause is kept, unless a recording
// failure comes later.
func (p *pipes) stop(err error) {
	p.mu.Lock()
	if p.first == nil || errors.Is(err, ErrRecordingFailed) && !errors.Is(p.first, ErrRecordingFailed) {
		p.first = err
	}
	p.mu.Unlock()
	p.once.Do(func() {
		close(p.stopped)
		p.kill()
	})
}

// err is the cause of the first stop, or nil.
func (p *pipes) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first
}

func writerOr(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
