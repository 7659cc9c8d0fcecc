package storage

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

const (
	// walCheckpointPages is how many WAL pages accumulate before the
	// background checkpointer copies them into the database file (32 MiB
	// at 8 KiB pages).
	walCheckpointPages = 4096

	// walIdleCheckpoint is how often the background checkpointer looks for
	// pages that commits left below walCheckpointPages, so that a quiet
	// journal's WAL is copied out and can restart at the next commit.
	walIdleCheckpoint = time.Second

	// walSizeLimit is the writer's journal_size_limit: when the WAL
	// restarts, SQLite truncates the file to this size.
	walSizeLimit = 64 << 20

	// walHardLimitPages is the WAL size, in pages, past which the writer
	// checkpoints itself after a commit (see checkpointer.writerDue). It
	// bounds the WAL under sustained output. The writer's checkpoint copies
	// only what the background rounds have not, and stalls that one commit
	// for as long: a limit as low as walSizeLimit keeps both the WAL and
	// the stall smallest (about 70 MiB and 90 ms at 250 MiB/s of output,
	// against 280 MiB and 250 ms with a limit of 256 MiB).
	walHardLimitPages = walSizeLimit / pageSize
	// memoryIdle is how long the journal must go without a commit before
	// the checkpointer gives back the memory SQLite caches (see release).
	memoryIdle = 5 * time.Second
)

// checkpointer copies the WAL into the database file from its own
// connection and goroutine, so the writer's commits never pay for it.
// SQLite's automatic checkpoint would run inside the commit that crosses
// the threshold, on the writer's thread. Owned by SQLite: started by
// OpenSQLite, stopped and waited for by Close.
//
// Every checkpoint is PASSIVE: it never waits for the writer or a reader,
// and copies what no reader still needs. That alone cannot bound the WAL:
// it restarts from its beginning only when a write transaction starts after
// a checkpoint has copied every frame in it, and while the writer appends
// without pause the background checkpoint always finishes behind it. So
// once the WAL passes walHardLimitPages, the writer runs a checkpoint itself
// after a commit, when nothing is appending; only a reader holding old
// frames can then keep the WAL from restarting.
type checkpointer struct {
	db     *sql.DB
	rw     *sql.DB // the writer's connection, whose cache release empties
	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// pending estimates the pages committed and not yet copied, walPages
	// the frames in the WAL: both as the last round found them, plus the
	// pages committed since. Guarded by mu.
	pending, walPages int
	// writerWaits is set when the writer's own round could not copy
	// everything (a reader holds old frames): it does not try again before
	// a background round has looked. Guarded by mu.
	writerWaits bool
	// lastCommit is when the writer last committed; released says the
	// caches were given back since. Guarded by mu.
	lastCommit time.Time
	released   bool
}

func startCheckpointer(db, rw *sql.DB) *checkpointer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{db: db, rw: rw, kick: make(chan struct{}, 1), cancel: cancel, lastCommit: time.Now()}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		idle := time.NewTicker(walIdleCheckpoint)
		defer idle.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.kick:
			case <-idle.C:
				c.mu.Lock()
				pending := c.pending
				quiet := !c.released && time.Since(c.lastCommit) >= memoryIdle
				c.mu.Unlock()
				if pending == 0 {
					if quiet {
						c.release(ctx)
					}
					continue
				}
			}
			c.checkpoint(ctx, c.db, false)
		}
	}()
	return c
}

// checkpoint runs a PASSIVE checkpoint on q, the background connection or
// the writer's (byWriter), and records what it left.
func (c *checkpointer) checkpoint(ctx context.Context, q queryerCtx, byWriter bool) {
	c.mu.Lock()
	before := c.walPages
	c.mu.Unlock()
	var busy, logPages, done int
	err := q.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logPages, &done)
	c.mu.Lock()
	defer c.mu.Unlock()
	// What was committed while the round ran is not in its figures.
	since := max(0, c.walPages-before)
	switch {
	case busy != 0:
		// Another checkpoint was running; it records for itself, and a
		// writer still due tries again after its next commit.
		return
	case err != nil || logPages < 0:
		if byWriter {
			c.writerWaits = true
		}
		return
	}
	c.pending = max(0, logPages-done) + since
	c.walPages = logPages + since
	if !byWriter {
		c.writerWaits = false
		return
	}
	if done == logPages {
		// Nothing appended meanwhile: the next commit restarts the WAL.
		c.walPages = 0
	} else {
		c.writerWaits = true
	}
}

// release gives back, once the journal has been quiet for memoryIdle, what
// SQLite caches: the pages the writer's and the checkpointer's connections
// hold (up to the writer's cache_size; a wave of sessions fills it), then
// the C heap's free memory (releaseHeap). The next commit reads the few
// pages it needs again, from the operating system's cache. A bastion whose
// sessions all went quiet, or closed, thus returns to about the memory it
// started with, rather than keeping its busiest hour's.
func (c *checkpointer) release(ctx context.Context) {
	for _, db := range []*sql.DB{c.rw, c.db} {
		if _, err := db.ExecContext(ctx, "PRAGMA shrink_memory"); err != nil {
			return
		}
	}
	releaseHeap()
	c.mu.Lock()
	c.released = true
	c.mu.Unlock()
}

// committed records that about bytes were written to the WAL and kicks a
// background checkpoint when enough accumulated, unless the writer is due
// to run one: a background round started now would only make it busy.
func (c *checkpointer) committed(bytes int) {
	pages := bytes/pageSize + 1
	c.mu.Lock()
	c.pending += pages
	c.walPages += pages
	c.lastCommit, c.released = time.Now(), false
	kick := c.pending >= walCheckpointPages && !c.writerDueLocked()
	c.mu.Unlock()
	if kick {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// writerDue reports whether the writer is to checkpoint after the commit it
// has just made.
func (c *checkpointer) writerDue() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writerDueLocked()
}

func (c *checkpointer) writerDueLocked() bool {
	return c.walPages >= walHardLimitPages && !c.writerWaits
}

func (c *checkpointer) stop() {
	c.cancel()
	c.wg.Wait()
}
