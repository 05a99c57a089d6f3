package interop

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel kill the child when the test process dies,
// so that a crashed or timed-out test run leaves no engine or worker behind.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
