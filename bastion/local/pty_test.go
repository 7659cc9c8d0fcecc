package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bastionhq/bastion/bastion/pump"
	"github.com/bastionhq/bastion/recorder"
)

// testFrame is a frame as memRecorder keeps it.
type testFrame struct {
	seq     uint64
	kind    recorder.Kind
	channel uint32
	data    []byte
}

// memRecorder is a Recorder that keeps frames in memory and commits them
// from its own goroutine, after commitDelay, the way a journal commits a
// batch: Wait returns only once that goroutine has passed the frame.
type memRecorder struct {
	commitDelay time.Duration
	// failAppendAt makes the Append that would create frame number
	// failAppendAt fail, and the recorder with it; 0 never.
	failAppendAt uint64
	// failCommitAt makes the commit that would include frame number
	// failCommitAt fail instead; frames before it still commit. 0 never.
	failCommitAt uint64
	// echoToken, if set, is input the terminal will echo: Append notes in
	// echoedEarly if it shows up in the output before the input frame that
	// carries it is committed, which would mean the input reached the
	// command unrecorded.
	echoToken []byte

	wake chan struct{} // nudges the committer; buffered
	quit chan struct{} // stops the committer
	gone chan struct{} // closed when the committer has returned

	mu        sync.Mutex
	frames    []testFrame
	committed uint64        // highest committed seq
	output    []byte        // output payloads of committed frames, in order
	err       error         // once set, Append and Wait fail with it
	changed   chan struct{} // closed and replaced whenever committed or err changes
	failed    chan struct{} // closed when err is set; Done

	appendedOutput []byte // output payloads appended so far, kept only with echoToken
	committedInput []byte // input payloads of committed frames, kept only with echoToken
	echoedEarly    bool
}

var errJournalBroken = errors.New("journal broken")

// newMemRecorder starts the committer; the test's cleanup stops it.
func newMemRecorder(t testing.TB, commitDelay time.Duration) *memRecorder {
	r := &memRecorder{
		commitDelay: commitDelay,
		wake:        make(chan struct{}, 1),
		quit:        make(chan struct{}),
		gone:        make(chan struct{}),
		changed:     make(chan struct{}),
		failed:      make(chan struct{}),
	}
	go r.commitLoop()
	t.Cleanup(func() {
		close(r.quit)
		<-r.gone
	})
	return r
}

func (r *memRecorder) Append(kind recorder.Kind, channel uint32, p []byte) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	seq := uint64(len(r.frames)) + 1
	if seq == r.failAppendAt {
		r.failLocked()
		return 0, r.err
	}
	r.frames = append(r.frames, testFrame{seq: seq, kind: kind, channel: channel, data: bytes.Clone(p)})
	if r.echoToken != nil && kind == recorder.KindOutput {
		r.appendedOutput = append(r.appendedOutput, p...)
		if bytes.Contains(r.appendedOutput, r.echoToken) && !bytes.Contains(r.committedInput, r.echoToken) {
			r.echoedEarly = true
		}
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return seq, nil
}

func (r *memRecorder) Wait(ctx context.Context, seq uint64) error {
	for {
		r.mu.Lock()
		committed, err, changed := r.committed, r.err, r.changed
		r.mu.Unlock()
		if committed >= seq {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *memRecorder) commitLoop() {
	defer close(r.gone)
	for {
		select {
		case <-r.wake:
		case <-r.quit:
			return
		}
		time.Sleep(r.commitDelay)
		r.mu.Lock()
		for _, f := range r.frames[r.committed:] {
			if r.err != nil {
				break
			}
			if f.seq == r.failCommitAt {
				r.failLocked()
				break
			}
			r.committed = f.seq
			switch {
			case f.kind == recorder.KindOutput:
				r.output = append(r.output, f.data...)
			case f.kind == recorder.KindInput && r.echoToken != nil:
				r.committedInput = append(r.committedInput, f.data...)
			}
		}
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}
}

func (r *memRecorder) Done() <-chan struct{} { return r.failed }

func (r *memRecorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// fail breaks the journal now, as a failed commit of another session's
// frames would: this session learns of it only through Done, or at its next
// Append or Wait.
func (r *memRecorder) fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failLocked()
}

func (r *memRecorder) failLocked() {
	if r.err != nil {
		return
	}
	r.err = errJournalBroken
	close(r.changed)
	r.changed = make(chan struct{})
	close(r.failed)
}

// committedOutput returns the committed output so far. The slice is never
// written again below its length.
func (r *memRecorder) committedOutput() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.output
}

func (r *memRecorder) allFrames() []testFrame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]testFrame(nil), r.frames...)
}

// payloads concatenates the payloads of the frames of kind.
func (r *memRecorder) payloads(kind recorder.Kind) []byte {
	var b []byte
	for _, f := range r.allFrames() {
		if f.kind == kind {
			b = append(b, f.data...)
		}
	}
	return b
}

func (r *memRecorder) texts(kind recorder.Kind) []string {
	var s []string
	for _, f := range r.allFrames() {
		if f.kind == kind {
			s = append(s, string(f.data))
		}
	}
	return s
}

// checkedStdout is the session's Stdout. On every Write it asserts record,
// then forward: everything written so far is a prefix of the committed
// output.
type checkedStdout struct {
	t   testing.TB
	rec *memRecorder

	mu        sync.Mutex
	got       []byte
	afterDone bool // a Write came after RunPTY returned
	done      bool
}

func (w *checkedStdout) Write(p []byte) (int, error) {
	committed := w.rec.committedOutput()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		w.afterDone = true
	}
	end := len(w.got) + len(p)
	if end > len(committed) || !bytes.Equal(committed[len(w.got):end], p) {
		w.t.Errorf("forwarded %d bytes before they were committed: %d written so far, %d committed",
			len(p), len(w.got), len(committed))
	}
	w.got = append(w.got, p...)
	return len(p), nil
}

func (w *checkedStdout) output() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.got)
}

// runChecked runs cfg with a checked Stdout and a deadline that no case
// should come near.
func runChecked(t *testing.T, cfg PTYConfig, rec *memRecorder) (Result, []byte, error) {
	t.Helper()
	out := &checkedStdout{t: t, rec: rec}
	cfg.Stdout = out
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := RunPTY(ctx, cfg, rec)
	out.mu.Lock()
	out.done = true
	out.mu.Unlock()
	t.Cleanup(func() {
		out.mu.Lock()
		defer out.mu.Unlock()
		if out.afterDone {
			t.Error("Stdout was written after RunPTY returned")
		}
	})
	return res, out.output(), err
}

func resizePayload(cols, rows uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, cols)
	return binary.BigEndian.AppendUint32(b, rows)
}

func TestRunLocalOutput(t *testing.T) {
	tests := []struct {
		name string
		argv []string
		want string
	}{
		{"lines", []string{"printf", `hello\nworld`}, "hello\r\nworld"},
		{"empty", []string{"printf", ""}, ""},
		{"stderr shares the terminal", []string{"sh", "-c", `printf out; printf err >&2`}, "outerr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newMemRecorder(t, time.Millisecond)
			res, got, err := runChecked(t, PTYConfig{Argv: tt.argv}, rec)
			if err != nil {
				t.Fatalf("RunPTY: %v", err)
			}
			if res != (Result{}) {
				t.Errorf("result = %+v, want exit 0", res)
			}
			if string(got) != tt.want {
				t.Errorf("stdout = %q, want %q", got, tt.want)
			}
			if rec := rec.payloads(recorder.KindOutput); string(rec) != tt.want {
				t.Errorf("recorded output = %q, want %q", rec, tt.want)
			}
			frames := rec.allFrames()
			if len(frames) == 0 || frames[0].kind != recorder.KindResize || !bytes.Equal(frames[0].data, resizePayload(80, 24)) {
				t.Errorf("first frame = %+v, want resize 80x24", frames[:min(1, len(frames))])
			}
		})
	}
}

func TestRunLocalLargeOutput(t *testing.T) {
	const size = 5_000_000
	rec := newMemRecorder(t, time.Millisecond)
	_, got, err := runChecked(t, PTYConfig{Argv: []string{"head", "-c", "5000000", "/dev/zero"}}, rec)
	if err != nil {
		t.Fatalf("RunPTY: %v", err)
	}
	if len(got) != size || bytes.IndexFunc(got, func(r rune) bool { return r != 0 }) >= 0 {
		t.Errorf("got %d bytes, want %d zero bytes", len(got), size)
	}
}

func TestRunLocalExitStatus(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   Result
	}{
		{"success", "exit 0", Result{}},
		{"exit code", "exit 7", Result{ExitCode: 7}},
		{"killed", "kill -KILL $$", Result{ExitCode: 137, Signal: "KILL"}},
		{"terminated", "kill -TERM $$", Result{ExitCode: 143, Signal: "TERM"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newMemRecorder(t, 0)
			res, _, err := runChecked(t, PTYConfig{Argv: []string{"sh", "-c", tt.script}}, rec)
			if err != nil {
				t.Fatalf("RunPTY: %v", err)
			}
			if res != tt.want {
				t.Errorf("result = %+v, want %+v", res, tt.want)
			}
		})
	}
}

func TestRunLocalStdinPipe(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantEOF string // the end-of-file characters sent after the input
	}{
		{"whole line", "hello\n", "\x04"},
		{"partial line", "abc", "\x04\x04"},
		{"no input", "", "\x04"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newMemRecorder(t, time.Millisecond)
			cfg := PTYConfig{Argv: []string{"cat"}, Stdin: strings.NewReader(tt.input)}
			res, got, err := runChecked(t, cfg, rec)
			if err != nil {
				t.Fatalf("RunPTY: %v", err)
			}
			if res != (Result{}) {
				t.Errorf("result = %+v, want exit 0", res)
			}
			// The terminal echoes the input, then cat copies it.
			word := strings.TrimSuffix(tt.input, "\n")
			if n := strings.Count(string(got), word); word != "" && n != 2 {
				t.Errorf("stdout = %q, want %q echoed and copied", got, word)
			}
			if in := rec.payloads(recorder.KindInput); string(in) != tt.input+tt.wantEOF {
				t.Errorf("recorded input = %q, want %q", in, tt.input+tt.wantEOF)
			}
			want := []string{"stdin closed: sent EOF to the command"}
			if m := rec.texts(recorder.KindMarker); !slices.Equal(m, want) {
				t.Errorf("markers = %q, want %q", m, want)
			}
		})
	}
}

// Input reaches the command only once committed: the terminal echoes what
// it receives, so the echo must never be read before the input's frame has
// committed. The slow commit would expose input sent ahead of its frame.
func TestRunLocalInputRecordedFirst(t *testing.T) {
	rec := newMemRecorder(t, 20*time.Millisecond)
	rec.echoToken = []byte("t0k3n")
	pr, pw := io.Pipe()
	go func() {
		for i := range 5 {
			fmt.Fprintf(pw, "t0k3n %d\n", i)
			time.Sleep(5 * time.Millisecond)
		}
		pw.Close()
	}()
	_, got, err := runChecked(t, PTYConfig{Argv: []string{"cat"}, Stdin: pr}, rec)
	if err != nil {
		t.Fatalf("RunPTY: %v", err)
	}
	if n := bytes.Count(got, rec.echoToken); n != 10 {
		t.Errorf("stdout has the input %d times, want 10 (echo and copy): %q", n, got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.echoedEarly {
		t.Error("the terminal echoed input before its frame was committed")
	}
}

// Once RunPTY returns, every goroutine it started has ended but the stdin
// reader, which ends by itself here because stdin reaches its end.
func TestRunLocalGoroutinesEnd(t *testing.T) {
	rec := newMemRecorder(t, 0)
	before := runtime.NumGoroutine()
	resize := make(chan Size)
	cfg := PTYConfig{Argv: []string{"cat"}, Stdin: strings.NewReader("x\n"), Resize: resize}
	if _, _, err := runChecked(t, cfg, rec); err != nil {
		t.Fatalf("RunPTY: %v", err)
	}
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before RunPTY, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// A background process that keeps the terminal open does not keep the
// session open once the command has exited.
func TestRunLocalBackgroundHoldsTerminal(t *testing.T) {
	rec := newMemRecorder(t, 0)
	start := time.Now()
	script := `trap "" HUP; sleep 10 & echo $!`
	_, got, err := runChecked(t, PTYConfig{Argv: []string{"sh", "-c", script}}, rec)
	if err != nil {
		t.Fatalf("RunPTY: %v", err)
	}
	pid, convErr := strconv.Atoi(strings.TrimSpace(string(got)))
	if convErr != nil {
		t.Fatalf("stdout = %q, want the background pid", got)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("RunPTY took %v", d)
	}
}

// A stdin that never delivers must not keep RunPTY from returning once
// the command has exited.
func TestRunLocalStdinBlocked(t *testing.T) {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() }) // releases the reader RunPTY left behind
	rec := newMemRecorder(t, 0)
	start := time.Now()
	_, got, err := runChecked(t, PTYConfig{Argv: []string{"echo", "done"}, Stdin: pr, StdinIsTerminal: true}, rec)
	if err != nil {
		t.Fatalf("RunPTY: %v", err)
	}
	if string(got) != "done\r\n" {
		t.Errorf("stdout = %q, want %q", got, "done\r\n")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("RunPTY took %v", d)
	}
}

func TestRunLocalResize(t *testing.T) {
	t.Run("initial size", func(t *testing.T) {
		rec := newMemRecorder(t, time.Millisecond)
		cfg := PTYConfig{Argv: []string{"stty", "size"}, Size: Size{Cols: 123, Rows: 45}}
		_, got, err := runChecked(t, cfg, rec)
		if err != nil {
			t.Fatalf("RunPTY: %v", err)
		}
		if string(got) != "45 123\r\n" {
			t.Errorf("stty size = %q, want %q", got, "45 123\r\n")
		}
		if r := rec.payloads(recorder.KindResize); !bytes.Equal(r, resizePayload(123, 45)) {
			t.Errorf("recorded resizes = %x, want one of 123x45", r)
		}
	})
	t.Run("change", func(t *testing.T) {
		rec := newMemRecorder(t, time.Millisecond)
		resize := make(chan Size, 1)
		resize <- Size{Cols: 100, Rows: 40}
		script := `while [ "$(stty size)" != "40 100" ]; do sleep 0.01; done; echo resized`
		cfg := PTYConfig{Argv: []string{"sh", "-c", script}, Resize: resize}
		_, got, err := runChecked(t, cfg, rec)
		if err != nil {
			t.Fatalf("RunPTY: %v", err)
		}
		if string(got) != "resized\r\n" {
			t.Errorf("stdout = %q, want %q", got, "resized\r\n")
		}
		want := append(resizePayload(80, 24), resizePayload(100, 40)...)
		if r := rec.payloads(recorder.KindResize); !bytes.Equal(r, want) {
			t.Errorf("recorded resizes = %x, want %x", r, want)
		}
	})
}

// When the journal fails, the command is killed (it ignores SIGHUP, so only
// SIGKILL ends it), RunPTY returns promptly, and nothing uncommitted
// reaches Stdout: the checked Stdout fails the test otherwise.
func TestRunLocalRecorderFails(t *testing.T) {
	tests := []struct {
		name         string
		failAppendAt uint64
		failCommitAt uint64
	}{
		{"append fails", 20, 0},
		{"commit fails", 0, 20},
		{"fails before start", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newMemRecorder(t, time.Millisecond)
			rec.failAppendAt, rec.failCommitAt = tt.failAppendAt, tt.failCommitAt
			cfg := PTYConfig{Argv: []string{"sh", "-c", `trap "" HUP; exec yes`}, KillGrace: time.Minute}
			start := time.Now()
			res, got, err := runChecked(t, cfg, rec)
			if !errors.Is(err, pump.ErrRecordingFailed) || !errors.Is(err, errJournalBroken) {
				t.Fatalf("RunPTY error = %v, want a recording failure", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("RunPTY took %v to fail", d)
			}
			want := Result{ExitCode: 137, Signal: "KILL"}
			if tt.failAppendAt == 1 {
				want = Result{} // never started
			}
			if res != want {
				t.Errorf("result = %+v, want %+v", res, want)
			}
			if committed := rec.committedOutput(); !bytes.HasPrefix(committed, got) {
				t.Errorf("forwarded %d bytes that are not a prefix of the %d committed", len(got), len(committed))
			}
		})
	}
}

// A command that does no terminal I/O never meets the failure in Append or
// Wait: it is killed because the recorder's Done closes, at once and without
// grace, not when it next writes (sleep 5 would otherwise run to its end).
// Like a failed Append, the kill is SIGHUP then SIGKILL with no wait between;
// a command that ignores the hangup shows there is no grace.
func TestRunLocalRecorderFailsIdle(t *testing.T) {
	tests := []struct {
		name string
		argv []string
		want Result
	}{
		{"sleep", []string{"sleep", "5"}, Result{ExitCode: 129, Signal: "HUP"}},
		{"ignores hangup", []string{"sh", "-c", `trap "" HUP; exec sleep 5`}, Result{ExitCode: 137, Signal: "KILL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newMemRecorder(t, time.Millisecond)
			timer := time.AfterFunc(200*time.Millisecond, rec.fail)
			defer timer.Stop()
			cfg := PTYConfig{Argv: tt.argv, KillGrace: time.Minute}
			start := time.Now()
			res, _, err := runChecked(t, cfg, rec)
			if !errors.Is(err, pump.ErrRecordingFailed) || !errors.Is(err, errJournalBroken) {
				t.Fatalf("RunPTY error = %v, want a recording failure", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("RunPTY took %v to stop an idle session whose journal failed", d)
			}
			if res != tt.want {
				t.Errorf("result = %+v, want %+v", res, tt.want)
			}
			if s := rec.texts(recorder.KindSignal); len(s) != 0 {
				t.Errorf("recorded signals %q after the journal failed", s)
			}
		})
	}
}

// A journal that fails while a canceled session waits out its kill grace
// ends the grace: the command, which ignores the hangup, is killed at once.
func TestRunLocalRecorderFailsDuringGrace(t *testing.T) {
	rec := newMemRecorder(t, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancelTimer := time.AfterFunc(100*time.Millisecond, cancel)
	defer cancelTimer.Stop()
	failTimer := time.AfterFunc(300*time.Millisecond, rec.fail)
	defer failTimer.Stop()
	cfg := PTYConfig{Argv: []string{"sh", "-c", `trap "" HUP; exec sleep 5`}, KillGrace: time.Minute, Stdout: io.Discard}
	start := time.Now()
	res, err := RunPTY(ctx, cfg, rec)
	if !errors.Is(err, pump.ErrRecordingFailed) || !errors.Is(err, errJournalBroken) {
		t.Fatalf("RunPTY error = %v, want a recording failure", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("RunPTY took %v", d)
	}
	if want := (Result{ExitCode: 137, Signal: "KILL"}); res != want {
		t.Errorf("result = %+v, want %+v", res, want)
	}
}

func TestRunLocalCancel(t *testing.T) {
	tests := []struct {
		name        string
		argv        []string
		want        Result
		wantSignals []string
	}{
		{"exits on hangup", []string{"sleep", "30"}, Result{ExitCode: 129, Signal: "HUP"}, []string{"HUP"}},
		{"ignores hangup", []string{"sh", "-c", `trap "" HUP; exec sleep 30`}, Result{ExitCode: 137, Signal: "KILL"}, []string{"HUP", "KILL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newMemRecorder(t, time.Millisecond)
			ctx, cancel := context.WithCancel(context.Background())
			timer := time.AfterFunc(200*time.Millisecond, cancel)
			defer timer.Stop()
			cfg := PTYConfig{Argv: tt.argv, KillGrace: 300 * time.Millisecond, Stdout: io.Discard}
			start := time.Now()
			res, err := RunPTY(ctx, cfg, rec)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("RunPTY error = %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("RunPTY took %v", d)
			}
			if res != tt.want {
				t.Errorf("result = %+v, want %+v", res, tt.want)
			}
			if s := rec.texts(recorder.KindSignal); !slices.Equal(s, tt.wantSignals) {
				t.Errorf("recorded signals = %q, want %q", s, tt.wantSignals)
			}
			// Stdin is nil: the command saw end of input first.
			wantMarkers := []string{"stdin closed: sent EOF to the command", "session stopped: context canceled"}
			if m := rec.texts(recorder.KindMarker); !slices.Equal(m, wantMarkers) {
				t.Errorf("markers = %q", m)
			}
		})
	}
}

type brokenWriter struct{}

var errBrokenPipe = errors.New("broken pipe")

func (brokenWriter) Write(p []byte) (int, error) { return 0, errBrokenPipe }

func TestRunLocalStdoutFails(t *testing.T) {
	rec := newMemRecorder(t, 0)
	cfg := PTYConfig{Argv: []string{"yes"}, Stdout: brokenWriter{}, KillGrace: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := RunPTY(ctx, cfg, rec)
	if !errors.Is(err, errBrokenPipe) || errors.Is(err, pump.ErrRecordingFailed) {
		t.Fatalf("RunPTY error = %v, want the write error", err)
	}
	if res.Signal != "HUP" {
		t.Errorf("result = %+v, want killed by HUP", res)
	}
}

func TestRunLocalBadCommand(t *testing.T) {
	tests := []struct {
		name string
		argv []string
	}{
		{"no argv", nil},
		{"not found", []string{"no-such-command-in-path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newMemRecorder(t, 0)
			if _, err := RunPTY(context.Background(), PTYConfig{Argv: tt.argv}, rec); err == nil {
				t.Fatal("RunPTY succeeded")
			}
			if f := rec.allFrames(); len(f) != 0 {
				t.Errorf("recorded %d frames for a command that cannot run", len(f))
			}
		})
	}
}

// instantRecorder commits every frame as it is appended, so a benchmark
// measures the pumps and the terminal, not a journal.
type instantRecorder struct{ seq atomic.Uint64 }

func (r *instantRecorder) Append(kind recorder.Kind, channel uint32, p []byte) (uint64, error) {
	return r.seq.Add(1), nil
}

func (r *instantRecorder) Wait(ctx context.Context, seq uint64) error { return nil }

func (r *instantRecorder) Done() <-chan struct{} { return nil } // never fails

func (r *instantRecorder) Err() error { return nil }

func BenchmarkRunLocalThroughput(b *testing.B) {
	const size = 64 << 20
	b.SetBytes(size)
	for b.Loop() {
		var n countingWriter
		_, err := RunPTY(context.Background(), PTYConfig{
			Argv:   []string{"head", "-c", "64M", "/dev/zero"},
			Stdout: &n,
		}, &instantRecorder{})
		if err != nil {
			b.Fatal(err)
		}
		if n != size {
			b.Fatalf("forwarded %d bytes, want %d", n, size)
		}
	}
}

type countingWriter int64

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}
