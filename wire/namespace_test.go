package wire

import (
	"strings"
	"testing"
)

// TestNamespaceFields: namespace and trigger_namespace decode as optional
// strings on both decoder paths (absent and null: nil; "" kept, so that a
// blank namespace can be refused) and are written only when set.
func TestNamespaceFields(t *testing.T) {
	tests := []struct {
		frame     string
		ns, trigg *string
	}{
		{frame: `{"type":"invokefunction","function_id":"f"}`},
		{frame: `{"type":"invokefunction","function_id":"f","namespace":null}`},
		{frame: `{"type":"invokefunction","function_id":"f","namespace":"orders"}`, ns: ptr("orders")},
		{frame: `{"type":"invokefunction","function_id":"f","namespace":""}`, ns: ptr("")},
		// An escape sends the frame to the reference decoder.
		{frame: `{"type":"registertrigger","id":"t","namespace":"or\u0064ers","trigger_namespace":"default"}`, ns: ptr("orders"), trigg: ptr("default")},
		{frame: `{"type":"registertrigger","id":"t","trigger_namespace":"billing"}`, trigg: ptr("billing")},
	}
	for _, tc := range tests {
		var m Message
		if err := Decode([]byte(tc.frame), &m); err != nil {
			t.Fatalf("%s: %v", tc.frame, err)
		}
		if !sameOpt(m.Namespace, tc.ns) || !sameOpt(m.TriggerNamespace, tc.trigg) {
			t.Errorf("%s: namespace %v, trigger_namespace %v; want %v, %v", tc.frame, show(m.Namespace), show(m.TriggerNamespace), show(tc.ns), show(tc.trigg))
		}
		b, err := Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(b), `"namespace":`); has != (tc.ns != nil) {
			t.Errorf("%s: encoded %s", tc.frame, b)
		}
		var back Message
		if err := Decode(b, &back); err != nil || !sameOpt(back.Namespace, tc.ns) || !sameOpt(back.TriggerNamespace, tc.trigg) {
			t.Errorf("%s: round trip %s: %v", tc.frame, b, err)
		}
	}
	if !BlankNamespace(ptr(" \t")) || !BlankNamespace(ptr("")) || BlankNamespace(nil) || BlankNamespace(ptr("a")) {
		t.Error("BlankNamespace")
	}
	if NamespaceOf(nil) != DefaultNamespace || NamespaceOf(ptr("x")) != "x" {
		t.Error("NamespaceOf")
	}
}

func ptr(s string) *string { return &s }

func sameOpt(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func show(s *string) string {
	if s == nil {
		return "<absent>"
	}
	return `"` + *s + `"`
}
