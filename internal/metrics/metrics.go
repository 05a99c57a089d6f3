// Package metrics counts what the engine does, with atomic counters on the
// hot paths, and writes the Prometheus text exposition format (version
// 0.0.4) on demand. Gauges that the engine already knows (workers,
// functions, channels, queue depth) are read at scrape time instead of
// being counted.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Outcomes of an invocation, the "outcome" label.
const (
	OutcomeOK      = iota // a result
	OutcomeError          // an error from the function or the engine
	OutcomeTimeout        // the engine's or caller's deadline (code TIMEOUT/timeout)
	OutcomeStopped        // the executing connection went away, or shutdown
	OutcomeVoid           // fire-and-forget: handed to the executor, no result
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "error", "timeout", "stopped", "void"}

// LatencyBuckets are the upper bounds, in seconds, of the invocation and
// HTTP latency histograms.
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// bucketNanos are LatencyBuckets in nanoseconds, for the hot path.
var bucketNanos = func() []int64 {
	b := make([]int64, len(LatencyBuckets))
	for i, s := range LatencyBuckets {
		b[i] = int64(s * 1e9)
	}
	return b
}()

// Histogram is a latency histogram of atomic counters.
type Histogram struct {
	counts [17]atomic.Uint64 // len(LatencyBuckets)+1: the last is +Inf only
	sum    atomic.Int64      // nanoseconds
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	n := int64(d)
	i := 0
	for i < len(bucketNanos) && n > bucketNanos[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(n)
}

// Function holds one function's invocation counters.
type Function struct {
	outcomes [numOutcomes]atomic.Uint64
	latency  Histogram
}

// Done records a finished non-void invocation that started at start.
func (f *Function) Done(m *Metrics, start time.Time, outcome int) {
	f.DoneAfter(m, time.Since(start), outcome)
}

// DoneAfter is Done for an invocation that took d.
func (f *Function) DoneAfter(m *Metrics, d time.Duration, outcome int) {
	f.latency.Observe(d)
	f.outcomes[outcome].Add(1)
	m.inFlight.Add(-1)
}

// Void records a fire-and-forget invocation.
func (f *Function) Void() { f.outcomes[OutcomeVoid].Add(1) }

// MaxFunctions bounds the number of function label values: invocations of
// further functions are counted under function="_other", and those of
// functions not registered at all under "_unknown", so that neither a
// worker registering ids without end nor callers inventing them can grow
// the scrape without bound.
const MaxFunctions = 2000

// Metrics is the engine's set of counters. The zero value is not usable:
// call New.
type Metrics struct {
	fns      sync.Map // function id -> *Function
	nFns     atomic.Int64
	other    Function
	unknown  Function
	inFlight atomic.Int64

	// Feed is the live feed of finished invocations (feed.go).
	Feed Feed

	http  sync.Map // httpKey -> *httpSeries
	nHTTP atomic.Int64

	start time.Time
}

type httpKey struct {
	route  string
	status int
}

type httpSeries struct {
	n       atomic.Uint64
	latency Histogram
}

// New returns empty metrics.
func New() *Metrics {
	return &Metrics{start: time.Now()}
}

// Function returns the counters of a function; registered says whether
// the id names a registered function.
func (m *Metrics) Function(id string, registered bool) *Function {
	if !registered {
		return &m.unknown
	}
	if f, ok := m.fns.Load(id); ok {
		return f.(*Function)
	}
	if m.nFns.Load() >= MaxFunctions {
		return &m.other
	}
	// The id may alias a whole decoded frame (wire's fast decoder): keep
	// a copy as the key so that the frame is not retained for good.
	f, loaded := m.fns.LoadOrStore(strings.Clone(id), new(Function))
	if !loaded {
		m.nFns.Add(1)
	}
	return f.(*Function)
}

// Started counts an invocation in flight; Function.Done ends it.
func (m *Metrics) Started() { m.inFlight.Add(1) }

// InFlight is the number of non-void invocations awaiting their result.
func (m *Metrics) InFlight() int64 { return m.inFlight.Load() }

// HTTP records one HTTP trigger request. route is the matched route
// ("" when none matched: counted as route="_none"); status 499 means the
// client left before an answer.
func (m *Metrics) HTTP(route string, status int, d time.Duration) {
	if route == "" {
		route = "_none"
	}
	k := httpKey{route, status}
	v, ok := m.http.Load(k)
	if !ok {
		if m.nHTTP.Load() >= MaxFunctions {
			k.route = "_other"
		}
		var loaded bool
		if v, loaded = m.http.LoadOrStore(k, new(httpSeries)); !loaded {
			m.nHTTP.Add(1)
		}
	}
	s := v.(*httpSeries)
	s.n.Add(1)
	s.latency.Observe(d)
}

// Gauges are values read from the engine at scrape time.
type Gauges struct {
	Workers, Functions, Channels int
	ChannelBufferedBytes         int64
	ChannelFrames, ChannelBytes  uint64
	ChannelsAborted              uint64
	Queues                       []QueueGauge
}

// QueueGauge is one queue's state.
type QueueGauge struct {
	Name                 string
	Depth, InFlight, DLQ int64
}

// Write writes every metric in the Prometheus text format.
func (m *Metrics) Write(w io.Writer, g Gauges) error {
	bw := bufio.NewWriter(w)
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", name, help, name, name, num(v))
	}
	counter := func(name, help string, v float64) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s counter\n%s %s\n", name, help, name, name, num(v))
	}
	gauge("sluice_workers_connected", "Worker connections open.", float64(g.Workers))
	gauge("sluice_functions_registered", "Functions registered, the engine's own included.", float64(g.Functions))
	gauge("sluice_invocations_in_flight", "Invocations awaiting their result.", float64(m.inFlight.Load()))

	type fnEntry struct {
		id string
		f  *Function
	}
	var fns []fnEntry
	m.fns.Range(func(k, v any) bool {
		fns = append(fns, fnEntry{k.(string), v.(*Function)})
		return true
	})
	sort.Slice(fns, func(i, j int) bool { return fns[i].id < fns[j].id })
	fns = append(fns, fnEntry{"_other", &m.other}, fnEntry{"_unknown", &m.unknown})

	fmt.Fprintf(bw, "# HELP sluice_invocations_total Invocations by function and outcome (ok, error, timeout, stopped, void).\n# TYPE sluice_invocations_total counter\n")
	for _, e := range fns {
		for o := range numOutcomes {
			if n := e.f.outcomes[o].Load(); n > 0 {
				fmt.Fprintf(bw, "sluice_invocations_total{function=%s,outcome=%q} %d\n", label(e.id), outcomeNames[o], n)
			}
		}
	}
	fmt.Fprintf(bw, "# HELP sluice_invocation_duration_seconds Time from routing an invocation to its result (void calls excluded).\n# TYPE sluice_invocation_duration_seconds histogram\n")
	for _, e := range fns {
		writeHistogram(bw, "sluice_invocation_duration_seconds", "function="+label(e.id), &e.f.latency)
	}

	var keys []httpKey
	series := map[httpKey]*httpSeries{}
	m.http.Range(func(k, v any) bool {
		keys = append(keys, k.(httpKey))
		series[k.(httpKey)] = v.(*httpSeries)
		return true
	})
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].route != keys[j].route {
			return keys[i].route < keys[j].route
		}
		return keys[i].status < keys[j].status
	})
	fmt.Fprintf(bw, "# HELP sluice_http_requests_total HTTP trigger requests by route and status (499: the client left first).\n# TYPE sluice_http_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(bw, "sluice_http_requests_total{route=%s,status=\"%d\"} %d\n", label(k.route), k.status, series[k].n.Load())
	}
	fmt.Fprintf(bw, "# HELP sluice_http_request_duration_seconds HTTP trigger request time, to the end of the response.\n# TYPE sluice_http_request_duration_seconds histogram\n")
	for _, k := range keys {
		writeHistogram(bw, "sluice_http_request_duration_seconds", fmt.Sprintf("route=%s,status=\"%d\"", label(k.route), k.status), &series[k].latency)
	}

	gauge("sluice_channels_active", "Channels open.", float64(g.Channels))
	gauge("sluice_channel_buffered_bytes", "Bytes buffered in channels.", float64(g.ChannelBufferedBytes))
	counter("sluice_channel_frames_total", "Data frames received from channel writer sockets.", float64(g.ChannelFrames))
	counter("sluice_channel_bytes_total", "Payload bytes received from channel writer sockets.", float64(g.ChannelBytes))
	counter("sluice_channels_aborted_total", "Channels whose writer broke off (lost connection, oversized frame, protocol error).", float64(g.ChannelsAborted))

	for _, q := range []struct {
		name, help string
		v          func(QueueGauge) int64
	}{
		{"sluice_queue_depth", "Jobs of a queue not yet done: waiting, backing off or in flight.", func(q QueueGauge) int64 { return q.Depth }},
		{"sluice_queue_in_flight", "Jobs of a queue being delivered.", func(q QueueGauge) int64 { return q.InFlight }},
		{"sluice_queue_dlq_depth", "Jobs in a queue's dead-letter queue.", func(q QueueGauge) int64 { return q.DLQ }},
	} {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s gauge\n", q.name, q.help, q.name)
		for _, g := range g.Queues {
			fmt.Fprintf(bw, "%s{queue=%s} %d\n", q.name, label(g.Name), q.v(g))
		}
	}
	writeProcess(bw, m.start)
	return bw.Flush()
}

func writeHistogram(w io.Writer, name, labels string, h *Histogram) {
	var cum uint64
	var counts [17]uint64
	for i := range counts {
		counts[i] = h.counts[i].Load()
	}
	sum := h.sum.Load()
	for i, b := range LatencyBuckets {
		cum += counts[i]
		fmt.Fprintf(w, "%s_bucket{%s,le=\"%s\"} %d\n", name, labels, num(b), cum)
	}
	cum += counts[len(LatencyBuckets)]
	fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n", name, labels, cum)
	fmt.Fprintf(w, "%s_sum{%s} %s\n", name, labels, num(float64(sum)/1e9))
	fmt.Fprintf(w, "%s_count{%s} %d\n", name, labels, cum)
}

// label quotes a label value as the text format wants it.
func label(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func num(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
