package local

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastionhq/bastion/recorder"
)

// TestRunPiped: stdin reaches the command, stdout and stderr come back
// apart, each recorded (stderr as its own kind, on channel 1), and the exit
// status is the command's.
func TestRunPiped(t *testing.T) {
	rec := newMemRecorder(t, time.Millisecond)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := RunPiped(ctx, PipeConfig{
		Argv:  []string{"sh", "-c", `tr a-z A-Z; echo oops >&2; exit 3`},
		Stdin: strings.NewReader("hello\n"), Stdout: &stdout, Stderr: &stderr,
	}, rec)
	if err != nil {
		t.Fatalf("RunPiped: %v", err)
	}
	if res != (Result{ExitCode: 3}) {
		t.Errorf("result = %+v, want exit 3", res)
	}
	if stdout.String() != "HELLO\n" || stderr.String() != "oops\n" {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	if in := rec.payloads(recorder.KindInput); string(in) != "hello\n" {
		t.Errorf("recorded input %q", in)
	}
	if out := rec.payloads(recorder.KindOutput); string(out) != "HELLO\n" {
		t.Errorf("recorded output %q", out)
	}
	for _, f := range rec.allFrames() {
		if f.kind == recorder.KindStderr && (string(f.data) != "oops\n" || f.channel != 1) {
			t.Errorf("stderr frame %+v", f)
		}
	}
}

// threads is how many threads this process has.
func threads(t *testing.T) int {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads: line in /proc/self/status")
	return 0
}

// TestRunningCommandsHoldNoThread: a command that runs, quiet, holds no
// thread of bastion's while it runs or after: it is started from one
// thread that all commands share, and waited for on a pidfd the runtime's
// poller watches, not in a blocking wait. (Each thread would otherwise
// stay with the process for good.)
func TestRunningCommandsHoldNoThread(t *testing.T) {
	const commands = 40
	before := threads(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	started := make(chan struct{}, commands)
	for i := range commands {
		rec := newMemRecorder(t, 0)
		up := writerFunc(func(p []byte) {
			select {
			case started <- struct{}{}:
			default:
			}
		})
		wg.Go(func() {
			// Half in a terminal, half with pipes it closes, so that both
			// are waited for while they run.
			if i%2 == 0 {
				RunPTY(ctx, PTYConfig{Argv: []string{"sh", "-c", "echo up; exec sleep 60"}, Stdout: up, KillGrace: -1}, rec)
				return
			}
			RunPiped(ctx, PipeConfig{Argv: []string{"sh", "-c", "echo up; exec sleep 60 >/dev/null 2>&1"}, Stdout: up}, rec)
		})
	}
	for range commands {
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			t.Fatal("the commands did not all start")
		}
	}
	during := threads(t)
	cancel()
	wg.Wait()
	if during-before >= commands/2 {
		t.Errorf("%d threads before, %d with %d commands running: a thread per command", before, during, commands)
	}
}

type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) {
	f(p)
	return len(p), nil
}
