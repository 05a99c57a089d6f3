package interop

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// otelReceiver is an in-test OTLP/HTTP collector: it decodes every trace
// export (OTLP/JSON) into spans with their resource's service.name, and
// counts the exports of each signal.
type otelReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	spans   []otelSpan
	exports map[string]int // by path
	changed chan struct{}  // signalled after each export
}

type otelSpan struct {
	Service      string
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
}

func newOTelReceiver(t *testing.T) *otelReceiver {
	r := &otelReceiver{exports: map[string]int{}, changed: make(chan struct{}, 1)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, err := io.ReadAll(req.Body)
		if err != nil || req.Header.Get("Content-Type") != "application/json" || !json.Valid(b) {
			t.Errorf("OTLP export to %s: content type %q, %d bytes of valid JSON: %v", req.URL.Path, req.Header.Get("Content-Type"), len(b), json.Valid(b))
			http.Error(w, "want OTLP/JSON", http.StatusBadRequest)
			return
		}
		var spans []otelSpan
		if req.URL.Path == "/v1/traces" {
			var body struct {
				ResourceSpans []struct {
					Resource struct {
						Attributes []struct {
							Key   string `json:"key"`
							Value struct {
								StringValue string `json:"stringValue"`
							} `json:"value"`
						} `json:"attributes"`
					} `json:"resource"`
					ScopeSpans []struct {
						Spans []otelSpan `json:"spans"`
					} `json:"scopeSpans"`
				} `json:"resourceSpans"`
			}
			if err := json.Unmarshal(b, &body); err != nil {
				t.Errorf("trace export: %v", err)
			}
			for _, rs := range body.ResourceSpans {
				svc := ""
				for _, a := range rs.Resource.Attributes {
					if a.Key == "service.name" {
						svc = a.Value.StringValue
					}
				}
				for _, ss := range rs.ScopeSpans {
					for _, s := range ss.Spans {
						s.Service = svc
						spans = append(spans, s)
					}
				}
			}
		}
		r.mu.Lock()
		r.spans = append(r.spans, spans...)
		r.exports[req.URL.Path]++
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(r.Close)
	return r
}

// span waits for a span that match accepts.
func (r *otelReceiver) span(ctx context.Context, t *testing.T, what string, match func(otelSpan) bool) otelSpan {
	t.Helper()
	for {
		r.mu.Lock()
		for _, s := range r.spans {
			if match(s) {
				r.mu.Unlock()
				return s
			}
		}
		r.mu.Unlock()
		select {
		case <-r.changed:
		case <-ctx.Done():
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("no span %s among the %d exported: %+v", what, len(r.spans), r.spans)
		}
	}
}

// TestOTelTraceAcrossSDKs runs an official SDK worker with OpenTelemetry
// on against an engine exporting to an in-test OTLP/HTTP receiver. A Go
// client calls <prefix>::call with a traceparent; that SDK handler calls
// the Go function otelgo::leaf. One trace must come out: the engine's span
// of the first call (continuing the client's context), the SDK's
// "execute" span under it (its own telemetry, sent on /otel and forwarded
// with its own resource), the engine's span of the inner call under the
// SDK's span, and the Go handler gets that span as its parent. On 25c1da9
// the engine exported nothing (there was no otel setting) and discarded
// what the SDKs sent on /otel; with otel.engine_spans: false it fails with
// "no span call otn::call" (the SDK's span then hangs off the client's).
func TestOTelTraceAcrossSDKs(t *testing.T) {
	for _, sdk := range []struct{ flavour, prefix string }{{"node-0.22.1", "otn"}, {"python-0.25.0", "otp"}} {
		t.Run(sdk.flavour, func(t *testing.T) {
			t.Parallel()
			testOTelTrace(t, flavourNamed(sdk.flavour), sdk.prefix)
		})
	}
}

func testOTelTrace(t *testing.T, f *flavour, p string) {
	f.require(t)
	if !f.OTel {
		t.Fatalf("%s runs with OpenTelemetry off", f.Name)
	}
	rcv := newOTelReceiver(t)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	must(t, os.WriteFile(cfg, []byte("otel:\n  flush_interval: 50ms\n"), 0o600))
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", "memory", "--otel-endpoint", rcv.URL)
	ctx := ctxFor(t, 60*time.Second)
	c := connectGo(t, e, "otel-go")
	leaf := make(chan string, 1)
	must(t, c.RegisterRaw("otelgo::leaf", func(_ context.Context, inv *sluice.Invocation) (json.RawMessage, error) {
		leaf <- inv.Traceparent
		return json.RawMessage(`"leaf"`), nil
	}))
	startWorker(t, f, e, f.script("worker"), p, "SEEDS=0", "OTEL_SPANS_FLUSH_INTERVAL_MS=50", "OTEL_SERVICE_NAME=sdk-"+p)
	if _, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "telemetry socket connected (forwarded over OTLP)") }); err != nil {
		t.Fatalf("the SDK never opened /otel: %v", err)
	}
	waitFunctions(ctx, t, c, p+"::call", "otelgo::leaf")

	const client = "00-5b8aa5a2d2c872e8321cf37308d69df2-051581bf3cb55c13-01"
	trace, clientSpan := client[3:35], client[36:52]
	raw, err := c.Trigger(ctx, p+"::call", map[string]any{"function_id": "otelgo::leaf", "payload": map[string]any{}}, sluice.WithTraceContext(client, ""))
	must(t, err)
	if string(raw) != `{"result":"leaf"}` {
		t.Fatalf("%s::call returned %s", p, raw)
	}
	leafTP := <-leaf

	outer := rcv.span(ctx, t, "call "+p+"::call", func(s otelSpan) bool { return s.Name == "call "+p+"::call" && s.TraceID == trace })
	if outer.ParentSpanID != clientSpan || outer.Service != "sluice" {
		t.Errorf("the engine's span of the first call: %+v, want the parent %s (the client's)", outer, clientSpan)
	}
	exec := rcv.span(ctx, t, "execute "+p+"::call", func(s otelSpan) bool { return s.Name == "execute "+p+"::call" })
	if exec.TraceID != trace || exec.ParentSpanID != outer.SpanID || exec.Service != "sdk-"+p {
		t.Errorf("the SDK's span %+v: want trace %s under the engine's span %s, from service sdk-%s", exec, trace, outer.SpanID, p)
	}
	inner := rcv.span(ctx, t, "call otelgo::leaf", func(s otelSpan) bool { return s.Name == "call otelgo::leaf" })
	if inner.TraceID != trace || inner.ParentSpanID != exec.SpanID {
		t.Errorf("the engine's span of the SDK's call %+v: want trace %s under the SDK's span %s", inner, trace, exec.SpanID)
	}
	if want := "00-" + trace + "-" + inner.SpanID + "-01"; leafTP != want {
		t.Errorf("the Go handler got traceparent %q, want %q", leafTP, want)
	}
}
