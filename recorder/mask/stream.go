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
type Stream struct {
	m *Masker

	// buf holds context (ctx bytes already released, kept so that
	// detectors can look behind) followed by the held bytes and the input
	// of the current call.
	buf []byte
	ctx int
	off int64 // stream offset of buf[ctx]

	cont   cont  // a long value being masked as it streams, if any
	osc    int   // bytes of an OSC (or DCS…) string passed through so far; -1 outside one
	escEnd int64 // stream offset just after the last escape sequence passed through, -1 if none

	out   []byte
	edits []edit
	hits  []Hit
}

// NewStream starts masking a stream.
func (m *Masker) NewStream() *Stream {
	return &Stream{m: m, osc: -1, escEnd: -1}
}

// Write masks p and returns the bytes that are now safe to release, and the
// values masked among them. It keeps back fewer than [HoldBack] bytes that
// may begin a value the next Write completes.
//
// The returned slices are valid until the next call on s; Write does not
// retain p.
func (s *Stream) Write(p []byte) (out []byte, hits []Hit) {
	s.buf = append(s.buf, p...)
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
	s.buf, s.ctx, s.off, s.cont, s.osc, s.escEnd = s.buf[:0], 0, 0, cont{}, -1, -1
	return out, hits
}

// Held is how many bytes s holds back.
func (s *Stream) Held() int { return len(s.buf) - s.ctx }

func (s *Stream) run(final bool) ([]byte, []Hit) {
	s.edits = s.edits[:0]
	s.hits = s.hits[:0]
	b := s.buf
	safe := s.scan(b, s.ctx, final)
	out := append(s.out[:0], b[s.ctx:safe]...)
	for _, e := range s.edits {
		e.apply(out[e.lo-s.ctx : e.hi-s.ctx])
	}
	s.out = out
	s.off += int64(safe - s.ctx)
	keep := max(safe-lookBehind, 0)
	n := copy(s.buf, b[keep:])
	s.buf = s.buf[:n]
	s.ctx = safe - keep
	var hits []Hit
	if len(s.hits) > 0 {
		hits = s.hits
	}
	return out, hits
}

// scan decides b[i:], given b[:i] as context, and returns how far it got:
// every byte before the returned index is decided (edits and hits
// recorded), and the byte there starts something undecided. With final
// set, b ends the stream (for now) and everything is decided.
func (s *Stream) scan(b []byte, i int, final bool) int {
	m := s.m
	t := &m.stop
	n := len(b)
	for i < n {
		if s.osc >= 0 {
			j, more := s.oscStep(b, i, final)
			if more {
				return j
			}
			i = j
			continue
		}
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
		// table cannot see: after "\x1b[0m", or a letter try decided.
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
		switch c := b[i]; {
		case c == 0x1b:
			j = s.escape(b, i, final)
		case isDigit(c):
			j = s.digits(b, i, final)
		default:
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
	case t&tEsc != 0:
		return s.escape(b, i, final)
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

// escape passes an escape sequence through untouched.
func (s *Stream) escape(b []byte, i int, final bool) int {
	end, kind := escapeAt(b, i, final)
	switch kind {
	case escMore:
		return more
	case escString:
		s.osc = 0
	case escSeq:
		s.escEnd = s.offset(end)
	}
	return end
}

// offset is the stream offset of b[j].
func (s *Stream) offset(j int) int64 { return s.off + int64(j-s.ctx) }

// prev returns the byte before b[j] as a boundary check sees it: -1 at the
// start of the stream and right after an escape sequence (so that
// "\x1b[31m4111…" starts a number), else the byte.
func (s *Stream) prev(b []byte, j int) int {
	if s.offset(j) == s.escEnd {
		return -1
	}
	return before(b, j, 1)
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
	case c >= 0x30 && c <= 0x7e:
		return i + 2, escSeq
	}
	return i + 1, escPlain
}

// oscStep passes the body of an OSC (or DCS…) string through, up to and
// including its terminator: BEL, ST (ESC \), CAN or SUB. Another ESC ends
// it too, and is then read as the start of a sequence.
func (s *Stream) oscStep(b []byte, i int, final bool) (int, bool) {
	n := len(b)
	for i < n {
		if s.osc >= maxOSC {
			s.osc = -1
			return i, false
		}
		switch b[i] {
		case 0x07, 0x18, 0x1a:
			s.osc = -1
			return i + 1, false
		case 0x1b:
			if i+1 >= n && !final {
				return i, true
			}
			s.osc = -1
			if i+1 < n && b[i+1] == '\\' {
				return i + 2, false
			}
			return i, false
		}
		s.osc++
		i++
	}
	return n, false
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

// hit records a hit for b[lo:hi].
func (s *Stream) hit(det string, lo, hi int) {
	s.hits = append(s.hits, Hit{Detector: det, Offset: s.offset(lo), Length: hi - lo})
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
// is not, a terminator, or a cap. Escape sequences inside pass through.
type cont struct {
	kind    uint8
	det     string
	cls     *[256]bool
	mode    uint8
	start   int64 // stream offset of the value
	n       int   // bytes of the value so far, escape sequences inside it included
	end     int   // n after the value's last masked byte: escape sequences and (in a PEM body) line ends after it do not count
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
	s.cont = cont{kind: kind, det: det, cls: cls, mode: mode,
		start: s.offset(start), n: from - start, end: from - start, max: limit}
}

func (s *Stream) closeCont() {
	if s.cont.end > 0 { // a PEM block may be empty
		s.hits = append(s.hits, Hit{Detector: s.cont.det, Offset: s.cont.start, Length: s.cont.end})
	}
	s.cont = cont{}
}

// contStep masks the open value from b[i] on and returns where it ended,
// or where b ended, or (with more set) an undecided position.
func (s *Stream) contStep(b []byte, i int, final bool) (int, bool) {
	c := &s.cont
	n := len(b)
	seg := i
	for i < n {
		x := b[i]
		if x == 0x1b {
			s.edit(seg, i, c.mode, 0)
			end, kind := escapeAt(b, i, final)
			switch kind {
			case escMore:
				return i, true
			case escSeq:
				c.n += end - i
				s.escEnd = s.offset(end)
				i, seg = end, end
				continue
			}
			s.closeCont()
			return i, false
		}
		if c.quote != 0 {
			switch {
			case c.escaped:
				c.escaped = false
			case x == '\\':
				c.escaped = true
			case x == c.quote:
				s.edit(seg, i, c.mode, 0)
				s.closeCont()
				return i, false
			}
		} else if c.kind == contPEM && x == '-' {
			switch hasPrefixAt(b, i, "-----END ", final) {
			case more:
				s.edit(seg, i, c.mode, 0)
				return i, true
			case 1:
				s.edit(seg, i, c.mode, 0)
				s.closeCont()
				return i, false
			}
		}
		// The cap never cuts a UTF-8 sequence.
		if !c.cls[x] || c.n >= c.max && (x < 0x80 || x >= 0xc0) {
			s.edit(seg, i, c.mode, 0)
			s.closeCont()
			return i, false
		}
		c.n++
		if c.mode != modeBody || !keptInBody(x) {
			c.end = c.n
		}
		i++
	}
	s.edit(seg, n, c.mode, 0)
	return n, false
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
