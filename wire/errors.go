package wire

import "strings"

// Error codes carried in ErrorBody.Code.
const (
	CodeInvocationFailed     = "invocation_failed"
	CodeFunctionNotFound     = "function_not_found"
	CodeFunctionNotInvokable = "function_not_invokable"
	CodeInvocationStopped    = "invocation_stopped"
	CodeInvocationError      = "invocation_error"
	CodeChannelSendFailed    = "channel_send_failed"
	CodeEnqueueError         = "enqueue_error"
	CodeDeserializationError = "deserialization_error"
	CodeSerializationError   = "serialization_error"
	CodeNotFound             = "NOT_FOUND"
	CodeInvalidArguments     = "INVALID_ARGUMENTS"
	CodeTriggerRegistration  = "trigger_registration_failed"
	CodeTriggerTypeNotFound  = "trigger_type_not_found"
	CodeUnregisterFailed     = "unregister_failed"
	CodeForbidden            = "FORBIDDEN"
	CodeTimeout              = "TIMEOUT"
	CodeEngineShuttingDown   = "engine_shutting_down"
	CodeChannelLimit         = "channel_limit_reached"
	// CodeWorkerCongested: a worker has too many bytes waiting to be
	// written to it (it is not reading): the executor (the call was not
	// delivered) or the caller (its result was dropped).
	CodeWorkerCongested = "worker_congested"
)

// Errorf-free constructors for the engine's common errors.

// ErrFunctionNotFound is the engine's answer for an unknown function id.
func ErrFunctionNotFound(id string) *ErrorBody {
	return &ErrorBody{Code: CodeFunctionNotFound, Message: "Function " + id + " not found"}
}

// ErrFunctionNotFoundIn is function_not_found for a lookup in namespace
// ns; elsewhere lists the namespaces where the id does exist. Lookups in
// the default namespace that find it nowhere else keep the plain message
// every older SDK user knows.
func ErrFunctionNotFoundIn(id, ns string, elsewhere []string) *ErrorBody {
	if ns == DefaultNamespace && len(elsewhere) == 0 {
		return ErrFunctionNotFound(id)
	}
	msg := "Function " + id + " not found in namespace " + ns + "."
	if len(elsewhere) > 0 {
		msg += " It is registered in namespace(s): " + strings.Join(elsewhere, ", ") + "."
	}
	return &ErrorBody{Code: CodeFunctionNotFound, Message: msg}
}

// ErrInvocationStopped is sent when the connection that owed a result ends.
func ErrInvocationStopped() *ErrorBody {
	return &ErrorBody{Code: CodeInvocationStopped, Message: "Invocation stopped"}
}
