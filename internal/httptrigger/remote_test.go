package httptrigger

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"

	"github.com/sluicehq/sluice/internal/registry"
)

func remoteTrigger(id, fn, method, path string) *registry.Trigger {
	b, _ := json.Marshal(map[string]any{"api_path": path, "http_method": method})
	return &registry.Trigger{ID: id, Type: "http", FunctionID: fn, Config: b, Owner: "node-b/" + id}
}

// TestRemoteRoutes: other nodes' routes are served when no local route
// matches, a local route wins over an identical remote one, a remote
// route conflicting with an earlier remote one is skipped and reported,
// a miss prefers the remote 405 over the local 404, and replacing the set
// drops what is gone (404 as for any unknown route).
func TestRemoteRoutes(t *testing.T) {
	e := newEnv(t, Config{})
	e.inv.set("local", echo("local"))
	e.inv.set("remote", echo("remote"))
	e.mustRoute("l1", "local", "GET", "/both")
	errs := e.srv.SetRemoteRoutes([]*registry.Trigger{
		remoteTrigger("r1", "remote", "GET", "/both"),
		remoteTrigger("r2", "remote", "GET", "/only/:id"),
		remoteTrigger("r3", "remote", "GET", "/only/:other"), // conflicts with r2
		remoteTrigger("r4", "remote", "POST", "/post"),
	})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "r3") {
		t.Fatalf("errors %v, want one for r3", errs)
	}
	if got := e.srv.RemoteRoutes(); got != 3 {
		t.Fatalf("%d remote routes, want 3", got)
	}
	if code, _, body := e.do("GET", "/both", nil); code != 200 || !strings.Contains(body, `"fn":"local"`) {
		t.Fatalf("GET /both: %d %s, want the local route", code, body)
	}
	if code, _, body := e.do("GET", "/only/7", nil); code != 200 || !strings.Contains(body, `"fn":"remote"`) || !strings.Contains(body, `"id":"7"`) {
		t.Fatalf("GET /only/7: %d %s, want the remote route", code, body)
	}
	if code, hdr, _ := e.do("GET", "/post", nil); code != http.StatusMethodNotAllowed || hdr.Get("Allow") == "" {
		t.Fatalf("GET /post: %d Allow=%q, want 405 from the remote route", code, hdr.Get("Allow"))
	}
	e.srv.SetRemoteRoutes(nil)
	if code, _, _ := e.do("GET", "/only/7", nil); code != http.StatusNotFound {
		t.Fatalf("GET /only/7 after the remote routes left: %d, want 404", code)
	}
	if code, _, body := e.do("GET", "/both", nil); code != 200 || !strings.Contains(body, `"fn":"local"`) {
		t.Fatalf("GET /both: %d %s", code, body)
	}
}

// TestRemoteRouteNotTakenLocally: with another node's route GET /pay/:id
// to function "pay", a local trigger on the same method and path (or a
// path matching the same requests) to another function is refused with
// ErrRouteTaken, since local routes win on their node; the same route to
// the same function (the same worker code on another node) is accepted.
// Before remoteConflict the local route was accepted and served.
func TestRemoteRouteNotTakenLocally(t *testing.T) {
	e := newEnv(t, Config{})
	e.inv.set("pay", echo("pay"))
	e.inv.set("evil", echo("evil"))
	if errs := e.srv.SetRemoteRoutes([]*registry.Trigger{remoteTrigger("r1", "pay", "GET", "/pay/:id")}); len(errs) != 0 {
		t.Fatal(errs)
	}
	for _, path := range []string{"/pay/:id", "/pay/:other"} {
		err := e.route("evil-"+path, "evil", "GET", path)
		if !errors.Is(err, ErrRouteTaken) || !strings.Contains(err.Error(), "another node") {
			t.Errorf("local GET %s to another function: %v, want ErrRouteTaken", path, err)
		}
	}
	if code, _, body := e.do("GET", "/pay/1", nil); code != 200 || !strings.Contains(body, `"fn":"pay"`) {
		t.Fatalf("GET /pay/1: %d %s, want the other node's route", code, body)
	}
	if err := e.route("same", "pay", "GET", "/pay/:id"); err != nil {
		t.Fatalf("the same route to the same function: %v", err)
	}
	if err := e.route("post", "evil", "POST", "/pay/:id"); err != nil {
		t.Fatalf("another method on the same path: %v", err)
	}
}
