package bastion

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Size is a terminal size in character cells.
type Size struct {
	Cols, Rows int
}

// clamp bounds s to what a terminal can hold (0 to 65535 cells a side), so
// the size recorded is exactly the size applied.
func (s Size) clamp() Size {
	bound := func(v int) int { return min(max(v, 0), math.MaxUint16) }
	return Size{Cols: bound(s.Cols), Rows: bound(s.Rows)}
}

// payload encodes s as a resize frame's payload: cols u32 ‖ rows u32,
// big-endian.
func (s Size) payload() []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[0:4], uint32(s.Cols))
	binary.BigEndian.PutUint32(b[4:8], uint32(s.Rows))
	return b
}

func (s Size) winsize() *unix.Winsize {
	return &unix.Winsize{Col: uint16(s.Cols), Row: uint16(s.Rows)}
}

// LocalConfig describes a command to run in a local pseudo-terminal.
type LocalConfig struct {
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
	// changes. RunLocal never closes it.
	Resize <-chan Size

	// KillGrace is how long a command may take to exit after SIGHUP, when
	// the session is canceled, before it gets SIGKILL. 0 means 2 seconds; a
	// negative value means no grace. When recording fails there is never a
	// grace: an unrecorded command does not get to run on.
	KillGrace time.Duration

	// Output, if not nil, filters the terminal's output before it is
	// recorded and forwarded (masking): it is given the terminal and
	// returns what to read instead.
	Output func(io.Reader) io.Reader
}

// Result is how a command ended.
type Result struct {
	// ExitCode is the command's exit status, or 128 plus the signal number
	// when a signal killed it, as shells report it.
	ExitCode int

	// Signal is the name of the signal that killed the command, without
	// "SIG" ("KILL", "HUP"), or "" if the command exited by itself.
	Signal string
}

const (
	defaultCols      = 80
	defaultRows      = 24
	defaultKillGrace = 2 * time.Second

	// Output is read in chunks of outputBufSize, and at most outputBufs
	// chunks are read but not yet delivered: reading and committing go on
	// while earlier chunks wait for their commit.
	outputBufSize = 32 << 10
	outputBufs    = 64

	inputBufSize = 16 << 10
	inputBufs    = 4

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

// RunLocal runs cfg.Argv in a new pseudo-terminal and pumps its bytes
// through rec, record then forward: output reaches cfg.Stdout, and input
// reaches the command, only after rec has committed it. It returns when the
// command has exited and its output has been delivered. It records the
// terminal's sizes, input, output, the signals it sends, and markers that
// say how input ended or why the session stopped; not the command line or
// the exit status: those are the caller's, who has them from cfg and
// Result.
//
// If rec fails, whether an Append or a Wait meets the failure or rec's Done
// channel closes while the command does no terminal I/O, RunLocal kills the
// command's process group at once, delivers nothing more, and returns an
// error wrapping [ErrRecordingFailed]. If ctx ends, it sends the process
// group SIGHUP, then SIGKILL after cfg.KillGrace (at once if rec fails
// meanwhile), delivers nothing more, and returns ctx's error. If writing
// to cfg.Stdout fails, it ends the command the same way and returns that
// error. Whenever the command was started and has exited, Result says how,
// even alongside an error.
//
// RunLocal does not wait for the goroutine reading cfg.Stdin, because a Read
// cannot be interrupted: that goroutine may stay blocked in Read after
// RunLocal returns, and takes at most one more chunk from cfg.Stdin, which
// it discards without recording or delivering it. Every other goroutine
// RunLocal starts has ended by the time it returns.
func RunLocal(ctx context.Context, cfg LocalConfig, rec Recorder) (Result, error) {
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

	size := cfg.Size.clamp()
	if size.Cols == 0 {
		size.Cols = defaultCols
	}
	if size.Rows == 0 {
		size.Rows = defaultRows
	}
	// The command must not see a size the journal lacks.
	seq, err := rec.Append(kindResize, 0, size.payload())
	if err == nil {
		err = rec.Wait(ctx, seq)
	}
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, canceled(ctx)
		}
		return Result{}, recordingFailed(err)
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
	s := &localSession{
		cfg:       cfg,
		rec:       rec,
		cmd:       cmd,
		master:    master,
		raw:       raw,
		exited:    exited,
		stopped:   make(chan struct{}),
		recFailed: make(chan struct{}),
		done:      make(chan struct{}),
	}
	s.out = io.Reader(master)
	if cfg.Output != nil {
		s.out = cfg.Output(master)
	}
	return s.run(ctx)
}

// startCommand starts cmd in a new pseudo-terminal of the given size and
// returns the master. A goroutine it leaves behind reaps the command and
// then closes exited.
//
// Fail closed if bastion itself dies: the command gets SIGKILL when the
// thread that started it exits (a parent-death signal, where the system
// has one), so a killed recorder never leaves it running unrecorded, even
// if it ignores the terminal's hangup. The goroutine keeps that thread,
// locked, until the command has exited, so the signal fires only when the
// whole process is gone. (Its own children still get only the hangup.)
func startCommand(cmd *exec.Cmd, size Size, exited chan<- struct{}) (*os.File, error) {
	type started struct {
		ptmx *os.File
		err  error
	}
	ch := make(chan started, 1)
	go func() {
		defer close(exited)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		setParentDeathSignal(cmd)
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: uint16(size.Cols), Rows: uint16(size.Rows)})
		ch <- started{ptmx, err}
		if err != nil {
			return
		}
		// The command's stdio is the pty's tty side, an *os.File, so Wait
		// copies nothing; its error only repeats ProcessState.
		_ = cmd.Wait()
	}()
	st := <-ch
	return st.ptmx, st.err
}

// pollable returns the pty master as a non-blocking file that the runtime
// poller manages, with its raw connection, and closes ptmx. creack/pty
// hands the master back in blocking mode, where Close does not interrupt a
// pending Read or Write and read deadlines do not work; the session needs
// both to end its pumps. The new file is never asked for its Fd, which
// would make it blocking again: ioctls and raw reads go through raw.
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

// localSession is one run of RunLocal. Its goroutines:
//
//   - startCommand's goroutine reaps the command and closes exited;
//   - readOutput and a forward of its chunks pump the command's output;
//   - readStdin (not owned, see RunLocal), recordInput and a forward of its
//     chunks pump the input, and cfg.Resize's sizes in their place among
//     it.
//
// run owns all but readStdin and waits for them before it returns.
type localSession struct {
	cfg    LocalConfig
	rec    Recorder
	cmd    *exec.Cmd
	master *os.File        // the pty master, non-blocking; run closes it
	out    io.Reader       // where output is read: master, or cfg.Output's filter of it
	raw    syscall.RawConn // master's, for reads and ioctls that must not call Fd

	// ctx bounds every Wait; run cancels it at teardown, and it ends early
	// with the caller's context.
	ctx context.Context

	exited    chan struct{} // closed once cmd.Wait has returned
	stopped   chan struct{} // closed when the session stops early (stop, fail)
	recFailed chan struct{} // closed when recording fails (fail); implies stopped
	done      chan struct{} // closed at teardown: the remaining pumps quit

	// draining is set once the command has exited: readOutput then bounds
	// each read by drainIdle.
	draining atomic.Bool

	stopOnce, failOnce sync.Once

	mu              sync.Mutex
	err             error         // guarded by mu: why the session stopped early; a recording failure replaces any other cause
	grace           time.Duration // guarded by mu: the kill grace that goes with err
	failedRecording bool          // guarded by mu: err is a recording failure
}

func (s *localSession) run(ctx context.Context) (Result, error) {
	pumpCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = pumpCtx

	var own sync.WaitGroup // everything but the output pumps

	var output sync.WaitGroup
	outPool := newBufPool(outputBufs, outputBufSize)
	outChunks := make(chan chunk, outputBufs)
	output.Go(func() { s.readOutput(outPool, outChunks) })
	output.Go(func() {
		forward(s.ctx, s.rec, outChunks, outPool, s.stdout(), s.stopped, func(err error) {
			if errors.Is(err, ErrRecordingFailed) {
				s.fail(err)
				return
			}
			s.stop(fmt.Errorf("write output: %w", err), s.killGrace())
		})
	})

	inPool := newBufPool(inputBufs, inputBufSize)
	raw := make(chan stdinRead)
	inChunks := make(chan chunk, inputBufs)
	go readStdin(s.stdin(), inPool, raw, s.done)
	own.Go(func() { s.recordInput(inPool, raw, inChunks) })
	own.Go(func() {
		// A failed write means the command's terminal is gone: there is
		// nobody to deliver input to, which is not a reason to end the
		// session.
		forward(s.ctx, s.rec, inChunks, inPool, s.master, s.stopped, func(err error) {
			if errors.Is(err, ErrRecordingFailed) {
				s.fail(err)
			}
		})
	})
	select {
	case <-s.exited:
	case <-s.stopped:
	case <-s.rec.Done():
		// A command doing no terminal I/O would otherwise run on,
		// unrecorded, until its next Append or Wait.
		s.fail(recordingFailed(recorderErr(s.rec)))
	case <-ctx.Done():
		s.stop(canceled(ctx), s.killGrace())
	}
	s.terminate()
	<-s.exited

	// Drain: whatever the command wrote before it exited is in the
	// terminal's buffer; read and deliver it (unless the session stopped).
	s.draining.Store(true)
	_ = s.master.SetReadDeadline(time.Now().Add(drainIdle))
	output.Wait()
	// If ctx ended during the drain, some output may not have been
	// delivered, even though the command exited by itself.
	cutShort := ctx.Err() != nil

	close(s.done)
	cancel()
	s.master.Close() // interrupts the input forward's Write, if any
	own.Wait()

	res := exitResult(s.cmd.ProcessState)
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err == nil && cutShort {
		err = canceled(ctx)
	}
	return res, err
}

func (s *localSession) stdout() io.Writer {
	if s.cfg.Stdout == nil {
		return io.Discard
	}
	return s.cfg.Stdout
}

func (s *localSession) stdin() io.Reader {
	if s.cfg.Stdin == nil {
		return bytes.NewReader(nil)
	}
	return s.cfg.Stdin
}

func (s *localSession) killGrace() time.Duration {
	switch {
	case s.cfg.KillGrace == 0:
		return defaultKillGrace
	case s.cfg.KillGrace < 0:
		return 0
	}
	return s.cfg.KillGrace
}

// stop ends the session early because of err, giving the command grace to
// exit after SIGHUP. The first cause is kept, unless a recording failure
// comes later (fail).
func (s *localSession) stop(err error, grace time.Duration) {
	s.mu.Lock()
	if s.err == nil {
		s.err, s.grace = err, grace
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stopped) })
}

// fail ends the session because recording failed: err wraps
// ErrRecordingFailed. The command is killed without grace, and nothing is
// recorded or delivered after this.
func (s *localSession) fail(err error) {
	s.mu.Lock()
	if !s.failedRecording {
		s.err, s.grace, s.failedRecording = err, 0, true
	}
	s.mu.Unlock()
	s.failOnce.Do(func() { close(s.recFailed) })
	s.stopOnce.Do(func() { close(s.stopped) })
}

func (s *localSession) failing() bool {
	select {
	case <-s.recFailed:
		return true
	default:
		return false
	}
}

// errRecorderDone stands in for the cause of a recorder whose Done channel
// closed while its Err still says nil, which breaks Recorder's contract.
var errRecorderDone = errors.New("recorder can record nothing more")

// recorderErr is why rec's Done channel closed.
func recorderErr(rec Recorder) error {
	if err := rec.Err(); err != nil {
		return err
	}
	return errRecorderDone
}

// canceled is the error for a session whose context ended: ctx.Err(), plus
// the cause if the canceler gave one.
func canceled(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return err
	}
	return fmt.Errorf("%w: %w", err, cause)
}

// terminate ends a session that stopped early: SIGHUP to the command's
// process group, then SIGKILL once the grace has passed, or at once if
// recording fails meanwhile. It does nothing if the session did not stop
// early or the command has already exited. Each signal is recorded first
// when the journal still works, but is sent whatever the journal says.
func (s *localSession) terminate() {
	select {
	case <-s.stopped:
	default:
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	s.mu.Lock()
	why, grace := s.err, s.grace
	s.mu.Unlock()

	if !s.failing() {
		s.mark(fmt.Sprintf("session stopped: %v", why))
	}
	s.signal(unix.SIGHUP, grace > 0)
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-s.exited:
			return
		case <-s.recFailed:
		case <-s.rec.Done():
			s.fail(recordingFailed(recorderErr(s.rec)))
		case <-t.C:
		}
	}
	s.signal(unix.SIGKILL, false)
}

// signal records sig and sends it to the command's process group.
// StartWithSize makes the command a session leader, so its pid is its
// process group's id. With wait, the signal's frame must commit (within
// signalCommitWait) before the signal goes out.
func (s *localSession) signal(sig unix.Signal, wait bool) {
	if !s.failing() {
		seq, err := s.rec.Append(kindSignal, 0, []byte(signalName(sig)))
		if err != nil {
			s.fail(recordingFailed(err))
		} else if wait {
			wctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), signalCommitWait)
			if err := s.rec.Wait(wctx, seq); err != nil && wctx.Err() == nil {
				s.fail(recordingFailed(err))
			}
			cancel()
		}
	}
	_ = unix.Kill(-s.cmd.Process.Pid, sig)
}

// mark records a marker frame: an annotation that explains the journal to
// its reader. Nothing waits for it to commit; frames commit in order, so it
// precedes whatever the session records next.
func (s *localSession) mark(text string) (seq uint64, ok bool) {
	seq, err := s.rec.Append(kindMarker, 0, []byte(text))
	if err != nil {
		s.fail(recordingFailed(err))
		return 0, false
	}
	return seq, true
}

// readOutput reads the command's output, appends each read to the journal,
// and hands the chunk to the output forward. It returns at the terminal's
// end (EIO once no process holds the tty side any more), when the drain
// goes idle, or when recording fails.
func (s *localSession) readOutput(pool bufPool, chunks chan<- chunk) {
	defer close(chunks)
	for {
		buf := <-pool // the forward recycles every buffer, whatever happens
		if s.draining.Load() {
			_ = s.master.SetReadDeadline(time.Now().Add(drainIdle))
		}
		n, err := s.out.Read(buf)
		if err == nil && s.cfg.Output == nil {
			n += s.readReady(buf[n:])
		}
		if n > 0 {
			if s.failing() {
				return
			}
			seq, aerr := s.rec.Append(kindOutput, 0, buf[:n])
			if aerr != nil {
				s.fail(recordingFailed(aerr))
				return
			}
			chunks <- chunk{seq: seq, data: buf[:n]}
		} else {
			pool.put(buf)
		}
		if err != nil {
			if !terminalEnded(err) {
				s.stop(fmt.Errorf("read command output: %w", err), s.killGrace())
			}
			return
		}
	}
}

// readReady reads into buf what the terminal has ready now, without
// waiting, and returns how much it read. A kernel read of a pty returns at
// most a few KiB; gathering a burst into one chunk makes fewer, larger
// frames, and lets the bounded pipeline hold more bytes while they commit.
// It stops at the first error: the next Read meets it again.
func (s *localSession) readReady(buf []byte) int {
	n := 0
	_ = s.raw.Read(func(fd uintptr) bool {
		for n < len(buf) {
			m, err := unix.Read(int(fd), buf[n:])
			if err == unix.EINTR {
				continue
			}
			if err != nil || m <= 0 {
				break
			}
			n += m
		}
		return true // never wait for more
	})
	return n
}

// terminalEnded reports whether err from reading the pty master means the
// output is over rather than broken: EIO is how Linux says no process
// holds the tty side any more; the others are the session's own doing.
func terminalEnded(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, io.EOF) ||
		errors.Is(err, os.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded)
}

// stdinRead is one read from stdin: data in a pool buffer, or the error
// that ended stdin.
type stdinRead struct {
	data []byte
	err  error
}

// readStdin reads r into pool buffers and hands them to recordInput. No one
// waits for it (see RunLocal): it records nothing and writes nowhere, and it
// returns at its next hand-over once done is closed.
func readStdin(r io.Reader, pool bufPool, raw chan<- stdinRead, done <-chan struct{}) {
	for {
		var buf []byte
		select {
		case buf = <-pool:
		case <-done:
			return
		}
		n, err := r.Read(buf)
		if n > 0 {
			select {
			case raw <- stdinRead{data: buf[:n]}:
			case <-done:
				return
			}
		} else {
			pool.put(buf)
		}
		if err != nil {
			select {
			case raw <- stdinRead{err: err}:
			case <-done:
			}
			return
		}
	}
}

// recordInput appends each chunk of stdin to the journal and hands it to the
// input forward, until stdin ends, the command exits, or the session stops.
func (s *localSession) recordInput(pool bufPool, raw <-chan stdinRead, chunks chan<- chunk) {
	defer close(chunks)
	lineStart := true
	resize := s.cfg.Resize
	for {
		var in stdinRead
		select {
		case in = <-raw:
		case sz, ok := <-resize:
			if !ok {
				resize = nil
				continue
			}
			// A resize goes in its place among the input: the command
			// sees it after the keystrokes recorded before it, and
			// before those recorded after.
			size := sz.clamp()
			seq, err := s.rec.Append(kindResize, 0, size.payload())
			if err != nil {
				s.fail(recordingFailed(err))
				return
			}
			chunks <- chunk{seq: seq, ctrl: func() { _ = s.setSize(size) }}
			continue
		case <-s.exited:
			return
		case <-s.stopped:
			return
		}
		if in.err != nil {
			s.endInput(in.err, lineStart, pool, chunks)
			if resize == nil {
				return
			}
			// Input has ended; resizes may still come.
			raw = nil
			continue
		}
		seq, err := s.rec.Append(kindInput, 0, in.data)
		if err != nil {
			s.fail(recordingFailed(err))
			return
		}
		last := in.data[len(in.data)-1]
		lineStart = last == '\n' || last == '\r'
		chunks <- chunk{seq: seq, data: in.data}
	}
}

// endInput records that stdin ended and, unless stdin is a terminal, passes
// the end on to the command as the terminal's end-of-file character. In
// canonical mode that character ends input only at the start of a line;
// elsewhere it first hands over the partial line, so then it is sent twice.
func (s *localSession) endInput(readErr error, lineStart bool, pool bufPool, chunks chan<- chunk) {
	note := "stdin closed"
	if !errors.Is(readErr, io.EOF) {
		note = fmt.Sprintf("stdin read failed: %v", readErr)
	}
	if s.cfg.StdinIsTerminal {
		// A terminal's user ends input by typing ^D, which has already
		// gone through as input; a terminal that fails has no end of input
		// to pass on.
		s.mark(note)
		return
	}
	var buf []byte
	select {
	case buf = <-pool:
	case <-s.exited:
		return
	case <-s.stopped:
		return
	}
	eof := append(buf[:0], veof)
	if !lineStart {
		eof = append(eof, veof)
	}
	if _, err := s.rec.Append(kindInput, 0, eof); err != nil {
		s.fail(recordingFailed(err))
		return
	}
	seq, ok := s.mark(note + ": sent EOF to the command")
	if !ok {
		return
	}
	chunks <- chunk{seq: seq, data: eof}
}

func (s *localSession) setSize(size Size) error {
	var ioctlErr error
	err := s.raw.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, size.winsize())
	})
	if err != nil {
		return err
	}
	return ioctlErr
}

// exitResult says how a reaped process ended; ps nil means never reaped.
func exitResult(ps *os.ProcessState) Result {
	if ps == nil {
		return Result{}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := ws.Signal()
		return Result{ExitCode: 128 + int(sig), Signal: signalName(sig)}
	}
	return Result{ExitCode: ps.ExitCode()}
}

// signalName is sig's name as SSH spells it: "KILL" for SIGKILL, or the
// number for a signal without a name.
func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return strings.TrimPrefix(name, "SIG")
	}
	return strconv.Itoa(int(sig))
}
