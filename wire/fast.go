package wire

import (
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
)

// The hot path of the protocol is one decode and one encode per message on
// every hop, and reflection-driven JSON was most of the CPU of a round trip.
// decodeFast and encodeFast handle the messages that actually occur
// (flat objects of known keys, plain strings, raw JSON values) by hand and
// give up on anything unusual (escaped keys, duplicate keys, escaped or
// non-UTF-8 strings, values of the wrong kind, very deep nesting); Decode
// and Encode then fall back to the reference codec, so the fast path never
// decides an outcome the reference codec would decide differently. Raw
// values are validated (never forwarded if they are not JSON) but otherwise
// passed through byte for byte.

// maxFastDepth bounds the nesting the fast validator follows (the fallback
// decoder allows more).
const maxFastDepth = 512

// field indexes, for duplicate detection.
const (
	fType = iota
	fID
	fInvocationID
	fFunctionID
	fData
	fAction
	fMetadata
	fTraceparent
	fBaggage
	fResult
	fError
	fDescription
	fRequestFormat
	fResponseFormat
	fInvocation
	fTriggerRequestFormat
	fCallRequestFormat
	fTriggerType
	fConfig
	fWorkerID
	fReattachToken
	fPreviousWorkerID
	fName
	fParentServiceID
	fNamespace
	fTriggerNamespace
	fCaller
	fObserveDepth
	fActivation
	fObserve
	fFeatures
	fUnknown
)

func fieldOf(key []byte) int {
	// A switch on string(key) compiles to comparisons without allocating.
	switch string(key) {
	case "type":
		return fType
	case "id":
		return fID
	case "invocation_id":
		return fInvocationID
	case "function_id":
		return fFunctionID
	case "data":
		return fData
	case "action":
		return fAction
	case "metadata":
		return fMetadata
	case "traceparent":
		return fTraceparent
	case "baggage":
		return fBaggage
	case "result":
		return fResult
	case "error":
		return fError
	case "description":
		return fDescription
	case "request_format":
		return fRequestFormat
	case "response_format":
		return fResponseFormat
	case "invocation":
		return fInvocation
	case "trigger_request_format":
		return fTriggerRequestFormat
	case "call_request_format":
		return fCallRequestFormat
	case "trigger_type":
		return fTriggerType
	case "config":
		return fConfig
	case "worker_id":
		return fWorkerID
	case "reattach_token":
		return fReattachToken
	case "previous_worker_id":
		return fPreviousWorkerID
	case "name":
		return fName
	case "parent_service_id":
		return fParentServiceID
	case "namespace":
		return fNamespace
	case "trigger_namespace":
		return fTriggerNamespace
	case "caller":
		return fCaller
	case "observe_depth":
		return fObserveDepth
	case "activation":
		return fActivation
	case "observe":
		return fObserve
	case "features":
		return fFeatures
	}
	return fUnknown
}

// knownTypes avoids allocating the "type" string of every message.
var knownTypes = []string{
	TypeRegisterFunction, TypeUnregisterFunction, TypeRegisterTriggerType, TypeUnregisterTriggerType,
	TypeRegisterTrigger, TypeUnregisterTrigger, TypeTriggerRegistrationResult, TypeInvokeFunction,
	TypeInvocationResult, TypeWorkerRegistered, TypeReattach, TypeRegisterService, TypePing, TypePong,
	TypeError, ActionVoid, ActionEnqueue,
}

// fastDecoder parses one frame. The frame is copied once; raw values are
// slices of that copy, so the caller's buffer can be reused at once. The
// strings of a message share one allocation, made when parsing succeeded.
type fastDecoder struct {
	b    []byte
	i    int
	strs [12]strRef
	nstr int
}

type strRef struct {
	dst *string
	s   []byte
}

// aliasMax is the largest frame whose string fields point into the
// decoder's copy of the frame instead of a copy of their own: a string
// keeps all of its frame alive, which only small frames can afford.
const aliasMax = 4 << 10

// setStrings gives every recorded string field its value: for a small
// frame, slices of the decoder's private copy (never written after
// decoding, and disjoint from the raw values handed out), else one
// allocation for all of them.
func (d *fastDecoder) setStrings() {
	if len(d.b) <= aliasMax {
		for _, r := range d.strs[:d.nstr] {
			*r.dst = unsafe.String(unsafe.SliceData(r.s), len(r.s))
		}
		return
	}
	total := 0
	for _, r := range d.strs[:d.nstr] {
		total += len(r.s)
	}
	var sb strings.Builder
	sb.Grow(total)
	for _, r := range d.strs[:d.nstr] {
		sb.Write(r.s)
	}
	all := sb.String()
	off := 0
	for _, r := range d.strs[:d.nstr] {
		*r.dst = all[off : off+len(r.s)]
		off += len(r.s)
	}
}

func (d *fastDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// plainString consumes a string without escapes, control characters or
// invalid UTF-8 and returns its contents; ok is false for anything else.
func (d *fastDecoder) plainString() (s []byte, ok bool) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.b); j++ {
		c := d.b[j]
		switch {
		case c == '"':
			d.i = j + 1
			s = d.b[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, false
}

// literalNull consumes null if it is next.
func (d *fastDecoder) literalNull() bool {
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// str decodes a string field: a plain string or null (the zero value).
// Known protocol words are interned; other strings are set by setStrings.
func (d *fastDecoder) str(dst *string, intern bool) bool {
	if d.literalNull() {
		*dst = ""
		return true
	}
	s, ok := d.plainString()
	if !ok {
		return false
	}
	if intern {
		for _, k := range knownTypes {
			if string(s) == k {
				*dst = k
				return true
			}
		}
	}
	if len(s) == 0 {
		*dst = ""
		return true
	}
	if d.nstr == len(d.strs) {
		*dst = string(s)
		return true
	}
	d.strs[d.nstr] = strRef{dst, s}
	d.nstr++
	return true
}

// optStr decodes an optional string field: null is absent (nil).
func (d *fastDecoder) optStr(dst **string) bool {
	if d.literalNull() {
		*dst = nil
		return true
	}
	s, ok := d.plainString()
	if !ok {
		return false
	}
	v := string(s)
	*dst = &v
	return true
}

// raw decodes a raw value field: any valid JSON value, kept as is.
func (d *fastDecoder) raw(dst *jsontext.Value) bool {
	end, ok := skipValue(d.b, d.i, 0)
	if !ok {
		return false
	}
	*dst = jsontext.Value(d.b[d.i:end:end])
	d.i = end
	return true
}

// object walks the members of an object, calling member with each plain
// key positioned at its value; it rejects duplicate keys among those member
// recognises (bit set by member's return).
func (d *fastDecoder) object(member func(key []byte) (bit int, ok bool)) bool {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '{' {
		return false
	}
	d.i++
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return true
	}
	var seen uint32
	for {
		d.ws()
		key, ok := d.plainString()
		if !ok {
			return false
		}
		d.ws()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return false
		}
		d.i++
		d.ws()
		bit, ok := member(key)
		if !ok {
			return false
		}
		if bit >= 0 {
			if seen&(1<<bit) != 0 {
				return false // duplicate: the reference decoder merges
			}
			seen |= 1 << bit
		}
		d.ws()
		if d.i >= len(d.b) {
			return false
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return true
		default:
			return false
		}
	}
}

func (d *fastDecoder) skip() bool {
	end, ok := skipValue(d.b, d.i, 0)
	d.i = end
	return ok
}

func (d *fastDecoder) message(m *Message) bool {
	return d.object(func(key []byte) (int, bool) {
		f := fieldOf(key)
		var ok bool
		switch f {
		case fType:
			ok = d.str(&m.Type, true)
		case fID:
			ok = d.str(&m.ID, false)
		case fInvocationID:
			ok = d.str(&m.InvocationID, false)
		case fFunctionID:
			ok = d.str(&m.FunctionID, false)
		case fData:
			ok = d.raw(&m.Data)
		case fAction:
			ok = d.action(&m.Action)
		case fMetadata:
			ok = d.raw(&m.Metadata)
		case fTraceparent:
			ok = d.str(&m.Traceparent, false)
		case fBaggage:
			ok = d.str(&m.Baggage, false)
		case fResult:
			ok = d.raw(&m.Result)
		case fError:
			ok = d.errorBody(&m.Error)
		case fDescription:
			ok = d.str(&m.Description, false)
		case fRequestFormat:
			ok = d.raw(&m.RequestFormat)
		case fResponseFormat:
			ok = d.raw(&m.ResponseFormat)
		case fInvocation:
			ok = d.raw(&m.Invocation)
		case fTriggerRequestFormat:
			ok = d.raw(&m.TriggerRequestFormat)
		case fCallRequestFormat:
			ok = d.raw(&m.CallRequestFormat)
		case fTriggerType:
			ok = d.str(&m.TriggerType, false)
		case fConfig:
			ok = d.raw(&m.Config)
		case fWorkerID:
			ok = d.str(&m.WorkerID, false)
		case fReattachToken:
			ok = d.str(&m.ReattachToken, false)
		case fPreviousWorkerID:
			ok = d.str(&m.PreviousWorkerID, false)
		case fName:
			ok = d.str(&m.Name, false)
		case fParentServiceID:
			ok = d.str(&m.ParentServiceID, false)
		case fNamespace:
			ok = d.optStr(&m.Namespace)
		case fTriggerNamespace:
			ok = d.optStr(&m.TriggerNamespace)
		case fCaller:
			ok = d.raw(&m.Caller)
		case fObserveDepth:
			ok = d.raw(&m.ObserveDepth)
		case fActivation:
			ok = d.raw(&m.Activation)
		case fObserve:
			ok = d.raw(&m.Observe)
		case fFeatures:
			ok = d.raw(&m.Features)
		default:
			return -1, d.skip()
		}
		return f, ok
	})
}

func (d *fastDecoder) action(dst **Action) bool {
	if d.literalNull() {
		*dst = nil
		return true
	}
	a := new(Action)
	ok := d.object(func(key []byte) (int, bool) {
		switch string(key) {
		case "type":
			return 0, d.str(&a.Type, true)
		case "queue":
			return 1, d.str(&a.Queue, false)
		}
		return -1, d.skip()
	})
	*dst = a
	return ok
}

func (d *fastDecoder) errorBody(dst **ErrorBody) bool {
	if d.literalNull() {
		*dst = nil
		return true
	}
	e := new(ErrorBody)
	ok := d.object(func(key []byte) (int, bool) {
		switch string(key) {
		case "code":
			return 0, d.str(&e.Code, false)
		case "message":
			return 1, d.str(&e.Message, false)
		case "stacktrace":
			return 2, d.str(&e.Stacktrace, false)
		}
		return -1, d.skip()
	})
	*dst = e
	return ok
}

// decodeFast decodes frame into the zeroed m, reporting false when the
// frame needs the reference decoder (which then decides).
func decodeFast(frame []byte, m *Message) bool {
	d := fastDecoder{b: append([]byte(nil), frame...)}
	if !d.message(m) {
		return false
	}
	d.ws()
	if d.i != len(d.b) {
		return false
	}
	d.setStrings()
	return true
}

// skipValue returns the end of the JSON value starting at b[i] (after
// leading white space is skipped by the caller), or ok false when it is not
// valid JSON (or nests deeper than maxFastDepth).
func skipValue(b []byte, i, depth int) (end int, ok bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{':
		if depth >= maxFastDepth {
			return i, false
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		for {
			i = skipWS(b, i)
			if i, ok = skipString(b, i); !ok {
				return i, false
			}
			i = skipWS(b, i)
			if i >= len(b) || b[i] != ':' {
				return i, false
			}
			i = skipWS(b, i+1)
			if i, ok = skipValue(b, i, depth+1); !ok {
				return i, false
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, false
			}
			if b[i] == '}' {
				return i + 1, true
			}
			if b[i] != ',' {
				return i, false
			}
			i++
		}
	case c == '[':
		if depth >= maxFastDepth {
			return i, false
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			i = skipWS(b, i)
			if i, ok = skipValue(b, i, depth+1); !ok {
				return i, false
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, false
			}
			if b[i] == ']' {
				return i + 1, true
			}
			if b[i] != ',' {
				return i, false
			}
			i++
		}
	case c == '-' || c >= '0' && c <= '9':
		return skipNumber(b, i)
	case c == 't':
		return skipLiteral(b, i, "true")
	case c == 'f':
		return skipLiteral(b, i, "false")
	case c == 'n':
		return skipLiteral(b, i, "null")
	}
	return i, false
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func skipLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return i, false
}

// skipString validates a string: legal escapes, no control characters.
// Invalid UTF-8 is accepted here, as by the reference decoder.
func skipString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			i++
			if i >= len(b) {
				return i, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 {
					return i, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return i, false
					}
				}
				i += 4
			default:
				return i, false
			}
		}
	}
	return i, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// skipNumber validates the JSON number grammar.
func skipNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return i, false
		}
	}
	return i, true
}

// validRaw reports whether v is exactly one valid JSON value (surrounding
// white space allowed) in valid UTF-8, fit to be written verbatim.
func validRaw(v jsontext.Value) bool {
	i := skipWS(v, 0)
	end, ok := skipValue(v, i, 0)
	return ok && skipWS(v, end) == len(v) && utf8.Valid(v)
}

// encodeFast appends m to dst, reporting false when a value needs the
// reference encoder (strings with invalid UTF-8, raw values that are not
// plain valid JSON).
func encodeFast(dst []byte, m *Message) ([]byte, bool) {
	e := fastEncoder{b: dst, ok: true}
	e.b = append(e.b, `{"type":`...)
	e.b = appendString(e.b, m.Type, &e.ok)
	e.str(`,"id":`, m.ID)
	e.str(`,"invocation_id":`, m.InvocationID)
	e.str(`,"function_id":`, m.FunctionID)
	e.rawIn(`,"data":`, m.Data, m.Verified&VerifiedData != 0)
	if m.Action != nil {
		e.b = append(e.b, `,"action":{"type":`...)
		e.b = appendString(e.b, m.Action.Type, &e.ok)
		e.str(`,"queue":`, m.Action.Queue)
		e.b = append(e.b, '}')
	}
	e.rawIn(`,"metadata":`, m.Metadata, m.Verified&VerifiedMetadata != 0)
	e.str(`,"traceparent":`, m.Traceparent)
	e.str(`,"baggage":`, m.Baggage)
	e.rawIn(`,"result":`, m.Result, m.Verified&VerifiedResult != 0)
	if m.Error != nil {
		e.b = append(e.b, `,"error":{"code":`...)
		e.b = appendString(e.b, m.Error.Code, &e.ok)
		e.b = append(e.b, `,"message":`...)
		e.b = appendString(e.b, m.Error.Message, &e.ok)
		e.str(`,"stacktrace":`, m.Error.Stacktrace)
		e.b = append(e.b, '}')
	}
	e.str(`,"description":`, m.Description)
	e.raw(`,"request_format":`, m.RequestFormat)
	e.raw(`,"response_format":`, m.ResponseFormat)
	e.raw(`,"invocation":`, m.Invocation)
	e.raw(`,"trigger_request_format":`, m.TriggerRequestFormat)
	e.raw(`,"call_request_format":`, m.CallRequestFormat)
	e.str(`,"trigger_type":`, m.TriggerType)
	e.raw(`,"config":`, m.Config)
	e.str(`,"worker_id":`, m.WorkerID)
	e.str(`,"reattach_token":`, m.ReattachToken)
	e.str(`,"previous_worker_id":`, m.PreviousWorkerID)
	e.str(`,"name":`, m.Name)
	e.str(`,"parent_service_id":`, m.ParentServiceID)
	if m.Namespace != nil {
		e.b = append(e.b, `,"namespace":`...)
		e.b = appendString(e.b, *m.Namespace, &e.ok)
	}
	if m.TriggerNamespace != nil {
		e.b = append(e.b, `,"trigger_namespace":`...)
		e.b = appendString(e.b, *m.TriggerNamespace, &e.ok)
	}
	e.raw(`,"caller":`, m.Caller)
	e.raw(`,"observe_depth":`, m.ObserveDepth)
	e.raw(`,"activation":`, m.Activation)
	e.raw(`,"observe":`, m.Observe)
	e.raw(`,"features":`, m.Features)
	e.b = append(e.b, '}')
	return e.b, e.ok
}

type fastEncoder struct {
	b  []byte
	ok bool
}

// str writes an omitzero string member.
func (e *fastEncoder) str(key, v string) {
	if v != "" {
		e.b = append(e.b, key...)
		e.b = appendString(e.b, v, &e.ok)
	}
}

// raw writes an omitzero raw member.
func (e *fastEncoder) raw(key string, v jsontext.Value) { e.rawIn(key, v, false) }

// rawIn is raw for a value that is known valid when verified (it is then
// not scanned again: a forwarded payload was validated when it was read).
func (e *fastEncoder) rawIn(key string, v jsontext.Value, verified bool) {
	if v == nil {
		return
	}
	if !verified && !validRaw(v) {
		e.ok = false
		return
	}
	e.b = append(e.b, key...)
	e.b = append(e.b, v...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as the reference
// encoder does; invalid UTF-8 clears ok.
func appendString(b []byte, s string, ok *bool) []byte {
	b = append(b, '"')
	start := 0
	ascii := true // then s is valid UTF-8 without a second pass
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			ascii = false
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	if !ascii && !utf8.ValidString(s) {
		*ok = false
	}
	return append(b, '"')
}
