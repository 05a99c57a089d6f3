package sluice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/wire"
)

// Channels
//
// A channel is a byte stream between two functions, possibly in different
// processes and languages, relayed by the engine. It has a write end
// (*ChannelWriter, an io.WriteCloser) and a read end (*ChannelReader, an
// io.Reader); each end is named by a ChannelRef, a small JSON token that can
// travel inside any payload. A *ChannelReader or *ChannelWriter inside a
// payload marshals to its ref, and a handler whose input struct has a
// *ChannelReader or *ChannelWriter field receives a live end connected to
// the same engine.
//
// Binary data is sent in frames of at most 64 KiB; text messages
// (ChannelWriter.SendMessage) travel in order with the data and reach the
// reader's OnMessage callbacks.
//
// Unlike the Node SDK, a reader can tell a finished stream from a broken
// one: Read returns io.EOF only when the writer closed cleanly, and an error
// matching ErrStreamBroken (a *ChannelError) when the writer failed,
// vanished, or the engine gave up on the channel.

// ChannelRef names one end of a channel: channel_id, access_key and
// direction ("read" or "write", from the holder's point of view).
type ChannelRef = wire.ChannelRef

// Channel is a freshly created channel: both local ends and their refs.
// Keep one end and hand the other end's ref to another function. The ends
// connect lazily, so an end you hand away costs nothing locally; but do not
// Close a local Writer whose ref you gave away (see ChannelWriter.Close).
type Channel struct {
	Writer    *ChannelWriter
	Reader    *ChannelReader
	WriterRef ChannelRef
	ReaderRef ChannelRef
}

// newChannel builds the Channel for the result of engine::channels::create.
func newChannel(engineURL string, res wire.CreateChannelResult) *Channel {
	return &Channel{
		Writer:    NewChannelWriter(engineURL, res.Writer),
		Reader:    NewChannelReader(engineURL, res.Reader),
		WriterRef: res.Writer,
		ReaderRef: res.Reader,
	}
}

// newChannelReader and newChannelWriter are NewChannelReader and
// NewChannelWriter for a client's ends: they dial with its connection
// settings (dialer, proxy, TLS, headers).
func newChannelReader(engineURL string, dial *dialOptions, ref ChannelRef) *ChannelReader {
	r := NewChannelReader(engineURL, ref)
	r.dialOpts = dial
	return r
}

func newChannelWriter(engineURL string, dial *dialOptions, ref ChannelRef) *ChannelWriter {
	w := NewChannelWriter(engineURL, ref)
	w.dialOpts = dial
	return w
}

// ErrStreamBroken is matched (errors.Is) by every *ChannelError: the stream
// did not end cleanly, so the data read may be incomplete.
var ErrStreamBroken = errors.New("sluice: channel stream broken")

// ErrChannelClosed is returned by a channel end used after its own Close.
var ErrChannelClosed = errors.New("sluice: channel end closed")

// ErrChannelUnbound is returned by a channel end decoded from JSON without
// the client (so without an engine URL to connect to).
var ErrChannelUnbound = errors.New("sluice: channel end not bound to an engine: decode it through the client or use NewChannelReader/NewChannelWriter")

// ChannelError reports a channel that failed: the engine refused the
// connection (Status is the HTTP status: 404 unknown channel or wrong key,
// 409 end already taken), or the socket ended abnormally (Code is the
// WebSocket close code: 1011 when the other end failed or vanished, with
// the engine's reason; 1006 when the connection itself dropped).
type ChannelError struct {
	Code   int
	Status int
	Reason string
	err    error
}

func (e *ChannelError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("sluice: channel refused: HTTP %d %s", e.Status, e.Reason)
	}
	return fmt.Sprintf("sluice: channel stream broken: close %d %s", e.Code, e.Reason)
}

// Is makes errors.Is(err, ErrStreamBroken) true.
func (e *ChannelError) Is(target error) bool { return target == ErrStreamBroken }

// Unwrap returns the underlying network error, if any.
func (e *ChannelError) Unwrap() error { return e.err }

// channelURL is the engine's channel endpoint for one end.
func channelURL(engineURL string, ref ChannelRef, dir string) string {
	base := strings.TrimSuffix(engineURL, "/")
	switch {
	case strings.HasPrefix(base, "http://"):
		base = "ws://" + base[len("http://"):]
	case strings.HasPrefix(base, "https://"):
		base = "wss://" + base[len("https://"):]
	}
	return base + "/ws/channels/" + url.PathEscape(ref.ChannelID) +
		"?key=" + url.QueryEscape(ref.AccessKey) + "&dir=" + dir
}

const (
	// channelMaxMessage bounds one incoming frame (text messages are
	// buffered whole).
	channelMaxMessage = 64 << 20
	// channelCloseWait bounds waiting for the engine's close reply.
	channelCloseWait = 2 * time.Second
	// channelControlWait bounds writing a close frame.
	channelControlWait = time.Second
)

// The dialers of channel ends, before a client's options apply.
var (
	readerDialer = &websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: 10 * time.Second,
	}
	writerDialer = &websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: 10 * time.Second,
	}
)

// channelEnd is what both ends hold before they connect: the endpoint URL
// and the ref.
type channelEnd struct {
	url      string // "" when decoded from JSON without a client: unbound
	ref      ChannelRef
	dialOpts *dialOptions // the client's connection settings; nil: defaults
}

func newChannelEnd(engineURL string, ref ChannelRef, dir string) channelEnd {
	ref.Direction = dir
	return channelEnd{url: channelURL(engineURL, ref, dir), ref: ref}
}

// unmarshal decodes a ref of direction dir into an unbound end.
func (e *channelEnd) unmarshal(data []byte, dir string) error {
	ref, null, err := parseRef(data, dir)
	if err != nil || null {
		return err
	}
	e.ref, e.url = ref, ""
	return nil
}

// refOf is the ref to marshal for an end, nil (JSON null) for a nil end.
func refOf(e *channelEnd) *ChannelRef {
	if e == nil {
		return nil
	}
	return &e.ref
}

// dial connects the end (the lazy connect of its first use); a refusal
// becomes a *ChannelError with the HTTP status and the engine's body.
func (e *channelEnd) dial(d *websocket.Dialer) (*websocket.Conn, error) {
	if e.url == "" {
		return nil, ErrChannelUnbound
	}
	ws, err := dialChannel(e.dialOpts.dialer(*d), e.url, e.dialOpts.headers())
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(channelMaxMessage)
	return ws, nil
}

func dialChannel(d *websocket.Dialer, u string, h http.Header) (*websocket.Conn, error) {
	ws, resp, err := d.Dial(u, h)
	if err == nil {
		return ws, nil
	}
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, &ChannelError{Status: resp.StatusCode, Reason: strings.TrimSpace(string(body)), err: err}
	}
	return nil, &ChannelError{Code: websocket.CloseAbnormalClosure, Reason: "connect: " + err.Error(), err: err}
}

// endError maps what ended a channel socket to what the caller sees: nil for
// a clean end (1000, or 1005 no status as the reference engine sends),
// else a *ChannelError.
func endError(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case websocket.CloseNormalClosure, websocket.CloseNoStatusReceived:
			return nil
		}
		return &ChannelError{Code: ce.Code, Reason: ce.Text}
	}
	return &ChannelError{Code: websocket.CloseAbnormalClosure, Reason: err.Error(), err: err}
}

// frameBufs holds 64 KiB buffers for ReadFrom and WriteTo.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, wire.FrameSize); return &b }}

// CreateChannel asks the engine for a new channel and returns both of its
// ends, bound to this client's engine URL. Keep one end and pass the other
// (or its ref) in a payload to the function that should use it.
func (c *Client) CreateChannel(ctx context.Context, opts ...ChannelOption) (*Channel, error) {
	var cfg channelConfig
	for _, o := range opts {
		o(&cfg)
	}
	raw, err := c.Trigger(ctx, wire.FnChannelsCreate, cfg)
	if err != nil {
		return nil, err
	}
	var res wire.CreateChannelResult
	if err := jsonv2.Unmarshal(raw, &res); err != nil || res.Writer.ChannelID == "" || res.Reader.ChannelID == "" {
		return nil, fmt.Errorf("sluice: unexpected %s result %s (%v)", wire.FnChannelsCreate, raw, err)
	}
	ch := newChannel(c.url, res)
	ch.Writer.dialOpts, ch.Reader.dialOpts = c.dialOpts, c.dialOpts
	return ch, nil
}

// ChannelOption configures CreateChannel.
type ChannelOption func(*channelConfig)

type channelConfig struct {
	BufferSize int `json:"buffer_size,omitzero"`
}

// WithBufferSize sets how many frames the engine buffers between the
// channel's writer and reader (the engine also bounds them in bytes, by
// default 4 MiB).
func WithBufferSize(n int) ChannelOption {
	return func(in *channelConfig) { in.BufferSize = n }
}
