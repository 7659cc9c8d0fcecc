package recorder

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"unicode/utf8"
)

// Kind is the type of a [Frame]. The byte values are part of the journal
// format (docs/journal-format.md) and never change meaning.
type Kind uint8

const (
	KindInput     Kind = 1  // bytes sent to the target (keystrokes, stdin)
	KindOutput    Kind = 2  // bytes from the target (stdout, the PTY)
	KindStderr    Kind = 3  // bytes from the target's stderr (extended data)
	KindResize    Kind = 4  // terminal size: cols u32 ‖ rows u32
	KindExec      Kind = 5  // the exec command, as the client sent it
	KindExit      Kind = 6  // exit status or exit signal: attribute list
	KindSignal    Kind = 7  // a signal delivered to the target: its name
	KindSubsystem Kind = 8  // subsystem or file-transfer metadata: attribute list
	KindMask      Kind = 9  // a masking event (detector, count, offset): attribute list
	KindMarker    Kind = 10 // an annotation by bastion itself: UTF-8 text
	KindPTY       Kind = 11 // a PTY request (term, size, modes): attribute list
	KindEnv       Kind = 12 // environment variables passed: attribute list
)

var kindNames = map[Kind]string{
	KindInput: "input", KindOutput: "output", KindStderr: "stderr", KindResize: "resize",
	KindExec: "exec", KindExit: "exit", KindSignal: "signal", KindSubsystem: "subsystem",
	KindMask: "mask", KindMarker: "marker", KindPTY: "pty", KindEnv: "env",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Sizes fixed by the format.
const (
	SessionIDSize = 16
	HashSize      = sha256.Size
	// MaxPayload bounds one frame's payload; longer chunks are split.
	MaxPayload = 1 << 20
	// frameHeaderSize is session id ‖ seq ‖ kind ‖ channel ‖ mono ‖ wall ‖ len.
	frameHeaderSize = SessionIDSize + 8 + 1 + 4 + 8 + 8 + 4
)

// Domain-separation tags: each hashed encoding starts with its own tag, so no
// byte string can be read as two different kinds of record.
const (
	tagChainSeed = "bastion-journal-v1 chain-seed\x00"
	tagFrame     = "bastion-journal-v1 frame\x00"
	leafMagic    = "bastion-journal-v1 leaf\x00"
)

// Hash is a SHA-256 value.
type Hash [HashSize]byte

// SessionID identifies a session (a UUIDv7 in practice; any 16 bytes are valid).
type SessionID [SessionIDSize]byte

// Frame is one record of a session: a chunk of a stream or an event.
type Frame struct {
	Session SessionID
	Seq     uint64 // 1 for the first frame of a session
	Kind    Kind
	Channel uint32 // the stream within the session: SSH channel, or 0
	MonoNS  int64  // monotonic nanoseconds since the session started
	WallNS  int64  // Unix time in nanoseconds
	Payload []byte
}

// ErrMalformed is wrapped by every decoder error for bytes that do not follow
// the journal format.
var ErrMalformed = errors.New("malformed journal record")

// AppendFrame appends the frame encoding of f to b:
//
//	session_id[16] ‖ seq u64 ‖ kind u8 ‖ channel u32 ‖ mono_ns i64 ‖ wall_ns i64 ‖ len u32 ‖ payload
//
// Integers are big-endian; this is exactly what the chain hashes.
func AppendFrame(b []byte, f *Frame) []byte {
	b = append(b, f.Session[:]...)
	b = binary.BigEndian.AppendUint64(b, f.Seq)
	b = append(b, byte(f.Kind))
	b = binary.BigEndian.AppendUint32(b, f.Channel)
	b = binary.BigEndian.AppendUint64(b, uint64(f.MonoNS))
	b = binary.BigEndian.AppendUint64(b, uint64(f.WallNS))
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.Payload)))
	return append(b, f.Payload...)
}

// ParseFrame decodes one frame encoding from the start of b and returns the
// rest. The payload aliases b.
func ParseFrame(b []byte) (Frame, []byte, error) {
	var f Frame
	if len(b) < frameHeaderSize {
		return f, nil, fmt.Errorf("%w: frame header: %d bytes, want %d", ErrMalformed, len(b), frameHeaderSize)
	}
	copy(f.Session[:], b)
	b = b[SessionIDSize:]
	f.Seq = binary.BigEndian.Uint64(b)
	f.Kind = Kind(b[8])
	f.Channel = binary.BigEndian.Uint32(b[9:])
	f.MonoNS = int64(binary.BigEndian.Uint64(b[13:]))
	f.WallNS = int64(binary.BigEndian.Uint64(b[21:]))
	n := binary.BigEndian.Uint32(b[29:])
	b = b[33:]
	if n > MaxPayload {
		return f, nil, fmt.Errorf("%w: frame payload of %d bytes exceeds %d", ErrMalformed, n, MaxPayload)
	}
	if uint32(len(b)) < n {
		return f, nil, fmt.Errorf("%w: frame payload truncated: %d of %d bytes", ErrMalformed, len(b), n)
	}
	f.Payload = b[:n:n]
	return f, b[n:], nil
}

// ChainSeed is c_0 of a session: SHA-256(tag ‖ session_id).
func ChainSeed(id SessionID) Hash {
	h := sha256.New()
	h.Write([]byte(tagChainSeed))
	h.Write(id[:])
	var out Hash
	h.Sum(out[:0])
	return out
}

// Chainer computes a session's chain: c_i = SHA-256(tag ‖ c_{i-1} ‖ frame_i).
// It is not safe for concurrent use.
type Chainer struct {
	h    hash.Hash
	head Hash
	buf  []byte
}

// NewChainer starts a chain at prev (ChainSeed for a new session).
func NewChainer(prev Hash) *Chainer {
	return &Chainer{h: sha256.New(), head: prev, buf: make([]byte, 0, frameHeaderSize)}
}

// Head is the chain value after the last frame added.
func (c *Chainer) Head() Hash { return c.head }

// Add hashes f onto the chain and returns the new head.
func (c *Chainer) Add(f *Frame) Hash {
	c.h.Reset()
	c.h.Write([]byte(tagFrame))
	c.h.Write(c.head[:])
	// The header is built separately so the payload is hashed in place.
	hdr := AppendFrame(c.buf[:0], &Frame{Session: f.Session, Seq: f.Seq, Kind: f.Kind, Channel: f.Channel, MonoNS: f.MonoNS, WallNS: f.WallNS})
	binary.BigEndian.PutUint32(hdr[len(hdr)-4:], uint32(len(f.Payload)))
	c.h.Write(hdr)
	c.h.Write(f.Payload)
	c.h.Sum(c.head[:0])
	c.buf = hdr
	return c.head
}

// ResizePayload encodes a terminal size for a [KindResize] frame.
func ResizePayload(cols, rows uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, cols)
	return binary.BigEndian.AppendUint32(b, rows)
}

// ParseResize decodes a [KindResize] payload.
// CheckPayload applies the rules of section 4.2 to a frame of kind k: the
// kind is one of the table's; a resize is exactly 8 bytes; an exit, a
// subsystem, a mask, a PTY or an env frame holds one attribute list and
// nothing after it (section 5); a marker is UTF-8 text. Other payloads are
// bytes as they came. Verification applies it to every frame, and Append
// refuses a frame that would not pass.
func CheckPayload(k Kind, p []byte) error {
	switch k {
	case KindInput, KindOutput, KindStderr, KindExec, KindSignal:
		return nil
	case KindResize:
		_, _, err := ParseResize(p)
		return err
	case KindExit, KindSubsystem, KindMask, KindPTY, KindEnv:
		if _, err := ParseAttrsPayload(p); err != nil {
			return fmt.Errorf("%s payload: %w", k, err)
		}
		return nil
	case KindMarker:
		if !utf8.Valid(p) {
			return fmt.Errorf("%w: marker payload is not UTF-8 text", ErrMalformed)
		}
		return nil
	}
	return fmt.Errorf("%w: frame kind %d is not one of the format's (1 to 12)", ErrMalformed, uint8(k))
}

func ParseResize(p []byte) (cols, rows uint32, err error) {
	if len(p) != 8 {
		return 0, 0, fmt.Errorf("%w: resize payload is %d bytes, want 8", ErrMalformed, len(p))
	}
	return binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:]), nil
}

// frameRules applies, to a session's frames in seq order, the rules every
// frame follows (docs/journal-format.md, 4.1 and 4.2): a payload of at most
// MaxPayload bytes that passes [CheckPayload], and a mono_ns neither
// negative nor before the previous frame's. It counts the bytes the
// session's end leaf states. Verification, session reads and bundles all
// apply it.
type frameRules struct {
	lastMono int64
	counts   byteCounts
}

// next checks the next frame and counts it. The state moves on whatever
// it finds, so that a read that goes on after a problem (Force) checks the
// frames after it against their own predecessors.
func (r *frameRules) next(k Kind, mono int64, payload []byte) error {
	last := r.lastMono
	r.lastMono = mono
	r.counts.add(k, len(payload))
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrMalformed, len(payload), MaxPayload)
	}
	if err := CheckPayload(k, payload); err != nil {
		return err
	}
	switch {
	case mono < 0:
		return fmt.Errorf("%w: mono_ns %d is negative", ErrMalformed, mono)
	case mono < last:
		return fmt.Errorf("%w: mono_ns %d is before the previous frame's %d: a session's time never goes back", ErrMalformed, mono, last)
	}
	return nil
}

// byteCounts are what a session-end leaf states of its session: the
// payload bytes of its input frames, and of its output and stderr frames.
type byteCounts struct{ in, out int64 }

func (c *byteCounts) add(k Kind, n int) {
	switch k {
	case KindInput:
		c.in += int64(n)
	case KindOutput, KindStderr:
		c.out += int64(n)
	}
}

// setOn writes the counts into an end leaf's attributes.
func (c byteCounts) setOn(a Attrs) {
	a[AttrInBytes] = strconv.FormatInt(c.in, 10)
	a[AttrOutBytes] = strconv.FormatInt(c.out, 10)
}

// check compares an end leaf's counts, when it states them, with c, and
// says how they differ ("" when they do not).
func (c byteCounts) check(end Attrs) string {
	for _, v := range []struct {
		attr string
		n    int64
	}{{AttrInBytes, c.in}, {AttrOutBytes, c.out}} {
		if got, ok := end[v.attr]; ok && got != strconv.FormatInt(v.n, 10) {
			return fmt.Sprintf("its %s is %q, but the session's frames hold %d", v.attr, got, v.n)
		}
	}
	return ""
}
