package channels

// Benchmarks of the channel data path over loopback. One op is one 64 KiB
// frame, so the MB/s column is the payload throughput. Run with e.g.
//
//	go test -run '^$' -bench 'ChannelThroughput|RawTCPRelay|Channels100' -benchtime 16384x ./internal/channels/

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

const benchFrame = wire.FrameSize

// BenchmarkChannelThroughput: writer → Hub → reader, one channel, 64 KiB
// frames, then the same bytes through the two raw TCP relays (see
// rawRelay), measured right after in the same run so that both see the same
// machine load: x-relay is hub throughput ÷ io.Copy relay throughput,
// x-copyrelay the same against the read/write relay.
//
//   - sdk: the Go SDK's ChannelWriter (Write of 64 KiB) and ChannelReader
//     (Read into a 64 KiB buffer): what a Go user gets.
//   - gorilla: both clients use stock gorilla (WriteMessage, NextReader into
//     a reused buffer).
//   - prebuilt: the clients do the handshake with gorilla, then write
//     ready-made frames to the TCP connection and drain the reader's bytes
//     (no masking, no parsing); they allocate nothing, so hub-allocs/frame
//     is the hub's own cost. An upper bound for any client.
//
// allocs/frame counts the whole process (clients included) except for
// prebuilt.
func BenchmarkChannelThroughput(b *testing.B) {
	b.Run("sdk", func(b *testing.B) { benchChannel(b, "sdk") })
	b.Run("gorilla", func(b *testing.B) { benchChannel(b, "gorilla") })
	b.Run("prebuilt", func(b *testing.B) { benchChannel(b, "prebuilt") })
}

func benchChannel(b *testing.B, clients string) {
	th := newTestHub(b, Config{})
	res, err := th.Create(0)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, benchFrame)
	for i := range payload {
		payload[i] = byte(i)
	}
	n := b.N
	var (
		write func() error // writes the n frames
		read  func() error // reads the n frames
	)
	switch clients {
	case "sdk":
		sw := sluice.NewChannelWriter(th.base, res.Writer)
		sr := sluice.NewChannelReader(th.base, res.Reader)
		b.Cleanup(func() { sw.Close(); sr.Close() })
		if _, err := sr.Read(nil); err != nil { // connect
			b.Fatal(err)
		}
		if _, err := sw.Write(nil); err != nil {
			b.Fatal(err)
		}
		write = func() error {
			for range n {
				if _, err := sw.Write(payload); err != nil {
					return err
				}
			}
			return nil
		}
		read = func() error {
			buf := make([]byte, benchFrame)
			for want := int64(n) * benchFrame; want > 0; {
				k, err := sr.Read(buf)
				if err != nil {
					return err
				}
				want -= int64(k)
			}
			return nil
		}
	case "gorilla":
		r := th.dial(b, res.Reader, wire.DirRead)
		w := th.dial(b, res.Writer, wire.DirWrite)
		write = func() error {
			for range n {
				if err := w.WriteMessage(websocket.BinaryMessage, payload); err != nil {
					return err
				}
			}
			return nil
		}
		read = func() error {
			buf := make([]byte, benchFrame)
			for range n {
				_, rd, err := r.NextReader()
				if err != nil {
					return err
				}
				if k, err := io.ReadFull(rd, buf); k != benchFrame || err != nil {
					return fmt.Errorf("frame of %d bytes: %v", k, err)
				}
			}
			return nil
		}
	case "prebuilt":
		r := th.dial(b, res.Reader, wire.DirRead)
		w := th.dial(b, res.Writer, wire.DirWrite)
		frame := clientFrame(payload)
		write = func() error {
			conn := w.NetConn()
			for range n {
				if _, err := conn.Write(frame); err != nil {
					return err
				}
			}
			return nil
		}
		read = func() error {
			// Server frames of 64 KiB carry a 10-byte header.
			want := int64(n) * (benchFrame + 10)
			return drainConn(r.NetConn(), want)
		}
	}
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	cpu0 := cpuTime()
	werr := make(chan error, 1)
	go func() { werr <- write() }()
	if err := read(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	hubCPU := cpuTime() - cpu0
	runtime.ReadMemStats(&after)
	if err := <-werr; err != nil {
		b.Fatal(err)
	}
	name := "allocs/frame"
	if clients == "prebuilt" {
		name = "hub-allocs/frame"
	}
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), name)
	if os.Getenv("SLUICE_BENCH_RELAY") == "0" { // profiling the hub alone
		return
	}
	hub := b.Elapsed()
	relay, relayCPU := rawRelay(b, n, false)
	copyRelay, copyRelayCPU := rawRelay(b, n, true)
	b.ReportMetric(float64(n)*benchFrame/relay.Seconds()/1e6, "relay-MB/s")
	b.ReportMetric(relay.Seconds()/hub.Seconds(), "x-relay")
	b.ReportMetric(copyRelay.Seconds()/hub.Seconds(), "x-copyrelay")
	if hubCPU > 0 {
		// CPU time of the whole process (clients, hub or relay) per frame,
		// and the relays' CPU cost ÷ the hub's: steadier than the wall
		// clock on a shared machine, and the wall clock's ratio at -cpu 1
		// on an idle one.
		b.ReportMetric(float64(hubCPU.Microseconds())/float64(n), "cpu-µs/frame")
		b.ReportMetric(relayCPU.Seconds()/hubCPU.Seconds(), "x-relay-cpu")
		b.ReportMetric(copyRelayCPU.Seconds()/hubCPU.Seconds(), "x-copyrelay-cpu")
	}
}

// drainConn reads and discards want bytes from c, 64 KiB at a time.
func drainConn(c net.Conn, want int64) error {
	buf := make([]byte, benchFrame)
	for got := int64(0); got < want; {
		k, err := c.Read(buf[:min(int64(len(buf)), want-got)])
		if err != nil {
			return err
		}
		got += int64(k)
	}
	return nil
}

// clientFrame encodes payload as one final binary frame from a client,
// masked as a real client would.
func clientFrame(payload []byte) []byte {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	f := []byte{0x82, 0x80 | 127}
	f = binary.BigEndian.AppendUint64(f, uint64(len(payload)))
	f = append(f, key[:]...)
	start := len(f)
	f = append(f, payload...)
	mask(key, f[start:])
	return f
}

// BenchmarkRawTCPRelay is the floor to compare with: the same bytes through
// a relay that io.Copies one TCP connection into another (copy: through a
// 64 KiB buffer instead).
func BenchmarkRawTCPRelay(b *testing.B) {
	for _, copying := range []bool{false, true} {
		name := "iocopy"
		if copying {
			name = "copy"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(benchFrame)
			b.ReportAllocs()
			b.ResetTimer()
			_, cpu := rawRelay(b, b.N, copying)
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/frame")
		})
	}
}

// rawRelay moves n 64 KiB chunks writer → relay → reader over loopback TCP,
// each on its own goroutine, and returns how long that took. The writer
// writes 64 KiB at a time and the reader reads 64 KiB at a time, like the
// channel clients. The relay is io.Copy(out, in), which on Linux splices
// from one socket to the other without the bytes entering user space; with
// copying it reads into a 64 KiB buffer and writes that out, which is what
// any relay that looks at the bytes (like the engine, which must unmask
// them) at least does. It also returns the CPU time the process used.
func rawRelay(b *testing.B, n int, copying bool) (time.Duration, time.Duration) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	relayed := make(chan error, 1)
	go func() {
		in, err := ln.Accept()
		if err != nil {
			relayed <- err
			return
		}
		defer in.Close()
		out, err := ln.Accept()
		if err != nil {
			relayed <- err
			return
		}
		defer out.Close()
		if copying {
			// Hide ReaderFrom/WriterTo: a plain read/write loop.
			_, err = io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, benchFrame))
		} else {
			_, err = io.Copy(out, in)
		}
		relayed <- err
	}()
	w, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	r, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	payload := make([]byte, benchFrame)
	start, cpu0 := time.Now(), cpuTime()
	go func() {
		for range n {
			if _, err := w.Write(payload); err != nil {
				return
			}
		}
		w.Close()
	}()
	if err := drainConn(r, int64(n)*benchFrame); err != nil {
		b.Fatal(err)
	}
	took, cpu := time.Since(start), cpuTime()-cpu0
	if err := <-relayed; err != nil {
		b.Fatal(err)
	}
	return took, cpu
}

// BenchmarkChannels100 runs 100 channels at once with the Go SDK's ends
// (64 KiB writes and reads). The MB/s column is the aggregate; slowest-share
// is the slowest channel's throughput divided by the mean (1 = perfectly
// fair).
func BenchmarkChannels100(b *testing.B) {
	const channels = 100
	perChan := max(1, b.N/channels)
	th := newTestHub(b, Config{})
	type pair struct {
		w *sluice.ChannelWriter
		r *sluice.ChannelReader
	}
	pairs := make([]pair, channels)
	for i := range pairs {
		res, err := th.Create(0)
		if err != nil {
			b.Fatal(err)
		}
		p := pair{sluice.NewChannelWriter(th.base, res.Writer), sluice.NewChannelReader(th.base, res.Reader)}
		b.Cleanup(func() { p.w.Close(); p.r.Close() })
		if _, err := p.r.Read(nil); err != nil {
			b.Fatal(err)
		}
		if _, err := p.w.Write(nil); err != nil {
			b.Fatal(err)
		}
		pairs[i] = p
	}
	payload := make([]byte, benchFrame)
	b.SetBytes(benchFrame * int64(channels*perChan) / int64(b.N))
	b.ReportAllocs()
	start := make(chan struct{})
	took := make([]time.Duration, channels)
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			for range perChan {
				if _, err := p.w.Write(payload); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, benchFrame)
			<-start
			t0 := time.Now()
			for want := int64(perChan) * benchFrame; want > 0; {
				k, err := p.r.Read(buf)
				if err != nil {
					b.Error(err)
					return
				}
				want -= int64(k)
			}
			took[i] = time.Since(t0)
		}()
	}
	b.ResetTimer()
	close(start)
	wg.Wait()
	b.StopTimer()
	var mean float64
	rates := make([]float64, channels)
	for i, d := range took {
		rates[i] = float64(perChan*benchFrame) / d.Seconds()
		mean += rates[i] / channels
	}
	b.ReportMetric(slices.Min(rates)/mean, "slowest-share")
}
