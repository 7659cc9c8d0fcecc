package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/term"

	"github.com/bastionhq/bastion/bastion/local"
)

// The user's terminal, for commands that run a session in it (record).
// These helpers reach a file's descriptor through SyscallConn rather than
// Fd, which would switch the file to blocking mode as a side effect.

// isTerminal reports whether f is a terminal. A nil f is not.
func isTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	tty := false
	if err := withFd(f, func(fd int) { tty = term.IsTerminal(fd) }); err != nil {
		return false
	}
	return tty
}

// makeRaw puts the terminal fd in raw mode: keystrokes, ^C and ^D included,
// pass through as bytes to the session instead of being acted on here.
// restore puts back the mode the terminal had. It may be called more than
// once and from any goroutine (a deferred call and a signal path, say);
// only the first call acts. It reports nothing: it runs on the way out,
// when there is no one left to tell.
func makeRaw(fd int) (restore func(), err error) {
	old, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("put terminal in raw mode: %w", err)
	}
	var once sync.Once
	return func() { once.Do(func() { _ = term.Restore(fd, old) }) }, nil
}

// termSize returns the size of the terminal f.
func termSize(f *os.File) (cols, rows int, err error) {
	cerr := withFd(f, func(fd int) { cols, rows, err = term.GetSize(fd) })
	if cerr != nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("terminal size: %w", err)
	}
	return cols, rows, nil
}

// watchResize reports the size of the terminal f each time it changes. It
// listens for SIGWINCH, and sends a size only when it differs from the last
// one seen; a receiver that falls behind gets the latest size, not every
// step. It takes its first size before it returns, so a caller that calls
// it before termSize misses no change in between.
//
// The goroutine behind the channel lives until ctx is done; it then stops
// listening and closes the channel.
func watchResize(ctx context.Context, f *os.File) <-chan local.Size {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	var last local.Size
	if cols, rows, err := termSize(f); err == nil {
		last = local.Size{Cols: cols, Rows: rows}
	}
	sizes := make(chan local.Size)
	go func() {
		defer close(sizes)
		defer signal.Stop(winch)
		var send chan<- local.Size // sizes while last is unsent, else nil
		for {
			select {
			case <-ctx.Done():
				return
			case <-winch:
				cols, rows, err := termSize(f)
				if err != nil {
					continue
				}
				if size := (local.Size{Cols: cols, Rows: rows}); size != last {
					last, send = size, sizes
				}
			case send <- last:
				send = nil
			}
		}
	}()
	return sizes
}

// withFd calls fn with f's descriptor, leaving f's blocking mode alone.
func withFd(f *os.File, fn func(fd int)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}
