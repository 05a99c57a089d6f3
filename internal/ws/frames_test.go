package ws

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/ws/wstest"
)

// readFrames reads the next message with FrameReader the way the
// repository's readers do — payloads appended to one buffer, UTF-8 checked
// once the message is whole — refusing one over limit (> 0) with close
// 1009 and ErrReadLimit.
func readFrames(c *Conn, limit int) (int, []byte, error) {
	f := c.Frames()
	var msg []byte
	op := 0
	for {
		h, err := f.Next()
		if err != nil {
			return 0, nil, err
		}
		if h.Op != wsframe.OpContinuation {
			op = h.Op
		}
		if limit > 0 && uint64(len(msg))+h.Len > uint64(limit) {
			_ = c.WriteControl(CloseMessage, FormatCloseMessage(CloseMessageTooBig, ""), time.Now().Add(time.Second))
			return 0, nil, ErrReadLimit
		}
		for f.Remaining() > 0 {
			n := len(msg)
			msg = slices.Grow(msg, int(f.Remaining())+wsframe.MaxHeader)
			got, err := f.Read(msg[n : n+int(f.Remaining())+wsframe.MaxHeader])
			msg = msg[:n+got]
			if err != nil && err != io.EOF {
				return 0, nil, err
			}
		}
		if h.Fin {
			if op == TextMessage && !utf8.Valid(msg) {
				return 0, nil, f.FailText()
			}
			return op, msg, nil
		}
	}
}

// framesEchoPeer is echoPeer reading with FrameReader.
func framesEchoPeer(c *Conn) error {
	defer c.Close()
	for {
		op, b, err := readFrames(c, wstest.Limit)
		if err != nil {
			return err
		}
		if err := c.WriteMessage(op, b); err != nil {
			return err
		}
	}
}

// TestConformanceFrames runs the suite against FrameReader, as a server
// and as a client, over ws:// and wss://.
func TestConformanceFrames(t *testing.T) {
	for _, scheme := range schemes() {
		t.Run("server/"+scheme, func(t *testing.T) { conformServer(t, scheme, framesEchoPeer) })
		t.Run("client/"+scheme, func(t *testing.T) { conformClient(t, scheme, true, framesEchoPeer) })
	}
}

// outcome reads in with read (NextReader's or FrameReader's) on a fresh
// connection of the role and records what came of it.
func outcome(in []byte, server bool, read func(*Conn) (int, []byte, error)) wstest.Outcome {
	fc := &fuzzConn{r: bytes.NewReader(in)}
	c := newConn(fc, server, fc, "", 0)
	var o wstest.Outcome
	peer := 0
	for range len(in) + 1 {
		op, msg, err := read(c)
		if err != nil {
			if ce, ok := err.(*CloseError); ok && ce.Code != CloseAbnormalClosure {
				peer = ce.Code
			}
			break
		}
		o.Msgs = append(o.Msgs, wstest.Delivered(op == TextMessage, msg))
	}
	own := 0
	for b := fc.out.Bytes(); len(b) >= 2; {
		hl := wsframe.HeaderLen(b[0], b[1])
		h, err := wsframe.ParseHeader(b[:hl])
		if err != nil || uint64(len(b)-hl) < h.Len {
			break
		}
		p := bytes.Clone(b[hl : hl+int(h.Len)])
		wsframe.Mask(h.Key, 0, p)
		switch h.Op {
		case PongMessage:
			o.Pongs = append(o.Pongs, string(p))
		case CloseMessage:
			if peer == 0 && len(p) >= 2 {
				own = int(p[0])<<8 | int(p[1])
			}
		}
		b = b[hl+int(h.Len):]
	}
	o.End = wstest.EndOf(peer, own)
	return o
}

// FuzzFramesMatchReader reads the same bytes with NextReader and with
// FrameReader (readFrames) in both roles: the same messages, pongs and
// end (wstest.Agree: FrameReader's reader may fail invalid UTF-8 later).
func FuzzFramesMatchReader(f *testing.F) {
	for _, tc := range wstest.Cases {
		f.Add(tc.Wire(true), true)
		f.Add(tc.Wire(false), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, server bool) {
		const limit = 1 << 12
		ref := outcome(in, server, func(c *Conn) (int, []byte, error) {
			c.SetReadLimit(limit)
			op, rd, err := c.NextReader()
			if err != nil {
				return 0, nil, err
			}
			b, err := io.ReadAll(rd)
			return op, b, err
		})
		got := outcome(in, server, func(c *Conn) (int, []byte, error) { return readFrames(c, limit) })
		if !wstest.Agree(got, ref) {
			t.Fatalf("FrameReader and NextReader disagree on %x:\n frames %+v\n reader %+v", in, got, ref)
		}
	})
}

// TestFrameReaderSkip drops part of a masked frame and reads the rest
// unmasked from the right place, for every split.
func TestFrameReaderSkip(t *testing.T) {
	payload := []byte("0123456789abcdefghij")
	frame := wstest.Frame{Fin: true, Op: BinaryMessage, Payload: payload}.Encode(true)
	for skip := range len(payload) + 1 {
		fc := &fuzzConn{r: bytes.NewReader(frame)}
		f := newConn(fc, true, fc, "", 0).Frames()
		if _, err := f.Next(); err != nil {
			t.Fatal(err)
		}
		if err := f.Skip(uint64(skip)); err != nil {
			t.Fatal(err)
		}
		rest := make([]byte, f.Remaining())
		if err := f.ReadPayload(rest); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rest, payload[skip:]) {
			t.Fatalf("skip %d: read %q, want %q", skip, rest, payload[skip:])
		}
	}
}

// cutConn delivers its chunks one Read at a time with a read deadline
// passing between two, as a read cut by interrupts sees the connection.
type cutConn struct {
	fuzzConn
	chunks [][]byte
	cut    bool
}

func (c *cutConn) Read(p []byte) (int, error) {
	if c.cut {
		c.cut = false
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks, c.cut = c.chunks[1:], true
	}
	return n, nil
}

// TestFrameReaderResumesAfterDeadline cuts every step of FrameReader's
// reading with a deadline — a control frame's header and payload, a data
// frame's header, Read and Skip in a payload — and retries it: nothing is
// lost or read twice, the ping is answered once, and while a control frame
// is cut there is no data payload to read.
func TestFrameReaderResumesAfterDeadline(t *testing.T) {
	var in []byte
	for _, f := range []wstest.Frame{
		{Fin: true, Op: PingMessage, Payload: []byte("ping!")},
		{Fin: true, Op: BinaryMessage, Payload: []byte("0123456789")},
		{Fin: true, Op: BinaryMessage, Payload: []byte("skipped")},
		{Fin: true, Op: TextMessage, Payload: []byte("end")},
	} {
		in = append(in, f.Encode(false)...)
	}
	// Cuts after the ping's first byte and 2 bytes into its payload, in
	// the first data frame's header and 3 bytes into its payload, 2 bytes
	// into the skipped payload.
	fc := &cutConn{}
	prev := 0
	for _, at := range []int{1, 4, 8, 12, 25, len(in)} {
		fc.chunks = append(fc.chunks, in[prev:at])
		prev = at
	}
	f := newConn(fc, false, fc, "", 0).Frames()
	retry := func(what string, step func() error) {
		t.Helper()
		for tries := 0; ; tries++ {
			err := step()
			if err == nil {
				return
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) || tries > 3 {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	next := func(want int) {
		t.Helper()
		retry("next", func() error {
			h, err := f.Next()
			if err != nil && f.Remaining() != 0 {
				t.Fatalf("Next cut by a deadline: %d payload bytes to read", f.Remaining())
			}
			if err == nil && h.Op != want {
				t.Fatalf("frame of opcode %d, want %d", h.Op, want)
			}
			return err
		})
	}
	next(BinaryMessage)
	var got []byte
	retry("read", func() error {
		for f.Remaining() > 0 {
			n := len(got)
			got = slices.Grow(got, int(f.Remaining())+wsframe.MaxHeader)
			k, err := f.Read(got[n : n+int(f.Remaining())+wsframe.MaxHeader])
			got = got[:n+k]
			if err != nil && err != io.EOF {
				return err
			}
		}
		return nil
	})
	if string(got) != "0123456789" {
		t.Fatalf("payload read across a deadline: %q", got)
	}
	next(BinaryMessage)
	retry("skip", func() error { return f.Skip(f.Remaining()) })
	next(TextMessage)
	end := make([]byte, f.Remaining())
	if err := f.ReadPayload(end); err != nil || string(end) != "end" {
		t.Fatalf("after the skipped frame: %q, %v", end, err)
	}
	out := fc.out.Bytes()
	h, err := wsframe.ParseHeader(out[:min(len(out), 6)])
	if err != nil || h.Op != PongMessage || len(out) != 6+int(h.Len) {
		t.Fatalf("replies %x, want one pong", out)
	}
	if wsframe.Mask(h.Key, 0, out[6:]); string(out[6:]) != "ping!" {
		t.Fatalf("pong %q, want %q", out[6:], "ping!")
	}
}
