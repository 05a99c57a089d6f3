package interop

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// TestAttackClusterHTTPRouteHijack: three engine processes. A Go worker on
// node 0 serves GET /clvic/hijack/:id; node 1 serves it too (the route came
// with node 0's heartbeat). An attacker connected to node 1 registers its
// own function on that route, and on a path matching the same requests:
// both are refused ("route taken", another node's route) and node 1 keeps
// answering from node 0's function. The same route to the same function
// from another worker on node 1 (the victim's code running there too) is
// accepted and served by node 1 itself.
// Without remoteConflict (ca2cc2f, where a node's own routes win over the
// others'): node 1 accepted the attacker's GET /clvic/hijack/:id and sent
// GET /clvic/hijack/7 to attacker::evil (504: the raw attacker never
// answers).
func TestAttackClusterHTTPRouteHijack(t *testing.T) {
	nodes := startClusterEngines(t, 3)
	ctx := ctxFor(t, 90*time.Second)
	victimOn := func(c *sluice.Client, label string) {
		t.Helper()
		if err := c.HandleHTTPFunc("GET /clvic/hijack/{id}", "clvic::victim", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, fmt.Sprintf(`{"who":"victim","on":%q}`, label))
		}); err != nil {
			t.Fatal(err)
		}
	}
	victim := connectGo(t, nodes[0], "victim-on-node-0")
	victimOn(victim, "node-0")
	waitFunctions(ctx, t, victim, "clvic::victim")
	get := func() *http.Request {
		req, _ := http.NewRequest("GET", nodes[1].HTTPURL+"/clvic/hijack/7", nil)
		return req
	}
	code, body := clusterHTTPUntil(ctx, t, get, func(code int, _ string) bool { return code != http.StatusNotFound })
	if code != http.StatusOK || body != `{"who":"victim","on":"node-0"}` {
		t.Fatalf("GET through node 1 before the attack: %d %s", code, body)
	}

	raw := regDial(ctx, t, nodes[1])
	raw.send(map[string]any{"type": "registerfunction", "id": "attacker::evil"})
	for _, path := range []string{"/clvic/hijack/:id", "/clvic/hijack/:other"} {
		id := "evil" + strings.ReplaceAll(path, "/", "-")
		raw.send(map[string]any{"type": "registertrigger", "id": id, "trigger_type": "http", "function_id": "attacker::evil",
			"config": map[string]any{"api_path": path, "http_method": "GET"}})
		// An accepted binding gets no answer: bound the wait.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m := raw.next(wctx, func(m map[string]any) bool { return m["type"] == "triggerregistrationresult" && m["id"] == id })
		cancel()
		if m == nil || !strings.Contains(fmt.Sprint(m["error"]), "route taken") || !strings.Contains(fmt.Sprint(m["error"]), "another node") {
			t.Errorf("registertrigger GET %s on node 1: %v, want a 'route taken' error naming another node", path, m)
		}
	}
	raw.sync(ctx)
	if code, body := clusterHTTPUntil(ctx, t, get, func(int, string) bool { return true }); code != http.StatusOK || body != `{"who":"victim","on":"node-0"}` {
		t.Fatalf("GET through node 1 after the attack: %d %s, want node 0's victim", code, body)
	}
	// A healthy node still serves its own routes and the others'.
	if code, body := clusterHTTPUntil(ctx, t, func() *http.Request {
		req, _ := http.NewRequest("GET", nodes[2].HTTPURL+"/clvic/hijack/8", nil)
		return req
	}, func(code int, _ string) bool { return code != http.StatusNotFound }); code != http.StatusOK || !strings.Contains(body, "victim") {
		t.Fatalf("GET through node 2: %d %s", code, body)
	}

	// The victim's own code on node 1: accepted, and node 1 serves it itself.
	twin := connectGo(t, nodes[1], "victim-on-node-1")
	victimOn(twin, "node-1")
	if code, body := clusterHTTPUntil(ctx, t, get, func(_ int, body string) bool { return strings.Contains(body, "node-1") }); code != http.StatusOK || body != `{"who":"victim","on":"node-1"}` {
		t.Fatalf("GET through node 1 with the victim's code registered there too: %d %s", code, body)
	}
}
