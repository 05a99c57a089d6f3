package sluice

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/ws/wstest"
)

// chanFuzzConn is the engine side of a channel socket in memory: it
// answers the dialer's handshake with a 101 followed by fixed bytes (the
// engine's frames), then EOF, and keeps what the client writes after the
// handshake.
type chanFuzzConn struct {
	frames []byte
	req    []byte        // the handshake request so far
	r      *bytes.Reader // the 101 and frames, once the request is in
	out    bytes.Buffer  // the client's frames
	closed bool
}

func (c *chanFuzzConn) Write(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.r != nil {
		return c.out.Write(p)
	}
	c.req = append(c.req, p...)
	if bytes.Contains(c.req, []byte("\r\n\r\n")) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(c.req)))
		if err != nil {
			return 0, err
		}
		c.r = bytes.NewReader(append([]byte(wstest.Response101(req)), c.frames...))
	}
	return len(p), nil
}

func (c *chanFuzzConn) Read(p []byte) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.r == nil {
		return 0, io.ErrUnexpectedEOF // read before the request: not a dialer
	}
	return c.r.Read(p)
}

func (c *chanFuzzConn) Close() error                     { c.closed = true; return nil }
func (c *chanFuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *chanFuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *chanFuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *chanFuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chanFuzzConn) SetWriteDeadline(time.Time) error { return nil }

// chanFuzzResult is what a ChannelReader made of a byte stream.
type chanFuzzResult struct {
	got   []string // "T:" text message, "B:" bytes since the last text
	end   error
	reply []byte // the client's frames
}

// readChannelFuzz reads frames with a ChannelReader, through Read or
// WriteTo.
func readChannelFuzz(t *testing.T, frames []byte, writeTo bool) chanFuzzResult {
	fc := &chanFuzzConn{frames: frames}
	opts := &dialOptions{
		netDial: func(context.Context, string, string) (net.Conn, error) { return fc, nil },
		proxy:   func(*http.Request) (*url.URL, error) { return nil, nil },
	}
	r := newChannelReader("ws://engine.invalid", opts, ChannelRef{ChannelID: "c", AccessKey: "k"})
	var res chanFuzzResult
	var bin []byte
	flush := func() {
		if bin != nil {
			res.got = append(res.got, "B:"+string(bin))
			bin = nil
		}
	}
	r.OnMessage(func(s string) { flush(); res.got = append(res.got, "T:"+s) })
	if writeTo {
		var n, wrote int64
		n, res.end = r.WriteTo(writerFunc(func(p []byte) (int, error) {
			bin = append(bin, p...)
			wrote += int64(len(p))
			return len(p), nil
		}))
		if n != wrote {
			t.Fatalf("WriteTo counted %d bytes, wrote %d", n, wrote)
		}
		if res.end == nil {
			res.end = io.EOF
		}
	} else {
		buf := make([]byte, 700)
		for res.end == nil {
			var n int
			n, res.end = r.Read(buf)
			if n < 0 || n > len(buf) || (n > 0 && res.end != nil) {
				t.Fatalf("Read returned %d, %v", n, res.end)
			}
			bin = append(bin, buf[:n]...)
		}
	}
	flush()
	res.reply = fc.out.Bytes()
	return res
}

// FuzzChannelReader feeds arbitrary engine frames to the SDK's
// ChannelReader. It must not panic or hang; Read and WriteTo must deliver
// the same bytes and text messages and end the same way; the stream ends
// with io.EOF only when the reader answered a close of 1000 or no status,
// otherwise with an ErrStreamBroken error; and what the reader wrote is
// masked frames ending in at most one close. The seeds (the conformance
// cases as the engine would send them) run with every `go test`;
// `go test -fuzz FuzzChannelReader .` explores.
func FuzzChannelReader(f *testing.F) {
	for _, tc := range wstest.Cases {
		f.Add(tc.Wire(false))
	}
	f.Fuzz(func(t *testing.T, frames []byte) {
		a := readChannelFuzz(t, frames, false)
		b := readChannelFuzz(t, frames, true)
		if fmt.Sprintf("%q %v", a.got, a.end) != fmt.Sprintf("%q %v", b.got, b.end) {
			t.Fatalf("Read: %.300q, %v\nWriteTo: %.300q, %v", a.got, a.end, b.got, b.end)
		}
		closeCode := checkChannelReplies(t, a.reply)
		switch {
		case a.end == io.EOF:
			if closeCode != websocket.CloseNormalClosure && closeCode != websocket.CloseNoStatusReceived {
				t.Fatalf("io.EOF, but the reader answered close %d", closeCode)
			}
		case !errors.Is(a.end, ErrStreamBroken):
			t.Fatalf("stream ended with %v, not an ErrStreamBroken error", a.end)
		}
	})
}

// checkChannelReplies parses a reader's frames: masked, well formed, at most
// one close and nothing after it; it returns the close code (1005 for an
// empty close payload, 0 for none).
func checkChannelReplies(t *testing.T, b []byte) int {
	code := 0
	for len(b) > 0 {
		if code != 0 {
			t.Fatalf("frames after the close frame: %x", b)
		}
		if len(b) < 2 {
			t.Fatalf("truncated frame %x", b)
		}
		hl := wsframe.HeaderLen(b[0], b[1])
		if len(b) < hl {
			t.Fatalf("truncated header %x", b)
		}
		h, err := wsframe.ParseHeader(b[:hl])
		if err != nil || !h.Masked || !h.Fin || h.Len > uint64(len(b)-hl) {
			t.Fatalf("bad frame from the reader %x: %+v %v", b, h, err)
		}
		p := append([]byte(nil), b[hl:hl+int(h.Len)]...)
		wsframe.Mask(h.Key, 0, p)
		switch h.Op {
		case websocket.CloseMessage:
			code = websocket.CloseNoStatusReceived
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
			}
		case websocket.PongMessage:
		default:
			t.Fatalf("a reader sent opcode %d", h.Op)
		}
		b = b[hl+int(h.Len):]
	}
	return code
}
