package pump

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// A Waiter waits until a file has something to read (or its end, or an
// error), without reading it, so that a stream takes a buffer only once
// there are bytes to read into it. It works on files the runtime polls (a
// terminal's master, a pipe, a socket) and honors their read deadlines;
// Close interrupts it. It is used by one goroutine at a time.
type Waiter struct {
	raw  syscall.RawConn
	fds  [1]unix.PollFd
	err  error
	poll func(fd uintptr) bool // made once: no allocation per wait
}

// NewWaiter returns a Waiter on the file behind raw.
func NewWaiter(raw syscall.RawConn) *Waiter {
	w := &Waiter{raw: raw}
	w.poll = func(fd uintptr) bool {
		w.fds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		for {
			n, err := unix.Poll(w.fds[:], 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				w.err = err
				return true
			}
			// Not ready: the runtime's poller waits for the file to
			// become readable, and asks again. (It was armed before
			// this first look, so a byte that comes in between is
			// not missed.)
			return n > 0
		}
	}
	return w
}

// WaitReadable returns once a Read of the file would not block: it has
// bytes, its end, or an error. It returns the deadline's or the close's
// error, or an error if the file cannot be waited on (then the caller
// just reads).
func (w *Waiter) WaitReadable() error {
	w.err = nil
	if err := w.raw.Read(w.poll); err != nil {
		return err
	}
	return w.err
}
