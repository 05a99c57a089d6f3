package sluice

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/ws/wsframe"
)

// The control reader reassembles a message in many small fragments with
// amortised growth: a 4 MiB message in 4 KiB fragments allocates a small
// multiple of its size, not a copy per fragment.
func TestCtlReaderFragmentsLinear(t *testing.T) {
	r, server := ctlPair(t, time.Minute)
	r.arm(time.Now())
	msg := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	var in []byte
	for off := 0; off < len(msg); off += 4096 {
		op := wsframe.OpContinuation
		if off == 0 {
			op = wsframe.OpText
		}
		in = append(in, frameBytes(off+4096 >= len(msg), op, string(msg[off:min(off+4096, len(msg))]))...)
	}
	go server.Write(in)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	data, err := r.next()
	runtime.ReadMemStats(&after)
	if err != nil || !bytes.Equal(data, msg) {
		t.Fatalf("%d bytes, %v", len(data), err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 8*uint64(len(msg)) {
		t.Fatalf("reassembling %d bytes in 4 KiB fragments allocated %d bytes", len(msg), n)
	}
}
