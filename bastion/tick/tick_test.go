package tick

import (
	"context"
	"testing"
	"time"
)

// A wake calls fn without waiting for the interval, and fn ends the loop
// by cancelling its context: no call follows.
func TestEveryWakeAndCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	calls := 0
	Every(ctx, time.Hour, wake, func() {
		calls++
		if calls == 2 {
			cancel()
		}
		wake <- struct{}{}
	})
	if calls != 2 {
		t.Fatalf("fn ran %d times, want 2", calls)
	}
}
