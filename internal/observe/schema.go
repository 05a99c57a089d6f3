package observe

import (
	"fmt"
	"math"
	"strings"
)

// CheckArgs validates an observer's args against the args_format an
// owner-delivered function declared: the subset of JSON Schema the SDKs
// generate for it (type, required, properties, additionalProperties: false,
// enum, items). Keywords outside it are not checked. nil means valid.
func CheckArgs(schema, args []byte) error {
	if len(schema) == 0 {
		return nil
	}
	s, ok := DecodeValue(schema)
	if !ok {
		return nil // an unreadable schema checks nothing
	}
	v, ok := DecodeValue(args)
	if !ok {
		v = map[string]any{}
	}
	return checkSchema(s, v, "args", 0)
}

func checkSchema(schema, v any, at string, depth int) error {
	sc, ok := schema.(map[string]any)
	if !ok || depth > 32 {
		return nil
	}
	if t, ok := sc["type"]; ok {
		if !typeMatches(t, v) {
			return fmt.Errorf("%s: expected %v, found %s", at, t, strings.TrimPrefix(strings.TrimPrefix(kind(v), "a "), "an "))
		}
	}
	if enum, ok := sc["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			if jsonEqual(v, e) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%s: not one of the allowed values", at)
		}
	}
	if obj, ok := v.(map[string]any); ok {
		if req, ok := sc["required"].([]any); ok {
			for _, r := range req {
				if name, ok := r.(string); ok {
					if _, has := obj[name]; !has {
						return fmt.Errorf("%s: missing required property %q", at, name)
					}
				}
			}
		}
		props, _ := sc["properties"].(map[string]any)
		for k, member := range obj {
			if ps, ok := props[k]; ok {
				if err := checkSchema(ps, member, at+"."+k, depth+1); err != nil {
					return err
				}
			} else if ap, ok := sc["additionalProperties"].(bool); ok && !ap {
				return fmt.Errorf("%s: property %q is not allowed", at, k)
			}
		}
	}
	if arr, ok := v.([]any); ok {
		if items, ok := sc["items"]; ok {
			for i, it := range arr {
				if err := checkSchema(items, it, fmt.Sprintf("%s[%d]", at, i), depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func typeMatches(t, v any) bool {
	switch x := t.(type) {
	case string:
		return typeIs(x, v)
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok && typeIs(s, v) {
				return true
			}
		}
		return false
	}
	return true
}

func typeIs(t string, v any) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		n, ok := v.(float64)
		return ok && n == math.Trunc(n)
	}
	return true
}
