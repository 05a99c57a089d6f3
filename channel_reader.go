package sluice

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/internal/channels/wsframe"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// ChannelReader is the read end of a channel: an io.Reader and io.WriterTo
// (so io.Copy from it moves each frame without an intermediate buffer).
//
// Read returns io.EOF only after the writer closed cleanly and every byte
// has been read. If the writer failed (CloseWithError), vanished, or the
// engine gave up on the channel, Read returns a *ChannelError instead
// (errors.Is(err, ErrStreamBroken)): a truncated stream is never reported
// as a complete one.
//
// Text messages sent with ChannelWriter.SendMessage are not part of the
// bytes: they go to the OnMessage callbacks, which run on the reading
// goroutine when the read reaches them, so they are ordered with the data.
// The socket is opened by the first Read, WriteTo or ReadAll (OnMessage
// alone does not connect: keep reading, e.g. io.Copy(io.Discard, r), to
// receive messages). One goroutine reads at a time; Close may be called
// from any goroutine.
type ChannelReader struct {
	channelEnd

	mu     sync.Mutex // the consumer
	ws     *websocket.Conn
	src    msgSource // where messages come from, once connected
	cur    io.Reader // the binary message being read
	err    error     // sticky end: io.EOF, *ChannelError or ErrChannelClosed
	msgsMu sync.Mutex
	onMsg  []func(string)

	conn   atomic.Pointer[websocket.Conn] // published for Close
	closed atomic.Bool
}

// NewChannelReader returns the read end named by ref, on the engine at
// engineURL (the URL the worker connected to, e.g. "ws://127.0.0.1:49134").
// It connects with dir=read whatever ref.Direction says.
func NewChannelReader(engineURL string, ref ChannelRef) *ChannelReader {
	return &ChannelReader{channelEnd: newChannelEnd(engineURL, ref, wire.DirRead)}
}

// Ref returns the ref of this end, to hand to another function.
func (r *ChannelReader) Ref() ChannelRef { return r.ref }

// MarshalJSON encodes the reader as its ref.
func (r *ChannelReader) MarshalJSON() ([]byte, error) { return jsonv2.Marshal(refOf(r.endp())) }

// MarshalJSONTo encodes the reader as its ref (encoding/json/v2).
func (r *ChannelReader) MarshalJSONTo(enc *jsontext.Encoder) error {
	return jsonv2.MarshalEncode(enc, refOf(r.endp()))
}

// UnmarshalJSON decodes a ref into a reader that is not bound to any
// engine: it fails on use with ErrChannelUnbound. Handler input decoded by
// the client is bound; elsewhere use NewChannelReader(engineURL, ref).
func (r *ChannelReader) UnmarshalJSON(data []byte) error { return r.unmarshal(data, wire.DirRead) }

func (r *ChannelReader) endp() *channelEnd {
	if r == nil {
		return nil
	}
	return &r.channelEnd
}

// OnMessage registers f to receive the writer's text messages, in order
// with the data. Register before reading; f runs on the goroutine that
// reads and must not read from r itself.
func (r *ChannelReader) OnMessage(f func(msg string)) {
	r.msgsMu.Lock()
	r.onMsg = append(r.onMsg, f)
	r.msgsMu.Unlock()
}

// Read reads data; see the type's documentation for how it ends. A Read
// with an empty p connects, if need be, and returns at once.
func (r *ChannelReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(p) == 0 {
		if r.ws == nil && r.err == nil {
			r.connect()
		}
		if r.err == io.EOF {
			return 0, nil
		}
		return 0, r.err
	}
	for r.err == nil {
		if r.cur == nil {
			r.next()
			continue
		}
		n, err := r.cur.Read(p)
		if err == io.EOF {
			r.cur = nil
			err = nil
			if n == 0 {
				continue // an empty frame, or the end of one
			}
		}
		if err != nil {
			r.end(err)
			if n > 0 {
				return n, nil // the error comes with the next Read
			}
			break
		}
		return n, nil
	}
	return 0, r.err
}

// WriteTo copies the data to dst until the stream ends; it returns nil at a
// clean end (io.Copy semantics) and the stream's error otherwise.
func (r *ChannelReader) WriteTo(dst io.Writer) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	buf := *bp
	var total int64
	for r.err == nil {
		if r.cur == nil {
			r.next()
			continue
		}
		n, err := r.cur.Read(buf)
		if n > 0 {
			m, werr := dst.Write(buf[:n])
			total += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr // the stream is not over: a later read may go on
			}
		}
		if err == io.EOF {
			r.cur = nil
		} else if err != nil {
			r.end(err)
		}
	}
	if r.err == io.EOF {
		return total, nil
	}
	return total, r.err
}

// ReadAll reads the stream to its end. Like io.ReadAll it returns a nil
// error at a clean end.
func (r *ChannelReader) ReadAll() ([]byte, error) {
	var b bytes.Buffer
	_, err := r.WriteTo(&b)
	return b.Bytes(), err
}

// next moves to the next binary message, handing text messages to the
// callbacks on the way; at the end of the stream it sets r.err.
func (r *ChannelReader) next() {
	if r.ws == nil {
		if r.connect(); r.err != nil {
			return
		}
	}
	for {
		kind, rd, err := r.src.NextReader()
		if err != nil {
			r.end(err)
			return
		}
		if kind == websocket.BinaryMessage {
			r.cur = rd
			return
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			r.end(err)
			return
		}
		r.msgsMu.Lock()
		fs := r.onMsg
		r.msgsMu.Unlock()
		for _, f := range fs {
			f(string(b))
		}
	}
}

func (r *ChannelReader) connect() {
	if r.closed.Load() {
		r.err = ErrChannelClosed
		return
	}
	var ws *websocket.Conn
	var err error
	if strings.HasPrefix(r.url, "ws://") {
		ws, r.src, err = r.dialRaw()
	} else {
		// wss: the frames are read by gorilla (see rawSource).
		if ws, err = r.dial(readerDialer); err == nil {
			r.src = ws
		}
	}
	if err != nil {
		r.err = err
		return
	}
	r.ws = ws
	r.conn.Store(ws)
	if r.closed.Load() { // Close raced with the dial
		ws.Close()
	}
}

// dialRaw connects a ws:// reader whose frames rawSource reads. gorilla
// does the handshake through a handshakeConn, which never lets gorilla's
// buffer read past the end of the response: the frames the engine sends
// right after it stay for rawSource.
func (r *ChannelReader) dialRaw() (*websocket.Conn, msgSource, error) {
	d, dialed := withHandshakeConn(*readerDialer)
	d.ReadBufferSize = 1024 // gorilla only reads the handshake response
	ws, err := r.dial(d)
	if err != nil {
		return nil, nil, err
	}
	hc := dialed()
	hc.handshakeDone()
	return ws, newRawSource(ws, hc), nil
}

// end records why the stream ended and hangs up (gorilla has already
// answered the engine's close frame).
func (r *ChannelReader) end(err error) {
	switch {
	case r.closed.Load():
		r.err = ErrChannelClosed
	default:
		if r.err = endError(err); r.err == nil {
			r.err = io.EOF
		}
	}
	r.cur = nil
	r.ws.Close()
}

// Close gives up the stream: the engine closes the writer's socket (1011
// "reader closed"), and Read returns ErrChannelClosed. A reader that never
// connected stays unconnected: its writer hears of it when the channel
// expires.
func (r *ChannelReader) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	if ws := r.conn.Load(); ws != nil {
		_ = ws.WriteControl(websocket.CloseMessage, closeMessage(websocket.CloseNormalClosure, "channel_close"), time.Now().Add(channelControlWait))
		ws.Close()
	}
	return nil
}

// parseRef checks a JSON channel ref for a field of the given direction.
func parseRef(data []byte, dir string) (ref ChannelRef, null bool, err error) {
	if string(bytes.TrimSpace(data)) == "null" {
		return ref, true, nil
	}
	var raw struct {
		ChannelID *string `json:"channel_id"`
		AccessKey *string `json:"access_key"`
		Direction *string `json:"direction"`
	}
	if err := jsonv2.Unmarshal(data, &raw); err != nil {
		return ref, false, fmt.Errorf("sluice: not a channel ref: %w", err)
	}
	if raw.ChannelID == nil || *raw.ChannelID == "" || raw.AccessKey == nil || *raw.AccessKey == "" || raw.Direction == nil {
		return ref, false, errors.New("sluice: not a channel ref: want channel_id, access_key and direction")
	}
	if *raw.Direction != dir {
		return ref, false, fmt.Errorf("sluice: channel ref has direction %q, the field wants a %q end", *raw.Direction, dir)
	}
	return ChannelRef{ChannelID: *raw.ChannelID, AccessKey: *raw.AccessKey, Direction: dir}, false, nil
}

// msgSource yields a reader socket's messages, like gorilla's NextReader
// (which is what *websocket.Conn provides for wss:// ends): a message not
// read to its end is skipped by the next call; control frames are handled
// on the way; the engine's close frame ends it with a *websocket.CloseError.
type msgSource interface {
	NextReader() (kind int, r io.Reader, err error)
}

// rawSource reads a ws:// reader socket's frames with wsframe.Reader: a
// payload goes from the socket straight into the caller's buffer, with the
// next frame's header picked up by the same system call, and nothing is
// allocated per message (gorilla reads through its own buffer and allocates
// a reader per message). Control replies go through gorilla's WriteControl.
type rawSource struct {
	ws  *websocket.Conn
	fr  *wsframe.Reader
	msg rawMessage
	ctl [125]byte
}

// rawMessage is the message being read: its frames' payloads in a row.
type rawMessage struct {
	s    *rawSource
	fin  bool  // the current frame is the message's last
	size int64 // bytes of the message so far, for the read limit
	done bool  // read to its end (or abandoned)
	err  error // sticky
}

func newRawSource(ws *websocket.Conn, conn net.Conn) *rawSource {
	s := &rawSource{ws: ws, fr: wsframe.NewReader(conn, 4096)}
	s.msg = rawMessage{s: s, done: true}
	return s
}

func (s *rawSource) NextReader() (int, io.Reader, error) {
	m := &s.msg
	if m.err != nil {
		return 0, nil, m.err
	}
	for !m.done { // skip the rest of the previous message
		if _, err := m.Read(s.ctl[:]); err == io.EOF {
			break
		} else if err != nil {
			return 0, nil, err
		}
	}
	h, err := s.header()
	if err != nil {
		m.err = err
		return 0, nil, err
	}
	if h.Op == wsframe.OpContinuation {
		m.err = s.fail("continuation frame outside a message")
		return 0, nil, m.err
	}
	*m = rawMessage{s: s, fin: h.Fin}
	if err := m.grow(h.Len); err != nil {
		return 0, nil, err
	}
	return h.Op, m, nil
}

func (m *rawMessage) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	for {
		if m.s.fr.Remaining() > 0 {
			n, err := m.s.fr.Read(p)
			if err != nil && err != io.EOF {
				m.err = err
				return n, err
			}
			return n, nil
		}
		if m.fin {
			m.done = true
			return 0, io.EOF
		}
		h, err := m.s.header()
		if err != nil {
			m.err = err
			return 0, err
		}
		if h.Op != wsframe.OpContinuation {
			m.err = m.s.fail("new message inside a fragmented one")
			return 0, m.err
		}
		m.fin = h.Fin
		if err := m.grow(h.Len); err != nil {
			return 0, err
		}
	}
}

// grow accounts for a frame of n bytes against the read limit.
func (m *rawMessage) grow(n uint64) error {
	if n > channelMaxMessage || m.size+int64(n) > channelMaxMessage {
		_ = m.s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseMessageTooBig, ""), time.Now().Add(channelControlWait))
		m.err = websocket.ErrReadLimit
		return m.err
	}
	m.size += int64(n)
	return nil
}

// header reads the next data frame's header, handling control frames.
func (s *rawSource) header() (wsframe.Header, error) {
	for {
		h, err := s.fr.Next()
		if err != nil {
			var pe *wsframe.ProtocolError
			if errors.As(err, &pe) {
				return h, s.fail(pe.Reason)
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // no close frame
			}
			return h, err
		}
		if h.Masked {
			return h, s.fail("masked server frame")
		}
		if !wsframe.IsControl(h.Op) {
			return h, nil
		}
		p := s.ctl[:h.Len]
		if err := s.fr.ReadPayload(p); err != nil {
			return h, err
		}
		err = wsconn.AnswerControl(s.ws, h.Op, p, channelControlWait)
		if pe := (*wsframe.ProtocolError)(nil); errors.As(err, &pe) {
			return h, s.fail(pe.Reason)
		}
		if err != nil {
			return h, err
		}
	}
}

// fail answers a protocol error with close 1002.
func (s *rawSource) fail(reason string) error {
	_ = s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseProtocolError, reason), time.Now().Add(channelControlWait))
	return &wsframe.ProtocolError{Reason: reason}
}

// withHandshakeConn returns a copy of d that dials through a handshakeConn
// (plain TCP), and a function that returns the last one it dialed.
func withHandshakeConn(d websocket.Dialer) (*websocket.Dialer, func() *handshakeConn) {
	var hc *handshakeConn
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var nd net.Dialer
		c, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		hc = &handshakeConn{Conn: c}
		return hc, nil
	}
	return &d, func() *handshakeConn { return hc }
}

// handshakeConn hands gorilla the bytes of the handshake and nothing more:
// until handshakeDone, a Read returns at most up to the end of the current
// HTTP header block (a proxy's CONNECT answer, then the 101), keeping what
// the socket delivered beyond it; afterwards the kept bytes come first.
type handshakeConn struct {
	net.Conn
	done bool
	tail uint32 // the last four bytes handed out, to spot "\r\n\r\n"
	keep []byte
	buf  [1024]byte
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	if len(c.keep) == 0 {
		if c.done {
			return c.Conn.Read(p)
		}
		n, err := c.Conn.Read(c.buf[:])
		if n == 0 {
			return 0, err
		}
		c.keep = c.buf[:n]
	}
	n := min(len(p), len(c.keep))
	if !c.done {
		for i, b := range c.keep[:n] {
			c.tail = c.tail<<8 | uint32(b)
			if c.tail == 0x0d0a0d0a { // the end of a header block
				n, c.tail = i+1, 0
				break
			}
		}
	}
	copy(p, c.keep[:n])
	c.keep = c.keep[n:]
	return n, nil
}

// handshakeDone ends the handshake: reads pass through from now on.
func (c *handshakeConn) handshakeDone() { c.done = true }
