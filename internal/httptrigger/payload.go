package httptrigger

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

// queryParams decodes the query string; a repeated key keeps its last
// value (the payload's query_params is a map of strings).
func queryParams(r *http.Request) map[string]string {
	if r.URL.RawQuery == "" {
		return map[string]string{}
	}
	q, _ := url.ParseQuery(r.URL.RawQuery) // keep what parses
	m := make(map[string]string, len(q))
	for k, vs := range q {
		m[k] = vs[len(vs)-1]
	}
	return m
}

// lowerNames holds the lower-case form of common request header names
// (as net/http canonicalizes them), sparing an allocation per header.
var lowerNames = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Accept-Language", "Authorization",
		"Baggage", "Cache-Control", "Connection", "Content-Length", "Content-Type", "Cookie",
		"Origin", "Pragma", "Referer", "Traceparent", "Tracestate", "User-Agent", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id"} {
		m[k] = strings.ToLower(k)
	}
	return m
}()

// headerMap lower-cases header names and joins repeated headers the way
// HTTP allows (", ", or "; " for cookies). Go keeps Host and
// Transfer-Encoding apart; they are put back. The client's address is
// appended to X-Forwarded-For.
func headerMap(r *http.Request) map[string]string {
	m := make(map[string]string, len(r.Header)+2)
	if r.Host != "" {
		m["host"] = r.Host
	}
	if len(r.TransferEncoding) > 0 {
		m["transfer-encoding"] = strings.Join(r.TransferEncoding, ", ")
	}
	for k, vs := range r.Header {
		lk, ok := lowerNames[k]
		if !ok {
			lk = strings.ToLower(k)
		}
		if lk == "x-forwarded-for" {
			continue // below
		}
		switch {
		case len(vs) == 1:
			m[lk] = vs[0]
		case lk == "cookie":
			m[lk] = strings.Join(vs, "; ")
		default:
			m[lk] = strings.Join(vs, ", ")
		}
	}
	// As a reverse proxy does, tell the function who the client is.
	xff := strings.Join(r.Header.Values("X-Forwarded-For"), ", ")
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if xff != "" {
			xff += ", "
		}
		xff += ip
	}
	if xff != "" {
		m["x-forwarded-for"] = xff
	}
	return m
}

// appendPayload encodes the request payload (§6.2) in the reference key
// order. Invalid UTF-8 in names or values is replaced, never an error.
// Without channel refs it is the condition function's input.
func appendPayload(b []byte, query, params, headers map[string]string, rt *route, method string, body jsontext.Value, reqRef, respRef *wire.ChannelRef) []byte {
	b = append(b, `{"query_params":`...)
	b = appendStringMap(b, query)
	b = append(b, `,"path_params":`...)
	b = appendStringMap(b, params)
	b = append(b, `,"headers":`...)
	b = appendStringMap(b, headers)
	b = append(b, `,"path":`...)
	b = appendString(b, rt.apiPath)
	b = append(b, `,"method":`...)
	b = appendString(b, method)
	b = append(b, `,"body":`...)
	if body == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, body...)
	}
	b = append(b, `,"trigger":{"type":"http","path":`...)
	b = appendString(b, rt.apiPath)
	b = append(b, `,"method":`...)
	b = appendString(b, rt.method)
	b = append(b, '}')
	if reqRef != nil {
		b = append(b, `,"request_body":`...)
		b = appendRef(b, reqRef)
	}
	if respRef != nil {
		b = append(b, `,"response":`...)
		b = appendRef(b, respRef)
	}
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	b, _ = jsontext.AppendQuote(b, s)
	return b
}

func appendStringMap(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	first := true
	for k, v := range m {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, v)
	}
	return append(b, '}')
}

func appendRef(b []byte, r *wire.ChannelRef) []byte {
	b = append(b, `{"channel_id":`...)
	b = appendString(b, r.ChannelID)
	b = append(b, `,"access_key":`...)
	b = appendString(b, r.AccessKey)
	b = append(b, `,"direction":`...)
	b = appendString(b, r.Direction)
	return append(b, '}')
}

// preHandlers runs the route's condition function and middleware (§6.6)
// and reports whether the request goes on to the handler; when not, the
// response has been written.
func (x *exchange) preHandlers(ctx context.Context, query, params, headers map[string]string, body jsontext.Value) bool {
	rt := x.rt
	if rt.condition != "" {
		in := appendPayload(nil, query, params, headers, rt, x.req.Method, body, nil, nil)
		res, ok := x.call(ctx, rt.condition, in)
		if !ok {
			return false
		}
		if res.Err != nil {
			x.outcome = "condition: " + res.Err.Code
			writeError(&x.w, http.StatusInternalServerError, res.Err.Code, res.Err.Message)
			return false
		}
		if string(bytes.TrimSpace(res.Value)) == "false" {
			x.outcome = "condition not met"
			b := []byte(`{"error":{"code":"CONDITION_NOT_MET","message":"Request condition not met"},"skipped":true}`)
			x.w.Header().Set("Content-Type", "application/json")
			x.w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = x.w.Write(b)
			return false
		}
	}
	if len(rt.middleware) == 0 {
		return true
	}
	var in []byte
	in = append(in, `{"phase":"preHandler","request":{"path_params":`...)
	in = appendStringMap(in, params)
	in = append(in, `,"query_params":`...)
	in = appendStringMap(in, query)
	in = append(in, `,"headers":`...)
	in = appendStringMap(in, headers)
	in = append(in, `,"method":`...)
	in = appendString(in, x.req.Method)
	in = append(in, `},"context":{}}`...)
	for _, fn := range rt.middleware {
		res, ok := x.call(ctx, fn, in)
		if !ok {
			return false
		}
		if res.Err != nil {
			x.outcome = "middleware " + fn + ": " + res.Err.Code
			writeError(&x.w, http.StatusInternalServerError, res.Err.Code, res.Err.Message)
			return false
		}
		var out struct {
			Action   string         `json:"action"`
			Response jsontext.Value `json:"response"`
		}
		if isNull(res.Value) || json.Unmarshal(res.Value, &out, lenient) != nil || out.Action != "respond" {
			continue
		}
		x.outcome = "middleware " + fn + " responded"
		x.buffered(middlewareResponse(out.Response))
		return false
	}
	return true
}

// middlewareResponse makes a middleware's response a buffered result whose
// body is always sent as JSON.
func middlewareResponse(v jsontext.Value) jsontext.Value {
	var r struct {
		StatusCode jsontext.Value `json:"status_code"`
		Headers    jsontext.Value `json:"headers"`
		Body       jsontext.Value `json:"body"`
	}
	_ = json.Unmarshal(v, &r, lenient)
	out := []byte(`{"body":`)
	if len(r.Body) == 0 {
		out = append(out, "null"...)
	} else {
		out = append(out, r.Body...)
	}
	if len(r.StatusCode) > 0 {
		out = append(out, `,"status_code":`...)
		out = append(out, r.StatusCode...)
	}
	// The body is JSON whatever the middleware's headers say.
	out = append(out, `,"headers":[`...)
	var hm map[string]jsontext.Value
	if len(r.Headers) > 0 && json.Unmarshal(r.Headers, &hm, lenient) == nil {
		for k, rv := range hm {
			var s string
			if strings.EqualFold(k, "content-type") || json.Unmarshal(rv, &s, lenient) != nil {
				continue
			}
			out = appendString(out, k+": "+s)
			out = append(out, ',')
		}
	}
	out = append(out, `"Content-Type: application/json"]}`...)
	return out
}

// call invokes a condition or middleware function and waits for it within
// the request's deadline. It writes the answer itself when it gives up.
func (x *exchange) call(ctx context.Context, fn string, data []byte) (invocation.Result, bool) {
	ch := make(chan invocation.Result, 1)
	x.s.inv.Invoke(&invocation.Request{FunctionID: fn, Namespace: x.rt.namespace, Data: data, Metadata: x.rt.metadata,
		Traceparent: x.req.Header.Get("Traceparent"), Baggage: x.req.Header.Get("Baggage"), MinTimeout: x.s.cfg.Timeout},
		func(r invocation.Result) { ch <- r })
	t := time.NewTimer(time.Until(x.deadline))
	defer t.Stop()
	select {
	case r := <-ch:
		if r.Err != nil && r.Err.Code == wire.CodeFunctionNotFound {
			x.outcome = "function not found: " + fn
			writeError(&x.w, http.StatusServiceUnavailable, r.Err.Code, fmt.Sprintf("function %s of route %s is not available", fn, x.rt.display))
			return r, false
		}
		return r, true
	case <-t.C:
		x.outcome = "timeout"
		writeError(&x.w, http.StatusGatewayTimeout, wire.CodeTimeout, fmt.Sprintf("function %s did not answer within %s", fn, x.s.cfg.Timeout))
	case <-ctx.Done():
		x.outcome = "client gone"
	case <-x.s.ctx.Done():
		x.outcome = "engine shutting down"
		writeError(&x.w, http.StatusServiceUnavailable, wire.CodeEngineShuttingDown, "engine shutting down")
	}
	return invocation.Result{}, false
}
