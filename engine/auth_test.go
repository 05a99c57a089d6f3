package engine

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/wire"
)

// handshake dials url and returns the HTTP status and body of a refusal
// (101 and "" when accepted).
func handshake(t *testing.T, url string, h http.Header) (int, string) {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, h)
	if err == nil {
		ws.Close()
		return resp.StatusCode, ""
	}
	if resp == nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAuthTokens(t *testing.T) {
	const tok = "a-token-of-20-chars!"
	e := startEngine(t, func(c *Config) { c.Auth.Tokens = []string{tok} })
	for _, url := range []string{e.WorkerURL(), e.WorkerURL() + "/otel", e.WorkerURL() + "/?token=nope"} {
		if code, body := handshake(t, url, nil); code != http.StatusUnauthorized || !strings.Contains(body, `"code":"AUTH_ERROR"`) {
			t.Errorf("%s without token: %d %q", url, code, body)
		}
	}
	w := dialRawAt(t, e.WorkerURL(), http.Header{"Authorization": {"Bearer " + tok}})
	if m := w.call("c1", wire.FnFunctionsList, `{}`); m.Error != nil {
		t.Fatalf("authenticated worker not served: %+v", m.Error)
	}
	if code, _ := handshake(t, e.WorkerURL()+"/otel?token="+tok, nil); code != http.StatusSwitchingProtocols {
		t.Errorf("/otel with the token: %d", code)
	}
}

func openRBAC(name string) WorkerListenerConfig {
	return WorkerListenerConfig{Name: name, Addr: "127.0.0.1:0", Auth: AuthConfig{RBAC: &auth.RBAC{ExposeFunctions: []auth.Filter{{Pattern: "*"}}}}}
}

// An RBAC session may not take over what a trusted worker or the engine
// serves, even when every function is exposed to it.
func TestRBACSessionCannotTakeOver(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.WorkerListeners = []WorkerListenerConfig{openRBAC("rbac")} })
	trusted := dialRaw(t, e)
	trusted.sendJSON(`{"type":"registerfunction","id":"svc::fn"}`)
	trusted.sendJSON(`{"type":"registertriggertype","id":"tt","description":"trusted"}`)
	waitFunction(t, trusted, "svc::fn")

	ext := dialRawAt(t, e.WorkerListenerURL("rbac"), nil)
	ext.sendJSON(`{"type":"registerfunction","id":"svc::fn"}`)
	ext.sendJSON(`{"type":"registerfunction","id":"engine::functions::list"}`)
	ext.sendJSON(`{"type":"registertriggertype","id":"tt","description":"hijack"}`)
	ext.sendJSON(`{"type":"registertriggertype","id":"http","description":"hijack"}`)
	ext.sendJSON(`{"type":"registerfunction","id":"ext::mine"}`)
	// Per connection, messages are handled in order: after this round trip
	// the registrations above have been decided.
	// (The engine id is answered registrationrejected by the registry.)
	if m := ext.callSkipping("sync", wire.FnFunctionsList, `{}`); m.Error != nil {
		t.Fatal(m.Error)
	}
	f, _ := e.reg.Function("svc::fn")
	if ownerOf(f.Owner) != trusted.id {
		t.Errorf("svc::fn now served by %q", ownerOf(f.Owner))
	}
	if f, _ := e.reg.Function(wire.FnFunctionsList); ownerOf(f.Owner) != "" {
		t.Errorf("the builtin was taken over")
	}
	if tt, _ := e.reg.TriggerType("tt"); ownerOf(tt.Provider) != trusted.id {
		t.Errorf("trigger type tt now provided by %q", ownerOf(tt.Provider))
	}
	if tt, _ := e.reg.TriggerType("http"); ownerOf(tt.Provider) != "" {
		t.Errorf("the http trigger type was taken over")
	}
	if f, ok := e.reg.Function("ext::mine"); !ok || ownerOf(f.Owner) != ext.id {
		t.Errorf("the session's own registration was refused")
	}
}

// The auth function must be served by a trusted connection: a worker on
// an RBAC listener that registers it does not get to admit anyone.
func TestRBACAuthFunctionMustBeTrusted(t *testing.T) {
	guarded := WorkerListenerConfig{Name: "guarded", Addr: "127.0.0.1:0", Auth: AuthConfig{RBAC: &auth.RBAC{AuthFunctionID: "x::auth"}}}
	e := startEngine(t, func(c *Config) { c.WorkerListeners = []WorkerListenerConfig{openRBAC("open"), guarded} })
	if code, body := handshake(t, e.WorkerListenerURL("guarded"), nil); code != http.StatusUnauthorized || !strings.Contains(body, "function_not_found") && !strings.Contains(body, "not found") {
		t.Errorf("no auth function: %d %q", code, body)
	}
	ext := dialRawAt(t, e.WorkerListenerURL("open"), nil)
	ext.sendJSON(`{"type":"registerfunction","id":"x::auth"}`)
	waitFunction(t, ext, "x::auth")
	if code, body := handshake(t, e.WorkerListenerURL("guarded"), nil); code != http.StatusUnauthorized || !strings.Contains(body, "RBAC-restricted") {
		t.Errorf("auth function served by an RBAC session: %d %q", code, body)
	}
}

// respond answers every invocation w receives with answer(fn, data); it
// owns w's socket from now on. Inputs are reported on the returned channel.
func respond(w *rawWorker, answer func(fn string, data jsontext.Value) string) <-chan wire.Message {
	seen := make(chan wire.Message, 64)
	go func() {
		for m := range w.in {
			if m.Type != wire.TypeInvokeFunction {
				continue
			}
			m.Data = m.Data.Clone()
			select {
			case seen <- m:
			default:
			}
			res := wire.Message{Type: wire.TypeInvocationResult, InvocationID: m.InvocationID, FunctionID: m.FunctionID}
			if r := answer(m.FunctionID, m.Data); strings.HasPrefix(r, "error:") {
				res.Error = &wire.ErrorBody{Code: "invocation_failed", Message: strings.TrimPrefix(r, "error:")}
			} else {
				res.Result = jsontext.Value(r)
			}
			b, _ := wire.Marshal(&res)
			_ = w.ws.WriteMessage(websocket.TextMessage, b)
		}
	}()
	return seen
}

func nextSeen(t *testing.T, seen <-chan wire.Message) wire.Message {
	t.Helper()
	select {
	case m := <-seen:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no invocation of the auth or hook function")
	}
	return wire.Message{}
}

// Hooks rename, the prefix applies, and the worker is invoked and
// unregisters under the id it chose.
func TestRBACRenameAndPrefix(t *testing.T) {
	rb := WorkerListenerConfig{Name: "rbac", Addr: "127.0.0.1:0", Auth: AuthConfig{RBAC: &auth.RBAC{
		AuthFunctionID: "t::auth", OnFunctionRegistrationFunctionID: "t::on-fn",
	}}}
	e := startEngine(t, func(c *Config) { c.WorkerListeners = []WorkerListenerConfig{rb} })
	hooks := dialRaw(t, e)
	hooks.sendJSON(`{"type":"registerfunction","id":"t::auth"}`)
	hooks.sendJSON(`{"type":"registerfunction","id":"t::on-fn"}`)
	caller := dialRaw(t, e)
	waitFunction(t, caller, "t::on-fn")
	seen := respond(hooks, func(fn string, data jsontext.Value) string {
		switch fn {
		case "t::auth":
			return `{"function_registration_prefix":"ten","context":{"who":"w1"}}`
		case "t::on-fn":
			var in struct {
				FunctionID string `json:"function_id"`
			}
			_ = json.Unmarshal(data, &in)
			if in.FunctionID == "bad" {
				return "error:no"
			}
			return `{"function_id":"renamed","description":"by hook"}`
		}
		return "error:unexpected"
	})

	ext := dialRawAt(t, e.WorkerListenerURL("rbac"), http.Header{"X-Who": {"w1"}})
	if in := nextSeen(t, seen); in.FunctionID != "t::auth" || !strings.Contains(string(in.Data), `"x-who":"w1"`) || !strings.Contains(string(in.Data), `"ip_address":"127.0.0.1"`) {
		t.Errorf("auth input %s", in.Data)
	}
	ext.sendJSON(`{"type":"registerfunction","id":"local"}`)
	ext.sendJSON(`{"type":"registerfunction","id":"bad"}`)
	if m := ext.call("sync", wire.FnChannelsCreate, `{}`); m.Error != nil { // infrastructure: allowed
		t.Fatal(m.Error)
	}
	if in := nextSeen(t, seen); !strings.Contains(string(in.Data), `"function_id":"local"`) || !strings.Contains(string(in.Data), `"context":{"who":"w1"}`) {
		t.Errorf("hook input %s", in.Data)
	}
	if f, ok := e.reg.Function("ten::renamed"); !ok || f.Description != "by hook" {
		t.Fatalf("renamed registration missing: %+v", f)
	}
	for _, id := range []string{"local", "renamed", "bad", "ten::bad"} {
		if _, ok := e.reg.Function(id); ok {
			t.Errorf("%s registered", id)
		}
	}
	caller.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: "c1", FunctionID: "ten::renamed", Data: jsontext.Value(`{}`)})
	inv := ext.expect(wire.TypeInvokeFunction)
	if inv.FunctionID != "local" {
		t.Fatalf("the worker was invoked as %q, want its own id", inv.FunctionID)
	}
	ext.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID, Result: jsontext.Value(`1`)})
	if m := caller.expect(wire.TypeInvocationResult); string(m.Result) != "1" {
		t.Fatalf("result %+v", m)
	}
	// Nothing else is exposed: the hooks and the builtins are FORBIDDEN.
	for _, fn := range []string{"t::auth", wire.FnFunctionsList} {
		m := ext.call("f-"+fn, fn, `{}`)
		if m.Error == nil || m.Error.Code != "FORBIDDEN" {
			t.Errorf("%s: %+v, want FORBIDDEN", fn, m.Error)
		}
	}
	ext.sendJSON(`{"type":"unregisterfunction","id":"local"}`)
	ext.callSkipping("sync2", wire.FnChannelsCreate, `{}`)
	if _, ok := e.reg.Function("ten::renamed"); ok {
		t.Error("unregisterfunction under the worker's id did not remove the renamed function")
	}
}

func TestRBACDeniedRegistrationsAnswerForbidden(t *testing.T) {
	rb := WorkerListenerConfig{Name: "rbac", Addr: "127.0.0.1:0", Auth: AuthConfig{RBAC: &auth.RBAC{AuthFunctionID: "t::auth"}}}
	e := startEngine(t, func(c *Config) { c.WorkerListeners = []WorkerListenerConfig{rb} })
	hooks := dialRaw(t, e)
	hooks.sendJSON(`{"type":"registerfunction","id":"t::auth"}`)
	waitFunction(t, hooks, "t::auth")
	respond(hooks, func(string, jsontext.Value) string {
		return `{"allow_function_registration":false,"allowed_trigger_types":["http"]}`
	})
	ext := dialRawAt(t, e.WorkerListenerURL("rbac"), nil)
	ext.sendJSON(`{"type":"registerfunction","id":"mine"}`)
	ext.sendJSON(`{"type":"registertriggertype","id":"tt2","description":"x"}`) // default: not allowed with an auth function
	ext.sendJSON(`{"type":"registertrigger","id":"tr1","trigger_type":"cron","function_id":"mine","config":{}}`)
	m := ext.expect(wire.TypeTriggerRegistrationResult)
	if m.ID != "tr1" || m.Error == nil || m.Error.Code != "FORBIDDEN" || !strings.Contains(m.Error.Message, "allowed_trigger_types") {
		t.Errorf("trigger of a type outside allowed_trigger_types: %+v", m.Error)
	}
	ext.sendJSON(`{"type":"registertrigger","id":"tr2","trigger_type":"http","function_id":"mine","config":{"api_path":"/x"}}`)
	m = ext.expect(wire.TypeTriggerRegistrationResult)
	if m.ID != "tr2" || m.Error == nil || m.Error.Code != "FORBIDDEN" {
		t.Errorf("trigger on a function it may not call: %+v", m.Error)
	}
	if _, ok := e.reg.Function("mine"); ok {
		t.Error("registration allowed despite allow_function_registration=false")
	}
	if _, ok := e.reg.TriggerType("tt2"); ok {
		t.Error("trigger type registered despite allow_trigger_type_registration defaulting to false")
	}
	if len(e.reg.Triggers("")) != 0 {
		t.Errorf("denied triggers stored: %+v", e.reg.Triggers(""))
	}
}

// engine::functions-available sends an RBAC session's binding only what
// the session may call.
func TestRBACFunctionsAvailableFiltered(t *testing.T) {
	rb := WorkerListenerConfig{Name: "rbac", Addr: "127.0.0.1:0", Auth: AuthConfig{RBAC: &auth.RBAC{
		ExposeFunctions: []auth.Filter{{Pattern: "pub::*"}}}}}
	e := startEngine(t, func(c *Config) { c.WorkerListeners = []WorkerListenerConfig{rb} })
	ext := dialRawAt(t, e.WorkerListenerURL("rbac"), nil)
	ext.sendJSON(`{"type":"registerfunction","id":"ext::sink"}`)
	ext.sendJSON(`{"type":"registertrigger","id":"fa","trigger_type":"engine::functions-available","function_id":"ext::sink","config":{}}`)
	trusted := dialRaw(t, e)
	trusted.sendJSON(`{"type":"registerfunction","id":"t::sink"}`)
	trusted.sendJSON(`{"type":"registertrigger","id":"fa2","trigger_type":"engine::functions-available","function_id":"t::sink","config":{}}`)
	waitFunction(t, trusted, "ext::sink")
	trusted.sendJSON(`{"type":"registerfunction","id":"secret::x"}`)
	trusted.sendJSON(`{"type":"registerfunction","id":"pub::y"}`)
	inv := ext.awaitInvoke("ext::sink", func(m wire.Message) bool { return strings.Contains(string(m.Data), `"pub::y"`) })
	if strings.Contains(string(inv.Data), "secret::x") || !strings.Contains(string(inv.Data), `"ext::sink"`) {
		t.Errorf("functions-available sent to the RBAC session: %s", inv.Data)
	}
	// A trusted binding still gets everything.
	trusted.awaitInvoke("t::sink", func(m wire.Message) bool {
		return strings.Contains(string(m.Data), `"secret::x"`) && strings.Contains(string(m.Data), `"pub::y"`)
	})
}

func TestWarnUnauthenticatedListener(t *testing.T) {
	var buf strings.Builder
	e, err := New(DefaultConfig(), slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	public := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 49135}
	e.warnUnauthenticated(&listenerAuth{name: "lo"}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1})
	if buf.Len() != 0 {
		t.Fatalf("warned about a loopback listener: %s", buf.String())
	}
	e.warnUnauthenticated(&listenerAuth{name: "open"}, public)
	if s := buf.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "workers need no authentication") || !strings.Contains(s, "listener=open") || !strings.Contains(s, "10.0.0.1:49135") {
		t.Fatalf("no SECURITY warning for an open exposed listener: %s", s)
	}
	buf.Reset()
	e.warnUnauthenticated(&listenerAuth{name: "tok", cfg: AuthConfig{Tokens: []string{"0123456789abcdef"}}}, public)
	if s := buf.String(); !strings.Contains(s, "without TLS") || strings.Contains(s, "need no authentication") {
		t.Fatalf("an authenticated exposed listener without TLS: %s", s)
	}
}

// TestRBACTriggerHooks: on_trigger_type_registration renames a trigger
// type or denies it, and a session cannot provide a type the engine
// provides; on_trigger_registration denies a trigger (FORBIDDEN with the
// hook's reason), may not move it to a type outside allowed_trigger_types,
// or rewrites its id and config, and the worker unregisters it under the
// id it chose.
func TestRBACTriggerHooks(t *testing.T) {
	rb := WorkerListenerConfig{Name: "rbac", Addr: "127.0.0.1:0", Auth: AuthConfig{RBAC: &auth.RBAC{
		AuthFunctionID: "t::auth", OnTriggerTypeRegistrationFunctionID: "t::on-tt", OnTriggerRegistrationFunctionID: "t::on-tr",
	}}}
	e := startEngine(t, func(c *Config) { c.WorkerListeners = []WorkerListenerConfig{rb} })
	hooks := dialRaw(t, e)
	for _, fn := range []string{"t::auth", "t::on-tt", "t::on-tr"} {
		hooks.sendJSON(`{"type":"registerfunction","id":"` + fn + `"}`)
	}
	waitFunction(t, hooks, "t::on-tr")
	respond(hooks, func(fn string, data jsontext.Value) string {
		var in struct {
			TriggerTypeID string `json:"trigger_type_id"`
			TriggerID     string `json:"trigger_id"`
		}
		_ = json.Unmarshal(data, &in)
		switch {
		case fn == "t::auth":
			return `{"allow_function_registration":true,"allow_trigger_type_registration":true,"allowed_trigger_types":["ext-renamed","cron"],"function_registration_prefix":"ten"}`
		case fn == "t::on-tt" && in.TriggerTypeID == "bad-tt":
			return "error:no types today"
		case fn == "t::on-tt" && in.TriggerTypeID == "ext-type":
			return `{"trigger_type_id":"ext-renamed","description":"by hook"}`
		case fn == "t::on-tr" && in.TriggerID == "deny-me":
			return "error:not this one"
		case fn == "t::on-tr" && in.TriggerID == "swap":
			return `{"trigger_type":"http"}`
		case fn == "t::on-tr" && in.TriggerID == "rename":
			return `{"trigger_id":"tr-renamed","config":{"expression":"0 0 0 1 1 *"}}`
		}
		return `{}`
	})

	ext := dialRawAt(t, e.WorkerListenerURL("rbac"), nil)
	ext.sendJSON(`{"type":"registerfunction","id":"f"}`)
	ext.sendJSON(`{"type":"registertriggertype","id":"ext-type","description":"mine"}`)
	ext.sendJSON(`{"type":"registertriggertype","id":"bad-tt","description":"x"}`)
	ext.sendJSON(`{"type":"registertriggertype","id":"cron","description":"taken"}`)
	ext.call("sync", wire.FnChannelsCreate, `{}`)
	if tt, ok := e.reg.TriggerType("ext-renamed"); !ok || tt.Description != "by hook" || ownerOf(tt.Provider) != ext.id {
		t.Errorf("trigger type renamed by the hook: %+v, %v", tt, ok)
	}
	for _, id := range []string{"ext-type", "bad-tt"} {
		if _, ok := e.reg.TriggerType(id); ok {
			t.Errorf("trigger type %s registered", id)
		}
	}
	if tt, ok := e.reg.TriggerType("cron"); !ok || ownerOf(tt.Provider) == ext.id {
		t.Error("an RBAC session took over the engine's cron trigger type")
	}

	for _, c := range []struct{ id, typ, msg string }{
		{"deny-me", "cron", "denied by on_trigger_registration hook: not this one"},
		{"swap", "cron", "trigger type 'http' not allowed for this session (allowed_trigger_types)"},
	} {
		ext.sendJSON(`{"type":"registertrigger","id":"` + c.id + `","trigger_type":"` + c.typ + `","function_id":"f","config":{}}`)
		m := ext.expect(wire.TypeTriggerRegistrationResult)
		if m.ID != c.id || m.Error == nil || m.Error.Code != "FORBIDDEN" || !strings.Contains(m.Error.Message, c.msg) {
			t.Errorf("trigger %s: %+v, want FORBIDDEN %q", c.id, m.Error, c.msg)
		}
	}
	ext.sendJSON(`{"type":"registertrigger","id":"rename","trigger_type":"cron","function_id":"f","config":{}}`)
	ext.callSkipping("sync2", wire.FnChannelsCreate, `{}`)
	trs := e.reg.Triggers("cron")
	if len(trs) != 1 || trs[0].ID != "tr-renamed" || trs[0].FunctionID != "ten::f" || !strings.Contains(string(trs[0].Config), "0 0 0 1 1 *") {
		t.Fatalf("trigger rewritten by the hook: %+v", trs)
	}
	ext.sendJSON(`{"type":"unregistertrigger","id":"rename"}`)
	ext.callSkipping("sync3", wire.FnChannelsCreate, `{}`)
	if trs := e.reg.Triggers("cron"); len(trs) != 0 {
		t.Errorf("unregistertrigger under the worker's id left %+v", trs)
	}
}
