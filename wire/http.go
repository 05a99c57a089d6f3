package wire

import "github.com/go-json-experiment/json/jsontext"

// HTTPTriggerConfig is the config of a trigger of type "http".
type HTTPTriggerConfig struct {
	APIPath               string   `json:"api_path"`
	HTTPMethod            string   `json:"http_method,omitzero"`
	ConditionFunctionID   string   `json:"condition_function_id,omitzero"`
	MiddlewareFunctionIDs []string `json:"middleware_function_ids,omitzero"`
}

// HTTPRequest is the payload an HTTP trigger sends to its function, in the
// key order of the reference engine.
type HTTPRequest struct {
	QueryParams map[string]string `json:"query_params"`
	PathParams  map[string]string `json:"path_params"`
	Headers     map[string]string `json:"headers"`
	Path        string            `json:"path"`
	Method      string            `json:"method"`
	Body        jsontext.Value    `json:"body"`
	Trigger     HTTPTriggerInfo   `json:"trigger"`
	RequestBody *ChannelRef       `json:"request_body,omitzero"`
	Response    *ChannelRef       `json:"response,omitzero"`
}

// HTTPTriggerInfo is the "trigger" member of HTTPRequest.
type HTTPTriggerInfo struct {
	Type   string `json:"type"`
	Path   string `json:"path"`
	Method string `json:"method"`
}

// Control messages, sent as text frames on a response channel before the
// first binary frame.
const (
	ControlSetStatus  = "set_status"
	ControlSetHeaders = "set_headers"
)

// ControlMessage is a set_status or set_headers text frame.
type ControlMessage struct {
	Type       string            `json:"type"`
	StatusCode int               `json:"status_code,omitzero"`
	Headers    map[string]string `json:"headers,omitzero"`
}

// HTTPResponse is a buffered response returned as a function's result.
type HTTPResponse struct {
	StatusCode int            `json:"status_code,omitzero"`
	Headers    jsontext.Value `json:"headers,omitzero"`
	Body       jsontext.Value `json:"body,omitzero"`
}
