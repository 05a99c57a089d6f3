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

// setGroup puts the child in a process group of its own (with its
// children: a browser's renderers), killed together by killGroup.
func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
