package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bastionhq/bastion/bastion/pump"
	"github.com/bastionhq/bastion/recorder"
)

// PipeConfig describes a command run with pipes, not a terminal: an exec
// request without a PTY, whose bytes must pass unchanged.
type PipeConfig struct {
	Argv []string
	Env  []string
	// Dir and Credential are as in PTYConfig: the working directory
	// ("" for this process's) and the user the command runs as (nil for
	// this process's).
	Dir        string
	Credential *syscall.Credential
	// Stdin is the client's input; its end closes the command's stdin.
	// RunPiped does not wait for the goroutine reading it (see RunPTY).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Filter, if not nil, gives the streams their pump stage between
	// read and record (masking): stdin (recorder.KindInput, 0), stdout
	// (recorder.KindOutput, 0) and stderr (recorder.KindStderr, 1).
	Filter func(kind recorder.Kind, channel uint32) pump.Filter
}

// RunPiped runs cfg.Argv with pipes for stdin, stdout and stderr and pumps
// them through rec, record then forward, as RunPTY does for a terminal.
// If recording fails it kills the command's process group and returns an
// error wrapping [pump.ErrRecordingFailed]; if ctx ends, it kills it and
// returns ctx's error.
func RunPiped(ctx context.Context, cfg PipeConfig, rec pump.Recorder) (Result, error) {
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
	// The command gets SIGKILL if bastion dies (see start).
	if err := start(cmd, cmd.Start); err != nil {
		return Result{}, fmt.Errorf("run command: start %s: %w", cfg.Argv[0], err)
	}
	// The pipes are files the runtime polls: their streams hold no
	// buffer while the command is quiet.
	p := pump.StartPipes(ctx, rec, pump.Ends{
		Stdin: cfg.Stdin, Input: stdin, EndInput: func() { stdin.Close() },
		Stdout: stdout, Stderr: stderr, ToStdout: cfg.Stdout, ToStderr: cfg.Stderr,
		Filter: cfg.Filter,
	}, func() { _ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL) })
	// Reaped once it has exited and its pipes are read to their end, as
	// exec.Cmd requires.
	waited := make(chan struct{})
	afterExit(cmd, func() {
		<-p.OutputDone()
		_ = cmd.Wait()
		close(waited)
	})
	p.Until(p.OutputDone())
	// The pipes are at their end: the command has exited, or closed
	// them and runs on, as long as the session may.
	p.Until(waited)
	return exitResult(cmd.ProcessState), p.Err()
}
