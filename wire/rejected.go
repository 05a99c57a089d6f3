package wire

import "github.com/go-json-experiment/json"

// TypeRegistrationRejected is the engine's refusal of a registration, as
// iii engines from 0.23 send it. SDKs from 0.23 log a refused function and
// stop serving it locally; 0.22.1 SDKs ignore the message.
const TypeRegistrationRejected = "registrationrejected"

// CodeFunctionNamespaceConflict is the registrationrejected code for a
// function id another owner holds; it is the only code the SDKs treat as
// non-fatal (any other code stops a Python or Rust worker for good).
const CodeFunctionNamespaceConflict = "FUNCTION_NAMESPACE_CONFLICT"

// RegistrationRejected is a registrationrejected message.
type RegistrationRejected struct {
	Type       string `json:"type"`
	Code       string `json:"code"`
	Namespace  string `json:"namespace"`
	FunctionID string `json:"function_id,omitzero"`
	// OwnerWorkerID is "" when the engine owns the id.
	OwnerWorkerID string `json:"owner_worker_id"`
}

// EncodeFunctionRejected appends the registrationrejected message refusing
// functionID because owner (""= the engine) holds it.
func EncodeFunctionRejected(dst []byte, functionID, owner string) []byte {
	b, err := json.Marshal(RegistrationRejected{
		Type: TypeRegistrationRejected, Code: CodeFunctionNamespaceConflict,
		Namespace: "default", FunctionID: functionID, OwnerWorkerID: owner,
	}, encodeOpts)
	if err != nil { // only strings: cannot fail
		panic(err)
	}
	return append(dst, b...)
}
