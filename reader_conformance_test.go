package sluice

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
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
	for _, tc := range wstest.Cases {
		if tc.LimitCase {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			got := make(chan wstest.Observed, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					got <- wstest.Observed{}
					return
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err != nil {
					got <- wstest.Observed{}
					return
				}
				// The 101 and the frames in one write: ctlReader must find
				// the frames the dialer did not read.
				resp := fmt.Sprintf("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wstest.AcceptKey(req.Header.Get("Sec-WebSocket-Key")))
				go conn.Write(append([]byte(resp), tc.Wire(false)...))
				got <- wstest.ReadPeer(t, br, true)
			}()
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
			select {
			case o := <-got:
				tc.Check(t, o)
			case <-time.After(10 * time.Second):
				t.Fatal("the raw server did not finish")
			}
		})
	}
}
