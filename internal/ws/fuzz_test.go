package ws

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/ws/wstest"
)

// fuzzConn is a net.Conn that reads from a fixed input and discards
// writes.
type fuzzConn struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (f *fuzzConn) Read(p []byte) (int, error)       { return f.r.Read(p) }
func (f *fuzzConn) Write(p []byte) (int, error)      { return f.out.Write(p) }
func (f *fuzzConn) Close() error                     { return nil }
func (f *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (f *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (f *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzReader feeds arbitrary bytes to the frame reader, as a server and as
// a client. It must not panic or hang; a message it returns is within the
// read limit, and a text message is valid UTF-8; whatever our side wrote
// back is a sequence of well-formed frames ending, if at all, in one close
// frame. The seed corpus (the conformance cases and testdata/fuzz) runs
// with every `go test`; `go test -fuzz FuzzReader ./internal/ws/` explores.
func FuzzReader(f *testing.F) {
	for _, tc := range wstest.Cases {
		f.Add(tc.Wire(true), true)
		f.Add(tc.Wire(false), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, server bool) {
		fc := &fuzzConn{r: bytes.NewReader(in)}
		c := newConn(fc, server, fc, "", 0)
		const limit = 1 << 12
		c.SetReadLimit(limit)
		buf := make([]byte, 700)
		for range len(in) + 1 { // every message takes at least one byte
			op, rd, err := c.NextReader()
			if err != nil {
				break
			}
			var msg []byte
			for {
				n, err := rd.Read(buf)
				msg = append(msg, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					msg = nil
					break
				}
			}
			if len(msg) > limit {
				t.Fatalf("message of %d bytes over the limit %d", len(msg), limit)
			}
			if msg != nil && op == TextMessage && !utf8.Valid(msg) {
				t.Fatalf("invalid UTF-8 text message %q returned", msg)
			}
		}
		checkReplies(t, fc.out.Bytes(), !server)
	})
}

// checkReplies parses what our side wrote: well-formed frames, masked iff
// masked, at most one close frame and nothing after it.
func checkReplies(t *testing.T, b []byte, masked bool) {
	closed := false
	for len(b) > 0 {
		if closed {
			t.Fatalf("frame after the close frame: % x", b)
		}
		if len(b) < 2 {
			t.Fatalf("truncated header % x", b)
		}
		if (b[1]&0x80 != 0) != masked {
			t.Fatalf("reply masking wrong for the role: % x", b[:2])
		}
		op, n, hl := int(b[0]&0x0f), int(b[1]&0x7f), 2
		if n >= 126 {
			t.Fatalf("control reply of length code %d", n)
		}
		if masked {
			hl += 4
		}
		if len(b) < hl+n {
			t.Fatalf("truncated reply frame % x", b)
		}
		if op == CloseMessage {
			closed = true
			p := bytes.Clone(b[hl : hl+n])
			if masked {
				for i := range p {
					p[i] ^= b[2+i&3]
				}
			}
			if len(p) == 1 || len(p) >= 2 && !utf8.Valid(p[2:]) {
				t.Fatalf("malformed close reply % x", p)
			}
		} else if op != PongMessage {
			t.Fatalf("unexpected reply opcode %d", op)
		}
		b = b[hl+n:]
	}
}
