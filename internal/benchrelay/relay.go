// Package benchrelay provides the baselines the benchmarks compare the
// engine against: a WebSocket echo server and a plain WebSocket relay in
// front of it (caller → relay → echo → relay → caller: the same two hops
// as an invocation through the engine, with no engine logic). The channel
// benchmarks keep their TCP relays beside them.
package benchrelay

import (
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"
)

var upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}

// Server is a running baseline server.
type Server struct {
	URL string
	ln  net.Listener
	srv *http.Server
}

// Close stops the server and its connections.
func (s *Server) Close() { s.srv.Close() }

func serve(h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "ws://" + ln.Addr().String(), ln: ln, srv: &http.Server{Handler: h}}
	go s.srv.Serve(ln)
	return s, nil
}

// StartEcho starts a WebSocket server that writes every message back.
func StartEcho() (*Server, error) {
	return serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		buf := make([]byte, 0, 4096)
		for {
			kind, rd, err := ws.NextReader()
			if err != nil {
				return
			}
			buf, err = ReadMessage(rd, buf[:0])
			if err != nil {
				return
			}
			if err := ws.WriteMessage(kind, buf); err != nil {
				return
			}
		}
	}))
}

// StartRelay starts a WebSocket relay: each client connection gets its own
// upstream connection to target, and messages are forwarded both ways, one
// goroutine per direction.
func StartRelay(target string) (*Server, error) {
	return serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		down, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer down.Close()
		up, _, err := websocket.DefaultDialer.Dial(target, nil)
		if err != nil {
			return
		}
		defer up.Close()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); pump(up, down); down.Close() }()
		go func() { defer wg.Done(); pump(down, up); up.Close() }()
		wg.Wait()
	}))
}

func pump(dst, src *websocket.Conn) {
	buf := make([]byte, 0, 4096)
	for {
		kind, rd, err := src.NextReader()
		if err != nil {
			return
		}
		buf, err = ReadMessage(rd, buf[:0])
		if err != nil {
			return
		}
		if err := dst.WriteMessage(kind, buf); err != nil {
			return
		}
	}
}

// ReadMessage appends everything r yields to b (a message's reader:
// NextReader), growing b as needed, and returns it.
func ReadMessage(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
