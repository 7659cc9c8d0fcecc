// Package playback turns a recorded session into what people read: a
// real-time replay in a terminal ([Play]), an asciicast v2 file for existing
// players ([WriteAsciicast]), and the command lines typed in it
// ([Commands]).
//
// Everything here reads a session through [recorder.SessionRecord], so no
// frame reaches a screen or a file before the segment that commits it has
// verified against the signed log.
//
// # Seeking
//
// [Options.From] and the seek keys find the frame at an offset through the
// storage index ([storage.Snapshot.FrameAt], a binary search over the
// frames' sequence numbers) and start reading at the segment that holds it:
// nothing before that segment is read or hashed, so seeking costs the same
// at any point of any recording. The index's times are not trusted: once
// its segment verifies, the frame found must be at or before the offset
// and the next one after it, or the session does not verify. A terminal's state at an offset depends on
// everything written before it; playback does not rebuild it. It clears the
// screen and plays the frames from the offset: a full-screen program shows
// correctly from its next redraw, a shell from its next line.
package playback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// Control is a request from the viewer while a session plays.
type Control int

const (
	TogglePause Control = iota // pause, or resume
	SeekBack                   // back by SeekStep
	SeekForward                // forward by SeekStep
	Faster                     // double the speed
	Slower                     // halve the speed
	Quit                       // stop playing
)

// SeekStep is how far SeekBack and SeekForward move.
const SeekStep = 5 * time.Second

// ClearScreen moves the cursor home and clears the screen: written before
// playing from an offset.
const ClearScreen = "\x1b[H\x1b[2J"

// Options configure [Play].
type Options struct {
	// Verifier is the journal's public key. Required.
	Verifier note.Verifier
	// Speed multiplies the recorded pace: 2 plays twice as fast. Zero or
	// less plays as fast as the output can be written.
	Speed float64
	// MaxIdle caps each pause between two frames (before Speed applies).
	// Zero keeps the recorded pauses.
	MaxIdle time.Duration
	// From is the offset into the session to start at (see the package
	// comment on seeking).
	From time.Duration
	// ShowInput also writes what was typed or sent to the target, in
	// reverse video with control characters spelled ^X.
	ShowInput bool
	// Follow keeps playing a session that has not ended: what was recorded
	// so far is written at once, then each new frame as soon as it is
	// committed, until the session ends or ctx is done.
	Follow bool
	// Poll is how often Follow looks for new frames. Zero means 20ms.
	Poll time.Duration
	// Force plays a session that does not verify, as far as its frames
	// go; the problems are in the result.
	Force bool
	// Controls, if not nil, delivers the viewer's keys.
	Controls <-chan Control
	// Size, if not nil, reports the viewer's terminal size; Warn is told
	// when the recording needs a larger one.
	Size func() (cols, rows int, ok bool)
	// Warn receives warnings for the viewer. If nil, they are dropped.
	Warn func(msg string)
}

// Result says how a session played.
type Result struct {
	Frames   int64
	Bytes    int64
	Ended    bool           // the session's end is in the log
	End      recorder.Attrs // the end leaf's attributes, when Ended
	Exit     recorder.Attrs // the last exit frame's attributes, if any
	Problems []string       // what did not verify (Force only)
	Quit     bool           // the viewer quit
	Record   *recorder.SessionRecord
}

// errQuit and seekTo unwind the frame reader when the viewer quits or seeks.
var errQuit = errors.New("quit")

type seekTo struct{ at time.Duration }

func (s seekTo) Error() string { return "seek" }

// Play verifies session id in store and writes it to w with its recorded
// timing. It fails, before writing anything, with an error wrapping
// [recorder.ErrSessionBroken] when the session's leaves do not verify, and
// stops with one when a segment's frames do not (unless Force).
func Play(ctx context.Context, store storage.Store, id recorder.SessionID, w io.Writer, opts Options) (*Result, error) {
	if opts.Poll <= 0 {
		opts.Poll = 20 * time.Millisecond
	}
	if opts.Warn == nil {
		opts.Warn = func(string) {}
	}
	snap, err := store.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if snap != nil {
			snap.Close()
		}
	}()
	rec, err := recorder.OpenSession(ctx, snap, id, recorder.OpenOptions{Verifier: opts.Verifier, Force: opts.Force})
	if err != nil {
		return nil, err
	}
	// Played as stored (Force): what does not verify is said first.
	for _, p := range rec.Problems {
		opts.Warn("does not verify: " + p)
	}
	// Following, what was recorded so far is written at once: the screen
	// catches up with the session, then shows it live.
	p := &player{ctx: ctx, w: w, opts: opts, speed: opts.Speed, live: opts.Follow, res: &Result{Record: rec}}
	p.checkSize(firstSize(ctx, snap, rec))
	next, err := p.seek(ctx, snap, rec, opts.From)
	for err == nil {
		err = rec.ReadFrames(ctx, snap, next, p.frame)
		var s seekTo
		if errors.As(err, &s) {
			next, err = p.seek(ctx, snap, rec, s.at)
			continue
		}
		if err != nil || !opts.Follow || rec.End != nil {
			break
		}
		// Live: from now on, frames are shown as soon as they are in.
		p.live = true
		next = p.lastSeq + 1
		for err == nil {
			if err = p.idle(ctx, opts.Poll); err != nil {
				break
			}
			snap.Close()
			if snap, err = store.Snapshot(ctx); err != nil {
				break
			}
			var changed bool
			if changed, err = rec.Refresh(ctx, snap); changed {
				break
			}
		}
		if errors.As(err, &s) {
			p.live = false
			next, err = p.seek(ctx, snap, rec, s.at)
		}
	}
	if errors.Is(err, errQuit) {
		p.res.Quit, err = true, nil
	}
	return p.result(rec), err
}

func (p *player) result(rec *recorder.SessionRecord) *Result {
	p.res.Ended = rec.End != nil
	if p.res.Ended {
		p.res.End = rec.End.Leaf.Attrs
	}
	p.res.Problems = rec.Problems
	return p.res
}

type player struct {
	ctx   context.Context
	w     io.Writer
	opts  Options
	speed float64
	res   *Result

	live     bool          // following: no waiting
	started  bool          // a frame has been timed since the last seek
	prevMono int64         // the previous frame's offset
	deadline time.Time     // when the previous frame was due
	pos      time.Duration // the offset reached
	lastSeq  uint64
	// seeking is set from a seek to an offset until the frames around it
	// have verified: seekSeq, the frame the index found at or before the
	// offset (0: none), must be at or before it, and the next frame after.
	seeking bool
	seekSeq uint64
	cols    uint32
	rows    uint32
}

// seek positions playback at offset at and returns the sequence number to
// read from.
func (p *player) seek(ctx context.Context, snap storage.Snapshot, rec *recorder.SessionRecord, at time.Duration) (uint64, error) {
	at = max(at, 0)
	p.started, p.pos = false, at
	if at == 0 {
		if p.lastSeq > 0 {
			if _, err := io.WriteString(p.w, ClearScreen); err != nil {
				return 0, err
			}
		}
		return 1, nil
	}
	seq, err := snap.FrameAt(ctx, rec.Num, int64(at))
	if err != nil {
		return 0, fmt.Errorf("find offset %s: %w", at, err)
	}
	if _, err := io.WriteString(p.w, ClearScreen); err != nil {
		return 0, err
	}
	// The index's times are not trusted: reading starts at the frame it
	// found, which is checked to be at or before the offset once its
	// segment verifies, and the frame after it to be past the offset
	// (frame times never go back), before anything is played. That frame
	// is partly before the offset: playing starts after it.
	p.seeking, p.seekSeq = true, uint64(seq)
	return max(uint64(seq), 1), nil
}

// errSeekIndex says the index's times do not match the verified frames.
var errSeekIndex = errors.New("the frames' times in the index do not match the verified frames: the index was changed; run \"bastion verify\"")

// checkSeek applies the checks of a seek to a verified frame, and reports
// whether the frame is the one before the offset, not to be played.
func (p *player) checkSeek(f *recorder.Frame) (skip bool, err error) {
	if !p.seeking {
		return false, nil
	}
	at := int64(p.pos)
	if p.seekSeq > 0 && f.Seq == p.seekSeq {
		if f.MonoNS > at {
			return false, fmt.Errorf("recorder: %w: %w", recorder.ErrSessionBroken, errSeekIndex)
		}
		return true, nil
	}
	if f.MonoNS <= at {
		return false, fmt.Errorf("recorder: %w: %w", recorder.ErrSessionBroken, errSeekIndex)
	}
	p.seeking = false
	return false, nil
}

// frame plays one verified frame.
func (p *player) frame(f *recorder.Frame) error {
	if skip, err := p.checkSeek(f); skip || err != nil {
		p.lastSeq = f.Seq
		return err
	}
	p.lastSeq = f.Seq
	if err := p.wait(f.MonoNS); err != nil {
		return err
	}
	var out []byte
	switch f.Kind {
	case recorder.KindOutput, recorder.KindStderr:
		out = f.Payload
	case recorder.KindInput:
		if p.opts.ShowInput {
			out = showInput(f.Payload)
		}
	case recorder.KindResize:
		if c, r, err := recorder.ParseResize(f.Payload); err == nil {
			p.checkSize(c, r)
		}
	case recorder.KindPTY:
		if a, err := recorder.ParseAttrsPayload(f.Payload); err == nil {
			c, _ := strconv.ParseUint(a["cols"], 10, 32)
			r, _ := strconv.ParseUint(a["rows"], 10, 32)
			p.checkSize(uint32(c), uint32(r))
		}
	case recorder.KindExit:
		if a, err := recorder.ParseAttrsPayload(f.Payload); err == nil {
			p.res.Exit = a
		}
	}
	p.res.Frames++
	if len(out) > 0 {
		p.res.Bytes += int64(len(out))
		if _, err := p.w.Write(out); err != nil {
			return err
		}
	}
	return nil
}

// checkSize warns when the recording's terminal is larger than the viewer's.
func (p *player) checkSize(cols, rows uint32) {
	if cols == 0 || rows == 0 || (cols == p.cols && rows == p.rows) {
		return
	}
	p.cols, p.rows = cols, rows
	if p.opts.Size == nil {
		return
	}
	if c, r, ok := p.opts.Size(); ok && (c < int(cols) || r < int(rows)) {
		p.opts.Warn(fmt.Sprintf("the session's terminal is %dx%d, this one is %dx%d: lines may wrap or scroll differently", cols, rows, c, r))
	}
}

// wait sleeps until the frame at offset mono is due, handling the viewer's
// keys meanwhile.
func (p *player) wait(mono int64) error {
	if !p.started {
		p.started = true
		p.prevMono = max(mono, int64(p.pos))
		p.deadline = time.Now()
		return p.poll()
	}
	gap := time.Duration(max(mono-p.prevMono, 0))
	p.prevMono = max(mono, p.prevMono)
	if p.opts.MaxIdle > 0 {
		gap = min(gap, p.opts.MaxIdle)
	}
	p.pos = time.Duration(p.prevMono)
	if p.live || p.speed <= 0 {
		p.deadline = time.Now()
		return p.poll()
	}
	p.deadline = p.deadline.Add(time.Duration(float64(gap) / p.speed))
	for {
		d := time.Until(p.deadline)
		if d <= 0 {
			return p.poll()
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return p.poll()
		case c := <-p.opts.Controls:
			t.Stop()
			if err := p.control(c); err != nil {
				return err
			}
		}
	}
}

// poll takes a pending key without waiting.
func (p *player) poll() error {
	for {
		select {
		case c := <-p.opts.Controls:
			if err := p.control(c); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// idle waits d for a live session's next frames, taking keys meanwhile.
func (p *player) idle(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case c := <-p.opts.Controls:
			if err := p.control(c); err != nil {
				return err
			}
		}
	}
}

// control acts on one key. Pause blocks here until resumed.
func (p *player) control(c Control) error {
	switch c {
	case Quit:
		return errQuit
	case Faster:
		if p.speed > 0 && p.speed < 64 {
			p.speed *= 2
		}
	case Slower:
		if p.speed > 1.0/64 {
			p.speed /= 2
		}
	case SeekBack:
		return seekTo{p.pos - SeekStep}
	case SeekForward:
		return seekTo{p.pos + SeekStep}
	case TogglePause:
		paused := time.Now()
		for {
			var c Control
			select {
			case <-p.ctx.Done():
				return p.ctx.Err()
			case c = <-p.opts.Controls:
			}
			if c == TogglePause {
				break
			}
			if c == Quit || c == SeekBack || c == SeekForward {
				return p.control(c)
			}
			p.control(c)
		}
		p.deadline = p.deadline.Add(time.Since(paused))
	}
	return nil
}

// showInput renders input bytes visibly: reverse video, control bytes as
// ^X, so that keystrokes are told apart from output and move no cursor.
func showInput(b []byte) []byte {
	out := []byte("\x1b[7m")
	for _, c := range b {
		switch {
		case c < 0x20:
			out = append(out, '^', c+0x40)
		case c == 0x7f:
			out = append(out, '^', '?')
		default:
			out = append(out, c)
		}
	}
	return append(out, "\x1b[27m"...)
}

// firstSize is the terminal size the session starts with: its first PTY
// request or resize frame, among its first frames, as verified.
func firstSize(ctx context.Context, snap storage.Snapshot, rec *recorder.SessionRecord) (cols, rows uint32) {
	done := errors.New("done")
	rec.ReadFrames(ctx, snap, 1, func(f *recorder.Frame) error {
		if f.Seq > 16 {
			return done
		}
		switch f.Kind {
		case recorder.KindResize:
			cols, rows, _ = recorder.ParseResize(f.Payload)
			return done
		case recorder.KindPTY:
			if a, err := recorder.ParseAttrsPayload(f.Payload); err == nil {
				c, _ := strconv.ParseUint(a["cols"], 10, 32)
				r, _ := strconv.ParseUint(a["rows"], 10, 32)
				cols, rows = uint32(c), uint32(r)
				return done
			}
		}
		return nil
	})
	return cols, rows
}
