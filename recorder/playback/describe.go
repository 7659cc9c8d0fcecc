package playback

import (
	"context"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// Command is a command run in a session.
type Command struct {
	// Offset is when it was sent, from the session's start.
	Offset time.Duration
	// Text is the command: exactly as the client sent it for an exec
	// request; rebuilt from keystrokes for an interactive session.
	Text string
	// Reconstructed marks a command line rebuilt from the keystrokes
	// typed at a terminal: what the line editor would hold when Enter was
	// pressed, following printable keys, backspace, ^U, ^W and ^C.
	Reconstructed bool
	// Uncertain marks a reconstructed line edited with keys that the
	// rebuild does not follow (cursor and history keys, tab completion):
	// the shell may have run something else. The output shows what.
	Uncertain bool
}

// Line is one line of a session's output, escape sequences removed.
type Line struct {
	Offset time.Duration
	Text   string
}

// Summary is what a session's frames say about it.
type Summary struct {
	Commands []Command
	Exit     recorder.Attrs   // the last exit frame's attributes
	Signals  []string         // signals delivered to the target
	Masked   map[string]int64 // masking counts by detector
	Files    []recorder.Attrs // file-transfer metadata (sftp)
	Markers  []string         // bastion's own notes
	PTY      recorder.Attrs   // the PTY request, if any
	Frames   int64
	InBytes  int64
	OutBytes int64
	Duration time.Duration // the offset of the last frame
}

// Describe reads a verified session and summarizes it; if lines is not
// nil, it is called with each line of output as well.
func Describe(ctx context.Context, snap storage.Snapshot, rec *recorder.SessionRecord, lines func(Line)) (*Summary, error) {
	s := &Summary{Masked: map[string]int64{}}
	interactive := rec.Start.Leaf.Attrs["kind"] == "record"
	var ed lineEditor
	var out outputLines
	out.emit = lines
	err := rec.ReadFrames(ctx, snap, 1, func(f *recorder.Frame) error {
		s.Frames++
		at := time.Duration(f.MonoNS)
		s.Duration = max(s.Duration, at)
		switch f.Kind {
		case recorder.KindInput:
			s.InBytes += int64(len(f.Payload))
			if interactive {
				s.Commands = append(s.Commands, ed.feed(f.Payload, at)...)
			}
		case recorder.KindOutput, recorder.KindStderr:
			s.OutBytes += int64(len(f.Payload))
			if lines != nil {
				out.feed(f.Payload, at)
			}
		case recorder.KindExec:
			s.Commands = append(s.Commands, Command{Offset: at, Text: string(f.Payload)})
		case recorder.KindPTY:
			interactive = true
			s.PTY, _ = recorder.ParseAttrsPayload(f.Payload)
		case recorder.KindExit:
			s.Exit, _ = recorder.ParseAttrsPayload(f.Payload)
		case recorder.KindSignal:
			s.Signals = append(s.Signals, string(f.Payload))
		case recorder.KindMarker:
			s.Markers = append(s.Markers, string(f.Payload))
		case recorder.KindMask:
			if a, err := recorder.ParseAttrsPayload(f.Payload); err == nil {
				n, err := strconv.ParseInt(a["count"], 10, 64)
				if err != nil || n < 1 {
					n = 1
				}
				s.Masked[a["detector"]] += n
			}
		case recorder.KindSubsystem:
			if a, err := recorder.ParseAttrsPayload(f.Payload); err == nil {
				s.Files = append(s.Files, a)
			}
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	if c, ok := ed.flush(); ok {
		s.Commands = append(s.Commands, c)
	}
	out.flush()
	return s, nil
}

// lineEditor follows keystrokes as a shell's line editor would, for the
// keys whose effect does not depend on the shell's state.
type lineEditor struct {
	line      []byte
	start     time.Duration
	uncertain bool
	recalled  bool   // an escape sequence (cursor or history key) was typed
	esc       int    // 0 none, 1 after ESC, 2 in a CSI sequence, 3 after ESC O
	csi       []byte // the CSI sequence's parameters so far
}

func (e *lineEditor) feed(p []byte, at time.Duration) []Command {
	var out []Command
	for _, c := range p {
		if len(e.line) == 0 && !e.uncertain && e.esc == 0 {
			e.start = at
		}
		switch e.esc {
		case 1:
			switch c {
			case '[':
				e.esc, e.csi = 2, e.csi[:0]
			case 'O':
				e.esc = 3
			default:
				e.esc, e.uncertain, e.recalled = 0, true, true // Alt-key: a readline command
			}
			continue
		case 2:
			if c >= 0x40 && c <= 0x7e {
				e.esc = 0
				// Bracketed paste markers wrap text taken as typed.
				if p := string(e.csi) + string(c); p != "200~" && p != "201~" {
					e.uncertain, e.recalled = true, true
				}
			} else {
				e.csi = append(e.csi, c)
			}
			continue
		case 3:
			e.esc, e.uncertain, e.recalled = 0, true, true
			continue
		}
		switch c {
		case 0x1b:
			e.esc = 1
		case '\r', '\n':
			if cmd, ok := e.flush(); ok {
				out = append(out, cmd)
			}
		case 0x7f, 0x08:
			if len(e.line) > 0 {
				_, n := utf8.DecodeLastRune(e.line)
				e.line = e.line[:len(e.line)-n]
			}
		case 0x15: // ^U
			e.line = e.line[:0]
		case 0x17: // ^W
			s := strings.TrimRight(string(e.line), " ")
			e.line = []byte(s[:strings.LastIndex(s, " ")+1])
		case 0x03: // ^C: the line is abandoned
			e.line, e.uncertain, e.recalled = e.line[:0], false, false
		default:
			if c < 0x20 {
				e.uncertain = true // tab completion, ^R search, ^A…
				continue
			}
			e.line = append(e.line, c)
		}
	}
	return out
}

func (e *lineEditor) flush() (Command, bool) {
	text := strings.TrimSpace(validUTF8(e.line))
	c := Command{Offset: e.start, Text: text, Reconstructed: true, Uncertain: e.uncertain}
	ok := text != "" || e.recalled // an empty line run from history is a command
	e.line, e.uncertain, e.recalled = e.line[:0], false, false
	return c, ok
}

// outputLines splits output into lines without escape sequences.
type outputLines struct {
	emit  func(Line)
	line  []byte
	start time.Duration
	esc   int
}

// maxLine bounds a line kept for searching; longer ones are split.
const maxLine = 4096

func (o *outputLines) feed(p []byte, at time.Duration) {
	for _, c := range p {
		switch o.esc {
		case 1:
			if c == '[' || c == ']' {
				o.esc = int(c) // CSI or OSC
			} else {
				o.esc = 0
			}
			continue
		case '[':
			if c >= 0x40 && c <= 0x7e {
				o.esc = 0
			}
			continue
		case ']':
			if c == 0x07 || c == 0x1b {
				o.esc = 0
			}
			continue
		}
		if len(o.line) == 0 {
			o.start = at
		}
		switch {
		case c == 0x1b:
			o.esc = 1
		case c == '\n':
			o.flush()
		case c == '\t':
			o.line = append(o.line, ' ')
		case c < 0x20 || c == 0x7f:
		default:
			o.line = append(o.line, c)
			if len(o.line) >= maxLine {
				o.flush()
			}
		}
	}
}

func (o *outputLines) flush() {
	if len(o.line) > 0 && o.emit != nil {
		o.emit(Line{Offset: o.start, Text: validUTF8(o.line)})
	}
	o.line = o.line[:0]
}
