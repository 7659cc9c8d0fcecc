package recorder

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bastionhq/bastion/storage"
)

// TestValueFramesNotMerged: appends of stream bytes may be merged into one
// frame while a commit is in flight, but frames that hold one value each
// (a size, an attribute list) never are, however fast they come.
func TestValueFramesNotMerged(t *testing.T) {
	ctx := context.Background()
	j, st := openJournal(t, filepath.Join(t.TempDir(), "j.db"), testKey(t))
	s, err := j.StartSession(ctx, SessionInfo{Attrs: Attrs{"command": "sh"}})
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := EncodeAttrs(Attrs{"detector": "card", "count": "1"})
	m2, _ := EncodeAttrs(Attrs{"detector": "jwt", "count": "2"})
	var want []Frame
	for range 50 {
		want = append(want,
			Frame{Kind: KindOutput, Payload: []byte("out")},
			Frame{Kind: KindMask, Payload: m1}, Frame{Kind: KindMask, Payload: m2},
			Frame{Kind: KindResize, Payload: ResizePayload(80, 24)}, Frame{Kind: KindResize, Payload: ResizePayload(100, 30)},
		)
	}
	record(t, s, want...)
	if err := s.End(ctx, Attrs{}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	ss, err := snap.Sessions(ctx)
	if err != nil || len(ss) != 1 {
		t.Fatalf("%d sessions, %v", len(ss), err)
	}
	var got []Frame
	if err := snap.Frames(ctx, ss[0].Num, func(f *storage.Frame) error {
		if Kind(f.Kind) != KindOutput {
			got = append(got, Frame{Kind: Kind(f.Kind), Payload: bytes.Clone(f.Payload)})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var values []Frame
	for _, f := range want {
		if f.Kind != KindOutput {
			values = append(values, f)
		}
	}
	if len(got) != len(values) {
		t.Fatalf("%d value frames recorded, want %d", len(got), len(values))
	}
	for i := range got {
		if got[i].Kind != values[i].Kind || !bytes.Equal(got[i].Payload, values[i].Payload) {
			t.Fatalf("frame %d: %v %x, want %v %x", i, got[i].Kind, got[i].Payload, values[i].Kind, values[i].Payload)
		}
	}
}

// TestStreamBytesKept: stream chunks of every size, from small ones to
// ones over the coalescing limit, appended by several sessions at once
// (each with output and stderr), are recorded exactly, however they were
// merged into frames and whatever buffers the frames reused after their
// commits; and the journal verifies.
func TestStreamBytesKept(t *testing.T) {
	ctx := context.Background()
	key := testKey(t)
	j, st := openJournal(t, filepath.Join(t.TempDir(), "j.db"), key)
	const sessions = 4
	type stream struct {
		kind    Kind
		channel uint32
	}
	streams := []stream{{KindOutput, 0}, {KindStderr, 1}}
	sent := make([][2][]byte, sessions) // by session, then stream
	ss := make([]*Session, sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		s, err := j.StartSession(ctx, SessionInfo{})
		if err != nil {
			t.Fatal(err)
		}
		ss[i] = s
		for si, sm := range streams {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(i), uint64(sm.channel)))
				fill := rand.NewChaCha8([32]byte{byte(i), byte(sm.channel)})
				var all []byte
				var seq uint64
				for k := range 300 {
					n := rng.IntN(40 << 10)
					if k%7 == 0 {
						n = rng.IntN(64)
					}
					chunk := make([]byte, n)
					fill.Read(chunk)
					all = append(all, chunk...)
					var err error
					if seq, err = s.Append(sm.kind, sm.channel, chunk); err != nil {
						t.Error(err)
						return
					}
				}
				if err := s.Wait(ctx, seq); err != nil {
					t.Error(err)
				}
				sent[i][si] = all
			})
		}
	}
	wg.Wait()
	for _, s := range ss {
		if err := s.End(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if r := verify(t, st, key, VerifyOptions{}); !r.Intact() || r.Sessions != sessions {
		t.Fatalf("verify: %d sessions, %v", r.Sessions, r.Problems)
	}
	for i := range sessions {
		got := readStreams(t, st, ss[i].id)
		for si, sm := range streams {
			if !bytes.Equal(got[sm.channel], sent[i][si]) {
				t.Errorf("session %d channel %d: recorded %d bytes that differ from the %d sent", i, sm.channel, len(got[sm.channel]), len(sent[i][si]))
			}
		}
	}
}

// readStreams reads the stream bytes of one session from st, by channel.
func readStreams(t *testing.T, st storage.Store, id SessionID) map[uint32][]byte {
	t.Helper()
	ctx := context.Background()
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	row, err := snap.SessionByID(ctx, id[:])
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32][]byte{}
	if err := snap.Frames(ctx, row.Num, func(f *storage.Frame) error {
		if Kind(f.Kind).stream() {
			out[f.Channel] = append(out[f.Channel], f.Payload...)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
