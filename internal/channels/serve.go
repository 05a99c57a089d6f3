package channels

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// ServeHTTP serves GET /ws/channels/{id}?key=&dir=read|write. It reads the
// id from the {id} path value when the route has one, else from the last
// path segment, so it works mounted at "/ws/channels/" with or without
// http.StripPrefix. Every refusal happens before the upgrade: 400 for a
// missing key or a bad dir, 404 "Channel not found" for an unknown id or a
// wrong key, 409 when the requested end is already taken, 503 after
// Shutdown.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	key := q.Get("key")
	var end int
	switch q.Get("dir") {
	case wire.DirWrite:
		end = dirWrite
	case wire.DirRead:
		end = dirRead
	default:
		http.Error(w, `query parameter "dir" must be "read" or "write"`, http.StatusBadRequest)
		return
	}
	if key == "" {
		http.Error(w, `missing query parameter "key"`, http.StatusBadRequest)
		return
	}
	id := r.PathValue("id")
	if id == "" {
		id = r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	}
	if c := h.cluster; c != nil {
		if tag, ok := c.remoteTag(id); ok {
			h.serveBridged(w, r, c, tag, id, key, end)
			return
		}
	}
	ch, status, msg := h.claim(id, key, end)
	if ch == nil {
		http.Error(w, msg, status)
		return
	}
	up := &h.writerUp
	if end == dirRead {
		up = &h.readerUp
	}
	ws, err := up.Upgrade(w, r, nil) // on error the Upgrader has answered the request
	if err != nil {
		h.unclaim(ch, end)
		return
	}
	h.activate(ch, end, ws)
	defer h.wg.Done()
	if end == dirWrite {
		h.runWriter(ch, ws)
	} else {
		h.runReader(ch, ws)
	}
}

// sockEnd is the engine's side of one channel socket, as far as other
// goroutines need to reach it: they may only close it.
type sockEnd struct {
	ws     *websocket.Conn
	once   sync.Once
	killed atomic.Bool
}

// kill sends a close frame and gives the peer closeWait to answer it. It is
// safe from any goroutine (ws.Conn allows WriteControl concurrently with the
// reader and the writer) and only the first call counts (with failed).
func (e *sockEnd) kill(code int, reason string) {
	e.once.Do(func() {
		e.killed.Store(true)
		_ = e.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(controlWait))
		_ = e.ws.NetConn().SetReadDeadline(time.Now().Add(closeWait))
	})
}

// failed is kill for a socket whose reader has answered a protocol error
// with a close frame already: it gives the peer closeWait, and a kill
// after it sends no second close frame.
func (e *sockEnd) failed() {
	e.once.Do(func() {
		e.killed.Store(true)
		_ = e.ws.NetConn().SetReadDeadline(time.Now().Add(closeWait))
	})
}

// runWriter pumps a writer socket into the pipe: this goroutine is the only
// reader of the socket and the only sender of the pipe. When the channel's
// bytes or the hub's budget are spent (the frame reader waits for memory
// before reading a payload) or the pipe is full (Send blocks), the socket
// is not read and TCP holds the writer back. frameReader fills pooled
// buffers: nothing is allocated per frame up to bufCap.
func (h *Hub) runWriter(ch *channel, ws *websocket.Conn) {
	p := ch.pipe
	e := &sockEnd{ws: ws}
	// Reader gone, channel expired or engine shutdown: close the socket at
	// once, even if the writer is idle and this goroutine is parked in a read.
	stop := context.AfterFunc(p.Gone(), func() { e.kill(writerKillCode(context.Cause(p.Gone()))) })
	fr := newFrameReader(ws, h.cfg.MaxFrameSize)
	fr.mem, fr.stop = ch.mem, p.Gone().Done()
	ctx := context.Background()
	var (
		clean    bool
		abort    *AbortError
		gotClose bool
	)
	for {
		f, err := fr.next()
		if err != nil {
			f.Release()
			if err == errStopped {
				e.kill(writerKillCode(context.Cause(p.Gone())))
				break
			}
			clean, abort, gotClose = h.writerEnded(ch, e, err)
			break
		}
		n := len(f.Data)
		if err := p.Send(ctx, f); err != nil {
			f.Release()
			e.kill(writerKillCode(err))
			break
		}
		h.frames.Add(1)
		h.bytes.Add(uint64(n))
		ch.frames.Add(1)
		ch.bytes.Add(uint64(n))
	}
	stop()
	if abort != nil {
		h.aborted.Add(1)
	}
	if clean {
		p.CloseSend()
	} else if abort != nil {
		// The frames already queued still reach the reader, then 1011.
		p.FailSend(abort)
	}
	if e.killed.Load() && !gotClose {
		// Our close frame is out (kill's, or ws.Conn's answer to a protocol
		// error): discard what is still in flight until the writer's close
		// reply or hang-up, or the read deadline.
		drain(ws)
	}
	ws.Close()
	h.finish(ch, dirWrite, ws)
}

// writerEnded classifies the error that ended a writer socket's read loop.
func (h *Hub) writerEnded(ch *channel, e *sockEnd, err error) (clean bool, abort *AbortError, gotClose bool) {
	var ce *websocket.CloseError
	var pe *websocket.ProtocolError
	switch {
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure: // 1006: no close frame, the peer hung up
		// ws.Conn has already echoed the close frame.
		if e.killed.Load() {
			return false, nil, true // the reply to our own close
		}
		if cleanClose(ce.Code) {
			return true, nil, true
		}
		reason := ce.Text
		if reason == "" {
			reason = "writer closed with code " + strconv.Itoa(ce.Code)
		}
		return false, &AbortError{Reason: reason}, true
	case errors.Is(err, wsconn.ErrFrameTooLarge):
		limit := strconv.FormatInt(h.cfg.MaxFrameSize, 10)
		h.log.Warn("channel frame too large", "channel_id", ch.id, "limit", h.cfg.MaxFrameSize)
		e.kill(websocket.CloseMessageTooBig, "frame exceeds "+limit+" bytes")
		return false, &AbortError{Reason: "writer sent a frame larger than " + limit + " bytes"}, false
	case errors.As(err, &pe):
		// ws.Conn has already answered it with its close code.
		h.log.Debug("channel writer protocol error", "channel_id", ch.id, "err", err)
		e.failed()
		return false, &AbortError{Reason: "writer broke the WebSocket protocol: " + pe.Reason}, false
	case e.killed.Load():
		return false, nil, false // our kill's read deadline, or the peer dropped after it
	}
	h.log.Debug("channel writer lost", "channel_id", ch.id, "err", err)
	return false, &AbortError{Reason: "writer connection lost"}, false
}

// cleanClose says whether a writer's close code means "finished": normal,
// going away, no status, and application codes do; the RFC 6455 error codes
// mean it failed.
func cleanClose(code int) bool {
	switch {
	case code == websocket.CloseNormalClosure, code == websocket.CloseGoingAway,
		code == websocket.CloseNoStatusReceived:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// writerKillCode maps why a pipe can take no more frames to the close frame
// its writer socket gets.
func writerKillCode(cause error) (int, string) {
	var ae *AbortError
	switch {
	case cause == errShutdown:
		return wire.CloseGoingAway, errShutdown.Reason
	case errors.Is(cause, ErrReaderGone):
		return wire.CloseInternal, "reader closed"
	case errors.As(cause, &ae):
		return wire.CloseInternal, ae.Reason
	case cause != nil:
		return wire.CloseInternal, cause.Error()
	}
	return wire.CloseInternal, "channel closed"
}

// runReader pumps the pipe into a reader socket. This goroutine is the
// socket's only data writer; a second goroutine reads the socket, because
// that is the only way to notice the reader leave (close frame or TCP drop)
// while it is idle, and to answer its pings.
func (h *Hub) runReader(ch *channel, ws *websocket.Conn) {
	p := ch.pipe
	// Pongs without a write deadline: ws.Conn's default handler leaves one
	// second on the connection, which would then cut a data write that
	// waits longer than that on a slow reader.
	ws.SetPingHandler(func(data string) error {
		_ = ws.WriteControl(websocket.PongMessage, []byte(data), time.Time{})
		return nil
	})
	readDone := make(chan struct{})
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(readDone)
		for {
			// Readers have nothing to say; NextReader discards any message.
			if _, _, err := ws.NextReader(); err != nil {
				break
			}
		}
		p.CloseRecv() // wakes Recv and the writer (1011 "reader closed")
	}()

	ctx := context.Background()
	var (
		endErr error
		batch  [maxBatchFrames]Frame
		msgs   [maxBatchFrames]websocket.Message
	)
	for endErr == nil {
		f, err := p.Recv(ctx)
		if err != nil {
			endErr = err
			break
		}
		// Frames already queued go out with this one in one writev (fewer
		// system calls when the reader is behind; full segments). Len > 0
		// means Recv will not block: this goroutine is the only receiver.
		n, size := 1, len(f.Data)
		batch[0] = f
		for n < maxBatchFrames && size < maxBatchBytes && p.Len() > 0 {
			f, err := p.Recv(ctx)
			if err != nil {
				endErr = err // after the frames received before it
				break
			}
			batch[n] = f
			n++
			size += len(f.Data)
		}
		if h.onReaderBatch != nil {
			h.onReaderBatch(n)
		}
		for i := range batch[:n] {
			msgs[i] = websocket.Message{Op: websocket.BinaryMessage, Data: batch[i].Data}
			if batch[i].Text {
				msgs[i].Op = websocket.TextMessage
			}
		}
		if err := ws.WriteMessages(msgs[:n]); err != nil {
			endErr = err
		}
		clear(msgs[:n]) // no references to the payloads, released next
		for i := range batch[:n] {
			batch[i].Release()
		}
	}

	code, reason := 0, ""
	var ae *AbortError
	switch {
	case endErr == io.EOF:
		code, reason = wire.CloseNormal, "end of stream"
	case errors.As(endErr, &ae):
		code, reason = wire.CloseInternal, ae.Reason
	}
	if code != 0 {
		if ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(controlWait)) == nil {
			// Let the reader see the close frame and answer before the TCP
			// connection goes: closing first could turn it into a reset.
			t := time.NewTimer(closeWait)
			select {
			case <-readDone:
			case <-t.C:
			}
			t.Stop()
		}
	}
	ws.Close()
	<-readDone
	h.finish(ch, dirRead, ws)
}
