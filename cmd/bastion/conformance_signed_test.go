package main

// The conformance corpus's signed cases: journals whose records the key
// signed but which break a rule of the format, built from the encoders.
// bastion's writer refuses to write them; a verifier must reject them.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/storage"
)

// conformanceSession describes a session the signed builder writes
// directly, rules or not.
type conformanceSession struct {
	frames []recorder.Frame // Session and Seq are set by the builder
	segs   []uint64         // the last seq of each segment
	end    recorder.Attrs   // nil: live
	// endHead, when set, replaces the end leaf's head.
	endHead *recorder.Hash
}

// signedJournal writes a journal of sessions with the corpus key, one
// commit through the storage layer, with the leaves, stored hashes and a
// head and published checkpoint as the writer makes them: what the
// writer would sign if it did not refuse to.
func (b *conformanceBuild) signedJournal(name string, sessions []conformanceSession) string {
	t := b.t
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "journal.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	wall := time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC).UnixNano()
	if err := st.Init(ctx, map[string]string{recorder.MetaFormat: recorder.FormatVersion, recorder.MetaOrigin: b.key.Signer.Name(),
		recorder.MetaKey: b.key.VerifierKey, recorder.MetaCreated: fmt.Sprint(wall), recorder.MetaHostname: "builder.example"}); err != nil {
		t.Fatal(err)
	}
	batch := &storage.Batch{}
	var tree memTree
	leaf := func(l *recorder.Leaf, num int64) {
		l.WallNS = wall
		wall += int64(time.Millisecond)
		data, err := l.Encode()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		idx := int64(len(batch.Leaves))
		tree.add(t, data)
		batch.Leaves = append(batch.Leaves, storage.Leaf{Index: idx, Type: uint8(l.Type), Session: num, Event: l.Event, Data: data})
	}
	for i, s := range sessions {
		num := int64(i + 1)
		id := recorder.SessionID(uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprint(name, i))))
		batch.NewSessions = append(batch.NewSessions, storage.Session{Num: num, ID: id[:], StartLeaf: int64(len(batch.Leaves))})
		leaf(&recorder.Leaf{Type: recorder.LeafSessionStart, Session: id, Attrs: recorder.Attrs{"kind": "record", "command": name}}, num)
		chain := recorder.NewChainer(recorder.ChainSeed(id))
		var first uint64 = 1
		var in, out int64
		k := 0
		for j := range s.frames {
			f := s.frames[j]
			f.Session, f.Seq, f.WallNS = id, uint64(j+1), wall+f.MonoNS
			h := chain.Add(&f)
			batch.Frames = append(batch.Frames, storage.Frame{Session: num, Seq: int64(f.Seq), Kind: uint8(f.Kind), Channel: f.Channel,
				MonoNS: f.MonoNS, WallNS: f.WallNS, Payload: f.Payload, Chain: bytes.Clone(h[:])})
			switch f.Kind {
			case recorder.KindInput:
				in += int64(len(f.Payload))
			case recorder.KindOutput, recorder.KindStderr:
				out += int64(len(f.Payload))
			}
			if k < len(s.segs) && f.Seq == s.segs[k] {
				leaf(&recorder.Leaf{Type: recorder.LeafSegment, Session: id, First: first, Last: f.Seq, Head: h}, num)
				first, k = f.Seq+1, k+1
			}
		}
		if s.end != nil {
			a := recorder.Attrs{recorder.AttrInBytes: fmt.Sprint(in), recorder.AttrOutBytes: fmt.Sprint(out)}
			for k, v := range s.end {
				a[k] = v
			}
			head := chain.Head()
			if s.endHead != nil {
				head = *s.endHead
			}
			leaf(&recorder.Leaf{Type: recorder.LeafSessionEnd, Session: id, Last: first - 1, Head: head, Attrs: a}, num)
		}
	}
	size := int64(len(batch.Leaves))
	n, err := recorder.SignCheckpoint(recorder.Checkpoint{Origin: b.key.Signer.Name(), Size: size, Root: tree.root(t, size)}, b.key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range tree.hashes {
		batch.Hashes = append(batch.Hashes, bytes.Clone(h[:]))
	}
	batch.Head = &storage.Checkpoint{TreeSize: size, CreatedNS: wall - int64(time.Millisecond), Note: n}
	batch.Published = []storage.Checkpoint{*batch.Head}
	if err := st.Commit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	return path
}

// signedCases are journals whose records the key signed but which break
// a rule: the writer refuses to write them, a verifier must reject them.
func (b *conformanceBuild) signedCases() {
	attrs := func(a recorder.Attrs) []byte {
		p, err := recorder.EncodeAttrs(a)
		if err != nil {
			b.t.Fatal(err)
		}
		return p
	}
	fr := func(k recorder.Kind, mono int64, p string) recorder.Frame {
		return recorder.Frame{Kind: k, MonoNS: mono, Payload: []byte(p)}
	}
	ok := []recorder.Frame{fr(recorder.KindExec, 0, "uname -a"), fr(recorder.KindOutput, 5, "Linux\n"), fr(recorder.KindInput, 7, "q"), {Kind: recorder.KindExit, MonoNS: 9, Payload: attrs(recorder.Attrs{"status": "0"})}}
	exited := recorder.Attrs{"reason": "exited"}
	with := func(i int, f recorder.Frame) []recorder.Frame {
		out := slices.Clone(ok)
		out[i] = f
		return out
	}
	s := func(frames []recorder.Frame) conformanceSession {
		return conformanceSession{frames: frames, segs: []uint64{2, 4}, end: exited}
	}
	sig := func(name string, intact bool, sessions ...conformanceSession) {
		b.addJournal("signed: "+name, b.signedJournal(name, sessions), intact)
	}
	sig("intact", true, s(ok), conformanceSession{frames: ok[:2], segs: []uint64{1, 2}})
	sig("mono_ns goes back", false, s(with(2, fr(recorder.KindInput, 4, "q"))))
	sig("mono_ns negative", false, s(with(0, fr(recorder.KindExec, -1, "uname -a"))))
	sig("a resize of 7 bytes", false, s(with(1, recorder.Frame{Kind: recorder.KindResize, MonoNS: 5, Payload: recorder.ResizePayload(80, 24)[:7]})))
	sig("an exit status under the key Status", false, s(with(3, recorder.Frame{Kind: recorder.KindExit, MonoNS: 9, Payload: rawAttrs("Status", "0")})))
	sig("a frame of reserved kind 13", false, s(with(1, fr(recorder.Kind(13), 5, "x"))))
	sig("a marker that is not UTF-8", false, s(with(1, fr(recorder.KindMarker, 5, "bad \xff"))))
	sig("an end whose in-bytes is wrong", false, conformanceSession{frames: ok, segs: []uint64{4}, end: recorder.Attrs{"reason": "exited", recorder.AttrInBytes: "2"}})
	wrong := sha256.Sum256([]byte("another head"))
	sig("an end whose head is not the last segment's", false, conformanceSession{frames: ok, segs: []uint64{4}, end: exited, endHead: (*recorder.Hash)(&wrong)})
	sig("a session without frames", true, conformanceSession{end: exited})
}

// rawAttrs encodes key/value pairs as an attribute list as given, sorted
// or not.
func rawAttrs(kv ...string) []byte {
	b := []byte{0, byte(len(kv) / 2)}
	for i := 0; i+1 < len(kv); i += 2 {
		b = append(b, byte(len(kv[i])>>8), byte(len(kv[i])))
		b = append(b, kv[i]...)
		n := len(kv[i+1])
		b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		b = append(b, kv[i+1]...)
	}
	return b
}
