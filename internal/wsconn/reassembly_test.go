package wsconn

import (
	"bufio"
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

// readRaw runs serverReader.read over in-memory input (no control frames:
// ws is only used to answer those).
func readRaw(in []byte, limit int64) (kind int, data []byte, err error) {
	var r serverReader
	br := bufio.NewReaderSize(bytes.NewReader(in), readBufferSize)
	return r.read(br, nil, make([]byte, 0, 4096), limit)
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
	n := allocated(func() { kind, data, err = readRaw(in, 64<<20) })
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
			var r serverReader
			br := bufio.NewReaderSize(bytes.NewReader(in), readBufferSize)
			var data []byte
			var err error
			n := allocated(func() { _, data, err = r.read(br, nil, nil, limit) })
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
			if _, data, err = r.read(br, nil, nil, limit); err != nil || string(data) != "next" {
				t.Fatalf("next message: %q, %v", data, err)
			}
		})
	}
}

// A frame header announcing a huge payload costs nothing until the bytes
// arrive: the peer sends a few KiB and hangs up. On 8b50cfc a 32 MiB
// announcement allocated 32 MiB, and a 1 GiB one (over the limit)
// limit+1 bytes, before a byte of payload came.
func TestServerReadAnnouncedLengthNotAllocated(t *testing.T) {
	for name, announced := range map[string]int{"within the limit": 32 << 20, "over the limit": 1 << 30} {
		t.Run(name, func(t *testing.T) {
			hdr := make([]byte, wsframe.MaxHeader)
			n := wsframe.PutHeader(hdr, true, wsframe.OpText, announced, true, [4]byte{1, 2, 3, 4})
			in := append(hdr[:n], make([]byte, 10<<10)...)
			var err error
			a := allocated(func() { _, _, err = readRaw(in, 64<<20) })
			if code, _, ok := IsCloseError(err); !ok || code != websocket.CloseAbnormalClosure {
				t.Fatalf("peer gone mid-frame: %v", err)
			}
			if a > 256<<10 {
				t.Fatalf("a %d-byte announcement with 10 KiB sent allocated %d bytes", announced, a)
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
		// Through the server side's read buffer, which may hold bytes.
		sizes, data := rawFrames(t, conn.(*corkConn).br, 2)
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
