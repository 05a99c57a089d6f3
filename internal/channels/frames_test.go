package channels

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// mask XORs b with a frame's masking key (each frame's mask starts at
// key[0]).
func mask(key [4]byte, b []byte) { wsframe.Mask(key, 0, b) }

func TestMask(t *testing.T) {
	key := [4]byte{1, 2, 3, 0xff}
	for n := range 80 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 31)
		}
		want := bytes.Clone(b)
		for i := range want {
			want[i] ^= key[i%4]
		}
		mask(key, b)
		if !bytes.Equal(b, want) {
			t.Fatalf("len %d: got %x want %x", n, b, want)
		}
	}
}

// TestFragmentsAndPings: a message sent in continuation frames, with pings
// in between, is forwarded as one frame, and the pings are answered.
func TestFragmentsAndPings(t *testing.T) {
	th := newTestHub(t, Config{})
	res, _ := th.Create(0)
	r := th.dial(t, res.Reader, wire.DirRead)
	w := th.dial(t, res.Writer, wire.DirWrite)
	pong := make(chan string, 1)
	w.SetPongHandler(func(s string) error { pong <- s; return nil })
	go func() { // the writer's reader: runs the pong handler
		for {
			if _, _, err := w.NextReader(); err != nil {
				return
			}
		}
	}()

	big := bytes.Repeat([]byte("0123456789"), 10_000)
	// A fragmented message with a ping between its fragments, which is
	// legal and must be answered.
	var frames []byte
	frames = append(frames, maskedFrame(false, wsframe.OpBinary, big[:60_000])...)
	frames = append(frames, maskedFrame(true, wsframe.OpPing, []byte("p1"))...)
	frames = append(frames, maskedFrame(true, wsframe.OpContinuation, big[60_000:])...)
	if _, err := w.NetConn().Write(frames); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMessage(websocket.TextMessage, []byte("after")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pong:
		if p != "p1" {
			t.Fatalf("pong %q", p)
		}
	case <-time.After(testWait):
		t.Fatal("no pong")
	}
	_ = r.SetReadDeadline(time.Now().Add(testWait))
	if k, b, err := r.ReadMessage(); err != nil || k != websocket.BinaryMessage || !bytes.Equal(b, big) {
		t.Fatalf("fragmented message: %d bytes, %v", len(b), err)
	}
	if _, b, err := r.ReadMessage(); err != nil || string(b) != "after" {
		t.Fatalf("next message: %q %v", b, err)
	}
}

// maskedFrame builds a masked client frame of any length.
func maskedFrame(fin bool, op int, p []byte) []byte {
	key := [4]byte{1, 2, 3, 4}
	b := make([]byte, wsframe.MaxHeader+len(p))
	n := wsframe.PutHeader(b, fin, op, len(p), true, key)
	wsframe.MaskCopy(b[n:], p, key)
	return b[:n+len(p)]
}

// rawFrame builds a client frame by hand, for frames gorilla refuses to send.
func rawFrame(b0 byte, masked bool, payload []byte) []byte {
	f := []byte{b0, byte(len(payload))}
	if !masked {
		return append(f, payload...)
	}
	f[1] |= 0x80
	f = append(f, 9, 8, 7, 6)
	start := len(f)
	f = append(f, payload...)
	mask([4]byte{9, 8, 7, 6}, f[start:])
	return f
}

func TestProtocolErrors(t *testing.T) {
	th := newTestHub(t, Config{})
	for _, tc := range []struct {
		name  string
		frame []byte
		code  int // 0: 1002
	}{
		{"unmasked", rawFrame(0x82, false, []byte("x")), 0},
		{"reserved bit", rawFrame(0xC2, true, []byte("x")), 0},
		{"unknown opcode", rawFrame(0x83, true, []byte("x")), 0},
		{"lone continuation", rawFrame(0x80, true, []byte("x")), 0},
		{"fragmented ping", rawFrame(0x09, true, nil), 0},
		{"bad close code", rawFrame(0x88, true, []byte{0x03, 0xe8 + 5}), 0}, // 1005 may not be sent
		{"one-byte close", rawFrame(0x88, true, []byte{3}), 0},
		// On 46d1b29 the hub relayed invalid UTF-8 text (which a reader
		// must fail) and answered a bad close reason with 1002.
		{"invalid UTF-8 text", rawFrame(0x81, true, []byte("ab\xffcd")), websocket.CloseInvalidFramePayloadData},
		{"text ends inside a rune", append(rawFrame(0x01, true, []byte("ok\xe2")), rawFrame(0x80, true, []byte("\x82"))...), websocket.CloseInvalidFramePayloadData},
		{"close reason not UTF-8", rawFrame(0x88, true, []byte{0x03, 0xe8, 0xce}), websocket.CloseInvalidFramePayloadData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := th.Create(0)
			r := th.dial(t, res.Reader, wire.DirRead)
			w := th.dial(t, res.Writer, wire.DirWrite)
			if _, err := w.NetConn().Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			expectClose(t, w, cmp.Or(tc.code, websocket.CloseProtocolError), "")
			expectClose(t, r, wire.CloseInternal, "writer broke the WebSocket protocol")
		})
	}
	th.waitLen(t, 0)
}

// FuzzFrameReader: any byte stream ends in an error or messages within the
// limit, and drain reads what follows, never a panic.
func FuzzFrameReader(f *testing.F) {
	f.Add(rawFrame(0x82, true, []byte("hello")))
	f.Add(append(rawFrame(0x01, true, []byte("he")), rawFrame(0x80, true, []byte("llo"))...))
	f.Add(append(rawFrame(0x89, true, []byte("ping")), rawFrame(0x88, true, []byte{3, 232, 'b', 'y', 'e'})...))
	long := []byte{0x82, 0x80 | 127}
	long = binary.BigEndian.AppendUint64(long, 1<<40)
	f.Add(append(long, 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 1 << 10
		c, _ := serverConn(t, in)
		fr := newFrameReader(c, limit)
		for range 1000 {
			f, err := fr.next()
			if len(f.Data) > limit {
				t.Fatalf("message of %d bytes over the %d limit", len(f.Data), limit)
			}
			f.Release()
			if err != nil {
				var ce *websocket.CloseError
				var pe *websocket.ProtocolError
				if !errors.As(err, &ce) && !errors.As(err, &pe) && !errors.Is(err, wsconn.ErrFrameTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
		}
		drain(c)
	})
}
