package interop

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkChannelProcess is the channel throughput benchmark with every
// hop in a process of its own, as in production: Go SDK writer → the built
// engine → Go SDK reader, against writer → relay process → reader over
// raw TCP, measured back to back. One op is one 64 KiB frame; run it with
// e.g. -benchtime 16384x (1 GiB). The relay is this test binary run as
// TestRelayProcessHelper: io.Copy (a splice on Linux: the bytes never
// enter the relay's memory), and a read/write loop through a 64 KiB buffer
// (x-copyrelay). cpu-µs/frame adds this process's CPU time and the engine's
// (or the relay's).
func BenchmarkChannelProcess(b *testing.B) {
	e := startEngine(b, "127.0.0.1:0")
	c := connectGo(b, e, "go-bench")
	relay := startRelay(b, false)
	copyRelay := startRelay(b, true)
	ctx := ctxFor(b, 10*time.Minute)
	ch, err := c.CreateChannel(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ch.Reader.Read(nil); err != nil { // connect both ends first
		b.Fatal(err)
	}
	if _, err := ch.Writer.Write(nil); err != nil {
		b.Fatal(err)
	}
	const frame = 64 << 10
	payload := make([]byte, frame)
	n := b.N
	b.SetBytes(frame)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := selfCPU() + procCPU(b, e.pid())
	wrote := make(chan error, 1)
	go func() {
		for range n {
			if _, err := ch.Writer.Write(payload); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	buf := make([]byte, frame)
	for want := int64(n) * frame; want > 0; {
		k, err := ch.Reader.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		want -= int64(k)
	}
	b.StopTimer()
	engineCPU := selfCPU() + procCPU(b, e.pid()) - cpu0
	if err := <-wrote; err != nil {
		b.Fatal(err)
	}
	took := b.Elapsed()
	relayTook, relayCPU := relay.run(b, n)
	copyTook, copyCPU := copyRelay.run(b, n)
	b.ReportMetric(float64(n)*frame/relayTook.Seconds()/1e6, "relay-MB/s")
	b.ReportMetric(relayTook.Seconds()/took.Seconds(), "x-relay")
	b.ReportMetric(copyTook.Seconds()/took.Seconds(), "x-copyrelay")
	b.ReportMetric(float64(engineCPU.Microseconds())/float64(n), "cpu-µs/frame")
	b.ReportMetric(relayCPU.Seconds()/engineCPU.Seconds(), "x-relay-cpu")
	b.ReportMetric(copyCPU.Seconds()/engineCPU.Seconds(), "x-copyrelay-cpu")
	_ = ch.Writer.Close()
	_, _ = io.Copy(io.Discard, ch.Reader)
}

// relayProc is a running TestRelayProcessHelper.
type relayProc struct {
	*proc
	addr string
}

func startRelay(b *testing.B, copying bool) *relayProc {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRelayProcessHelper$")
	cmd.Env = append(os.Environ(), "SLUICE_RELAY_HELPER=1", "SLUICE_RELAY_COPY="+strconv.FormatBool(copying))
	p := startProc(b, "relay", cmd)
	line, err := p.stdout.wait(ctxFor(b, startTimeout), func(s string) bool { return strings.HasPrefix(s, "RELAY ") })
	if err != nil {
		b.Fatalf("relay did not start: %v", p.exitNote(err))
	}
	return &relayProc{proc: p, addr: strings.TrimPrefix(line, "RELAY ")}
}

// run moves n 64 KiB chunks writer → relay → reader and returns the time
// it took and the CPU time of this process and the relay.
func (r *relayProc) run(b *testing.B, n int) (time.Duration, time.Duration) {
	w, err := net.Dial("tcp", r.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	rd, err := net.Dial("tcp", r.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	payload := make([]byte, 64<<10)
	buf := make([]byte, 64<<10)
	start, cpu0 := time.Now(), selfCPU()+procCPU(b, r.pid())
	go func() {
		for range n {
			if _, err := w.Write(payload); err != nil {
				return
			}
		}
	}()
	for want := int64(n) * int64(len(payload)); want > 0; {
		k, err := rd.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		want -= int64(k)
	}
	return time.Since(start), selfCPU() + procCPU(b, r.pid()) - cpu0
}

// TestRelayProcessHelper is the relay of BenchmarkChannelProcess when run
// with SLUICE_RELAY_HELPER=1 (skipped otherwise): it accepts connections in
// pairs, the first the writer, the second the reader, and copies writer →
// reader (SLUICE_RELAY_COPY=true: through a 64 KiB buffer) until killed.
func TestRelayProcessHelper(t *testing.T) {
	if os.Getenv("SLUICE_RELAY_HELPER") != "1" {
		t.Skip("the relay process of BenchmarkChannelProcess")
	}
	copying := os.Getenv("SLUICE_RELAY_COPY") == "true"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("RELAY " + ln.Addr().String())
	for {
		in, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		out, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer in.Close()
			defer out.Close()
			if copying {
				_, _ = io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, 64<<10))
			} else {
				_, _ = io.Copy(out, in)
			}
		}()
	}
}

// procCPU is the CPU time (user + system) process pid has used, from
// /proc (0 where there is none).
func procCPU(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime 14, stime 15, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration { return procCPU(nil, os.Getpid()) }
