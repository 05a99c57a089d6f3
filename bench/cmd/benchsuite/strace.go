package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// straceRun counts the system calls of a target's middle processes during
// one run (-strace).
type straceRun struct {
	target string
	cmds   []*exec.Cmd
	files  []string
}

func startStrace(o *runOpts, e *engine) *straceRun {
	st := &straceRun{target: e.name}
	for i, c := range e.mid {
		f := filepath.Join(o.tmp, fmt.Sprintf("strace-%s-%d-%d.txt", e.name, i, time.Now().UnixNano()))
		cmd := exec.Command("strace", "-c", "-f", "-o", f, "-p", strconv.Itoa(c.pid()))
		cmd.Stderr = nil
		if err := cmd.Start(); err != nil {
			fmt.Printf("strace: %v\n", err)
			continue
		}
		st.cmds = append(st.cmds, cmd)
		st.files = append(st.files, f)
	}
	time.Sleep(300 * time.Millisecond) // attaching to every thread takes a moment
	return st
}

// report stops strace and prints the calls per op of the most frequent
// system calls.
func (st *straceRun) report(per float64, unit string) {
	for _, cmd := range st.cmds {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	calls := map[string]int64{}
	for _, f := range st.files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			// % time, seconds, usecs/call, calls, [errors], syscall
			if len(fs) < 5 || fs[len(fs)-1] == "total" || fs[len(fs)-1] == "syscall" {
				continue
			}
			n, err := strconv.ParseInt(fs[3], 10, 64)
			if err != nil {
				continue
			}
			calls[fs[len(fs)-1]] += n
		}
	}
	type kv struct {
		k string
		v int64
	}
	var all []kv
	var total int64
	for k, v := range calls {
		all = append(all, kv{k, v})
		total += v
	}
	slices.SortFunc(all, func(a, b kv) int { return int(b.v - a.v) })
	var parts []string
	for _, x := range all[:min(len(all), 7)] {
		parts = append(parts, fmt.Sprintf("%s %.2f", x.k, float64(x.v)/per))
	}
	fmt.Printf("    syscalls/%s of %s's middle: total %.2f: %s\n", unit, st.target, float64(total)/per, strings.Join(parts, ", "))
}
