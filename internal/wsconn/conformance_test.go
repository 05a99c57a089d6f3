package wsconn

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluicehq/sluice/internal/testtls"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wstest"
)

// TestConformanceEngineReader runs the RFC 6455 conformance suite against
// ReadFrame, the engine's worker-socket reader, over ws:// and wss://, on
// sockets Upgrade made (the engine's) and on others. The engine hands
// text messages to wire.DecodeText, whose raw values are then forwarded to
// other workers unscanned: ReadFrame must refuse invalid UTF-8, however it
// is split across fragments, with 1007. The read-limit cases are left out:
// over the limit, ReadFrame skips the message and returns its prefix and
// tail (the engine answers it with an error message and keeps the worker)
// instead of failing with 1009. On 1af7002 the engine's reader accepted
// invalid UTF-8 in text messages and close reasons (6 cases per scheme
// failed).
func TestConformanceEngineReader(t *testing.T) {
	files, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	paths := []struct {
		name    string
		upgrade func(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error)
	}{
		{"Upgrade", func(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
			return Upgrade(&websocket.Upgrader{}, w, r, nil)
		}},
		{"ws.Upgrader", func(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
			return (&websocket.Upgrader{}).Upgrade(w, r, nil)
		}},
	}
	for _, path := range paths {
		for _, scheme := range []string{"ws", "wss"} {
			t.Run(path.name+"/"+scheme, func(t *testing.T) {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					ws, err := path.upgrade(w, r)
					if err != nil {
						return
					}
					c := New(ws, Options{MaxQueuedBytes: 1 << 20})
					defer func() { // the reader answered the close: flush, hang up
						c.Hangup()
						<-c.Done()
					}()
					var buf []byte
					for {
						kind, data, err := ReadFrame(ws, buf, wstest.Limit)
						if errors.Is(err, ErrFrameTooLarge) {
							continue
						}
						if err != nil {
							return
						}
						if c.Send(r.Context(), kind, append([]byte(nil), data...), nil) != nil {
							return
						}
						buf = data[:0]
					}
				}))
				if scheme == "wss" {
					srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
					srv.StartTLS()
				} else {
					srv.Start()
				}
				defer srv.Close()
				wstest.RunServer(t, scheme, srv.Listener.Addr().String(), files.ClientConfig(),
					func(tc wstest.Case) bool { return tc.LimitCase })
			})
		}
	}
}
