package channels

// Benchmarks of the channel data path over loopback. One op is one 64 KiB
// frame, so the MB/s column is the payload throughput. Run with e.g.
//
//	go test -run '^$' -bench 'ChannelThroughput|RawTCPRelay|Channels100' -benchtime 2000x ./internal/channels/

import (
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sluicehq/sluice/wire"
)

const benchFrame = wire.FrameSize

// BenchmarkChannelThroughput: writer → Hub → reader, one channel, then the
// same bytes through BenchmarkRawTCPRelay's relay (relay-MB/s; x-relay is
// hub throughput ÷ relay throughput, measured back to back).
//
//   - gorilla: both clients use gorilla (WriteMessage, NextReader into a
//     reused buffer); allocs/frame counts the whole process, clients included.
//   - prebuilt: the clients do the handshake with gorilla, then write
//     ready-made frames to the TCP connection and drain the reader's bytes;
//     they allocate nothing, so hub-allocs/frame is the hub's own cost.
func BenchmarkChannelThroughput(b *testing.B) {
	b.Run("gorilla", func(b *testing.B) { benchChannel(b, false) })
	b.Run("prebuilt", func(b *testing.B) { benchChannel(b, true) })
}

func benchChannel(b *testing.B, prebuilt bool) {
	th := newTestHub(b, Config{})
	res, err := th.Create(0)
	if err != nil {
		b.Fatal(err)
	}
	r := th.dial(b, res.Reader, wire.DirRead)
	w := th.dial(b, res.Writer, wire.DirWrite)
	payload := make([]byte, benchFrame)
	for i := range payload {
		payload[i] = byte(i)
	}
	n := b.N
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()

	werr := make(chan error, 1)
	go func() {
		if prebuilt {
			frame := clientFrame(payload)
			conn := w.NetConn()
			for range n {
				if _, err := conn.Write(frame); err != nil {
					werr <- err
					return
				}
			}
			werr <- nil
			return
		}
		for range n {
			if err := w.WriteMessage(websocket.BinaryMessage, payload); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	if prebuilt {
		// Server frames of 64 KiB carry a 10-byte header.
		want := int64(n) * (benchFrame + 10)
		buf := make([]byte, 256<<10)
		conn := r.NetConn()
		for got := int64(0); got < want; {
			k, err := conn.Read(buf[:min(int64(len(buf)), want-got)])
			if err != nil {
				b.Fatal(err)
			}
			got += int64(k)
		}
	} else {
		buf := make([]byte, benchFrame)
		for range n {
			_, rd, err := r.NextReader()
			if err != nil {
				b.Fatal(err)
			}
			if k, err := io.ReadFull(rd, buf); k != benchFrame || err != nil {
				b.Fatalf("frame of %d bytes: %v", k, err)
			}
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	if err := <-werr; err != nil {
		b.Fatal(err)
	}
	name := "allocs/frame"
	if prebuilt {
		name = "hub-allocs/frame"
	}
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), name)
	// The raw relay with the same bytes right after, so that both numbers
	// see the same machine load: x-relay is the hub's share of its speed.
	hub := b.Elapsed()
	relay := rawRelay(b, n)
	b.ReportMetric(float64(n)*benchFrame/relay.Seconds()/1e6, "relay-MB/s")
	b.ReportMetric(relay.Seconds()/hub.Seconds(), "x-relay")
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
// a relay that io.Copies one TCP connection into another.
func BenchmarkRawTCPRelay(b *testing.B) {
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	b.ResetTimer()
	rawRelay(b, b.N)
}

// rawRelay moves n 64 KiB chunks writer → relay → reader and returns how
// long that took.
func rawRelay(b *testing.B, n int) time.Duration {
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
		_, err = io.Copy(out, in)
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
	start := time.Now()
	go func() {
		for range n {
			if _, err := w.Write(payload); err != nil {
				return
			}
		}
		w.Close()
	}()
	buf := make([]byte, 256<<10)
	want := int64(n) * benchFrame
	for got := int64(0); got < want; {
		k, err := r.Read(buf[:min(int64(len(buf)), want-got)])
		if err != nil {
			b.Fatal(err)
		}
		got += int64(k)
	}
	took := time.Since(start)
	if err := <-relayed; err != nil {
		b.Fatal(err)
	}
	return took
}

// BenchmarkChannels100 runs 100 channels at once with gorilla clients. The
// MB/s column is the aggregate; slowest-share is the slowest channel's
// throughput divided by the mean (1 = perfectly fair).
func BenchmarkChannels100(b *testing.B) {
	const channels = 100
	perChan := max(1, b.N/channels)
	th := newTestHub(b, Config{})
	type pair struct{ w, r *websocket.Conn }
	pairs := make([]pair, channels)
	for i := range pairs {
		res, err := th.Create(0)
		if err != nil {
			b.Fatal(err)
		}
		pairs[i] = pair{th.dial(b, res.Writer, wire.DirWrite), th.dial(b, res.Reader, wire.DirRead)}
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
				if err := p.w.WriteMessage(websocket.BinaryMessage, payload); err != nil {
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
			for range perChan {
				_, rd, err := p.r.NextReader()
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(rd, buf); err != nil {
					b.Error(err)
					return
				}
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
