package wire

import (
	"bytes"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Message types on the worker socket ("type" field).
const (
	TypeRegisterFunction          = "registerfunction"
	TypeUnregisterFunction        = "unregisterfunction"
	TypeRegisterTriggerType       = "registertriggertype"
	TypeUnregisterTriggerType     = "unregistertriggertype"
	TypeRegisterTrigger           = "registertrigger"
	TypeUnregisterTrigger         = "unregistertrigger"
	TypeTriggerRegistrationResult = "triggerregistrationresult"
	TypeInvokeFunction            = "invokefunction"
	TypeInvocationResult          = "invocationresult"
	TypeWorkerRegistered          = "workerregistered"
	TypeReattach                  = "reattach"
	TypeRegisterService           = "registerservice"
	TypePing                      = "ping"
	TypePong                      = "pong"
	TypeError                     = "error"
)

// Action types of an invokefunction.
const (
	ActionVoid    = "void"
	ActionEnqueue = "enqueue"
)

// Message is every message of the worker protocol as one flat struct: each
// message type uses a subset of the fields. One struct means one decode per
// frame; raw JSON values (data, result, config, ...) stay undecoded bytes so
// the engine forwards them without re-encoding.
//
// A nil jsontext.Value means "absent" and is omitted on output; the JSON
// literal null is kept and written as null.
type Message struct {
	Type string `json:"type"`

	// ID is the function id (registerfunction, unregisterfunction), the
	// trigger id (registertrigger, unregistertrigger,
	// triggerregistrationresult), the trigger type id (registertriggertype)
	// or the service id (registerservice).
	ID string `json:"id,omitzero"`

	InvocationID string         `json:"invocation_id,omitzero"`
	FunctionID   string         `json:"function_id,omitzero"`
	Data         jsontext.Value `json:"data,omitzero"`
	Action       *Action        `json:"action,omitzero"`
	Metadata     jsontext.Value `json:"metadata,omitzero"`
	Traceparent  string         `json:"traceparent,omitzero"`
	Baggage      string         `json:"baggage,omitzero"`
	Result       jsontext.Value `json:"result,omitzero"`
	Error        *ErrorBody     `json:"error,omitzero"`

	// registerfunction
	Description    string         `json:"description,omitzero"`
	RequestFormat  jsontext.Value `json:"request_format,omitzero"`
	ResponseFormat jsontext.Value `json:"response_format,omitzero"`
	Invocation     jsontext.Value `json:"invocation,omitzero"`

	// registertriggertype
	TriggerRequestFormat jsontext.Value `json:"trigger_request_format,omitzero"`
	CallRequestFormat    jsontext.Value `json:"call_request_format,omitzero"`

	// registertrigger, unregistertrigger, triggerregistrationresult
	TriggerType string         `json:"trigger_type,omitzero"`
	Config      jsontext.Value `json:"config,omitzero"`

	// workerregistered, reattach
	WorkerID         string `json:"worker_id,omitzero"`
	ReattachToken    string `json:"reattach_token,omitzero"`
	PreviousWorkerID string `json:"previous_worker_id,omitzero"`

	// registerservice
	Name            string `json:"name,omitzero"`
	ParentServiceID string `json:"parent_service_id,omitzero"`

	// Namespace (invokefunction, registertrigger, registertriggertype,
	// unregistertriggertype): nil when absent (the default namespace, or
	// for registertriggertype the connection's); a present empty or blank
	// value is refused (INVALID_NAMESPACE). A JSON null reads as absent.
	Namespace *string `json:"namespace,omitzero"`
	// TriggerNamespace (registertrigger): where the trigger type's
	// provider is looked up; absent means the connection's namespace, then
	// the default one.
	TriggerNamespace *string `json:"trigger_namespace,omitzero"`
	// observe.v1 (docs/protocol.md#observe): invokefunction's caller,
	// observe_depth and activation; registerfunction's observe descriptor;
	// workerregistered's features. Kept raw: only observe code reads them.
	Caller       jsontext.Value `json:"caller,omitzero"`
	ObserveDepth jsontext.Value `json:"observe_depth,omitzero"`
	Activation   jsontext.Value `json:"activation,omitzero"`
	Observe      jsontext.Value `json:"observe,omitzero"`
	Features     jsontext.Value `json:"features,omitzero"`

	// Verified names the raw values (Data, Metadata, Result) known to be
	// one valid JSON value in valid UTF-8, which Encode then writes
	// without scanning them again: a sender sets it on a message it
	// builds from values DecodeText reported valid. Never part of the
	// JSON; decoding leaves it empty.
	Verified Verified `json:"-"`
}

// Verified is a set of raw fields of a Message known to be valid.
type Verified uint8

// The raw fields Verified can name.
const (
	VerifiedData Verified = 1 << iota
	VerifiedMetadata
	VerifiedResult
)

// Action is the "action" of an invokefunction: absent means synchronous.
type Action struct {
	Type  string `json:"type"`
	Queue string `json:"queue,omitzero"`
}

// IsVoid reports whether the action asks for fire-and-forget.
func (a *Action) IsVoid() bool { return a != nil && a.Type == ActionVoid }

// IsEnqueue reports whether the action asks for a queued invocation.
func (a *Action) IsEnqueue() bool { return a != nil && a.Type == ActionEnqueue }

// ErrorBody is the error of an invocationresult. The Node SDK accepts it only
// when code and message are strings and stacktrace is a string or absent.
type ErrorBody struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Stacktrace string `json:"stacktrace,omitzero"`
}

func (e *ErrorBody) Error() string { return e.Code + ": " + e.Message }

// Null is the JSON literal null.
var Null = jsontext.Value("null")

var (
	decodeOpts = json.JoinOptions(
		jsontext.AllowDuplicateNames(true),
		jsontext.AllowInvalidUTF8(true),
	)
	encodeOpts = json.JoinOptions(
		jsontext.AllowInvalidUTF8(true),
	)
)

// Decode parses one worker-protocol frame. Unknown fields are ignored. An
// error means the frame is not a JSON object of the expected shape; the
// caller should log it and keep the connection.
//
// Decode does not retain frame: the caller may reuse it at once.
func Decode(frame []byte, m *Message) error {
	*m = Message{}
	if decodeFast(frame, m) {
		return nil
	}
	*m = Message{}
	if err := json.Unmarshal(frame, m, decodeOpts); err != nil {
		return err
	}
	return nil
}

// DecodeText is Decode for a frame known to be valid UTF-8 (a WebSocket
// text message, which the socket layer has checked). rawValid reports
// that the fast path decoded it, having validated its raw values: each is
// then one valid JSON value in valid UTF-8, which a message built from
// them may mark in Verified. (The reference decoder's are not vouched
// for: it may accept what the fast encoder must not write verbatim.)
//
// The UTF-8 is the caller's to guarantee: the fast path does not check
// it, so a frame that is not UTF-8 would have its raw values vouched for
// and written verbatim to other peers. The engine passes only text
// messages wsconn.ReadFrame returned without error, which are valid
// UTF-8 as a whole.
func DecodeText(frame []byte, m *Message) (rawValid bool, err error) {
	*m = Message{}
	if decodeFast(frame, m) {
		return true, nil
	}
	*m = Message{}
	return false, json.Unmarshal(frame, m, decodeOpts)
}

// Encode appends the JSON encoding of m to dst and returns the result.
func Encode(dst []byte, m *Message) ([]byte, error) {
	if out, ok := encodeFast(dst, m); ok {
		return out, nil
	}
	// The reference encoder gets a copy: m itself then stays on the
	// caller's stack (most callers build it there, once per frame sent).
	c := *m
	buf := bytes.NewBuffer(dst)
	if err := json.MarshalWrite(buf, &c, encodeOpts); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}

// Marshal is Encode into a fresh slice.
func Marshal(m *Message) ([]byte, error) { return Encode(nil, m) }

// IsBlank reports whether a frame holds only white space (the engine skips
// such frames, as the reference engine does).
func IsBlank(frame []byte) bool {
	return len(bytes.TrimSpace(frame)) == 0
}

// DataOrNull returns v, or the literal null when v is absent.
func DataOrNull(v jsontext.Value) jsontext.Value {
	if len(v) == 0 {
		return Null
	}
	return v
}
