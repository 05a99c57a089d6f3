package wire

import (
	"strings"

	"github.com/go-json-experiment/json"
)

// TypeRegistrationRejected is the engine's refusal of a registration, as
// iii engines from 0.23 send it. SDKs from 0.23 log a refused function and
// keep serving their other functions; 0.22.1 SDKs ignore the message.
const TypeRegistrationRejected = "registrationrejected"

// DefaultNamespace is where everything lands that names no namespace: every
// older SDK's worker, its functions, and the engine's own functions.
const DefaultNamespace = "default"

// registrationrejected codes and the error code of a blank namespace.
const (
	// CodeFunctionNamespaceConflict: another live worker holds the function
	// id in that namespace (or the id is reserved to the engine). The only
	// code the SDKs treat as non-fatal: the worker keeps its connection.
	CodeFunctionNamespaceConflict = "FUNCTION_NAMESPACE_CONFLICT"
	// CodeWorkerNamespaceConflict: another live worker holds the worker
	// name in that namespace. Fatal: the engine closes the connection and
	// the 0.23+ SDKs do not reconnect.
	CodeWorkerNamespaceConflict = "WORKER_NAMESPACE_CONFLICT"
	// CodeInvalidNamespace answers a namespace field that is present but
	// empty or blank (invocationresult, triggerregistrationresult, or the
	// result of engine::workers::register).
	CodeInvalidNamespace = "INVALID_NAMESPACE"
)

// NamespaceOf returns the namespace a wire field names: DefaultNamespace
// when absent.
func NamespaceOf(ns *string) string {
	if ns == nil {
		return DefaultNamespace
	}
	return *ns
}

// BlankNamespace reports whether a namespace field is present and holds
// nothing but white space (absent and blank mean opposite things: the
// default namespace, and a mistake).
func BlankNamespace(ns *string) bool {
	return ns != nil && strings.TrimSpace(*ns) == ""
}

// ErrInvalidNamespace is the error for a blank namespace in field.
func ErrInvalidNamespace(field string) *ErrorBody {
	return &ErrorBody{Code: CodeInvalidNamespace, Message: "`" + field +
		"` is empty: it was named and left blank. Give it a name, or omit it to use `" + DefaultNamespace + "`."}
}

// RegistrationRejected is a registrationrejected message. It names one
// identity: a function id or a worker name.
type RegistrationRejected struct {
	Type       string `json:"type"`
	Code       string `json:"code"`
	Namespace  string `json:"namespace"`
	FunctionID string `json:"function_id,omitzero"`
	WorkerName string `json:"worker_name,omitzero"`
	// OwnerWorkerID is "" when the engine owns the id.
	OwnerWorkerID string `json:"owner_worker_id"`
}

// EncodeFunctionRejected appends the registrationrejected message refusing
// functionID in namespace because owner (""= the engine) holds it.
func EncodeFunctionRejected(dst []byte, namespace, functionID, owner string) []byte {
	return encodeRejected(dst, RegistrationRejected{
		Type: TypeRegistrationRejected, Code: CodeFunctionNamespaceConflict,
		Namespace: namespace, FunctionID: functionID, OwnerWorkerID: owner,
	})
}

// EncodeWorkerRejected appends the registrationrejected message refusing a
// worker name in namespace because the live worker owner holds it.
func EncodeWorkerRejected(dst []byte, namespace, workerName, owner string) []byte {
	return encodeRejected(dst, RegistrationRejected{
		Type: TypeRegistrationRejected, Code: CodeWorkerNamespaceConflict,
		Namespace: namespace, WorkerName: workerName, OwnerWorkerID: owner,
	})
}

func encodeRejected(dst []byte, r RegistrationRejected) []byte {
	b, err := json.Marshal(r, encodeOpts)
	if err != nil { // only strings: cannot fail
		panic(err)
	}
	return append(dst, b...)
}
