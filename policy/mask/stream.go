package mask

import (
	"encoding/binary"
	"math/bits"
)

// A Stream masks one stream of output (a PTY, stdout or stderr). It is not
// safe for concurrent use.
//
// Fed the same bytes, a Stream gives the same output and the same hits
// however the bytes are split between calls to Write, as long as Flush is
// not called in between (Flush decides early, as if the stream ended).
//
// The detectors read the stream's text: its bytes with escape sequences
// taken out, and with an ESC standing for each edge of an OSC (or DCS…)
// string, whose body is text too (see text.go).
type Stream struct {
	m *Masker

	// raw holds the bytes not yet released; raw[0] is at stream offset
	// rawOff. The bytes from stream offset parsed on are an escape
	// sequence that has not ended yet.
	raw    []byte
	rawOff int64
	parsed int64

	// text holds context (tctx bytes already decided, kept so that
	// detectors can look behind) followed by the undecided text. segs
	// maps it to stream offsets; dps are the text indexes before which
	// everything is decided as at the end of the stream (see decide).
	text     []byte
	tctx     int
	textBase int64 // how many text bytes came before text[0]
	segs     []seg
	cur      int // a recent index into segs
	dps      []int

	osc  int       // bytes of an OSC (or DCS…) string read so far; -1 outside one
	win  []escMark // escape sequences among the last HoldBack bytes of text
	winH int       // win[:winH] have left the window
	winN int       // their bytes, in win[winH:]

	cont cont // a long value being masked as it streams, if any

	out     []byte
	edits   []edit
	hits    []Hit
	scratch []byte
}

// NewStream starts masking a stream.
func (m *Masker) NewStream() *Stream {
	return &Stream{m: m, osc: -1}
}

// Write masks p and returns the bytes that are now safe to release, and the
// values masked among them. It keeps back bytes that may begin a value the
// next Write completes: fewer than [HoldBack] bytes of text, the escape
// sequences among them and an unfinished escape sequence, fewer than
// [MaxHeld] bytes in all.
//
// The returned slices are valid until the next call on s; Write does not
// retain p.
func (s *Stream) Write(p []byte) (out []byte, hits []Hit) {
	s.raw = append(s.raw, p...)
	return s.run(false)
}

// Flush releases the bytes Write held back, masking the values they
// complete as if the stream ended there. Call it when the stream has been
// idle for a moment (about 10 ms), so that held bytes do not wait for more
// output that is not coming. A long value being masked as it streams (a
// private key, a token) stays open: bytes that continue it are masked by
// the next Write.
func (s *Stream) Flush() (out []byte, hits []Hit) {
	return s.run(true)
}

// Close ends the stream: it releases every held byte, reports the value
// being masked, if any, and resets s to a new stream.
func (s *Stream) Close() (out []byte, hits []Hit) {
	out, hits = s.run(true)
	if s.cont.kind != contNone {
		s.closeCont()
		hits = nil
		if len(s.hits) > 0 {
			hits = s.hits
		}
	}
	s.raw, s.rawOff, s.parsed = s.raw[:0], 0, 0
	s.text, s.tctx, s.textBase, s.segs, s.cur, s.dps = s.text[:0], 0, 0, s.segs[:0], 0, s.dps[:0]
	s.osc, s.cont = -1, cont{}
	s.resetWindow()
	return out, hits
}

// Held is how many bytes s holds back.
func (s *Stream) Held() int { return len(s.raw) }

func (s *Stream) run(final bool) ([]byte, []Hit) {
	s.edits = s.edits[:0]
	s.hits = s.hits[:0]
	s.project(final)
	ts := s.scan(s.tctx, final)

	// Release the raw bytes up to the first undecided byte of text (the
	// escape sequences before it included), or all that is parsed.
	rs := s.parsed
	if ts < len(s.text) {
		rs = s.rawAt(ts)
	}
	base := s.rawOff
	out := append(s.out[:0], s.raw[:rs-base]...)
	for _, e := range s.edits {
		s.apply(out, base, e)
	}
	s.out = out
	n := copy(s.raw, s.raw[rs-base:])
	s.raw = s.raw[:n]
	s.rawOff = rs
	s.trim(ts)
	var hits []Hit
	if len(s.hits) > 0 {
		hits = s.hits
	}
	return out, hits
}

// scan decides s.text[i:], and returns how far it got: every byte before
// the returned index is decided (edits and hits recorded), and the byte
// there starts something undecided. The text before each decision point
// is decided as if the stream ended there. With final set, the text ends
// the stream (for now) and everything is decided.
func (s *Stream) scan(i int, final bool) int {
	for _, q := range s.dps {
		i = s.scanText(s.text[:q], i, true)
	}
	s.dps = s.dps[:0]
	return s.scanText(s.text, i, final)
}

// scanText decides b[i:], given b[:i] as context, and returns how far it
// got: every byte before the returned index is decided, and the byte there
// starts something undecided. With final set, b ends the stream (for now)
// and everything is decided.
func (s *Stream) scanText(b []byte, i int, final bool) int {
	m := s.m
	t := &m.stop
	n := len(b)
	for i < n {
		if s.cont.kind != contNone {
			j, more := s.contStep(b, i, final)
			if more {
				return j
			}
			i = j
			continue
		}
		// Where scanning resumes (after an escape sequence, a value, or a
		// byte try decided), a digit may start a number that the stop
		// table cannot see: after a letter try decided.
		if !isDigit(b[i]) {
			if i == 0 && !m.stopAt(b, 0) {
				i++
			}
			// Skip to the next stop, eight positions per branch: most
			// blocks of text hold none. With e[k] the stop table's entry
			// for b[i+k] (e[-1] for the byte before) and u[k] = e[k] &
			// e[k+1]>>16, lane 0 of u[k-1] & u[k+1]>>32 is the classes
			// that may start at b[i+k], and its other lanes come out 0:
			// four fit in a word, a lane each.
			found := false
			for i > 0 && i+10 <= n {
				w := b[i-1 : i+10 : i+10]
				e0, e1, e2, e3, e4, e5 := t[w[0]], t[w[1]], t[w[2]], t[w[3]], t[w[4]], t[w[5]]
				e6, e7, e8, e9, e10 := t[w[6]], t[w[7]], t[w[8]], t[w[9]], t[w[10]]
				u0, u1, u2, u3, u4 := e0&(e1>>16), e1&(e2>>16), e2&(e3>>16), e3&(e4>>16), e4&(e5>>16)
				u5, u6, u7, u8, u9 := e5&(e6>>16), e6&(e7>>16), e7&(e8>>16), e8&(e9>>16), e9&(e10>>16)
				lo := u0&(u2>>32) | (u1&(u3>>32))<<16 | (u2&(u4>>32))<<32 | (u3&(u5>>32))<<48
				hi := u4&(u6>>32) | (u5&(u7>>32))<<16 | (u6&(u8>>32))<<32 | (u7&(u9>>32))<<48
				if lo != 0 {
					i += bits.TrailingZeros64(lo) / 16
					found = true
					break
				}
				if hi != 0 {
					i += 4 + bits.TrailingZeros64(hi)/16
					found = true
					break
				}
				i += 8
			}
			if !found {
				for i < n && !m.stopAt(b, i) {
					i++
				}
				if i >= n {
					break
				}
			}
		}
		var j int
		if isDigit(b[i]) {
			j = s.digits(b, i, final)
		} else {
			j = s.try(b, i, final)
		}
		if j < 0 {
			return i
		}
		i = j
	}
	return n
}

// stopAt reports whether b[k] may be a stop as far as b tells: near its
// end, try decides the rest when more comes.
func (m *Masker) stopAt(b []byte, k int) bool {
	t := &m.stop
	c := ^uint64(0)
	if k > 0 {
		c = t[b[k-1]]
	}
	c &= t[b[k]] >> 16
	if k+1 < len(b) {
		c &= t[b[k+1]] >> 32
	}
	if k+2 < len(b) {
		c &= t[b[k+2]] >> 48
	}
	return c&(1<<16-1) != 0
}

// digits decides the run of digits at b[i]: it skips the runs that
// cannot start a number (most of them, in terminal output: sizes, times,
// dates, addresses) and leaves the rest to try. It returns where scanning
// resumes, or more.
func (s *Stream) digits(b []byte, i int, final bool) int {
	m := s.m
	n := len(b)
	if t := m.trig[b[i]]; t&tDigit != 0 && t&tCustom != 0 {
		// A custom rule that begins with a digit is tried first: the
		// number detectors skip whole runs of digits they reject.
		if r := s.customAt(b, i, final); r != no {
			return r
		}
	}
	p := s.prev(b, i)
	// The run, up to 20 digits: eight at once.
	j := i + 1
	if i+8 <= n {
		x := binary.LittleEndian.Uint64(b[i:])
		a := x ^ 0x3030303030303030 // digits become 0–9
		if nd := ((a & 0x7f7f7f7f7f7f7f7f) + 0x7676767676767676 | a) & 0x8080808080808080; nd != 0 {
			j = i + bits.TrailingZeros64(nd)/8
		} else {
			j = i + 8
		}
	}
	for j < n && j-i < 20 && isDigit(b[j]) {
		j++
	}
	if m.trig[b[i]]&tDigit == 0 {
		// No number detector: a custom rule may start at a digit.
		switch {
		case p >= 0 && isDigit(byte(p)):
			for j < n && isDigit(b[j]) {
				j++
			}
			return j
		case m.trig[b[i]] == 0:
			return i + 1
		}
		if g := j - i; j < n && g != 3 && g != 4 && g != 9 && (g < 13 || g > 19) && (p < 0 || !isUpper(byte(p))) {
			return j
		}
		return s.try(b, i, final)
	}
	if p >= 0 && alnum[p] {
		if m.on[dIBAN] && isUpper(byte(p)) {
			return s.try(b, i, final)
		}
		// Digits after a letter or digit (a hex string, "v2"): none of
		// the run can start a number.
		for j < n && isDigit(b[j]) {
			j++
		}
		return j
	}
	if j >= n {
		return s.try(b, i, final)
	}
	// The cheap rejections of number, which would skip the run.
	c, d := b[j], b[i]
	switch g := j - i; {
	case g >= 13 && g <= 19:
		if !m.on[dCard] || d < '2' || d > '6' {
			return j
		}
	case g == 4:
		// A separator and a group of at least 3 digits must follow
		// (unlike in a date, 2026-11-27).
		if !m.on[dCard] || d < '2' || d > '6' || c != ' ' && c != '-' ||
			j+3 < n && (!isDigit(b[j+1]) || !isDigit(b[j+2]) || !isDigit(b[j+3])) {
			return j
		}
	case g == 3:
		if !m.on[dSSN] || c != '-' && (c != ' ' || !ssnLabel(b, i)) {
			return j
		}
	case g == 9:
		if !m.on[dSSN] || !ssnLabel(b, i) {
			return j
		}
	default:
		return j
	}
	return s.try(b, i, final)
}

// Detector results: a detector returns the index where scanning resumes
// after a match (at or past its start), no when there is none, or more
// when the bytes after the end of b decide.
const (
	no   = -2
	more = -1
)

// try runs the detectors that byte b[i] may start, in order, and returns
// where scanning resumes: past a match, i+1, or more.
func (s *Stream) try(b []byte, i int, final bool) int {
	m := s.m
	t := m.trig[b[i]]
	r := no
	switch {
	case t&tDigit != 0:
		r = s.number(b, i, final)
	case t&tAWSKeyID != 0:
		r = s.awsKeyID(b, i, final)
	case t&tAWSSecret != 0:
		r = s.awsSecret(b, i, final)
	case t&tGit != 0:
		r = s.gitToken(b, i, final)
	case t&tSlack != 0:
		r = s.slackToken(b, i, final)
	case t&tJWT != 0:
		r = s.jwt(b, i, final)
	case t&tPEM != 0:
		r = s.pem(b, i, final)
	case t&tPassword != 0:
		r = s.password(b, i, final)
	case t&tURL != 0:
		r = s.urlPassword(b, i, final)
	}
	if r == no && t&tCustom != 0 {
		r = s.customAt(b, i, final)
	}
	if r == no {
		return i + 1
	}
	return r
}

// prev returns the byte before b[j] as a boundary check sees it: -1 at the
// start of the stream, else the byte. Escape sequences are not in the
// text, so they are no boundaries: "\x1b[1m4111…" starts a number where
// the sequence comes after a space, not after a letter.
func (s *Stream) prev(b []byte, j int) int {
	return before(b, j, 1)
}

// An edit replaces b[lo:hi] in the output.
type edit struct {
	lo, hi int
	mode   uint8
	keep   int
}

// Replacement modes.
const (
	modeStars uint8 = iota // every byte becomes '*'
	modeBody               // every byte but '.', spaces and line ends becomes '*' (JWTs, PEM bodies)
	modeShape              // letters, digits and non-ASCII bytes become '*', but the last keep letters or digits
)

func keptInBody(c byte) bool {
	return c == '.' || c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

func (s *Stream) edit(lo, hi int, mode uint8, keep int) {
	if lo < hi {
		s.edits = append(s.edits, edit{lo: lo, hi: hi, mode: mode, keep: keep})
	}
}

// hit records a hit for the text b[lo:hi]: it spans the stream from the
// first byte of the value to its last, escape sequences inside included.
func (s *Stream) hit(det string, lo, hi int) {
	r := s.rawAt(lo)
	s.hits = append(s.hits, Hit{Detector: det, Offset: r, Length: int(s.rawAt(hi-1) + 1 - r)})
}

func (e edit) apply(p []byte) {
	switch e.mode {
	case modeStars:
		for i := range p {
			p[i] = '*'
		}
	case modeBody:
		for i, c := range p {
			if !keptInBody(c) {
				p[i] = '*'
			}
		}
	case modeShape:
		keep := e.keep
		for i := len(p) - 1; i >= 0; i-- {
			c := p[i]
			if isAlnum(c) && keep > 0 {
				keep--
				continue
			}
			if isAlnum(c) || c >= 0x80 {
				p[i] = '*'
			}
		}
	}
}

// A cont is a value that is masked as it streams: from the byte where its
// detector decided, every following byte of its class is masked until one
// is not, a terminator, or a cap. Escape sequences inside it are not text,
// so they pass through and do not count; the edge of an OSC string ends it.
type cont struct {
	kind    uint8
	det     string
	cls     *[256]bool
	mode    uint8
	start   int64 // stream offset of the value; -1 until its first byte is read
	end     int64 // stream offset after the value's last masked byte (in a PEM body, line ends after it do not count); -1 for none
	n       int   // bytes of text of the value so far
	max     int   // the cap on n
	quote   byte  // for a quoted value, the closing quote
	escaped bool  // a quoted value's last byte was a backslash
}

const (
	contNone uint8 = iota
	contRun
	contPEM
)

// open starts masking a long value that began at b[start] (with the hit
// reported from there) and is masked from b[from] on.
func (s *Stream) open(kind uint8, det string, start, from int, cls *[256]bool, mode uint8, limit int) {
	s.cont = cont{kind: kind, det: det, cls: cls, mode: mode, start: -1, end: -1, n: from - start, max: limit}
	if from > start {
		s.cont.start, s.cont.end = s.rawAt(start), s.rawAt(from-1)+1
	}
}

func (s *Stream) closeCont() {
	if c := &s.cont; c.end > c.start && c.start >= 0 { // a PEM block may be empty
		s.hits = append(s.hits, Hit{Detector: c.det, Offset: c.start, Length: int(c.end - c.start)})
	}
	s.cont = cont{}
}

// contStep masks the open value from b[i] on and returns where it ended,
// or where b ended, or (with more set) an undecided position.
func (s *Stream) contStep(b []byte, i int, final bool) (int, bool) {
	c := &s.cont
	n := len(b)
	seg := i
	last := -1 // the index of the last byte read that counts for the hit
	if c.start < 0 && i < n {
		c.start = s.rawAt(i)
	}
	ended := false
	for ; i < n; i++ {
		x := b[i]
		if c.quote != 0 {
			switch {
			case c.escaped:
				c.escaped = false
			case x == '\\':
				c.escaped = true
			case x == c.quote:
				ended = true
			}
		} else if c.kind == contPEM && x == '-' {
			switch hasPrefixAt(b, i, "-----END ", final) {
			case more:
				s.contEnd(seg, i, last)
				return i, true
			case 1:
				ended = true
			}
		}
		// The cap never cuts a UTF-8 sequence.
		if ended || !c.cls[x] || c.n >= c.max && (x < 0x80 || x >= 0xc0) {
			s.contEnd(seg, i, last)
			s.closeCont()
			return i, false
		}
		c.n++
		if c.mode != modeBody || !keptInBody(x) {
			last = i
		}
	}
	s.contEnd(seg, n, last)
	return n, false
}

// contEnd masks b[seg:i] of the open value, whose last byte that counts
// for the hit is b[last] (none if last is negative).
func (s *Stream) contEnd(seg, i, last int) {
	s.edit(seg, i, s.cont.mode, 0)
	if last >= 0 {
		s.cont.end = s.rawAt(last) + 1
	}
}

// hasPrefixAt reports whether b[i:] starts with lit: 1 if it does, no if
// it does not, more if b ends before it can tell.
func hasPrefixAt(b []byte, i int, lit string, final bool) int {
	n := len(b)
	for k := range len(lit) {
		if i+k >= n {
			if final {
				return no
			}
			return more
		}
		if b[i+k] != lit[k] {
			return no
		}
	}
	return 1
}

// hasFoldPrefixAt is hasPrefixAt ignoring ASCII case; lit is lower case.
func hasFoldPrefixAt(b []byte, i int, lit string, final bool) int {
	n := len(b)
	for k := range len(lit) {
		if i+k >= n {
			if final {
				return no
			}
			return more
		}
		if lower(b[i+k]) != lit[k] {
			return no
		}
	}
	return 1
}

// before returns b[i-k], or -1 before the start of the stream.
func before(b []byte, i, k int) int {
	if i-k < 0 {
		return -1
	}
	return int(b[i-k])
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return alnum[c] }

// isWord reports whether c (a byte, or -1 for the start of the stream)
// is a letter, digit or underscore.
func isWord(c int) bool { return c >= 0 && (alnum[c] || c == '_') }

func class(s string) *[256]bool {
	var t [256]bool
	for i := 0; i < len(s); i++ {
		if i+2 < len(s) && s[i+1] == '-' {
			for c := int(s[i]); c <= int(s[i+2]); c++ {
				t[c] = true
			}
			i += 2
			continue
		}
		t[s[i]] = true
	}
	return &t
}

var (
	alnum     = class("A-Za-z0-9")
	b64       = class("A-Za-z0-9+/")
	b64url    = class("A-Za-z0-9_-")
	jwtClass  = class("A-Za-z0-9_.=-")
	tokWord   = class("A-Za-z0-9_")
	glClass   = class("A-Za-z0-9_.-")
	slackCls  = class("A-Za-z0-9-")
	pemClass  = class("A-Za-z0-9+/=:,. \t\r\n\\-")
	valueCls  = valueClass(`"'&;` + "`")
	quotedCls = func() *[256]bool { t := valueClass(""); t[' '], t['\t'] = true, true; return t }()
)

// valueClass is every printable ASCII byte but space and those in except,
// and every non-ASCII byte.
func valueClass(except string) *[256]bool {
	var t [256]bool
	for c := 0x21; c < 0x7f; c++ {
		t[c] = true
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	for i := range len(except) {
		t[except[i]] = false
	}
	return &t
}
