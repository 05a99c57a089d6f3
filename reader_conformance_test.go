package sluice

import (
	"errors"
	"net"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wstest"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// TestConformanceCtlReader runs the RFC 6455 conformance suite against
// the SDK's ws:// control-socket reader (ctlReader, dialed as Client.dial
// dials it), the one client-side reader that is not ws.Conn's. The
// read-limit cases are left out: ctlReader skips an oversized message
// (wsconn.ErrFrameTooLarge) and keeps the socket. On 1324f03 it accepted
// invalid UTF-8 in text messages and answered a close reason that is not
// UTF-8 with 1002 instead of 1007.
func TestConformanceCtlReader(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	skipLimit := func(tc wstest.Case) bool { return tc.LimitCase }
	// The 101 and the frames in one write: ctlReader must find the frames
	// the dialer did not read.
	wstest.RunClient(t, ln, true, skipLimit, func(t *testing.T) {
		d, dialed := withHandshakeConn(websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 1024})
		ws, _, err := wsconn.Dialer(d).Dial("ws://"+ln.Addr().String()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		dialed().handshakeDone()
		r := newCtlReader(ws, ws.NetConn(), time.Minute)
		for {
			data, err := r.next()
			if errors.Is(err, wsconn.ErrFrameTooLarge) {
				continue
			}
			if err != nil {
				break
			}
			if ws.WriteMessage(r.kind, data) != nil {
				break
			}
		}
		ws.Close()
	})
}
