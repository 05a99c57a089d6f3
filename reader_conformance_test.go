package sluice

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testtls"
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

// TestConformanceConnSource runs the suite against the SDK's wss://
// control-socket reader (connSource: wsconn.ReadFrame on a socket
// wsconn.Dialer dialed, which reads through ws.Conn), the 101 and the
// frames apart and in one write. The SDK decodes what it reads with
// wire.Decode, which does not take its UTF-8 on trust, but the socket must
// still refuse invalid UTF-8 with 1007. Read-limit cases are left out, as
// for ctlReader.
func TestConformanceConnSource(t *testing.T) {
	files, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, together := range []bool{false, true} {
		name := "apart"
		if together {
			name = "together"
		}
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
			skipLimit := func(tc wstest.Case) bool { return tc.LimitCase }
			wstest.RunClient(t, ln, together, skipLimit, func(t *testing.T) {
				d := wsconn.Dialer(&websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 4096, TLSClientConfig: files.ClientConfig()})
				ws, _, err := d.Dial("wss://"+ln.Addr().String()+"/", nil)
				if err != nil {
					t.Fatal(err)
				}
				src := &connSource{ws: ws, idle: time.Minute}
				for {
					data, err := src.next()
					if errors.Is(err, wsconn.ErrFrameTooLarge) {
						continue
					}
					if err != nil {
						break
					}
					if ws.WriteMessage(src.kind, data) != nil {
						break
					}
				}
				ws.Close()
			})
		})
	}
}
