package recorder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastionhq/bastion/storage"
)

// benchAppend appends b.N frames of size bytes from sessions concurrent
// sessions, each pipelining (waiting only at the end), and reports frames/s,
// MB/s and the journal's bytes per payload byte.
func benchAppend(b *testing.B, size, sessions int, syncMode string) {
	ctx := context.Background()
	key := testKey(b)
	path := filepath.Join(b.TempDir(), "j.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{Synchronous: syncMode})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	j, err := Open(ctx, st, Options{Key: key})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	ss := make([]*Session, sessions)
	for i := range ss {
		if ss[i], err = j.StartSession(ctx, SessionInfo{}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / sessions
	for i, s := range ss {
		n := per
		if i == 0 {
			n += b.N % sessions
		}
		wg.Go(func() {
			var seq uint64
			for k := 0; k < n; k++ {
				// Small frames alternate input and output, as keystrokes
				// and their echo do, so none are coalesced: every
				// append is a frame of its own.
				kind := KindOutput
				if size < 1024 && k%2 == 0 {
					kind = KindInput
				}
				if seq, err = s.Append(kind, 0, payload); err != nil {
					b.Error(err)
					return
				}
			}
			if err := s.Wait(ctx, seq); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	for _, s := range ss {
		s.End(ctx, nil)
	}
	j.Close()
	st.Close()
	if fi, err := os.Stat(path); err == nil && b.N*size > 16<<20 {
		b.ReportMetric(float64(fi.Size())/float64(b.N*size), "journal-bytes/payload-byte")
	}
}

func BenchmarkAppendSmallFrames(b *testing.B) { benchAppend(b, 64, 4, storage.SyncNormal) }
func BenchmarkAppendSmallFull(b *testing.B)   { benchAppend(b, 64, 4, storage.SyncFull) }
func BenchmarkAppendBulk(b *testing.B)        { benchAppend(b, 32<<10, 1, storage.SyncNormal) }
func BenchmarkAppendBulkFull(b *testing.B)    { benchAppend(b, 32<<10, 1, storage.SyncFull) }
func BenchmarkAppendPTYSized(b *testing.B)    { benchAppend(b, 4095, 1, storage.SyncNormal) }

// BenchmarkVerify verifies a journal of 256 MiB of 32 KiB output frames.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	key := testKey(b)
	path := filepath.Join(b.TempDir(), "j.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{Synchronous: storage.SyncNormal})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	j, err := Open(ctx, st, Options{Key: key})
	if err != nil {
		b.Fatal(err)
	}
	const total = 256 << 20
	payload := make([]byte, 32<<10)
	for k := 0; k < 4; k++ {
		s, err := j.StartSession(ctx, SessionInfo{})
		if err != nil {
			b.Fatal(err)
		}
		var seq uint64
		for n := 0; n < total/4; n += len(payload) {
			if seq, err = s.Append(KindOutput, 0, payload); err != nil {
				b.Fatal(err)
			}
		}
		s.Wait(ctx, seq)
		s.End(ctx, nil)
	}
	j.Close()
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := Verify(ctx, st, VerifyOptions{Verifier: key.Verifier})
		if err != nil || !r.Intact() {
			b.Fatal(err, r.Problems)
		}
	}
}

// benchWindow appends b.N chunks of size bytes to one session the way the
// output pump of "bastion record" does (package bastion/pump): at
// most window chunks are appended but not yet committed, which is the
// pump's pool of read buffers, and each new append first waits for the
// commit of the oldest. A bounded window keeps only window×size bytes in
// flight, so each commit (an fsync with synchronous=FULL) carries at most
// that much: this measures the journal's rate under that bound.
func benchWindow(b *testing.B, size, window int, syncMode string) {
	ctx := context.Background()
	key := testKey(b)
	path := filepath.Join(b.TempDir(), "j.db")
	st, err := storage.OpenSQLite(ctx, path, storage.Options{Synchronous: syncMode})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	j, err := Open(ctx, st, Options{Key: key})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	s, err := j.StartSession(ctx, SessionInfo{})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	inflight := make([]uint64, window)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % window
		if i >= window {
			if err := s.Wait(ctx, inflight[k]); err != nil {
				b.Fatal(err)
			}
		}
		if inflight[k], err = s.Append(KindOutput, 0, payload); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Wait(ctx, inflight[(b.N-1)%window]); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
	if err := s.End(ctx, nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAppendRecordPipeline models "bastion record" of bulk output:
// 4095-byte chunks (one read of a pseudo-terminal), synchronous=FULL (its
// default), and a window of 8 chunks, the output pump's buffer pool. The
// pool=64 case is not what record does: it shows how much of the rate the
// bound of 8 chunks costs.
func BenchmarkAppendRecordPipeline(b *testing.B) {
	for _, window := range []int{8, 64} {
		b.Run(fmt.Sprintf("pool=%d", window), func(b *testing.B) {
			benchWindow(b, 4095, window, storage.SyncFull)
		})
	}
}

// BenchmarkConcurrentEvents is 50 callers appending audit events at once,
// each waiting for its commit, as the certificate API does.
func BenchmarkConcurrentEvents(b *testing.B) {
	ctx := context.Background()
	key := testKey(b)
	j, _ := openJournal(b, filepath.Join(b.TempDir(), "j.db"), key)
	defer j.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	lat := make([][]time.Duration, 50)
	b.ResetTimer()
	start := time.Now()
	for i := range lat {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if _, err := j.AppendIndexedEvent(ctx, "cert.issued", Attrs{"identity": "agent-1@corp", "principals": "deploy"}, "serial"); err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}

// benchLog builds, at path, a journal of sessions sessions laid out as the
// writer lays them out (a start, eight one-frame segments and an end each,
// and an audit event: eleven leaves a session), through the storage layer
// in one commit per session: a log of many leaves without waiting for as
// many real commits.
func benchLog(b *testing.B, path string, key *JournalKey, sessions int) int64 {
	b.Helper()
	ctx := context.Background()
	st, err := storage.OpenSQLite(ctx, path, storage.Options{Synchronous: storage.SyncNormal})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Init(ctx, map[string]string{MetaFormat: FormatVersion, MetaOrigin: key.Signer.Name(), MetaKey: key.VerifierKey}); err != nil {
		b.Fatal(err)
	}
	var tree memTree
	wall := time.Now().UnixNano()
	payload := make([]byte, 64)
	var size int64
	for n := 1; n <= sessions; n++ {
		batch := &storage.Batch{HashStart: int64(len(tree.hashes))}
		id := SessionID{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 0x70}
		leaf := func(l *Leaf, num int64) {
			wall++
			l.WallNS = wall
			data, err := l.Encode()
			if err != nil {
				b.Fatal(err)
			}
			tree.add(data)
			batch.Leaves = append(batch.Leaves, storage.Leaf{Index: size, Type: uint8(l.Type), Session: num, Event: l.Event, Data: data})
			size++
		}
		batch.NewSessions = []storage.Session{{Num: int64(n), ID: id[:], StartLeaf: size}}
		leaf(&Leaf{Type: LeafSessionStart, Session: id, Attrs: Attrs{"kind": "record", "command": "bench"}}, int64(n))
		c := NewChainer(ChainSeed(id))
		for seq := uint64(1); seq <= 8; seq++ {
			f := Frame{Session: id, Seq: seq, Kind: KindOutput, MonoNS: int64(seq), WallNS: wall, Payload: payload}
			h := c.Add(&f)
			batch.Frames = append(batch.Frames, storage.Frame{Session: int64(n), Seq: int64(seq), Kind: uint8(KindOutput), MonoNS: f.MonoNS, WallNS: f.WallNS, Payload: payload, Chain: h[:]})
			leaf(&Leaf{Type: LeafSegment, Session: id, First: seq, Last: seq, Head: h}, int64(n))
		}
		leaf(&Leaf{Type: LeafSessionEnd, Session: id, Last: 8, Head: c.Head(), Attrs: Attrs{"reason": "exited", AttrInBytes: "0", AttrOutBytes: "512"}}, int64(n))
		leaf(&Leaf{Type: LeafEvent, Event: "cert.issued", Attrs: Attrs{"identity": "agent@corp", "serial": fmt.Sprint(size)}}, -1)
		for _, h := range tree.hashes[batch.HashStart:] {
			batch.Hashes = append(batch.Hashes, h[:])
		}
		root, err := tree.root(size)
		if err != nil {
			b.Fatal(err)
		}
		note, err := SignCheckpoint(Checkpoint{Origin: key.Signer.Name(), Size: size, Root: root}, key.Signer)
		if err != nil {
			b.Fatal(err)
		}
		batch.Head = &storage.Checkpoint{TreeSize: size, CreatedNS: wall, Note: note}
		if n == sessions {
			batch.Published = []storage.Checkpoint{*batch.Head}
		}
		if err := st.Commit(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	return size
}

// benchLogSessions makes a log of about 110 000 leaves.
const benchLogSessions = 10_000

// BenchmarkOpenJournal is what a writer pays to open a journal of 110 000
// leaves: every leaf read and hashed to the signed root, the index
// cross-checked, before it signs anything ("bastion play" and "export"
// open one to record their read).
func BenchmarkOpenJournal(b *testing.B) {
	ctx := context.Background()
	key := testKey(b)
	path := filepath.Join(b.TempDir(), "j.db")
	leaves := benchLog(b, path, key, benchLogSessions)
	st, err := storage.OpenSQLite(ctx, path, storage.Options{Synchronous: storage.SyncNormal})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j, err := Open(ctx, st, Options{Key: key})
		if err != nil {
			b.Fatal(err)
		}
		if err := j.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(leaves)*float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}

// BenchmarkReadLog is what "sessions list" and "certs list" pay on the
// same log: the leaves read and proven, no frame.
func BenchmarkReadLog(b *testing.B) {
	ctx := context.Background()
	key := testKey(b)
	path := filepath.Join(b.TempDir(), "j.db")
	leaves := benchLog(b, path, key, benchLogSessions)
	st, err := storage.OpenSQLite(ctx, path, storage.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		snap, err := st.Snapshot(ctx)
		if err != nil {
			b.Fatal(err)
		}
		log, err := ReadLog(ctx, snap, ReadLogOptions{Verifier: key.Verifier})
		snap.Close()
		if err != nil || len(log.Sessions) != benchLogSessions || len(log.IndexProblems) != 0 {
			b.Fatal(err, log)
		}
	}
	b.ReportMetric(float64(leaves)*float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}
