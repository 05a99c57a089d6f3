package interop

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// TestCompetingWorkersPython25: two official Python 0.25 workers register
// the same function id and subscribe it to one durable topic. As upstream
// (one live owner per (namespace, id)), the first keeps the id: direct calls
// and topic deliveries go to it and the second is refused
// (FUNCTION_NAMESPACE_CONFLICT). When the owner stops, the second, still
// connected, takes the id over and gets the next calls and deliveries;
// nothing published is lost.
// On 25c1da9: the second registration was never refused (last
// registration won: the second worker took the id over at once).
func TestCompetingWorkersPython25(t *testing.T) {
	py := flavourNamed("python-0.25.0")
	py.require(t)
	e, _ := startQueueEngine(t)
	c := connectGo(t, e, "compete-go")
	ctx := ctxFor(t, time.Minute)

	a := startWorker(t, py, e, "namespaces.py", "cwa", "FNS=comp::work", "SUBSCRIBE=jobs")
	waitOwned(ctx, t, c, "cwa", "comp::work")
	b := startWorker(t, py, e, "namespaces.py", "cwb", "FNS=comp::work", "SUBSCRIBE=jobs")
	if _, err := e.stderr.wait(ctx, func(s string) bool {
		return strings.Contains(s, "registerfunction refused: another live worker holds the id") && strings.Contains(s, "comp::work")
	}); err != nil {
		t.Fatalf("the second registration was not refused: %v", err)
	}
	waitOwned(ctx, t, c, "", "cwb::call")

	who := func() string {
		t.Helper()
		out, err := sluice.Call[nsWho](ctx, c, "comp::work", map[string]any{})
		if err != nil {
			t.Fatalf("comp::work: %v", err)
		}
		return out.Worker
	}
	if w := who(); w != "cwa" {
		t.Fatalf("comp::work answered by %s; want the owner cwa", w)
	}
	if err := c.PublishDurable(ctx, "jobs", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	// Two CALLED lines on a: the direct call and the delivery.
	if _, err := a.stdout.wait(ctx, nthLine("CALLED comp::work", 2)); err != nil {
		t.Fatalf("the owner did not get the delivery: %v", err)
	}

	a.stop(t)
	waitOwned(ctx, t, c, "cwb", "comp::work")
	if w := who(); w != "cwb" {
		t.Fatalf("comp::work after the owner stopped answered by %s; want cwb", w)
	}
	if err := c.PublishDurable(ctx, "jobs", map[string]int{"n": 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.stdout.wait(ctx, nthLine("CALLED comp::work", 2)); err != nil {
		t.Fatalf("the new owner did not get the delivery: %v", err)
	}
	if n := countLines(b.stdout, "CALLED comp::work"); n != 2 {
		t.Errorf("cwb was called %d times; want 2 (one call, one delivery)", n)
	}
}

// nthLine matches the n-th line equal to line (lineLog.wait passes each
// line to its matcher once, in order).
func nthLine(line string, n int) func(string) bool {
	seen := 0
	return func(s string) bool {
		if s == line {
			seen++
		}
		return seen >= n
	}
}

// countLines counts the lines of l equal to line.
func countLines(l *lineLog, line string) int {
	n := 0
	for _, s := range strings.Split(l.String(), "\n") {
		if strings.TrimSpace(s) == line {
			n++
		}
	}
	return n
}
