package local

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAfterExit starts commands and has afterExit reap them: nothing
// waits for a running command but the watcher's one goroutine (the
// goroutine count does not grow with the commands), each function runs
// once its command has exited (none runs while they run), with a command
// that exits at once, one that has exited before it is watched, and more
// exits at once than the watcher takes in one wait (64).
func TestAfterExit(t *testing.T) {
	const n = 100
	startCmd := func(args ...string) *exec.Cmd {
		cmd := exec.Command(args[0], args[1:]...)
		if err := start(cmd, cmd.Start); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// A warm-up: the watcher's goroutine exists from the first.
	warm := startCmd("true")
	reaped := make(chan struct{})
	afterExit(warm, func() { warm.Wait(); close(reaped) })
	<-reaped

	// Commands that wait for their stdin to close: they run until told.
	before := runtime.NumGoroutine()
	cmds := make([]*exec.Cmd, n)
	closers := make([]func(), n)
	done := make(chan int, n)
	for i := range cmds {
		cmd := exec.Command("cat")
		w, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := start(cmd, cmd.Start); err != nil {
			t.Fatal(err)
		}
		cmds[i], closers[i] = cmd, func() { w.Close() }
		afterExit(cmd, func() {
			cmd.Wait()
			done <- i
		})
	}
	if during := runtime.NumGoroutine(); during > before+5 {
		t.Errorf("%d goroutines before, %d with %d commands running: one per command", before, during, n)
	}
	select {
	case i := <-done:
		t.Fatalf("command %d reaped while it runs", i)
	case <-time.After(100 * time.Millisecond):
	}
	// All at once: more exits than one wait takes. The watcher is held
	// until every command is a zombie, so that its next wait finds all
	// hundred exits.
	exits.mu.Lock()
	for _, c := range closers {
		c()
	}
	for _, cmd := range cmds {
		waitZombie(t, cmd.Process.Pid)
	}
	exits.mu.Unlock()
	seen := map[int]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case i := <-done:
			if seen[i] {
				t.Fatalf("command %d reaped twice", i)
			}
			seen[i] = true
		case <-deadline:
			t.Fatalf("%d of %d commands reaped after 30 s", len(seen), n)
		}
	}

	// A command that has exited (a zombie, not reaped yet) before it is
	// watched.
	z := startCmd("true")
	waitZombie(t, z.Process.Pid)
	zdone := make(chan struct{})
	afterExit(z, func() { z.Wait(); close(zdone) })
	select {
	case <-zdone:
	case <-time.After(30 * time.Second):
		t.Fatal("a command that had already exited was not reaped")
	}
	if !z.ProcessState.Success() {
		t.Fatalf("true: %v", z.ProcessState)
	}
}

// waitZombie waits until pid has exited and is not yet reaped.
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		// pid (comm) state …
		if _, stat, _ := strings.Cut(string(b), ") "); strings.HasPrefix(stat, "Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d has not exited after 30 s", pid)
		}
		time.Sleep(time.Millisecond)
	}
}
