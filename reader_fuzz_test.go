package sluice

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/ws/wstest"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// scriptedEngine is a connection to a scripted server: it answers the
// client's opening handshake with a 101 followed, in the same read, by in
// (the frames arrive with the response, as they may from a real engine),
// and keeps what the client writes after its request.
type scriptedEngine struct {
	in  []byte
	req bytes.Buffer
	rd  *bytes.Reader // nil until the request is in
	out bytes.Buffer
}

func (c *scriptedEngine) Write(p []byte) (int, error) {
	if c.rd != nil {
		return c.out.Write(p)
	}
	c.req.Write(p)
	if bytes.Contains(c.req.Bytes(), []byte("\r\n\r\n")) {
		req, err := http.ReadRequest(bufio.NewReader(&c.req))
		if err != nil {
			return 0, err
		}
		c.rd = bytes.NewReader(append([]byte(wstest.Response101(req)), c.in...))
	}
	return len(p), nil
}

func (c *scriptedEngine) Read(p []byte) (int, error) {
	if c.rd == nil {
		return 0, errors.New("read before the request was written")
	}
	return c.rd.Read(p)
}

func (c *scriptedEngine) Close() error                     { return nil }
func (c *scriptedEngine) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptedEngine) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptedEngine) SetDeadline(time.Time) error      { return nil }
func (c *scriptedEngine) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptedEngine) SetWriteDeadline(time.Time) error { return nil }

// dialScripted dials a scriptedEngine sending in, as Client.dial dials.
func dialScripted(t *testing.T, in []byte) (*websocket.Conn, *scriptedEngine) {
	se := &scriptedEngine{in: in}
	d := wsconn.Dialer(&websocket.Dialer{ReadBufferSize: 1024, NetDialContext: func(context.Context, string, string) (net.Conn, error) {
		return se, nil
	}})
	ws, _, err := d.Dial("ws://engine/", nil)
	if err != nil {
		t.Fatal(err)
	}
	return ws, se
}

// readOutcome is what a client-side reader made of the engine's bytes.
type readOutcome = wstest.Outcome

// clientReplies parses what the client wrote: masked pongs and close
// frames, nothing after its close frame.
func clientReplies(t *testing.T, out []byte) (pongs []string, closeCode int) {
	for len(out) > 0 {
		if closeCode != 0 {
			t.Fatalf("a frame after our close frame: %x", out)
		}
		if len(out) < 2 || len(out) < wsframe.HeaderLen(out[0], out[1]) {
			t.Fatalf("truncated frame header %x", out)
		}
		hl := wsframe.HeaderLen(out[0], out[1])
		h, err := wsframe.ParseHeader(out[:hl])
		if err != nil || !h.Masked || uint64(len(out)-hl) < h.Len {
			t.Fatalf("a bad frame of ours %x: %+v %v", out, h, err)
		}
		p := bytes.Clone(out[hl : hl+int(h.Len)])
		wsframe.Mask(h.Key, 0, p)
		switch h.Op {
		case websocket.PongMessage:
			pongs = append(pongs, string(p))
		case websocket.CloseMessage:
			closeCode = websocket.CloseNoStatusReceived
			if len(p) >= 2 {
				closeCode = int(binary.BigEndian.Uint16(p))
			}
		default:
			t.Fatalf("a reply of opcode %d", h.Op)
		}
		out = out[hl+int(h.Len):]
	}
	return pongs, closeCode
}

// ctlReaderOutcome reads in with the SDK's control-socket reader.
func ctlReaderOutcome(t *testing.T, in []byte) readOutcome {
	ws, se := dialScripted(t, in)
	r := controlReader(ws, time.Minute)
	r.arm(time.Now())
	var o readOutcome
	for {
		data, err := r.next()
		if err != nil {
			var ce *websocket.CloseError
			var pe *websocket.ProtocolError
			switch {
			case errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure: // the input ended
				o.End = "eof"
			case errors.As(err, &ce):
				o.End = fmt.Sprint("close ", ce.Code)
			case errors.As(err, &pe):
				o.End = fmt.Sprint("fail ", pe.CloseCode())
			default:
				t.Fatalf("unexpected error %v", err)
			}
			break
		}
		o.Msgs = append(o.Msgs, wstest.Delivered(r.kind == websocket.TextMessage, data))
	}
	pongs, closeCode := clientReplies(t, se.out.Bytes())
	o.Pongs = pongs
	switch {
	case strings.HasPrefix(o.End, "close ") && closeCode == 0:
		t.Fatal("the engine's close frame was not echoed")
	case strings.HasPrefix(o.End, "fail ") && fmt.Sprint("fail ", closeCode) != o.End:
		t.Fatalf("%s but sent close %d", o.End, closeCode)
	}
	return o
}

// wsConnClientOutcome reads in with ws.Conn's client reader, the reader
// every other client side is held to.
func wsConnClientOutcome(t *testing.T, in []byte) readOutcome {
	ws, se := dialScripted(t, in)
	var o readOutcome
	var readErr error
	for {
		op, data, err := ws.ReadMessage()
		if err != nil {
			readErr = err
			break
		}
		o.Msgs = append(o.Msgs, wstest.Delivered(op == websocket.TextMessage, data))
	}
	pongs, closeCode := clientReplies(t, se.out.Bytes())
	o.Pongs = pongs
	peer := 0
	if ce := (*websocket.CloseError)(nil); errors.As(readErr, &ce) && ce.Code != websocket.CloseAbnormalClosure { // 1006: the input ended
		peer = ce.Code
	}
	o.End = wstest.EndOf(peer, closeCode)
	return o
}

// FuzzCtlReaderMatchesConn reads the same engine bytes, arriving with the
// 101, with the SDK's control-socket reader and with ws.Conn's client
// reader: their outcomes must agree (wstest.Agree). The seeds (the
// conformance cases) run with every `go test`; `go test -fuzz
// FuzzCtlReaderMatchesConn .` explores.
func FuzzCtlReaderMatchesConn(f *testing.F) {
	for _, tc := range wstest.Cases {
		f.Add(tc.Wire(false))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ctl := ctlReaderOutcome(t, in)
		conn := wsConnClientOutcome(t, in)
		if !wstest.Agree(ctl, conn) {
			t.Fatalf("ctlReader: %.200q, pongs %.200q, %s\nws.Conn: %.200q, pongs %.200q, %s",
				ctl.Msgs, ctl.Pongs, ctl.End, conn.Msgs, conn.Pongs, conn.End)
		}
	})
}
