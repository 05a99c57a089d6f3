// Package otel exports telemetry over OTLP/HTTP with JSON encoding: the
// engine's own spans (invocations, HTTP requests) and the OTLP/JSON
// payloads the official SDKs send on the engine's /otel socket, which are
// forwarded as they are. Export is batched and bounded: what does not fit
// the queue is dropped and counted, and no caller ever waits on the
// collector. See docs/operations.md (Telemetry) and docs/dependencies.md
// for why this is not the go.opentelemetry.io SDK.
package otel

import (
	"encoding/hex"
	"math/rand/v2"
	"sync"
	"time"
)

// TraceID and SpanID are W3C trace context ids.
type (
	TraceID [16]byte
	SpanID  [8]byte
)

// SpanContext is a parsed traceparent.
type SpanContext struct {
	Trace   TraceID
	Span    SpanID
	Sampled bool
}

// ParseTraceparent parses a W3C traceparent header value
// ("00-<32 hex>-<16 hex>-<2 hex>"). ok is false for anything malformed,
// an all-zero id or version ff; later versions are read by their first
// four fields, as the spec asks.
func ParseTraceparent(s string) (sc SpanContext, ok bool) {
	if len(s) < 55 || (len(s) > 55 && (s[0:2] == "00" || s[55] != '-')) {
		return sc, false
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' || !isLowerHex(s[0:2]) || s[0:2] == "ff" {
		return sc, false
	}
	if !isLowerHex(s[3:35]) || !isLowerHex(s[36:52]) || !isLowerHex(s[53:55]) {
		return sc, false
	}
	_, _ = hex.Decode(sc.Trace[:], []byte(s[3:35]))
	_, _ = hex.Decode(sc.Span[:], []byte(s[36:52]))
	var flags [1]byte
	_, _ = hex.Decode(flags[:], []byte(s[53:55]))
	if sc.Trace == (TraceID{}) || sc.Span == (SpanID{}) {
		return SpanContext{}, false
	}
	sc.Sampled = flags[0]&1 == 1
	return sc, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Traceparent formats sc as a version-00 traceparent.
func (sc SpanContext) Traceparent() string {
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], sc.Trace[:])
	b[35] = '-'
	hex.Encode(b[36:52], sc.Span[:])
	b[52], b[53], b[54] = '-', '0', '0'
	if sc.Sampled {
		b[54] = '1'
	}
	return string(b[:])
}

func newTraceID() (t TraceID) {
	for t == (TraceID{}) {
		a, b := rand.Uint64(), rand.Uint64()
		for i := range 8 {
			t[i], t[8+i] = byte(a>>(8*i)), byte(b>>(8*i))
		}
	}
	return t
}

func newSpanID() (s SpanID) {
	for s == (SpanID{}) {
		a := rand.Uint64()
		for i := range 8 {
			s[i] = byte(a >> (8 * i))
		}
	}
	return s
}

// Kind is an OTLP span kind.
type Kind uint8

// OTLP's SpanKind values.
const (
	KindInternal Kind = 1
	KindServer   Kind = 2
	KindClient   Kind = 3
)

// attrKind says which value of an Attr is set.
type attrKind uint8

const (
	attrString attrKind = iota
	attrInt
	attrBool
)

// Attr is one span attribute.
type Attr struct {
	Key  string
	Str  string
	Int  int64
	kind attrKind
}

// maxAttrs is how many attributes a span holds (inline: no allocation).
const maxAttrs = 8

// Span is one finished or running span. Spans come from a pool: after End
// the span belongs to the exporter.
type Span struct {
	SpanContext
	Parent SpanID // zero: a root span
	// Name is the span's name; Target, when set, is appended after a
	// space when it is exported (saves a string per span).
	Name, Target       string
	Kind               Kind
	StartTime, EndTime time.Time
	// Error marks the span failed, with ErrorMessage as its status
	// message.
	Error        bool
	ErrorMessage string
	attrs        [maxAttrs]Attr
	nattrs       int
	x            *Exporter
}

// End finishes the span and queues it for export (Exporter.End).
func (s *Span) End() { s.x.End(s) }

var spanPool = sync.Pool{New: func() any { return new(Span) }}

func (s *Span) add(a Attr) {
	if s.nattrs < maxAttrs {
		s.attrs[s.nattrs] = a
		s.nattrs++
	}
}

// SetString sets a string attribute (ignored beyond the span's room, and
// when v is empty).
func (s *Span) SetString(k, v string) {
	if v != "" {
		s.add(Attr{Key: k, Str: v, kind: attrString})
	}
}

// SetInt sets an integer attribute.
func (s *Span) SetInt(k string, v int64) { s.add(Attr{Key: k, Int: v, kind: attrInt}) }

// SetBool sets a boolean attribute.
func (s *Span) SetBool(k string, v bool) {
	var n int64
	if v {
		n = 1
	}
	s.add(Attr{Key: k, Int: n, kind: attrBool})
}

// Attrs returns the span's attributes.
func (s *Span) Attrs() []Attr { return s.attrs[:s.nattrs] }

func (s *Span) reset() { *s = Span{} }
