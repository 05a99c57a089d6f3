package interop

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// TestChannelMemoryStalledReader: a Go writer pushes 1 GiB through the
// built engine (a process of its own, not race-instrumented) to a Go reader
// that is connected but does not read at first. The writer must stall, and
// the engine's resident memory must stay bounded all along: before, while
// stalled, while the 1 GiB flows, and after. Every frame carries its
// sequence number, so a lost, duplicated or reordered frame fails the test.
//
// SLUICE_MEMORY_MIB sets the size (default 1024).
func TestChannelMemoryStalledReader(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the engine's memory")
	}
	total := int64(1) << 30
	if v, err := strconv.Atoi(os.Getenv("SLUICE_MEMORY_MIB")); err == nil && v > 0 {
		total = int64(v) << 20
	}
	const (
		frame  = 64 << 10
		buffer = 64 // frames: the engine's default
		// Bound on the engine's RSS growth: the channel's buffer is 4 MiB;
		// the rest is headroom for the runtime, not for the 1 GiB.
		maxGrowth = 48 << 20
	)
	begin := time.Now()
	e := startEngine(t, "127.0.0.1:0")
	c := connectGo(t, e, "go-memory")
	ctx := ctxFor(t, 2*time.Minute)
	ch, err := c.CreateChannel(ctx, sluice.WithBufferSize(buffer))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Reader.Read(nil); err != nil { // connect, do not read
		t.Fatal(err)
	}
	before := engineMemory(t, e.pid())

	last, wrote := writeUntilStalled(ctx, t, ch.Writer, frame, total)
	stalled := engineMemory(t, e.pid())
	t.Logf("stalled after the writer got %d MiB into the sockets and the engine's %d-frame buffer", last>>20, buffer)

	buf := make([]byte, frame)
	peak := stalled
	var got int64
	for seq := int64(0); ; seq++ {
		n, err := io.ReadFull(ch.Reader, buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got, err)
		}
		if s := int64(binary.LittleEndian.Uint64(buf)); n != frame || s != seq {
			t.Fatalf("frame %d: %d bytes, sequence number %d", seq, n, s)
		}
		got += int64(n)
		if seq%1024 == 0 { // every 64 MiB
			m := engineMemory(t, e.pid())
			peak.rss = max(peak.rss, m.rss)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if got != total {
		t.Fatalf("read %d bytes, want %d", got, total)
	}
	after := engineMemory(t, e.pid())
	peak.rss = max(peak.rss, after.rss)
	t.Logf("engine RSS: before %d MiB, stalled %d MiB, peak while %d MiB flowed %d MiB, after %d MiB; high-water mark %d MiB (took %v)",
		before.rss>>20, stalled.rss>>20, total>>20, peak.rss>>20, after.rss>>20, after.hwm>>20, time.Since(begin).Round(time.Millisecond))
	if after.hwm > before.rss+maxGrowth {
		t.Errorf("the engine's RSS peaked at %d MiB, %d MiB over its %d MiB before the stream (bound %d MiB)",
			after.hwm>>20, (after.hwm-before.rss)>>20, before.rss>>20, maxGrowth>>20)
	}
}

// writeUntilStalled writes total bytes to w from a goroutine, in frames
// that start with their sequence number, and returns once the writer has
// made no progress for 300 ms: the bytes written so far, and the channel
// that gets the writer's final error. It fails the test if the writer
// finishes first (nobody is reading).
func writeUntilStalled(ctx context.Context, t *testing.T, w io.WriteCloser, frame, total int64) (int64, <-chan error) {
	t.Helper()
	var written atomic.Int64
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, frame)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		for seq := int64(0); seq*frame < total; seq++ {
			binary.LittleEndian.PutUint64(buf, uint64(seq))
			if _, err := w.Write(buf); err != nil {
				wrote <- err
				return
			}
			written.Add(frame)
		}
		wrote <- w.Close()
	}()
	last, since := int64(-1), time.Now()
	for time.Since(since) < 300*time.Millisecond {
		select {
		case err := <-wrote:
			t.Fatalf("the writer finished (%v) although nobody read", err)
		case <-ctx.Done():
			t.Fatal("the writer never stalled")
		case <-time.After(20 * time.Millisecond):
		}
		if n := written.Load(); n != last {
			last, since = n, time.Now()
		}
	}
	if last >= total {
		t.Fatalf("the writer wrote everything (%d bytes) with nobody reading", last)
	}
	return last, wrote
}

type procMemory struct{ rss, hwm int64 } // bytes

// engineMemory reads VmRSS and VmHWM (peak RSS) of process pid.
func engineMemory(t testing.TB, pid int) procMemory {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var m procMemory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &m.rss
		case "VmHWM":
			dst = &m.hwm
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("%s: %q", name, val)
		}
		*dst = kb << 10
	}
	if m.rss == 0 || m.hwm == 0 {
		t.Fatal(errors.New("no VmRSS/VmHWM in /proc/PID/status"))
	}
	return m
}
