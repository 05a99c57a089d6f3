//go:build !linux

package interop

import "os/exec"

// setPdeathsig is Linux-only; elsewhere children are only stopped by the
// tests' cleanups.
func setPdeathsig(*exec.Cmd) {}

func setGroup(*exec.Cmd) {}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}
