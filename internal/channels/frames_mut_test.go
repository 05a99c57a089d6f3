package channels

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// replies records the control frames a frameReader answers with.
type replies struct{ ops []int }

func (r *replies) reply(op int, _ []byte) error { r.ops = append(r.ops, op); return nil }

// TestFrameReaderNoLimit: a limit of 0 means none: a message of any size
// is read (kills frames.go:121 CONDITIONALS_BOUNDARY, `fr.limit > 0` →
// `>= 0`: every non-empty message was refused as too large).
func TestFrameReaderNoLimit(t *testing.T) {
	p := bytes.Repeat([]byte("z"), 3*bufCap)
	fr := newFrameReader(bytes.NewReader(maskedFrame(true, wsframe.OpBinary, p)), 0, (&replies{}).reply)
	defer fr.release()
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
	fr := newFrameReader(bytes.NewReader(maskedFrame(true, wsframe.OpBinary, p)), 1<<20, (&replies{}).reply)
	defer fr.release()
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
	fr := newFrameReader(bytes.NewReader(in), 1<<20, (&replies{}).reply)
	defer fr.release()
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

// TestFrameReaderEnds: a stream that ends between frames is io.EOF, one
// cut inside a header io.ErrUnexpectedEOF (kills frames.go:172
// CONDITIONALS_NEGATION: a clean end was reported as a cut).
func TestFrameReaderEnds(t *testing.T) {
	whole := maskedFrame(true, wsframe.OpBinary, []byte("x"))
	for _, tc := range []struct {
		in   []byte
		want error
	}{{whole, io.EOF}, {append(bytes.Clone(whole), 0x82), io.ErrUnexpectedEOF}} {
		fr := newFrameReader(bytes.NewReader(tc.in), 0, (&replies{}).reply)
		f, err := fr.next()
		f.Release()
		if err != nil {
			t.Fatal(err)
		}
		f, err = fr.next()
		f.Release()
		fr.release()
		if err != tc.want {
			t.Fatalf("end of %d bytes: %v, want %v", len(tc.in), err, tc.want)
		}
	}
}

// TestDrainUntilClose: drain skips data, answers pings on the way and
// stops at the peer's close, which it echoes (kills frames.go:190
// CONDITIONALS_NEGATION: it stopped at the first ping, before the close
// reply it waits for).
func TestDrainUntilClose(t *testing.T) {
	var in []byte
	in = append(in, maskedFrame(true, wsframe.OpBinary, []byte("skipped"))...)
	in = append(in, maskedFrame(true, wsframe.OpPing, []byte("p"))...)
	in = append(in, maskedFrame(false, wsframe.OpText, []byte("also"))...)
	in = append(in, maskedFrame(true, wsframe.OpContinuation, []byte("skipped"))...)
	in = append(in, maskedFrame(true, wsframe.OpClose, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))...)
	in = append(in, maskedFrame(true, wsframe.OpPing, []byte("after the close"))...)
	var r replies
	fr := newFrameReader(bytes.NewReader(in), 0, r.reply)
	defer fr.release()
	fr.drain()
	if len(r.ops) != 2 || r.ops[0] != websocket.PongMessage || r.ops[1] != websocket.CloseMessage {
		t.Fatalf("replies %v, want a pong and the close echo", r.ops)
	}
	if h, err := fr.header(); err != nil || h.Op != wsframe.OpPing { // what follows the close is left
		t.Fatalf("after drain: %+v %v, want the ping after the close", h, err)
	}
}

// TestFrameWriterKeepsNoBigBuffer: on a connection that is not TCP, small
// frames are copied through the writer's own buffer and a big frame through
// a buffer of its own that goes back at once: what the writer keeps stays
// small (kills frames.go:274 ARITHMETIC_BASE and CONDITIONALS_NEGATION: a
// big frame grew the kept buffer to its size, for the socket's lifetime).
func TestFrameWriterKeepsNoBigBuffer(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _, _ = io.Copy(io.Discard, b) }()
	fw := newFrameWriter(a)
	for _, n := range []int{100, 2 * bufCap, 100} {
		if err := fw.write(false, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	if c := cap(fw.buf); c == 0 || c >= bufCap {
		t.Fatalf("the writer keeps a buffer of %d bytes, want one for the small frames only", c)
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
		fr := newFrameReader(bytes.NewReader(in), limit, (&replies{}).reply)
		f, err := fr.next()
		if err != nil || !bytes.Equal(f.Data, p) {
			t.Fatalf("%d bytes, %v", len(f.Data), err)
		}
		f.Release()
		fr.release()
	}
	fr := newFrameReader(bytes.NewReader(maskedFrame(true, wsframe.OpBinary, append(p, 'x'))), limit, (&replies{}).reply)
	defer fr.release()
	f, err := fr.next()
	f.Release()
	if !errors.Is(err, wsconn.ErrFrameTooLarge) {
		t.Fatalf("limit+1: %v", err)
	}
}
