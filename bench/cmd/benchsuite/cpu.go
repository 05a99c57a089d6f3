package main

import (
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU per operation on every side of the middle: the client processes,
// the middle, the far end, and the whole machine (which also holds other
// users' work: the nice part and "machine − counted" say how much).

// taskRuntimes is the run time (ns) of each of pid's threads so far, from
// /proc/PID/task/TID/schedstat: exact, where /proc/PID/stat counts 10 ms
// ticks, too coarse for batches of a few milliseconds. Without schedstat
// one entry, -1, holds procCPU.
func taskRuntimes(pid int) map[int]int64 {
	dirs, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	m := make(map[int]int64, len(dirs))
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, d.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		tid, err1 := strconv.Atoi(d.Name())
		if len(f) == 0 || err1 != nil {
			continue
		}
		if ns, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			m[tid] = ns
		}
	}
	if len(m) == 0 {
		m[-1] = int64(procCPU(pid))
	}
	return m
}

// runtimeSince is pid's CPU time since before (taskRuntimes): threads
// started since count whole; a thread that ended since loses its share.
func runtimeSince(pid int, before map[int]int64) time.Duration {
	var d int64
	for tid, ns := range taskRuntimes(pid) {
		d += ns - before[tid]
	}
	return time.Duration(max(d, 0))
}

// selfCPU is this process's CPU time so far (user + system, all threads).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// exitedCPU is the CPU time (user + system) of an ended child, from its
// wait status (0 while it runs).
func exitedCPU(c *child) time.Duration {
	select {
	case <-c.done:
	default:
		return 0
	}
	if ps := c.cmd.ProcessState; ps != nil {
		return ps.UserTime() + ps.SystemTime()
	}
	return 0
}

// machineCPU is the whole machine's busy time so far, over all CPUs, from
// /proc/stat's "cpu" line (USER_HZ: 100 a second): user + nice + system +
// irq + softirq (not idle, iowait, steal); and of it the nice part (the
// other helpers' builds and tests run niced, the suite does not).
func machineCPU() (busy, nice time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	v := make([]int64, 7)
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	// user nice system idle iowait irq softirq
	tick := 10 * time.Millisecond
	return time.Duration(v[0]+v[1]+v[2]+v[5]+v[6]) * tick, time.Duration(v[1]) * tick
}

// batchCounter adds up, over the batches a load process runs on one
// target, the CPU time of that target's middle and far-end processes, the
// middle's context switches, the load process's own CPU, and the
// machine's: the driver's counts over the whole load process would mix
// the targets it alternates between, and count the warm-up.
type batchCounter struct {
	mid, end             []int
	midCPU, endCPU, self time.Duration
	machine, nice, wall  time.Duration
	switches             int64
	batches              int
}

// parseCounters parses -midpids and -endpids: one group per target,
// comma-separated, pids joined by '+'. Targets without a group count no
// process of theirs (the load process and the machine still count).
func parseCounters(mid, end string, n int) []*batchCounter {
	out := make([]*batchCounter, n)
	pids := func(s string, i int) []int {
		groups := strings.Split(s, ",")
		if s == "" || i >= len(groups) {
			return nil
		}
		var ps []int
		for _, p := range strings.Split(groups[i], "+") {
			if pid, err := strconv.Atoi(p); err == nil {
				ps = append(ps, pid)
			}
		}
		return ps
	}
	for i := range out {
		out[i] = &batchCounter{mid: pids(mid, i), end: pids(end, i)}
	}
	return out
}

// start begins a measured batch; the function returned ends it. The load
// process's own CPU is read innermost, so reading /proc for the others
// is not counted as its work.
func (m *batchCounter) start() func() {
	mach0, nice0 := machineCPU()
	t0 := time.Now()
	mid0, end0 := make([]map[int]int64, len(m.mid)), make([]map[int]int64, len(m.end))
	var cs0 int64
	for i, p := range m.mid {
		mid0[i] = taskRuntimes(p)
		cs0 += procSwitches(p)
	}
	for i, p := range m.end {
		end0[i] = taskRuntimes(p)
	}
	self0 := selfCPU()
	return func() {
		m.self += selfCPU() - self0
		for i, p := range m.end {
			m.endCPU += runtimeSince(p, end0[i])
		}
		for i, p := range m.mid {
			m.midCPU += runtimeSince(p, mid0[i])
			m.switches += procSwitches(p)
		}
		m.switches -= cs0
		m.wall += time.Since(t0)
		mach, nice := machineCPU()
		m.machine += mach - mach0
		m.nice += nice - nice0
		m.batches++
	}
}

// fill puts the counts into r.
func (m *batchCounter) fill(r *result) {
	if len(m.mid) > 0 {
		r.MidCPUus, r.MidSwitches = m.midCPU.Microseconds(), m.switches
	}
	if len(m.end) > 0 {
		r.EndCPUus = m.endCPU.Microseconds()
	}
	r.ClientCPUus, r.MachineCPUus, r.MachineNiceUs, r.WindowUs = m.self.Microseconds(), m.machine.Microseconds(), m.nice.Microseconds(), m.wall.Microseconds()
}

// pidArgs are the -midpids and -endpids flags of a load process that
// alternates between es.
func pidArgs(es []*engine) []string {
	group := func(cs []*child) string {
		var ps []string
		for _, c := range cs {
			ps = append(ps, fmt.Sprint(c.pid()))
		}
		return strings.Join(ps, "+")
	}
	var mid, end []string
	for _, e := range es {
		mid, end = append(mid, group(e.mid)), append(end, group(e.ends))
	}
	return []string{"-midpids", strings.Join(mid, ","), "-endpids", strings.Join(end, ",")}
}

// phase counts a load process's own CPU and the machine's over its
// measured phase (one target, no batches).
type phase struct {
	self0, mach0, nice0 time.Duration
	t0                  time.Time
}

func startPhase() phase {
	p := phase{t0: time.Now()}
	p.mach0, p.nice0 = machineCPU()
	p.self0 = selfCPU()
	return p
}

// fill puts the counts since startPhase into r.
func (p phase) fill(r *result) {
	r.ClientCPUus = (selfCPU() - p.self0).Microseconds()
	mach, nice := machineCPU()
	r.MachineCPUus, r.MachineNiceUs, r.WindowUs = (mach - p.mach0).Microseconds(), (nice - p.nice0).Microseconds(), time.Since(p.t0).Microseconds()
}

// snapAll and sinceAll: the CPU time of processes cs between two points.
func snapAll(cs []*child) []map[int]int64 {
	m := make([]map[int]int64, len(cs))
	for i, c := range cs {
		m[i] = taskRuntimes(c.pid())
	}
	return m
}

func sinceAll(cs []*child, before []map[int]int64) time.Duration {
	var d time.Duration
	for i, c := range cs {
		d += runtimeSince(c.pid(), before[i])
	}
	return d
}

// startCPUProfile writes a CPU profile to path until the returned stop
// runs (-cpuprofile of the engine and http-bare processes).
func startCPUProfile(path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
