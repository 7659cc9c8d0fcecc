// Package tick holds the loop of periodic work that the server and the
// SSH front door share: a function called at an interval, and at once
// when woken, until a context ends.
package tick

import (
	"context"
	"time"
)

// Every calls fn every interval until ctx is done, and also at once
// each time wake receives (a nil wake never does). fn runs on the
// caller's goroutine, one call at a time, and never once ctx is done:
// fn may end the loop by cancelling ctx.
func Every(ctx context.Context, interval time.Duration, wake <-chan struct{}, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		if ctx.Err() != nil {
			return
		}
		fn()
	}
}
