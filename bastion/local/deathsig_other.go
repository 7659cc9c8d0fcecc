//go:build !linux

package local

import "os/exec"

// setParentDeathSignal does nothing where the system has no parent-death
// signal: there, the terminal's hangup is what ends a command whose
// recorder died.
func setParentDeathSignal(*exec.Cmd) {}
