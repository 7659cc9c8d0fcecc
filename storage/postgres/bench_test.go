package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bastionhq/bastion/recorder"
	"github.com/bastionhq/bastion/recorder/recordertest"
	"github.com/bastionhq/bastion/storage"
	"github.com/bastionhq/bastion/storage/postgres"
	"github.com/bastionhq/bastion/storage/postgres/pgtest"
)

// The scale-out benchmarks write the journal the way "bastion record" of
// bulk output does, through the recorder (frames hashed and chained,
// leaves, the Merkle tree, a signed checkpoint a second), with 32 KiB
// output chunks and at most benchWindow of them appended but not yet
// committed (the output pump's bound), each writer one session of
// BENCH_PG_MIB MiB (default 64). Every commit is durable before it
// returns: SQLite at synchronous=FULL, PostgreSQL with fsync and
// synchronous_commit on (its defaults, which the store requires). Each
// benchmark op is BENCH_PG_ROUNDS rounds (default 3), the cases of a
// round alternating in order from one round to the next, and reports the
// median of the rounds' figures and ratios: machines are shared, and a
// ratio taken within one round is what survives a neighbour's load.
const (
	benchChunk  = 32 << 10
	benchWindow = 64
)

func benchEnv(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// benchRecord records one session of total bytes into st, and returns
// how long it took from its start to its end committed.
func benchRecord(b *testing.B, st storage.Store, key *recorder.JournalKey, total int) time.Duration {
	ctx := context.Background()
	j, err := recorder.Open(ctx, st, recorder.Options{Key: key})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	payload := make([]byte, benchChunk)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	start := time.Now()
	s, err := j.StartSession(ctx, recorder.SessionInfo{})
	if err != nil {
		b.Fatal(err)
	}
	inflight := make([]uint64, benchWindow)
	for i := 0; i < total/benchChunk; i++ {
		k := i % benchWindow
		if i >= benchWindow {
			if err := s.Wait(ctx, inflight[k]); err != nil {
				b.Fatal(err)
			}
		}
		if inflight[k], err = s.Append(recorder.KindOutput, 0, payload); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.End(ctx, nil); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// benchPostgres starts a cluster of the benchmark's own, with PostgreSQL's
// defaults, and checks they make a commit durable.
func benchPostgres(b *testing.B) string {
	b.Helper()
	srv := pgtest.Start(b, pgtest.Options{})
	dsn := srv.NewDatabase(b)
	st, err := postgres.Open(context.Background(), dsn, "probe", postgres.Options{})
	if err != nil {
		b.Fatalf("the benchmark's server: %v", err)
	}
	st.Close()
	return dsn
}

func mbps(bytes int, d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e6 }

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// BenchmarkPostgresVsSQLite records the same session into a fresh SQLite
// journal (synchronous=FULL, in the temporary directory) and into a
// fresh log of a PostgreSQL database (a local cluster, its data in the
// temporary directory too), alternating, and reports each one's MB/s and
// their ratio, pg/sqlite.
func BenchmarkPostgresVsSQLite(b *testing.B) {
	ctx := context.Background()
	total := benchEnv(b, "BENCH_PG_MIB", 64) << 20
	rounds := benchEnv(b, "BENCH_PG_ROUNDS", 3)
	dsn := benchPostgres(b)
	key, _ := recordertest.NewKey(b, "bench.example/journal")
	var sq, pg, ratio []float64
	log := 0
	b.ResetTimer()
	for range b.N {
		for r := range rounds {
			var tSQ, tPG time.Duration
			for _, which := range [][]string{{"sqlite", "pg"}, {"pg", "sqlite"}}[r%2] {
				switch which {
				case "sqlite":
					st, err := storage.OpenSQLite(ctx, filepath.Join(b.TempDir(), "j.db"), storage.Options{Synchronous: storage.SyncFull})
					if err != nil {
						b.Fatal(err)
					}
					tSQ = benchRecord(b, st, key, total)
					st.Close()
				case "pg":
					log++
					st, err := postgres.Open(ctx, dsn, fmt.Sprintf("bench-%d", log), postgres.Options{})
					if err != nil {
						b.Fatal(err)
					}
					tPG = benchRecord(b, st, key, total)
					st.Close()
				}
			}
			sq, pg = append(sq, mbps(total, tSQ)), append(pg, mbps(total, tPG))
			ratio = append(ratio, tSQ.Seconds()/tPG.Seconds())
			b.Logf("round %d: sqlite %.1f MB/s, pg %.1f MB/s, pg/sqlite %.3f", len(ratio), sq[len(sq)-1], pg[len(pg)-1], ratio[len(ratio)-1])
		}
	}
	b.StopTimer()
	b.ReportMetric(medianOf(sq), "sqlite-MB/s")
	b.ReportMetric(medianOf(pg), "pg-MB/s")
	b.ReportMetric(medianOf(ratio), "pg/sqlite")
}

// BenchmarkPostgresTwoWriters is two writers, each on a log of its own in
// one PostgreSQL database (as two serve instances are), recording at
// once, against one writer alone, alternating: the aggregate MB/s of the
// two (both sessions' bytes over the time until both ended) divided by
// the one's is "two/one". Writers of two logs share no lock and no row,
// so what limits the ratio is the machine (its cores and its disk's
// flushes), not the journal.
func BenchmarkPostgresTwoWriters(b *testing.B) {
	ctx := context.Background()
	total := benchEnv(b, "BENCH_PG_MIB", 64) << 20
	rounds := benchEnv(b, "BENCH_PG_ROUNDS", 3)
	dsn := benchPostgres(b)
	ka, _ := recordertest.NewKey(b, "a.bench.example/journal")
	kb, _ := recordertest.NewKey(b, "b.bench.example/journal")
	keys := []*recorder.JournalKey{ka, kb}
	var one, two, ratio []float64
	log := 0
	open := func() storage.Store {
		log++
		st, err := postgres.Open(ctx, dsn, fmt.Sprintf("bench-%d", log), postgres.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	b.ResetTimer()
	for range b.N {
		for r := range rounds {
			var tOne, tTwo time.Duration
			for _, which := range [][]string{{"one", "two"}, {"two", "one"}}[r%2] {
				switch which {
				case "one":
					st := open()
					tOne = benchRecord(b, st, keys[0], total)
					st.Close()
				case "two":
					sts := []storage.Store{open(), open()}
					start := time.Now()
					var wg sync.WaitGroup
					for i, st := range sts {
						wg.Go(func() { benchRecord(b, st, keys[i], total) })
					}
					wg.Wait()
					tTwo = time.Since(start)
					for _, st := range sts {
						st.Close()
					}
				}
			}
			one, two = append(one, mbps(total, tOne)), append(two, mbps(2*total, tTwo))
			ratio = append(ratio, two[len(two)-1]/one[len(one)-1])
			b.Logf("round %d: one %.1f MB/s, two %.1f MB/s together, two/one %.3f", len(ratio), one[len(one)-1], two[len(two)-1], ratio[len(ratio)-1])
		}
	}
	b.StopTimer()
	b.ReportMetric(medianOf(one), "one-MB/s")
	b.ReportMetric(medianOf(two), "two-MB/s")
	b.ReportMetric(medianOf(ratio), "two/one")
}
