package httptrigger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

// exchange is one request on a route, from lookup to the last body byte.
type exchange struct {
	s        *Server
	start    time.Time
	deadline time.Time // for the start of the response
	req      *http.Request
	w        recorder
	rt       *route
	outcome  string // why the request ended abnormally, for the log
	traceEnd func(route string, status int)
	bw       BodyWriter
	pending  []byte // a request body to write into bw once its reader connects

	// The goroutine pushing the request body, if any (pushDone nil: none).
	pushDone  chan struct{}
	stopPush  context.CancelFunc
	readsBody bool // it reads the client's body
}

// serve runs the request: parse, call condition and middleware, create the
// channels, invoke, then answer from the result or the response channel.
func (x *exchange) serve() {
	r, s := x.req, x.s
	ctx := r.Context()
	x.deadline = x.start.Add(s.cfg.Timeout)

	query := queryParams(r)
	headers := headerMap(r)
	params := x.rt.pathParams(r.URL.EscapedPath())

	// A JSON body is read whole (bounded) so the function gets it parsed
	// in "body"; it is then also pushed into request_body.
	var rawJSON []byte
	var parsed jsontext.Value
	if isJSONContentType(r.Header.Get("Content-Type")) {
		b, held, ok := x.readJSON()
		if !ok {
			return
		}
		defer s.jsonHeld.give(held) // runs last: after the pusher is done with b
		rawJSON = b
		if v := jsontext.Value(b); len(bytes.TrimSpace(b)) > 0 && v.IsValid(jsontext.AllowDuplicateNames(true)) {
			parsed = v
		}
	}

	if !x.preHandlers(ctx, query, params, headers, parsed) {
		return
	}

	// A body known in full needs only as many frames of buffer as it has
	// (the buffer is allocated up front); a streamed one gets the default.
	bodyBuf := s.cfg.ChannelBuffer
	switch {
	case rawJSON != nil:
		bodyBuf = min(bodyBuf, max(1, (len(rawJSON)+wire.FrameSize-1)/wire.FrameSize))
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		bodyBuf = 1
	}
	reqRef, bw, err := s.ch.RequestBody(bodyBuf)
	if err != nil {
		x.outcome = "request channel: " + err.Error()
		writeError(&x.w, http.StatusServiceUnavailable, "CHANNELS_UNAVAILABLE", "cannot open the request body channel: "+err.Error())
		return
	}
	respRef, rr, err := s.ch.Response(s.cfg.ChannelBuffer)
	if err != nil {
		bw.Abort("response channel failed")
		retire(bw)
		x.outcome = "response channel: " + err.Error()
		writeError(&x.w, http.StatusServiceUnavailable, "CHANNELS_UNAVAILABLE", "cannot open the response channel: "+err.Error())
		return
	}
	defer rr.Close()
	defer func() {
		x.endPush()
		retire(bw, rr)
		// A reader that connected before the retirement still gets the
		// body; a retired channel refuses it at once.
		x.pushPending(ctx)
		if x.pushDone != nil {
			// It waits for channel memory: the answer goes out meanwhile,
			// and the body gets bodyGrace, not the handler forever.
			if x.w.status != 0 {
				_ = x.w.FlushError()
			}
			t := time.NewTimer(bodyGrace)
			select {
			case <-x.pushDone:
			case <-t.C:
			case <-x.s.ctx.Done():
			}
			t.Stop()
			x.endPush()
		}
	}()

	// One channel brings the result and the channels' readiness (each
	// sent at most once, so no send blocks).
	events := make(chan event, 3)

	// The body goes to the function concurrently with the invocation: it
	// may be far bigger than any buffer, and the function reads it while
	// it runs. A body that fits the fresh channel's buffer is written at
	// once, on this goroutine unless the engine's channel memory is spent
	// (pushPending).
	switch {
	case rawJSON != nil && (len(rawJSON)+wire.FrameSize-1)/wire.FrameSize <= s.cfg.ChannelBuffer:
		if n, ok := bw.(ReadyNotifier); ok {
			// Held back until the function connects to read it: most
			// take the parsed "body" and never do, and an unused channel
			// costs next to nothing.
			x.bw, x.pending = bw, rawJSON
			n.OnReady(func() { events <- event{bodyReady: true} })
		} else {
			pushBytes(ctx, bw, rawJSON)
		}
	case rawJSON != nil:
		x.startPush(ctx, func(ctx context.Context) { pushBytes(ctx, bw, rawJSON) })
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		bw.Close()
	default:
		// Let the function stream its response while it still reads the
		// request (an HTTP/1 server otherwise drains the body first).
		_ = http.NewResponseController(&x.w).EnableFullDuplex()
		x.readsBody = true
		body := r.Body
		x.startPush(ctx, func(ctx context.Context) { pushStream(ctx, bw, body) })
	}

	if s.ctx.Err() != nil { // the body took until the end of the shutdown grace
		x.shuttingDown()
		return
	}
	payload := appendPayload(make([]byte, 0, 512), query, params, headers, x.rt, r.Method, parsed, &reqRef, &respRef)
	ready := true
	if n, ok := rr.(ReadyNotifier); ok {
		ready = false
		n.OnReady(func() { events <- event{ready: true} })
	}
	s.inv.Invoke(&invocation.Request{
		FunctionID:  x.rt.functionID,
		Namespace:   x.rt.namespace,
		Data:        payload,
		Metadata:    x.rt.metadata,
		Traceparent: r.Header.Get("Traceparent"),
		Baggage:     r.Header.Get("Baggage"),
		MinTimeout:  s.cfg.Timeout,
	}, func(res invocation.Result) { events <- event{res: res} })

	x.respond(ctx, rr, events, ready)
}

// event is what respond waits for besides frames and timers: the result,
// the response channel being ready to read or the request body channel to
// be written (ReadyNotifier).
type event struct {
	res       invocation.Result
	ready     bool
	bodyReady bool
}

// pushPending writes a body held back until its channel's reader
// connected. It fits the channel's buffer, but its frames may still have to
// wait for the engine's channel memory (spent by other channels): whatever
// cannot go in at once is pushed from a goroutine, so that the caller
// (respond) keeps serving the timeout, the shutdown and the response.
func (x *exchange) pushPending(ctx context.Context) {
	if x.pending == nil {
		return
	}
	b := x.pending
	x.pending = nil
	if t, ok := x.bw.(FrameTrier); ok {
		for len(b) > 0 {
			n := min(len(b), wire.FrameSize)
			ok, err := t.TryWriteFrame(false, b[:n])
			if err != nil {
				x.bw.Abort("request body not delivered: " + err.Error())
				return
			}
			if !ok {
				break
			}
			b = b[n:]
		}
		if len(b) == 0 {
			x.bw.Close()
			return
		}
	}
	bw := x.bw
	x.startPush(ctx, func(ctx context.Context) { pushBytes(ctx, bw, b) })
}

// startPush runs push on its own goroutine, with a context endPush cancels.
func (x *exchange) startPush(ctx context.Context, push func(context.Context)) {
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	x.pushDone, x.stopPush = done, stop
	go func() {
		defer close(done)
		push(ctx)
	}()
}

// endPush stops the goroutine pushing the request body, if any, and waits
// for it.
func (x *exchange) endPush() {
	done := x.pushDone
	if done == nil {
		return
	}
	x.pushDone = nil
	x.stopPush()
	select {
	case <-done:
		return
	default:
	}
	if !x.readsBody {
		<-done // blocked on the channel at most: the cancel ends it
		return
	}
	if x.w.status != 0 {
		_ = x.w.FlushError() // the client has its answer while we wait
	}
	// The body must not be read after this handler returns. A pusher
	// blocked in Read waits for the client's next bytes; a stalled client
	// is cut off by a read deadline. Not at once: once the body has been
	// read to its end, net/http reads the connection in the background,
	// and a deadline would cancel the connection's context (and with it
	// every later request on it).
	t := time.NewTimer(bodyGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = http.NewResponseController(&x.w).SetReadDeadline(time.Now())
		<-done
	}
}

// bodyGrace is how long a finished exchange waits for a request body read
// in progress before cutting the client off.
const bodyGrace = time.Second

func retire(ends ...any) {
	for _, e := range ends {
		if r, ok := e.(Retirer); ok {
			r.Retire()
		}
	}
}

// readJSON reads a JSON request body whole, within MaxJSONBody, charging
// its bytes to the server's budget before they are read (a declared length
// at once, a chunked body as its buffer grows). The caller gives held back
// once nothing refers to b. When ok is false the answer has been written.
func (x *exchange) readJSON() (b []byte, held int64, ok bool) {
	r, s := x.req, x.s
	limit := s.cfg.MaxJSONBody
	if r.ContentLength > limit {
		x.tooLarge()
		return nil, 0, false
	}
	body := http.MaxBytesReader(&x.w, r.Body, limit)
	if n := r.ContentLength; n >= 0 {
		if !s.jsonHeld.take(n) {
			x.budgetExhausted(n)
			return nil, 0, false
		}
		b = make([]byte, n)
		if _, err := io.ReadFull(body, b); err != nil {
			s.jsonHeld.give(n)
			x.badBody(err)
			return nil, 0, false
		}
		return b, n, true
	}
	for {
		if len(b) == cap(b) {
			// limit+1: the read past the limit is what reports it.
			grow := min(max(2*int64(cap(b)), 64<<10), limit+1) - int64(cap(b))
			if !s.jsonHeld.take(grow) {
				s.jsonHeld.give(held)
				x.budgetExhausted(held + grow)
				return nil, 0, false
			}
			held += grow
			b = append(make([]byte, 0, int64(cap(b))+grow), b...)
		}
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, held, true
		}
		if err != nil {
			s.jsonHeld.give(held)
			x.badBody(err)
			return nil, 0, false
		}
	}
}

func (x *exchange) badBody(err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		x.tooLarge()
		return
	}
	x.outcome = "request body: " + err.Error()
	writeError(&x.w, http.StatusBadRequest, "BAD_REQUEST", "could not read the request body")
}

func (x *exchange) budgetExhausted(n int64) {
	x.outcome = "json body budget exhausted"
	x.w.Header().Set("Retry-After", "1")
	writeError(&x.w, http.StatusServiceUnavailable, CodeBodyBudgetExhausted,
		fmt.Sprintf("JSON request bodies being read reached the engine's budget of %d bytes (this one needs %d); retry later", x.s.cfg.MaxBufferedJSON, n))
}

func (x *exchange) shuttingDown() {
	x.outcome = "engine shutting down"
	writeError(&x.w, http.StatusServiceUnavailable, wire.CodeEngineShuttingDown, "engine shutting down")
}

func (x *exchange) tooLarge() {
	x.outcome = "json body too large"
	writeError(&x.w, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE",
		fmt.Sprintf("JSON request body exceeds %d bytes", x.s.cfg.MaxJSONBody))
}

// pushBytes writes a body read up front into the channel, in frames of at
// most wire.FrameSize.
func pushBytes(ctx context.Context, bw BodyWriter, b []byte) {
	for len(b) > 0 {
		n := min(len(b), wire.FrameSize)
		if err := bw.WriteFrame(ctx, false, b[:n]); err != nil {
			bw.Abort("request body not delivered: " + err.Error())
			return
		}
		b = b[n:]
	}
	bw.Close()
}

// pushStream copies the request body into the channel, one frame per read,
// never holding more than the channel's buffer: the channel's backpressure
// stops the reads, and TCP stops the client.
func pushStream(ctx context.Context, bw BodyWriter, body io.Reader) {
	if _, err := bw.CopyFrom(ctx, body); err != nil {
		// The client went away, the request ended or the function stopped
		// reading: the function must see a broken stream, not a short one.
		bw.Abort("request body: " + err.Error())
		return
	}
	bw.Close()
}

// respond waits for whichever comes first (§6.3): a body frame or the end
// of the response channel (streamed), a result (buffered), an error, the
// timeout or the client going away. Control messages are applied as they
// come. Once the response has started it copies body frames to the client
// until the channel ends.
//
// Until the response channel is ready (ReadyNotifier) no frame can come,
// so the goroutine that reads it starts only then: a buffered answer, the
// common case, needs none.
func (x *exchange) respond(ctx context.Context, rr ResponseReader, events <-chan event, ready bool) {
	var p *pump
	var frames <-chan frame
	defer func() {
		if p != nil {
			p.stop()
		}
	}()
	startReading := func() {
		p = startPump(ctx, rr)
		frames = p.out
		p.request()
	}
	if ready {
		startReading()
	}

	st := streamState{status: http.StatusOK}
	timeout := startTimer(time.Until(x.deadline))
	defer stopTimer(timeout)
	var settle *time.Timer
	var settleC <-chan time.Time
	defer func() {
		if settle != nil {
			settle.Stop()
		}
	}()
	armSettle := func() {
		if settle == nil {
			settle = time.NewTimer(x.s.cfg.HeaderSettle)
		} else {
			settle.Reset(x.s.cfg.HeaderSettle)
		}
		settleC = settle.C
	}
	gotResult := false
	returnedNull := false
	broken := "" // the response channel ended abnormally before the response started

	for {
		select {
		case f := <-frames:
			switch {
			case f.err == io.EOF:
				if !st.committed {
					x.commit(&st)
				}
				return
			case f.err != nil:
				if st.committed {
					x.abort("response stream broke: " + f.err.Error())
				}
				broken = f.err.Error()
				if gotResult {
					x.badGateway(broken)
					return
				}
				continue // the result may still explain it
			case f.text:
				if !st.committed {
					if x.control(&st, f.data) {
						if !x.commitAndFlush(&st) {
							return
						}
					} else if returnedNull && st.controls {
						armSettle()
					}
				}
			default:
				if !st.committed {
					x.commit(&st)
				}
				if len(f.data) > 0 {
					if _, err := x.w.Write(f.data); err != nil {
						x.outcome = "client gone: " + err.Error()
						return
					}
				}
				if err := x.w.FlushError(); err != nil {
					x.outcome = "client gone: " + err.Error()
					return
				}
			}
			p.request()

		case ev := <-events:
			if ev.bodyReady {
				x.pushPending(ctx)
				continue
			}
			if ev.ready {
				if p == nil {
					startReading()
				}
				continue
			}
			res := ev.res
			gotResult = true
			if st.committed {
				// A streamed response may outlive the engine's invocation
				// deadline; that late TIMEOUT is no failure of the stream.
				if res.Err != nil && res.Err.Code == wire.CodeTimeout {
					x.s.log.Debug("http function's result timed out after its response started", "route", x.rt.display, "function_id", x.rt.functionID)
				} else if res.Err != nil {
					x.s.log.Warn("http function failed after its response started", "route", x.rt.display, "function_id", x.rt.functionID, "code", res.Err.Code, "message", res.Err.Message)
				}
				continue
			}
			if res.Err != nil {
				x.functionError(res.Err)
				return
			}
			if !isNull(res.Value) {
				x.buffered(res.Value)
				return
			}
			if broken != "" {
				x.badGateway(broken)
				return
			}
			returnedNull = true
			if st.controls {
				armSettle()
			}

		case <-settleC:
			settleC = nil
			if !st.committed && !x.commitAndFlush(&st) {
				return
			}

		case <-timeout.C:
			if !st.committed {
				x.outcome = "timeout"
				writeError(&x.w, http.StatusGatewayTimeout, wire.CodeTimeout,
					fmt.Sprintf("function %s did not start a response within %s", x.rt.functionID, x.s.cfg.Timeout))
				return
			}

		case <-ctx.Done():
			x.outcome = "client gone"
			return

		case <-x.s.ctx.Done():
			if st.committed {
				x.abort("engine shutting down")
			}
			x.shuttingDown()
			return
		}
	}
}

// Timers of respond are reused: a timer and its channel are two
// allocations per request otherwise. Since Go 1.23 a stopped timer's
// channel holds no stale tick, so a reused one fires only for its new
// deadline.
var timers sync.Pool

func startTimer(d time.Duration) *time.Timer {
	if t, ok := timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func stopTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}

// abort cuts a started response so the client sees an error (a truncated
// chunked body, a reset stream) instead of a clean, short end.
func (x *exchange) abort(why string) {
	x.outcome = why
	x.s.log.Warn("http response aborted", "route", x.rt.display, "function_id", x.rt.functionID, "reason", why)
	panic(http.ErrAbortHandler)
}

func (x *exchange) badGateway(why string) {
	x.outcome = "response channel: " + why
	writeError(&x.w, http.StatusBadGateway, "RESPONSE_STREAM_BROKEN",
		"the response stream of function "+x.rt.functionID+" ended abnormally before the response started: "+why)
}

// functionError answers a failed invocation: 503 when the route's function
// is not registered (any more), 500 with the function's code otherwise.
func (x *exchange) functionError(e *wire.ErrorBody) {
	x.outcome = e.Code
	switch e.Code {
	case wire.CodeFunctionNotFound:
		writeError(&x.w, http.StatusServiceUnavailable, e.Code,
			fmt.Sprintf("function %s of route %s is not available", x.rt.functionID, x.rt.display))
	case wire.CodeWorkerCongested: // not delivered: the worker is not reading
		writeError(&x.w, http.StatusServiceUnavailable, e.Code, e.Message)
	case wire.CodeTimeout: // the engine's invocation deadline
		writeError(&x.w, http.StatusGatewayTimeout, e.Code, e.Message)
	default:
		writeError(&x.w, http.StatusInternalServerError, e.Code, e.Message)
	}
}

// pump reads the response channel on its own goroutine so that respond can
// wait on frames, the result and timers at once. It reads one frame per
// request, so a frame's data stays valid until the next request and
// nothing is read ahead of the channel's own buffer.
type pump struct {
	want   chan struct{}
	out    chan frame
	cancel context.CancelFunc
	done   chan struct{}
}

type frame struct {
	text bool
	data []byte
	err  error
}

func startPump(ctx context.Context, rr ResponseReader) *pump {
	ctx, cancel := context.WithCancel(ctx)
	p := &pump{want: make(chan struct{}, 1), out: make(chan frame), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.want:
			case <-ctx.Done():
				return
			}
			text, data, err := rr.Next(ctx)
			select {
			case p.out <- frame{text, data, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *pump) request() { p.want <- struct{}{} }

// stop ends the goroutine and waits for it, so that the reader can be
// closed safely afterwards.
func (p *pump) stop() {
	p.cancel()
	<-p.done
}

// logRequest writes the access log line.
func (x *exchange) logRequest() {
	status := x.w.status
	if status == 0 {
		status = 499 // nothing was sent: the client left first
	}
	if obs := x.s.cfg.Observe; obs != nil {
		route := ""
		if x.rt != nil {
			route = x.rt.display
		}
		obs(route, status, time.Since(x.start))
	}
	if x.traceEnd != nil {
		route := ""
		if x.rt != nil {
			route = x.rt.display
		}
		x.traceEnd(route, status)
	}
	log := x.s.log
	ctx := x.req.Context()
	level := slog.LevelDebug
	if x.s.cfg.AccessLog {
		level = slog.LevelInfo
	}
	if x.outcome != "" {
		level = slog.LevelWarn
	}
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", x.req.Method),
		slog.String("path", x.req.URL.Path),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(x.start)),
		slog.Int64("bytes", x.w.bytes),
	}
	if x.rt != nil {
		attrs = append(attrs, slog.String("route", x.rt.display), slog.String("function_id", x.rt.functionID))
	}
	if x.outcome != "" {
		attrs = append(attrs, slog.String("outcome", x.outcome))
	}
	log.LogAttrs(ctx, level, "http request", attrs...)
}

func isJSONContentType(ct string) bool {
	return len(ct) >= 16 && strings.Contains(strings.ToLower(ct), "application/json")
}

func isNull(v jsontext.Value) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || string(v) == "null"
}
