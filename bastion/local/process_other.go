//go:build !linux

package local

import "os/exec"

// start starts cmd with start (cmd.Start, or what starts it in a
// pseudo-terminal). Where the system has no parent-death signal, the
// terminal's hangup is what ends a command whose recorder died.
func start(cmd *exec.Cmd, start func() error) error { return start() }

// afterExit calls f, in a goroutine of its own, which reaps cmd: its
// cmd.Wait waits for the exit.
func afterExit(cmd *exec.Cmd, f func()) { go f() }
