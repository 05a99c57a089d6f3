package metrics

import (
	"sort"
	"strconv"
)

// Stats summarizes a histogram and a set of counts, for the console.
type Stats struct {
	Count    uint64            `json:"count"` // all outcomes (void included)
	Errors   uint64            `json:"errors"`
	Outcomes map[string]uint64 `json:"outcomes"`
	// Latency in seconds over the observed (non-void) calls; quantiles are
	// the upper bound of the bucket they fall in.
	MeanSeconds float64 `json:"mean_seconds"`
	P50Seconds  float64 `json:"p50_seconds"`
	P99Seconds  float64 `json:"p99_seconds"`
}

func (h *Histogram) summarize(s *Stats) {
	var counts [17]uint64
	var n uint64
	for i := range counts {
		counts[i] = h.counts[i].Load()
		n += counts[i]
	}
	if n == 0 {
		return
	}
	s.MeanSeconds = float64(h.sum.Load()) / 1e9 / float64(n)
	q := func(p float64) float64 {
		want := uint64(p*float64(n) + 0.5)
		if want == 0 {
			want = 1
		}
		var acc uint64
		for i, c := range counts {
			acc += c
			if acc >= want {
				if i < len(LatencyBuckets) {
					return LatencyBuckets[i]
				}
				return LatencyBuckets[len(LatencyBuckets)-1]
			}
		}
		return LatencyBuckets[len(LatencyBuckets)-1]
	}
	s.P50Seconds, s.P99Seconds = q(0.5), q(0.99)
}

// FunctionStats returns each counted function's invocation summary, by
// function id ("_other" and "_unknown" included when used).
func (m *Metrics) FunctionStats() map[string]Stats {
	out := map[string]Stats{}
	add := func(id string, f *Function) {
		s := Stats{Outcomes: map[string]uint64{}}
		for o := range numOutcomes {
			if n := f.outcomes[o].Load(); n > 0 {
				s.Outcomes[outcomeNames[o]] = n
				s.Count += n
				if o != OutcomeOK && o != OutcomeVoid {
					s.Errors += n
				}
			}
		}
		if s.Count == 0 {
			return
		}
		f.latency.summarize(&s)
		out[id] = s
	}
	m.fns.Range(func(k, v any) bool {
		add(k.(string), v.(*Function))
		return true
	})
	add("_other", &m.other)
	add("_unknown", &m.unknown)
	return out
}

// RouteStats is one HTTP route's requests.
type RouteStats struct {
	Route    string            `json:"route"`
	Count    uint64            `json:"count"`
	ByStatus map[string]uint64 `json:"by_status"`
	Errors   uint64            `json:"errors"` // status >= 500
	// Latency over all statuses, in seconds.
	MeanSeconds float64 `json:"mean_seconds"`
}

// HTTPStats returns the HTTP trigger requests by route, sorted by route.
func (m *Metrics) HTTPStats() []RouteStats {
	byRoute := map[string]*RouteStats{}
	sums := map[string]int64{}
	m.http.Range(func(k, v any) bool {
		key, s := k.(httpKey), v.(*httpSeries)
		r := byRoute[key.route]
		if r == nil {
			r = &RouteStats{Route: key.route, ByStatus: map[string]uint64{}}
			byRoute[key.route] = r
		}
		n := s.n.Load()
		r.Count += n
		r.ByStatus[strconv.Itoa(key.status)] += n
		if key.status >= 500 {
			r.Errors += n
		}
		sums[key.route] += s.latency.sum.Load()
		return true
	})
	out := make([]RouteStats, 0, len(byRoute))
	for k, r := range byRoute {
		if r.Count > 0 {
			r.MeanSeconds = float64(sums[k]) / 1e9 / float64(r.Count)
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Route < out[j].Route })
	return out
}
