package auth

import (
	"net/http/httptest"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"go.yaml.in/yaml/v4"
)

func TestWildcard(t *testing.T) {
	for _, c := range []struct {
		p, v string
		want bool
	}{
		{"hello::world", "hello::world", true},
		{"hello::world", "hello::worldx", false},
		{"engine::*", "engine::a::b", true},
		{"engine::*", "other::a", false},
		{"*::public", "x::y::public", true},
		{"*::public", "x::private", false},
		{"*public*", "mypublicfn", true},
		{"api::*::read", "api::users::read", true},
		{"api::*::read", "api::users::write", false},
		{"a*a", "a", false}, // prefix and suffix must not overlap
		{"a*a", "aa", true},
		{"*", "", true},
	} {
		if got := Wildcard(c.p, c.v); got != c.want {
			t.Errorf("Wildcard(%q, %q) = %v, want %v", c.p, c.v, got, c.want)
		}
	}
}

func parseRBAC(t *testing.T, src string) *RBAC {
	t.Helper()
	var r RBAC
	if err := yaml.Unmarshal([]byte(src), &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestFiltersFromYAML(t *testing.T) {
	r := parseRBAC(t, `
expose_functions:
  - match("api::*")
  - match: "*::public"
  - metadata:
      public: true
      tier: match("free*")
`)
	for _, c := range []struct {
		id, meta string
		want     bool
	}{
		{"api::users::list", "", true},
		{"x::public", "", true},
		{"x::private", "", false},
		{"x", `{"public":true,"tier":"free-1","other":1}`, true},
		{"x", `{"public":true,"tier":"paid"}`, false},
		{"x", `{"public":"true","tier":"free"}`, false}, // exact value, not its string
		{"x", `{"tier":"free"}`, false},                 // all keys must match
	} {
		got := false
		for i := range r.ExposeFunctions {
			got = got || r.ExposeFunctions[i].Matches(c.id, jsontext.Value(c.meta))
		}
		if got != c.want {
			t.Errorf("%s %s: exposed=%v, want %v", c.id, c.meta, got, c.want)
		}
	}
	for _, bad := range []string{
		`expose_functions: ["api::*"]`,
		`expose_functions: [{namesapce: x}]`,
		`expose_functions: [{match: "a", metadata: {b: 1}}]`,
	} {
		var r RBAC
		if err := yaml.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestCanCallOrder(t *testing.T) {
	cfg := parseRBAC(t, `expose_functions: [match("api::*")]`)
	res, err := ParseResult(jsontext.Value(`{"allowed_functions":["priv::extra","engine::channels::create"],"forbidden_functions":["api::delete","engine::workers::register","priv::extra","engine::log::error"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   string
		own  bool
		want Decision
	}{
		{"api::list", false, Allowed},                         // exposed
		{"api::delete", false, DeniedForbidden},               // forbidden beats expose
		{"priv::extra", false, DeniedForbidden},               // forbidden beats allowed
		{"priv::other", false, DeniedNotExposed},              // nothing allows it
		{"engine::channels::create", false, Allowed},          // infrastructure
		{"engine::workers::register", false, DeniedForbidden}, // forbidden beats infrastructure
		{"engine::functions::list", false, DeniedNotExposed},  // discovery is not infrastructure
		{"engine::log::info", false, Allowed},                 // the SDKs' logger: infrastructure
		{"engine::baggage::get_all", false, Allowed},          // infrastructure
		{"engine::log::error", false, DeniedForbidden},        // forbidden beats infrastructure
		{"mine::fn", true, Allowed},                           // the caller's own function
		{"api::delete", true, DeniedForbidden},                // forbidden even if own
	} {
		if got := CanCall(cfg, &res, c.id, nil, c.own); got != c.want {
			t.Errorf("CanCall(%s, own=%v) = %v, want %v", c.id, c.own, got, c.want)
		}
	}
	if m := DeniedForbidden.Message("a"); m != "function 'a' not allowed (remove from rbac.forbidden_functions)" {
		t.Errorf("message %q", m)
	}
}

func TestParseResultDefaults(t *testing.T) {
	if _, err := ParseResult(nil); err == nil {
		t.Error("no result accepted")
	}
	if _, err := ParseResult(jsontext.Value(`null`)); err == nil {
		t.Error("null result accepted")
	}
	if _, err := ParseResult(jsontext.Value(`{"allowed_functions":"x"}`)); err == nil {
		t.Error("ill-typed result accepted")
	}
	r, err := ParseResult(jsontext.Value(`{"context":{"role":"x"},"unknown":1}`))
	if err != nil {
		t.Fatal(err)
	}
	// Upstream defaults: function registration on, trigger type registration
	// off, every trigger type, no prefix.
	if !r.AllowFunctionRegistration || r.AllowTriggerTypeRegistration || r.AllowedTriggerTypes != nil || r.Prefixed("f") != "f" {
		t.Errorf("defaults: %+v", r)
	}
	if !r.CanUseTriggerType("anything") || string(r.Context) != `{"role":"x"}` {
		t.Errorf("defaults: %+v", r)
	}
	r, err = ParseResult(jsontext.Value(`{"allow_function_registration":false,"allowed_trigger_types":["http"],"function_registration_prefix":"p"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.AllowFunctionRegistration || !r.CanUseTriggerType("http") || r.CanUseTriggerType("cron") || r.Prefixed("f") != "p::f" || string(r.Context) != `{}` {
		t.Errorf("explicit: %+v", r)
	}
	if _, err := ParseResult(jsontext.Value(`{"function_registration_prefix":"a*"}`)); err == nil {
		t.Error("a wildcard prefix was accepted")
	}
	if o := Open(); !o.AllowTriggerTypeRegistration || !o.AllowFunctionRegistration {
		t.Errorf("Open() = %+v", o)
	}
}

func TestTokens(t *testing.T) {
	tokens := []string{"first-token-0123456789", "second-token-0123456789"}
	for _, c := range []struct {
		url, header string
		want        bool
	}{
		{"/", "Bearer second-token-0123456789", true},
		{"/", "bearer   first-token-0123456789 ", true},
		{"/?token=first-token-0123456789", "", true},
		{"/", "", false},
		{"/", "Bearer wrong", false},
		{"/", "Basic first-token-0123456789", false},
		{"/?token=", "", false},
		{"/?token=first-token-012345678", "", false}, // a prefix is not the token
	} {
		r := httptest.NewRequest("GET", c.url, nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		if got := TokenOK(Token(r), tokens); got != c.want {
			t.Errorf("%s %q: ok=%v, want %v", c.url, c.header, got, c.want)
		}
	}
	if TokenOK("", []string{""}) {
		t.Error("an empty token matched")
	}
}

func TestNewInput(t *testing.T) {
	r := httptest.NewRequest("GET", "/?api_key=a&api_key=b&x=1", nil)
	r.RemoteAddr = "10.1.2.3:5555"
	r.Header.Set("X-Test-Token", "valid")
	r.Header.Add("Accept", "a")
	r.Header.Add("Accept", "b")
	in := NewInput(r)
	if in.Headers["x-test-token"] != "valid" || in.Headers["accept"] != "a, b" || in.IPAddress != "10.1.2.3" {
		t.Errorf("input %+v", in)
	}
	if got := in.QueryParams["api_key"]; len(got) != 2 || got[1] != "b" {
		t.Errorf("query params %+v", in.QueryParams)
	}
}
