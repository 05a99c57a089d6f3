package sluice

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/wire"
)

// ChannelWriter is the write end of a channel: an io.WriteCloser and
// io.ReaderFrom. Data is sent as binary frames of at most 64 KiB; a Write
// blocks while the channel is full (the engine holds a bounded number of
// frames and then stops reading), so a slow reader slows the writer down
// instead of filling memory.
//
// The socket is opened on the first Write, ReadFrom, SendMessage or Close.
// Writes may come from several goroutines (each call's frames stay
// together); CloseWithError may be called while a Write is blocked, to
// abort it.
type ChannelWriter struct {
	channelEnd

	wmu    sync.Mutex // one frame writer at a time, and Close after them
	once   sync.Once
	conn   *chanConn
	dErr   error
	closed atomic.Bool
}

// NewChannelWriter returns the write end named by ref, on the engine at
// engineURL (the URL the worker connected to, e.g. "ws://127.0.0.1:49134").
// It connects with dir=write whatever ref.Direction says.
func NewChannelWriter(engineURL string, ref ChannelRef) *ChannelWriter {
	return &ChannelWriter{channelEnd: newChannelEnd(engineURL, ref, wire.DirWrite)}
}

// Ref returns the ref of this end, to hand to another function.
func (w *ChannelWriter) Ref() ChannelRef { return w.ref }

// MarshalJSON encodes the writer as its ref.
func (w *ChannelWriter) MarshalJSON() ([]byte, error) { return jsonv2.Marshal(refOf(w.endp())) }

// MarshalJSONTo encodes the writer as its ref (encoding/json/v2).
func (w *ChannelWriter) MarshalJSONTo(enc *jsontext.Encoder) error {
	return jsonv2.MarshalEncode(enc, refOf(w.endp()))
}

// UnmarshalJSON decodes a ref into a writer that is not bound to any
// engine: it fails on use with ErrChannelUnbound. Handler input decoded by
// the client is bound; elsewhere use NewChannelWriter(engineURL, ref).
func (w *ChannelWriter) UnmarshalJSON(data []byte) error { return w.unmarshal(data, wire.DirWrite) }

func (w *ChannelWriter) endp() *channelEnd {
	if w == nil {
		return nil
	}
	return &w.channelEnd
}

// chanConn is one connected writer socket. Every frame of ours goes
// through ws.Conn's writer (each frame one Write, masked with a fresh key
// as it is copied behind its header), data and control alike, under its
// one write lock.
//
// A goroutine reads the socket all along, through ws.Conn (only control
// frames come this way): that is how a writer learns at once that the
// engine closed it (reader gone: 1011 "reader closed"), and how pings get
// answered.
type chanConn struct {
	ws       *websocket.Conn
	readDone chan struct{}
	readErr  error // what ended the socket; set before readDone is closed
}

func (w *ChannelWriter) connect() (*chanConn, error) {
	w.once.Do(func() {
		ws, err := w.dial(writerDialer)
		if err != nil {
			w.dErr = err
			return
		}
		c := &chanConn{ws: ws, readDone: make(chan struct{})}
		ws.SetCloseHandler(func(code int, _ string) error {
			// Echo the close unless a data write holds the socket: the
			// read loop then hangs up, which ends that write.
			_ = ws.TryWriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(channelControlWait))
			return nil
		})
		go func() {
			defer close(c.readDone)
			for {
				if _, _, err := ws.NextReader(); err != nil {
					c.readErr = err
					ws.Close() // wakes a Write blocked on a socket nobody reads
					return
				}
			}
		}()
		w.conn = c
	})
	return w.conn, w.dErr
}

// Write sends p as binary frames of at most 64 KiB.
func (w *ChannelWriter) Write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	c, err := w.writable()
	if err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), wire.FrameSize)]
		if err := c.write(websocket.BinaryMessage, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// ReadFrom sends what it reads from r, one frame per Read (at most 64 KiB),
// until io.EOF. It does not close the writer.
func (w *ChannelWriter) ReadFrom(r io.Reader) (int64, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	c, err := w.writable()
	if err != nil {
		return 0, err
	}
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := c.write(websocket.BinaryMessage, buf[:n]); err != nil {
				return total, err
			}
			total += int64(n)
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// SendMessage sends msg as a text frame: a message for the reader's
// OnMessage callbacks, in order with the data.
func (w *ChannelWriter) SendMessage(msg string) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	c, err := w.writable()
	if err != nil {
		return err
	}
	return c.write(websocket.TextMessage, []byte(msg))
}

func (w *ChannelWriter) writable() (*chanConn, error) {
	if w.closed.Load() {
		return nil, ErrChannelClosed
	}
	return w.connect()
}

func (c *chanConn) write(op int, p []byte) error {
	select {
	case <-c.readDone: // the engine closed this end
		return c.failure(nil)
	default:
	}
	if err := c.ws.WriteMessage(op, p); err != nil {
		return c.failure(err)
	}
	return nil
}

// failure explains why the socket can take no more: the engine's close
// frame if one came (e.g. 1011 "reader closed"), else the write error.
func (c *chanConn) failure(writeErr error) error {
	t := time.NewTimer(channelCloseWait)
	defer t.Stop()
	select {
	case <-c.readDone:
	case <-t.C:
		c.ws.Close()
		<-c.readDone
	}
	if err := endError(c.readErr); err != nil {
		return err
	}
	if writeErr != nil {
		return &ChannelError{Code: websocket.CloseAbnormalClosure, Reason: writeErr.Error(), err: writeErr}
	}
	// The engine closed cleanly without being asked: it only does that
	// in reply to a close, so count it as an abnormal end.
	return &ChannelError{Code: websocket.CloseAbnormalClosure, Reason: "engine closed the channel"}
}

// Close ends the stream cleanly: after the data already written, it sends a
// close frame (1000) and waits briefly (2 s at most) for the engine's reply;
// the reader then gets io.EOF after every byte. Close returns an error if
// the stream had already broken (e.g. the reader went away).
//
// A writer that never wrote still connects to close: its reader must see
// the end rather than wait for the engine's 5-minute expiry (the Node SDK
// sends nothing in that case). So do not Close a local writer whose ref you
// handed to another function: that function's connection would be refused
// (409) and its reader would see an empty stream.
func (w *ChannelWriter) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	w.wmu.Lock() // after the frames of any Write in progress
	defer w.wmu.Unlock()
	return w.finish(websocket.CloseNormalClosure, "stream_complete")
}

// CloseWithError ends the stream as failed: the reader's Read returns a
// *ChannelError with code 1011 and cause's text as reason, never io.EOF.
// It does not wait for a Write in progress; that Write fails.
func (w *ChannelWriter) CloseWithError(cause error) error {
	if cause == nil {
		return w.Close()
	}
	if w.closed.Swap(true) {
		return nil
	}
	reason := cause.Error()
	if reason == "" {
		reason = "writer failed"
	}
	return w.finish(wire.CloseInternal, reason)
}

func (w *ChannelWriter) finish(code int, reason string) error {
	c, err := w.connect()
	if err != nil {
		return err
	}
	select {
	case <-c.readDone: // already over: say how
		return c.failure(nil)
	default:
	}
	if err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(channelControlWait)); err != nil {
		// A blocked Write holds the socket: drop it; the reader still
		// learns the stream broke (1011 "writer connection lost").
		c.ws.Close()
		<-c.readDone
		if code == websocket.CloseNormalClosure {
			return &ChannelError{Code: websocket.CloseAbnormalClosure, Reason: err.Error(), err: err}
		}
		return nil
	}
	t := time.NewTimer(channelCloseWait)
	defer t.Stop()
	select {
	case <-c.readDone:
	case <-t.C:
		// No reply: the engine is still busy with earlier frames (a slow
		// reader). They and the close frame are in the socket; the engine
		// reads them after we hang up.
		c.ws.Close()
		<-c.readDone
		return nil
	}
	var ce *websocket.CloseError
	if errors.As(c.readErr, &ce) && ce.Code == code {
		return nil // the engine's echo of our close
	}
	if code != websocket.CloseNormalClosure {
		return nil
	}
	return endError(c.readErr)
}

// writeEmptyFrame sends a zero-length binary frame: for the engine, the
// start of the body, so it sends the response headers at once.
func (w *ChannelWriter) writeEmptyFrame() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	c, err := w.writable()
	if err != nil {
		return err
	}
	return c.write(websocket.BinaryMessage, nil)
}

// socketDone is closed when the engine has ended the writer's socket (nil
// if it never connected).
func (w *ChannelWriter) socketDone() <-chan struct{} {
	c, err := w.connect()
	if err != nil || c == nil {
		return nil
	}
	return c.readDone
}
