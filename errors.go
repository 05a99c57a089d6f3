package sluice

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/sluicehq/sluice/wire"
)

// ErrClosed is returned by every method of a Client after Close, and by the
// calls that were still waiting for a result when Close was called.
var ErrClosed = errors.New("sluice: client closed")

// Error codes a caller may meet in Error.Code. The engine and other SDKs
// produce more (see the wire package); these are the ones this SDK creates
// or that callers commonly test for.
const (
	// CodeInvocationFailed: the handler returned an error or panicked.
	CodeInvocationFailed = wire.CodeInvocationFailed
	// CodeFunctionNotFound: no worker serves the function id.
	CodeFunctionNotFound = wire.CodeFunctionNotFound
	// CodeInvocationStopped: the connection that carried the call, or the
	// one executing it, went away before a result arrived.
	CodeInvocationStopped = wire.CodeInvocationStopped
	// CodeTimeout: the caller's deadline passed; the Error wraps
	// context.DeadlineExceeded.
	CodeTimeout = wire.CodeTimeout
	// CodeTriggerRegistrationFailed: a trigger type handler refused a
	// binding.
	CodeTriggerRegistrationFailed = wire.CodeTriggerRegistration
)

// Error is an error that travelled over the wire (an invocation's error
// body), or one this SDK reports in the same shape (timeouts, stopped
// invocations). Use errors.As to get at the code:
//
//	var e *sluice.Error
//	if errors.As(err, &e) && e.Code == sluice.CodeFunctionNotFound { ... }
//
// A handler may return an *Error to choose the code the caller sees.
type Error struct {
	Code       string
	Message    string
	Stacktrace string
	// FunctionID is the function that was called, when known.
	FunctionID string

	cause error
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the local cause, if any: context.DeadlineExceeded for
// CodeTimeout, so errors.Is(err, context.DeadlineExceeded) holds.
func (e *Error) Unwrap() error { return e.cause }

func errorFromWire(b *wire.ErrorBody, functionID string) *Error {
	return &Error{Code: b.Code, Message: b.Message, Stacktrace: b.Stacktrace, FunctionID: functionID}
}

// handlerError turns what a handler returned into the error body sent back:
// an *Error anywhere in the chain keeps its code, message and stack; any
// other error becomes invocation_failed.
func handlerError(err error) *wire.ErrorBody {
	var e *Error
	if errors.As(err, &e) {
		code := e.Code
		if code == "" {
			code = CodeInvocationFailed
		}
		return &wire.ErrorBody{Code: code, Message: e.Message, Stacktrace: e.Stacktrace}
	}
	return &wire.ErrorBody{Code: CodeInvocationFailed, Message: err.Error()}
}

// panicError is the error body for a handler that panicked: the stack lets
// the caller find the bug without access to the worker's logs.
func panicError(v any) *wire.ErrorBody {
	return &wire.ErrorBody{
		Code:       CodeInvocationFailed,
		Message:    fmt.Sprintf("panic: %v", v),
		Stacktrace: string(debug.Stack()),
	}
}

// ctxError converts the end of a call's context into the error returned to
// the caller: a deadline becomes a TIMEOUT *Error (wrapping
// context.DeadlineExceeded), a cancellation stays context.Canceled.
func ctxError(ctx context.Context, functionID string) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return timeoutError(functionID)
	}
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("sluice: call %s: %w (%w)", functionID, err, cause)
	}
	return fmt.Errorf("sluice: call %s: %w", functionID, err)
}

func timeoutError(functionID string) *Error {
	return &Error{
		Code:       CodeTimeout,
		Message:    "invocation of " + functionID + " timed out",
		FunctionID: functionID,
		cause:      context.DeadlineExceeded,
	}
}

func stoppedError(functionID string) *Error {
	return &Error{
		Code:       CodeInvocationStopped,
		Message:    "connection to the engine was lost before the result arrived",
		FunctionID: functionID,
	}
}
