package main

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunServeListenerFailureIsAnError: a listener that fails while the
// engine runs ends serve with an error (so sluice exits 1 and a supervisor
// restarts it), not with Shutdown's nil (exit 0, as if stopped on purpose),
// whichever listener it is: the worker port, the console (/metrics,
// /healthz) or the stream clients' (on 1e7a4ea those two failed silently
// and the engine ran on without them). The listener is made to fail as the
// kernel can make it: its socket is shut down under it, and accept then
// fails for good (EINVAL).
func TestRunServeListenerFailureIsAnError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		record string // the log record that names the listener's address
		field  string
	}{
		{"worker", "engine started", "worker_url"},
		{"console", "engine started", "console_url"},
		{"streams", "stream clients served", "addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sink := &logSink{records: make(chan []byte, 64)}
			env := map[string]string{"SLUICE_ADDR": "127.0.0.1:0", "SLUICE_HTTP_ADDR": "127.0.0.1:0", "SLUICE_LOG_FORMAT": "json",
				"SLUICE_CONSOLE_ADDR": "127.0.0.1:0", "SLUICE_STREAMS_ADDR": "127.0.0.1:0"}
			runErr := make(chan error, 1)
			go func() { runErr <- run(ctx, []string{"serve"}, envFunc(env), sink, sink) }()

			rec := sink.waitFor(t, tc.record, runErr)
			at, _ := rec[tc.field].(string)
			if _, rest, ok := strings.Cut(at, "://"); ok {
				at = rest
			}
			addr, err := net.ResolveTCPAddr("tcp", at)
			if err != nil {
				t.Fatalf("%q has %s %q: %v", tc.record, tc.field, rec[tc.field], err)
			}
			shutdownListener(t, addr)

			select {
			case err := <-runErr:
				if err == nil || !strings.Contains(err.Error(), "listener failed") || !errors.Is(err, syscall.EINVAL) {
					t.Fatalf("run = %v, want the listener's error; log:\n%s", err, sink.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("run did not return after its listener failed; log:\n%s", sink.String())
			}
			if !strings.Contains(sink.String(), `"msg":"listener failed"`) {
				t.Errorf("no listener failed record in the log:\n%s", sink.String())
			}
		})
	}
}

// shutdownListener shuts down this process's listening socket at addr
// (found among its file descriptors), as a failing network stack would.
func shutdownListener(t *testing.T, addr *net.TCPAddr) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, ent := range ents {
		fd, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if on, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || on == 0 {
			continue
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			continue
		}
		if in4, ok := sa.(*syscall.SockaddrInet4); !ok || in4.Port != addr.Port || !net.IP(in4.Addr[:]).Equal(addr.IP) {
			continue
		}
		if err := syscall.Shutdown(fd, syscall.SHUT_RDWR); err != nil {
			t.Fatalf("shutdown of the listener at %v: %v", addr, err)
		}
		return
	}
	t.Fatalf("no listening socket at %v", addr)
}
