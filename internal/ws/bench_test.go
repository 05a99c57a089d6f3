package ws

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// BenchmarkFrames compares this package with gorilla/websocket (the
// library it replaced) on one loopback connection: the client writes
// messages, the server reads each into a reused buffer. Run with
//
//	go test -run '^$' -bench Frames -benchmem ./internal/ws/
func BenchmarkFrames(b *testing.B) {
	for _, size := range []int{256, 64 << 10, 1 << 20} {
		name := map[int]string{256: "256B", 64 << 10: "64KiB", 1 << 20: "1MiB"}[size]
		b.Run("own/"+name, func(b *testing.B) { benchOwn(b, size) })
		b.Run("gorilla/"+name, func(b *testing.B) { benchGorilla(b, size) })
	}
}

func drain(b *testing.B, next func() (io.Reader, error), n int, done chan<- struct{}) {
	buf := make([]byte, 2<<20)
	for range n {
		r, err := next()
		if err != nil {
			b.Error(err)
			break
		}
		for {
			_, err := r.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Error(err)
				close(done)
				return
			}
		}
	}
	close(done)
}

func benchOwn(b *testing.B, size int) {
	done := make(chan struct{})
	up := &Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		drain(b, func() (io.Reader, error) { _, r, err := c.NextReader(); return r, err }, b.N, done)
	}))
	defer srv.Close()
	c, _, err := (&Dialer{}).Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.WriteMessage(BinaryMessage, msg); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}

func benchGorilla(b *testing.B, size int) {
	done := make(chan struct{})
	up := &websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		drain(b, func() (io.Reader, error) { _, r, err := c.NextReader(); return r, err }, b.N, done)
	}))
	defer srv.Close()
	d := &websocket.Dialer{ReadBufferSize: 4096, WriteBufferSize: 4096}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}
