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
// the SDK's control-socket reader (ctlReader, dialed and made as
// Client.dial makes it), over ws:// and wss://, the 101 and the frames
// apart and in one write (then ctlReader must find the frames the dialer
// read with the response). The read-limit cases are left out: ctlReader
// skips an oversized message (wsconn.ErrFrameTooLarge) and keeps the
// socket. On 1324f03 it accepted invalid UTF-8 in text messages and
// answered a close reason that is not UTF-8 with 1002 instead of 1007; on
// 29b91b1 wss:// sockets were read by another reader (ws.Conn's).
func TestConformanceCtlReader(t *testing.T) {
	files, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	skipLimit := func(tc wstest.Case) bool { return tc.LimitCase }
	for _, scheme := range []string{"ws", "wss"} {
		for _, together := range []bool{false, true} {
			name := scheme + "/apart"
			if together {
				name = scheme + "/together"
			}
			t.Run(name, func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				d := &websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 1024}
				if scheme == "wss" {
					ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
					d.TLSClientConfig = files.ClientConfig()
				}
				wstest.RunClient(t, ln, together, skipLimit, func(t *testing.T) {
					ws, _, err := wsconn.Dialer(d).Dial(scheme+"://"+ln.Addr().String()+"/", nil)
					if err != nil {
						t.Fatal(err)
					}
					defer ws.Close()
					r := controlReader(ws, time.Minute)
					for {
						data, err := r.next()
						if errors.Is(err, wsconn.ErrFrameTooLarge) {
							continue
						}
						if err != nil || ws.WriteMessage(r.kind, data) != nil {
							return
						}
					}
				})
			})
		}
	}
}
