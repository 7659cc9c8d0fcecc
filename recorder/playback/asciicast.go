package playback

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// AsciicastOptions configure [WriteAsciicast].
type AsciicastOptions struct {
	// Input adds "i" events for what was typed or sent to the target.
	Input bool
}

// Default terminal size when a session recorded none (no PTY).
const (
	defaultCols = 80
	defaultRows = 24
)

// asciicastHeader is the first line of an asciicast v2 file.
type asciicastHeader struct {
	Version   int               `json:"version"`
	Width     uint32            `json:"width"`
	Height    uint32            `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Command   string            `json:"command,omitempty"`
	Title     string            `json:"title"`
	Env       map[string]string `json:"env,omitempty"`
}

// WriteAsciicast writes a verified session as asciicast v2
// (https://docs.asciinema.org/manual/asciicast/v2/): a header line, then
// one event per line, [time, code, data] with the time in seconds since
// the session started, always with six decimals:
//
//   - "o": output, stdout and stderr of the target
//   - "i": input, with opts.Input
//   - "r": a terminal resize, "COLSxROWS"
//   - "m": a marker for what bastion recorded about the session: exit
//     status, signals, masking, file transfers, its own notes, its end
//
// A front-door session without a terminal (no PTY request: an exec such
// as "ssh host cmd") wrote bare line feeds that no terminal turned into
// CR LF; a player is a terminal, and would draw them as a staircase. Its
// output events carry each line feed not already after a carriage return
// as CR LF, as the client's terminal showed them; nothing else changes,
// and a session with a terminal (or recorded by "bastion record", which
// runs its command in one) is written as recorded.
//
// Event data is valid UTF-8 even where a read split a multi-byte
// character: the incomplete bytes at the end of a frame are carried to the
// next event of the same stream, and bytes that are not UTF-8 become
// U+FFFD. The same session always gives the same bytes.
func WriteAsciicast(ctx context.Context, snap storage.Snapshot, rec *recorder.SessionRecord, w io.Writer, opts AsciicastOptions) error {
	bw := bufio.NewWriter(w)
	a := &caster{w: bw, opts: opts, carry: map[streamKey][]byte{}, cr: map[streamKey]bool{}}
	start := rec.Start.Leaf.Attrs
	a.noTerminal = start["kind"] == "ssh"
	a.hdr = asciicastHeader{
		Version:   2,
		Timestamp: rec.Start.Leaf.WallNS / 1e9,
		Command:   start["command"],
		Title:     title(rec),
		Env:       map[string]string{},
	}
	if t := start["term"]; t != "" {
		a.hdr.Env["TERM"] = t
	}
	err := rec.ReadFrames(ctx, snap, 1, a.frame)
	if err != nil {
		return err
	}
	a.flushCarry()
	if rec.End != nil {
		a.event(a.last, "m", endMarker(rec.End.Leaf.Attrs))
	}
	if err := a.writeHeader(); err != nil {
		return err
	}
	if a.err != nil {
		return a.err
	}
	return bw.Flush()
}

func title(rec *recorder.SessionRecord) string {
	a := rec.Start.Leaf.Attrs
	t := "bastion session " + uuid.UUID(rec.ID).String()
	switch {
	case a["identity"] != "" && a["target"] != "":
		t += " (" + a["identity"] + " as " + a["login"] + " on " + a["target"] + ")"
	case a["user"] != "" && a["host"] != "":
		t += " (" + a["user"] + " on " + a["host"] + ")"
	}
	return t
}

func endMarker(a recorder.Attrs) string {
	s := "session ended: " + a["reason"]
	if d := a["detail"]; d != "" {
		s += ": " + d
	}
	return s
}

type streamKey struct {
	kind    recorder.Kind
	channel uint32
}

type caster struct {
	w    *bufio.Writer
	opts AsciicastOptions
	hdr  asciicastHeader
	// pending holds events until the header is written: its size comes
	// from the first PTY request or resize, which may follow the start.
	pending [][]byte
	written bool
	carry   map[streamKey][]byte
	keys    []streamKey // carry's keys in first-seen order, for a stable flush
	last    int64       // the latest event time
	// noTerminal: a front-door session that has sent no PTY request (so
	// far): its output's bare line feeds become CR LF. cr says whether a
	// stream's last byte written was a carriage return.
	noTerminal bool
	cr         map[streamKey]bool
	err        error
}

func (a *caster) frame(f *recorder.Frame) error {
	t := max(f.MonoNS, a.last)
	a.last = t
	switch f.Kind {
	case recorder.KindOutput, recorder.KindStderr:
		a.text(t, f, "o")
	case recorder.KindInput:
		if a.opts.Input {
			a.text(t, f, "i")
		}
	case recorder.KindResize:
		if c, r, err := recorder.ParseResize(f.Payload); err == nil {
			a.size(t, c, r)
		}
	case recorder.KindPTY:
		a.noTerminal = false
		if at, err := recorder.ParseAttrsPayload(f.Payload); err == nil {
			c, _ := strconv.ParseUint(at["cols"], 10, 32)
			r, _ := strconv.ParseUint(at["rows"], 10, 32)
			if at["term"] != "" {
				a.hdr.Env["TERM"] = at["term"]
			}
			a.size(t, uint32(c), uint32(r))
		}
	case recorder.KindEnv:
		if at, err := recorder.ParseAttrsPayload(f.Payload); err == nil && at["shell"] != "" {
			a.hdr.Env["SHELL"] = at["shell"]
		}
	case recorder.KindExec:
		if a.hdr.Command == "" {
			a.hdr.Command = string(f.Payload)
		}
	case recorder.KindExit:
		if at, err := recorder.ParseAttrsPayload(f.Payload); err == nil {
			m := "exit status " + at["status"]
			if s := at["signal"]; s != "" {
				m += " (signal " + s + ")"
			}
			a.event(t, "m", m)
		}
	case recorder.KindSignal:
		a.event(t, "m", "signal "+string(f.Payload))
	case recorder.KindMarker:
		a.event(t, "m", string(f.Payload))
	case recorder.KindMask:
		if at, err := recorder.ParseAttrsPayload(f.Payload); err == nil {
			m := fmt.Sprintf("masked: %s x%s", at["detector"], at["count"])
			if at["action"] == "input-redacted" {
				m = fmt.Sprintf("masked: %s, %s bytes of input", at["detector"], at["length"])
			} else if st := at["stream"]; st != "" {
				m += " (" + st + ")"
			}
			a.event(t, "m", m)
		}
	case recorder.KindSubsystem:
		if at, err := recorder.ParseAttrsPayload(f.Payload); err == nil {
			a.event(t, "m", "subsystem: "+attrLine(at))
		}
	}
	return a.err
}

// size sets the header's size from the first size seen, and makes a later
// one an "r" event.
func (a *caster) size(t int64, cols, rows uint32) {
	if cols == 0 || rows == 0 {
		return
	}
	if !a.written && a.hdr.Width == 0 {
		a.hdr.Width, a.hdr.Height = cols, rows
		return
	}
	a.event(t, "r", fmt.Sprintf("%dx%d", cols, rows))
}

// text emits a stream's bytes as valid UTF-8, carrying a character split
// at the end to the stream's next event.
func (a *caster) text(t int64, f *recorder.Frame, code string) {
	k := streamKey{f.Kind, f.Channel}
	prev, seen := a.carry[k]
	if !seen {
		a.keys = append(a.keys, k)
	}
	b := append(prev, f.Payload...)
	cut := incompleteTail(b)
	a.carry[k] = append([]byte(nil), b[cut:]...)
	s := validUTF8(b[:cut])
	if code == "o" && a.noTerminal {
		s = a.crlf(k, s)
	}
	if s != "" {
		a.event(t, code, s)
	}
}

// crlf writes each line feed of stream k's s that does not follow a
// carriage return as CR LF, as a terminal's output processing would.
func (a *caster) crlf(k streamKey, s string) string {
	if s == "" {
		return s
	}
	var b strings.Builder
	prevCR := a.cr[k]
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' && !prevCR {
			b.WriteByte('\r')
		}
		b.WriteByte(s[i])
		prevCR = s[i] == '\r'
	}
	a.cr[k] = prevCR
	return b.String()
}

// flushCarry ends every stream: bytes still carried are not UTF-8.
func (a *caster) flushCarry() {
	for _, k := range a.keys {
		if b := a.carry[k]; len(b) > 0 {
			code := "o"
			if k.kind == recorder.KindInput {
				code = "i"
			}
			a.event(a.last, code, validUTF8(b))
			a.carry[k] = nil
		}
	}
}

// incompleteTail returns where a multi-byte character that b ends in the
// middle of starts, or len(b).
func incompleteTail(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		c := b[i]
		if c < 0x80 {
			return len(b)
		}
		if c >= 0xc0 { // a lead byte
			if !utf8.FullRune(b[i:]) {
				return i
			}
			return len(b)
		}
	}
	return len(b)
}

// validUTF8 replaces each byte that is not part of a valid UTF-8 sequence
// with U+FFFD.
func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var s strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			s.WriteRune(utf8.RuneError)
			b = b[1:]
			continue
		}
		s.Write(b[:n])
		b = b[n:]
	}
	return s.String()
}

func (a *caster) event(t int64, code, data string) {
	var line bytes.Buffer
	line.WriteByte('[')
	line.WriteString(seconds(t))
	line.WriteString(", ")
	line.Write(jsonString(code))
	line.WriteString(", ")
	line.Write(jsonString(data))
	line.WriteString("]\n")
	if !a.written {
		if a.hdr.Width != 0 || code == "o" || code == "i" {
			if err := a.writeHeader(); err != nil {
				return
			}
		} else {
			a.pending = append(a.pending, line.Bytes())
			return
		}
	}
	if _, err := a.w.Write(line.Bytes()); err != nil && a.err == nil {
		a.err = err
	}
}

func (a *caster) writeHeader() error {
	if a.written {
		return a.err
	}
	a.written = true
	if a.hdr.Width == 0 {
		a.hdr.Width, a.hdr.Height = defaultCols, defaultRows
	}
	if len(a.hdr.Env) == 0 {
		a.hdr.Env = nil
	}
	h, err := json.Marshal(a.hdr)
	if err != nil {
		a.err = err
		return err
	}
	a.w.Write(h)
	a.w.WriteByte('\n')
	for _, l := range a.pending {
		a.w.Write(l)
	}
	a.pending = nil
	return a.err
}

// seconds formats nanoseconds as seconds with exactly six decimals, in
// integer arithmetic: no float rounding, the same text on every machine.
func seconds(ns int64) string {
	ns = max(ns, 0)
	us := ns / 1e3
	return fmt.Sprintf("%d.%06d", us/1e6, us%1e6)
}

// jsonString encodes s as a JSON string, without escaping HTML characters.
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// attrLine renders attributes as "k=v k=v", keys sorted, values quoted.
func attrLine(a recorder.Attrs) string {
	var s []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		s = append(s, k+"="+strconv.Quote(a[k]))
	}
	return strings.Join(s, " ")
}
