package wire

import (
	"strings"
	"testing"
)

// TestErrFunctionNotFoundIn: a miss in the default namespace that exists
// nowhere else keeps the message older SDK users know; a miss elsewhere
// names the namespace, and the namespaces holding the id when there are.
func TestErrFunctionNotFoundIn(t *testing.T) {
	for _, c := range []struct {
		ns        string
		elsewhere []string
		want      string
	}{
		{DefaultNamespace, nil, "Function f::x not found"},
		{"orders", nil, "Function f::x not found in namespace orders."},
		{DefaultNamespace, []string{"a", "b"}, "Function f::x not found in namespace default. It is registered in namespace(s): a, b."},
		{"orders", []string{"billing"}, "Function f::x not found in namespace orders. It is registered in namespace(s): billing."},
	} {
		eb := ErrFunctionNotFoundIn("f::x", c.ns, c.elsewhere)
		if eb.Code != CodeFunctionNotFound || eb.Message != c.want {
			t.Errorf("(%s, %v) = %s %q, want %q", c.ns, c.elsewhere, eb.Code, eb.Message, c.want)
		}
	}
}

// TestErrInvalidNamespace names the blank field and the way out.
func TestErrInvalidNamespace(t *testing.T) {
	eb := ErrInvalidNamespace("trigger_namespace")
	if eb.Code != CodeInvalidNamespace || !strings.HasPrefix(eb.Message, "`trigger_namespace` is empty") || !strings.Contains(eb.Message, "`default`") {
		t.Errorf("ErrInvalidNamespace = %+v", eb)
	}
}

// TestEncodeRejected: registrationrejected names one identity (a function
// id or a worker name, the other left out), its namespace and its owner
// ("" for the engine), appended to dst.
func TestEncodeRejected(t *testing.T) {
	fn := string(EncodeFunctionRejected([]byte("x"), "orders", "f::x", ""))
	if want := `x{"type":"registrationrejected","code":"FUNCTION_NAMESPACE_CONFLICT","namespace":"orders","function_id":"f::x","owner_worker_id":""}`; fn != want {
		t.Errorf("function rejected:\n%s\nwant\n%s", fn, want)
	}
	w := string(EncodeWorkerRejected(nil, "default", "billing", "w-1"))
	if want := `{"type":"registrationrejected","code":"WORKER_NAMESPACE_CONFLICT","namespace":"default","worker_name":"billing","owner_worker_id":"w-1"}`; w != want {
		t.Errorf("worker rejected:\n%s\nwant\n%s", w, want)
	}
}
