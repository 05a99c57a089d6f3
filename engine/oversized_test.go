package engine

import (
	"strings"
	"testing"
)

// An oversized invokefunction is answered whether its envelope comes before
// the data (Node, Rust, Go SDKs) or after it (the Python SDK), and a
// message far over the limit costs the engine no buffer of its size (see
// internal/wsconn). On 8b50cfc the Python-ordered one got no answer.
func TestOversizedInvokeAnsweredInEitherOrder(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.MaxMessageSize = 64 << 10 })
	w := dialRaw(t, e)
	data := `"` + strings.Repeat("a", 1<<20) + `"`
	for id, msg := range map[string]string{
		"first": `{"type":"invokefunction","invocation_id":"first","function_id":"x::y","data":` + data + `}`,
		"last":  `{"function_id":"x::y","data":` + data + `,"metadata":null,"invocation_id":"last","traceparent":null,"type":"invokefunction"}`,
	} {
		w.sendJSON(msg)
		res := w.expect("invocationresult")
		if res.InvocationID != id || res.FunctionID != "x::y" || res.Error == nil || !strings.Contains(res.Error.Message, "max_message_size") {
			t.Fatalf("%s: %+v", id, res)
		}
	}
	if r := w.call("ok", "engine::functions::list", `{}`); r.Error != nil {
		t.Fatal(r.Error)
	}
}
