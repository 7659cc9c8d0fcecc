package recorder

import (
	"encoding/binary"
	"fmt"
)

// LeafType is the type of a [Leaf] of the global log. The byte values are
// part of the journal format.
type LeafType uint8

const (
	// LeafSessionStart opens a session: its ID and who/what/where.
	LeafSessionStart LeafType = 1
	// LeafSegment commits a session's frames First..Last and the chain
	// head after Last.
	LeafSegment LeafType = 2
	// LeafSessionEnd closes a session: its last frame, final chain head
	// and how it ended.
	LeafSessionEnd LeafType = 3
	// LeafEvent is an audit event (certificate issued, grant decided,
	// authentication failed, policy reloaded…), named by Event.
	LeafEvent LeafType = 4
)

func (t LeafType) String() string {
	switch t {
	case LeafSessionStart:
		return "session-start"
	case LeafSegment:
		return "segment"
	case LeafSessionEnd:
		return "session-end"
	case LeafEvent:
		return "event"
	}
	return fmt.Sprintf("leaf-type(%d)", uint8(t))
}

// Leaf is one entry of the journal's global append-only log.
//
// Encoding (integers big-endian):
//
//	"bastion-journal-v1 leaf\x00" ‖ type u8 ‖ wall_ns i64 ‖ body
//	session-start: session_id[16] ‖ attrs
//	segment:       session_id[16] ‖ first u64 ‖ last u64 ‖ head[32]
//	session-end:   session_id[16] ‖ last u64 ‖ head[32] ‖ attrs
//	event:         name_len u16 ‖ name ‖ attrs
//
// Its hash in the tree is the RFC 6962 leaf hash SHA-256(0x00 ‖ encoding).
type Leaf struct {
	Type    LeafType
	WallNS  int64
	Session SessionID // start, segment, end
	First   uint64    // segment
	Last    uint64    // segment, end (0 for a session without frames)
	Head    Hash      // segment, end
	Event   string    // event
	Attrs   Attrs     // start, end, event
}

// maxEventName is the longest event name: the attribute key limit.
const maxEventName = maxAttrKey

// Encode returns the leaf's canonical encoding.
func (l *Leaf) Encode() ([]byte, error) {
	b := make([]byte, 0, 128)
	b = append(b, leafMagic...)
	b = append(b, byte(l.Type))
	b = binary.BigEndian.AppendUint64(b, uint64(l.WallNS))
	var err error
	switch l.Type {
	case LeafSessionStart:
		b = append(b, l.Session[:]...)
		b, err = AppendAttrs(b, l.Attrs)
	case LeafSegment:
		if l.First == 0 || l.Last < l.First {
			return nil, fmt.Errorf("recorder: segment %d..%d is empty or inverted", l.First, l.Last)
		}
		b = append(b, l.Session[:]...)
		b = binary.BigEndian.AppendUint64(b, l.First)
		b = binary.BigEndian.AppendUint64(b, l.Last)
		b = append(b, l.Head[:]...)
	case LeafSessionEnd:
		b = append(b, l.Session[:]...)
		b = binary.BigEndian.AppendUint64(b, l.Last)
		b = append(b, l.Head[:]...)
		b, err = AppendAttrs(b, l.Attrs)
	case LeafEvent:
		if l.Event == "" || len(l.Event) > maxEventName || !validKey(l.Event) {
			return nil, fmt.Errorf("recorder: invalid event name %q", l.Event)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(l.Event)))
		b = append(b, l.Event...)
		b, err = AppendAttrs(b, l.Attrs)
	default:
		return nil, fmt.Errorf("recorder: unknown leaf type %d", l.Type)
	}
	return b, err
}

// ParseLeaf decodes a leaf encoding, rejecting anything non-canonical:
// a wrong magic, an unknown type, truncation or trailing bytes.
func ParseLeaf(b []byte) (*Leaf, error) {
	if len(b) < len(leafMagic)+9 || string(b[:len(leafMagic)]) != leafMagic {
		return nil, fmt.Errorf("%w: not a bastion-journal-v1 leaf", ErrMalformed)
	}
	b = b[len(leafMagic):]
	l := &Leaf{Type: LeafType(b[0]), WallNS: int64(binary.BigEndian.Uint64(b[1:]))}
	b = b[9:]
	need := func(n int, what string) error {
		if len(b) < n {
			return fmt.Errorf("%w: %s leaf: %s truncated", ErrMalformed, l.Type, what)
		}
		return nil
	}
	var err error
	switch l.Type {
	case LeafSessionStart, LeafSegment, LeafSessionEnd:
		if err := need(SessionIDSize, "session id"); err != nil {
			return nil, err
		}
		copy(l.Session[:], b)
		b = b[SessionIDSize:]
	case LeafEvent:
	default:
		return nil, fmt.Errorf("%w: unknown leaf type %d", ErrMalformed, l.Type)
	}
	switch l.Type {
	case LeafSessionStart:
		l.Attrs, b, err = ParseAttrs(b)
	case LeafSegment:
		if err := need(16+HashSize, "segment"); err != nil {
			return nil, err
		}
		l.First = binary.BigEndian.Uint64(b)
		l.Last = binary.BigEndian.Uint64(b[8:])
		copy(l.Head[:], b[16:])
		b = b[16+HashSize:]
		if l.First == 0 || l.Last < l.First {
			return nil, fmt.Errorf("%w: segment %d..%d is empty or inverted", ErrMalformed, l.First, l.Last)
		}
	case LeafSessionEnd:
		if err := need(8+HashSize, "end"); err != nil {
			return nil, err
		}
		l.Last = binary.BigEndian.Uint64(b)
		copy(l.Head[:], b[8:])
		b = b[8+HashSize:]
		l.Attrs, b, err = ParseAttrs(b)
	case LeafEvent:
		if err := need(2, "event name"); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if err := need(n, "event name"); err != nil {
			return nil, err
		}
		l.Event = string(b[:n])
		b = b[n:]
		if n == 0 || n > maxEventName || !validKey(l.Event) {
			return nil, fmt.Errorf("%w: invalid event name %q", ErrMalformed, l.Event)
		}
		l.Attrs, b, err = ParseAttrs(b)
	}
	if err != nil {
		return nil, fmt.Errorf("%s leaf: %w", l.Type, err)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %s leaf has %d trailing bytes", ErrMalformed, l.Type, len(b))
	}
	return l, nil
}
