package interop

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// clusterChannelBig is the size of the Go SDK's cross-node transfers (the
// issue's 256 MiB), clusterChannelSize that of the Node SDK's.
const (
	clusterChannelBig  = 256 << 20
	clusterChannelSize = 64 << 20
)

// TestClusterChannels: three engine processes with embedded NATS; a
// channel created on one node is used by ends connected to other nodes
// (each SDK connects to its own node's /ws/channels/...).
//
//   - SameNode: both ends on the channel's node (the local path with
//     cluster ids; the throughput baseline);
//   - GoWriterOnAReaderOnB / GoWriterOnBReaderOnA: 256 MiB of random bytes
//     with 8 text messages, SHA-256 checked; the messages arrive at their
//     exact byte offsets, in order; the stream ends cleanly (1000);
//   - NodeWriterOnB / NodeReaderOnB: the official Node SDK 0.22.1 (a worker
//     on node 1, called across nodes) writes 64 MiB to a Go reader on node
//     0, and reads 64 MiB from a Go writer on node 0;
//   - StalledReaderOnB: a reader on node 1 that does not read: the writer
//     on node 0 stalls, and neither engine's resident memory grows with the
//     128 MiB that then flow;
//   - NodeWriterKilled: the Node worker writing from node 1 is SIGKILLed:
//     the Go reader on node 0 fails (1011), never a clean end;
//   - NodeKilled: node 2 is SIGKILLed while it holds a channel (home and
//     writer, reader on node 1) and the writer of another (home node 0,
//     reader on node 0): both readers fail (1011) within the node timeout.
//
// On 04c1a7a (before the bridge) the reader connecting on node 1 was
// refused (404: node 1 did not know node 0's channels) and the writer on
// node 0 blocked until the channel expired.
// With the bridge's credit disabled (a 1 TiB window), StalledReaderOnB
// failed: the writer on node 0 wrote all 128 MiB with nobody reading (NATS
// and the receiving node buffered it).
func TestClusterChannels(t *testing.T) {
	const nodeTimeout = 2 * time.Second
	nodes := startClusterEngines(t, 3, "--cluster-node-timeout", nodeTimeout.String())
	ctx := ctxFor(t, 4*time.Minute)
	c0 := connectGo(t, nodes[0], "chan-client-0")

	transfer := func(t *testing.T, writer *sluice.ChannelWriter, reader *sluice.ChannelReader) {
		begin := time.Now()
		sentc := make(chan streamReport, 1)
		werr := make(chan error, 1)
		go func() {
			rep, err := goWrite(writer, clusterChannelBig)
			sentc <- rep
			werr <- err
		}()
		stop := abortWhen(ctx, nil, func() { _ = reader.Close() })
		got, rerr := goRead(reader)
		stop()
		if rerr != nil {
			_ = writer.CloseWithError(errors.New("test: the reader failed")) // unblock the writer
			t.Fatalf("reader: %v after %d bytes (writer: %v)", rerr, got.Bytes, <-werr)
		}
		if err := <-werr; err != nil {
			t.Fatalf("writer: %v", err)
		}
		checkReports(t, "cross-node", <-sentc, got, clusterChannelBig, true)
		el := time.Since(begin)
		t.Logf("%d MiB across nodes in %v (%.0f MiB/s)", clusterChannelBig>>20, el.Round(time.Millisecond), float64(clusterChannelBig>>20)/el.Seconds())
	}

	// First, while the engines' memory high-water marks are those of their
	// start.
	t.Run("StalledReaderOnB", func(t *testing.T) { clusterStalledReader(t, ctx, c0, nodes) })
	// Both ends on the channel's node, in cluster mode (ids naming the
	// node take the local path): the same-run baseline of the throughput.
	t.Run("SameNode", func(t *testing.T) {
		ch, err := c0.CreateChannel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		transfer(t, ch.Writer, ch.Reader)
	})
	t.Run("GoWriterOnAReaderOnB", func(t *testing.T) {
		ch, err := c0.CreateChannel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		transfer(t, ch.Writer, sluice.NewChannelReader(nodes[1].URL, ch.ReaderRef))
	})
	t.Run("GoWriterOnBReaderOnA", func(t *testing.T) {
		ch, err := c0.CreateChannel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		transfer(t, sluice.NewChannelWriter(nodes[1].URL, ch.WriterRef), ch.Reader)
	})

	node := flavourNamed("node-0.22.1")
	var nodeWorker *worker
	if _, err := node.dependency(); err == nil {
		nodeWorker = startWorker(t, node, nodes[1], node.script("stream"), "clch")
		waitFunctions(ctx, t, c0, "clch::stream_write", "clch::stream_read")
	}
	callStreamWrite := func(t *testing.T, ref sluice.ChannelRef, size int64) (<-chan struct{}, *callResult[streamReport]) {
		// Node 1 offers the worker's function to node 0 asynchronously:
		// retry while node 0 does not know of it.
		var r callResult[streamReport]
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				r.out, r.err = sluice.Call[streamReport](ctx, c0, "clch::stream_write",
					map[string]any{"writer": ref, "size": size, "messages": streamMessages})
				var se *sluice.Error
				if !errors.As(r.err, &se) || se.Code != "function_not_found" || ctx.Err() != nil {
					return
				}
			}
		}()
		return done, &r
	}
	t.Run("NodeWriterOnB", func(t *testing.T) {
		node.require(t)
		ch, err := c0.CreateChannel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done, r := callStreamWrite(t, ch.WriterRef, clusterChannelSize)
		stop := abortWhen(ctx, done, func() { _ = ch.Reader.Close() })
		got, rerr := goRead(ch.Reader)
		stop()
		<-done
		if r.err != nil {
			t.Fatalf("clch::stream_write on node 1: %v (Go reader: %d bytes, %v)", r.err, got.Bytes, rerr)
		}
		if rerr != nil {
			t.Fatalf("Go reader on node 0: %v after %d bytes", rerr, got.Bytes)
		}
		checkReports(t, "Node on node 1 -> Go on node 0", r.out, got, clusterChannelSize, true)
	})

	t.Run("NodeReaderOnB", func(t *testing.T) {
		node.require(t)
		ch, err := c0.CreateChannel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var r callResult[streamReport]
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.out, r.err = sluice.Call[streamReport](ctx, c0, "clch::stream_read", map[string]any{"reader": ch.ReaderRef})
		}()
		stop := abortWhen(ctx, done, func() { _ = ch.Writer.CloseWithError(errors.New("test: reader side finished early")) })
		sent, werr := goWrite(ch.Writer, clusterChannelSize)
		stop()
		<-done
		if r.err != nil {
			t.Fatalf("clch::stream_read on node 1: %v (Go writer on node 0: %v)", r.err, werr)
		}
		if werr != nil {
			t.Fatalf("Go writer on node 0: %v", werr)
		}
		checkReports(t, "Go on node 0 -> Node on node 1", sent, r.out, clusterChannelSize, true)
	})
	t.Run("NodeWriterKilled", func(t *testing.T) {
		node.require(t)
		ch, err := c0.CreateChannel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done, r := callStreamWrite(t, ch.WriterRef, 1<<40) // far more than is written before the kill
		stop := abortWhen(ctx, nil, func() { _ = ch.Reader.Close() })
		defer stop()
		n, rerr, killed := readUntilKilled(ch.Reader, 4<<20, nodeWorker.kill)
		if killed.IsZero() {
			t.Fatalf("the stream ended after %d bytes, before the writer was killed: %v", n, rerr)
		}
		t.Logf("Go reader on node 0 ended %v after the writer on node 1 was SIGKILLed, %d bytes read: %v", time.Since(killed).Round(time.Millisecond), n, rerr)
		checkBroken(t, rerr)
		<-done
		if r.err == nil {
			t.Errorf("stream_write returned a result after its worker was killed")
		}
	})

	t.Run("NodeKilled", func(t *testing.T) {
		c2 := connectGo(t, nodes[2], "chan-client-2")
		// Channel homed on node 2, written there, read on node 1.
		home2, err := c2.CreateChannel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Channel homed on node 0, written through node 2, read on node 0.
		home0, err := c0.CreateChannel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		writers := []*sluice.ChannelWriter{home2.Writer, sluice.NewChannelWriter(nodes[2].URL, home0.WriterRef)}
		readers := []*sluice.ChannelReader{sluice.NewChannelReader(nodes[1].URL, home2.ReaderRef), home0.Reader}
		for i, w := range writers {
			go func() {
				buf := make([]byte, 64<<10)
				for {
					if _, err := w.Write(buf); err != nil {
						return
					}
				}
			}()
			stop := abortWhen(ctx, nil, func() { _ = readers[i].Close() })
			defer stop()
		}
		// Node 2 dies once both streams flow: a writer that had not yet
		// connected through node 2 would leave its channel with no writer
		// to lose (its reader then waits for one until the channel's TTL).
		errs := make(chan error, len(readers))
		var killedAt atomic.Int64
		var flowing atomic.Int32
		for _, r := range readers {
			go func() {
				n, err, _ := readUntilKilled(r, 1<<20, func() {
					if flowing.Add(1) == int32(len(readers)) {
						nodes[2].kill()
						killedAt.Store(time.Now().UnixNano())
					}
				})
				_ = n
				errs <- err
			}()
		}
		for range readers {
			select {
			case err := <-errs:
				checkBroken(t, err)
			case <-ctx.Done():
				t.Fatal("a reader never ended after node 2 was killed")
			}
		}
		took := time.Since(time.Unix(0, killedAt.Load()))
		t.Logf("both readers failed within %v of the SIGKILL of node 2", took.Round(time.Millisecond))
		if took > 5*nodeTimeout {
			t.Errorf("the readers learned of node 2's death after %v (node timeout %v)", took, nodeTimeout)
		}
	})
}

// readUntilKilled reads r until it fails, calling kill once after limit
// bytes; it returns the bytes read, the error and when kill ran.
func readUntilKilled(r *sluice.ChannelReader, limit int64, kill func()) (int64, error, time.Time) {
	buf := make([]byte, 64<<10)
	var n int64
	var killed time.Time
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if killed.IsZero() && n >= limit {
			kill()
			killed = time.Now()
		}
		if err != nil {
			return n, err, killed
		}
	}
}

// checkBroken: a reader whose writer died must see a broken stream (1011),
// not a clean end, nor the test's own Close.
func checkBroken(t *testing.T, err error) {
	t.Helper()
	var ce *sluice.ChannelError
	switch {
	case errors.Is(err, io.EOF):
		t.Fatalf("the reader saw a clean end (io.EOF) after its writer died")
	case errors.Is(err, sluice.ErrChannelClosed):
		t.Fatalf("the reader did not end by itself (the test closed it): %v", err)
	case !errors.As(err, &ce) || ce.Code != 1011:
		t.Fatalf("reader error %v (%T), want close 1011", err, err)
	}
}

// clusterStalledReader: reader on node 1 connected, not reading; writer on
// node 0. The writer stalls; then 384 MiB flow; the resident memory of
// both engines stays bounded (as TestChannelMemoryStalledReader on one
// node).
func clusterStalledReader(t *testing.T, ctx context.Context, c0 *sluice.Client, nodes []*engineProc) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc to read the engines' memory")
	}
	const (
		frame = 64 << 10
		total = 384 << 20
		// Each engine: the channel's 4 MiB buffer (on both nodes) and the
		// 1 MiB bridge window; the rest is runtime headroom (the embedded
		// NATS server's buffers, and in a race-built engine their shadow
		// memory: 45-49 MiB of growth measured), not the stream: an engine
		// that buffered it would grow by about 384 MiB.
		maxGrowth = 96 << 20
	)
	ch, err := c0.CreateChannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reader := sluice.NewChannelReader(nodes[1].URL, ch.ReaderRef)
	if _, err := reader.Read(nil); err != nil { // connect, do not read
		t.Fatal(err)
	}
	defer reader.Close()
	before := []procMemory{engineMemory(t, nodes[0].pid()), engineMemory(t, nodes[1].pid())}
	last, wrote := writeUntilStalled(ctx, t, ch.Writer, frame, total)
	t.Logf("writer on node 0 stalled after %d MiB (reader on node 1 not reading)", last>>20)
	buf := make([]byte, frame)
	var got int64
	for seq := int64(0); ; seq++ {
		n, err := io.ReadFull(reader, buf)
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
	}
	if err := <-wrote; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if got != total {
		t.Fatalf("read %d bytes, want %d", got, total)
	}
	for i, b := range before {
		after := engineMemory(t, nodes[i].pid())
		t.Logf("node %d RSS: before %d MiB, after %d MiB, high-water mark %d MiB", i, b.rss>>20, after.rss>>20, after.hwm>>20)
		if after.hwm > b.rss+maxGrowth && after.hwm > b.hwm {
			t.Errorf("node %d's RSS peaked at %d MiB, %d MiB over its %d MiB before the stream (bound %d MiB)",
				i, after.hwm>>20, (after.hwm-b.rss)>>20, b.rss>>20, maxGrowth>>20)
		}
	}
}
