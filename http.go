package sluice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/wire"
)

// HTTP handlers
//
// HandleHTTP serves a standard http.Handler as a function bound to an HTTP
// route of the engine:
//
//	c.HandleHTTP("GET /files/{name}", "files::download", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		f, _ := os.Open(filepath.Join(dir, filepath.Base(r.PathValue("name"))))
//		defer f.Close()
//		http.ServeContent(w, r, r.PathValue("name"), modTime, f)
//	}))
//
// The handler sees an ordinary *http.Request (method, URL with path and
// query, headers, path values, a Body streamed from the client) and writes
// to an ordinary http.ResponseWriter that is also an http.Flusher: status
// and headers travel as the iii control messages, the body as channel
// frames, so http.ServeContent, json.NewEncoder(w).Encode and an SSE loop
// calling Flush work as they would behind net/http.
//
// A small response (at most 64 KiB, UTF-8, with a content type, never
// flushed) is returned as the function's result instead, which spares the
// response channel its connection; everything else is streamed.

// HandleHTTP registers functionID, served by h, and binds it to an HTTP
// route. pattern is "METHOD /path" or "/path" (GET); path parameters are
// written ":name" or "{name}" and a final catch-all "*rest" or "{rest...}"
// (the handler reads them with r.PathValue). Like every registration it is
// kept across reconnects.
func (c *Client) HandleHTTP(pattern, functionID string, h http.Handler, opts ...FunctionOption) error {
	method, path, err := parseHTTPPattern(pattern)
	if err != nil {
		return err
	}
	if h == nil {
		return errors.New("sluice: nil http.Handler for " + functionID)
	}
	if err := c.RegisterRaw(functionID, c.HTTPHandler(h), opts...); err != nil {
		return err
	}
	_, err = c.RegisterTrigger(TriggerSpec{
		ID:         "http:" + functionID + ":" + method + " " + path,
		Type:       wire.TriggerTypeHTTP,
		FunctionID: functionID,
		Config:     wire.HTTPTriggerConfig{APIPath: path, HTTPMethod: method},
	})
	if err != nil {
		_ = c.Unregister(functionID)
	}
	return err
}

// HandleHTTPFunc is HandleHTTP for a handler function.
func (c *Client) HandleHTTPFunc(pattern, functionID string, f func(http.ResponseWriter, *http.Request), opts ...FunctionOption) error {
	return c.HandleHTTP(pattern, functionID, http.HandlerFunc(f), opts...)
}

// HTTPHandler turns h into a RawHandler for invocations of an http trigger,
// for use with RegisterRaw and RegisterTrigger when HandleHTTP does not
// fit. Invoked without the trigger's channels (e.g. from another function)
// the handler still runs, and its response is returned as a result.
func (c *Client) HTTPHandler(h http.Handler) RawHandler {
	return func(ctx context.Context, inv *Invocation) (json.RawMessage, error) {
		var in wire.HTTPRequest
		if err := decodeHTTPRequest(inv.Data, &in); err != nil {
			return nil, &Error{Code: CodeInvocationFailed, Message: "not an HTTP request payload: " + err.Error()}
		}
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		req, body, err := c.httpRequest(ctx, &in)
		if err != nil {
			return nil, &Error{Code: CodeInvocationFailed, Message: err.Error()}
		}
		rw := &responseWriter{c: c, ref: in.Response, head: req.Method == http.MethodHead, header: http.Header{}, cancel: cancel}
		defer body.close()
		defer func() {
			if v := recover(); v != nil {
				rw.abort(fmt.Errorf("handler panicked: %v", v))
				panic(v)
			}
		}()
		h.ServeHTTP(rw, req)
		defer rw.release()
		return rw.finish()
	}
}

// parseHTTPPattern splits "GET /a/{id}" into "GET" and "/a/:id".
func parseHTTPPattern(pattern string) (method, path string, err error) {
	pattern = strings.TrimSpace(pattern)
	method = http.MethodGet
	if m, p, ok := strings.Cut(pattern, " "); ok {
		method, path = strings.ToUpper(m), strings.TrimSpace(p)
	} else {
		path = pattern
	}
	if path == "" || method == "" {
		return "", "", fmt.Errorf("sluice: bad HTTP pattern %q (want \"METHOD /path\")", pattern)
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if len(s) > 2 && s[0] == '{' && s[len(s)-1] == '}' {
			name := s[1 : len(s)-1]
			if rest, ok := strings.CutSuffix(name, "..."); ok {
				segs[i] = "*" + rest
			} else {
				segs[i] = ":" + name
			}
		}
	}
	path = strings.Join(segs, "/")
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return method, path, nil
}

// httpRequest rebuilds the client's request from the payload.
func (c *Client) httpRequest(ctx context.Context, in *wire.HTTPRequest) (*http.Request, *requestBody, error) {
	u, err := url.Parse(fillPath(in.Path, in.PathParams))
	if err != nil {
		return nil, nil, fmt.Errorf("bad request path: %v", err)
	}
	if len(in.QueryParams) > 0 {
		q := make(url.Values, len(in.QueryParams))
		for k, v := range in.QueryParams {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
	}
	method := in.Method
	if method == "" {
		method = http.MethodGet
	}
	hdr := make(http.Header, len(in.Headers))
	var host string
	var te []string
	for k, v := range in.Headers {
		switch strings.ToLower(k) {
		case "host":
			host = v
		case "transfer-encoding":
			te = []string{v}
		default:
			hdr[http.CanonicalHeaderKey(k)] = []string{v}
		}
	}
	length := int64(0)
	if cl := hdr.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			length = n
		}
	} else if te != nil {
		length = -1
	}
	rb := &requestBody{}
	var body io.ReadCloser = http.NoBody
	switch {
	case length == 0:
	case len(in.Body) > 0 && string(in.Body) != "null" && length == int64(len(in.Body)):
		// The JSON body is in the payload already, verbatim (Sluice passes
		// it unchanged): no need to open the request_body channel.
		body = io.NopCloser(bytes.NewReader(in.Body))
	case in.RequestBody != nil:
		rb.r = newChannelReader(c.url, c.dialOpts, *in.RequestBody) // connects on first Read
		body = rb
	}
	r := &http.Request{
		Method:           method,
		URL:              u,
		Proto:            "HTTP/1.1",
		ProtoMajor:       1,
		ProtoMinor:       1,
		Header:           hdr,
		Body:             body,
		ContentLength:    length,
		TransferEncoding: te,
		Host:             host,
		RequestURI:       u.RequestURI(),
		Pattern:          in.Trigger.Method + " " + in.Path,
	}
	if xff := hdr.Get("X-Forwarded-For"); xff != "" {
		// The engine appends the client's address, as a proxy does.
		ip := strings.TrimSpace(xff[strings.LastIndexByte(xff, ',')+1:])
		r.RemoteAddr = net.JoinHostPort(ip, "0")
	}
	r = r.WithContext(ctx)
	for k, v := range in.PathParams {
		r.SetPathValue(k, v)
	}
	return r, rb, nil
}

// fillPath puts the path parameters back into the registered api_path.
func fillPath(apiPath string, params map[string]string) string {
	var b strings.Builder
	for _, s := range strings.Split(apiPath, "/") {
		if s == "" {
			continue
		}
		b.WriteByte('/')
		switch s[0] {
		case ':':
			b.WriteString(url.PathEscape(params[s[1:]]))
		case '*':
			for i, part := range strings.Split(params[s[1:]], "/") {
				if i > 0 {
					b.WriteByte('/')
				}
				b.WriteString(url.PathEscape(part))
			}
		default:
			b.WriteString(s)
		}
	}
	if b.Len() == 0 || (len(apiPath) > 1 && strings.HasSuffix(apiPath, "/")) {
		b.WriteByte('/')
	}
	return b.String()
}

// requestBody is the request_body channel as an http.Request.Body.
type requestBody struct {
	mu sync.Mutex
	r  *ChannelReader
}

func (b *requestBody) Read(p []byte) (int, error) { return b.r.Read(p) }

// WriteTo lets io.Copy move each frame without an intermediate buffer.
func (b *requestBody) WriteTo(w io.Writer) (int64, error) { return b.r.WriteTo(w) }

func (b *requestBody) Close() error {
	b.close()
	return nil
}

func (b *requestBody) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.r != nil {
		b.r.Close()
	}
}

// responseWriter is the http.ResponseWriter of an HTTP trigger invocation.
// It buffers up to one frame; the response channel is opened only when a
// frame must go out (the buffer is full, Flush, or the response is too
// big or binary to be returned as a result).
type responseWriter struct {
	c      *Client
	ref    *ChannelRef
	head   bool
	cancel context.CancelCauseFunc

	header   http.Header
	status   int
	snapshot http.Header // headers as of WriteHeader, as net/http does
	buf      []byte
	w        *ChannelWriter // nil until the stream starts
	err      error          // sticky: the stream failed
}

// respBufs recycles the responses' frame buffers.
var respBufs = sync.Pool{New: func() any { b := make([]byte, 0, wire.FrameSize); return &b }}

func getFrameBuf() []byte { return (*respBufs.Get().(*[]byte))[:0] }

// release returns the frame buffer once nothing refers to it.
func (rw *responseWriter) release() {
	if rw.buf != nil {
		b := rw.buf[:0]
		rw.buf = nil
		respBufs.Put(&b)
	}
}

// errClientGone cancels the request context when the HTTP client went away.
var errClientGone = errors.New("sluice: HTTP client went away")

func (rw *responseWriter) Header() http.Header { return rw.header }

func (rw *responseWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if rw.status != 0 || code < 200 {
		return // superfluous, or informational (cannot be relayed)
	}
	rw.status = code
	rw.snapshot = rw.header.Clone()
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(rw.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if rw.head {
		return len(p), nil // as net/http: a HEAD response has no body
	}
	if rw.err != nil {
		return 0, rw.err
	}
	n := 0
	for len(p) > 0 {
		if rw.buf == nil {
			rw.buf = getFrameBuf()
		}
		k := copy(rw.buf[len(rw.buf):cap(rw.buf)], p)
		rw.buf = rw.buf[:len(rw.buf)+k]
		p = p[k:]
		n += k
		if len(rw.buf) == cap(rw.buf) {
			if err := rw.sendBuf(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// ReadFrom lets io.Copy (and http.ServeContent) read straight into the
// frame buffer.
func (rw *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(rw.status) || rw.head || rw.err != nil {
		return io.Copy(struct{ io.Writer }{rw}, r) // the checks of Write
	}
	var total int64
	for {
		if rw.buf == nil {
			rw.buf = getFrameBuf()
		}
		n, err := r.Read(rw.buf[len(rw.buf):cap(rw.buf)])
		rw.buf = rw.buf[:len(rw.buf)+n]
		total += int64(n)
		if len(rw.buf) == cap(rw.buf) {
			if werr := rw.sendBuf(); werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Flush sends the status, the headers and what was written so far.
func (rw *responseWriter) Flush() { _ = rw.FlushError() }

// FlushError is Flush for http.ResponseController.
func (rw *responseWriter) FlushError() error {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.err != nil {
		return rw.err
	}
	if rw.w == nil {
		if err := rw.start(); err != nil {
			return err
		}
		if len(rw.buf) == 0 {
			// An empty frame tells the engine to send the headers now.
			return rw.fail(rw.w.writeEmptyFrame())
		}
	}
	if len(rw.buf) == 0 {
		return nil
	}
	return rw.sendBuf()
}

func (rw *responseWriter) fail(err error) error {
	if err != nil && rw.err == nil {
		rw.err = err
		rw.cancel(errClientGone)
	}
	return err
}

// start opens the response channel and sends the control messages.
func (rw *responseWriter) start() error {
	if rw.ref == nil {
		return rw.fail(errors.New("sluice: no response channel: this invocation cannot stream"))
	}
	h := rw.snapshot
	if _, ok := h["Content-Type"]; !ok && len(rw.buf) > 0 && bodyAllowed(rw.status) {
		h.Set("Content-Type", http.DetectContentType(rw.buf[:min(len(rw.buf), 512)]))
	}
	rw.w = newChannelWriter(rw.c.url, rw.c.dialOpts, *rw.ref)
	if err := rw.w.SendMessage(controlJSON(wire.ControlMessage{Type: wire.ControlSetStatus, StatusCode: rw.status})); err != nil {
		return rw.fail(err)
	}
	hs := make(map[string]any, len(h))
	for k, vs := range h {
		switch len(vs) {
		case 0:
		case 1:
			hs[k] = vs[0]
		default:
			hs[k] = vs // Sluice applies every value; other engines skip it
		}
	}
	b, _ := jsonv2.Marshal(map[string]any{"type": wire.ControlSetHeaders, "headers": hs})
	if err := rw.w.SendMessage(string(b)); err != nil {
		return rw.fail(err)
	}
	// The engine closes this socket when the HTTP client goes away: end
	// the request's context then, as net/http does.
	if done := rw.w.socketDone(); done != nil {
		stop := rw.cancel
		go func() {
			<-done
			stop(errClientGone)
		}()
	}
	return nil
}

func controlJSON(m wire.ControlMessage) string {
	b, _ := jsonv2.Marshal(m)
	return string(b)
}

func (rw *responseWriter) sendBuf() error {
	if rw.w == nil {
		if err := rw.start(); err != nil {
			return err
		}
	}
	_, err := rw.w.Write(rw.buf)
	rw.buf = rw.buf[:0]
	return rw.fail(err)
}

// finish ends the response when the handler returns: a small response
// becomes the result, anything else ends the stream cleanly.
func (rw *responseWriter) finish() (json.RawMessage, error) {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.err != nil {
		if rw.w != nil {
			_ = rw.w.CloseWithError(rw.err)
		}
		return nil, nil // the client is gone: nobody reads a result
	}
	if rw.w == nil {
		if res, ok := rw.result(); ok {
			return res, nil
		}
		if err := rw.start(); err != nil {
			return nil, err
		}
	}
	if len(rw.buf) > 0 {
		if err := rw.sendBuf(); err != nil {
			_ = rw.w.CloseWithError(err)
			return nil, nil
		}
	}
	_ = rw.w.Close()
	return nil, nil
}

// result encodes a response that was never flushed as a buffered result,
// if it can be one: a UTF-8 body with a content type, and no declared
// length other than the body's.
func (rw *responseWriter) result() (json.RawMessage, bool) {
	h := rw.snapshot
	if _, ok := h["Content-Type"]; !ok {
		if len(rw.buf) == 0 || !bodyAllowed(rw.status) {
			if rw.ref != nil {
				return nil, false
			}
		} else {
			h.Set("Content-Type", http.DetectContentType(rw.buf[:min(len(rw.buf), 512)]))
		}
	}
	if cl := h.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(rw.buf)) && rw.ref != nil {
		return nil, false
	}
	if !utf8.Valid(rw.buf) && rw.ref != nil {
		return nil, false
	}
	b := make([]byte, 0, 128+len(rw.buf))
	b = append(b, `{"status_code":`...)
	b = strconv.AppendInt(b, int64(rw.status), 10)
	b = append(b, `,"headers":[`...)
	first := true
	for k, vs := range h {
		if strings.EqualFold(k, "Content-Length") {
			continue // the engine sets it
		}
		for _, v := range vs {
			if !first {
				b = append(b, ',')
			}
			first = false
			b, _ = jsontext.AppendQuote(b, k+": "+v)
		}
	}
	b = append(b, `],"body":`...)
	b, _ = jsontext.AppendQuote(b, rw.buf)
	b = append(b, '}')
	return b, true
}

// abort cuts a response whose handler panicked: the client sees a broken
// response, not a short one.
func (rw *responseWriter) abort(cause error) {
	if rw.w == nil {
		if rw.ref == nil {
			return
		}
		rw.w = newChannelWriter(rw.c.url, rw.c.dialOpts, *rw.ref)
	}
	_ = rw.w.CloseWithError(cause)
}

// decodeHTTPRequest decodes the payload of an http trigger without
// reflection (it is on every request's path). Non-string values where
// strings are expected are skipped, as the engine would never send them.
func decodeHTTPRequest(data []byte, in *wire.HTTPRequest) error {
	d := payloadDecoders.Get().(*jsontext.Decoder)
	defer payloadDecoders.Put(d)
	d.Reset(bytes.NewBuffer(data), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	defer d.Reset(bytes.NewBuffer(nil))
	if tok, err := d.ReadToken(); err != nil || tok.Kind() != '{' {
		return errors.New("payload is not an object")
	}
	for d.PeekKind() != '}' {
		k, err := d.ReadToken()
		if err != nil {
			return err
		}
		switch k.String() {
		case "query_params":
			in.QueryParams, err = readStringMap(d)
		case "path_params":
			in.PathParams, err = readStringMap(d)
		case "headers":
			in.Headers, err = readStringMap(d)
		case "path":
			in.Path, err = readString(d)
		case "method":
			in.Method, err = readString(d)
		case "body":
			var v jsontext.Value
			if v, err = d.ReadValue(); err == nil {
				in.Body = bytes.Clone(v)
			}
		case "trigger":
			var m map[string]string
			if m, err = readStringMap(d); err == nil {
				in.Trigger = wire.HTTPTriggerInfo{Type: m["type"], Path: m["path"], Method: m["method"]}
			}
		case "request_body":
			in.RequestBody, err = readRef(d)
		case "response":
			in.Response, err = readRef(d)
		default:
			err = d.SkipValue()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var payloadDecoders = sync.Pool{New: func() any { return jsontext.NewDecoder(bytes.NewBuffer(nil)) }}

func readString(d *jsontext.Decoder) (string, error) {
	if d.PeekKind() != '"' {
		return "", d.SkipValue()
	}
	tok, err := d.ReadToken()
	return tok.String(), err
}

func readStringMap(d *jsontext.Decoder) (map[string]string, error) {
	if d.PeekKind() != '{' {
		return nil, d.SkipValue()
	}
	if _, err := d.ReadToken(); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for d.PeekKind() != '}' {
		k, err := d.ReadToken()
		if err != nil {
			return nil, err
		}
		key := k.String() // before the next read voids k
		if d.PeekKind() != '"' {
			if err := d.SkipValue(); err != nil {
				return nil, err
			}
			continue
		}
		v, err := d.ReadToken()
		if err != nil {
			return nil, err
		}
		m[key] = v.String()
	}
	_, err := d.ReadToken()
	return m, err
}

func readRef(d *jsontext.Decoder) (*ChannelRef, error) {
	m, err := readStringMap(d)
	if err != nil || m == nil || m["channel_id"] == "" {
		return nil, err
	}
	return &ChannelRef{ChannelID: m["channel_id"], AccessKey: m["access_key"], Direction: m["direction"]}, nil
}
