package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/wire"
)

// HTTPInvocation makes a function one the engine executes itself, by an
// HTTP request to URL, instead of sending invocations to this worker (the
// 0.25 SDKs' HttpInvocationConfig; docs/protocol.md "HTTP-invoked
// functions"). The engine's http_functions settings decide which URLs it
// accepts: by default https only and no private or loopback addresses.
type HTTPInvocation struct {
	URL string
	// Method is GET, POST (the default), PUT, PATCH or DELETE.
	Method string
	// Timeout bounds each request; 0 takes the engine's default. The
	// engine caps it at http_functions.max_timeout.
	Timeout time.Duration
	// Headers are added to every request.
	Headers map[string]string
	// Auth, when set, names environment variables of the engine that hold
	// the secret (never the secret itself): see BearerAuth, APIKeyAuth and
	// HMACAuth.
	Auth *HTTPAuth
}

// HTTPAuth is how the engine authenticates its requests to an
// HTTP-invoked function. Each *Key field is the name of an environment
// variable of the engine, which must be listed in the engine's
// http_functions.secret_envs.
type HTTPAuth struct {
	Type      string `json:"type"` // bearer, api_key or hmac
	TokenKey  string `json:"token_key,omitempty"`
	SecretKey string `json:"secret_key,omitempty"`
	Header    string `json:"header,omitempty"`
	ValueKey  string `json:"value_key,omitempty"`
}

// BearerAuth sends "Authorization: Bearer <$tokenEnv>".
func BearerAuth(tokenEnv string) *HTTPAuth { return &HTTPAuth{Type: "bearer", TokenKey: tokenEnv} }

// APIKeyAuth sends "<header>: <$valueEnv>".
func APIKeyAuth(header, valueEnv string) *HTTPAuth {
	return &HTTPAuth{Type: "api_key", Header: header, ValueKey: valueEnv}
}

// HMACAuth signs each request: x-iii-Signature: sha256=<hex HMAC-SHA256 of
// "<timestamp>:<base64(body)>" keyed with $secretEnv>.
func HMACAuth(secretEnv string) *HTTPAuth { return &HTTPAuth{Type: "hmac", SecretKey: secretEnv} }

type httpInvocationWire struct {
	URL       string            `json:"url"`
	Method    string            `json:"method,omitempty"`
	TimeoutMS int64             `json:"timeout_ms,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Auth      *HTTPAuth         `json:"auth,omitempty"`
}

// errHTTPInvoked answers an invocation the engine sent here by mistake: an
// HTTP-invoked function is executed by the engine, never by its worker.
var errHTTPInvoked = errors.New("sluice: this function is invoked over HTTP by the engine, not by its worker")

// RegisterHTTP registers id as a function the engine executes by calling
// inv.URL. The registration belongs to this client like any other: it is
// replayed on reconnect and goes away with Unregister or Close. The engine
// refuses a URL or auth its settings do not allow by logging why; calls
// then get function_not_found. A method or auth type no engine accepts is
// refused here.
func (c *Client) RegisterHTTP(id string, inv HTTPInvocation, opts ...FunctionOption) error {
	if id == "" {
		return errors.New("sluice: function id must not be empty")
	}
	if inv.URL == "" {
		return errors.New("sluice: HTTP-invoked function " + id + " needs a URL")
	}
	if inv.Timeout < 0 || (inv.Timeout > 0 && inv.Timeout < time.Millisecond) {
		return fmt.Errorf("sluice: HTTP-invoked function %s: timeout %v must be 0 or at least 1ms", id, inv.Timeout)
	}
	switch strings.ToUpper(inv.Method) {
	case "", "GET", "POST", "PUT", "PATCH", "DELETE":
	default:
		return fmt.Errorf("sluice: HTTP-invoked function %s: method %q: want GET, POST, PUT, PATCH or DELETE", id, inv.Method)
	}
	if a := inv.Auth; a != nil {
		switch a.Type {
		case "bearer", "hmac", "api_key":
		default:
			return fmt.Errorf("sluice: HTTP-invoked function %s: auth type %q: want bearer, hmac or api_key (use BearerAuth, HMACAuth or APIKeyAuth)", id, a.Type)
		}
	}
	var fc functionConfig
	for _, o := range opts {
		o(&fc)
	}
	m := wire.Message{Type: wire.TypeRegisterFunction, ID: id, Description: fc.description}
	var err error
	if m.Invocation, err = marshalJSON(httpInvocationWire{URL: inv.URL, Method: inv.Method,
		TimeoutMS: inv.Timeout.Milliseconds(), Headers: inv.Headers, Auth: inv.Auth}); err != nil {
		return fmt.Errorf("sluice: register %s: %w", id, err)
	}
	if m.Metadata, err = marshalJSON(fc.metadata); err != nil {
		return fmt.Errorf("sluice: register %s: %w", id, err)
	}
	if m.RequestFormat, err = marshalJSON(fc.requestFormat); err != nil {
		return fmt.Errorf("sluice: register %s: %w", id, err)
	}
	if m.ResponseFormat, err = marshalJSON(fc.responseFormat); err != nil {
		return fmt.Errorf("sluice: register %s: %w", id, err)
	}
	b, err := wire.Marshal(&m)
	if err != nil {
		return fmt.Errorf("sluice: register %s: %w", id, err)
	}
	h := func(context.Context, *Invocation) (json.RawMessage, error) { return nil, errHTTPInvoked }
	return register(c, c.functions, "function", id, false, b, func(seq uint64) *function {
		return &function{h: h, msg: b, seq: seq}
	})
}
