// Package auth is the policy of worker listeners: static tokens and the
// upstream-compatible RBAC (auth function, expose filters, per-session
// allow/deny lists, registration prefix). It does no I/O; the engine calls
// the auth and hook functions and asks this package what they mean.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// CodeForbidden answers a call or registration the session may not make
// (the upstream engine's code). CodeAuthError answers a refused connection.
const (
	CodeForbidden = "FORBIDDEN"
	CodeAuthError = "AUTH_ERROR"
)

// RBAC is a listener's rbac block, with the upstream engine's field names.
type RBAC struct {
	// AuthFunctionID is called once per connection with Input and returns
	// Result. Unset: every connection gets the permissive defaults and
	// ExposeFunctions alone gates calls.
	AuthFunctionID string `yaml:"auth_function_id"`
	// ExposeFunctions: a function is callable if any filter matches.
	ExposeFunctions []Filter `yaml:"expose_functions"`
	// Hooks called before each registration; they return the (possibly
	// renamed) fields, or fail to deny.
	OnFunctionRegistrationFunctionID    string `yaml:"on_function_registration_function_id"`
	OnTriggerRegistrationFunctionID     string `yaml:"on_trigger_registration_function_id"`
	OnTriggerTypeRegistrationFunctionID string `yaml:"on_trigger_type_registration_function_id"`
	// MiddlewareFunctionID, when set, receives every allowed call a session
	// makes to a non-engine function ({function_id, payload, action,
	// context, namespace}) instead of the function; its result is the
	// call's result (it may call the function itself, from a trusted
	// connection). Upstream's worker-manager middleware_function_id.
	MiddlewareFunctionID string `yaml:"middleware_function_id"`
}

// Validate reports an rbac block that cannot work.
func (r *RBAC) Validate() error {
	for i, f := range r.ExposeFunctions {
		if f.Pattern == "" && len(f.Metadata) == 0 {
			return fmt.Errorf("expose_functions[%d] is empty", i)
		}
	}
	return nil
}

// Filter is one expose_functions rule: a wildcard on the function id
// (`match("api::*")`) or a set of metadata conditions (all must hold).
type Filter struct {
	Pattern  string
	Metadata map[string]MetaValue
}

// MetaValue is a metadata condition: an exact JSON value, or a wildcard
// (`match("*public*")`) on a string value.
type MetaValue struct {
	Exact   jsontext.Value
	Pattern string
	IsMatch bool
}

// ParseMatch returns the pattern of `match("p")` (or `match('p')`).
func ParseMatch(s string) (string, bool) {
	s = strings.TrimSpace(s)
	for _, q := range []string{`"`, `'`} {
		if strings.HasPrefix(s, "match("+q) && strings.HasSuffix(s, q+")") && len(s) >= 9 {
			return s[7 : len(s)-2], true
		}
	}
	return "", false
}

// UnmarshalYAML reads `match("p")`, {match: p} or {metadata: {k: v}}. It
// has the legacy form of yaml's Unmarshaler (a decode function, not a
// node), so that this package needs no YAML library; the decoder adds the
// entry's line to an error.
func (f *Filter) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if unmarshal(&s) == nil {
		p, ok := ParseMatch(s)
		if !ok {
			return fmt.Errorf("expose_functions entry %q: want match(\"pattern\")", s)
		}
		f.Pattern = p
		return nil
	}
	var keys map[string]any
	if unmarshal(&keys) != nil {
		return errors.New("expose_functions entry: want match(\"pattern\") or a map")
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if k != "match" && k != "metadata" {
			return fmt.Errorf("unknown key %q in expose_functions entry (want match or metadata)", k)
		}
	}
	var raw struct {
		Match    string         `yaml:"match"`
		Metadata map[string]any `yaml:"metadata"`
	}
	if err := unmarshal(&raw); err != nil {
		return err
	}
	if (raw.Match == "") == (len(raw.Metadata) == 0) {
		return errors.New("an expose_functions entry has exactly one of match or metadata")
	}
	f.Pattern = raw.Match
	if p, ok := ParseMatch(raw.Match); ok {
		f.Pattern = p
	}
	if len(raw.Metadata) > 0 {
		f.Metadata = make(map[string]MetaValue, len(raw.Metadata))
		for k, v := range raw.Metadata {
			if s, ok := v.(string); ok {
				if p, ok := ParseMatch(s); ok {
					f.Metadata[k] = MetaValue{Pattern: p, IsMatch: true}
					continue
				}
			}
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("metadata %q: %w", k, err)
			}
			f.Metadata[k] = MetaValue{Exact: b}
		}
	}
	return nil
}

// Matches reports whether the filter exposes function id with metadata.
func (f *Filter) Matches(id string, metadata jsontext.Value) bool {
	if f.Pattern != "" {
		return Wildcard(f.Pattern, id)
	}
	if len(f.Metadata) == 0 || len(metadata) == 0 {
		return false
	}
	var obj map[string]jsontext.Value
	if json.Unmarshal(metadata, &obj) != nil {
		return false
	}
	for k, want := range f.Metadata {
		got, ok := obj[k]
		if !ok {
			return false
		}
		if want.IsMatch {
			var s string
			if json.Unmarshal(got, &s) != nil || !Wildcard(want.Pattern, s) {
				return false
			}
		} else if !jsonEqual(got, want.Exact) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b jsontext.Value) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ca, err1 := json.Marshal(x, json.Deterministic(true))
	cb, err2 := json.Marshal(y, json.Deterministic(true))
	return err1 == nil && err2 == nil && string(ca) == string(cb)
}

// Wildcard matches value against pattern, where '*' stands for any run of
// characters (possibly empty); the match is anchored at both ends.
func Wildcard(pattern, value string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == value
	}
	if !strings.HasPrefix(value, parts[0]) {
		return false
	}
	value = value[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(value, p)
		if i < 0 {
			return false
		}
		value = value[i+len(p):]
	}
	return len(value) >= len(last) && strings.HasSuffix(value, last)
}

// Infrastructure are the engine functions an RBAC session may always call
// (unless forbidden_functions names them), so that SDK connection setup
// works whatever the expose filters say. The upstream engine's list (this
// engine serves no engine::baggage::*; workers cannot register engine::
// ids, so those calls get function_not_found).
var Infrastructure = map[string]bool{
	"engine::channels::create":  true,
	"engine::workers::register": true,
	"engine::log::info":         true,
	"engine::log::warn":         true,
	"engine::log::error":        true,
	"engine::log::debug":        true,
	"engine::log::trace":        true,
	"engine::baggage::get":      true,
	"engine::baggage::set":      true,
	"engine::baggage::get_all":  true,
}

// Input is what the auth function receives.
type Input struct {
	Headers     map[string]string   `json:"headers"`
	QueryParams map[string][]string `json:"query_params"`
	IPAddress   string              `json:"ip_address"`
}

// NewInput builds the auth function's input from an upgrade request:
// header names lower-cased (repeated headers joined with ", "), query
// parameters as lists, the peer's IP.
func NewInput(r *http.Request) Input {
	in := Input{Headers: make(map[string]string, len(r.Header)), QueryParams: map[string][]string{}}
	for k, v := range r.Header {
		in.Headers[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	for k, v := range r.URL.Query() {
		in.QueryParams[k] = v
	}
	in.IPAddress = r.RemoteAddr
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		in.IPAddress = host
	}
	return in
}

// Result is what the auth function returns, with the upstream defaults.
type Result struct {
	AllowedFunctions   []string `json:"allowed_functions"`
	ForbiddenFunctions []string `json:"forbidden_functions"`
	// AllowedTriggerTypes nil: every type.
	AllowedTriggerTypes          *[]string      `json:"allowed_trigger_types"`
	AllowTriggerTypeRegistration bool           `json:"allow_trigger_type_registration"`
	AllowFunctionRegistration    bool           `json:"allow_function_registration"`
	FunctionRegistrationPrefix   string         `json:"function_registration_prefix"`
	Context                      jsontext.Value `json:"context"`
}

// Open is the session of a connection to an rbac listener without an auth
// function: everything is allowed except what the expose filters hide.
func Open() Result {
	return Result{AllowTriggerTypeRegistration: true, AllowFunctionRegistration: true, Context: jsontext.Value(`{}`)}
}

// ParseResult decodes the auth function's answer. A missing or null
// answer is a refusal, as upstream.
func ParseResult(v jsontext.Value) (Result, error) {
	if len(v) == 0 || string(v) == "null" {
		return Result{}, errors.New("auth function returned no result")
	}
	r := Result{AllowFunctionRegistration: true}
	if err := json.Unmarshal(v, &r); err != nil {
		return Result{}, fmt.Errorf("auth function result: %w", err)
	}
	if len(r.Context) == 0 || string(r.Context) == "null" {
		r.Context = jsontext.Value(`{}`)
	}
	if r.FunctionRegistrationPrefix != "" && strings.Contains(r.FunctionRegistrationPrefix, "*") {
		return Result{}, errors.New("auth function result: function_registration_prefix must not contain '*'")
	}
	return r, nil
}

// Decision is the outcome of CanCall.
type Decision int

const (
	Allowed Decision = iota
	DeniedForbidden
	DeniedNotExposed
)

// CanCall applies the upstream order: forbidden_functions denies;
// allowed_functions, the infrastructure set and any expose filter allow;
// anything else is denied. own reports that the caller itself serves the
// function (a session may always reach what it registered).
func CanCall(cfg *RBAC, r *Result, id string, metadata jsontext.Value, own bool) Decision {
	for _, f := range r.ForbiddenFunctions {
		if f == id {
			return DeniedForbidden
		}
	}
	if own || Infrastructure[id] {
		return Allowed
	}
	for _, f := range r.AllowedFunctions {
		if f == id {
			return Allowed
		}
	}
	for i := range cfg.ExposeFunctions {
		if cfg.ExposeFunctions[i].Matches(id, metadata) {
			return Allowed
		}
	}
	return DeniedNotExposed
}

// Message is the error text for a denied call, as upstream words it.
func (d Decision) Message(id string) string {
	if d == DeniedForbidden {
		return "function '" + id + "' not allowed (remove from rbac.forbidden_functions)"
	}
	return "function '" + id + "' not allowed (add to rbac.expose_functions)"
}

// CanUseTriggerType reports whether the session may bind triggers of type t.
func (r *Result) CanUseTriggerType(t string) bool {
	if r.AllowedTriggerTypes == nil {
		return true
	}
	for _, x := range *r.AllowedTriggerTypes {
		if x == t {
			return true
		}
	}
	return false
}

// Prefixed applies function_registration_prefix to a function id.
func (r *Result) Prefixed(id string) string {
	if r.FunctionRegistrationPrefix == "" {
		return id
	}
	return r.FunctionRegistrationPrefix + "::" + id
}

// Token returns the credential of an upgrade request: the bearer token of
// the Authorization header, else the "token" query parameter.
func Token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return r.URL.Query().Get("token")
}

// TokenOK compares got with every configured token in constant time: the
// SHA-256 digests are compared, so neither a token's content nor its length
// shows in the timing, and the loop does not stop at the first match.
func TokenOK(got string, tokens []string) bool {
	g := sha256.Sum256([]byte(got))
	ok := 0
	for _, t := range tokens {
		d := sha256.Sum256([]byte(t))
		ok |= subtle.ConstantTimeCompare(g[:], d[:])
	}
	return ok == 1 && got != ""
}
