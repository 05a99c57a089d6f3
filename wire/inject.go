package wire

import (
	"bytes"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// CallerWorkerIDKey is the key the engine adds to an object payload so the
// callee knows which worker called it (engine::workers::register relies on it).
const CallerWorkerIDKey = "_caller_worker_id"

var callerKeyQuoted = []byte(`"` + CallerWorkerIDKey + `"`)

// InjectCallerID returns data with "_caller_worker_id": workerID set, when
// data is a JSON object; any other value is returned unchanged. The common
// case is a splice that appends the member before the closing brace without
// decoding the payload; only a payload that already carries the key (or
// hides it behind escapes) takes the slow decode-and-reencode path.
// workerID must be a plain string (the engine's UUIDs are).
func InjectCallerID(dst []byte, data jsontext.Value, workerID string) []byte {
	v := bytes.TrimSpace(data)
	if len(v) < 2 || v[0] != '{' || v[len(v)-1] != '}' {
		return append(dst, data...)
	}
	if bytes.Contains(v, callerKeyQuoted) || bytes.IndexByte(v, '\\') >= 0 && mayHideKey(v) {
		return injectSlow(dst, v, workerID)
	}
	inner := bytes.TrimSpace(v[1 : len(v)-1])
	if len(inner) == 0 {
		dst = append(dst, '{')
	} else {
		dst = append(dst, v[:len(v)-1]...)
		dst = append(dst, ',')
	}
	dst = append(dst, callerKeyQuoted...)
	dst = append(dst, ':', '"')
	dst = append(dst, workerID...)
	dst = append(dst, '"', '}')
	return dst
}

// mayHideKey reports whether an escaped spelling of the key could be present.
func mayHideKey(v []byte) bool {
	return bytes.Contains(v, []byte(`\u`))
}

func injectSlow(dst []byte, v []byte, workerID string) []byte {
	var obj map[string]jsontext.Value
	if err := json.Unmarshal(v, &obj, decodeOpts); err != nil {
		return append(dst, v...)
	}
	id, _ := json.Marshal(workerID)
	obj[CallerWorkerIDKey] = id
	out, err := json.Marshal(obj, json.Deterministic(true), encodeOpts)
	if err != nil {
		return append(dst, v...)
	}
	return append(dst, out...)
}

var callerMember = []byte(`"` + CallerWorkerIDKey + `":"`)

// CallerIDValid is CallerID for data that is known to be valid JSON (a raw
// value Decode returned). The member the engine appends is then read from
// the end of the payload without walking it: an unescaped quote after a
// comma opens a key; a member followed only by the final brace belongs to
// the outermost object; and when a name occurs twice the last one counts,
// as in CallerID. Anything else takes CallerID's path.
func CallerIDValid(data jsontext.Value) string {
	v := trimRightWS(data)
	n := len(v)
	if n < 2 || v[n-2] != '"' || v[n-1] != '}' {
		return CallerID(data)
	}
	j := bytes.LastIndexByte(v[:n-2], '"') // opens the value, unless escaped
	if j < 0 {
		return CallerID(data)
	}
	id := v[j+1 : n-2]
	key := v[:j+1]
	if !bytes.HasSuffix(key, callerMember) || !plainASCII(id) {
		return CallerID(data)
	}
	before := trimRightWS(key[:len(key)-len(callerMember)])
	if len(before) == 0 || before[len(before)-1] != ',' && before[len(before)-1] != '{' {
		return CallerID(data)
	}
	return string(id)
}

func trimRightWS(b []byte) []byte {
	for len(b) > 0 {
		switch b[len(b)-1] {
		case ' ', '\t', '\r', '\n':
			b = b[:len(b)-1]
			continue
		}
		break
	}
	return b
}

// plainASCII reports whether b is printable ASCII without backslashes:
// a string's content that needs neither unescaping nor UTF-8 checks.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// CallerID returns the string value of the top-level "_caller_worker_id"
// member of an object payload, or "" if there is none. It scans members
// without decoding their values (the engine appends the member last, so
// the common case is one pass over the payload).
func CallerID(data jsontext.Value) string {
	if !bytes.Contains(data, callerKeyQuoted) {
		if bytes.IndexByte(data, '\\') < 0 || !mayHideKey(data) {
			return ""
		}
	}
	d := fastDecoder{b: data}
	var id string
	found := false
	ok := d.object(func(key []byte) (int, bool) {
		if string(key) != CallerWorkerIDKey {
			return -1, d.skip()
		}
		found = true
		s, ok := d.plainString()
		id = string(s)
		return 0, ok
	})
	if ok && (found || !bytes.Contains(data, callerKeyQuoted)) {
		d.ws()
		if d.i == len(d.b) {
			return id
		}
	}
	// Escaped key or value, duplicates, or not an object: decode for real.
	var caller struct {
		ID string `json:"_caller_worker_id"`
	}
	if json.Unmarshal(data, &caller, decodeOpts) != nil {
		return ""
	}
	return caller.ID
}
