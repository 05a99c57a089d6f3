package sluice

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	websocket "github.com/sluicehq/sluice/internal/ws"

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

	mu     sync.Mutex      // the consumer
	ws     *websocket.Conn // once connected
	cur    io.Reader       // the binary message being read
	err    error           // sticky end: io.EOF, *ChannelError or ErrChannelClosed
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
		kind, rd, err := r.ws.NextReader()
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
	// The ws reader reads a payload of 1 KiB or more straight into the
	// caller's buffer, and allocates nothing per message.
	ws, err := r.dial(readerDialer)
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

// end records why the stream ended and hangs up (the ws reader has
// already answered the engine's close frame).
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
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "channel_close"), time.Now().Add(channelControlWait))
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
