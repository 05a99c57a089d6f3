package wsconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// clientFrames encodes msg as masked client frames of at most frag bytes
// each (one frame if frag is 0), as a message with opcode op.
func clientFrames(op int, msg []byte, frag int) []byte {
	if frag <= 0 {
		frag = max(len(msg), 1)
	}
	var out []byte
	hdr := make([]byte, wsframe.MaxHeader)
	for off := 0; ; {
		p := msg[off:min(off+frag, len(msg))]
		off += len(p)
		key := [4]byte{7, 1, 9, byte(off)}
		n := wsframe.PutHeader(hdr, off == len(msg), op, len(p), true, key)
		out = append(out, hdr[:n]...)
		start := len(out)
		out = append(out, p...)
		wsframe.Mask(key, 0, out[start:])
		op = wsframe.OpContinuation
		if off == len(msg) {
			return out
		}
	}
}

// allocated runs f and returns the bytes it allocated on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// readerOver returns a server socket Upgrade made over a connection that
// reads in and then ends.
func readerOver(t testing.TB, in []byte) *websocket.Conn {
	t.Helper()
	return upgradeOver(t, &fuzzConn{r: bytes.NewReader(in)}, func(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
		return Upgrade(&websocket.Upgrader{}, w, r, nil)
	})
}

// A message in many small fragments is reassembled with amortised
// doubling: a 2 MiB message in 512-byte fragments allocates a few times
// its size. On 8b50cfc each fragment reallocated the whole message (2 GiB
// allocated, seconds of copying).
func TestServerReadFragmentsLinear(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789abcdef"), 2<<20/16)
	in := clientFrames(wsframe.OpBinary, msg, 512)
	var (
		kind int
		data []byte
		err  error
	)
	ws := readerOver(t, in)
	n := allocated(func() { kind, data, err = ReadFrame(ws, make([]byte, 0, 4096), 64<<20) })
	if err != nil || kind != Binary || !bytes.Equal(data, msg) {
		t.Fatalf("kind %d, %d bytes, %v", kind, len(data), err)
	}
	if n > 5*uint64(len(msg)) {
		t.Fatalf("reassembling %d bytes allocated %d bytes: want linear (at most 5x)", len(msg), n)
	}
}

// A frame over the limit costs at most OversizedPrefix+OversizedTail bytes
// of buffer, whatever the limit; the caller gets its first and last bytes;
// the next message reads normally. On 8b50cfc the reader kept limit+1
// bytes of it (here 4 MiB), and not its end.
func TestServerReadOversizedKeepsPrefixAndTail(t *testing.T) {
	const limit = 4 << 20
	big := bytes.Repeat([]byte("x"), 6<<20+3) // odd sizes: the tail's mask positions are not aligned
	copy(big, `{"type":"invokefunction","invocation_id":"i1"`)
	copy(big[len(big)-100:], `"invocation_id":"i2"}`)
	big[len(big)-OversizedTail] = 'T' // the tail's first byte
	for name, frag := range map[string]int{"one frame": 0, "fragments": 64 << 10, "small fragments": 999} {
		t.Run(name, func(t *testing.T) {
			in := append(clientFrames(wsframe.OpText, big, frag), clientFrames(wsframe.OpText, []byte("next"), 0)...)
			ws := readerOver(t, in)
			var data []byte
			var err error
			n := allocated(func() { _, data, err = ReadFrame(ws, nil, limit) })
			want := append(big[:OversizedPrefix:OversizedPrefix], big[len(big)-OversizedTail:]...)
			if !errors.Is(err, ErrFrameTooLarge) || !bytes.Equal(data, want) {
				t.Fatalf("got %d bytes, %v; want the %d-byte prefix, the %d-byte tail and ErrFrameTooLarge", len(data), err, OversizedPrefix, OversizedTail)
			}
			bound := uint64(4 * (OversizedPrefix + OversizedTail))
			if frag > 0 {
				bound = 3 * limit // the first limit bytes were a message within the limit so far
			}
			if n > bound {
				t.Fatalf("rejecting an oversized message allocated %d bytes (bound %d)", n, bound)
			}
			if _, data, err = ReadFrame(ws, nil, limit); err != nil || string(data) != "next" {
				t.Fatalf("next message: %q, %v", data, err)
			}
		})
	}
}

// The tail of an oversized message is its last bytes also when the frame
// that crosses the limit is shorter than OversizedTail: the rest comes
// from the fragments read before it. On 1e7a4ea it was only the bytes
// after the limit was crossed (here 10).
func TestServerReadOversizedTailFromEarlierFragments(t *testing.T) {
	const limit = 100 << 10
	big := bytes.Repeat([]byte("0123456789abcdef"), (limit+16)/16)[:limit+10]
	in := clientFrames(wsframe.OpText, big[:limit], 0)
	in[0] &^= 0x80 // not final: big[limit:] follows in a continuation
	in = append(in, clientFrames(wsframe.OpContinuation, big[limit:], 0)...)
	in = append(in, clientFrames(wsframe.OpText, []byte("next"), 0)...)
	ws := readerOver(t, in)
	_, data, err := ReadFrame(ws, nil, limit)
	want := append(big[:OversizedPrefix:OversizedPrefix], big[len(big)-OversizedTail:]...)
	if !errors.Is(err, ErrFrameTooLarge) || !bytes.Equal(data, want) {
		t.Fatalf("got %d bytes (tail %.20q…), %v; want the %d-byte prefix and the %d-byte tail %.20q…", len(data), data[min(len(data), OversizedPrefix):], err, OversizedPrefix, OversizedTail, big[len(big)-OversizedTail:])
	}
	if _, data, err = ReadFrame(ws, nil, limit); err != nil || string(data) != "next" {
		t.Fatalf("next message: %q, %v", data, err)
	}
}

// A frame header announcing a huge payload costs nothing until the bytes
// arrive: the peer sends a few KiB and hangs up. On 8b50cfc a 32 MiB
// announcement allocated 32 MiB, and a 1 GiB one (over the limit)
// limit+1 bytes, before a byte of payload came. The largest length a
// header can announce, in a continuation, once overflowed the check
// against the limit: the buffer then grew one byte at a time, past the
// limit (quadratic: 10 KiB cost some 50 MB).
func TestServerReadAnnouncedLengthNotAllocated(t *testing.T) {
	for _, tc := range []struct {
		name      string
		announced int
		fragment  bool // a 1-byte first fragment before the announcing frame
		limit     int64
	}{
		{"within the limit", 32 << 20, false, 64 << 20},
		{"over the limit", 1 << 30, false, 64 << 20},
		{"the largest length after a fragment", 1<<63 - 1, true, 64 << 20},
		{"the largest length after a fragment, no limit", 1<<63 - 1, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in []byte
			op := wsframe.OpText
			hdr := make([]byte, wsframe.MaxHeader)
			if tc.fragment {
				n := wsframe.PutHeader(hdr, false, op, 1, true, [4]byte{1, 2, 3, 4})
				in = append(append(in, hdr[:n]...), 'a'^1)
				op = wsframe.OpContinuation
			}
			n := wsframe.PutHeader(hdr, true, op, tc.announced, true, [4]byte{1, 2, 3, 4})
			in = append(append(in, hdr[:n]...), make([]byte, 10<<10)...)
			ws := readerOver(t, in)
			var err error
			a := allocated(func() { _, _, err = ReadFrame(ws, make([]byte, 0, 4096), tc.limit) })
			if code, _, ok := IsCloseError(err); !ok || code != websocket.CloseAbnormalClosure {
				t.Fatalf("peer gone mid-frame: %v", err)
			}
			if a > 256<<10 {
				t.Fatalf("a %d-byte announcement with 10 KiB sent allocated %d bytes", tc.announced, a)
			}
		})
	}
}

// rawFrames reads whole messages from src and reports each message's
// frame payload sizes.
func rawFrames(t *testing.T, src io.Reader, messages int) (sizes [][]int, data [][]byte) {
	t.Helper()
	fr := wsframe.NewReader(src, 4096)
	var cur []int
	var buf []byte
	for len(sizes) < messages {
		h, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if wsframe.IsControl(h.Op) {
			continue
		}
		p := make([]byte, h.Len)
		if err := fr.ReadPayload(p); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		cur, buf = append(cur, int(h.Len)), append(buf, p...)
		if h.Fin {
			sizes, data = append(sizes, cur), append(data, buf)
			cur, buf = nil, nil
		}
	}
	return sizes, data
}

// Big messages go out in large fragments from both ends (masked from the
// client, on ws:// and wss://), not in write-buffer-sized ones. On 8b50cfc
// the client sent a 3 MiB message as 768 frames of 4 KiB.
func TestLargeMessagesInLargeFragments(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789abcdef"), (3*largeFragment+16)/16)
	want := []int{largeFragment, largeFragment, largeFragment, 16}
	check := func(t *testing.T, sizes [][]int, data [][]byte) {
		t.Helper()
		if len(sizes[0]) != len(want) || sizes[0][0] != want[0] || sizes[0][3] != want[3] || !bytes.Equal(data[0], msg) {
			t.Fatalf("frames %v (want %v), payload intact %v", sizes[0][:min(len(sizes[0]), 8)], want, bytes.Equal(data[0], msg))
		}
		if len(sizes[1]) != 1 || string(data[1]) != "after" {
			t.Fatalf("next message: %v %q", sizes[1], data[1])
		}
	}

	client := func(t *testing.T, tlsOn bool) {
		got := make(chan net.Conn, 1)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ws, err := Upgrade(&websocket.Upgrader{}, w, r, nil)
			if err != nil {
				return
			}
			got <- ws.NetConn()
		})
		d := websocket.Dialer{WriteBufferSize: 4096} // no proxy, as the SDK's
		var srv *httptest.Server
		if tlsOn {
			srv = httptest.NewTLSServer(h)
			d.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
		} else {
			srv = httptest.NewServer(h)
		}
		defer srv.Close()
		ws, _, err := Dialer(&d).Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil) // ws:// or wss://
		if err != nil {
			t.Fatal(err)
		}
		c := New(ws, Options{})
		defer c.Abort()
		if c.cc == nil {
			t.Fatal("the dialed socket is not a corkConn: writes go through gorilla")
		}
		conn := <-got
		defer conn.Close()
		go func() {
			_ = c.Send(context.Background(), Binary, msg, nil)
			_ = c.Send(context.Background(), Text, []byte("after"), nil)
		}()
		// Straight from the server side's connection: its ws.Conn has read
		// nothing.
		sizes, data := rawFrames(t, conn, 2)
		check(t, sizes, data)
	}
	t.Run("client", func(t *testing.T) { client(t, false) })
	t.Run("client over TLS", func(t *testing.T) { client(t, true) })

	t.Run("server", func(t *testing.T) {
		s, c := upgradedPair(t)
		go func() {
			_ = s.Send(context.Background(), Binary, msg, nil)
			_ = s.Send(context.Background(), Text, []byte("after"), nil)
		}()
		sizes, data := rawFrames(t, c.NetConn(), 2)
		check(t, sizes, data)
	})
}

// While a big message is written, a control frame waits for one fragment,
// not for the whole message: a ping sent once the peer has read the first
// fragment arrives before the last one (RFC 6455 allows control frames
// between fragments), and the message is intact.
func TestControlFrameBetweenFragments(t *testing.T) {
	s, c := upgradedPair(t)
	// Small socket buffers: the write stays blocked mid-message until the
	// peer reads.
	_ = s.cc.Conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
	_ = c.NetConn().(*net.TCPConn).SetReadBuffer(64 << 10)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 8*largeFragment/16)
	sent := make(chan error, 1)
	go func() { sent <- s.Send(context.Background(), Binary, msg, nil) }()

	fr := wsframe.NewReader(c.NetConn(), 4096)
	var got []byte
	pinged, pingedAt := false, -1
	for frames := 0; ; frames++ {
		h, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, h.Len)
		if err := fr.ReadPayload(p); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if h.Op == wsframe.OpPing {
			pingedAt = frames
			continue
		}
		got = append(got, p...)
		if !pinged {
			pinged = true
			go func() { _ = s.ws.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(10*time.Second)) }()
		}
		if h.Fin {
			break
		}
	}
	if err := <-sent; err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("send: %v; message intact: %v", err, bytes.Equal(got, msg))
	}
	if pingedAt < 0 {
		t.Fatal("the ping did not arrive before the message's last fragment")
	}
}
