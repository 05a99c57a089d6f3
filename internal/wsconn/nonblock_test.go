package wsconn

import (
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

// nbPair is a Conn in non-blocking mode with a budget of max bytes, and
// the client end, which reads only when the test says so.
func nbPair(t *testing.T, max int64) (*Conn, *websocket.Conn) {
	t.Helper()
	return newPair(t, func(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
		return Upgrade(u, w, r, nil)
	}, Options{MaxQueuedBytes: max})
}

// nbFrame is frame i: its index, then filler up to size bytes.
func nbFrame(i, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < size; j++ {
		b[j] = byte(i + j)
	}
	return b
}

func checkNBFrame(t *testing.T, c *websocket.Conn, i, size int) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("frame %d: %v", i, err)
	}
	if len(b) != size || int(binary.BigEndian.Uint32(b)) != i || b[size-1] != byte(i+size-1) {
		t.Fatalf("frame %d: got %d bytes, index %d", i, len(b), binary.BigEndian.Uint32(b))
	}
}

// A peer that does not read makes Send fail with ErrCongested once the
// budget is used, without ever blocking; every frame accepted before that
// arrives intact and in order once the peer reads, and the budget is free
// again afterwards.
func TestNonBlockingCongestion(t *testing.T) {
	const budget = 1 << 20
	s, c := nbPair(t, budget)
	sizes := func(i int) int {
		switch i % 7 {
		case 3:
			return rawMax + 1000 // through gorilla
		case 5:
			return 10
		}
		return 16 << 10
	}
	accepted := make(chan int, 1)
	go func() {
		n := 0
		for ; n < 20000; n++ { // at most ~80 MiB, far more than any socket buffer
			err := s.Send(t.Context(), Binary, nbFrame(n, sizes(n)), nil)
			if errors.Is(err, ErrCongested) {
				break
			}
			if err != nil {
				t.Error(err)
				break
			}
			if n%50 == 0 { // a control frame among the data frames
				if err := s.WS().WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
					t.Error(err)
				}
			}
		}
		accepted <- n
	}()
	var n int
	select {
	case n = <-accepted:
	case <-time.After(20 * time.Second):
		t.Fatal("Send blocked on a peer that does not read")
	}
	if n == 20000 {
		t.Fatal("never congested")
	}
	if p := s.Pending(); p == 0 || p > budget {
		t.Fatalf("pending %d bytes, want 1..%d", p, budget)
	}
	pings := 0
	c.SetPingHandler(func(string) error { pings++; return nil })
	for i := 0; i < n; i++ {
		checkNBFrame(t, c, i, sizes(i))
	}
	if want := (n + 49) / 50; pings < want-1 {
		t.Fatalf("%d pings read, want about %d", pings, want)
	}
	// Room again: a frame is accepted and arrives.
	if err := s.Send(t.Context(), Binary, nbFrame(n, 100), nil); err != nil {
		t.Fatal(err)
	}
	checkNBFrame(t, c, n, 100)
	s.Close(4001, "bye")
	_, _, err := c.ReadMessage()
	if code, _, ok := IsCloseError(err); !ok || code != 4001 {
		t.Fatalf("close: %v", err)
	}
	<-s.Done()
}

// An idle socket takes one frame of any size, even over the budget.
func TestNonBlockingFirstFrameAlwaysFits(t *testing.T) {
	s, c := nbPair(t, 1024)
	if err := s.Send(t.Context(), Binary, nbFrame(0, 8<<20), nil); err != nil {
		t.Fatal(err)
	}
	checkNBFrame(t, c, 0, 8<<20)
}

// A Batch corks a non-blocking socket and Flush hands the frames on
// without blocking, even when the peer does not read.
func TestNonBlockingBatch(t *testing.T) {
	s, c := nbPair(t, 64<<20)
	var b Batch
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 400; i++ { // 25 MiB: more than the socket buffers
			if err := s.SendIn(t.Context(), &b, Binary, nbFrame(i, 64<<10), nil); err != nil {
				t.Error(err)
				return
			}
			if i%10 == 9 {
				b.Flush()
			}
		}
		b.Flush()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("SendIn or Flush blocked")
	}
	for i := 0; i < 400; i++ {
		checkNBFrame(t, c, i, 64<<10)
	}
}

// BytesRead moves with every frame received, pongs included.
func TestBytesRead(t *testing.T) {
	s, c := nbPair(t, 1<<20)
	before := s.BytesRead()
	if err := c.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadFrame(s.WS(), nil, 1024); err != nil {
		t.Fatal(err)
	}
	if got := s.BytesRead() - before; got < 2+4+2+4+1 {
		t.Fatalf("BytesRead advanced by %d", got)
	}
}

// Over TLS there is no file descriptor to write to without blocking: every
// frame goes through the writer goroutine, and Send still never waits.
func TestNonBlockingTLS(t *testing.T) {
	ch := make(chan *Conn, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := Upgrade(&websocket.Upgrader{}, w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		ch <- New(ws, Options{MaxQueuedBytes: 1 << 20})
	}))
	t.Cleanup(srv.Close)
	d := websocket.Dialer{TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig}
	c, _, err := d.Dial("wss"+strings.TrimPrefix(srv.URL, "https"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := <-ch
	if s.cc.nb.raw != nil {
		t.Fatal("a TLS socket got a raw file descriptor")
	}
	accepted := make(chan int, 1)
	go func() {
		n := 0
		for ; n < 2000; n++ { // 64 MiB at most
			if err := s.Send(t.Context(), Binary, nbFrame(n, 32<<10), nil); err != nil {
				if !errors.Is(err, ErrCongested) {
					t.Error(err)
				}
				break
			}
		}
		accepted <- n
	}()
	var n int
	select {
	case n = <-accepted:
	case <-time.After(20 * time.Second):
		t.Fatal("Send blocked on a TLS peer that does not read")
	}
	if n == 2000 {
		t.Fatal("never congested")
	}
	for i := 0; i < n; i++ {
		checkNBFrame(t, c, i, 32<<10)
	}
}

// SendInWithin lets chosen frames use a larger budget than MaxQueuedBytes.
func TestSendInWithin(t *testing.T) {
	const budget = 256 << 10
	s, c := nbPair(t, budget)
	n := 0
	for ; n < 5000; n++ { // at most 80 MiB
		if err := s.Send(t.Context(), Binary, nbFrame(n, 16<<10), nil); err != nil {
			if !errors.Is(err, ErrCongested) {
				t.Fatal(err)
			}
			break
		}
	}
	m := n
	for ; m < n+5000; m++ {
		if err := s.SendInWithin(t.Context(), nil, Binary, nbFrame(m, 100), nil, 2*budget); err != nil {
			if !errors.Is(err, ErrCongested) {
				t.Fatal(err)
			}
			break
		}
	}
	if m == n || m == n+5000 {
		t.Fatalf("%d small frames over the budget accepted", m-n)
	}
	if p := s.Pending(); p <= budget || p > 2*budget {
		t.Fatalf("pending %d, want within (%d, %d]", p, budget, 2*budget)
	}
	for i := 0; i < m; i++ {
		size := 16 << 10
		if i >= n {
			size = 100
		}
		checkNBFrame(t, c, i, size)
	}
}

// tlsNBPair is nbPair over TLS: nothing is written inline, every frame
// goes through the writer goroutine.
func tlsNBPair(t *testing.T, max int64) (*Conn, *websocket.Conn) {
	t.Helper()
	ch := make(chan *Conn, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := Upgrade(&websocket.Upgrader{}, w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		ch <- New(ws, Options{MaxQueuedBytes: max})
	}))
	t.Cleanup(srv.Close)
	d := websocket.Dialer{TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig}
	c, _, err := d.Dial("wss"+strings.TrimPrefix(srv.URL, "https"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return <-ch, c
}

// The reader's last frame reaches the peer when the connection is torn
// down with HangupWithin, over TLS too, where the close frame the reader
// wrote is still pending when the reader returns (Abort there would drop
// it: the peer sees 1006).
func TestHangupWithinDeliversReaderClose(t *testing.T) {
	for name, msg := range map[string]struct {
		frame []byte // from the client
		code  int    // the close the client must get
	}{
		"invalid UTF-8": {frame: []byte{0x81, 0x83, 0, 0, 0, 0, 'o', 'k', 0xff}, code: websocket.CloseInvalidFramePayloadData},
		"bad frame":     {frame: []byte{0xC1, 0x81, 0, 0, 0, 0, 'x'}, code: websocket.CloseProtocolError},
		"close echo":    {frame: []byte{0x88, 0x82, 0, 0, 0, 0, 0x0f, 0xa0}, code: 4000},
	} {
		t.Run(name, func(t *testing.T) {
			s, c := tlsNBPair(t, 1<<20)
			if _, err := c.NetConn().Write(msg.frame); err != nil {
				t.Fatal(err)
			}
			if _, _, err := ReadFrame(s.WS(), nil, 0); err == nil {
				t.Fatal("the read did not fail")
			}
			s.HangupWithin(5 * time.Second)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _, err := c.ReadMessage()
			if code, _, ok := IsCloseError(err); !ok || code != msg.code {
				t.Fatalf("the client got %v, want close %d", err, msg.code)
			}
			select {
			case <-s.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the socket was not closed after its last frame")
			}
		})
	}
}

// HangupWithin does not wait longer than it was told for a peer that does
// not read: the socket is then closed and the unwritten bytes dropped,
// long before the write timeout.
func TestHangupWithinBounded(t *testing.T) {
	s, _ := tlsNBPair(t, 16<<20)
	for i := 0; ; i++ { // the client never reads
		if err := s.Send(t.Context(), Binary, nbFrame(i, 64<<10), nil); err != nil {
			if !errors.Is(err, ErrCongested) {
				t.Fatal(err)
			}
			break
		}
	}
	start := time.Now()
	s.HangupWithin(50 * time.Millisecond)
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("HangupWithin(50ms) waited on a peer that does not read")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("closed after %v, before the 50ms it was given", d)
	}
}
