//go:build !unix

package sluice_test

import (
	"testing"
	"time"
)

// processCPU is not measured here (the CPU ratio is then NaN).
func processCPU(*testing.B) time.Duration { return 0 }
