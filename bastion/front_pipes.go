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
	// Stdin is the client's input; its end closes the command's stdin.
	// RunPiped does not wait for the goroutine reading it (see RunLocal).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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

	stopped := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var firstErr error
	stop := func(err error) {
		mu.Lock()
		if firstErr == nil || errors.Is(err, ErrRecordingFailed) && !errors.Is(firstErr, ErrRecordingFailed) {
			firstErr = err
		}
		mu.Unlock()
		once.Do(func() {
			close(stopped)
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		})
	}
	report := func(err error) {
		if errors.Is(err, ErrRecordingFailed) {
			stop(err)
			return
		}
		stop(fmt.Errorf("write output: %w", err))
	}

	var output sync.WaitGroup
	pump := func(r io.Reader, kind uint8, channel uint32, dst io.Writer) {
		pool := newBufPool(outputBufs, outputBufSize)
		chunks := make(chan chunk, outputBufs)
		output.Go(func() { forward(ctx, rec, chunks, pool, dst, stopped, report) })
		output.Go(func() {
			defer close(chunks)
			for {
				buf := <-pool
				n, rerr := r.Read(buf)
				if n > 0 {
					seq, err := rec.Append(kind, channel, buf[:n])
					if err != nil {
						pool.put(buf)
						stop(recordingFailed(err))
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
	pump(stdout, kindOutput, 0, writerOr(cfg.Stdout))
	pump(stderr, uint8(recorder.KindStderr), stderrChannel, writerOr(cfg.Stderr))

	// Input: not waited for (a Read cannot be interrupted); its end,
	// once every chunk before it is delivered, closes the command's stdin.
	inPool := newBufPool(inputBufs, inputBufSize)
	inChunks := make(chan chunk, inputBufs)
	go func() {
		forward(ctx, rec, inChunks, inPool, stdin, stopped, func(err error) {
			if errors.Is(err, ErrRecordingFailed) {
				stop(err)
			}
		})
		stdin.Close()
	}()
	go func() {
		defer close(inChunks)
		if cfg.Stdin == nil {
			return
		}
		for {
			var buf []byte
			select {
			case buf = <-inPool:
			case <-stopped:
				return
			}
			n, rerr := cfg.Stdin.Read(buf)
			if n > 0 {
				seq, err := rec.Append(kindInput, 0, buf[:n])
				if err != nil {
					stop(recordingFailed(err))
					return
				}
				inChunks <- chunk{seq: seq, data: buf[:n]}
			} else {
				inPool.put(buf)
			}
			if rerr != nil {
				return
			}
		}
	}()

	go func() { output.Wait(); close(pumped) }()
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
	mu.Lock()
	defer mu.Unlock()
	return exitResult(cmd.ProcessState), firstErr
}

func writerOr(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
