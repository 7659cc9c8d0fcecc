package recorder

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bastionhq/bastion/recorder/events"
	"github.com/bastionhq/bastion/storage"
	"github.com/google/uuid"
)

// Session records one session's frames. Append and Wait may be called from
// several goroutines (an input pump and an output pump); frames get their
// sequence numbers in the order Append is called.
//
// Record, then forward: a caller hands a chunk to Append, and forwards it to
// its destination only after Wait(seq) returns nil. Append returns as soon as
// the frame is queued, so reading, committing and forwarding overlap; the
// pipeline of uncommitted frames is bounded, and Append blocks when it is
// full. Once the journal fails, Append and Wait return the error, and the
// session's owner must stop the session.
type Session struct {
	j     *Journal
	id    SessionID
	num   int64
	start time.Time // from Options.Now; time.Now's carries the monotonic reading

	// chain and counts are owned by the writer goroutine (seal,
	// sealEnd): the chain head, and the bytes of the frames sealed so far.
	chain  *Chainer
	counts byteCounts

	// mu guards the fields below. It is taken before Journal.mu, never
	// while holding it.
	mu        sync.Mutex
	nextSeq   uint64        // guarded by mu; last assigned seq
	lastMono  int64         // guarded by mu; mono_ns of the last frame
	tail      *pendingFrame // guarded by mu; the last frame appended
	done      uint64        // guarded by mu; last committed seq
	pendingFr int           // guarded by mu; frames queued, not committed
	pendingB  int           // guarded by mu; payload bytes queued, not committed
	progress  chan struct{} // guarded by mu; closed and replaced on each commit or failure
	err       error         // guarded by mu; sticky
	failed    chan struct{} // closed when err is set
	ended     bool          // guarded by mu
}

// SessionInfo describes a session at its start.
type SessionInfo struct {
	// Attrs are hashed into the session-start leaf: who, what, where
	// ("command", "identity", "target", "login", "client", "term"…).
	Attrs Attrs
}

// StartSession commits a session-start leaf and returns the session. It
// returns an error, and no session, if the start cannot be recorded: a
// session that cannot be recorded must not run.
func (j *Journal) StartSession(ctx context.Context, info SessionInfo) (*Session, error) {
	u, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("recorder: session id: %w", err)
	}
	s := &Session{j: j, id: SessionID(u), start: j.now(), progress: make(chan struct{}), failed: make(chan struct{})}
	s.chain = NewChainer(ChainSeed(s.id))
	l := &Leaf{Type: LeafSessionStart, Session: s.id, Attrs: info.Attrs}
	if _, err := l.Encode(); err != nil {
		return nil, err
	}
	j.mu.Lock()
	s.num = j.nextSession
	j.nextSession++
	j.sessions[s] = struct{}{}
	j.mu.Unlock()
	// A start the caller gave up on still commits: end it, so that it is
	// not left for the next writer to call abandoned.
	endLate := func() {
		s.End(context.Background(), Attrs{"reason": events.EndStopped, "detail": "the session was canceled while it started"})
	}
	if _, err := j.submitThen(ctx, op{kind: opStart, sess: s, leaf: l}, endLate); err != nil {
		if ctx.Err() == nil {
			j.forget(s)
		}
		return nil, err
	}
	return s, nil
}

func (j *Journal) forget(s *Session) {
	j.mu.Lock()
	delete(j.sessions, s)
	j.mu.Unlock()
}

// ID is the session's identifier.
func (s *Session) ID() uuid.UUID { return uuid.UUID(s.id) }

// Append queues a frame and returns its sequence number. It copies p; a
// stream payload (input, output, stderr) longer than MaxPayload becomes
// several frames and the last one's sequence number is returned. A payload
// that breaks the rules of its kind ([CheckPayload]) is refused: the
// journal never holds a frame that verification rejects.
func (s *Session) Append(kind Kind, channel uint32, p []byte) (uint64, error) {
	if !kind.stream() || len(p) <= MaxPayload {
		if err := CheckPayload(kind, p); err != nil {
			return 0, fmt.Errorf("recorder: %w", err)
		}
	}
	for len(p) > MaxPayload {
		if _, err := s.append(kind, channel, p[:MaxPayload]); err != nil {
			return 0, err
		}
		p = p[MaxPayload:]
	}
	return s.append(kind, channel, p)
}

// pendingFrame is a frame between Append and its commit. Until the writer
// takes it (seal), later chunks of the same kind and channel are added to it:
// a session that produces output faster than commits complete gets fewer,
// larger frames, while sparse interactive output keeps a frame per read.
type pendingFrame struct {
	seq     uint64
	kind    Kind
	channel uint32
	monoNS  int64
	wallNS  int64
	payload []byte
	// pooled, when not nil, is the payloadPool buffer payload lies in;
	// the writer returns it once the frame is committed.
	pooled *[]byte
	taken  bool // set by seal, under the session's mu
}

// coalesceLimit is the largest frame that chunks are merged into.
const coalesceLimit = 32 << 10

// payloadPool holds payload buffers of capacity coalesceLimit for the
// frames of stream chunks of pooledMin bytes or more, and of frames that
// grow: under bulk output a new buffer for every frame was half of what
// the bastion allocated, and much of its garbage collector's work.
var payloadPool = sync.Pool{New: func() any {
	b := make([]byte, 0, coalesceLimit)
	return &b
}}

const pooledMin = 1 << 10

// recycle returns f's pooled buffer, if it has one, to payloadPool. The
// writer calls it once f is committed (or will never be): nothing reads
// the payload of a frame the writer has taken.
func (f *pendingFrame) recycle() {
	if f.pooled == nil {
		return
	}
	*f.pooled = f.payload[:0]
	payloadPool.Put(f.pooled)
	f.pooled, f.payload = nil, nil
}

// stream reports whether frames of kind k are bytes of a stream (input,
// output, stderr), which consecutive appends may be merged into: the
// other kinds hold one value each (a size, an attribute list), which
// merging would corrupt.
func (k Kind) stream() bool {
	return k == KindInput || k == KindOutput || k == KindStderr
}

func (s *Session) append(kind Kind, channel uint32, p []byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.err != nil {
			return 0, s.err
		}
		if s.ended {
			return 0, ErrSessionEnded
		}
		if s.pendingFr == 0 || s.pendingFr < s.j.maxFr && s.pendingB+len(p) <= s.j.maxBytes {
			break
		}
		ch := s.progress
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
	}
	s.pendingB += len(p)
	if t := s.tail; t != nil && !t.taken && t.kind == kind && kind.stream() && t.channel == channel && len(t.payload)+len(p) <= coalesceLimit {
		if cap(t.payload) < len(t.payload)+len(p) {
			// A frame that coalesces once usually fills up: grow it
			// to the limit at once rather than by doubling. (A
			// pooled one is at the limit already.)
			t.pooled = payloadPool.Get().(*[]byte)
			t.payload = append((*t.pooled)[:0], t.payload...)
		}
		t.payload = append(t.payload, p...)
		s.j.queuedBytes.Add(int64(len(p)))
		return t.seq, nil
	}
	s.nextSeq++
	// mono_ns never decreases within a session (playback seeks on it),
	// whatever the clock does.
	now := s.j.now()
	s.lastMono = max(s.lastMono, int64(now.Sub(s.start)))
	f := &pendingFrame{
		seq:     s.nextSeq,
		kind:    kind,
		channel: channel,
		monoNS:  s.lastMono,
		wallNS:  now.UnixNano(),
	}
	if kind.stream() && len(p) >= pooledMin && len(p) <= coalesceLimit {
		f.pooled = payloadPool.Get().(*[]byte)
		f.payload = append((*f.pooled)[:0], p...)
	} else {
		f.payload = append(make([]byte, 0, len(p)), p...) // never nil: an empty payload is an empty blob
	}
	s.pendingFr++
	// Enqueued under s.mu, so frames reach the writer in seq order.
	if err := s.j.enqueue(op{kind: opFrame, sess: s, frame: f}); err != nil {
		s.failLocked(err)
		return 0, err
	}
	s.j.queuedBytes.Add(int64(len(p)))
	s.tail = f
	return f.seq, nil
}

// seal is called by the writer, in queue order, to take a frame: no more
// chunks join it, and it is hashed onto the session's chain.
func (s *Session) seal(f *pendingFrame) storage.Frame {
	s.mu.Lock()
	f.taken = true
	s.mu.Unlock()
	// The chain is the writer's alone: only seal and sealEnd touch it.
	s.counts.add(f.kind, len(f.payload))
	head := s.chain.Add(&Frame{Session: s.id, Seq: f.seq, Kind: f.kind, Channel: f.channel, MonoNS: f.monoNS, WallNS: f.wallNS, Payload: f.payload})
	return storage.Frame{
		Session: s.num, Seq: int64(f.seq), Kind: uint8(f.kind), Channel: f.channel,
		MonoNS: f.monoNS, WallNS: f.wallNS, Payload: f.payload, Chain: head[:],
	}
}

// sealEnd completes an end leaf with the chain's final state and the
// session's byte counts; the writer calls it after sealing every frame
// queued before the end.
func (s *Session) sealEnd(l *Leaf) {
	s.mu.Lock()
	l.Last = s.nextSeq
	s.mu.Unlock()
	l.Head = s.chain.Head()
	s.counts.setOn(l.Attrs)
}

// The session-end attributes the writer sets: the payload bytes of the
// session's input frames, and of its output and stderr frames.
const (
	AttrInBytes  = "in-bytes"
	AttrOutBytes = "out-bytes"
)

// Wait blocks until frame seq and all before it are committed. It returns
// the journal's error if they never will be, or ctx's.
func (s *Session) Wait(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		if s.done >= seq {
			s.mu.Unlock()
			return nil
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		ch := s.progress
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// End commits the session-end leaf after every frame appended so far, with
// attrs saying how it ended ("reason", "exit-status"…), and keeps a
// checkpoint that covers it. Appends after End fail.
func (s *Session) End(ctx context.Context, attrs Attrs) error {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return ErrSessionEnded
	}
	if s.err != nil {
		s.mu.Unlock()
		return s.err
	}
	s.ended = true
	// Last, Head and the byte counts are filled in by the writer
	// (sealEnd); the counts are given their longest values here, so that
	// the leaf is known to encode.
	a := make(Attrs, len(attrs)+2)
	for k, v := range attrs {
		if k == AttrInBytes || k == AttrOutBytes {
			s.ended = false
			s.mu.Unlock()
			return fmt.Errorf("recorder: session end: attribute %q is set by the journal", k)
		}
		a[k] = v
	}
	a[AttrInBytes], a[AttrOutBytes] = "9223372036854775807", "9223372036854775807"
	l := &Leaf{Type: LeafSessionEnd, Session: s.id, Attrs: a}
	if _, err := l.Encode(); err != nil {
		s.ended = false
		s.mu.Unlock()
		return err
	}
	o := op{kind: opEnd, sess: s, leaf: l, done: make(chan error, 1)}
	err := s.j.enqueue(o)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	defer s.j.forget(s)
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the session can record nothing more: the journal
// failed or closed. A session's owner selects on it to stop an idle session
// at once, not only at its next Append or Wait.
func (s *Session) Done() <-chan struct{} { return s.failed }

// Err is why Done was closed, or nil while it is open.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// committed is called by the writer after frames up to last committed.
func (s *Session) committed(last uint64, frames, bytes int) {
	s.mu.Lock()
	s.done = last
	s.pendingFr -= frames
	s.pendingB -= bytes
	close(s.progress)
	s.progress = make(chan struct{})
	s.mu.Unlock()
}

func (s *Session) fail(err error) {
	s.mu.Lock()
	s.failLocked(err)
	s.mu.Unlock()
}

func (s *Session) failLocked(err error) {
	if s.err == nil {
		s.err = err
		close(s.progress)
		s.progress = make(chan struct{})
		close(s.failed)
	}
}
