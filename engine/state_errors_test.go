package engine

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/queue"
	"github.com/sluicehq/sluice/wire"
)

// State and stream functions when their input, their store or a custom
// stream's worker fails.

// callErr calls fn and returns its error, failing the test if it succeeded.
func callErr(t *testing.T, w *rawWorker, fn, data string) *wire.ErrorBody {
	t.Helper()
	m := w.callSkipping(invocationID(), fn, data)
	if m.Error == nil {
		t.Fatalf("%s %s succeeded: %s", fn, data, m.Result)
	}
	return m.Error
}

// TestStateStreamInputErrors: a call without a required field is refused
// with deserialization_error naming the function and the field (as
// upstream words it), and changes nothing.
func TestStateStreamInputErrors(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory; c.State.MaxValueBytes = 64 })
	w := dialRaw(t, e)
	for _, c := range []struct{ fn, data, field string }{
		{"state::get", `{"key":"k"}`, "scope"},
		{"state::get", `{"scope":"s"}`, "key"},
		{"state::delete", `{"scope":"s"}`, "key"},
		{"state::update", `{"key":"k","ops":[]}`, "scope"},
		{"state::update", `{"scope":"s","key":"k"}`, "ops"},
		{"state::set", `{"scope":"s","key":"k"}`, "value"},
		{"state::list", `{}`, "scope"},
		{"stream::set", `{"group_id":"g","item_id":"i","data":1}`, "stream_name"},
		{"stream::set", `{"stream_name":"s","item_id":"i","data":1}`, "group_id"},
		{"stream::set", `{"stream_name":"s","group_id":"g","data":1}`, "item_id"},
		{"stream::set", `{"stream_name":"s","group_id":"g","item_id":"i"}`, "data"},
		{"stream::get", `{"stream_name":"s","group_id":"g"}`, "item_id"},
		{"stream::delete", `{"stream_name":"s"}`, "group_id"},
		{"stream::update", `{"stream_name":"s","group_id":"g","item_id":"i"}`, "ops"},
		{"stream::update", `{"group_id":"g","item_id":"i","ops":[]}`, "stream_name"},
		{"stream::list", `{"stream_name":"s"}`, "group_id"},
		{"stream::list_groups", `{}`, "stream_name"},
		{"stream::send", `{"group_id":"g"}`, "stream_name"},
		{"stream::send", `{"stream_name":"s"}`, "group_id"},
	} {
		eb := callErr(t, w, c.fn, c.data)
		if eb.Code != wire.CodeDeserializationError || !strings.Contains(eb.Message, "invalid input for "+c.fn) || !strings.Contains(eb.Message, "`"+c.field+"`") {
			t.Errorf("%s %s: %+v, want deserialization_error naming `%s`", c.fn, c.data, eb, c.field)
		}
	}
	if eb := callErr(t, w, "state::update", `{"scope":"s","key":"k","ops":{"type":"set"}}`); eb.Code != wire.CodeDeserializationError || !strings.Contains(eb.Message, "state::update: ops:") {
		t.Errorf("ops not a list: %+v", eb)
	}
	if eb := callErr(t, w, "stream::set", `{"stream_name":"s","group_id":"g","item_id":"i","data":"`+strings.Repeat("x", 80)+`"}`); eb.Code != "VALUE_TOO_LARGE" {
		t.Errorf("oversized stream item: %+v", eb)
	}
	if eb := callErr(t, w, "stream::update", `{"stream_name":"s","group_id":"g","item_id":"i","ops":[{"type":"set","path":"a","value":"`+strings.Repeat("x", 80)+`"}]}`); eb.Code != "VALUE_TOO_LARGE" {
		t.Errorf("stream::update past the limit: %+v", eb)
	}
	// Nothing of the above was stored.
	if got := callOK(t, w, "stream::list_all", `{}`); got != `{"count":0,"stream":[]}` && got != `{"stream":[],"count":0}` {
		t.Errorf("refused calls stored something: %s", got)
	}
	if got := callOK(t, w, "state::list_groups", `{}`); got != `{"groups":[]}` {
		t.Errorf("refused calls stored state: %s", got)
	}
}

// TestStateReadsDoNotCreateTheStore: on a durable data dir, reads and
// deletes before the first write answer "nothing" without creating the
// store file; the first write creates it.
func TestStateReadsDoNotCreateTheStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	e := startEngine(t, func(c *Config) { c.DataDir = dir })
	w := dialRaw(t, e)
	for _, c := range []struct{ fn, data, want string }{
		{"state::get", `{"scope":"s","key":"k"}`, `null`},
		{"state::delete", `{"scope":"s","key":"k"}`, `null`},
		{"state::list", `{"scope":"s"}`, `[]`},
		{"state::list_groups", `{}`, `{"groups":[]}`},
		{"stream::get", `{"stream_name":"s","group_id":"g","item_id":"i"}`, `null`},
		{"stream::delete", `{"stream_name":"s","group_id":"g","item_id":"i"}`, `{"old_value":null}`},
		{"stream::list", `{"stream_name":"s","group_id":"g"}`, `[]`},
		{"stream::list_groups", `{"stream_name":"s"}`, `[]`},
	} {
		if got := callOK(t, w, c.fn, c.data); got != c.want {
			t.Errorf("%s before any write: %s, want %s", c.fn, got, c.want)
		}
	}
	if got := callOK(t, w, "stream::list_all", `{}`); !strings.Contains(got, `"count":0`) {
		t.Errorf("stream::list_all before any write: %s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, queue.FileName)); !os.IsNotExist(err) {
		t.Fatalf("a read created the store: %v", err)
	}
	callOK(t, w, "state::set", `{"scope":"s","key":"k","value":1}`)
	if _, err := os.Stat(filepath.Join(dir, queue.FileName)); err != nil {
		t.Fatalf("the first write did not create the store: %v", err)
	}
	if got := callOK(t, w, "state::get", `{"scope":"s","key":"k"}`); got != "1" {
		t.Errorf("get after the first write: %s", got)
	}
}

// TestStateStoreUnavailable: when the store cannot be opened (the data
// dir is a file), each write fails with its function's code and the
// cause, and the engine keeps serving.
func TestStateStoreUnavailable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e := startEngine(t, func(c *Config) { c.DataDir = file })
	w := dialRaw(t, e)
	for _, c := range []struct{ fn, data, code, what string }{
		{"state::set", `{"scope":"s","key":"k","value":1}`, "SET_ERROR", "Failed to set value: "},
		{"state::update", `{"scope":"s","key":"k","ops":[]}`, "UPDATE_ERROR", "Failed to update value: "},
		{"stream::set", `{"stream_name":"s","group_id":"g","item_id":"i","data":1}`, "STREAM_SET_ERROR", "Failed to set value: "},
		{"stream::update", `{"stream_name":"s","group_id":"g","item_id":"i","ops":[]}`, "STREAM_UPDATE_ERROR", "Failed to update value: "},
	} {
		eb := callErr(t, w, c.fn, c.data)
		if eb.Code != c.code || !strings.HasPrefix(eb.Message, c.what) || !strings.Contains(eb.Message, "not a directory") {
			t.Errorf("%s with no store: %+v, want %s with the cause", c.fn, eb, c.code)
		}
	}
	settle(t, w)
}

// TestCustomStreamErrors: a custom stream's worker function failing makes
// the stream call fail with the stream code and the worker's message,
// naming the function; its answers are passed on and fire the stream's
// events.
func TestCustomStreamErrors(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory })
	h := dialRaw(t, e) // implements stream "ext"
	c := dialRaw(t, e)
	for _, op := range []string{"get", "set", "delete", "list", "list_groups"} {
		h.sendJSON(`{"type":"registerfunction","id":"stream::` + op + `(ext)"}`)
	}
	h.sendJSON(`{"type":"registerfunction","id":"on::ext"}`)
	h.sendJSON(`{"type":"registertrigger","id":"t-ext","trigger_type":"stream","function_id":"on::ext","config":{"stream_name":"ext"}}`)
	settle(t, h)
	waitFunction(t, c, "stream::list_groups(ext)")

	// call calls fn on c while h's custom function answers it with
	// result, or fails it (result "").
	call := func(fn, data, custom, result string) wire.Message {
		t.Helper()
		id := invocationID()
		c.send(wire.Message{Type: wire.TypeInvokeFunction, InvocationID: id, FunctionID: fn, Data: jsontext.Value(data)})
		inv := h.awaitInvoke(custom, func(wire.Message) bool { return true })
		m := wire.Message{Type: wire.TypeInvocationResult, InvocationID: inv.InvocationID, FunctionID: inv.FunctionID}
		if result == "" {
			m.Error = &wire.ErrorBody{Code: "boom", Message: "disk on fire"}
		} else {
			m.Result = jsontext.Value(result)
		}
		h.send(m)
		return c.await(func(m wire.Message) bool { return m.Type == wire.TypeInvocationResult && m.InvocationID == id })
	}
	for _, f := range []struct{ op, data, code, prefix string }{
		{"get", `{"stream_name":"ext","group_id":"g","item_id":"i"}`, "STREAM_GET_ERROR", "Failed to get value: "},
		{"set", `{"stream_name":"ext","group_id":"g","item_id":"i","data":1}`, "STREAM_SET_ERROR", "Failed to set value: "},
		{"delete", `{"stream_name":"ext","group_id":"g","item_id":"i"}`, "STREAM_DELETE_ERROR", "Failed to delete value: "},
		{"list", `{"stream_name":"ext","group_id":"g"}`, "STREAM_GET_GROUP_ERROR", "Failed to list values: "},
		{"list_groups", `{"stream_name":"ext"}`, "STREAM_LIST_GROUPS_ERROR", "Failed to list groups: "},
	} {
		fn := "stream::" + f.op + "(ext)"
		m := call("stream::"+f.op, f.data, fn, "")
		if m.Error == nil || m.Error.Code != f.code || m.Error.Message != f.prefix+fn+": disk on fire" {
			t.Errorf("stream::%s failing: %+v", f.op, m.Error)
		}
	}

	if m := call("stream::set", `{"stream_name":"ext","group_id":"g","item_id":"i","data":1}`, "stream::set(ext)", `"not an object"`); m.Error == nil || m.Error.Code != "JSON_ERROR" {
		t.Errorf("custom set answering a string: %+v", m.Error)
	}
	// A custom set's answer is the result, and the binding sees an update
	// (there was an old value).
	if m := call("stream::set", `{"stream_name":"ext","group_id":"g","item_id":"i","data":2}`, "stream::set(ext)", `{"old_value":1,"new_value":2}`); m.Error != nil || string(m.Result) != `{"old_value":1,"new_value":2}` {
		t.Errorf("custom set: %s %+v", m.Result, m.Error)
	}
	ev := h.awaitInvoke("on::ext", func(wire.Message) bool { return true })
	if !strings.Contains(string(ev.Data), `"event":{"data":2,"type":"update"}`) && !strings.Contains(string(ev.Data), `"event":{"type":"update","data":2}`) {
		t.Errorf("event of a custom set: %s", ev.Data)
	}
	h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: ev.InvocationID, FunctionID: ev.FunctionID})
	// A custom delete with an old value fires a delete event; its
	// old_value is passed on.
	if m := call("stream::delete", `{"stream_name":"ext","group_id":"g","item_id":"i"}`, "stream::delete(ext)", `{"old_value":{"x":1}}`); string(m.Result) != `{"old_value":{"x":1}}` {
		t.Errorf("custom delete: %s %+v", m.Result, m.Error)
	}
	ev = h.awaitInvoke("on::ext", func(wire.Message) bool { return true })
	if !strings.Contains(string(ev.Data), `"type":"delete"`) {
		t.Errorf("event of a custom delete: %s", ev.Data)
	}
	h.send(wire.Message{Type: wire.TypeInvocationResult, InvocationID: ev.InvocationID, FunctionID: ev.FunctionID})
	if m := call("stream::list", `{"stream_name":"ext","group_id":"g"}`, "stream::list(ext)", `[1,2]`); string(m.Result) != `[1,2]` {
		t.Errorf("custom list: %s %+v", m.Result, m.Error)
	}
	if m := call("stream::list_groups", `{"stream_name":"ext"}`, "stream::list_groups(ext)", `["a"]`); string(m.Result) != `["a"]` {
		t.Errorf("custom list_groups: %s %+v", m.Result, m.Error)
	}
}

// TestTriggerConditionFunction: a binding's condition_function_id gets the
// event first; only an answer of exactly false, or a failed condition
// call, skips the handler (null or anything else runs it).
func TestTriggerConditionFunction(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.DataDir = DataDirMemory })
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"on::change"}`)
	h.sendJSON(`{"type":"registerfunction","id":"cond::check"}`)
	h.sendJSON(`{"type":"registertrigger","id":"st-c","trigger_type":"state","function_id":"on::change","config":{"scope":"w","condition_function_id":"cond::check"}}`)
	settle(t, h)
	c := dialRaw(t, e)
	waitFunction(t, c, "cond::check")

	keyOf := func(m wire.Message) string {
		var ev struct {
			Key string `json:"key"`
		}
		_ = json.Unmarshal(m.Data, &ev)
		return ev.Key
	}
	answers := map[string]*wire.ErrorBody{"err": {Code: "boom", Message: "condition broke"}}
	results := map[string]string{"yes": "true", "no": "false", "spaced": " false ", "null": "null", "last": "true"}
	var conds, ran []string
	// serve answers the condition and handler calls until done holds
	// (the events are delivered concurrently, in no fixed order).
	serve := func(done func() bool) {
		h.await(func(m wire.Message) bool {
			if m.Type != wire.TypeInvokeFunction {
				return false
			}
			k := keyOf(m)
			res := wire.Message{Type: wire.TypeInvocationResult, InvocationID: m.InvocationID, FunctionID: m.FunctionID, Result: jsontext.Value("null")}
			switch m.FunctionID {
			case "cond::check":
				conds = append(conds, k)
				if eb := answers[k]; eb != nil {
					res.Error, res.Result = eb, nil
				} else {
					res.Result = jsontext.Value(results[k])
				}
			case "on::change":
				ran = append(ran, k)
			}
			h.send(res)
			return done()
		})
	}
	for _, k := range []string{"no", "spaced", "err", "yes", "null"} {
		callOK(t, c, "state::set", `{"scope":"w","key":"`+k+`","value":1}`)
	}
	serve(func() bool { return len(conds) == 5 && len(ran) == 2 })
	// Every condition was answered before this last event: a handler
	// wrongly run for one of them is called right after its condition's
	// answer, so in practice before this event's handler.
	callOK(t, c, "state::set", `{"scope":"w","key":"last","value":1}`)
	serve(func() bool { return len(ran) > 0 && ran[len(ran)-1] == "last" })
	slices.Sort(ran)
	if len(conds) != 6 {
		t.Errorf("condition called for %v, want every event", conds)
	}
	if strings.Join(ran, ",") != "last,null,yes" {
		t.Errorf("handler ran for %v, want yes, null, last (not no, spaced, err)", ran)
	}
}
