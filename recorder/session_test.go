package recorder

import (
	"bytes"
	"context"
	"path/filepath"
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
