package engine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/otel"
)

// OpenTelemetry export (docs/operations.md#telemetry): the engine's spans
// for invocations and HTTP requests, and what the SDKs send on /otel (or as
// telemetry frames on their worker socket), go to an OTLP/HTTP collector.
// Off unless otel.endpoint is set; the hot paths then pay a nil check.

// OTelConfig configures OTLP export.
type OTelConfig struct {
	// Endpoint is the collector's OTLP/HTTP base URL, e.g.
	// http://localhost:4318 (traces go to /v1/traces, and so on). Empty:
	// off (SDK telemetry is read and discarded).
	Endpoint string `yaml:"endpoint"`
	// Headers are sent with every export (an API key, a tenant).
	Headers map[string]string `yaml:"headers"`
	// ServiceName is the service.name of the engine's spans.
	ServiceName string `yaml:"service_name"`
	// EngineSpans exports a span per invocation and per HTTP request.
	EngineSpans bool `yaml:"engine_spans"`
	// ForwardSDK forwards the SDKs' spans, logs and metrics.
	ForwardSDK bool `yaml:"forward_sdk"`
	// MaxQueueSpans bounds the engine's spans waiting for export; beyond
	// it spans are dropped (and counted), never waited for.
	MaxQueueSpans int `yaml:"max_queue_spans"`
	// MaxQueueBytes bounds the SDK payloads waiting to be forwarded.
	MaxQueueBytes ByteSize `yaml:"max_queue_bytes"`
	// FlushInterval is the longest a span waits for its batch.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Timeout bounds one export request.
	Timeout time.Duration `yaml:"timeout"`
}

func defaultOTelConfig() OTelConfig {
	return OTelConfig{
		ServiceName:   "sluice",
		EngineSpans:   true,
		ForwardSDK:    true,
		MaxQueueSpans: otel.DefaultMaxQueueSpans,
		MaxQueueBytes: otel.DefaultMaxQueueBytes,
		FlushInterval: otel.DefaultFlushInterval,
		Timeout:       otel.DefaultTimeout,
	}
}

func (c *OTelConfig) validate() error {
	switch {
	case c.Endpoint == "":
		return nil
	case otel.ValidateEndpoint(c.Endpoint) != nil:
		return fmt.Errorf("config: otel.endpoint: %w", otel.ValidateEndpoint(c.Endpoint))
	case c.MaxQueueSpans < 1:
		return fmt.Errorf("config: otel.max_queue_spans must be at least 1")
	case c.MaxQueueBytes < 64<<10:
		return fmt.Errorf("config: otel.max_queue_bytes %d is below 64 KiB", c.MaxQueueBytes)
	case c.FlushInterval <= 0 || c.Timeout <= 0:
		return fmt.Errorf("config: otel.flush_interval and otel.timeout must be positive")
	}
	return nil
}

// otelState is the engine's exporter; nil fields: off.
type otelState struct {
	x       *otel.Exporter // nil: export off
	forward bool           // SDK telemetry is forwarded
}

// initOTel starts the exporter when an endpoint is configured. It runs in
// New, before the HTTP triggers are built.
func (e *Engine) initOTel() error {
	c := e.cfg.OTel
	if c.Endpoint == "" {
		return nil
	}
	x, err := otel.New(otel.Config{
		Endpoint: c.Endpoint, Headers: c.Headers,
		ServiceName: c.ServiceName, ServiceVersion: Version, InstanceID: uuid.NewString(),
		MaxQueueSpans: c.MaxQueueSpans, MaxQueueBytes: int64(c.MaxQueueBytes),
		FlushInterval: c.FlushInterval, Timeout: c.Timeout,
		Logger: e.log.With("part", "otel"),
	})
	if err != nil {
		return err
	}
	e.otel = otelState{x: x, forward: c.ForwardSDK}
	if c.EngineSpans {
		e.inv.SetTracer(x)
	}
	e.log.Info("OTLP export on", "endpoint", x.Endpoint(), "engine_spans", c.EngineSpans, "forward_sdk", c.ForwardSDK)
	return nil
}

// httpTrace is the HTTP trigger server's Trace hook: a server span per
// request, continuing the client's traceparent; the invocation it makes
// continues the span. nil when engine spans are off.
func (e *Engine) httpTrace() func(*http.Request) func(string, int) {
	x := e.otel.x
	if x == nil || !e.cfg.OTel.EngineSpans {
		return nil
	}
	return func(r *http.Request) func(string, int) {
		s, tp := x.StartSpan(r.Method, "", otel.KindServer, r.Header.Get("Traceparent"))
		if s == nil {
			return nil
		}
		r.Header.Set("Traceparent", tp)
		s.SetString("http.request.method", r.Method)
		s.SetString("url.path", r.URL.Path)
		return func(route string, status int) {
			if route != "" {
				// The route's display form is "METHOD /path/:param".
				s.Name = route
				s.SetString("http.route", route)
			}
			s.SetInt("http.response.status_code", int64(status))
			if status >= 500 {
				s.Error = true
			}
			s.End()
		}
	}
}

// forwardTelemetry hands an SDK telemetry frame (4-byte prefix, OTLP/JSON)
// to the exporter; false: export is off or the frame is not telemetry.
func (e *Engine) forwardTelemetry(frame []byte) bool {
	if e.otel.x == nil || !e.otel.forward || len(frame) < 4 {
		return false
	}
	sig, ok := otel.FrameSignal(frame[:4])
	if !ok {
		return false
	}
	e.otel.x.Forward(sig, frame[4:])
	return true
}

// otelHealth is engine::health::check's otel component.
func (e *Engine) otelHealth() healthComponent {
	x := e.otel.x
	if x == nil {
		return healthComponent{Status: "disabled"}
	}
	st := x.Stats()
	return healthComponent{Status: "healthy", Details: map[string]any{
		"endpoint": x.Endpoint(), "spans_exported": st.SpansExported, "spans_dropped": st.SpansDropped,
		"frames_forwarded": st.FramesForwarded, "frames_dropped": st.FramesDropped,
		"logs_exported": st.LogsExported, "logs_dropped": st.LogsDropped, "export_failures": st.ExportFailures,
	}}
}

// stopOTel exports what is queued, within ctx, and stops the exporter.
func (e *Engine) stopOTel(ctx context.Context) {
	if x := e.otel.x; x != nil {
		if err := x.Shutdown(ctx); err != nil {
			e.log.Warn("OTLP export: shutdown left data unexported", "err", err)
		}
	}
}

// logSeverity maps engine::log::<level> to OTLP's SeverityNumber.
var logSeverity = map[string]int{"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17}

// exportLog sends an engine::log::* call as an OTLP log record: the
// caller's trace_id/span_id if valid, else the call's own span; the
// caller's service_name as the record's service.
func (e *Engine) exportLog(req *invocation.Request, level string, in logInput) {
	r := otel.LogRecord{Time: time.Now(), Severity: logSeverity[level], SeverityText: strings.ToUpper(level),
		Body: truncate(in.Message, maxLogField), Service: truncate(in.ServiceName, 256)}
	if t, ok := otel.ParseTraceID(in.TraceID); ok {
		r.Trace = t
		r.Span, _ = otel.ParseSpanID(in.SpanID)
	} else if sc, ok := otel.ParseTraceparent(req.Traceparent); ok {
		r.Trace, r.Span = sc.Trace, sc.Span
	}
	r.SetString("iii.worker.id", req.CallerWorkerID)
	if len(in.Data) > 0 && string(in.Data) != "null" {
		d := in.Data.Clone()
		_ = d.Compact()
		r.SetString("iii.log.data", truncate(string(d), maxLogField))
	}
	e.otel.x.Log(r)
}

// writeOTelMetrics appends the exporter's counters to /metrics (nothing
// when export is off).
func (e *Engine) writeOTelMetrics(w io.Writer) {
	x := e.otel.x
	if x == nil {
		return
	}
	st := x.Stats()
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"sluice_otel_spans_exported_total", "Engine spans exported over OTLP.", st.SpansExported},
		{"sluice_otel_spans_dropped_total", "Engine spans dropped: queue full or export failed.", st.SpansDropped},
		{"sluice_otel_logs_exported_total", "engine::log records exported over OTLP.", st.LogsExported},
		{"sluice_otel_logs_dropped_total", "engine::log records dropped: queue full or export failed.", st.LogsDropped},
		{"sluice_otel_sdk_payloads_forwarded_total", "SDK telemetry payloads forwarded over OTLP.", st.FramesForwarded},
		{"sluice_otel_sdk_payloads_dropped_total", "SDK telemetry payloads dropped: over the byte budget or export failed.", st.FramesDropped},
		{"sluice_otel_export_failures_total", "OTLP export requests that failed.", st.ExportFailures},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", c.name, c.help, c.name, c.name, c.v)
	}
}
