package engine

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/wire"
)

// A registration that calls a hook blocks the session's reader until the
// hook answers. Writes the reader's earlier input caused are held (corked)
// until the reader's batch is flushed, and while held they keep the
// destination socket corked: if that socket is the hook server's, the hook
// invocation waits behind them and the hook can only time out. So the batch
// is flushed before each hooked registration (flushBeforeHook, for each of
// the three hooks). The burst below is one TCP write: a call to a function
// of the hook server, then the registration. The hook server must see the
// call and then the hook invocation, and the registration must be admitted.
// Mutation: with hooks() false for a session that has only this hook, the
// hook invocation stays corked until authCallTimeout (10 s) and the
// registration is denied.
func TestHookedRegistrationFlushesTheBatchFirst(t *testing.T) {
	for _, c := range []struct {
		name string
		rbac auth.RBAC
		reg  string
		ok   func(e *Engine, ext *rawWorker) bool
	}{
		{"function", auth.RBAC{OnFunctionRegistrationFunctionID: "t::hook"},
			`{"type":"registerfunction","id":"ext::fn"}`,
			func(e *Engine, _ *rawWorker) bool { _, ok := e.reg.Function("ext::fn"); return ok }},
		{"trigger type", auth.RBAC{OnTriggerTypeRegistrationFunctionID: "t::hook"},
			`{"type":"registertriggertype","id":"ext-tt","description":"x"}`,
			func(e *Engine, _ *rawWorker) bool { _, ok := e.reg.TriggerType("ext-tt"); return ok }},
		{"trigger", auth.RBAC{OnTriggerRegistrationFunctionID: "t::hook"},
			`{"type":"registertrigger","id":"ext-tr","trigger_type":"cron","function_id":"svc::x","config":{"expression":"0 0 0 1 1 *"}}`,
			func(e *Engine, _ *rawWorker) bool { return len(e.reg.Triggers("cron")) == 1 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			rb := c.rbac
			rb.ExposeFunctions = []auth.Filter{{Pattern: "svc::*"}}
			e := startEngine(t, func(cfg *Config) {
				cfg.WorkerListeners = []WorkerListenerConfig{{Name: "rbac", Addr: "127.0.0.1:0", Auth: AuthConfig{RBAC: &rb}}}
			})
			srv := dialRaw(t, e)
			srv.sendJSON(`{"type":"registerfunction","id":"t::hook"}`)
			srv.sendJSON(`{"type":"registerfunction","id":"svc::x"}`)
			waitFunction(t, srv, "svc::x")
			seen := respond(srv, func(fn string, _ jsontext.Value) string {
				if fn == "t::hook" {
					return `{}`
				}
				return `1`
			})
			ext := dialRawAt(t, e.WorkerListenerURL("rbac"), nil)
			burst := clientFrame(websocket.TextMessage, []byte(`{"type":"invokefunction","invocation_id":"c1","function_id":"svc::x","data":{}}`))
			burst = append(burst, clientFrame(websocket.TextMessage, []byte(c.reg))...)
			if _, err := ext.ws.NetConn().Write(burst); err != nil {
				t.Fatal(err)
			}
			if m := nextSeen(t, seen); m.FunctionID != "svc::x" {
				t.Fatalf("the hook server got %s first, want the call", m.FunctionID)
			}
			// nextSeen waits 5 s, less than authCallTimeout.
			if m := nextSeen(t, seen); m.FunctionID != "t::hook" {
				t.Fatalf("the hook server got %s, want the hook", m.FunctionID)
			}
			if m := ext.expectSkipping(wire.TypeInvocationResult); m.InvocationID != "c1" || string(m.Result) != "1" {
				t.Fatalf("call in the burst: %+v", m)
			}
			if m := ext.callSkipping("sync", wire.FnChannelsCreate, `{}`); m.Error != nil {
				t.Fatal(m.Error)
			}
			if !c.ok(e, ext) {
				t.Errorf("registration not admitted")
			}
		})
	}
}

// The refusal of a worker upgrade logs whether the token was missing or
// wrong (the refusal itself says the same to both).
// Mutation: presence's test negated swaps the two.
func TestTokenRefusalLogsMissingOrWrong(t *testing.T) {
	e, logs := startEngineLogged(t, func(c *Config) { c.Auth.Tokens = []string{"a-token-of-20-chars!"} })
	for _, c := range []struct {
		h    http.Header
		want string
	}{
		{nil, "token=missing"},
		{http.Header{"Authorization": {"Bearer not-the-token"}}, "token=wrong"},
	} {
		if code, _ := handshake(t, e.WorkerURL(), c.h); code != http.StatusUnauthorized {
			t.Fatalf("handshake: %d", code)
		}
		// The line is written before the 401 is.
		if l := authLogLine(logs.String(), "worker refused: missing or wrong token"); !strings.Contains(l, c.want) {
			t.Errorf("want %s in %q", c.want, l)
		}
	}
}

// authLogLine is the last line of log containing s.
func authLogLine(log, s string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}

// startRBACHook starts an engine with a worker listener "rbac" guarded by
// rbac, and a worker on the main listener that registers the hook function
// hookID (the test answers its calls with respond).
func startRBACHook(t *testing.T, rbac *auth.RBAC, hookID string) (*Engine, *rawWorker) {
	t.Helper()
	rb := WorkerListenerConfig{Name: "rbac", Addr: "127.0.0.1:0", Auth: AuthConfig{RBAC: rbac}}
	e := startEngine(t, func(c *Config) { c.WorkerListeners = []WorkerListenerConfig{rb} })
	hooks := dialRaw(t, e)
	hooks.sendJSON(`{"type":"registerfunction","id":"` + hookID + `"}`)
	waitFunction(t, hooks, hookID)
	return e, hooks
}

// on_function_registration may replace the metadata: an object replaces
// the worker's, no metadata or null keeps it. A session may register its
// own function again (an update), but the id check that stops it from
// queueing behind another worker's function must not stop that.
// Mutations: auth.go's metadata test (len > 0 → >= 0, negated, != "null"
// negated) and the owner test negated (ownerOf(f.Owner) == w.id).
func TestFunctionHookMetadataAndUpdate(t *testing.T) {
	e, hooks := startRBACHook(t, &auth.RBAC{OnFunctionRegistrationFunctionID: "t::on-fn"}, "t::on-fn")
	respond(hooks, func(_ string, data jsontext.Value) string {
		switch {
		case strings.Contains(string(data), `"function_id":"set"`):
			return `{"metadata":{"by":"hook"}}`
		case strings.Contains(string(data), `"function_id":"null"`):
			return `{"metadata":null}`
		}
		return `{}`
	})
	ext := dialRawAt(t, e.WorkerListenerURL("rbac"), nil)
	for _, id := range []string{"set", "null", "keep"} {
		ext.sendJSON(`{"type":"registerfunction","id":"` + id + `","metadata":{"own":1}}`)
	}
	ext.sendJSON(`{"type":"registerfunction","id":"again","description":"v1"}`)
	ext.sendJSON(`{"type":"registerfunction","id":"again","description":"v2"}`)
	if m := ext.callSkipping("sync", wire.FnChannelsCreate, `{}`); m.Error != nil {
		t.Fatal(m.Error)
	}
	for id, want := range map[string]string{"set": `{"by":"hook"}`, "null": `{"own":1}`, "keep": `{"own":1}`} {
		f, ok := e.reg.Function(id)
		if !ok {
			t.Errorf("%s not registered", id)
			continue
		}
		if string(f.Metadata) != want {
			t.Errorf("%s: metadata %s, want %s", id, f.Metadata, want)
		}
	}
	if f, ok := e.reg.Function("again"); !ok || f.Description != "v2" {
		t.Errorf("the session's update of its own function: %+v", f)
	}
}

// on_trigger_registration may move a binding to another function; when it
// returns no config the worker's config stays.
// Mutations: auth.go's function_id test (*out.FunctionID != "" negated)
// and its config test (len(out.Config) > 0 → >= 0).
func TestTriggerHookFunctionAndConfig(t *testing.T) {
	e, hooks := startRBACHook(t, &auth.RBAC{OnTriggerRegistrationFunctionID: "t::on-tr"}, "t::on-tr")
	respond(hooks, func(_ string, data jsontext.Value) string {
		if strings.Contains(string(data), `"trigger_id":"move"`) {
			return `{"function_id":"g"}`
		}
		return `{}`
	})
	ext := dialRawAt(t, e.WorkerListenerURL("rbac"), nil)
	ext.sendJSON(`{"type":"registerfunction","id":"f"}`)
	ext.sendJSON(`{"type":"registerfunction","id":"g"}`)
	const cfg = `{"expression":"0 0 0 1 1 *"}`
	ext.sendJSON(`{"type":"registertrigger","id":"move","trigger_type":"cron","function_id":"f","config":` + cfg + `}`)
	ext.sendJSON(`{"type":"registertrigger","id":"keep","trigger_type":"cron","function_id":"f","config":` + cfg + `}`)
	if m := ext.callSkipping("sync", wire.FnChannelsCreate, `{}`); m.Error != nil {
		t.Fatal(m.Error)
	}
	got := map[string]string{}
	for _, tr := range e.reg.Triggers("cron") {
		got[tr.ID] = tr.FunctionID + " " + string(tr.Config)
	}
	if got["move"] != "g "+cfg || got["keep"] != "f "+cfg {
		t.Errorf("bindings %v, want move on g and keep on f, both with %s", got, cfg)
	}
}

// The warning for an open worker listener on a non-loopback address says
// whether TLS is on; an authenticated listener with TLS is not warned
// about.
// Mutations: the tls attribute negated (auth.go warnUnauthenticated), and
// the plaintext case negated.
func TestWarnUnauthenticatedListenerTLS(t *testing.T) {
	e, err := New(DefaultConfig(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	public := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 49135}
	tok := AuthConfig{Tokens: []string{"0123456789abcdef"}}
	for _, c := range []struct {
		tls  bool
		auth AuthConfig
		want string // "" no warning
	}{
		{false, AuthConfig{}, "tls=false"},
		{true, AuthConfig{}, "tls=true"},
		{true, tok, ""},
		{false, tok, "without TLS"},
	} {
		var buf strings.Builder
		e.log = slog.New(slog.NewTextHandler(&buf, nil))
		e.tlsCfg = nil
		if c.tls {
			e.tlsCfg = &tls.Config{}
		}
		e.warnUnauthenticated(&listenerAuth{name: "l", cfg: c.auth}, public)
		if s := buf.String(); c.want == "" && s != "" || c.want != "" && !strings.Contains(s, c.want) {
			t.Errorf("tls %v, tokens %v: logged %q, want %q", c.tls, c.auth.Tokens, s, c.want)
		}
	}
}

// Each worker listener's start is logged with whether it takes tokens
// and RBAC, and unnamed entries are named listener-<n>.
// Mutations: the tokens attribute (len > 0 → >= 0, negated) and the rbac
// attribute negated (auth.go startWorkerListeners).
func TestWorkerListenerStartLogged(t *testing.T) {
	_, logs := startEngineLogged(t, func(c *Config) {
		c.WorkerListeners = []WorkerListenerConfig{
			{Name: "tok", Addr: "127.0.0.1:0", Auth: AuthConfig{Tokens: []string{"0123456789abcdef"}}},
			openRBAC("rbac"),
			{Addr: "127.0.0.1:0"},
		}
	})
	// Start has returned: the lines are written.
	for name, want := range map[string]string{"tok": "tokens=true rbac=false", "rbac": "tokens=false rbac=true", "listener-3": "tokens=false rbac=false"} {
		if l := authLogLine(logs.String(), "name="+name+" "); !strings.Contains(l, "worker listener started") || !strings.Contains(l, want) {
			t.Errorf("listener %s: logged %q, want %s", name, l, want)
		}
	}
}

// Once a session's namespace is fixed (engine::workers::register), its
// registertriggertype is checked against the type's provider: it may
// update its own type, and may not take over a trusted worker's.
// Mutation: the provider test negated (auth.go admitTriggerType,
// ownerOf(tt.Provider) == w.id): the update is denied and the takeover
// goes through.
func TestSessionTriggerTypeOwnership(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.WorkerListeners = []WorkerListenerConfig{openRBAC("rbac")} })
	trusted := dialRaw(t, e)
	trusted.sendJSON(`{"type":"registertriggertype","id":"tt","description":"trusted"}`)
	trusted.call("sync", wire.FnChannelsCreate, `{}`)
	ext := dialRawAt(t, e.WorkerListenerURL("rbac"), nil)
	ext.announce("ext")
	ext.sendJSON(`{"type":"registertriggertype","id":"ext-tt","description":"v1"}`)
	ext.sendJSON(`{"type":"registertriggertype","id":"ext-tt","description":"v2"}`)
	ext.sendJSON(`{"type":"registertriggertype","id":"tt","description":"hijack"}`)
	if m := ext.callSkipping("sync", wire.FnChannelsCreate, `{}`); m.Error != nil {
		t.Fatal(m.Error)
	}
	if tt, ok := e.reg.TriggerType("ext-tt"); !ok || tt.Description != "v2" || ownerOf(tt.Provider) != ext.id {
		t.Errorf("the session's update of its own trigger type: %+v", tt)
	}
	if tt, ok := e.reg.TriggerType("tt"); !ok || tt.Description != "trusted" || ownerOf(tt.Provider) != trusted.id {
		t.Errorf("a trusted worker's trigger type after a session registered it: %+v", tt)
	}
}
