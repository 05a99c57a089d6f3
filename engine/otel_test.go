package engine

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/internal/otel"
	"github.com/sluicehq/sluice/wire"
)

// otlpCollector is an in-test OTLP/HTTP receiver: every export, by path.
type otlpCollector struct {
	*httptest.Server
	got   chan otlpExport
	spans []otlpSpan // seen by span so far
}

type otlpExport struct {
	path string
	body []byte
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	c := &otlpCollector{got: make(chan otlpExport, 1024)}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", 400)
			return
		}
		c.got <- otlpExport{r.URL.Path, b}
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(c.Close)
	return c
}

type otlpSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Kind         int    `json:"kind"`
	Attributes   []struct {
		Key   string         `json:"key"`
		Value map[string]any `json:"value"`
	} `json:"attributes"`
	Status struct {
		Code int `json:"code"`
	} `json:"status"`
}

func (s otlpSpan) attr(k string) any {
	for _, a := range s.Attributes {
		if a.Key == k {
			for _, v := range a.Value {
				return v
			}
		}
	}
	return nil
}

// span waits for an exported span that match accepts.
func (c *otlpCollector) span(t *testing.T, match func(otlpSpan) bool) otlpSpan {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		for _, s := range c.spans {
			if match(s) {
				return s
			}
		}
		select {
		case x := <-c.got:
			if x.path != "/v1/traces" {
				continue
			}
			var req struct {
				ResourceSpans []struct {
					ScopeSpans []struct {
						Spans []otlpSpan `json:"spans"`
					} `json:"scopeSpans"`
				} `json:"resourceSpans"`
			}
			if err := json.Unmarshal(x.body, &req); err != nil {
				t.Fatalf("trace export is not OTLP/JSON: %v: %s", err, x.body)
			}
			for _, rs := range req.ResourceSpans {
				for _, ss := range rs.ScopeSpans {
					c.spans = append(c.spans, ss.Spans...)
				}
			}
		case <-timeout:
			t.Fatal("no matching span exported")
		}
	}
}

func otelEngine(t *testing.T, c *otlpCollector) *Engine {
	return startEngine(t, func(cfg *Config) {
		cfg.OTel.Endpoint = c.URL
		cfg.OTel.FlushInterval = 20 * time.Millisecond
	})
}

// An invocation gets a span continuing the caller's traceparent, and the
// worker is handed the span's own context; errors mark the span.
func TestOTelInvocationSpans(t *testing.T) {
	c := newOTLPCollector(t)
	e := otelEngine(t, c)
	callee, caller := dialRaw(t, e), dialRaw(t, e)
	callee.sendJSON(`{"type":"registerfunction","id":"math::add"}`)
	waitFunction(t, caller, "math::add")

	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	caller.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "c1", FunctionID: "math::add", Data: jsontext.Value(`{}`), Traceparent: parent})
	inv := callee.expect(wire.TypeInvokeFunction)
	sc, ok := otel.ParseTraceparent(inv.Traceparent)
	if !ok || inv.Traceparent[3:35] != parent[3:35] || inv.Traceparent[36:52] == parent[36:52] {
		t.Fatalf("the worker got traceparent %q, want the caller's trace with the engine's span", inv.Traceparent)
	}
	callee.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "math::add", Result: jsontext.Value(`3`)})
	caller.expect(wire.TypeInvocationResult)
	s := c.span(t, func(s otlpSpan) bool { return s.Name == "call math::add" })
	if s.TraceID != parent[3:35] || s.ParentSpanID != parent[36:52] || s.SpanID != inv.Traceparent[36:52] || s.Kind != int(otel.KindServer) || s.Status.Code != 0 {
		t.Errorf("span %+v, worker context %+v", s, sc)
	}
	if s.attr("iii.worker.id") != callee.id || s.attr("iii.caller.worker.id") != caller.id || s.attr("iii.function.id") != "math::add" {
		t.Errorf("span attributes %+v", s.Attributes)
	}

	// Without a traceparent: a new trace; a failure marks the span.
	if res := caller.call("c2", "nope::missing", `{}`); res.Error == nil {
		t.Fatal("nope::missing answered")
	}
	s = c.span(t, func(s otlpSpan) bool { return s.Name == "call nope::missing" })
	if s.Status.Code != 2 || s.attr("error.type") != wire.CodeFunctionNotFound || s.ParentSpanID != "" || len(s.TraceID) != 32 {
		t.Errorf("failed invocation's span %+v", s)
	}
}

// An HTTP request's server span continues the client's traceparent and is
// the parent of its invocation's span, which the worker continues.
func TestOTelHTTPSpans(t *testing.T) {
	c := newOTLPCollector(t)
	e := otelEngine(t, c)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"web::hi"}`)
	w.sendJSON(`{"type":"registertrigger","id":"t-hi","trigger_type":"http","function_id":"web::hi","config":{"api_path":"/hi/:name","http_method":"GET"}}`)
	waitFunction(t, w, "web::hi")

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.HTTPURL()+"/hi/ada", nil)
		req.Header.Set("Traceparent", parent)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		res.Body.Close()
		done <- res.StatusCode
	}()
	inv := w.expect(wire.TypeInvokeFunction)
	w.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: "web::hi", Result: jsontext.Value(`{"status_code":200,"body":"hi"}`)})
	if st := <-done; st != 200 {
		t.Fatalf("GET /hi/ada: %d", st)
	}
	hs := c.span(t, func(s otlpSpan) bool { return strings.HasPrefix(s.Name, "GET") })
	is := c.span(t, func(s otlpSpan) bool { return s.Name == "call web::hi" })
	if hs.Name != "GET /hi/:name" || hs.Kind != int(otel.KindServer) || hs.TraceID != parent[3:35] || hs.ParentSpanID != parent[36:52] ||
		hs.attr("http.response.status_code") != "200" || hs.attr("url.path") != "/hi/ada" {
		t.Errorf("HTTP span %+v", hs)
	}
	if is.TraceID != parent[3:35] || is.ParentSpanID != hs.SpanID || inv.Traceparent[36:52] != is.SpanID {
		t.Errorf("invocation span %+v under HTTP span %s; worker got %s", is, hs.SpanID, inv.Traceparent)
	}
}

// What the SDKs send on /otel (and as frames on their worker socket) is
// forwarded byte for byte to the signal's OTLP path; the health check
// counts it.
func TestOTelForwardsSDKTelemetry(t *testing.T) {
	c := newOTLPCollector(t)
	e := startEngine(t, func(cfg *Config) {
		cfg.OTel.Endpoint = c.URL
		cfg.OTel.EngineSpans = false // only the forwarded payloads reach the collector
	})
	ws, _, err := websocket.DefaultDialer.Dial(e.WorkerURL()+"/otel", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	sent := map[string]string{
		"/v1/traces":  `{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"sdk-span"}]}]}]}`,
		"/v1/logs":    `{"resourceLogs":[]}`,
		"/v1/metrics": `{"resourceMetrics":[]}`,
	}
	for prefix, path := range map[string]string{"OTLP": "/v1/traces", "LOGS": "/v1/logs", "MTRC": "/v1/metrics"} {
		if err := ws.WriteMessage(websocket.BinaryMessage, []byte(prefix+sent[path])); err != nil {
			t.Fatal(err)
		}
	}
	w := dialRaw(t, e)
	if err := w.ws.WriteMessage(websocket.BinaryMessage, []byte(`LOGS{"resourceLogs":["from the worker socket"]}`)); err != nil {
		t.Fatal(err)
	}
	sent["/v1/logs#worker"] = `{"resourceLogs":["from the worker socket"]}`
	got := map[string]string{}
	for len(got) < 4 {
		select {
		case x := <-c.got:
			k := x.path
			if _, dup := got[k]; dup || strings.Contains(string(x.body), "worker socket") {
				k += "#worker"
			}
			got[k] = string(x.body)
		case <-time.After(10 * time.Second):
			t.Fatalf("forwarded so far: %v", got)
		}
	}
	for k, v := range sent {
		if got[k] != v {
			t.Errorf("%s: forwarded %q, want %q", k, got[k], v)
		}
	}
	// The counter moves just after the collector answered.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		res := w.call("h"+itoa(int64(i)), "engine::health::check", `{}`)
		var h healthStatus
		mustResult(t, res, &h)
		d, _ := h.Components["otel"].Details.(map[string]any)
		if h.Components["otel"].Status == "healthy" && d["frames_forwarded"] == 4.0 && d["endpoint"] == c.URL {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health otel component %+v", h.Components["otel"])
		}
	}
	rec := httptest.NewRecorder()
	e.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if m := rec.Body.String(); !strings.Contains(m, "\nsluice_otel_sdk_payloads_forwarded_total 4\n") || !strings.Contains(m, "\nsluice_otel_export_failures_total 0\n") {
		t.Errorf("/metrics lacks the OTLP counters:\n%s", m)
	}
	rec = httptest.NewRecorder()
	startEngine(t).MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if strings.Contains(rec.Body.String(), "sluice_otel_") {
		t.Errorf("/metrics of an engine without export has OTLP counters")
	}
}

// engine::log::* calls become OTLP log records: the caller's trace and
// span ids when it gives them, else the call's own span.
func TestOTelLogFunctions(t *testing.T) {
	c := newOTLPCollector(t)
	e := otelEngine(t, c)
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"invokefunction","function_id":"engine::log::warn","data":{"message":"disk low","data":{"free":3},"service_name":"billing","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331"},"action":{"type":"void"}}`)
	w.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "l2", FunctionID: "engine::log::info", Data: jsontext.Value(`{"message":"plain"}`),
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	w.expect(wire.TypeInvocationResult)
	type rec struct {
		Severity int    `json:"severityNumber"`
		TraceID  string `json:"traceId"`
		SpanID   string `json:"spanId"`
		Body     struct {
			S string `json:"stringValue"`
		} `json:"body"`
		Attributes []struct {
			Key   string            `json:"key"`
			Value map[string]string `json:"value"`
		} `json:"attributes"`
	}
	got := map[string]rec{}
	services := map[string]string{}
	timeout := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case x := <-c.got:
			if x.path != "/v1/logs" {
				continue
			}
			var req struct {
				ResourceLogs []struct {
					Resource struct {
						Attributes []struct {
							Value map[string]string `json:"value"`
						} `json:"attributes"`
					} `json:"resource"`
					ScopeLogs []struct {
						LogRecords []rec `json:"logRecords"`
					} `json:"scopeLogs"`
				} `json:"resourceLogs"`
			}
			if err := json.Unmarshal(x.body, &req); err != nil {
				t.Fatal(err)
			}
			for _, rl := range req.ResourceLogs {
				for _, sl := range rl.ScopeLogs {
					for _, r := range sl.LogRecords {
						got[r.Body.S] = r
						services[r.Body.S] = rl.Resource.Attributes[0].Value["stringValue"]
					}
				}
			}
		case <-timeout:
			t.Fatalf("log records exported: %+v", got)
		}
	}
	warn, info := got["disk low"], got["plain"]
	if warn.Severity != 13 || warn.TraceID != "0af7651916cd43dd8448eb211c80319c" || warn.SpanID != "b7ad6b7169203331" || services["disk low"] != "billing" ||
		len(warn.Attributes) != 2 || warn.Attributes[1].Value["stringValue"] != `{"free":3}` || warn.Attributes[0].Value["stringValue"] != w.id {
		t.Errorf("warn record %+v (service %q)", warn, services["disk low"])
	}
	if info.Severity != 9 || info.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || info.SpanID == "00f067aa0ba902b7" || info.SpanID == "" || services["plain"] != "sluice" {
		t.Errorf("info record %+v: want the caller's trace under the call's own span", info)
	}
}
