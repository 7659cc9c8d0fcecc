//go:build !linux

package local

import "os/exec"

// start starts cmd with start (cmd.Start, or what starts it in a
// pseudo-terminal). Where the system has no parent-death signal, the
// terminal's hangup is what ends a command whose recorder died.
func start(cmd *exec.Cmd, start func() error) error { return start() }

// wait reaps cmd once its process has exited.
func wait(cmd *exec.Cmd) error { return cmd.Wait() }
