package otel

import (
	"encoding/hex"
	"strconv"
	"time"
)

// LogRecord is one log record the engine exports (engine::log::*).
type LogRecord struct {
	Time time.Time
	// Severity is OTLP's SeverityNumber (TRACE 1, DEBUG 5, INFO 9, WARN
	// 13, ERROR 17); SeverityText its name.
	Severity     int
	SeverityText string
	Body         string
	// Service, when set, is the service.name of the record's resource;
	// else the engine's.
	Service string
	// Trace and Span correlate the record with a span (zero: none).
	Trace  TraceID
	Span   SpanID
	attrs  [4]Attr
	nattrs int
}

// SetString sets a string attribute (ignored beyond the record's room, and
// when v is empty).
func (r *LogRecord) SetString(k, v string) {
	if v != "" && r.nattrs < len(r.attrs) {
		r.attrs[r.nattrs] = Attr{Key: k, Str: v}
		r.nattrs++
	}
}

// Log queues r for export; a full queue drops it (counted).
func (x *Exporter) Log(r LogRecord) {
	select {
	case x.logs <- r:
	default:
		x.logsDropped.Add(1)
	}
}

// ParseTraceID reads a 32-hex-digit trace id (any case); ok false for
// anything else or all zeros.
func ParseTraceID(s string) (t TraceID, ok bool) {
	if len(s) != 32 {
		return t, false
	}
	if _, err := hex.Decode(t[:], []byte(s)); err != nil || t == (TraceID{}) {
		return TraceID{}, false
	}
	return t, true
}

// ParseSpanID reads a 16-hex-digit span id (any case).
func ParseSpanID(s string) (id SpanID, ok bool) {
	if len(s) != 16 {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil || id == (SpanID{}) {
		return SpanID{}, false
	}
	return id, true
}

// encodeLogs writes an ExportLogsServiceRequest: one resource per service
// name, in order of first appearance.
func (x *Exporter) encodeLogs(b []byte, recs []LogRecord) []byte {
	b = append(b, `{"resourceLogs":[`...)
	done := make(map[string]bool, 1)
	first := true
	for i := range recs {
		svc := recs[i].Service
		if done[svc] {
			continue
		}
		done[svc] = true
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"resource":`...)
		if svc == "" {
			b = append(b, x.resource...)
		} else {
			b = append(b, `{"attributes":[`...)
			b = appendAttr(b, Attr{Key: "service.name", Str: svc})
			b = append(b, "]}"...)
		}
		b = append(b, `,"scopeLogs":[{"scope":{"name":"sluice","version":`...)
		b = appendString(b, x.cfg.ServiceVersion)
		b = append(b, `},"logRecords":[`...)
		n := 0
		for j := i; j < len(recs); j++ {
			if recs[j].Service != svc {
				continue
			}
			if n > 0 {
				b = append(b, ',')
			}
			n++
			b = appendLogRecord(b, &recs[j])
		}
		b = append(b, "]}]}"...)
	}
	return append(b, "]}"...)
}

func appendLogRecord(b []byte, r *LogRecord) []byte {
	b = append(b, `{"timeUnixNano":"`...)
	b = strconv.AppendInt(b, r.Time.UnixNano(), 10)
	b = append(b, `","observedTimeUnixNano":"`...)
	b = strconv.AppendInt(b, r.Time.UnixNano(), 10)
	b = append(b, `","severityNumber":`...)
	b = strconv.AppendInt(b, int64(r.Severity), 10)
	b = append(b, `,"severityText":`...)
	b = appendString(b, r.SeverityText)
	b = append(b, `,"body":{"stringValue":`...)
	b = appendString(b, r.Body)
	b = append(b, `},"attributes":[`...)
	for i, a := range r.attrs[:r.nattrs] {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendAttr(b, a)
	}
	b = append(b, ']')
	if r.Trace != (TraceID{}) {
		b = append(b, `,"traceId":"`...)
		b = hex.AppendEncode(b, r.Trace[:])
		b = append(b, '"')
		if r.Span != (SpanID{}) {
			b = append(b, `,"spanId":"`...)
			b = hex.AppendEncode(b, r.Span[:])
			b = append(b, '"')
		}
	}
	return append(b, '}')
}
