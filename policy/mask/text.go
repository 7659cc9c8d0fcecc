package mask

import "bytes"

// The text of a stream is what the detectors read: the stream's bytes with
// every CSI and other escape sequence taken out, so that a value a color
// change interrupts reads as one. OSC, DCS, SOS, PM and APC strings are
// taken out as sequences are, but their bodies are text too: an ESC in
// the text stands for each edge of a string, so that no value reaches
// across it, and the text before it is decided as if the stream ended
// there. An ESC that starts no sequence is text as well.
//
// Each segment of the text maps to the stream byte for byte; the
// detectors' edits are made on a copy of the text and copied back into the
// stream's bytes at the places segs gives, so escape sequences are never
// touched.

// A seg maps text to the stream: text[t] is the byte at stream offset r,
// text[t+1] the byte at r+1, and so on up to the next seg. A new seg starts
// only where the stream skips bytes (an escape sequence was taken out), or
// where an ESC in the text stands for no byte.
type seg struct {
	t int
	r int64
}

// An escMark is an escape sequence among the last HoldBack bytes of text:
// how many bytes of text came before it, and its length.
type escMark struct {
	at int64
	n  int
}

// maxEscHeld bounds the bytes of escape sequences a Stream may hold among
// the text it holds back. When the escape sequences among the last
// HoldBack bytes of text (since the last decision point) add up to more,
// the text before the one that tips it over is decided as at a Flush.
const maxEscHeld = 2048

// MaxHeld bounds how many bytes a [Stream] holds back after a Write: fewer
// than HoldBack bytes of text, at most 2048 bytes of the escape sequences
// among them, and an escape sequence not yet ended (less than 64 bytes).
const MaxHeld = HoldBack + maxEscHeld + maxCSI

var escText = []byte{0x1b}

// project appends the stream's bytes from s.parsed on to the text. An
// escape sequence that has not ended by the end of s.raw waits for more,
// unless final.
func (s *Stream) project(final bool) {
	raw := s.raw
	i := int(s.parsed - s.rawOff)
	for i < len(raw) {
		if s.osc >= 0 {
			j, wait := s.projectString(raw, i, final)
			if wait {
				s.parsed = s.rawOff + int64(j)
				return
			}
			i = j
			continue
		}
		k := bytes.IndexByte(raw[i:], 0x1b)
		if k < 0 {
			s.appendText(raw[i:], s.rawOff+int64(i))
			break
		}
		if k > 0 {
			s.appendText(raw[i:i+k], s.rawOff+int64(i))
			i += k
		}
		end, kind := escapeAt(raw, i, final)
		switch kind {
		case escMore:
			s.parsed = s.rawOff + int64(i)
			return
		case escPlain:
			s.appendText(raw[i:end], s.rawOff+int64(i))
		case escSeq:
			s.countEscape(end - i)
		case escString:
			s.boundary(s.rawOff + int64(i))
			s.osc = 0
		}
		i = end
	}
	s.parsed = s.rawOff + int64(len(raw))
}

// projectString reads the body of an OSC (or DCS…) string at raw[i:] into
// the text, up to and including its terminator: BEL, ST (ESC \), CAN or
// SUB. Another ESC ends it too, and is then read as the start of a
// sequence; so does the maxOSC'th byte of the body. It returns where
// reading resumes, and whether an ESC at the end of raw waits for the byte
// after it.
func (s *Stream) projectString(raw []byte, i int, final bool) (int, bool) {
	n := len(raw)
	j := i
	for j < n && s.osc+(j-i) < maxOSC {
		if c := raw[j]; c == 0x07 || c == 0x18 || c == 0x1a || c == 0x1b {
			break
		}
		j++
	}
	s.osc += j - i
	s.appendText(raw[i:j], s.rawOff+int64(i))
	if j >= n {
		return j, false
	}
	if s.osc >= maxOSC {
		// A string this long is taken to have ended, so that a stray
		// "ESC ]" cannot hide what follows for long.
		s.boundary(s.rawOff + int64(j))
		s.osc = -1
		return j, false
	}
	switch raw[j] {
	case 0x07, 0x18, 0x1a:
		s.boundary(s.rawOff + int64(j))
		s.osc = -1
		return j + 1, false
	}
	// ESC
	if j+1 >= n && !final {
		return j, true
	}
	s.boundary(s.rawOff + int64(j))
	s.osc = -1
	if j+1 < n && raw[j+1] == '\\' {
		return j + 2, false
	}
	return j, false
}

// appendText appends p, the stream's bytes from offset r on, to the text.
func (s *Stream) appendText(p []byte, r int64) {
	if len(p) == 0 {
		return
	}
	n := len(s.text)
	if k := len(s.segs) - 1; k < 0 || s.segs[k].r+int64(n-s.segs[k].t) != r {
		s.segs = append(s.segs, seg{t: n, r: r})
	}
	s.text = append(s.text, p...)
}

// boundary marks the edge of a string, at stream offset r: an ESC in the
// text, before which everything is decided as if the stream ended.
func (s *Stream) boundary(r int64) {
	s.dps = append(s.dps, len(s.text))
	s.appendText(escText, r)
	s.resetWindow()
}

// countEscape counts an escape sequence of n bytes taken out of the text
// here, and makes this a decision point if it tips the escape sequences
// among the last HoldBack bytes of text over maxEscHeld.
func (s *Stream) countEscape(n int) {
	at := s.textBase + int64(len(s.text))
	for s.winH < len(s.win) && s.win[s.winH].at <= at-HoldBack {
		s.winN -= s.win[s.winH].n
		s.winH++
	}
	if s.winH == len(s.win) {
		s.win, s.winH = s.win[:0], 0
	} else if s.winH >= 64 && s.winH*2 >= len(s.win) {
		k := copy(s.win, s.win[s.winH:])
		s.win, s.winH = s.win[:k], 0
	}
	s.win = append(s.win, escMark{at: at, n: n})
	s.winN += n
	if s.winN > maxEscHeld {
		s.dps = append(s.dps, len(s.text))
		s.resetWindow()
	}
}

func (s *Stream) resetWindow() {
	s.win, s.winH, s.winN = s.win[:0], 0, 0
}

// segAt returns the index of the seg that holds text[j].
func (s *Stream) segAt(j int) int {
	k := min(s.cur, len(s.segs)-1)
	for k > 0 && s.segs[k].t > j {
		k--
	}
	for k+1 < len(s.segs) && s.segs[k+1].t <= j {
		k++
	}
	s.cur = k
	return k
}

// rawAt is the stream offset of text[j].
func (s *Stream) rawAt(j int) int64 {
	g := s.segs[s.segAt(j)]
	return g.r + int64(j-g.t)
}

// apply makes the edit e on out, which holds the stream's bytes from
// offset base on: it masks a copy of the edit's text, and copies it back
// segment by segment.
func (s *Stream) apply(out []byte, base int64, e edit) {
	p := append(s.scratch[:0], s.text[e.lo:e.hi]...)
	s.scratch = p
	e.apply(p)
	for j := e.lo; j < e.hi; {
		k := s.segAt(j)
		end := e.hi
		if k+1 < len(s.segs) && s.segs[k+1].t < end {
			end = s.segs[k+1].t
		}
		r := s.segs[k].r + int64(j-s.segs[k].t)
		copy(out[r-base:], p[j-e.lo:end-e.lo])
		j = end
	}
}

// trim drops the text before ts but for lookBehind bytes of context.
func (s *Stream) trim(ts int) {
	keep := max(ts-lookBehind, 0)
	s.tctx = ts - keep
	if keep == 0 {
		return
	}
	k := s.segAt(keep)
	r := s.segs[k].r + int64(keep-s.segs[k].t)
	n := copy(s.segs, s.segs[k:])
	s.segs = s.segs[:n]
	s.segs[0] = seg{t: 0, r: r}
	for x := 1; x < n; x++ {
		s.segs[x].t -= keep
	}
	s.cur = 0
	n = copy(s.text, s.text[keep:])
	s.text = s.text[:n]
	s.textBase += int64(keep)
}

// Escape sequences, as escapeAt classifies them.
const (
	escMore   = iota // b ends inside the sequence
	escSeq           // a complete CSI or short sequence: skip to end
	escString        // OSC, DCS, SOS, PM or APC: a string follows, until ST or BEL
	escPlain         // ESC that starts no sequence: an ordinary byte
)

const (
	maxCSI = 64   // longer CSI sequences are cut short and the rest read as text
	maxOSC = 4096 // longer strings are ended, so a stray "ESC ]" cannot hide what follows for long
)

// escapeAt classifies the escape sequence at b[i] (an ESC) and returns where
// it ends.
func escapeAt(b []byte, i int, final bool) (end, kind int) {
	n := len(b)
	if i+1 >= n {
		if final {
			return i + 1, escPlain
		}
		return i, escMore
	}
	switch c := b[i+1]; {
	case c == '[':
		j := i + 2
		for j < n && j-i < maxCSI && b[j] >= 0x30 && b[j] <= 0x3f {
			j++
		}
		for j < n && j-i < maxCSI && b[j] >= 0x20 && b[j] <= 0x2f {
			j++
		}
		switch {
		case j-i >= maxCSI:
			return j, escSeq
		case j >= n:
			if final {
				return n, escSeq
			}
			return i, escMore
		case b[j] >= 0x40 && b[j] <= 0x7e:
			return j + 1, escSeq
		}
		return j, escSeq // malformed: it ends before the odd byte
	case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
		return i + 2, escString
	case c >= 0x20 && c <= 0x2f:
		j := i + 1
		for j < n && j-i < 8 && b[j] >= 0x20 && b[j] <= 0x2f {
			j++
		}
		switch {
		case j >= n:
			if final {
				return n, escSeq
			}
			return i, escMore
		case b[j] >= 0x30 && b[j] <= 0x7e:
			return j + 1, escSeq
		}
		return j, escSeq
	case c == 'N' || c == 'O':
		// SS2 and SS3 take the character after them: "ESC O A" is an
		// arrow key in application mode.
		switch {
		case i+2 >= n:
			if final {
				return n, escSeq
			}
			return i, escMore
		case b[i+2] >= 0x20 && b[i+2] <= 0x7e:
			return i + 3, escSeq
		}
		return i + 2, escSeq
	case c >= 0x30 && c <= 0x7e:
		return i + 2, escSeq
	}
	return i + 1, escPlain
}
