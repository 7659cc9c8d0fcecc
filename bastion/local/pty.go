package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/bastionhq/bastion/bastion/pump"
	"github.com/bastionhq/bastion/recorder"
)

// PTYConfig describes a command to run in a local pseudo-terminal.
type PTYConfig struct {
	// Argv is the command and its arguments; Argv[0] is looked up in PATH
	// unless it contains a slash. It must not be empty.
	Argv []string

	// Env is the command's environment, as in exec.Cmd: nil means the
	// environment of this process. TERM is not set for the caller.
	Env []string

	// Dir is the command's working directory; "" means this process's.
	// With Credential, it is entered as that user.
	Dir string

	// Credential, if not nil, is the uid, gid and supplementary groups
	// the command runs as (switching needs root); nil means this
	// process's own.
	Credential *syscall.Credential

	// Stdin is what the user types or pipes in. nil means no input: the
	// command sees end of input at once, as if Stdin were empty.
	Stdin io.Reader

	// StdinIsTerminal says Stdin is a terminal, whose end of input the user
	// types as a byte (^D) that reaches the command like any other. When it
	// is false, the end of Stdin is passed on to the command as the
	// terminal's end-of-file character, so that commands reading until end
	// of input (cat, sh) finish.
	StdinIsTerminal bool

	// Stdout receives what the command writes to its terminal, each byte
	// only after the journal has committed it. nil discards the output (it
	// is still recorded).
	Stdout io.Writer

	// Size is the terminal's initial size; a zero Cols or Rows means 80
	// columns or 24 rows.
	Size Size

	// Resize delivers the user's terminal size changes, applied in order,
	// each after the journal has committed it. nil means the size never
	// changes. RunPTY never closes it.
	Resize <-chan Size

	// KillGrace is how long a command may take to exit after SIGHUP, when
	// the session is canceled, before it gets SIGKILL. 0 means 2 seconds; a
	// negative value means no grace. When recording fails there is never a
	// grace: an unrecorded command does not get to run on.
	KillGrace time.Duration

	// Filter, if not nil, gives the input (recorder.KindInput, 0) and the
	// output (recorder.KindOutput, 0) their pump stage between read and
	// record (masking); nil for none. The end-of-file characters RunPTY
	// sends for a Stdin that ended are its own, recorded as they are.
	Filter func(kind recorder.Kind, channel uint32) pump.Filter

	// Pool is where the session's streams take their buffers; nil means
	// the process's shared pool.
	Pool *pump.Pool
}

const (
	defaultCols      = 80
	defaultRows      = 24
	defaultKillGrace = 2 * time.Second

	// drainIdle is how long the output may stay quiet, once the command
	// has exited, before the session stops reading it. Output the command
	// wrote before it exited is already in the terminal's buffer; only
	// background processes still holding the terminal can be slower, and
	// they do not get to hold the session open.
	drainIdle = 200 * time.Millisecond

	// signalCommitWait bounds how long the record of a signal may take to
	// commit before the signal is sent anyway: ending a command must not
	// depend on the journal.
	signalCommitWait = time.Second

	// veof is the terminal's default end-of-file character (^D).
	veof = 0x04
)

// RunPTY runs cfg.Argv in a new pseudo-terminal and pumps its bytes
// through rec, record then forward: output reaches cfg.Stdout, and input
// reaches the command, only after rec has committed it. It returns when the
// command has exited and its output has been delivered. It records the
// terminal's sizes, input, output, the signals it sends, and markers that
// say how input ended or why the session stopped; not the command line or
// the exit status: those are the caller's, who has them from cfg and
// Result.
//
// If rec fails, whether an Append or a Wait meets the failure or rec's Done
// channel closes while the command does no terminal I/O, RunPTY kills the
// command's process group at once, delivers nothing more, and returns an
// error wrapping [pump.ErrRecordingFailed]. If ctx ends, it sends the
// process group SIGHUP, then SIGKILL after cfg.KillGrace (at once if rec
// fails meanwhile), delivers nothing more, and returns ctx's error. If
// writing to cfg.Stdout fails, it ends the command the same way and returns
// that error. Whenever the command was started and has exited, Result says
// how, even alongside an error.
//
// RunPTY does not wait for the goroutine reading cfg.Stdin, because a Read
// cannot be interrupted: that goroutine may stay blocked in Read after
// RunPTY returns, and takes at most one more chunk from cfg.Stdin, which
// it discards without recording or delivering it. Every other goroutine
// RunPTY starts has ended by the time it returns.
func RunPTY(ctx context.Context, cfg PTYConfig, rec pump.Recorder) (Result, error) {
	if len(cfg.Argv) == 0 {
		return Result{}, errors.New("run local command: no command")
	}
	if rec == nil {
		return Result{}, errors.New("run local command: no recorder")
	}
	cmd := exec.Command(cfg.Argv[0], cfg.Argv[1:]...)
	if cmd.Err != nil {
		return Result{}, fmt.Errorf("run local command: %w", cmd.Err)
	}
	cmd.Env = cfg.Env
	cmd.Dir = cfg.Dir
	if cfg.Credential != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cfg.Credential}
	}

	size := cfg.Size.Clamp()
	if size.Cols == 0 {
		size.Cols = defaultCols
	}
	if size.Rows == 0 {
		size.Rows = defaultRows
	}
	// The command must not see a size the journal lacks.
	seq, err := rec.Append(recorder.KindResize, 0, size.Payload())
	if err == nil {
		err = rec.Wait(ctx, seq)
	}
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, pump.Canceled(ctx)
		}
		return Result{}, pump.RecordingFailed(err)
	}

	exited := make(chan struct{})
	ptmx, err := startCommand(cmd, size, exited)
	if err != nil {
		return Result{}, fmt.Errorf("run local command: start %s: %w", cfg.Argv[0], err)
	}
	master, raw, err := pollable(ptmx)
	if err != nil {
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-exited
		return Result{}, fmt.Errorf("run local command: %w", err)
	}
	s := &ptySession{
		cfg:    cfg,
		rec:    rec,
		cmd:    cmd,
		master: master,
		raw:    raw,
		exited: exited,
	}
	return s.run(ctx)
}

// startCommand starts cmd in a new pseudo-terminal of the given size and
// returns the master; the command gets SIGKILL if bastion dies (see start).
// Once the command has exited it is reaped and exited closed (afterExit).
func startCommand(cmd *exec.Cmd, size Size, exited chan<- struct{}) (*os.File, error) {
	var ptmx *os.File
	err := start(cmd, func() error {
		var err error
		ptmx, err = pty.StartWithSize(cmd, &pty.Winsize{Cols: uint16(size.Cols), Rows: uint16(size.Rows)})
		return err
	})
	if err != nil {
		close(exited)
		return nil, err
	}
	afterExit(cmd, func() {
		// The command's stdio is the pty's tty side, an *os.File, so Wait
		// copies nothing; its error only repeats ProcessState.
		_ = cmd.Wait()
		close(exited)
	})
	return ptmx, nil
}

// pollable returns the pty master as a non-blocking file that the runtime
// poller manages, with its raw connection, and closes ptmx. creack/pty
// hands the master back in blocking mode, where Close does not interrupt a
// pending Read or Write and read deadlines do not work; the session needs
// both to end its streams, and a stream waits for the master to be
// readable before it takes a buffer. The new file is never asked for its
// Fd, which would make it blocking again: ioctls and raw reads go through
// raw.
func pollable(ptmx *os.File) (*os.File, syscall.RawConn, error) {
	defer ptmx.Close()
	fd, err := unix.FcntlInt(ptmx.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("dup pty master", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, nil, os.NewSyscallError("set pty master non-blocking", err)
	}
	master := os.NewFile(uintptr(fd), ptmx.Name())
	raw, err := master.SyscallConn()
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, raw, nil
}

// ptySession is one run of RunPTY. Its goroutines:
//
//   - once the command has exited, a goroutine reaps it and closes exited
//     (afterExit: none waits for it while it runs);
//   - the output stream's reader and forwarder pump the command's output;
//   - the input stream's reader (not owned, see RunPTY) and forwarder pump
//     the input;
//   - run's own goroutine injects cfg.Resize's sizes in their place among
//     the input while it waits for the command.
//
// run owns all but the input's reader and waits for them before it
// returns. Every stop goes through the pump: its first cause is the
// session's error, and a recording failure replaces any other.
type ptySession struct {
	cfg    PTYConfig
	rec    pump.Recorder
	cmd    *exec.Cmd
	master *os.File        // the pty master, non-blocking; run closes it
	raw    syscall.RawConn // master's, for reads and ioctls that must not call Fd
	p      *pump.Pump

	// ctx bounds every Wait; run cancels it at teardown, and it ends early
	// with the caller's context.
	ctx context.Context

	exited chan struct{} // closed once cmd.Wait has returned
}

func (s *ptySession) run(ctx context.Context) (Result, error) {
	pumpCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = pumpCtx
	s.p = pump.New(pumpCtx, s.rec, pump.Options{Pool: s.cfg.Pool})
	filter := func(kind recorder.Kind) pump.Filter {
		if s.cfg.Filter == nil {
			return nil
		}
		return s.cfg.Filter(kind, 0)
	}

	src := newPTYReader(s.master, s.raw)
	out := s.p.Copy(s.cfg.Stdout, src, recorder.KindOutput, 0, pump.StreamOptions{
		Filter: filter(recorder.KindOutput),
		ReadError: func(err error) error {
			if terminalEnded(err) {
				return nil
			}
			return fmt.Errorf("read command output: %w", err)
		},
	})
	// A failed write means the command's terminal is gone: there is
	// nobody to deliver input to, which is not a reason to end the
	// session. Input stops with the session, and when the command exits.
	stdin := &stdinReader{r: s.cfg.Stdin, wait: pump.WaiterOf(s.cfg.Stdin), lineStart: true}
	if s.cfg.Stdin == nil {
		stdin.r = eofReader{}
	}
	in := s.p.Copy(s.master, stdin, recorder.KindInput, 0, pump.StreamOptions{
		Filter:            filter(recorder.KindInput),
		OnEnd:             func(in *pump.Stream, err error) { s.endInput(in, err, stdin.lineStart) },
		Detached:          true,
		EndOnStop:         true,
		IgnoreWriteErrors: true,
	})
	// This goroutine injects cfg.Resize's sizes among the input while it
	// waits for the command (Inject does not block): one goroutine less
	// per session than a loop of their own.
	resize := s.cfg.Resize
wait:
	for {
		select {
		case sz, ok := <-resize:
			if !ok {
				resize = nil
				continue
			}
			size := sz.Clamp()
			frame := pump.Frame{Kind: recorder.KindResize, Payload: size.Payload()}
			if err := in.Inject(func() { _ = s.setSize(size) }, frame); err != nil {
				resize = nil
			}
		case <-s.exited:
			break wait
		case <-s.p.Stopped():
			break wait
		case <-s.rec.Done():
			// A command doing no terminal I/O would otherwise run on,
			// unrecorded, until its next Append or Wait.
			s.p.Stop(pump.RecordingFailed(pump.RecorderErr(s.rec)))
			break wait
		case <-ctx.Done():
			s.p.Stop(pump.Canceled(ctx))
			break wait
		}
	}
	in.Close()
	s.terminate()
	<-s.exited

	// Drain: whatever the command wrote before it exited is in the
	// terminal's buffer; read and deliver it (unless the session stopped).
	src.draining.Store(true)
	_ = s.master.SetReadDeadline(time.Now().Add(drainIdle))
	<-out.Done()
	// If ctx ended during the drain, some output may not have been
	// delivered, even though the command exited by itself.
	cutShort := ctx.Err() != nil

	cancel()
	s.master.Close() // interrupts the input forwarder's Write, if any
	<-in.Done()

	res := exitResult(s.cmd.ProcessState)
	err := s.p.Err()
	if err == nil && cutShort {
		err = pump.Canceled(ctx)
	}
	return res, err
}

func (s *ptySession) killGrace() time.Duration {
	switch {
	case s.cfg.KillGrace == 0:
		return defaultKillGrace
	case s.cfg.KillGrace < 0:
		return 0
	}
	return s.cfg.KillGrace
}

func (s *ptySession) failing() bool {
	select {
	case <-s.p.Failed():
		return true
	default:
		return false
	}
}

// terminate ends a session that stopped early: SIGHUP to the command's
// process group, then SIGKILL once the grace has passed (none when
// recording failed), or at once if recording fails meanwhile. It does
// nothing if the session did not stop early or the command has already
// exited. Each signal is recorded first when the journal still works, but
// is sent whatever the journal says.
func (s *ptySession) terminate() {
	select {
	case <-s.p.Stopped():
	default:
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	why := s.p.Err()
	grace := s.killGrace()
	if s.failing() {
		grace = 0
	} else {
		s.mark(fmt.Sprintf("session stopped: %v", why))
	}
	s.signal(unix.SIGHUP, grace > 0 && !s.failing())
	if grace > 0 && !s.failing() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-s.exited:
			return
		case <-s.p.Failed():
		case <-s.rec.Done():
			s.p.Stop(pump.RecordingFailed(pump.RecorderErr(s.rec)))
		case <-t.C:
		}
	}
	s.signal(unix.SIGKILL, false)
}

// signal records sig and sends it to the command's process group.
// StartWithSize makes the command a session leader, so its pid is its
// process group's id. With wait, the signal's frame must commit (within
// signalCommitWait) before the signal goes out.
func (s *ptySession) signal(sig unix.Signal, wait bool) {
	if !s.failing() {
		seq, err := s.rec.Append(recorder.KindSignal, 0, []byte(signalName(sig)))
		if err != nil {
			s.p.Stop(pump.RecordingFailed(err))
		} else if wait {
			wctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), signalCommitWait)
			if err := s.rec.Wait(wctx, seq); err != nil && wctx.Err() == nil {
				s.p.Stop(pump.RecordingFailed(err))
			}
			cancel()
		}
	}
	_ = unix.Kill(-s.cmd.Process.Pid, sig)
}

// mark records a marker frame: an annotation that explains the journal to
// its reader. Nothing waits for it to commit; frames commit in order, so it
// precedes whatever the session records next.
func (s *ptySession) mark(text string) {
	if _, err := s.rec.Append(recorder.KindMarker, 0, []byte(text)); err != nil {
		s.p.Stop(pump.RecordingFailed(err))
	}
}

// endInput records that stdin ended and, unless stdin is a terminal, passes
// the end on to the command as the terminal's end-of-file character. In
// canonical mode that character ends input only at the start of a line;
// elsewhere it first hands over the partial line, so then it is sent twice.
// The input stream calls it once every byte before the end is recorded; it
// records nothing once the command has exited or the session stopped.
func (s *ptySession) endInput(in *pump.Stream, readErr error, lineStart bool) {
	note := "stdin closed"
	if !errors.Is(readErr, io.EOF) {
		note = fmt.Sprintf("stdin read failed: %v", readErr)
	}
	if s.cfg.StdinIsTerminal {
		// A terminal's user ends input by typing ^D, which has already
		// gone through as input; a terminal that fails has no end of input
		// to pass on.
		_ = in.Inject(nil, pump.Frame{Kind: recorder.KindMarker, Payload: []byte(note)})
		return
	}
	eof := []byte{veof}
	if !lineStart {
		eof = append(eof, veof)
	}
	_ = in.Inject(func() { _, _ = s.master.Write(eof) },
		pump.Frame{Kind: recorder.KindInput, Payload: eof},
		pump.Frame{Kind: recorder.KindMarker, Payload: []byte(note + ": sent EOF to the command")})
}

func (s *ptySession) setSize(size Size) error {
	var ioctlErr error
	err := s.raw.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, size.winsize())
	})
	if err != nil {
		return err
	}
	return ioctlErr
}

// ptyReader reads the pty master for the output stream: it waits for it to
// be readable (no buffer held while the command is quiet), and gathers
// what the terminal has ready into one read. Once draining is set, each
// wait and read is bounded by drainIdle.
type ptyReader struct {
	master   *os.File
	raw      syscall.RawConn
	waiter   *pump.Waiter
	draining atomic.Bool

	// readReady's, made once: no allocation per read.
	buf    []byte
	n      int
	gather func(fd uintptr) bool
}

func newPTYReader(master *os.File, raw syscall.RawConn) *ptyReader {
	r := &ptyReader{master: master, raw: raw, waiter: pump.NewWaiter(raw)}
	r.gather = func(fd uintptr) bool {
		for r.n < len(r.buf) {
			m, err := unix.Read(int(fd), r.buf[r.n:])
			if err == unix.EINTR {
				continue
			}
			if err != nil || m <= 0 {
				break
			}
			r.n += m
		}
		return true // never wait for more
	}
	return r
}

func (r *ptyReader) WaitReadable() error {
	if r.draining.Load() {
		_ = r.master.SetReadDeadline(time.Now().Add(drainIdle))
	}
	return r.waiter.WaitReadable()
}

func (r *ptyReader) Read(p []byte) (int, error) {
	n, err := r.master.Read(p)
	if err == nil {
		n += r.readReady(p[n:])
	}
	return n, err
}

// readReady reads into buf what the terminal has ready now, without
// waiting, and returns how much it read. A kernel read of a pty returns at
// most a few KiB; gathering a burst into one chunk makes fewer, larger
// frames, and lets the bounded pipeline hold more bytes while they commit.
// It stops at the first error: the next Read meets it again.
func (r *ptyReader) readReady(buf []byte) int {
	r.buf, r.n = buf, 0
	_ = r.raw.Read(r.gather)
	n := r.n
	r.buf = nil
	return n
}

// stdinReader reads the session's input for the input stream, and notes
// whether the last byte read ended a line. It is waited on as its reader
// is, when that can be.
type stdinReader struct {
	r         io.Reader
	wait      func() error
	lineStart bool // the reader goroutine's
}

// errCannotWait is WaitReadable's answer for a reader that cannot be
// waited on: the stream then reads it.
var errCannotWait = errors.New("the input cannot be waited on")

func (r *stdinReader) WaitReadable() error {
	if r.wait == nil {
		return errCannotWait
	}
	return r.wait()
}

func (r *stdinReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.lineStart = p[n-1] == '\n' || p[n-1] == '\r'
	}
	return n, err
}

// eofReader is the input of a session without one.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// terminalEnded reports whether err from reading the pty master means the
// output is over rather than broken: EIO is how Linux says no process
// holds the tty side any more; the others are the session's own doing.
func terminalEnded(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, io.EOF) ||
		errors.Is(err, os.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded)
}
