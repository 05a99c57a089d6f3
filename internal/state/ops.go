package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Op is one operation of state::update and stream::update (upstream's
// UpdateOp): {"type": "set"|"merge"|"increment"|"decrement"|"append"|"remove", ...}.
// A field path is one literal key of the root object ("" is the root; dots
// are not separators); merge and append also take a list of segments.
type Op struct {
	Type  string          `json:"type"`
	Path  json.RawMessage `json:"path,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
	By    *int64          `json:"by,omitempty"`
}

// OpError reports an operation that was skipped; the others still apply.
type OpError struct {
	OpIndex int    `json:"op_index"`
	Code    string `json:"code"`
	Message string `json:"message"`
	DocURL  string `json:"doc_url,omitempty"`
}

// Bounds of paths and merged values (upstream's).
const (
	maxPathDepth   = 32
	maxSegmentLen  = 256
	maxValueDepth  = 16
	maxMergeKeys   = 1024
	opErrorsDocURL = "https://iii.dev/docs/workers/iii-state#error-codes"
)

func isProtoKey(s string) bool { return s == "__proto__" || s == "constructor" || s == "prototype" }

// decode parses JSON keeping numbers exact.
func decode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

func label(segs []string) string {
	switch len(segs) {
	case 0:
		return "root"
	case 1:
		return segs[0]
	}
	return "[" + strings.Join(segs, ", ") + "]"
}

// ApplyOps applies ops in order to old (had false: no value yet, which
// starts as {}), returning the new value and the operations that failed.
// An invalid operation list (not decodable) is an error.
func ApplyOps(old []byte, had bool, ops []Op) ([]byte, []OpError, error) {
	var cur any = map[string]any{}
	missing := !had
	if had {
		v, err := decode(old)
		if err != nil {
			return nil, nil, fmt.Errorf("stored value is not JSON: %w", err)
		}
		cur = v
	}
	var errs []OpError
	fail := func(i int, code, format string, a ...any) {
		errs = append(errs, OpError{OpIndex: i, Code: code, Message: fmt.Sprintf(format, a...), DocURL: opErrorsDocURL})
	}
	for i, op := range ops {
		segs, ok := opPath(op)
		if !ok {
			fail(i, op.Type+".path.invalid", "path must be a string or a list of strings")
			continue
		}
		if !validPath(i, op.Type, segs, fail) {
			continue
		}
		var val any
		if len(op.Value) > 0 {
			v, err := decode(op.Value)
			if err != nil {
				return nil, nil, fmt.Errorf("ops[%d].value: %w", i, err)
			}
			val = v
		}
		switch op.Type {
		case "set":
			if len(segs) == 0 {
				cur, missing = val, false
			} else if m, ok := cur.(map[string]any); ok {
				m[segs[0]], missing = val, false
			} else {
				fail(i, "set.target_not_object", "Cannot set at path '%s': target is %s, expected object.", label(segs), typeName(cur))
			}
		case "merge":
			nm, ok := val.(map[string]any)
			if !validMergeValue(i, val, nm, ok, fail) {
				continue
			}
			if len(segs) == 0 {
				if m, ok := cur.(map[string]any); ok {
					for k, v := range nm {
						m[k] = v
					}
					missing = false
				}
				continue
			}
			target := walkOrCreate(&cur, segs)
			for k, v := range nm {
				target[k] = v
			}
			missing = false
		case "increment", "decrement":
			by := int64(0)
			if op.By != nil {
				by = *op.By
			}
			if op.Type == "decrement" {
				if by == math.MinInt64 {
					fail(i, "decrement.not_number", "by out of range")
					continue
				}
				by = -by
			}
			if len(segs) == 0 {
				if missing {
					cur = json.Number(strconv.FormatInt(by, 10))
				} else if n, ok := addNumber(cur, by); ok {
					cur = n
				} else {
					fail(i, op.Type+".not_number", "Expected number at path 'root', got %s.", typeName(cur))
					continue
				}
				missing = false
				continue
			}
			m, ok := cur.(map[string]any)
			if !ok {
				fail(i, op.Type+".target_not_object", "Cannot %s at path '%s': target is %s, expected object.", op.Type, label(segs), typeName(cur))
				continue
			}
			if ex, found := m[segs[0]]; found {
				n, ok := addNumber(ex, by)
				if !ok {
					fail(i, op.Type+".not_number", "Expected number at path '%s', got %s.", label(segs), typeName(ex))
					continue
				}
				m[segs[0]] = n
			} else {
				m[segs[0]] = json.Number(strconv.FormatInt(by, 10))
			}
			missing = false
		case "append":
			if len(segs) == 0 {
				if missing {
					cur = nil
				}
				if appendTo(&cur, val, "root", i, fail) {
					missing = false
				}
				continue
			}
			m, ok := cur.(map[string]any)
			if !ok {
				fail(i, "append.target_not_object", "Cannot append at path '%s': target is %s, expected object.", label(segs), typeName(cur))
				continue
			}
			if len(segs) > 1 {
				m = walkOrCreate(&cur, segs[:len(segs)-1])
			}
			leaf := segs[len(segs)-1]
			if ex, found := m[leaf]; found {
				appendTo(&ex, val, leaf, i, fail)
				m[leaf] = ex
			} else if s, isStr := val.(string); isStr && len(segs) == 1 {
				m[leaf] = s
			} else {
				m[leaf] = []any{val}
			}
			missing = false
		case "remove":
			if len(segs) == 0 {
				cur, missing = nil, false
			} else if m, ok := cur.(map[string]any); ok {
				delete(m, segs[0])
				missing = false
			} else {
				fail(i, "remove.target_not_object", "Cannot remove at path '%s': target is %s, expected object.", label(segs), typeName(cur))
			}
		default:
			fail(i, "op.unknown_type", "unknown operation type %q", op.Type)
		}
	}
	out, err := json.Marshal(cur)
	return out, errs, err
}

// opPath reads a path: a string (one literal key; "" the root) or, for
// merge and append, a list of segments.
func opPath(op Op) ([]string, bool) {
	p := bytes.TrimSpace(op.Path)
	if len(p) == 0 || string(p) == "null" {
		return nil, true
	}
	var s string
	if json.Unmarshal(p, &s) == nil {
		if s == "" {
			return nil, true
		}
		return []string{s}, true
	}
	if op.Type != "merge" && op.Type != "append" {
		return nil, false
	}
	var segs []string
	if json.Unmarshal(p, &segs) != nil {
		return nil, false
	}
	return segs, true
}

func validPath(i int, opType string, segs []string, fail func(int, string, string, ...any)) bool {
	if len(segs) > maxPathDepth {
		fail(i, opType+".path.too_deep", "Path depth %d exceeds maximum of %d", len(segs), maxPathDepth)
		return false
	}
	for _, s := range segs {
		switch {
		case s == "":
			fail(i, opType+".path.empty_segment", "Path contains an empty segment")
		case len(s) > maxSegmentLen:
			fail(i, opType+".path.segment_too_long", "Path segment of %d bytes exceeds maximum of %d", len(s), maxSegmentLen)
		case isProtoKey(s):
			fail(i, opType+".path.proto_polluted", "Path segment '%s' is not allowed (prototype pollution).", s)
		default:
			continue
		}
		return false
	}
	return true
}

func validMergeValue(i int, val any, m map[string]any, isObj bool, fail func(int, string, string, ...any)) bool {
	switch {
	case !isObj:
		fail(i, "merge.value.not_an_object", "Merge value must be a JSON object")
	case len(m) > maxMergeKeys:
		fail(i, "merge.value.too_many_keys", "Merge value has %d top-level keys, exceeds maximum of %d", len(m), maxMergeKeys)
	case depth(val) > maxValueDepth:
		fail(i, "merge.value.too_deep", "Merge value JSON nesting depth %d exceeds maximum of %d", depth(val), maxValueDepth)
	default:
		for k := range m {
			if isProtoKey(k) {
				fail(i, "merge.value.proto_polluted", "Merge value top-level key %q is a prototype-pollution sink", k)
				return false
			}
		}
		return true
	}
	return false
}

func depth(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, c := range v {
			d = max(d, depth(c))
		}
		return d + 1
	case []any:
		for _, c := range v {
			d = max(d, depth(c))
		}
		return d + 1
	}
	return 0
}

// walkOrCreate descends segs from *root, replacing anything that is not
// an object (the root included) by {}, and returns the object reached.
func walkOrCreate(root *any, segs []string) map[string]any {
	m, ok := (*root).(map[string]any)
	if !ok {
		m = map[string]any{}
		*root = m
	}
	for _, s := range segs {
		next, ok := m[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[s] = next
		}
		m = next
	}
	return m
}

func appendTo(target *any, val any, path string, i int, fail func(int, string, string, ...any)) bool {
	switch t := (*target).(type) {
	case []any:
		*target = append(t, val)
	case string:
		s, ok := val.(string)
		if !ok {
			fail(i, "append.type_mismatch", "Expected string append value at path '%s', got %s.", path, typeName(val))
			return false
		}
		*target = t + s
	case nil:
		if s, ok := val.(string); ok {
			*target = s
		} else {
			*target = []any{val}
		}
	default:
		fail(i, "append.type_mismatch", "Cannot append at path '%s': target is %s, expected array, string, null, or missing field.", path, typeName(t))
		return false
	}
	return true
}

// addNumber adds by to a JSON number: exact for integers (overflow is an
// error), float otherwise.
func addNumber(v any, by int64) (any, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		s := i + by
		if (by > 0 && s < i) || (by < 0 && s > i) {
			return nil, false
		}
		return json.Number(strconv.FormatInt(s, 10)), true
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return nil, false
	}
	r := f + float64(by)
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return nil, false
	}
	return json.Number(strconv.FormatFloat(r, 'g', -1, 64)), true
}
