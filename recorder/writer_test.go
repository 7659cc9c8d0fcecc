package recorder

import (
	"testing"
	"time"
)

// TestBatchingHold: the writer takes the queue only when the committer is
// idle, or a full batch while one commits (never while one waits); after a stream's batch it lingers while the stream keeps coming,
// until batchTarget bytes are queued or batchLinger has passed; it takes
// at once what an interactive session queued, and what is queued when
// appends pause.
func TestBatchingHold(t *testing.T) {
	w := newBatching()
	defer w.poll.Stop()
	if w.hold(1, 10, false, false, false) {
		t.Fatal("an idle writer held a keystroke")
	}
	w.took(10)
	w.inflight = 1
	if !w.hold(3, 100, false, false, false) {
		t.Fatal("took the queue while a batch commits")
	}
	if w.hold(batchOps, 100, false, false, false) || w.hold(3, batchTarget, false, false, false) {
		t.Fatal("held a full batch while one commits")
	}
	w.inflight = 2
	if !w.hold(batchOps, batchTarget, false, false, false) {
		t.Fatal("took the queue while a batch waits for the committer")
	}
	w.inflight = 0
	if !w.hold(0, 0, true, false, false) {
		t.Fatal("a committer done with nothing queued made a batch")
	}
	if w.hold(0, 0, true, false, true) {
		t.Fatal("a committer done with nothing queued held a checkpoint that is due")
	}
	if w.hold(2, 100, true, false, false) {
		t.Fatal("held the next batch of an interactive session")
	}
	w.took(100)

	// A stream: its batch was bulkBatch or more.
	w.took(bulkBatch)
	if !w.hold(4, 64<<10, true, false, false) {
		t.Fatal("did not linger after a stream's batch")
	}
	if !w.hold(5, 96<<10, false, false, false) {
		t.Fatal("stopped lingering at a wake below the target")
	}
	if !w.hold(6, 128<<10, false, true, false) {
		t.Fatal("stopped lingering at a poll while bytes still come")
	}
	if w.hold(6, 128<<10, false, true, false) {
		t.Fatal("kept lingering once the appends paused")
	}
	w.took(128 << 10)

	if !w.hold(1, 32<<10, true, false, false) {
		t.Fatal("did not linger after a stream's batch")
	}
	if w.hold(40, batchTarget, false, false, false) {
		t.Fatal("kept lingering with the target queued")
	}
	w.took(batchTarget)

	if !w.hold(1, 32<<10, true, false, false) {
		t.Fatal("did not linger after a stream's batch")
	}
	w.until = time.Now().Add(-time.Millisecond) // batchLinger has passed
	if w.hold(2, 64<<10, false, true, false) {
		t.Fatal("lingered past batchLinger")
	}
}
