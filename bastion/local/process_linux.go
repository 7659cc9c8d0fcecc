package local

import (
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
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

// afterExit calls f, in a goroutine of its own, once cmd's process has
// exited; f reaps it (cmd.Wait then returns at once).
//
// Until then nothing waits for the command but one goroutine for all of
// them: each command's pidfd is in one epoll instance, which the
// runtime's poller watches (exits). Not a wait system call per command,
// which would hold a thread for as long as the command runs (the runtime
// keeps every thread it ever made: a thousand sessions would leave a
// thousand idle threads behind), nor a goroutine per command parked on
// its pidfd (part of what each idle session costs). Where pidfds are
// missing (Linux before 5.3), f runs at once, and its cmd.Wait waits in
// the system call.
func afterExit(cmd *exec.Cmd, f func()) {
	if !exits.watch(cmd.Process.Pid, f) {
		go f()
	}
}

// exits is the process's exit watcher (see afterExit).
var exits exitWatcher

// An exitWatcher runs, for each process it watches, a function once the
// process has exited: one epoll instance holds the processes' pidfds, and
// one goroutine, started with the first, waits for it on the runtime's
// poller and runs what is due.
type exitWatcher struct {
	mu     sync.Mutex
	epfd   int              // guarded by mu: the epoll instance, owned by raw's file, never closed
	raw    syscall.RawConn  // guarded by mu: nil until made, and once broken
	broken bool             // guarded by mu: waiting failed; the watcher takes nothing more
	due    map[int32]func() // by pidfd: what runs once its process exits
	ready  []func()         // the loop's, between a wait and the runs
}

// watch has w run f once pid has exited, and reports whether it will; if
// not (no pidfd, no epoll), the caller must see to it.
func (w *exitWatcher) watch(pid int, f func()) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.raw == nil && !w.broken {
		// Made with the first command, or again after a failure to make
		// it (out of file descriptors, say), which is not for good.
		w.start()
	}
	if w.raw == nil {
		return false
	}
	fd, err := unix.PidfdOpen(pid, 0) // close-on-exec
	if err != nil {
		return false
	}
	// Held under mu, so the loop finds f whenever the exit comes.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return false
	}
	w.due[int32(fd)] = f
	return true
}

// start makes the epoll instance and starts the loop; on failure raw
// stays nil, and the caller waits for its own command. w.mu is held.
func (w *exitWatcher) start() {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return
	}
	// An epoll instance is readable while it has events: the runtime's
	// poller can watch it as it watches a pipe.
	ep := os.NewFile(uintptr(epfd), "exits")
	raw, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return
	}
	w.epfd, w.raw, w.due = epfd, raw, map[int32]func(){}
	go w.loop(raw)
}

// loop waits for exits and runs what is due, each in a goroutine of its
// own, for the life of the process. If waiting ever fails, it runs
// everything still due (each then waits in cmd.Wait) and the watcher
// takes nothing more.
func (w *exitWatcher) loop(raw syscall.RawConn) {
	var events [64]unix.EpollEvent
	collect := func(fd uintptr) bool {
		n, err := unix.EpollWait(int(fd), events[:], 0)
		for err == unix.EINTR {
			n, err = unix.EpollWait(int(fd), events[:], 0)
		}
		if err == nil && n == 0 {
			return false // nothing yet: the poller waits for the next
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			w.fail()
			return true
		}
		for _, ev := range events[:n] {
			if f, ok := w.due[ev.Fd]; ok {
				delete(w.due, ev.Fd)
				unix.EpollCtl(int(fd), unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
				unix.Close(int(ev.Fd))
				w.ready = append(w.ready, f)
			}
		}
		return true
	}
	for {
		err := raw.Read(collect)
		w.mu.Lock()
		if err != nil && !w.broken {
			w.fail()
		}
		ready, broken := w.ready, w.broken
		w.ready = nil
		w.mu.Unlock()
		for _, f := range ready {
			go f()
		}
		if broken {
			return
		}
	}
}

// fail gives up watching: everything due is made ready to run, and
// nothing more is taken. w.mu is held.
func (w *exitWatcher) fail() {
	for fd, f := range w.due {
		unix.Close(int(fd))
		w.ready = append(w.ready, f)
	}
	clear(w.due)
	w.raw, w.broken = nil, true
}
