package local

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal asks the kernel to SIGKILL cmd when the thread that
// starts it exits (PR_SET_PDEATHSIG).
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
