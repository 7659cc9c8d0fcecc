package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// NotifyChannel is the channel a writer notifies, in the transaction of
// every commit that moves its log's head, with the log's name as the
// payload: the other members of a cluster LISTEN on it to read the new
// leaves at once rather than at their next poll.
const NotifyChannel = "bastion_log"

// Listen calls fn with the name of each log whose head a commit moved,
// from a connection of its own LISTENing on [NotifyChannel], until ctx is
// done. A lost connection is opened again, after a pause that grows to
// a few seconds; fn is then called with "" (logs may have moved
// unnoticed), as it is once the first LISTEN is in place. Notifications
// are a wake-up, never evidence: a follower reads and verifies the log
// itself, and polls besides, since a notification can be lost with its
// connection. Errors are passed to onErr (which may be nil); Listen
// returns when ctx is done.
func Listen(ctx context.Context, dsn string, fn func(log string), onErr func(error)) {
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := listenOnce(ctx, dsn, fn)
		if ctx.Err() != nil {
			return
		}
		if onErr != nil && err != nil {
			onErr(fmt.Errorf("listen for the logs' commits: %w", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

func listenOnce(ctx context.Context, dsn string, fn func(log string)) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return err
	}
	fn("")
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n.Channel == NotifyChannel {
			fn(n.Payload)
		}
	}
}
