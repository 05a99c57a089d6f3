package channels

import (
	"bytes"
	"context"
	"errors"
	"testing"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// TestFrameReaderNoLimit: a limit of 0 means none: a message of any size
// is read (kills frames.go:121 CONDITIONALS_BOUNDARY, `fr.limit > 0` →
// `>= 0`: every non-empty message was refused as too large).
func TestFrameReaderNoLimit(t *testing.T) {
	p := bytes.Repeat([]byte("z"), 3*bufCap)
	fr := newFrameReader(testConn(t, maskedFrame(true, wsframe.OpBinary, p)), 0)
	f, err := fr.next()
	defer f.Release()
	if err != nil || !bytes.Equal(f.Data, p) {
		t.Fatalf("%d bytes, %v", len(f.Data), err)
	}
}

// TestFrameFillingPooledBuffer: a message of exactly a pooled buffer's
// size stays in that buffer and is charged its capacity, once (kills
// frames.go:127 CONDITIONALS_BOUNDARY: charged twice the size; :136
// CONDITIONALS_BOUNDARY: moved to a big buffer of its own).
func TestFrameFillingPooledBuffer(t *testing.T) {
	g := newBudget(1 << 30)
	m := newChanMem(g, 1<<30)
	p := bytes.Repeat([]byte("q"), bufCap)
	fr := newFrameReader(testConn(t, maskedFrame(true, wsframe.OpBinary, p)), 1<<20)
	fr.mem = m
	f, err := fr.next()
	if err != nil || !bytes.Equal(f.Data, p) {
		t.Fatalf("%d bytes, %v", len(f.Data), err)
	}
	if f.cost != bufCap || m.used.Load() != bufCap || g.Used() != bufCap {
		t.Fatalf("charged %d (channel %d, hub %d), want %d", f.cost, m.used.Load(), g.Used(), bufCap)
	}
	if f.big || f.buf == nil {
		t.Fatalf("big %v pooled %v: the message left its pooled buffer", f.big, f.buf != nil)
	}
	f.Release()
	if m.used.Load() != 0 || g.Used() != 0 {
		t.Fatalf("after release: channel %d, hub %d", m.used.Load(), g.Used())
	}
}

// TestFragmentWithinChargeDoesNotWait: a fragment that fits in what its
// message is already charged reserves nothing more, so it does not wait
// while the hub's budget is overdrawn by others (kills frames.go:130
// CONDITIONALS_BOUNDARY, `> f.cost` → `>=`: a reservation of 0 bytes
// waited for budget; here, with the stop channel closed, the read failed
// with errStopped).
func TestFragmentWithinChargeDoesNotWait(t *testing.T) {
	g := newBudget(bufCap)
	other := newChanMem(g, 1<<30)
	if !other.reserve(bufCap, 0, nil, nil) { // a channel holding nothing may take one pooled frame
		t.Fatal("the other channel's frame was refused")
	}
	m := newChanMem(g, 1<<30)
	in := append(maskedFrame(false, wsframe.OpBinary, []byte("0123456789")), maskedFrame(true, wsframe.OpContinuation, []byte("abcdefghij"))...)
	fr := newFrameReader(testConn(t, in), 1<<20)
	stopped := make(chan struct{})
	close(stopped)
	fr.mem, fr.stop = m, stopped
	f, err := fr.next()
	defer f.Release()
	if err != nil || string(f.Data) != "0123456789abcdefghij" {
		t.Fatalf("%q %v", f.Data, err)
	}
	if f.cost != bufCap || g.Used() != 2*bufCap {
		t.Fatalf("charged %d, hub %d", f.cost, g.Used())
	}
}

// TestFrameReaderEnds: a stream that ends between frames or inside a
// header ends the reader with close 1006, which runWriter takes for a lost
// connection, not for the writer's close frame (kills serve.go's
// `ce.Code != websocket.CloseAbnormalClosure` negated or dropped: the
// reader was told the writer closed with "unexpected EOF").
func TestFrameReaderEnds(t *testing.T) {
	h := NewHub(Config{}, nil)
	defer h.Shutdown(context.Background())
	whole := maskedFrame(true, wsframe.OpBinary, []byte("x"))
	for _, in := range [][]byte{whole, append(bytes.Clone(whole), 0x82)} {
		c := testConn(t, in)
		fr := newFrameReader(c, 0)
		f, err := fr.next()
		f.Release()
		if err != nil {
			t.Fatal(err)
		}
		f, err = fr.next()
		f.Release()
		if !websocket.IsCloseError(err, websocket.CloseAbnormalClosure) {
			t.Fatalf("end of %d bytes: %v, want close 1006", len(in), err)
		}
		clean, abort, gotClose := h.writerEnded(&channel{id: "x"}, &sockEnd{ws: c}, err)
		if clean || gotClose || abort == nil || abort.Reason != "writer connection lost" {
			t.Fatalf("end of %d bytes: clean %v, close frame %v, abort %v; want the connection lost", len(in), clean, gotClose, abort)
		}
	}
}

// TestDrainUntilClose: drain skips data, answers pings on the way and
// stops at the peer's close, which it echoes, reading nothing after it
// (kills frames.go's drain stopping at the first frame, before the close
// reply it waits for, or discarding the bytes after a close frame).
func TestDrainUntilClose(t *testing.T) {
	var in []byte
	in = append(in, maskedFrame(true, wsframe.OpBinary, []byte("skipped"))...)
	in = append(in, maskedFrame(true, wsframe.OpPing, []byte("p"))...)
	in = append(in, maskedFrame(false, wsframe.OpText, []byte("also"))...)
	in = append(in, maskedFrame(true, wsframe.OpContinuation, []byte("skipped"))...)
	in = append(in, maskedFrame(true, wsframe.OpClose, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))...)
	in = append(in, maskedFrame(true, wsframe.OpPing, []byte("after the close"))...)
	in = append(in, maskedFrame(true, wsframe.OpBinary, make([]byte, 64<<10))...) // beyond ws.Conn's read buffer
	c, fc := serverConn(t, in)
	drain(c)
	pongs, code := written(t, fc)
	if len(pongs) != 1 || pongs[0] != "p" || code != websocket.CloseNormalClosure {
		t.Fatalf("pongs %q, close %d; want the pong of the ping before the close and the close echo", pongs, code)
	}
	if fc.r.Len() == 0 {
		t.Fatal("drain read on after the close frame")
	}
}

// TestDrainAfterProtocolError: after a protocol error, the hub's or one
// met while draining, drain processes no frame more (RFC 6455 §7.1.7)
// but discards what the writer still sends until it hangs up, so that
// the close frame is not lost to a reset (kills frames.go's drain
// returning at the protocol error with bytes left unread).
func TestDrainAfterProtocolError(t *testing.T) {
	junk := maskedFrame(true, wsframe.OpBinary, make([]byte, 64<<10)) // beyond ws.Conn's read buffer
	bad := rawFrame(0x82, false, []byte("unmasked"))
	for _, tc := range []struct {
		name  string
		in    []byte
		first bool // the protocol error is met before drain
	}{
		{"before", append(append(bytes.Clone(bad), maskedFrame(true, wsframe.OpPing, []byte("p"))...), junk...), true},
		{"during", append(append(maskedFrame(true, wsframe.OpBinary, []byte("x")), bad...), junk...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, fc := serverConn(t, tc.in)
			if tc.first {
				f, err := newFrameReader(c, 0).next()
				f.Release()
				if pe := (*websocket.ProtocolError)(nil); !errors.As(err, &pe) {
					t.Fatalf("next: %v, want a protocol error", err)
				}
			}
			drain(c)
			if n := fc.r.Len(); n != 0 {
				t.Fatalf("%d bytes left unread", n)
			}
			if pongs, code := written(t, fc); len(pongs) != 0 || code != websocket.CloseProtocolError {
				t.Fatalf("pongs %q, close %d; want close 1002 alone", pongs, code)
			}
		})
	}
}

// TestFrameReaderLimitExact: a message of exactly the limit is read, also
// in fragments; one byte more is refused before its payload is read (kills
// frames.go:121 CONDITIONALS_BOUNDARY at the sum: a message of exactly
// MaxFrameSize was refused).
func TestFrameReaderLimitExact(t *testing.T) {
	const limit = 1000
	p := bytes.Repeat([]byte("L"), limit)
	for _, in := range [][]byte{
		maskedFrame(true, wsframe.OpBinary, p),
		append(maskedFrame(false, wsframe.OpBinary, p[:600]), maskedFrame(true, wsframe.OpContinuation, p[600:])...),
	} {
		fr := newFrameReader(testConn(t, in), limit)
		f, err := fr.next()
		if err != nil || !bytes.Equal(f.Data, p) {
			t.Fatalf("%d bytes, %v", len(f.Data), err)
		}
		f.Release()
	}
	fr := newFrameReader(testConn(t, maskedFrame(true, wsframe.OpBinary, append(p, 'x'))), limit)
	f, err := fr.next()
	f.Release()
	if !errors.Is(err, wsconn.ErrFrameTooLarge) {
		t.Fatalf("limit+1: %v", err)
	}
}
