package recorder

import (
	"context"
	"fmt"
	"sync"
	"time"

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
	j       *Journal
	id      SessionID
	num     int64
	summary string
	start   time.Time // carries the monotonic clock reading

	mu        sync.Mutex
	chain     *Chainer      // guarded by mu
	nextSeq   uint64        // guarded by mu; last assigned seq
	done      uint64        // guarded by mu; last committed seq
	pendingFr int           // guarded by mu; frames queued, not committed
	pendingB  int           // guarded by mu; payload bytes queued, not committed
	progress  chan struct{} // guarded by mu; closed and replaced on each commit or failure
	err       error         // guarded by mu; sticky
	ended     bool          // guarded by mu
}

// SessionInfo describes a session at its start.
type SessionInfo struct {
	// Attrs are hashed into the session-start leaf: who, what, where
	// ("command", "identity", "target", "login", "client", "term"…).
	Attrs Attrs
	// Summary is a one-line description for listings; it is not hashed.
	Summary string
}

// StartSession commits a session-start leaf and returns the session. It
// returns an error, and no session, if the start cannot be recorded: a
// session that cannot be recorded must not run.
func (j *Journal) StartSession(ctx context.Context, info SessionInfo) (*Session, error) {
	u, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("recorder: session id: %w", err)
	}
	s := &Session{j: j, id: SessionID(u), summary: info.Summary, start: time.Now(), progress: make(chan struct{})}
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
	if _, err := j.submit(ctx, op{kind: opStart, sess: s, leaf: l}); err != nil {
		j.forget(s)
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
// payload longer than MaxPayload becomes several frames and the last one's
// sequence number is returned.
func (s *Session) Append(kind Kind, channel uint32, p []byte) (uint64, error) {
	for len(p) > MaxPayload {
		if _, err := s.append(kind, channel, p[:MaxPayload]); err != nil {
			return 0, err
		}
		p = p[MaxPayload:]
	}
	return s.append(kind, channel, p)
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
	s.nextSeq++
	f := Frame{
		Session: s.id,
		Seq:     s.nextSeq,
		Kind:    kind,
		Channel: channel,
		MonoNS:  int64(time.Since(s.start)),
		WallNS:  s.j.now().UnixNano(),
		Payload: append(make([]byte, 0, len(p)), p...), // never nil: an empty payload is an empty blob
	}
	head := s.chain.Add(&f)
	s.pendingFr++
	s.pendingB += len(p)
	// Enqueued under s.mu, so frames reach the writer in seq order.
	err := s.j.enqueue(op{kind: opFrame, sess: s, frame: storage.Frame{
		Session: s.num, Seq: int64(f.Seq), Kind: uint8(kind), Channel: channel,
		MonoNS: f.MonoNS, WallNS: f.WallNS, Payload: f.Payload, Chain: head[:],
	}})
	if err != nil {
		s.failLocked(err)
		return 0, err
	}
	return f.Seq, nil
}

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
	l := &Leaf{Type: LeafSessionEnd, Session: s.id, Last: s.nextSeq, Head: s.chain.Head(), Attrs: attrs}
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
	}
}
