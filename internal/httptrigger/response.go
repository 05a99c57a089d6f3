package httptrigger

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/wire"
)

// streamState is a streamed response before and after it has started.
type streamState struct {
	status    int
	header    http.Header // from set_headers, applied at commit
	controls  bool        // a valid control message arrived
	committed bool        // status and headers are out
}

const eventStream = "text/event-stream"

var lenient = json.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// control applies a control message (§6.5); anything else is ignored. It
// reports whether the response is an event stream, whose headers must go
// out at once.
func (x *exchange) control(st *streamState, data []byte) (isEventStream bool) {
	var m struct {
		Type       string                    `json:"type"`
		StatusCode jsontext.Value            `json:"status_code"`
		Headers    map[string]jsontext.Value `json:"headers"`
	}
	if json.Unmarshal(data, &m, lenient) != nil {
		return false
	}
	switch m.Type {
	case wire.ControlSetStatus:
		// 1xx statuses are informational in net/http and would not start
		// the response: they are ignored like any other invalid status.
		if code, ok := intValue(m.StatusCode); ok && code >= 200 && code <= 599 {
			st.status = code
			st.controls = true
		}
	case wire.ControlSetHeaders:
		for k, raw := range m.Headers {
			// A string sets the header (last write wins). Beyond the
			// reference engine, an array of strings sets every value, so
			// several Set-Cookie can be streamed. Other values are skipped.
			var vs []string
			switch {
			case len(raw) > 0 && raw[0] == '"':
				var v string
				if json.Unmarshal(raw, &v, lenient) != nil {
					continue
				}
				vs = []string{v}
			case len(raw) > 0 && raw[0] == '[':
				if json.Unmarshal(raw, &vs, lenient) != nil || len(vs) == 0 {
					continue
				}
			default:
				continue
			}
			if st.header == nil {
				st.header = make(http.Header, len(m.Headers))
			}
			st.header[http.CanonicalHeaderKey(k)] = vs
			st.controls = true
		}
		ct := strings.TrimSpace(st.header.Get("Content-Type"))
		return len(ct) >= len(eventStream) && strings.EqualFold(ct[:len(eventStream)], eventStream)
	}
	return false
}

// commit sends the status line and headers of a streamed response.
func (x *exchange) commit(st *streamState) {
	h := x.w.Header()
	for k, vs := range st.header {
		h.Del(k)
		for _, v := range vs {
			if validHeader(k, v) {
				h.Add(k, v)
			}
		}
	}
	x.w.WriteHeader(st.status)
	st.committed = true
}

// commitAndFlush starts a streamed response and pushes the headers to the
// client without waiting for a body byte.
func (x *exchange) commitAndFlush(st *streamState) bool {
	x.commit(st)
	if err := x.w.FlushError(); err != nil {
		x.outcome = "client gone: " + err.Error()
		return false
	}
	return true
}

// buffered answers from a function's result (§6.4).
func (x *exchange) buffered(v jsontext.Value) {
	var res struct {
		StatusCode jsontext.Value
		Headers    jsontext.Value
		Body       jsontext.Value
	}
	v = bytes.TrimSpace(v)
	isObject := len(v) > 0 && v[0] == '{' && members(v, func(name string, val jsontext.Value) {
		switch name {
		case "status_code":
			res.StatusCode = val
		case "headers":
			res.Headers = val
		case "body":
			res.Body = val
		}
	})
	status := http.StatusOK
	hdr := x.w.Header()
	var body []byte
	if !isObject {
		hdr.Set("Content-Type", "application/json")
		body = []byte("{}")
	} else {
		if code, ok := intValue(res.StatusCode); ok && code >= 200 && code <= 999 {
			status = code
		}
		userCT := applyResultHeaders(hdr, res.Headers)
		b := bytes.TrimSpace(res.Body)
		switch {
		case len(b) == 0: // absent
			body = []byte("{}")
			if !userCT {
				hdr.Set("Content-Type", "application/json")
			}
		case !userCT:
			hdr.Set("Content-Type", "application/json")
			body = b
		case b[0] == '"':
			var s string
			if json.Unmarshal(b, &s, lenient) == nil {
				body = []byte(s)
			}
		case string(b) == "null":
			body = nil
		default:
			body = b
		}
	}
	hdr.Del("Transfer-Encoding")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	x.w.WriteHeader(status)
	if len(body) > 0 {
		if _, err := x.w.Write(body); err != nil {
			x.outcome = "client gone: " + err.Error()
		}
	}
}

// applyResultHeaders copies a result's headers, an object of strings or an
// array of "Name: value" strings (where a name may repeat), and reports whether a content type was
// among them. Invalid names and values are skipped.
func applyResultHeaders(h http.Header, raw jsontext.Value) (contentType bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	set := func(k, v string, add bool) {
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !validHeader(k, v) {
			return
		}
		if add {
			h.Add(k, v)
		} else {
			h.Set(k, v)
		}
		if strings.EqualFold(k, "Content-Type") {
			contentType = true
		}
	}
	switch raw[0] {
	case '{':
		members(raw, func(k string, rv jsontext.Value) {
			if s, ok := stringValue(rv); ok {
				set(k, s, false)
			}
		})
	case '[':
		var a []jsontext.Value
		if json.Unmarshal(raw, &a, lenient) != nil {
			return false
		}
		for _, rv := range a {
			var s string
			if len(rv) == 0 || rv[0] != '"' || json.Unmarshal(rv, &s, lenient) != nil {
				continue
			}
			if k, v, ok := strings.Cut(s, ":"); ok {
				set(k, v, true) // repeated names are kept: several Set-Cookie
			}
		}
	}
	return contentType
}

// intValue reads a JSON number that is an integer (201 or 201.0).
func intValue(v jsontext.Value) (int, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f > 1e6 {
		return 0, false
	}
	return int(f), true
}

// validHeader reports whether a header may be sent as is. Transfer-Encoding
// is the server's business; a bad name or a value with a control character
// would corrupt the response.
func validHeader(k, v string) bool {
	if !isToken(k) || strings.EqualFold(k, "Transfer-Encoding") {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// writeError writes the engine's JSON error envelope. 5xx answers carry an
// error_id to find the matching log line.
func writeError(w http.ResponseWriter, status int, code, message string) {
	b := make([]byte, 0, 96+len(message))
	b = append(b, `{"error":{"code":`...)
	b, _ = jsontext.AppendQuote(b, code)
	b = append(b, `,"message":`...)
	b, _ = jsontext.AppendQuote(b, message)
	if status >= 500 {
		b = append(b, `,"error_id":"`...)
		b = strconv.AppendUint(b, uint64(time.Now().UnixNano())&0xFFFFFFFFFFFF, 16)
		b = append(b, '"')
	}
	b = append(b, "}}"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Del("Transfer-Encoding")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// memberDecoder reads the members of one JSON object in place.
type memberDecoder struct {
	d *jsontext.Decoder
	r bytes.Reader
}

var decoders = sync.Pool{New: func() any {
	m := &memberDecoder{}
	m.d = jsontext.NewDecoder(&m.r)
	return m
}}

// members calls f with each member of the JSON object v and reports
// whether v was a well-formed object. val is a subslice of v (the
// decoder's offsets locate it), so it stays valid as long as v. It is the
// reflection-free decoding of results, on every buffered response.
func members(v []byte, f func(name string, val jsontext.Value)) bool {
	m := decoders.Get().(*memberDecoder)
	defer decoders.Put(m)
	m.r.Reset(v)
	d := m.d
	d.Reset(&m.r, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	defer func() { // hold on to nothing of v
		m.r.Reset(nil)
		d.Reset(&m.r)
	}()
	if tok, err := d.ReadToken(); err != nil || tok.Kind() != '{' {
		return false
	}
	for d.PeekKind() != '}' {
		k, err := d.ReadToken()
		if err != nil {
			return false
		}
		name := k.String()
		val, err := d.ReadValue()
		if err != nil {
			return false
		}
		end := d.InputOffset()
		f(name, jsontext.Value(v[end-int64(len(val)):end:end]))
	}
	if _, err := d.ReadToken(); err != nil {
		return false
	}
	_, err := d.ReadToken()
	return err == io.EOF
}

// stringValue decodes a JSON string.
func stringValue(v jsontext.Value) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(v[1:len(v)-1], '\\') < 0 {
		return string(v[1 : len(v)-1]), true // no escapes: the common case
	}
	b, err := jsontext.AppendUnquote(nil, v)
	return string(b), err == nil || len(b) > 0
}
