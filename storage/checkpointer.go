package storage

import (
	"context"
	"database/sql"
	"sync"
)

// walCheckpointPages is how many WAL pages accumulate before the background
// checkpointer copies them into the database file (16 MiB at 4 KiB pages).
const walCheckpointPages = 4096

// checkpointer copies the WAL into the database file from its own
// connection and goroutine, so the writer's commits never pay for it.
// SQLite's automatic checkpoint would run inside the commit that crosses
// the threshold, on the writer's thread. Owned by SQLite: started by
// OpenSQLite, stopped and waited for by Close.
type checkpointer struct {
	db      *sql.DB
	kick    chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	pending int // pages committed since the last checkpoint; guarded by mu
}

func startCheckpointer(db *sql.DB) *checkpointer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{db: db, kick: make(chan struct{}, 1), cancel: cancel}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.kick:
			}
			// PASSIVE never blocks the writer or readers; what readers
			// still use stays in the WAL until the next round.
			var busy, logPages, done int
			if err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logPages, &done); err == nil {
				c.mu.Lock()
				c.pending = max(0, logPages-done)
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// committed records that about bytes were written to the WAL and kicks a
// checkpoint when enough accumulated.
func (c *checkpointer) committed(bytes int) {
	c.mu.Lock()
	c.pending += bytes/pageSize + 1
	due := c.pending >= walCheckpointPages
	c.mu.Unlock()
	if due {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

func (c *checkpointer) stop() {
	c.cancel()
	c.wg.Wait()
}
