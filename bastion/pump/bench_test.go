package pump

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/bastionhq/bastion/recorder"
)

// chunky is a source of n bytes in reads of at most 32 KiB, as an SSH
// channel gives a bulk stream.
type chunky struct{ n int }

func (c *chunky) Read(p []byte) (int, error) {
	if c.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, 32<<10)
	clear(p[:k])
	c.n -= k
	return k, nil
}

// BenchmarkCopyBulk is one stream of bulk output through a real journal
// (SQLite, synchronous=FULL) into io.Discard: the pump with the journal,
// without a terminal or a network.
func BenchmarkCopyBulk(b *testing.B) {
	size := 64 << 20
	if os.Getenv("BENCH_PUMP_MIB") != "" {
		size = 256 << 20
	}
	b.SetBytes(int64(size))
	for b.Loop() {
		sess := benchSession(b)
		p := New(context.Background(), sess, Options{})
		s := p.Copy(io.Discard, &chunky{n: size}, recorder.KindOutput, 0, StreamOptions{})
		<-s.Done()
		if err := p.Err(); err != nil {
			b.Fatal(err)
		}
	}
}
