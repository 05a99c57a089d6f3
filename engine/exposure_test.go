package engine

import (
	"net"
	"strings"
	"testing"
)

// startLogged starts an engine with its worker listener on addr and its
// log kept for the test to read.
func startLogged(t *testing.T, addr string, mutate ...func(*Config)) (*Engine, *logCapture) {
	t.Helper()
	return startEngineLogged(t, append([]func(*Config){func(c *Config) { c.Addr = addr }}, mutate...)...)
}

// Binding the worker listener beyond loopback without authentication logs
// a warning at startup; loopback does not.
func TestWarnExposedAtStart(t *testing.T) {
	for _, tc := range []struct {
		addr string
		warn bool
	}{
		{"0.0.0.0:0", true},
		{"127.0.0.1:0", false},
		{"localhost:0", false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			_, buf := startLogged(t, tc.addr)
			log := buf.String()
			if !strings.Contains(log, `msg="engine started"`) {
				t.Fatalf("no start line in %q", log)
			}
			warned := strings.Contains(log, "level=WARN msg=\"SECURITY: the worker listener is reachable from other machines and workers need no authentication")
			if warned != tc.warn {
				t.Errorf("addr %s: warned = %v, want %v; log:\n%s", tc.addr, warned, tc.warn, log)
			}
			if warned && !strings.Contains(log, "tls=false") {
				t.Errorf("the warning does not say the listener has no TLS: %s", log)
			}
		})
	}
}

// With authentication, an exposed listener without TLS still warns that
// credentials travel in clear text; with TLS it does not warn.
func TestWarnExposedWithAuth(t *testing.T) {
	e, buf := startLogged(t, "0.0.0.0:0")
	buf.Reset()
	e.warnExposed(true)
	if log := buf.String(); !strings.Contains(log, "without TLS") || strings.Contains(log, "need no authentication") {
		t.Errorf("auth without TLS: log %q, want only the clear-text warning", log)
	}

	files, _ := writeTestTLS(t)
	e, buf = startLogged(t, "0.0.0.0:0", func(c *Config) { c.TLS = files })
	buf.Reset()
	e.warnExposed(true)
	if log := buf.String(); strings.Contains(log, "level=WARN") {
		t.Errorf("auth with TLS: logged %q, want no warning", log)
	}
}

func TestExposedAddr(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, false},
		{&net.TCPAddr{IP: net.IPv4(127, 1, 2, 3)}, false},
		{&net.TCPAddr{IP: net.IPv6loopback}, false},
		{&net.TCPAddr{IP: net.IPv4zero}, true},
		{&net.TCPAddr{IP: net.IPv6unspecified}, true},
		{&net.TCPAddr{IP: net.IPv4(192, 168, 1, 10)}, true},
		{&net.UnixAddr{Name: "/tmp/x", Net: "unix"}, true},
	} {
		if got := exposed(tc.addr); got != tc.want {
			t.Errorf("exposed(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
