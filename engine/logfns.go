package engine

import (
	"context"
	"log/slog"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

// maxLogField bounds a worker-supplied log message and its data, so that
// one call cannot write megabytes to the engine's log.
const maxLogField = 4096

type logInput struct {
	Message     string         `json:"message"`
	Data        jsontext.Value `json:"data"`
	TraceID     string         `json:"trace_id"`
	SpanID      string         `json:"span_id"`
	ServiceName string         `json:"service_name"`
}

// registerLogBuiltins adds engine::log::{trace,debug,info,warn,error}, as
// upstream has them: a worker writes a line to the engine's log at that
// level and, with OTLP export on, an OTLP log record (otel.go), as
// upstream stores it. No result.
func (e *Engine) registerLogBuiltins() {
	for _, l := range []struct {
		name  string
		level slog.Level
	}{{"trace", slog.LevelDebug - 4}, {"debug", slog.LevelDebug}, {"info", slog.LevelInfo}, {"warn", slog.LevelWarn}, {"error", slog.LevelError}} {
		e.addBuiltin("engine::log::"+l.name, builtin(func(ctx context.Context, req *invocation.Request, in logInput) (any, *wire.ErrorBody) {
			if e.otel.x != nil {
				e.exportLog(req, l.name, in)
			}
			if !e.log.Enabled(ctx, l.level) {
				return nil, nil
			}
			attrs := []slog.Attr{slog.String("source", "worker"), slog.String("worker_id", req.CallerWorkerID)}
			if in.ServiceName != "" {
				attrs = append(attrs, slog.String("service_name", truncate(in.ServiceName, 256)))
			}
			if in.TraceID != "" {
				attrs = append(attrs, slog.String("trace_id", truncate(in.TraceID, 64)))
			}
			if in.SpanID != "" {
				attrs = append(attrs, slog.String("span_id", truncate(in.SpanID, 64)))
			}
			if len(in.Data) > 0 && string(in.Data) != "null" {
				d := in.Data.Clone()
				_ = d.Compact()
				attrs = append(attrs, slog.String("data", truncate(string(d), maxLogField)))
			}
			e.log.LogAttrs(ctx, l.level, truncate(in.Message, maxLogField), attrs...)
			return nil, nil
		}), false)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
