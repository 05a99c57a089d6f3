package interop

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// TestCLIModules drives `sluice state get|set|delete|list` and `sluice
// stream list` of the built binary against state and streams written by a
// Node SDK 0.22.1 worker (and read back by it), including a custom stream
// the worker serves itself. On 25c1da9 `sluice state` and `sluice stream`
// were "unknown command" (exit 2).
func TestCLIModules(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	must(t, os.WriteFile(cfg, []byte("state:\n  max_value_bytes: 256\n"), 0o600))
	e := startEngine(t, "127.0.0.1:0", "--config", cfg, "--data-dir", filepath.Join(t.TempDir(), "data"))
	ctx := ctxFor(t, 60*time.Second)
	c := connectGo(t, e, "climod-go")
	must(t, sluice.Register(c, "gomod::seen", func(context.Context, json.RawMessage) (any, error) { return nil, nil }))
	const p = "clim"
	f := flavourNamed("node-0.22.1")
	startWorker(t, f, e, f.script("modules"), p)
	waitFunctions(ctx, t, c, p+"::call", p+"::incr", "gomod::seen", "stream::list_groups("+p+"-custom)")
	nodeCall := func(fn string, in any) json.RawMessage {
		t.Helper()
		var out struct {
			Result json.RawMessage `json:"result"`
			Error  any             `json:"error"`
		}
		raw, err := c.Trigger(ctx, p+"::call", map[string]any{"function_id": fn, "payload": in})
		must(t, err)
		if err := json.Unmarshal(raw, &out); err != nil || out.Error != nil {
			t.Fatalf("node %s: %s", fn, raw)
		}
		return out.Result
	}

	t.Run("state", func(t *testing.T) {
		// Written by the Node SDK (three state::update increments), read by the CLI.
		if _, err := c.Trigger(ctx, p+"::incr", map[string]any{"scope": "cli", "key": "counter", "n": 3}); err != nil {
			t.Fatal(err)
		}
		if got := cliJSON[map[string]int](t, e, "state", "get", "cli", "counter"); got["count"] != 3 {
			t.Errorf("state get cli counter: %v", got)
		}
		// Written by the CLI, read by the Node SDK.
		if out := cliOK(t, e, "state", "set", "cli", "greeting", "text=hello", "n=2"); out != `{"n":2,"text":"hello"}`+"\n" {
			t.Errorf("state set printed %q", out)
		}
		jsonEq(t, "node state::get", nodeCall("state::get", map[string]string{"scope": "cli", "key": "greeting"}), `{"n":2,"text":"hello"}`)
		set := cliJSON[map[string]json.RawMessage](t, e, "state", "set", "cli", "greeting", `"bye"`)
		jsonEq(t, "set old_value", set["old_value"], `{"n":2,"text":"hello"}`)
		jsonEq(t, "set new_value", set["new_value"], `"bye"`)

		if scopes := cliJSON[[]string](t, e, "state", "list"); !slices.Contains(scopes, "cli") {
			t.Errorf("state list: %v", scopes)
		}
		vals := cliJSON[[]json.RawMessage](t, e, "state", "list", "cli")
		if len(vals) != 2 {
			t.Errorf("state list cli: %s", mustJSON(vals))
		}
		if out := cliOK(t, e, "state", "list", "cli"); !strings.Contains(out, "bye\n") || !strings.Contains(out, `{"count":3}`) {
			t.Errorf("state list cli (lines):\n%s", out)
		}
		jsonEq(t, "state delete", json.RawMessage(cliOK(t, e, "state", "delete", "cli", "greeting")), `"bye"`)
		jsonEq(t, "node state::get after delete", nodeCall("state::get", map[string]string{"scope": "cli", "key": "greeting"}), `null`)

		// An engine error: its code, exit 1; usage errors: exit 2.
		cliFails(t, e, 1, "VALUE_TOO_LARGE", "state", "set", "cli", "big", `"`+strings.Repeat("x", 300)+`"`, "--json")
		cliFails(t, e, 2, "", "state", "get", "cli")
		cliFails(t, e, 2, "", "state", "set", "cli", "k", "{not json")
		cliFails(t, e, 2, "", "state", "bogus")
	})

	t.Run("stream", func(t *testing.T) {
		nodeCall("stream::set", map[string]any{"stream_name": "board", "group_id": "g1", "item_id": "a", "data": map[string]int{"v": 1}})
		nodeCall("stream::set", map[string]any{"stream_name": "board", "group_id": "g2", "item_id": "b", "data": map[string]int{"v": 2}})
		type streamRow struct {
			ID     string   `json:"id"`
			Groups []string `json:"groups"`
		}
		all := cliJSON[[]streamRow](t, e, "stream", "list")
		if i := slices.IndexFunc(all, func(s streamRow) bool { return s.ID == "board" }); i < 0 || !slices.Equal(all[i].Groups, []string{"g1", "g2"}) {
			t.Errorf("stream list: %+v", all)
		}
		if out := cliOK(t, e, "stream", "list"); !strings.HasPrefix(out, "STREAM") || !strings.Contains(out, "g1,g2") {
			t.Errorf("stream list table:\n%s", out)
		}
		if g := cliJSON[[]string](t, e, "stream", "list", "board"); !slices.Equal(g, []string{"g1", "g2"}) {
			t.Errorf("stream list board: %v", g)
		}
		jsonEq(t, "stream list board g2", json.RawMessage(cliOK(t, e, "stream", "list", "board", "g2", "--json")), `[{"v":2}]`)

		// A custom stream: the Node worker's createStream answers.
		nodeCall("stream::set", map[string]any{"stream_name": p + "-custom", "group_id": "cg", "item_id": "x", "data": "from-node"})
		if g := cliJSON[[]string](t, e, "stream", "list", p+"-custom"); !slices.Equal(g, []string{"cg"}) {
			t.Errorf("stream list of the custom stream: %v", g)
		}
		if out := cliOK(t, e, "stream", "list", p+"-custom", "cg"); out != "from-node\n" {
			t.Errorf("stream list custom cg printed %q", out)
		}
		cliFails(t, e, 2, "", "stream", "list", "a", "b", "c")
		cliFails(t, e, 2, "", "stream")
	})
}
