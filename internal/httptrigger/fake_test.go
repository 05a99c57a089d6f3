package httptrigger

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/registry"
	"github.com/sluicehq/sluice/wire"
)

// The fakes below stand in for the channel hub and the worker side: a
// channel is a bounded queue of frames with the hub's end/abort semantics,
// and a "function" is a Go func run on its own goroutine.

var errReaderGone = errors.New("reader gone")

type fframe struct {
	text bool
	data []byte
}

type fpipe struct {
	q        chan fframe
	done     chan struct{} // writer finished
	endErr   error         // nil: clean end
	endOnce  sync.Once
	gone     chan struct{} // reader finished
	goneOnce sync.Once

	// The engine's end of a response channel is ready (ReadyNotifier) once
	// the function first writes or ends it, as a hub's is when the worker
	// connects.
	readyMu sync.Mutex
	touched bool
	onReady func()
}

func (p *fpipe) touch() {
	p.readyMu.Lock()
	f := p.onReady
	p.touched, p.onReady = true, nil
	p.readyMu.Unlock()
	if f != nil {
		f()
	}
}

func (p *fpipe) setOnReady(f func()) {
	p.readyMu.Lock()
	if !p.touched {
		p.onReady, f = f, nil
	}
	p.readyMu.Unlock()
	if f != nil {
		f()
	}
}

func newPipe(n int) *fpipe {
	return &fpipe{q: make(chan fframe, n), done: make(chan struct{}), gone: make(chan struct{})}
}

func (p *fpipe) write(ctx context.Context, text bool, data []byte) error {
	p.touch()
	d := append([]byte(nil), data...)
	select {
	case <-p.gone:
		return errReaderGone
	default:
	}
	select {
	case p.q <- fframe{text, d}:
		return nil
	case <-p.gone:
		return errReaderGone
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *fpipe) end(err error) {
	p.touch()
	p.endOnce.Do(func() { p.endErr = err; close(p.done) })
}

func (p *fpipe) next(ctx context.Context) (bool, []byte, error) {
	select {
	case f := <-p.q:
		return f.text, f.data, nil
	default:
	}
	select {
	case f := <-p.q:
		return f.text, f.data, nil
	case <-p.done:
		select {
		case f := <-p.q:
			return f.text, f.data, nil
		default:
		}
		if p.endErr != nil {
			return false, nil, p.endErr
		}
		return false, nil, io.EOF
	case <-p.gone:
		return false, nil, errors.New("reader closed")
	case <-ctx.Done():
		return false, nil, ctx.Err()
	}
}

func (p *fpipe) closeReader() { p.goneOnce.Do(func() { close(p.gone) }) }

// Engine-side ends.
type fbodyWriter struct {
	p   *fpipe
	hub *fakeHub
}

func (w fbodyWriter) Retire() { w.hub.retired.Add(1) }

func (w fbodyWriter) WriteFrame(ctx context.Context, text bool, data []byte) error {
	return w.p.write(ctx, text, data)
}
func (w fbodyWriter) CopyFrom(ctx context.Context, r io.Reader) (int64, error) {
	buf := make([]byte, wire.FrameSize)
	var n int64
	for {
		m, err := r.Read(buf)
		if m > 0 {
			if werr := w.p.write(ctx, false, buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
func (w fbodyWriter) Close()              { w.p.end(nil) }
func (w fbodyWriter) Abort(reason string) { w.p.end(errors.New("aborted: " + reason)) }

type frespReader struct {
	p   *fpipe
	hub *fakeHub
}

func (r frespReader) Retire() { r.hub.retired.Add(1) }

func (r frespReader) Next(ctx context.Context) (bool, []byte, error) {
	r.hub.nexts.Add(1)
	return r.p.next(ctx)
}
func (r frespReader) Close()           { r.p.closeReader() }
func (r frespReader) OnReady(f func()) { r.p.setOnReady(f) }

// eagerReader is a response end without ReadyNotifier (fakeHub.eager).
type eagerReader struct{ r frespReader }

func (r eagerReader) Retire()                                        { r.r.Retire() }
func (r eagerReader) Next(ctx context.Context) (bool, []byte, error) { return r.r.Next(ctx) }
func (r eagerReader) Close()                                         { r.r.Close() }

type fakeHub struct {
	mu      sync.Mutex
	pipes   map[string]*fpipe
	n       atomic.Int64
	fail    atomic.Bool // RequestBody fails
	failRes atomic.Bool // Response fails
	eager   atomic.Bool // response ends are no ReadyNotifier
	retired atomic.Int64
	nexts   atomic.Int64 // ResponseReader.Next calls
}

func (h *fakeHub) create(n int) (string, *fpipe) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pipes == nil {
		h.pipes = map[string]*fpipe{}
	}
	id := "ch-" + strconv.FormatInt(h.n.Add(1), 10)
	p := newPipe(n)
	h.pipes[id] = p
	return id, p
}

func (h *fakeHub) pipe(ref wire.ChannelRef) *fpipe {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pipes[ref.ChannelID]
}

func (h *fakeHub) RequestBody(n int) (wire.ChannelRef, BodyWriter, error) {
	if h.fail.Load() {
		return wire.ChannelRef{}, nil, errors.New("channel limit reached")
	}
	id, p := h.create(n)
	return wire.ChannelRef{ChannelID: id, AccessKey: "k", Direction: wire.DirRead}, fbodyWriter{p, h}, nil
}

func (h *fakeHub) Response(n int) (wire.ChannelRef, ResponseReader, error) {
	if h.failRes.Load() {
		return wire.ChannelRef{}, nil, errors.New("channel limit reached")
	}
	id, p := h.create(n)
	ref := wire.ChannelRef{ChannelID: id, AccessKey: "k", Direction: wire.DirWrite}
	if h.eager.Load() {
		return ref, eagerReader{frespReader{p, h}}, nil
	}
	return ref, frespReader{p, h}, nil
}

// call is one invocation as a fake function sees it.
type call struct {
	req   *invocation.Request
	in    wire.HTTPRequest
	raw   map[string]jsontext.Value
	body  *fpipe // request body: the function reads
	resp  *fpipe // response: the function writes
	hub   *fakeHub
	after func() // run once the result has been handed over
}

func (c *call) send(text bool, data []byte) error {
	return c.resp.write(context.Background(), text, data)
}
func (c *call) status(code int) error {
	return c.send(true, []byte(`{"type":"set_status","status_code":`+strconv.Itoa(code)+`}`))
}
func (c *call) headers(h map[string]string) error {
	b, _ := json.Marshal(map[string]any{"type": "set_headers", "headers": h})
	return c.send(true, b)
}
func (c *call) write(s string) error { return c.send(false, []byte(s)) }
func (c *call) end()                 { c.resp.end(nil) }

// readBody reads the request body channel to its end.
func (c *call) readBody() ([]byte, int, error) {
	var out []byte
	frames := 0
	for {
		_, d, err := c.body.next(context.Background())
		if err == io.EOF {
			return out, frames, nil
		}
		if err != nil {
			return out, frames, err
		}
		if len(d) > wire.FrameSize {
			return out, frames, errors.New("frame larger than 64 KiB")
		}
		frames++
		out = append(out, d...)
	}
}

type fn func(c *call) invocation.Result

type fakeInvoker struct {
	hub   *fakeHub
	mu    sync.Mutex
	fns   map[string]fn
	calls atomic.Int64
}

func (f *fakeInvoker) set(id string, h fn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fns == nil {
		f.fns = map[string]fn{}
	}
	if h == nil {
		delete(f.fns, id)
		return
	}
	f.fns[id] = h
}

func (f *fakeInvoker) Invoke(req *invocation.Request, done invocation.Completion) {
	f.calls.Add(1)
	f.mu.Lock()
	h := f.fns[req.FunctionID]
	f.mu.Unlock()
	if h == nil {
		done(invocation.Result{Err: wire.ErrFunctionNotFound(req.FunctionID)})
		return
	}
	c := &call{req: req, hub: f.hub}
	if err := json.Unmarshal(req.Data, &c.in); err != nil {
		panic(err)
	}
	_ = json.Unmarshal(req.Data, &c.raw)
	if c.in.RequestBody != nil {
		c.body = f.hub.pipe(*c.in.RequestBody)
	}
	if c.in.Response != nil {
		c.resp = f.hub.pipe(*c.in.Response)
	}
	go func() {
		done(h(c))
		if c.after != nil {
			c.after()
		}
	}()
}

type env struct {
	t   *testing.T
	srv *Server
	hub *fakeHub
	inv *fakeInvoker
	ts  *httptest.Server
	url string
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	hub := &fakeHub{}
	inv := &fakeInvoker{hub: hub}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv := New(cfg, inv, hub)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		srv.Close()
	})
	return &env{t: t, srv: srv, hub: hub, inv: inv, ts: ts, url: ts.URL}
}

// route registers an http trigger id → function for method and path.
func (e *env) route(id, function, method, path string) error {
	cfg := map[string]any{"api_path": path}
	if method != "" {
		cfg["http_method"] = method
	}
	b, _ := json.Marshal(cfg)
	return e.srv.RegisterTrigger(&registry.Trigger{ID: id, Type: "http", FunctionID: function, Config: b})
}

func (e *env) mustRoute(id, function, method, path string) {
	e.t.Helper()
	if err := e.route(id, function, method, path); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) unroute(id string) { e.srv.UnregisterTrigger(&registry.Trigger{ID: id, Type: "http"}) }

// do sends a request and returns status, headers and the whole body.
func (e *env) do(method, path string, body io.Reader, hdr ...string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return res.StatusCode, res.Header, string(b)
}

// result helpers
func value(s string) invocation.Result { return invocation.Result{Value: jsontext.Value(s)} }

func failure(code, msg string) invocation.Result {
	return invocation.Result{Err: &wire.ErrorBody{Code: code, Message: msg}}
}

// echo answers with a buffered JSON body naming the function.
func echo(name string) fn {
	return func(c *call) invocation.Result {
		return value(`{"body":{"fn":"` + name + `","params":` + string(mustJSON(c.in.PathParams)) + `}}`)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v, json.Deterministic(true))
	if err != nil {
		panic(err)
	}
	return b
}
