package wire

import (
	"bytes"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

func TestDecodeLenient(t *testing.T) {
	cases := []struct {
		name  string
		frame string
		check func(t *testing.T, m *Message)
	}{
		{"stray message_type ignored", `{"type":"registertrigger","function_id":"f","config":{"a":1},"id":"t1","message_type":"registertrigger","trigger_type":"http"}`,
			func(t *testing.T, m *Message) {
				if m.Type != TypeRegisterTrigger || m.ID != "t1" || m.TriggerType != "http" || string(m.Config) != `{"a":1}` {
					t.Fatalf("got %+v", m)
				}
			}},
		{"missing data stays absent", `{"type":"invokefunction","invocation_id":"i","function_id":"f"}`,
			func(t *testing.T, m *Message) {
				if m.Data != nil {
					t.Fatalf("data = %q, want absent", m.Data)
				}
				if string(DataOrNull(m.Data)) != "null" {
					t.Fatal("DataOrNull")
				}
			}},
		{"null invocation id (rust void)", `{"type":"invokefunction","invocation_id":null,"function_id":"f","data":1,"action":{"type":"void"}}`,
			func(t *testing.T, m *Message) {
				if m.InvocationID != "" || !m.Action.IsVoid() || string(m.Data) != "1" {
					t.Fatalf("got %+v", m)
				}
			}},
		{"duplicate keys tolerated", `{"type":"invokefunction","function_id":"f","data":{"a":1,"a":2}}`,
			func(t *testing.T, m *Message) {
				if m.FunctionID != "f" {
					t.Fatalf("got %+v", m)
				}
			}},
		{"error body", `{"type":"invocationresult","invocation_id":"i","error":{"code":"c","message":"m","stacktrace":"s"}}`,
			func(t *testing.T, m *Message) {
				if m.Error == nil || m.Error.Code != "c" || m.Error.Stacktrace != "s" {
					t.Fatalf("got %+v", m)
				}
			}},
		{"result null kept", `{"type":"invocationresult","invocation_id":"i","result":null}`,
			func(t *testing.T, m *Message) {
				if string(m.Result) != "null" {
					t.Fatalf("result %q", m.Result)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m Message
			if err := Decode([]byte(c.frame), &m); err != nil {
				t.Fatal(err)
			}
			c.check(t, &m)
		})
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	for _, f := range []string{`not json`, `[1,2]`, `{"type":1}`, `{"type":"x"`, ``} {
		var m Message
		if err := Decode([]byte(f), &m); err == nil {
			t.Errorf("Decode(%q) succeeded", f)
		}
	}
}

func TestEncodeOmitsAbsent(t *testing.T) {
	m := Message{Type: TypeInvocationResult, InvocationID: "i", FunctionID: "f"}
	out, err := Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), `{"type":"invocationresult","invocation_id":"i","function_id":"f"}`; got != want {
		t.Fatalf("got %s want %s", got, want)
	}
	m.Error = &ErrorBody{Code: "c", Message: "m"}
	out, _ = Marshal(&m)
	if strings.Contains(string(out), "stacktrace") {
		t.Fatalf("stacktrace must be absent, got %s", out)
	}
	m.Error = nil
	m.Result = jsontext.Value(`{}`)
	out, _ = Marshal(&m)
	if !strings.Contains(string(out), `"result":{}`) {
		t.Fatalf("empty object result must be kept: %s", out)
	}
}

func TestRoundTrip(t *testing.T) {
	in := Message{Type: TypeInvokeFunction, InvocationID: "5b7e", FunctionID: "a::b",
		Data: jsontext.Value(`{"x":[1,2,"3"]}`), Metadata: jsontext.Value(`{"m":1}`),
		Traceparent: "00-1-2-01", Action: &Action{Type: ActionEnqueue, Queue: "q"}}
	b, err := Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var out Message
	if err := Decode(b, &out); err != nil {
		t.Fatal(err)
	}
	b2, _ := Marshal(&out)
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed:\n%s\n%s", b, b2)
	}
}

func TestInjectCallerID(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"a":1}`, `{"a":1,"_caller_worker_id":"w"}`},
		{`{}`, `{"_caller_worker_id":"w"}`},
		{` { } `, `{"_caller_worker_id":"w"}`},
		{`[1]`, `[1]`},
		{`"s"`, `"s"`},
		{`null`, `null`},
		{``, ``},
		{`{"_caller_worker_id":"spoof","b":2}`, `{"_caller_worker_id":"w","b":2}`},
	}
	for _, c := range cases {
		got := InjectCallerID(nil, jsontext.Value(c.in), "w")
		if string(got) != c.want {
			t.Errorf("InjectCallerID(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	// Escaped spelling of the key must still be overwritten, not duplicated.
	got := InjectCallerID(nil, jsontext.Value(`{"_caller_worker_\u0069d":"spoof"}`), "w")
	var m map[string]string
	if err := json.Unmarshal(got, &m); err != nil || m[CallerWorkerIDKey] != "w" || len(m) != 1 {
		t.Fatalf("escaped key: %s (%v)", got, err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"invokefunction","invocation_id":"i","function_id":"f","data":{"a":1}}`,
		`{"type":"registertrigger","function_id":"f","config":{"api_path":"/x"},"id":"t","trigger_type":"http"}`,
		`{"type":"invocationresult","invocation_id":"i","error":{"code":"c","message":"m"}}`,
		`{"type":"reattach","previous_worker_id":"p","reattach_token":"t"}`,
		`{}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var m Message
		if err := Decode(frame, &m); err != nil {
			return
		}
		out, err := Marshal(&m)
		if err != nil {
			return // e.g. raw values that were accepted leniently
		}
		var again Message
		if err := Decode(out, &again); err != nil {
			t.Fatalf("re-decode of our own output failed: %v\n%s", err, out)
		}
		_ = InjectCallerID(nil, m.Data, "w")
	})
}

func FuzzInjectCallerID(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{}`, `{"_caller_worker_id":1}`, `[{}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !jsontext.Value(data).IsValid() {
			return
		}
		out := InjectCallerID(nil, data, "w")
		if !jsontext.Value(out).IsValid(jsontext.AllowDuplicateNames(false)) && jsontext.Value(data).IsValid(jsontext.AllowDuplicateNames(false)) {
			t.Fatalf("produced invalid JSON from %s: %s", data, out)
		}
	})
}
