package sluice

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// Tests for survivors of the mutation run over ctlreader.go
// (docs/testing.md, "Mutation testing"). Each names the mutants it kills
// (lines of the file the run was on); each was applied by hand and the
// test failed on it.

// ctlReader pushes the idle deadline out only once a quarter of it has
// passed since it last did. Kills ctlreader.go:55 and :96 (`> idle/4` →
// `>=`, → `<=`, `/` → `*`).
func TestCtlReaderRearmsAfterAQuarter(t *testing.T) {
	r, _ := ctlPair(t, time.Minute)
	t0 := time.Now()
	for _, step := range []struct {
		at, armed time.Time
	}{
		{t0, t0},                       // never armed: now
		{t0.Add(15 * time.Second), t0}, // a quarter exactly: not yet
		{t0.Add(15*time.Second + 1), t0.Add(15*time.Second + 1)}, // past it
	} {
		r.arm(step.at)
		if !r.armed.Equal(step.armed) {
			t.Fatalf("after arm(t0+%v) armed at t0+%v, want t0+%v",
				step.at.Sub(t0), r.armed.Sub(t0), step.armed.Sub(t0))
		}
	}
}

// ctlReader lets go of a message buffer over keepReadBuffer and keeps one
// up to it. Kills ctlreader.go:158 (`cap(r.msg) > keepReadBuffer` → `>=`,
// → `<=`).
func TestCtlReaderBufferKeptUpToLimit(t *testing.T) {
	r, server := ctlPair(t, time.Minute)
	r.arm(time.Now())
	// One frame whose payload and the next header fill exactly
	// keepReadBuffer: the buffer is grown to that (a whole number of pages).
	exact := strings.Repeat("e", keepReadBuffer-wsframe.MaxHeader)
	big := strings.Repeat("b", keepReadBuffer+1)
	var in []byte
	in = append(in, frameBytes(true, wsframe.OpBinary, exact)...)
	in = append(in, frameBytes(true, wsframe.OpBinary, big)...)
	in = append(in, frameBytes(true, wsframe.OpBinary, "small")...)
	go server.Write(in)
	for i, want := range []struct {
		n    int
		kept bool
	}{{len(exact), true}, {len(big), false}, {5, true}} {
		d, err := r.next()
		if err != nil || len(d) != want.n {
			t.Fatalf("message %d: %d bytes, %v", i, len(d), err)
		}
		if kept := r.msg != nil; kept != want.kept {
			t.Fatalf("message %d (%d bytes, buffer capacity %d): buffer kept %v, want %v", i, want.n, cap(d), kept, want.kept)
		}
	}
}

// A read interrupted in the middle of a control frame returns the deadline
// error, and the next read finishes the control frame and goes on to the
// next message. Written for mutants of ctlReader's own control-frame
// reading (the interrupted read looped on the error for ever, or returned
// an empty message instead of reading on); that reading is now
// ws.FrameReader's, inside Next, and the test also fails when ctlReader
// takes the rest of the cut control frame for a data payload (before
// FrameReader.Remaining counted 0 there: the read never returned).
func TestCtlReaderControlFrameInterrupted(t *testing.T) {
	pong := frameBytes(true, wsframe.OpPong, "0123456789")
	server, readNext := interruptMidFrame(t, tcpPair, pong)
	rest := append(pong[6:], frameBytes(true, wsframe.OpText, "after")...)
	if _, err := server.Write(rest); err != nil {
		t.Fatal(err)
	}
	if data, err := readNext(); err != nil || data != "after" {
		t.Fatalf("read after the control frame: %q, %v", data, err)
	}
}

// A message of exactly maxFrameSize bytes is read whole; the limit is on
// what is over it. Kills ctlreader.go:191 CONDITIONALS_BOUNDARY (`>` →
// `>=`: a message of exactly the limit was skipped as too large).
func TestCtlReaderMessageAtLimit(t *testing.T) {
	r, server := ctlPair(t, time.Minute)
	r.arm(time.Now())
	go func() {
		hdr := make([]byte, wsframe.MaxHeader)
		n := wsframe.PutHeader(hdr, true, wsframe.OpBinary, maxFrameSize, false, [4]byte{})
		chunk := []byte(strings.Repeat("x", 1<<20)) // the payload streamed, not held twice
		if _, err := server.Write(hdr[:n]); err != nil {
			return
		}
		for range maxFrameSize / len(chunk) {
			if _, err := server.Write(chunk); err != nil {
				return
			}
		}
		_, _ = server.Write(frameBytes(true, wsframe.OpText, "after"))
	}()
	d, err := r.next()
	if err != nil || len(d) != maxFrameSize {
		t.Fatalf("message of exactly %d bytes: %d bytes, %v", maxFrameSize, len(d), err)
	}
	if d, err := r.next(); err != nil || string(d) != "after" {
		t.Fatalf("next message: %.20q, %v", d, err)
	}
}

// An announced length costs nothing up front: a frame that announces
// 60 MiB and brings 100 bytes leaves the reader holding a buffer of the
// first growth step, not 60 MiB (on 29ec6a6 it allocated the announced
// length at the first byte).
func TestCtlReaderBufferFollowsBytes(t *testing.T) {
	r, server := ctlPair(t, 300*time.Millisecond)
	r.arm(time.Now())
	hdr := make([]byte, wsframe.MaxHeader)
	n := wsframe.PutHeader(hdr, true, wsframe.OpBinary, 60<<20, false, [4]byte{})
	if _, err := server.Write(append(hdr[:n], strings.Repeat("x", 100)...)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.next(); err == nil { // the idle deadline ends the wait
		t.Fatal("a message of 100 of 60 MiB announced was returned")
	}
	if len(r.msg) != 100 || cap(r.msg) > minReadGrow+wsframe.MaxHeader {
		t.Fatalf("after 100 bytes of a 60 MiB frame: %d bytes read into a buffer of %d", len(r.msg), cap(r.msg))
	}
}
