package invocation

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/otel"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

func testExporter(t testing.TB) *otel.Exporter {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	t.Cleanup(srv.Close)
	x, err := otel.New(otel.Config{Endpoint: srv.URL, MaxQueueSpans: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Shutdown(context.Background()) })
	return x
}

// tpExecutor keeps every invocation and records the traceparent it got.
type tpExecutor struct{ got chan string }

func (tpExecutor) OwnerID() string { return "h" }
func (e tpExecutor) Deliver(req *Request) error {
	e.got <- req.Traceparent
	return nil
}

// With a tracer, the executor is handed the span's context, and every way
// an invocation ends ends its span exactly once.
func TestTracedInvocations(t *testing.T) {
	reg := registry.New()
	l := NewLocal(context.Background(), reg)
	x := testExporter(t)
	l.SetTracer(x)
	ex := tpExecutor{make(chan string, 16)}
	if err := reg.RegisterFunction(&registry.Function{ID: "f", Owner: ex}); err != nil {
		t.Fatal(err)
	}
	l.Pending().SetTimeout(time.Hour)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var reqs []*Request
	for range 3 {
		req := &Request{FunctionID: "f", Traceparent: parent}
		l.Invoke(req, func(Result) {})
		reqs = append(reqs, req)
		tp := <-ex.got
		if sc, ok := otel.ParseTraceparent(tp); !ok || tp[3:35] != parent[3:35] || tp[36:52] == parent[36:52] || !sc.Sampled {
			t.Fatalf("the executor got %q for parent %q", tp, parent)
		}
	}
	l.Invoke(&Request{FunctionID: "f", Void: true}, nil)
	<-ex.got
	l.Invoke(&Request{FunctionID: "nope"}, func(Result) {})
	unsampled := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	l.Invoke(&Request{FunctionID: "f", Traceparent: unsampled}, func(Result) {})
	if tp := <-ex.got; tp != unsampled {
		t.Errorf("an unsampled parent was replaced: %q", tp)
	}
	l.Pending().Complete(reqs[0].InvocationID, "h", Result{})
	l.Pending().Complete(reqs[1].InvocationID, "h", Result{Err: &wire.ErrorBody{Code: "x"}})
	l.Pending().HaltExecutor("h", wire.ErrInvocationStopped()) // reqs[2] and the unsampled one
	if err := x.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	// 3 completed or halted, 1 void, 1 not found; the unsampled one none.
	if st := x.Stats(); st.SpansExported != 5 || st.SpansDropped != 0 {
		t.Errorf("spans %+v, want 5 exported", st)
	}
}

// BenchmarkRouteTracing measures routing one worker invocation with
// tracing off (the default: a nil check) and on (a span started, ended
// and queued; the export runs on the exporter's goroutine).
func BenchmarkRouteTracing(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			reg := registry.New()
			l := NewLocal(context.Background(), reg)
			if on {
				l.SetTracer(testExporter(b))
			}
			ex := &answeringExecutor{l}
			if err := reg.RegisterFunction(&registry.Function{ID: "f", Owner: ex}); err != nil {
				b.Fatal(err)
			}
			done := func(Result) {}
			b.ReportAllocs()
			for b.Loop() {
				l.Invoke(&Request{FunctionID: "f", Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, done)
			}
		})
	}
}
