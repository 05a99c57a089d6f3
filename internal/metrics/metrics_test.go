package metrics

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHistogramBucketsAreInclusive(t *testing.T) {
	var h Histogram
	h.Observe(500 * time.Microsecond) // exactly le=0.0005
	h.Observe(501 * time.Microsecond) // le=0.001
	h.Observe(2 * time.Minute)        // +Inf only
	if h.counts[0].Load() != 1 || h.counts[1].Load() != 1 || h.counts[len(LatencyBuckets)].Load() != 1 {
		t.Errorf("counts: %d %d %d", h.counts[0].Load(), h.counts[1].Load(), h.counts[len(LatencyBuckets)].Load())
	}
	var b strings.Builder
	writeHistogram(&b, "x", `f="a"`, &h)
	out := b.String()
	for _, want := range []string{`x_bucket{f="a",le="0.0005"} 1`, `x_bucket{f="a",le="0.001"} 2`, `x_bucket{f="a",le="60"} 2`,
		`x_bucket{f="a",le="+Inf"} 3`, `x_count{f="a"} 3`, `x_sum{f="a"} 120.001001`} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestLabelEscaping(t *testing.T) {
	if got := label("a\"b\\c\nd"); got != `"a\"b\\c\nd"` {
		t.Errorf("label = %s", got)
	}
}

// A registry of MaxFunctions functions does not grow further: more
// functions share "_other", unregistered ids share "_unknown".
func TestFunctionCardinalityIsBounded(t *testing.T) {
	m := New()
	for i := range MaxFunctions {
		m.Function(fmt.Sprint("f", i), true).Void()
	}
	if f := m.Function("one-more", true); f != &m.other {
		t.Errorf("function %d got a series of its own", MaxFunctions+1)
	}
	if f := m.Function("f1", true); f == &m.other {
		t.Errorf("a known function lost its series")
	}
	if f := m.Function("nope", false); f != &m.unknown {
		t.Errorf("an unregistered id got a series")
	}
	for i := range MaxFunctions + 10 {
		m.HTTP(fmt.Sprint("GET /r", i), 200, time.Millisecond)
	}
	n := 0
	m.http.Range(func(any, any) bool { n++; return true })
	if n > MaxFunctions+1 {
		t.Errorf("%d HTTP series", n)
	}
}

func TestConcurrentCountsAreExact(t *testing.T) {
	m := New()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				f := m.Function("f", true)
				m.Started()
				f.Done(m, time.Now(), OutcomeOK)
			}
		})
	}
	wg.Wait()
	var b strings.Builder
	if err := m.Write(&b, Gauges{Queues: []QueueGauge{{Name: "q", Depth: 3, DLQ: 1}}}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{`sluice_invocations_total{function="f",outcome="ok"} 8000`, `sluice_invocation_duration_seconds_count{function="f"} 8000`,
		"sluice_invocations_in_flight 0", `sluice_queue_depth{queue="q"} 3`, `sluice_queue_dlq_depth{queue="q"} 1`, "go_goroutines "} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q", want)
		}
	}
}
