package pump

import (
	"sync"
	"sync/atomic"
)

const (
	// BufSize is the size of a stream's reads while it is busy: bulk
	// output goes in reads, and frames, of up to 32 KiB.
	BufSize = 32 << 10

	// SmallBufSize is the size of a read from a source that cannot be
	// waited on (an SSH channel) after a read that fitted in it: an
	// interactive or idle stream holds a small buffer while it waits.
	SmallBufSize = 2 << 10

	// MaxInFlight is the most buffers one stream holds at once: chunks
	// read and recorded, waiting for their commit or being delivered,
	// and the one being read into. Reading and committing go on while
	// earlier chunks wait for their commit.
	MaxInFlight = 64

	// Reserved is how many buffers a stream may always hold, whatever
	// the pool's bound: enough to read one chunk while the one before
	// it waits for its commit.
	Reserved = 2

	// DefaultLimit is the bound of the [Shared] pool: the bytes of the
	// buffers that streams hold beyond their reserve, across the
	// process.
	DefaultLimit = 64 << 20
)

// A Pool hands out the buffers that streams read into, and bounds the
// bytes they hold beyond their reserve. Buffers come back once their bytes
// are delivered; those nobody takes again are left to the garbage
// collector, so an idle process holds none. Its methods are safe for
// concurrent use.
type Pool struct {
	limit int64
	used  atomic.Int64 // bytes of buffers held beyond the streams' reserves
	inUse atomic.Int64 // bytes of all buffers held, reserves included

	large sync.Pool // *[BufSize]byte
	small sync.Pool // *[SmallBufSize]byte
}

// NewPool returns a pool whose streams may hold at most limit bytes of
// buffers beyond their reserve, together.
func NewPool(limit int64) *Pool { return &Pool{limit: limit} }

var shared = NewPool(DefaultLimit)

// Shared is the process's pool, bounded by [DefaultLimit]: every pump
// takes its buffers there unless told otherwise.
func Shared() *Pool { return shared }

// InFlight is the bytes of the buffers streams hold beyond their reserve:
// never more than the pool's limit.
func (p *Pool) InFlight() int64 { return p.used.Load() }

// InUse is the bytes of all the buffers streams hold now, their reserves
// included: what reads waiting for data and bytes waiting for their commit
// or their delivery cost.
func (p *Pool) InUse() int64 { return p.inUse.Load() }

// charge counts n bytes against the bound, if there is room for them.
func (p *Pool) charge(n int) bool {
	for {
		u := p.used.Load()
		if u+int64(n) > p.limit {
			return false
		}
		if p.used.CompareAndSwap(u, u+int64(n)) {
			return true
		}
	}
}

func (p *Pool) credit(n int) { p.used.Add(-int64(n)) }

// get returns a buffer of size bytes (BufSize or SmallBufSize). Its
// content is whatever it held last.
func (p *Pool) get(size int) []byte {
	p.inUse.Add(int64(size))
	if size == SmallBufSize {
		if b, ok := p.small.Get().(*[SmallBufSize]byte); ok {
			return b[:]
		}
		return new([SmallBufSize]byte)[:]
	}
	if b, ok := p.large.Get().(*[BufSize]byte); ok {
		return b[:]
	}
	return new([BufSize]byte)[:]
}

// put takes back a buffer that get returned.
func (p *Pool) put(b []byte) {
	p.inUse.Add(-int64(cap(b)))
	switch cap(b) {
	case SmallBufSize:
		p.small.Put((*[SmallBufSize]byte)(b[:SmallBufSize]))
	case BufSize:
		p.large.Put((*[BufSize]byte)(b[:BufSize]))
	}
}
