package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
)

// perOp is one run's CPU per operation (per MiB for MB/s workloads), µs.
type perOp struct {
	client, mid, end, machine, nice float64
	busy                            float64 // the machine's busy time ÷ the cores' time in the window
}

// cpuTable is one workload's CPU per op on every side, per target and
// repetition, and what its floors need.
type cpuTable struct {
	w      workload
	unit   string // "op" or "MiB"
	order  []string
	floorT map[string]bool // targets whose far end is the worker (the engines)
	per    map[string][]perOp
	value  map[string][]float64 // the workload's metric
}

// med is the median of each field over t's repetitions.
func (tab cpuTable) med(t string) (perOp, bool) {
	ps := tab.per[t]
	if len(ps) == 0 {
		return perOp{}, false
	}
	f := func(g func(perOp) float64) float64 {
		v := make([]float64, len(ps))
		for i, p := range ps {
			v[i] = g(p)
		}
		return median(v)
	}
	return perOp{client: f(func(p perOp) float64 { return p.client }), mid: f(func(p perOp) float64 { return p.mid }),
		end: f(func(p perOp) float64 { return p.end }), machine: f(func(p perOp) float64 { return p.machine }),
		nice: f(func(p perOp) float64 { return p.nice }), busy: f(func(p perOp) float64 { return p.busy })}, true
}

func (tab cpuTable) main() string {
	if tab.w.main != "" {
		return tab.w.main
	}
	return "sluice"
}

// printCPUTable prints, per workload and target, the medians of the CPU
// per op of the client processes, the middle, the far end and the whole
// machine (which also counts everyone else on it: "machine − counted").
func printCPUTable(tabs []cpuTable) {
	fmt.Println()
	fmt.Println("CPU per op: client / middle / far end / machine (µs per op, per MiB for MB/s workloads; medians over the repetitions)")
	fmt.Println()
	fmt.Println("| workload | target | per | client | middle | far end | counted (sum) | machine | machine − counted | of machine: nice | machine busy |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, tab := range tabs {
		for _, t := range tab.order {
			p, ok := tab.med(t)
			if !ok {
				continue
			}
			counted := p.client + p.mid + p.end
			mach, other, nice, busy := "—", "—", "—", "—"
			if p.machine > 0 {
				mach, other, nice, busy = fmt.Sprintf("%.1f", p.machine), fmt.Sprintf("%.1f", p.machine-counted), fmt.Sprintf("%.1f", p.nice), fmt.Sprintf("%.0f%%", 100*p.busy)
			}
			fmt.Printf("| %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %s | %s | %s | %s |\n",
				tab.w.name, t, tab.unit, p.client, p.mid, p.end, counted, mach, other, nice, busy)
		}
	}
}

// printFloors prints, for each goal against a baseline, what the CPU
// counted per op allows. Throughput: a middle using no CPU at all, with
// the client and far end using what they were measured to use per op (the
// least over the targets whose far end is the same worker), needs
// (client + end) µs of the cores' time per op: ops/s ≤ cores ÷
// (client + end), an upper bound; the most CPU per op a middle may use for
// the goal; where the machine was saturated in both runs (the other
// helpers' load included), the same-CPU bound: ratio ≤ the baseline's
// client + middle + far end ÷ (client + end); and the bound with the
// cheapest middle measured. With one op in flight CPU per op gives no
// bound (part of it is off the op's path: the Go scheduler spinning for
// work, GC; a serial run's CPU per op exceeds its wall time per op), so
// the wall time the goal allows is set beside the client's and far end's
// CPU per op, as evidence. The best target measured is the reference.
func printFloors(tabs []cpuTable) {
	cores := runtime.NumCPU()
	fmt.Println()
	fmt.Printf("## floors: the best Sluice ÷ baseline a middle could reach, from the CPU per op above and %d cores (upper bounds where it says bound; other load on the machine only lowers those)\n", cores)
	fmt.Println()
	for _, tab := range tabs {
		mainName := tab.main()
		mainP, ok := tab.med(mainName)
		if !ok {
			continue
		}
		// The least client + far end over the engines (or the main target).
		ce, ceName := math.Inf(1), ""
		var ceP perOp
		for _, t := range tab.order {
			p, ok := tab.med(t)
			if !ok || p.client <= 0 || !(tab.floorT[t] || t == mainName) {
				continue
			}
			if v := p.client + p.end; v < ce {
				ce, ceName, ceP = v, t, p
			}
		}
		// The cheapest middle measured, and the best value measured.
		cheap, cheapName := math.Inf(1), ""
		best, bestName := 0.0, ""
		for _, t := range tab.order {
			if p, ok := tab.med(t); ok && p.mid > 0 && p.mid < cheap {
				cheap, cheapName = p.mid, t
			}
			if v := median(tab.value[t]); v > 0 && (bestName == "" || (v < best) == tab.w.lowerBetter && v != best) {
				best, bestName = v, t
			}
		}
		u := tab.unit
		for _, g := range tab.w.goals {
			base := median(tab.value[g.baseline])
			if g.ratio == 0 || base <= 0 {
				continue
			}
			fmt.Printf("- %s vs %s (goal %s %.1f×, %s %.1f %s):\n", tab.w.name, g.baseline,
				map[bool]string{true: "≤", false: "≥"}[tab.w.lowerBetter], g.ratio, g.baseline, base, tab.w.metric)
			// Metric units per op: MB per MiB for MB/s, else 1.
			f, conv := 1.0, ""
			if u == "MiB" {
				f, conv = float64(1<<20)/1e6, " × 1.048576"
			}
			if !tab.w.lowerBetter && ceName != "" {
				bound := float64(cores) * 1e6 / ce * f
				need := g.ratio * base / f // ops/s the goal needs
				budget := float64(cores)*1e6/need - ce
				ratio := bound / base
				fmt.Printf("  bound (the %d cores all the suite's): client %.1f + far end %.1f = %.1f µs/%s (%s's, the least over %s); %d × 10⁶ ÷ %.1f%s = %.0f %s ⇒ ratio ≤ %.2f: %s\n",
					cores, ceP.client, ceP.end, ce, u, ceName, floorNames(tab, mainName), cores, ce, conv, bound, tab.w.metric, ratio,
					verdict(ratio >= g.ratio, fmt.Sprintf("%d × 10⁶ ÷ %.0f − %.1f", cores, need, ce), budget, u, mainName, mainP.mid))
				if s := leastAgainst(tab, budget, nil); s != "" {
					fmt.Printf("    against this budget, %.1f µs/%s: %s\n", budget, u, s)
				}
				// Where the machine was saturated in both runs (other
				// helpers' load included), each run got what CPU it got:
				// with the same, a middle using none does at most the
				// baseline's CPU per op ÷ (client + far end).
				if bp, ok := tab.med(g.baseline); ok && !tab.w.serial && bp.busy >= 0.9 && mainP.busy >= 0.9 {
					bc := bp.client + bp.mid + bp.end
					r := bc / ce
					fmt.Printf("  same-CPU bound (the machine busy %.0f%% in %s's windows, %.0f%% in %s's: CPU-bound; if %s's processes get the CPU %s's got): %s's client + middle + far end %.1f µs/%s ÷ %.1f ⇒ ratio ≤ %.2f: %s\n",
						100*bp.busy, g.baseline, 100*mainP.busy, mainName, mainName, g.baseline, g.baseline, bc, u, ce, r,
						verdict(r >= g.ratio, fmt.Sprintf("%.1f ÷ %.1f − %.1f", bc, g.ratio, ce), bc/g.ratio-ce, u, mainName, mainP.mid))
					if s := leastAgainst(tab, bc/g.ratio-ce, func(mid float64) float64 { return bc / (ce + mid) }); s != "" {
						fmt.Printf("    against this budget, %.1f µs/%s: %s\n", bc/g.ratio-ce, u, s)
					}
				}
				// A middle doing only part of main's work: main's middle
				// uses at least its CPU per op, set against the budget.
				for _, l := range tab.w.least {
					lp, ok := tab.med(l)
					if !ok || tab.w.serial || lp.mid <= 0 {
						continue
					}
					b := float64(cores) * 1e6 / (ce + lp.mid) * f
					fmt.Printf("  the least such a middle does (%s's middle, %.1f µs/%s): %d × 10⁶ ÷ (%.1f + %.1f)%s = %.0f %s ⇒ ratio ≤ %.2f\n",
						l, lp.mid, u, cores, ce, lp.mid, conv, b, tab.w.metric, b/base)
				}
				if cheapName != "" {
					b := float64(cores) * 1e6 / (ce + cheap) * f
					fmt.Printf("  with the cheapest middle measured (%s, %.1f µs/%s): %d × 10⁶ ÷ %.1f%s = %.0f %s ⇒ ratio ≤ %.2f\n",
						cheapName, cheap, u, cores, ce+cheap, conv, b, tab.w.metric, b/base)
				}
			}
			if tab.w.serial && ceName != "" {
				// One op in flight: the wall time per op the goal allows,
				// against the CPU the client and far end use per op. Not
				// a bound: part of the CPU is off the op's path (the Go
				// scheduler spinning for work, GC), as a run's CPU per op
				// above its wall time per op shows.
				wall := g.ratio * base // p50 µs
				what := "p50"
				if !tab.w.lowerBetter {
					wall, what = 1e6*f/(g.ratio*base), "wall time per op"
				}
				mainWall := median(tab.value[mainName])
				if !tab.w.lowerBetter {
					mainWall = 1e6 * f / mainWall
				}
				fmt.Printf("  one op in flight (evidence, not a bound): the goal needs %s ≤ %.1f µs; the client and far end alone use %.1f µs of CPU per op (%s's; %s's client + middle + far end: %.1f µs of CPU per op, %.1f µs of %s)\n",
					what, wall, ce, ceName, mainName, mainP.client+mainP.mid+mainP.end, mainWall, what)
			}
			if bestName != "" && bestName != g.baseline {
				fmt.Printf("  reference, not a bound: the best target measured, %s, %.1f %s ⇒ ratio %.2f\n", bestName, best, tab.w.metric, best/base)
			}
		}
	}
}

func floorNames(tab cpuTable, mainName string) string {
	var ns []string
	for _, t := range tab.order {
		if _, ok := tab.med(t); ok && (tab.floorT[t] || t == mainName) && !slices.Contains(ns, t) {
			ns = append(ns, t)
		}
	}
	return strings.Join(ns, ", ")
}

func verdict(reachable bool, arith string, budget float64, unit, mainName string, mainMid float64) string {
	if !reachable || budget <= 0 {
		return "OUT OF REACH, whatever the middle does"
	}
	return fmt.Sprintf("the goal needs a middle using ≤ %s = %.1f µs/%s (%s's middle: %.1f)", arith, budget, unit, mainName, mainMid)
}

// leastAgainst sets the middle CPU per op of the workload's least targets
// (middles doing only part of the main target's work) against a budget
// for the main target's middle, and with ratioOf the ratio a middle using
// as much would reach; "" when there are none.
func leastAgainst(tab cpuTable, budget float64, ratioOf func(mid float64) float64) string {
	if tab.w.serial {
		return ""
	}
	mainName := tab.main()
	mainP, _ := tab.med(mainName)
	var parts []string
	for _, l := range tab.w.least {
		lp, ok := tab.med(l)
		if !ok || lp.mid <= 0 {
			continue
		}
		var p string
		if lp.mid >= budget {
			p = fmt.Sprintf("%s's middle %.1f is %.1f over it: OUT OF REACH for any middle doing at least %s's work", l, lp.mid, lp.mid-budget, l)
		} else {
			p = fmt.Sprintf("%s's middle %.1f leaves %.1f for the rest (%s's middle: %.1f above %s's)", l, lp.mid, budget-lp.mid, mainName, mainP.mid-lp.mid, l)
		}
		if ratioOf != nil {
			p += fmt.Sprintf(" (a middle using as much: ratio ≤ %.2f)", ratioOf(lp.mid))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}
