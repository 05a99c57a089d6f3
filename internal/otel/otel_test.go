package otel

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseTraceparent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sc, ok := ParseTraceparent(tp)
	if !ok || !sc.Sampled || sc.Traceparent() != tp {
		t.Fatalf("%s: %+v %v -> %s", tp, sc, ok, sc.Traceparent())
	}
	if sc, ok := ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"); !ok || sc.Sampled {
		t.Errorf("unsampled: %+v %v", sc, ok)
	}
	// A later version with more fields is read by its first four.
	if _, ok := ParseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"); !ok {
		t.Errorf("version 01 with a suffix refused")
	}
	for _, bad := range []string{
		"",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // version 00 is exactly 55
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
	} {
		if _, ok := ParseTraceparent(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

// collector is an in-test OTLP/HTTP receiver.
type collector struct {
	*httptest.Server
	mu     sync.Mutex
	bodies map[string][][]byte
	got    chan string
	block  chan struct{} // non-nil: requests wait on it
}

func newCollector(t *testing.T) *collector {
	c := &collector{bodies: map[string][][]byte{}, got: make(chan string, 1024)}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.block != nil {
			<-c.block
		}
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Key") != "k1" {
			http.Error(w, "bad headers", 400)
			return
		}
		c.mu.Lock()
		c.bodies[r.URL.Path] = append(c.bodies[r.URL.Path], b)
		c.mu.Unlock()
		c.got <- r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(c.Close)
	return c
}

type exportedSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Kind         int    `json:"kind"`
	Start        string `json:"startTimeUnixNano"`
	End          string `json:"endTimeUnixNano"`
	Attributes   []struct {
		Key   string         `json:"key"`
		Value map[string]any `json:"value"`
	} `json:"attributes"`
	Status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
}

func decodeSpans(t *testing.T, b []byte) (service string, spans []exportedSpan) {
	t.Helper()
	var req struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []struct {
					Key   string         `json:"key"`
					Value map[string]any `json:"value"`
				} `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Spans []exportedSpan `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, b)
	}
	for _, rs := range req.ResourceSpans {
		for _, a := range rs.Resource.Attributes {
			if a.Key == "service.name" {
				service, _ = a.Value["stringValue"].(string)
			}
		}
		for _, ss := range rs.ScopeSpans {
			spans = append(spans, ss.Spans...)
		}
	}
	return service, spans
}

func TestExporterSpans(t *testing.T) {
	c := newCollector(t)
	x, err := New(Config{Endpoint: c.URL + "/", Headers: map[string]string{"X-Key": "k1"}, ServiceName: "svc", ServiceVersion: "1.2", FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Shutdown(context.Background())

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	s, tp := x.StartSpan("invoke", `a::"b"`, KindClient, parent)
	sc, ok := ParseTraceparent(tp)
	if !ok || sc.Trace != s.Trace || sc.Span != s.Span || tp[3:35] != parent[3:35] || tp[36:52] == parent[36:52] {
		t.Fatalf("continuing traceparent %s from %s", tp, parent)
	}
	s.SetString("iii.function.id", `a::"b"`)
	s.SetInt("n", 7)
	s.SetBool("void", true)
	s.SetString("empty", "")
	s.Error, s.ErrorMessage = true, "boom\n"
	x.End(s)
	root, rootTP := x.StartSpan("GET", "/x", KindServer, "not a traceparent")
	x.End(root)
	if n, tp2 := x.StartSpan("n", "", KindClient, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"); n != nil || !strings.HasSuffix(tp2, "-00") {
		t.Fatalf("an unsampled parent was recorded")
	}
	if err := x.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	bodies := c.bodies["/v1/traces"]
	c.mu.Unlock()
	if len(bodies) != 1 {
		t.Fatalf("%d trace exports, want 1 batch", len(bodies))
	}
	svc, spans := decodeSpans(t, bodies[0])
	if svc != "svc" || len(spans) != 2 {
		t.Fatalf("service %q, %d spans:\n%s", svc, len(spans), bodies[0])
	}
	a, b := spans[0], spans[1]
	if a.TraceID != parent[3:35] || a.ParentSpanID != parent[36:52] || a.SpanID != tp[36:52] || a.Name != `invoke a::"b"` || a.Kind != 3 ||
		a.Status.Code != 2 || a.Status.Message != "boom\n" || len(a.Attributes) != 3 || a.Start == "" || a.Start > a.End && len(a.Start) == len(a.End) {
		t.Errorf("child span: %+v", a)
	}
	if a.Attributes[1].Value["intValue"] != "7" || a.Attributes[2].Value["boolValue"] != true {
		t.Errorf("attributes: %+v", a.Attributes)
	}
	if b.ParentSpanID != "" || b.TraceID != rootTP[3:35] || b.Kind != 2 || b.Status.Code != 0 {
		t.Errorf("root span: %+v", b)
	}
	if st := x.Stats(); st.SpansExported != 2 || st.SpansDropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestExporterForwards(t *testing.T) {
	c := newCollector(t)
	x, err := New(Config{Endpoint: c.URL, Headers: map[string]string{"X-Key": "k1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Shutdown(context.Background())
	buf := []byte(`{"resourceLogs":[]}`)
	x.Forward(Logs, buf)
	copy(buf, "XXXXXXXX") // the exporter copied it
	x.Forward(Metrics, []byte(`{"resourceMetrics":[]}`))
	x.Forward(Traces, []byte(`{"resourceSpans":[]}`))
	for range 3 {
		select {
		case <-c.got:
		case <-time.After(10 * time.Second):
			t.Fatal("forwarded payloads did not arrive")
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if string(c.bodies["/v1/logs"][0]) != `{"resourceLogs":[]}` || string(c.bodies["/v1/metrics"][0]) != `{"resourceMetrics":[]}` || len(c.bodies["/v1/traces"]) != 1 {
		t.Errorf("forwarded: %q", c.bodies)
	}
}

// A collector that does not answer: End and Forward never wait; what does
// not fit is dropped and counted.
func TestExporterBoundedWhenCollectorStalls(t *testing.T) {
	c := newCollector(t)
	c.block = make(chan struct{})
	x, err := New(Config{Endpoint: c.URL, Headers: map[string]string{"X-Key": "k1"}, MaxQueueSpans: 10, MaxBatchSpans: 1, MaxQueueBytes: 100, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 1000 {
		s, _ := x.StartSpan("invoke", "f", KindClient, "")
		x.End(s)
	}
	forwarded := 0
	for range 50 {
		if x.Forward(Logs, make([]byte, 40)) {
			forwarded++
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("1000 spans and 50 frames took %v with a stalled collector", d)
	}
	st := x.Stats()
	// Held: the queue (10), and what the exporter took before it stalled
	// (at most another queue's worth).
	if st.SpansDropped < 1000-2*10 || forwarded > 3 || st.FramesDropped < 47 {
		t.Errorf("with a stalled collector: %+v, %d frames queued", st, forwarded)
	}
	close(c.block)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := x.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if st := x.Stats(); st.SpansExported+st.SpansDropped != 1000 {
		t.Errorf("after shutdown: %+v (every span exported or dropped)", st)
	}
}

func TestExporterFailuresCounted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) }))
	defer srv.Close()
	x, err := New(Config{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := x.StartSpan("a", "", KindClient, "")
	x.End(s)
	x.Forward(Logs, []byte("{}"))
	if err := x.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = x.Shutdown(t.Context())
	if st := x.Stats(); st.ExportFailures != 2 || st.SpansDropped != 1 || st.FramesDropped != 1 {
		t.Errorf("stats %+v", st)
	}
	if got := Redacted("https://user:secret@collector.example:4318"); strings.Contains(got, "secret") {
		t.Errorf("Redacted kept the password: %s", got)
	}
	if _, err := New(Config{Endpoint: "localhost:4318"}); err == nil {
		t.Errorf("an endpoint without a scheme accepted")
	}
}

func BenchmarkStartEnd(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	x, err := New(Config{Endpoint: srv.URL, MaxQueueSpans: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer x.Shutdown(context.Background())
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	b.ReportAllocs()
	for b.Loop() {
		s, _ := x.StartSpan("invoke", "math::add", KindClient, parent)
		s.SetString("iii.function.id", "math::add")
		s.SetString("iii.worker.id", "a0b1c2d3")
		x.End(s)
	}
}

func TestExporterLogs(t *testing.T) {
	c := newCollector(t)
	x, err := New(Config{Endpoint: c.URL, Headers: map[string]string{"X-Key": "k1"}, ServiceName: "engine-svc", FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Shutdown(context.Background())
	tr, _ := ParseTraceID("4BF92F3577B34DA6A3CE929D0E0E4736")
	sp, _ := ParseSpanID("00f067aa0ba902b7")
	a := LogRecord{Time: time.Unix(1, 5), Severity: 13, SeverityText: "WARN", Body: "disk \"low\"", Service: "svc-a", Trace: tr, Span: sp}
	a.SetString("iii.worker.id", "w1")
	x.Log(a)
	x.Log(LogRecord{Time: time.Unix(2, 0), Severity: 9, SeverityText: "INFO", Body: "engine's own"})
	x.Log(LogRecord{Time: time.Unix(3, 0), Severity: 17, SeverityText: "ERROR", Body: "again", Service: "svc-a"})
	if err := x.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	bodies := c.bodies["/v1/logs"]
	c.mu.Unlock()
	if len(bodies) != 1 {
		t.Fatalf("%d log exports, want 1", len(bodies))
	}
	var req struct {
		ResourceLogs []struct {
			Resource struct {
				Attributes []struct {
					Key   string            `json:"key"`
					Value map[string]string `json:"value"`
				} `json:"attributes"`
			} `json:"resource"`
			ScopeLogs []struct {
				LogRecords []struct {
					Time         string `json:"timeUnixNano"`
					Severity     int    `json:"severityNumber"`
					SeverityText string `json:"severityText"`
					Body         struct {
						StringValue string `json:"stringValue"`
					} `json:"body"`
					TraceID    string            `json:"traceId"`
					SpanID     string            `json:"spanId"`
					Attributes []json.RawMessage `json:"attributes"`
				} `json:"logRecords"`
			} `json:"scopeLogs"`
		} `json:"resourceLogs"`
	}
	if err := json.Unmarshal(bodies[0], &req); err != nil {
		t.Fatalf("%v: %s", err, bodies[0])
	}
	if len(req.ResourceLogs) != 2 {
		t.Fatalf("want one resource per service: %s", bodies[0])
	}
	svcA, eng := req.ResourceLogs[0], req.ResourceLogs[1]
	if svcA.Resource.Attributes[0].Value["stringValue"] != "svc-a" || eng.Resource.Attributes[0].Value["stringValue"] != "engine-svc" {
		t.Errorf("resources: %s", bodies[0])
	}
	recs := svcA.ScopeLogs[0].LogRecords
	if len(recs) != 2 || recs[0].Body.StringValue != `disk "low"` || recs[0].Severity != 13 || recs[0].SeverityText != "WARN" ||
		recs[0].Time != "1000000005" || recs[0].TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || recs[0].SpanID != "00f067aa0ba902b7" ||
		len(recs[0].Attributes) != 1 || recs[1].Body.StringValue != "again" || recs[1].TraceID != "" {
		t.Errorf("svc-a records: %s", bodies[0])
	}
	if st := x.Stats(); st.LogsExported != 3 || st.LogsDropped != 0 {
		t.Errorf("stats %+v", st)
	}
	if _, ok := ParseTraceID("00000000000000000000000000000000"); ok {
		t.Errorf("an all-zero trace id parsed")
	}
}
