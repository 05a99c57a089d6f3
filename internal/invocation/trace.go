package invocation

import (
	"github.com/sluicehq/sluice/internal/otel"
	"github.com/sluicehq/sluice/internal/registry"
)

// SetTracer gives every invocation a span exported by x (nil: off, the
// default; the hot path then pays one nil check). Call it before the
// first Invoke.
func (l *Local) SetTracer(x *otel.Exporter) { l.tracer = x }

// startSpan starts req's span ("call <function>", SERVER, as the reference
// engine names it; the SDKs name theirs "execute <function>"), a child of req.Traceparent, and makes the
// span the parent the executor continues (req.Traceparent is replaced).
func (l *Local) startSpan(req *Request, fn *registry.Function, found bool) *otel.Span {
	s, tp := l.tracer.StartSpan("call", req.FunctionID, otel.KindServer, req.Traceparent)
	if s == nil {
		return nil
	}
	req.Traceparent = tp
	s.SetString("iii.function.id", req.FunctionID)
	s.SetString("iii.invocation.id", req.InvocationID)
	s.SetString("iii.caller.worker.id", req.CallerWorkerID)
	if found && fn.Owner != nil {
		if id := fn.Owner.OwnerID(); id != "" {
			s.SetString("iii.worker.id", id)
		} else {
			s.SetBool("iii.engine.builtin", true)
		}
	}
	if req.Void {
		s.SetBool("iii.invocation.void", true)
	}
	return s
}

// endSpan records r's outcome on s and hands it to the exporter.
func (o *observed) endSpan(r Result) {
	if r.Err != nil {
		o.span.Error = true
		o.span.ErrorMessage = r.Err.Code + ": " + r.Err.Message
		o.span.SetString("error.type", r.Err.Code)
	}
	o.span.End()
	o.span = nil
}
