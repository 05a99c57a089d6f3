//go:build !linux

package interop

import "os/exec"

// setPdeathsig is Linux-only; elsewhere children are only stopped by the
// tests' cleanups.
func setPdeathsig(*exec.Cmd) {}
