package wire

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestErrorConstructors(t *testing.T) {
	nf := ErrFunctionNotFound("a::b")
	if nf.Code != CodeFunctionNotFound || !strings.Contains(nf.Message, "a::b") || nf.Error() != nf.Code+": "+nf.Message {
		t.Fatalf("ErrFunctionNotFound = %+v (%q)", nf, nf.Error())
	}
	if st := ErrInvocationStopped(); st.Code != CodeInvocationStopped || st.Message == "" {
		t.Fatalf("ErrInvocationStopped = %+v", st)
	}
}

func TestActionKinds(t *testing.T) {
	var none *Action
	if none.IsVoid() || none.IsEnqueue() {
		t.Fatal("an absent action is synchronous")
	}
	if a := (&Action{Type: ActionVoid}); !a.IsVoid() || a.IsEnqueue() {
		t.Fatal("void")
	}
	if a := (&Action{Type: ActionEnqueue, Queue: "q"}); a.IsVoid() || !a.IsEnqueue() {
		t.Fatal("enqueue")
	}
}

func TestBlankAndNull(t *testing.T) {
	for _, s := range []string{"", " ", "\n\t\r "} {
		if !IsBlank([]byte(s)) {
			t.Errorf("IsBlank(%q) = false", s)
		}
	}
	if IsBlank([]byte(" {} ")) {
		t.Error("IsBlank of an object")
	}
	if string(DataOrNull(nil)) != "null" || string(DataOrNull([]byte(`{"a":1}`))) != `{"a":1}` {
		t.Error("DataOrNull")
	}
}

// A message the fast encoder declines (a string needing escapes) goes
// through the reference encoder and still round-trips.
func TestEncodeFallback(t *testing.T) {
	m := Message{Type: TypeInvocationResult, InvocationID: "id\u2028\"quoted\"", FunctionID: "f", Result: []byte(`{"x":"\u00e9"}`)}
	b, err := Encode([]byte("prefix:"), &m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "prefix:") {
		t.Fatalf("Encode dropped dst: %q", b)
	}
	var back Message
	if err := Decode(b[len("prefix:"):], &back); err != nil || back.InvocationID != m.InvocationID || back.FunctionID != "f" {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}

func TestEncodeFunctionRejected(t *testing.T) {
	b := EncodeFunctionRejected([]byte("x"), "default", "engine::functions::list", "")
	var got map[string]any
	if err := json.Unmarshal(b[1:], &got); err != nil {
		t.Fatal(err)
	}
	if got["type"] != TypeRegistrationRejected || got["code"] != CodeFunctionNamespaceConflict ||
		got["function_id"] != "engine::functions::list" || got["owner_worker_id"] != "" || got["namespace"] != "default" {
		t.Fatalf("registrationrejected = %v", got)
	}
}
