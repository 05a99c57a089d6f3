package otel

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
)

// OTLP/JSON (the protobuf JSON mapping with hex trace and span ids, as
// the OTLP spec requires) of an ExportTraceServiceRequest: one resource
// (the engine), one scope, the batch's spans.

func encodeResource(cfg Config) []byte {
	b := []byte(`{"attributes":[`)
	b = appendAttr(b, Attr{Key: "service.name", Str: cfg.ServiceName})
	if cfg.ServiceVersion != "" {
		b = append(b, ',')
		b = appendAttr(b, Attr{Key: "service.version", Str: cfg.ServiceVersion})
	}
	if cfg.InstanceID != "" {
		b = append(b, ',')
		b = appendAttr(b, Attr{Key: "service.instance.id", Str: cfg.InstanceID})
	}
	b = append(b, ',')
	b = appendAttr(b, Attr{Key: "telemetry.sdk.name", Str: "sluice"})
	b = append(b, ',')
	b = appendAttr(b, Attr{Key: "telemetry.sdk.language", Str: "go"})
	return append(b, "]}"...)
}

func (x *Exporter) encodeSpans(b []byte, spans []*Span) []byte {
	b = append(b, `{"resourceSpans":[{"resource":`...)
	b = append(b, x.resource...)
	b = append(b, `,"scopeSpans":[{"scope":{"name":"sluice","version":`...)
	b = appendString(b, x.cfg.ServiceVersion)
	b = append(b, `},"spans":[`...)
	for i, s := range spans {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendSpan(b, s)
	}
	return append(b, "]}]}]}"...)
}

func appendSpan(b []byte, s *Span) []byte {
	b = append(b, `{"traceId":"`...)
	b = hex.AppendEncode(b, s.Trace[:])
	b = append(b, `","spanId":"`...)
	b = hex.AppendEncode(b, s.Span[:])
	b = append(b, '"')
	if s.Parent != (SpanID{}) {
		b = append(b, `,"parentSpanId":"`...)
		b = hex.AppendEncode(b, s.Parent[:])
		b = append(b, '"')
	}
	b = append(b, `,"name":`...)
	if s.Target != "" {
		b = appendString(b, s.Name+" "+s.Target)
	} else {
		b = appendString(b, s.Name)
	}
	b = append(b, `,"kind":`...)
	b = strconv.AppendUint(b, uint64(s.Kind), 10)
	b = append(b, `,"startTimeUnixNano":"`...)
	b = strconv.AppendInt(b, s.StartTime.UnixNano(), 10)
	b = append(b, `","endTimeUnixNano":"`...)
	b = strconv.AppendInt(b, s.EndTime.UnixNano(), 10)
	b = append(b, `","attributes":[`...)
	for i, a := range s.Attrs() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendAttr(b, a)
	}
	b = append(b, `],"status":{`...)
	if s.Error {
		b = append(b, `"code":2,"message":`...)
		b = appendString(b, s.ErrorMessage)
	}
	return append(b, "}}"...)
}

func appendAttr(b []byte, a Attr) []byte {
	b = append(b, `{"key":`...)
	b = appendString(b, a.Key)
	switch a.kind {
	case attrInt:
		b = append(b, `,"value":{"intValue":"`...)
		b = strconv.AppendInt(b, a.Int, 10)
		b = append(b, `"}}`...)
	case attrBool:
		b = append(b, `,"value":{"boolValue":`...)
		b = strconv.AppendBool(b, a.Int != 0)
		b = append(b, "}}"...)
	default:
		b = append(b, `,"value":{"stringValue":`...)
		b = appendString(b, a.Str)
		b = append(b, "}}"...)
	}
	return b
}

// appendString appends s as a JSON string (invalid UTF-8 replaced).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
