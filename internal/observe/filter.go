// Package observe holds the engine-independent parts of observe.v1 (see
// docs/protocol.md#observe): the filter language observers use to select
// the invocations they see, and the envelope an activation delivers.
package observe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Limits of the filter language (the 0.25 SDKs apply the same).
const (
	MaxFilterDepth   = 8
	MaxFilterNodes   = 64
	MaxSetItems      = 256
	MaxPathSegments  = 16
	MaxFilterBytes   = 8192
	maxSafeLiteral   = 1 << 53
	maxLiteralDepth  = 32
	codeInvalidFiler = "INVALID_FILTER"
)

// FilterError is an invalid filter; Code is INVALID_FILTER.
type FilterError struct{ Message string }

func (e *FilterError) Error() string { return e.Message }

// Code is the protocol error code.
func (e *FilterError) Code() string { return codeInvalidFiler }

func invalid(format string, a ...any) error { return &FilterError{Message: fmt.Sprintf(format, a...)} }

// Doc is what a filter is evaluated on: the roots input, output, error,
// caller and metadata as decoded JSON (DecodeValue); Has says which are
// present (a root not present is absent, not null).
type Doc struct {
	Roots [NumRoots]any
	Has   [NumRoots]bool
}

// Root indexes of a Doc.
const (
	RootInput = iota
	RootOutput
	RootError
	RootCaller
	RootMetadata
	NumRoots
)

// RootIndex maps a root name to its index.
var RootIndex = map[string]int{"input": RootInput, "output": RootOutput, "error": RootError, "caller": RootCaller, "metadata": RootMetadata}

// Set stores a root decoded from raw JSON; absent (nil) raw leaves it absent.
func (d *Doc) Set(root int, raw []byte) {
	if v, ok := DecodeValue(raw); ok {
		d.Roots[root], d.Has[root] = v, true
	}
}

// Filter is a validated, compiled filter. The zero value and nil match
// everything.
type Filter struct {
	pred   pred
	simple []*simpleClause // when every clause is simple: the same test without closures
	Source json.RawMessage // compact JSON as validated ({} when empty)
	Roots  map[string]bool // roots any clause reads
}

// RootMask is the set of roots the filter reads, as 1<<RootX bits.
func (f *Filter) RootMask() int {
	if f == nil {
		return 0
	}
	m := 0
	for r := range f.Roots {
		m |= 1 << RootIndex[r]
	}
	return m
}

// MatchAll reports whether the filter accepts every document.
func (f *Filter) MatchAll() bool { return f == nil || f.pred == nil }

// Matches evaluates the filter; it never panics on a valid filter.
func (f *Filter) Matches(doc *Doc) bool {
	if f.MatchAll() {
		return true
	}
	if f.simple != nil {
		for _, c := range f.simple {
			if !c.match(doc) {
				return false
			}
		}
		return true
	}
	return f.pred(doc, nil)
}

type pred func(doc *Doc, el any) bool

// absent marks a path that resolves to nothing.
type absentT struct{}

var absent = absentT{}

// Compile validates a filter given as JSON. Absent or null is {}.
func Compile(raw []byte) (*Filter, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return &Filter{Source: json.RawMessage("{}")}, nil
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, invalid("a filter must be JSON: %v", err)
	}
	if compact.Len() > MaxFilterBytes {
		return nil, invalid("the filter encodes to more than %d bytes", MaxFilterBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(compact.Bytes()))
	dec.UseNumber()
	var src any
	if err := dec.Decode(&src); err != nil {
		return nil, invalid("a filter must be JSON: %v", err)
	}
	obj, ok := src.(map[string]any)
	if !ok {
		return nil, invalid("a filter must be a JSON object, found %s", kind(src))
	}
	c := &compiler{roots: map[string]bool{}}
	clauses, err := c.clauses(obj, 1, false)
	if err != nil {
		return nil, err
	}
	p, norm, kept := finishClauses(clauses)
	nb, err := json.Marshal(norm)
	if err != nil {
		return nil, invalid("filter: %v", err)
	}
	f := &Filter{pred: p, Source: nb, Roots: c.roots}
	// The closure-free form only when every clause has one: a partial list
	// would skip the other clauses.
	simple := make([]*simpleClause, 0, len(kept))
	for _, k := range kept {
		if k.simple == nil {
			return f, nil
		}
		simple = append(simple, k.simple)
	}
	if len(simple) > 0 {
		f.simple = simple
	}
	return f, nil
}

// clause is one normalized clause {key: operand} and its predicate.
type clause struct {
	key     string
	operand any
	canon   string
	pred    pred
	simple  *simpleClause // set for a path with one plain operator
}

// simpleClause is a path clause with one scalar operator, evaluated without
// closures (the common observer filter: {"input.amount": {"$gte": 500}}).
type simpleClause struct {
	root int
	segs []string
	op   byte // see the op* constants
	num  float64
	str  string
	flag bool
}

const (
	opGt = iota + 1
	opGte
	opLt
	opLte
	opEqNum
	opEqStr
	opExists
	opPrefix
)

func (c *simpleClause) match(doc *Doc) bool {
	var v any = absent
	if doc.Has[c.root] {
		v = resolve(doc.Roots[c.root], c.segs)
	}
	switch c.op {
	case opExists:
		return (v != absent) == c.flag
	case opPrefix:
		s, ok := v.(string)
		return ok && strings.HasPrefix(s, c.str)
	case opEqStr:
		s, ok := v.(string)
		return ok && s == c.str
	}
	x, ok := v.(float64)
	if !ok {
		return false
	}
	switch c.op {
	case opGt:
		return x > c.num
	case opGte:
		return x >= c.num
	case opLt:
		return x < c.num
	case opLte:
		return x <= c.num
	case opEqNum:
		return x == c.num
	}
	return false
}

// simplify returns the closure-free form of a path clause, or nil.
func simplify(root string, segs []string, ops map[string]any) *simpleClause {
	if root == "@" || len(ops) != 1 {
		return nil
	}
	c := &simpleClause{root: RootIndex[root], segs: segs}
	for name, operand := range ops {
		switch name {
		case "$gt", "$gte", "$lt", "$lte", "$eq":
			switch x := operand.(type) {
			case json.Number:
				f, err := number(x)
				if err != nil {
					return nil
				}
				c.num = f
				c.op = map[string]byte{"$gt": opGt, "$gte": opGte, "$lt": opLt, "$lte": opLte, "$eq": opEqNum}[name]
			case string:
				if name != "$eq" {
					return nil
				}
				c.str, c.op = x, opEqStr
			default:
				return nil
			}
		case "$exists":
			b, ok := operand.(bool)
			if !ok {
				return nil
			}
			c.flag, c.op = b, opExists
		case "$prefix":
			s, ok := operand.(string)
			if !ok {
				return nil
			}
			c.str, c.op = s, opPrefix
		default:
			return nil
		}
	}
	return c
}

func canonical(v any) string {
	b, _ := json.Marshal(v) // maps marshal with sorted keys
	return string(b)
}

// finish sorts and deduplicates clauses and builds the normal form
// {"$and": [{clause}, ...]} ({} without clauses), as the 0.25 SDKs and the
// reference filter crate write it.
func finish(cs []clause) (pred, any) {
	p, norm, _ := finishClauses(cs)
	return p, norm
}

func finishClauses(cs []clause) (pred, any, []clause) {
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].key != cs[j].key {
			return cs[i].key < cs[j].key
		}
		return cs[i].canon < cs[j].canon
	})
	out := cs[:0]
	for i, c := range cs {
		if i > 0 && c.key == cs[i-1].key && c.canon == cs[i-1].canon {
			continue
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, map[string]any{}, nil
	}
	preds := make([]pred, len(out))
	norm := make([]any, len(out))
	for i, c := range out {
		preds[i] = c.pred
		norm[i] = map[string]any{c.key: c.operand}
	}
	return and(preds), map[string]any{"$and": norm}, out
}

type compiler struct {
	nodes int
	roots map[string]bool
}

func (c *compiler) take() error {
	c.nodes++
	if c.nodes > MaxFilterNodes {
		return invalid("more than %d operator / clause nodes", MaxFilterNodes)
	}
	return nil
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	}
	return "an object"
}

var valueOps = map[string]bool{"$eq": true, "$ne": true, "$in": true, "$nin": true, "$gt": true, "$gte": true,
	"$lt": true, "$lte": true, "$exists": true, "$prefix": true, "$any": true}

func and(cs []pred) pred {
	if len(cs) == 1 {
		return cs[0]
	}
	return func(doc *Doc, el any) bool {
		for _, c := range cs {
			if !c(doc, el) {
				return false
			}
		}
		return true
	}
}

func (c *compiler) filter(src any, depth int, inAny bool) (pred, any, error) {
	obj, ok := src.(map[string]any)
	if !ok {
		return nil, nil, invalid("a filter must be a JSON object, found %s", kind(src))
	}
	cs, err := c.clauses(obj, depth, inAny)
	if err != nil {
		return nil, nil, err
	}
	p, norm := finish(cs)
	if p == nil {
		p = func(*Doc, any) bool { return true }
	}
	return p, norm, nil
}

func (c *compiler) clauses(obj map[string]any, depth int, inAny bool) ([]clause, error) {
	if depth > MaxFilterDepth {
		return nil, invalid("filters nested deeper than %d levels", MaxFilterDepth)
	}
	var out []clause
	add := func(key string, operand any, p pred) {
		out = append(out, clause{key: key, operand: operand, canon: canonical(operand), pred: p})
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic node budget and messages
	for _, key := range keys {
		value := obj[key]
		switch {
		case key == "$and":
			items, err := filterList(key, value)
			if err != nil {
				return nil, err
			}
			for _, it := range items {
				o, ok := it.(map[string]any)
				if !ok {
					return nil, invalid("a filter must be a JSON object, found %s", kind(it))
				}
				cs, err := c.clauses(o, depth, inAny)
				if err != nil {
					return nil, err
				}
				out = append(out, cs...)
			}
		case key == "$or":
			if err := c.take(); err != nil {
				return nil, err
			}
			items, err := filterList(key, value)
			if err != nil {
				return nil, err
			}
			var kids []pred
			var norms []any
			for _, it := range items {
				p, n, err := c.filter(it, depth+1, inAny)
				if err != nil {
					return nil, err
				}
				kids = append(kids, p)
				norms = append(norms, n)
			}
			add(key, norms, func(doc *Doc, el any) bool {
				for _, k := range kids {
					if k(doc, el) {
						return true
					}
				}
				return false
			})
		case key == "$not":
			if err := c.take(); err != nil {
				return nil, err
			}
			if _, ok := value.(map[string]any); !ok {
				return nil, invalid("`$not` takes a filter object, found %s", kind(value))
			}
			p, n, err := c.filter(value, depth+1, inAny)
			if err != nil {
				return nil, err
			}
			add(key, n, func(doc *Doc, el any) bool { return !p(doc, el) })
		case valueOps[key]:
			return nil, invalid("`%s` needs a path: write {\"<path>\": {\"%s\": ...}}", key, key)
		case strings.HasPrefix(key, "$"):
			return nil, invalid("unknown operator `%s` (a filter holds paths, `$and`, `$or` and `$not`)", key)
		default:
			root, segs, err := parsePath(key, inAny)
			if err != nil {
				return nil, err
			}
			if root != "@" {
				c.roots[root] = true
			}
			ops, norm, err := c.operatorObject(key, value, depth)
			if err != nil {
				return nil, err
			}
			add(key, norm, pathClause(root, segs, ops))
			if m, ok := value.(map[string]any); ok && !inAny {
				out[len(out)-1].simple = simplify(root, segs, m)
			}
		}
	}
	return out, nil
}

func filterList(name string, v any) ([]any, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, invalid("`%s` takes an array of filters, found %s", name, kind(v))
	}
	if len(items) == 0 {
		return nil, invalid("`%s` takes a non-empty array of filters", name)
	}
	return items, nil
}

var roots = map[string]bool{"input": true, "output": true, "error": true, "caller": true, "metadata": true}

func parsePath(raw string, inAny bool) (string, []string, error) {
	var parts []string
	var cur strings.Builder
	started := false
	for i := 0; i < len(raw); i++ {
		ch := raw[i]
		switch ch {
		case '\\':
			if i+1 < len(raw) && (raw[i+1] == '.' || raw[i+1] == '\\') {
				cur.WriteByte(raw[i+1])
				started = true
				i++
				continue
			}
			return "", nil, invalid("path `%s`: invalid escape (only `\\.` and `\\\\` are allowed)", raw)
		case '.':
			if !started {
				return "", nil, invalid("path `%s`: empty segment", raw)
			}
			parts = append(parts, cur.String())
			cur.Reset()
			started = false
		default:
			cur.WriteByte(ch)
			started = true
		}
	}
	if !started {
		if raw == "" {
			return "", nil, invalid("empty path")
		}
		return "", nil, invalid("path `%s`: empty segment", raw)
	}
	parts = append(parts, cur.String())
	root := parts[0]
	switch {
	case inAny && root != "@":
		return "", nil, invalid("path `%s`: inside `$any` paths start at `@`, the current element", raw)
	case !inAny && root == "@":
		return "", nil, invalid("path `%s`: `@` paths are only allowed inside `$any`", raw)
	case !inAny && !roots[root]:
		return "", nil, invalid("path `%s`: unknown root `%s` (expected input, output, error, caller or metadata)", raw, root)
	}
	if len(parts)-1 > MaxPathSegments {
		return "", nil, invalid("path `%s`: %d segments after the root (limit %d)", raw, len(parts)-1, MaxPathSegments)
	}
	return root, parts[1:], nil
}

func resolve(start any, segs []string) any {
	cur := start
	for _, s := range segs {
		switch v := cur.(type) {
		case map[string]any:
			x, ok := v[s]
			if !ok {
				return absent
			}
			cur = x
		case []any:
			i, ok := canonicalIndex(s)
			if !ok || i >= len(v) {
				return absent
			}
			cur = v[i]
		default:
			return absent
		}
	}
	return cur
}

func canonicalIndex(s string) (int, bool) {
	if len(s) == 0 || len(s) > 15 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func pathClause(root string, segs []string, ops []func(any) bool) pred {
	ri := -1
	if root != "@" {
		ri = RootIndex[root]
	}
	return func(doc *Doc, el any) bool {
		var v any = absent
		if ri < 0 {
			v = resolve(el, segs)
		} else if doc.Has[ri] {
			v = resolve(doc.Roots[ri], segs)
		}
		for _, op := range ops {
			if !op(v) {
				return false
			}
		}
		return true
	}
}

func (c *compiler) operatorObject(path string, v any, depth int) ([]func(any) bool, any, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, nil, invalid("`%s`: expected an operator object such as {\"$eq\": ...}; literal values are not allowed", path)
	}
	if len(obj) == 0 {
		return nil, nil, invalid("`%s`: empty operator object", path)
	}
	for k := range obj {
		if !strings.HasPrefix(k, "$") {
			return nil, nil, invalid("`%s`: expected an operator object such as {\"$eq\": ...}; literal values are not allowed", path)
		}
	}
	return c.operators(path, obj, depth)
}

func (c *compiler) operators(path string, obj map[string]any, depth int) ([]func(any) bool, any, error) {
	var out []func(any) bool
	norm := map[string]any{}
	names := make([]string, 0, len(obj))
	for k := range obj {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := c.take(); err != nil {
			return nil, nil, err
		}
		op, n, err := c.operator(path, name, obj[name], depth)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, op)
		norm[name] = n
	}
	return out, norm, nil
}

func (c *compiler) operator(path, name string, operand any, depth int) (func(any) bool, any, error) {
	if name == "$any" {
		return c.anyOperator(path, operand, depth)
	}
	f, err := c.valueOperator(path, name, operand)
	return f, operand, err
}

func (c *compiler) valueOperator(path, name string, operand any) (func(any) bool, error) {
	wrong := func(expected string) error {
		return invalid("`%s`: `%s` takes %s, found %s", path, name, expected, kind(operand))
	}
	switch name {
	case "$eq", "$ne":
		if err := checkLiteral(path, name, operand); err != nil {
			return nil, err
		}
		lit := floats(operand)
		if name == "$eq" {
			return func(v any) bool { return v != absent && jsonEqual(v, lit) }, nil
		}
		return func(v any) bool { return v == absent || !jsonEqual(v, lit) }, nil
	case "$in", "$nin":
		items, ok := operand.([]any)
		if !ok {
			return nil, wrong("an array")
		}
		if len(items) > MaxSetItems {
			return nil, invalid("`%s`: `%s` has %d items (limit %d)", path, name, len(items), MaxSetItems)
		}
		for _, it := range items {
			if err := checkLiteral(path, name, it); err != nil {
				return nil, err
			}
		}
		items = floats(items).([]any)
		member := func(v any) bool {
			for _, it := range items {
				if jsonEqual(v, it) {
					return true
				}
			}
			return false
		}
		if name == "$in" {
			return func(v any) bool { return v != absent && member(v) }, nil
		}
		return func(v any) bool { return v == absent || !member(v) }, nil
	case "$gt", "$gte", "$lt", "$lte":
		var accept func(c int) bool
		switch name {
		case "$gt":
			accept = func(c int) bool { return c > 0 }
		case "$gte":
			accept = func(c int) bool { return c >= 0 }
		case "$lt":
			accept = func(c int) bool { return c < 0 }
		default:
			accept = func(c int) bool { return c <= 0 }
		}
		switch b := operand.(type) {
		case json.Number:
			bound, err := number(b)
			if err != nil {
				return nil, err
			}
			return func(v any) bool {
				x, ok := v.(float64)
				return ok && accept(cmpFloat(x, bound))
			}, nil
		case string:
			return func(v any) bool {
				s, ok := v.(string)
				return ok && accept(strings.Compare(s, b))
			}, nil
		}
		return nil, wrong("a number or a string")
	case "$exists":
		b, ok := operand.(bool)
		if !ok {
			return nil, wrong("a boolean")
		}
		return func(v any) bool { return (v != absent) == b }, nil
	case "$prefix":
		p, ok := operand.(string)
		if !ok {
			return nil, wrong("a string")
		}
		return func(v any) bool { s, ok := v.(string); return ok && strings.HasPrefix(s, p) }, nil
	case "$and", "$or", "$not":
		return nil, invalid("`%s`: `%s` combines filters and is not a value operator", path, name)
	}
	return nil, invalid("`%s`: unknown operator `%s`", path, name)
}

func (c *compiler) anyOperator(path string, operand any, depth int) (func(any) bool, any, error) {
	obj, ok := operand.(map[string]any)
	if !ok {
		return nil, nil, invalid("`%s`: `$any` takes an operator object or a filter over `@`, found %s", path, kind(operand))
	}
	if depth+1 > MaxFilterDepth {
		return nil, nil, invalid("filters nested deeper than %d levels", MaxFilterDepth)
	}
	allOps := len(obj) > 0
	for k := range obj {
		if !valueOps[k] {
			allOps = false
		}
	}
	if allOps {
		ops, norm, err := c.operators(path, obj, depth+1)
		if err != nil {
			return nil, nil, err
		}
		return func(v any) bool {
			arr, ok := v.([]any)
			if !ok {
				return false
			}
			for _, it := range arr {
				all := true
				for _, op := range ops {
					if !op(it) {
						all = false
						break
					}
				}
				if all {
					return true
				}
			}
			return false
		}, norm, nil
	}
	saved := c.roots
	c.roots = map[string]bool{}
	p, norm, err := c.filter(obj, depth+1, true)
	c.roots = saved
	if err != nil {
		return nil, nil, err
	}
	return func(v any) bool {
		arr, ok := v.([]any)
		if !ok {
			return false
		}
		for _, it := range arr {
			if p(nil, it) {
				return true
			}
		}
		return false
	}, norm, nil
}

func number(n json.Number) (float64, error) {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.Abs(f) > maxSafeLiteral {
		return 0, invalid("the number %s is outside ±2^53", n)
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil && (i > maxSafeLiteral || i < -maxSafeLiteral) {
		return 0, invalid("the number %s is outside ±2^53", n) // rounds to 2^53 as a double
	}
	return f, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func checkLiteral(path, name string, lit any) error {
	var walk func(v any, level int) error
	walk = func(v any, level int) error {
		switch x := v.(type) {
		case json.Number:
			_, err := number(x)
			return err
		case []any:
			if level > maxLiteralDepth {
				return invalid("`%s`: `%s` nests a literal deeper than %d arrays / objects", path, name, maxLiteralDepth)
			}
			for _, m := range x {
				if err := walk(m, level+1); err != nil {
					return err
				}
			}
		case map[string]any:
			if level > maxLiteralDepth {
				return invalid("`%s`: `%s` nests a literal deeper than %d arrays / objects", path, name, maxLiteralDepth)
			}
			for _, m := range x {
				if err := walk(m, level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(lit, 1)
}

// jsonEqual is JSON deep equality: numbers as doubles, key order ignored,
// no coercion between types.
func jsonEqual(a, b any) bool {
	switch y := b.(type) {
	case nil:
		return a == nil
	case bool:
		x, ok := a.(bool)
		return ok && x == y
	case float64:
		x, ok := a.(float64)
		return ok && x == y
	case string:
		x, ok := a.(string)
		return ok && x == y
	case []any:
		x, ok := a.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		x, ok := a.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range y {
			xv, ok := x[k]
			if !ok || !jsonEqual(xv, v) {
				return false
			}
		}
		return true
	}
	return false
}

// DecodeValue decodes a raw JSON value for a Doc (numbers as float64, as
// JSON parsers read them). Absent (nil) raw reports ok false.
func DecodeValue(raw []byte) (any, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	if v, ok := decodeAny(raw); ok {
		return v, true
	}
	var v any
	if err := jsonv2.Unmarshal(raw, &v, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)); err != nil {
		return nil, false
	}
	return v, true
}

// floats returns v with every json.Number turned into a float64: filter
// literals compare with decoded host values without parsing at match time.
func floats(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, _ := strconv.ParseFloat(string(x), 64)
		return f
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = floats(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = floats(e)
		}
		return out
	}
	return v
}
