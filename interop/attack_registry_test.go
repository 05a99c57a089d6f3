package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	sluice "github.com/sluicehq/sluice"
)

// Registry trust boundaries (issue 9, defects 1, 2 and the id part of 11):
// engine ids are reserved, trigger bindings belong to whoever registered
// them, rejected HTTP bindings are not listed, ids are bounded.

// TestAttackRegistryEngineFunctionTakeover: official SDK workers register
// engine::functions::list (and, Node, engine::channels::create). The engine
// refuses (log line; Python 0.25 logs the registrationrejected it is sent),
// the Go client's calls get the builtins' answers, the worker never sees a
// call, and the builtins still work after it leaves.
// On 8b50cfc: the Go client's engine::functions::list got the worker's
// {"functions":[{"function_id":"impostor"}]}, and CreateChannel failed.
func TestAttackRegistryEngineFunctionTakeover(t *testing.T) {
	for _, name := range []string{"node-0.22.1", "python-0.25.0"} {
		t.Run(name, func(t *testing.T) {
			f := flavourNamed(name)
			f.require(t)
			e := startEngine(t, "127.0.0.1:0")
			c := connectGo(t, e, "go-victim")
			ctx := ctxFor(t, 2*callTimeout)
			prefix := f.Prefix + "imp"
			script := "attack_registry.py"
			if f.Runtime == "node" {
				script = "attack_registry.mjs"
			}
			w := startWorker(t, f, e, script, prefix, "MODE=impostor", "SEEDS=0")
			waitFunctions(ctx, t, c, prefix+"::ready")

			rows, err := listFunctions(ctx, c, map[string]any{})
			if err != nil {
				t.Fatalf("engine::functions::list: %v", err)
			}
			if !regHasFunction(rows, prefix+"::ready") || regHasFunction(rows, "impostor") {
				t.Fatalf("engine::functions::list answered %v; want the engine's list (with %s::ready)", rows, prefix)
			}
			if f.Runtime == "node" {
				regChannelRoundTrip(ctx, t, c)
			}
			if _, err := e.stderr.wait(ctx, func(s string) bool {
				return strings.Contains(s, "registerfunction refused") && strings.Contains(s, "engine::functions::list")
			}); err != nil {
				t.Fatalf("no engine warning for the refused registration: %v", err)
			}
			if f.Runtime == "python" {
				if _, err := w.stderr.wait(ctx, func(s string) bool {
					return strings.Contains(s, "registration rejected") && strings.Contains(s, "engine::functions::list")
				}); err != nil {
					t.Fatalf("the Python SDK did not log the engine's registrationrejected: %v", err)
				}
			}
			w.stop(t)
			if s := w.stdout.String(); strings.Contains(s, "IMPOSTOR") {
				t.Fatalf("the worker received engine calls:\n%s", s)
			}
			if _, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "worker disconnected") }); err != nil {
				t.Fatal(err)
			}
			if rows, err := listFunctions(ctx, c, map[string]any{}); err != nil || regHasFunction(rows, "impostor") {
				t.Fatalf("engine::functions::list after the worker left: %v, %v", rows, err)
			}
			if f.Runtime == "node" {
				regChannelRoundTrip(ctx, t, c)
			}
		})
	}
}

// TestAttackRegistryRawEngineIDs: a raw client registers an engine function
// id, a reserved id of its own invention and an engine trigger type, then
// unregisters the engine function: every builtin keeps serving and nothing
// of the client's is listed.
// On 8b50cfc: the unregisterfunction after the takeover removed
// engine::workers::list (function_not_found) and engine::mine was listed.
func TestAttackRegistryRawEngineIDs(t *testing.T) {
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-raw-ids")
	ctx := ctxFor(t, 2*callTimeout)
	raw := regDial(ctx, t, e)
	raw.send(map[string]any{"type": "registerfunction", "id": "engine::workers::list"})
	raw.send(map[string]any{"type": "registerfunction", "id": "engine::mine"})
	raw.send(map[string]any{"type": "registertriggertype", "id": "engine::mine-type", "description": "x"})
	raw.send(map[string]any{"type": "registertriggertype", "id": "http", "description": "x"})
	raw.send(map[string]any{"type": "unregisterfunction", "id": "engine::workers::list"})
	raw.sync(ctx)

	if _, err := listWorkers(ctx, c); err != nil {
		t.Fatalf("engine::workers::list after a worker registered and unregistered it: %v", err)
	}
	rows, err := listFunctions(ctx, c, map[string]any{"include_internal": true})
	if err != nil || regHasFunction(rows, "engine::mine") {
		t.Fatalf("functions: %v, %v; want engine::mine refused", rows, err)
	}
	types, err := sluice.Call[struct {
		Triggers []struct {
			ID         string `json:"id"`
			WorkerName string `json:"worker_name"`
		} `json:"triggers"`
	}](ctx, c, "engine::triggers::list", map[string]any{"include_internal": true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range types.Triggers {
		if tt.ID == "engine::mine-type" {
			t.Errorf("a worker registered trigger type engine::mine-type: %+v", types.Triggers)
		}
	}
	if !raw.seen(func(m map[string]any) bool {
		return m["type"] == "registrationrejected" && m["function_id"] == "engine::workers::list"
	}) {
		t.Errorf("no registrationrejected for engine::workers::list; the client saw %v", raw.types())
	}
	if _, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "registertriggertype refused") }); err != nil {
		t.Fatal(err)
	}

	// The Go SDK logs the refusal.
	logs := newLineLog()
	dumpOnFailure(t, "go client go-impostor", map[string]*lineLog{"log": logs})
	g, err := sluice.Connect(ctx, e.URL, sluice.WithName("go-impostor"),
		sluice.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := sluice.Register(g, "engine::functions::info", func(ctx context.Context, in json.RawMessage) (any, error) {
		return "impostor", nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := logs.wait(ctx, func(s string) bool {
		return strings.Contains(s, "refused a function registration") && strings.Contains(s, "engine::functions::info")
	}); err != nil {
		t.Fatalf("the Go SDK did not log the refusal: %v", err)
	}
	if out, err := sluice.Call[map[string]any](ctx, c, "engine::functions::info", map[string]any{"function_id": "engine::functions::info"}); err != nil {
		t.Fatalf("engine::functions::info after the Go impostor: %v, %v", out, err)
	}
}

// TestAttackRegistryTriggerHijack: an official Node SDK worker serves GET
// /<prefix>/hijack; another worker learns the trigger id from discovery and
// tries to remove it (raw unregistertrigger, engine::unregister_trigger) and
// to re-point it (registertrigger with the same id). Each is refused and the
// route keeps answering from the victim; the same holds for a durable
// binding made through engine::register_trigger.
// On 8b50cfc: the raw unregistertrigger removed the route (404).
func TestAttackRegistryTriggerHijack(t *testing.T) {
	f := flavourNamed("node-0.22.1")
	f.require(t)
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-attacker")
	ctx := ctxFor(t, 3*callTimeout)
	prefix := f.Prefix + "vic"
	startWorker(t, f, e, "attack_registry.mjs", prefix, "MODE=victim", "SEEDS=0")
	route := e.HTTPURL + "/" + prefix + "/hijack"
	victimFn := prefix + "::victim"
	id := regTriggerID(ctx, t, c, victimFn)
	regWantVictim(ctx, t, route, "before any attack")

	// The attacker's own function, which a hijacked route would serve.
	if err := sluice.Register(c, "attacker::evil", func(ctx context.Context, in json.RawMessage) (any, error) {
		return map[string]any{"status_code": 200, "body": map[string]string{"who": "evil"}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, c, "attacker::evil")

	raw := regDial(ctx, t, e)
	t.Run("unregistertrigger", func(t *testing.T) {
		raw.send(map[string]any{"type": "unregistertrigger", "id": id, "trigger_type": "http"})
		raw.sync(ctx)
		regWantVictim(ctx, t, route, "after a raw unregistertrigger")
		if _, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "unregistertrigger refused") }); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("engine::unregister_trigger", func(t *testing.T) {
		out, err := sluice.Call[map[string]any](ctx, c, "engine::unregister_trigger", map[string]any{"id": id})
		if err == nil {
			t.Errorf("engine::unregister_trigger of another worker's trigger answered %v, want an error", out)
		} else if se := asError(t, err); se.Code != "FORBIDDEN" {
			t.Errorf("engine::unregister_trigger error %v, want code FORBIDDEN", err)
		}
		regWantVictim(ctx, t, route, "after engine::unregister_trigger")
	})
	t.Run("registertrigger same id", func(t *testing.T) {
		raw.send(map[string]any{"type": "registertrigger", "id": id, "trigger_type": "http", "function_id": "attacker::evil",
			"config": map[string]any{"api_path": "/" + prefix + "/hijack", "http_method": "GET"}})
		m := raw.next(ctx, func(m map[string]any) bool { return m["type"] == "triggerregistrationresult" && m["id"] == id })
		if m == nil || m["error"] == nil {
			t.Errorf("registertrigger over another worker's id: %v, want a triggerregistrationresult with an error", m)
		}
		regWantVictim(ctx, t, route, "after a registertrigger with the victim's id")
		if got := regTriggerID(ctx, t, c, victimFn); got != id {
			t.Errorf("the victim's binding is now %q, want %q", got, id)
		}
	})
	t.Run("registertrigger same route", func(t *testing.T) {
		// A fresh trigger id on the victim's method and path: trigger ids
		// and routes are public (discovery), so "last wins" across workers
		// would re-point the endpoint. On afa19a3 the route served
		// attacker::evil after this.
		raw.send(map[string]any{"type": "registertrigger", "id": "evil-route", "trigger_type": "http", "function_id": "attacker::evil",
			"config": map[string]any{"api_path": "/" + prefix + "/hijack", "http_method": "GET"}})
		m := raw.next(ctx, func(m map[string]any) bool {
			return m["type"] == "triggerregistrationresult" && m["id"] == "evil-route"
		})
		if m == nil || !strings.Contains(fmt.Sprint(m["error"]), "route taken") {
			t.Errorf("registertrigger on another worker's route: %v, want a triggerregistrationresult with a 'route taken' error", m)
		}
		regWantVictim(ctx, t, route, "after a registertrigger on the victim's route")
	})
	t.Run("durable binding", func(t *testing.T) {
		owner := connectGo(t, e, "go-durable-owner")
		out, err := sluice.Call[struct {
			ID string `json:"id"`
		}](ctx, owner, "engine::register_trigger", map[string]any{"trigger_type": "http", "function_id": victimFn,
			"config": map[string]any{"api_path": "/" + prefix + "/durable", "http_method": "GET"}})
		if err != nil {
			t.Fatal(err)
		}
		durable := e.HTTPURL + "/" + prefix + "/durable"
		regWantVictim(ctx, t, durable, "the durable binding")
		if res, err := sluice.Call[map[string]any](ctx, c, "engine::unregister_trigger", map[string]any{"id": out.ID}); err == nil {
			t.Errorf("another worker removed a durable binding: %v", res)
		}
		raw.send(map[string]any{"type": "unregistertrigger", "id": out.ID})
		raw.sync(ctx)
		regWantVictim(ctx, t, durable, "after other workers tried to remove the durable binding")
		res, err := sluice.Call[struct {
			Removed bool `json:"removed"`
		}](ctx, owner, "engine::unregister_trigger", map[string]any{"id": out.ID})
		if err != nil || !res.Removed {
			t.Fatalf("the creator's engine::unregister_trigger: %+v, %v; want removed", res, err)
		}
		if status, _ := regGet(ctx, t, durable); status != http.StatusNotFound {
			t.Errorf("durable route after its creator removed it: %d, want 404", status)
		}
	})
}

// TestAttackRegistryRejectedRouteNotListed: a binding whose HTTP route
// conflicts with another's is refused and appears in no
// engine::registered-triggers::list, filtered by function or not.
// On 8b50cfc: the refused binding was listed (inactive).
func TestAttackRegistryRejectedRouteNotListed(t *testing.T) {
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-routes")
	ctx := ctxFor(t, 2*callTimeout)
	if err := sluice.Register(c, "routes::first", func(ctx context.Context, in json.RawMessage) (any, error) {
		return map[string]any{"status_code": 200, "body": "first"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// Same shape, other parameter name: both would match the same requests.
	// (The same method and path replaces the route: docs/http-triggers.md.)
	if _, err := c.RegisterTrigger(sluice.TriggerSpec{Type: "http", FunctionID: "routes::first",
		Config: map[string]any{"api_path": "/conflict/:a", "http_method": "GET"}}); err != nil {
		t.Fatal(err)
	}
	firstID := regTriggerID(ctx, t, c, "routes::first")

	raw := regDial(ctx, t, e)
	second := uuid.NewString()
	raw.send(map[string]any{"type": "registertrigger", "id": second, "trigger_type": "http", "function_id": "routes::second",
		"config": map[string]any{"api_path": "/conflict/:b", "http_method": "GET"}})
	if m := raw.next(ctx, func(m map[string]any) bool { return m["type"] == "triggerregistrationresult" && m["id"] == second }); m == nil || m["error"] == nil {
		t.Fatalf("conflicting route: %v, want a triggerregistrationresult with an error", m)
	}
	for _, in := range []map[string]any{{}, {"function_id": "routes::second"}} {
		out := regRegisteredTriggers(ctx, t, c, in)
		for _, r := range out {
			if r.ID == second {
				t.Errorf("engine::registered-triggers::list %v lists the refused binding: %+v", in, out)
			}
		}
	}
	if _, err := sluice.Call[map[string]any](ctx, c, "engine::registered-triggers::info", map[string]any{"id": second}); err == nil {
		t.Error("engine::registered-triggers::info found the refused binding")
	}
	if got := regTriggerID(ctx, t, c, "routes::first"); got != firstID {
		t.Errorf("first binding %q, want %q", got, firstID)
	}
}

// TestAttackRegistryLongIDs: 1 MiB function, trigger and trigger type ids
// are refused (max_id_length, 256 bytes by default); the trigger's
// registrant gets a triggerregistrationresult with an error, and the engine
// keeps serving.
// On 8b50cfc: the 1 MiB function id was registered and listed.
func TestAttackRegistryLongIDs(t *testing.T) {
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-long")
	ctx := ctxFor(t, 2*callTimeout)
	raw := regDial(ctx, t, e)
	long := "x::" + strings.Repeat("a", 1<<20)
	raw.send(map[string]any{"type": "registerfunction", "id": long})
	raw.send(map[string]any{"type": "registertriggertype", "id": long})
	raw.send(map[string]any{"type": "registertrigger", "id": long, "trigger_type": "http", "function_id": "x::f",
		"config": map[string]any{"api_path": "/long"}})
	raw.send(map[string]any{"type": "registerfunction", "id": "x::" + strings.Repeat("b", 253)}) // 256 bytes: fits
	raw.sync(ctx)

	rows, err := listFunctions(ctx, c, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	fits := false
	for _, r := range rows {
		if len(r.FunctionID) > 256 {
			t.Fatalf("a %d-byte function id was registered", len(r.FunctionID))
		}
		fits = fits || r.FunctionID == "x::"+strings.Repeat("b", 253)
	}
	if !fits {
		t.Error("a 256-byte function id was refused")
	}
	if out := regRegisteredTriggers(ctx, t, c, map[string]any{}); len(out) != 0 {
		t.Errorf("registered triggers %+v, want none", out)
	}
	if !raw.seen(func(m map[string]any) bool {
		errBody, _ := m["error"].(map[string]any)
		msg, _ := errBody["message"].(string)
		return m["type"] == "triggerregistrationresult" && strings.Contains(msg, "max_id_length")
	}) {
		t.Errorf("no triggerregistrationresult naming max_id_length; the client saw %v", raw.types())
	}
	for _, what := range []string{"registerfunction refused", "registertriggertype refused", "trigger registration refused"} {
		if _, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, what) && strings.Contains(s, "bytes") }); err != nil {
			t.Errorf("no %q warning: %v", what, err)
		}
	}
	// A longer limit lets a longer id through.
	e2 := startEngine(t, "127.0.0.1:0", "--config", regConfig(t, "max_id_length: 2048\n"))
	raw2 := regDial(ctx, t, e2)
	raw2.send(map[string]any{"type": "registerfunction", "id": "x::" + strings.Repeat("c", 1000)})
	raw2.sync(ctx)
	waitFunctions(ctx, t, connectGo(t, e2, "go-long2"), "x::"+strings.Repeat("c", 1000))
}

// ---------------------------------------------------------------- helpers

func regHasFunction(rows []functionRow, id string) bool {
	for _, r := range rows {
		if r.FunctionID == id {
			return true
		}
	}
	return false
}

// regChannelRoundTrip creates a channel through engine::channels::create
// and streams a few bytes through it.
func regChannelRoundTrip(ctx context.Context, t *testing.T, c *sluice.Client) {
	t.Helper()
	ch, err := c.CreateChannel(ctx)
	if err != nil {
		t.Fatalf("CreateChannel: %v", err)
	}
	if _, err := ch.Writer.Write([]byte("engine")); err != nil {
		t.Fatal(err)
	}
	if err := ch.Writer.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := ch.Reader.ReadAll(); err != nil || string(got) != "engine" {
		t.Fatalf("channel round trip: %q, %v", got, err)
	}
}

type regTriggerRow struct {
	ID         string `json:"id"`
	FunctionID string `json:"function_id"`
}

func regRegisteredTriggers(ctx context.Context, t *testing.T, c *sluice.Client, in map[string]any) []regTriggerRow {
	t.Helper()
	out, err := sluice.Call[struct {
		Triggers []regTriggerRow `json:"registered_triggers"`
	}](ctx, c, "engine::registered-triggers::list", in)
	if err != nil {
		t.Fatalf("engine::registered-triggers::list: %v", err)
	}
	return out.Triggers
}

// regTriggerID waits until fn has exactly one binding and returns its id.
func regTriggerID(ctx context.Context, t *testing.T, c *sluice.Client, fn string) string {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		rows := regRegisteredTriggers(ctx, t, c, map[string]any{"function_id": fn})
		if len(rows) == 1 {
			return rows[0].ID
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("bindings of %s: %+v, want exactly one", fn, rows)
		}
	}
}

func regGet(ctx context.Context, t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func regWantVictim(ctx context.Context, t *testing.T, url, when string) {
	t.Helper()
	if status, body := regGet(ctx, t, url); status != http.StatusOK || !strings.Contains(body, `"victim"`) {
		t.Fatalf("GET %s %s: %d %s; want 200 from the victim's function", url, when, status, body)
	}
}

func regConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := t.TempDir() + "/sluice.yaml"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// regRaw is a worker speaking the protocol by hand: the SDKs would not send
// most of these messages.
type regRaw struct {
	t    *testing.T
	ws   *websocket.Conn
	mu   sync.Mutex
	msgs []map[string]any
	read int // msgs already matched by next
	in   chan struct{}
}

func regDial(ctx context.Context, t *testing.T, e *engineProc) *regRaw {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, e.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &regRaw{t: t, ws: ws, in: make(chan struct{}, 1)}
	t.Cleanup(func() { _ = ws.Close() })
	go func() {
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, m)
			r.mu.Unlock()
			select {
			case r.in <- struct{}{}:
			default:
			}
		}
	}()
	return r
}

func (r *regRaw) send(v any) {
	r.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		r.t.Fatalf("raw send: %v", err)
	}
}

// next returns the first message not yet returned that matches, waiting
// for it (nil when ctx ends).
func (r *regRaw) next(ctx context.Context, match func(map[string]any) bool) map[string]any {
	for {
		r.mu.Lock()
		for i := r.read; i < len(r.msgs); i++ {
			if match(r.msgs[i]) {
				r.read = i + 1
				m := r.msgs[i]
				r.mu.Unlock()
				return m
			}
		}
		r.mu.Unlock()
		select {
		case <-r.in:
		case <-ctx.Done():
			return nil
		}
	}
}

// seen reports whether any message received so far matches.
func (r *regRaw) seen(match func(map[string]any) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if match(m) {
			return true
		}
	}
	return false
}

func (r *regRaw) types() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []any
	for _, m := range r.msgs {
		out = append(out, m["type"])
	}
	return out
}

// sync makes a call on the raw socket and waits for its result: the engine
// reads a socket in order, so everything sent before has been handled.
func (r *regRaw) sync(ctx context.Context) {
	r.t.Helper()
	id := uuid.NewString()
	r.send(map[string]any{"type": "invokefunction", "invocation_id": id, "function_id": "engine::functions::list", "data": map[string]any{}})
	if r.next(ctx, func(m map[string]any) bool { return m["type"] == "invocationresult" && m["invocation_id"] == id }) == nil {
		r.t.Fatalf("no answer on the raw socket: %v", ctx.Err())
	}
}
