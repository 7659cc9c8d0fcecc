package local

import (
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bastionhq/bastion/bastion/pump"
)

// start starts cmd with start (cmd.Start, or what starts it in a
// pseudo-terminal) so that the kernel sends it SIGKILL if bastion dies
// (PR_SET_PDEATHSIG): fail closed, a killed recorder never leaves a
// command running unrecorded, even one that ignores its terminal's hangup.
// (The command's own children get only the hangup.)
//
// The parent-death signal fires when the thread that started the command
// exits, so every command is started by one goroutine locked to its thread
// for the life of the process: the signal fires only when the whole
// process is gone. One thread for all commands, rather than a thread kept
// per running command until it exits: the runtime never ends a thread
// that it has unlocked, and each would stay with the process for good.
// Starts are one at a time; anything may wait for the command afterwards.
func start(cmd *exec.Cmd, start func() error) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	starter.once.Do(func() {
		starter.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // for good: this thread outlives every command it starts
			for f := range starter.reqs {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	starter.reqs <- func() { errc <- start() }
	return <-errc
}

// starter is the goroutine, locked to its thread, that starts commands.
var starter struct {
	once sync.Once
	reqs chan func()
}

// wait reaps cmd once its process has exited. It waits for the exit on a
// pidfd that the runtime's poller watches, not in a wait system call that
// would hold a thread for as long as the command runs (the runtime keeps
// every thread it ever made: a thousand sessions would leave a thousand
// idle threads behind). Where pidfds are missing (Linux before 5.3), it
// waits in the system call.
func wait(cmd *exec.Cmd) error {
	if fd, err := unix.PidfdOpen(cmd.Process.Pid, 0); err == nil {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
		} else {
			f := os.NewFile(uintptr(fd), "pidfd")
			if raw, err := f.SyscallConn(); err == nil {
				// Readable once the process has exited. An error (a
				// pidfd the poller does not take) leaves it to Wait.
				_ = pump.NewWaiter(raw).WaitReadable()
			}
			f.Close()
		}
	}
	return cmd.Wait()
}
