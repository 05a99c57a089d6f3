package engine

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/internal/testtls"
	"github.com/sluicehq/sluice/wire"
)

// writeTestTLS writes a throwaway CA and server certificate: the engine's
// settings and a client config trusting the CA.
func writeTestTLS(t *testing.T) (TLSConfig, *tls.Config) {
	t.Helper()
	files, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return TLSConfig{CertFile: files.CertFile, KeyFile: files.KeyFile}, files.ClientConfig()
}

// Both listeners serve TLS: the worker protocol over wss:// (through the
// engine's own frame reader on a TLS connection), /healthz and HTTP
// triggers over https://; a plain-text client is refused.
func TestTLSListeners(t *testing.T) {
	cfg, ca := writeTestTLS(t)
	e := startEngine(t, func(c *Config) { c.TLS = cfg })
	if !strings.HasPrefix(e.WorkerURL(), "wss://") || !strings.HasPrefix(e.HTTPURL(), "https://") {
		t.Fatalf("URLs %s, %s", e.WorkerURL(), e.HTTPURL())
	}
	// The client offers h2; the engine must answer in HTTP/1.1 (WebSocket
	// upgrades and trigger streaming need it).
	tr := &http.Transport{TLSClientConfig: ca, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	host := strings.TrimPrefix(e.WorkerURL(), "wss://")
	res, err := hc.Get("https://" + host + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "ok\n" || res.TLS == nil || res.ProtoMajor != 1 {
		t.Fatalf("GET /healthz over https: %d %q (TLS %v)", res.StatusCode, body, res.TLS)
	}
	res, err = hc.Get(e.HTTPURL() + "/no-such-route")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET an unknown trigger route over https: %d, want 404", res.StatusCode)
	}
	// Plain HTTP to a TLS port: refused, not served.
	pres, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + host + "/healthz")
	if err == nil {
		pres.Body.Close()
		if pres.StatusCode == 200 {
			t.Fatal("the worker listener served /healthz over plain HTTP")
		}
	}

	d := websocket.Dialer{TLSClientConfig: ca, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial(e.WorkerURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Two frames in one TLS record: the reader must see both.
	call := `{"type":"invokefunction","invocation_id":"%s","function_id":"engine::functions::list","data":{}}`
	for _, id := range []string{"c1", "c2"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(strings.Replace(call, "%s", id, 1))); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"c1", "c2"} {
		var m wire.Message
		for m.Type != wire.TypeInvocationResult {
			_, b, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("reading the answer to %s over wss: %v", id, err)
			}
			if err := wire.Decode(b, &m); err != nil {
				t.Fatal(err)
			}
		}
		if m.InvocationID != id || m.Error != nil {
			t.Fatalf("answer %+v, want a result for %s", m, id)
		}
	}
}

// Unreadable or mismatched certificate files fail Start clearly; one file
// without the other fails validation.
func TestTLSBadFiles(t *testing.T) {
	good, _ := writeTestTLS(t)
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []TLSConfig{
		{CertFile: filepath.Join(t.TempDir(), "missing.pem"), KeyFile: good.KeyFile},
		{CertFile: bad, KeyFile: good.KeyFile},
		{CertFile: good.CertFile, KeyFile: bad},
	} {
		cfg := DefaultConfig()
		cfg.Addr, cfg.HTTPAddr, cfg.TLS = "127.0.0.1:0", "127.0.0.1:0", tc
		e, err := New(cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		err = e.Start(context.Background())
		if err == nil {
			_ = e.Shutdown(context.Background())
			t.Fatalf("Start with %+v succeeded", tc)
		}
		if !strings.Contains(err.Error(), "tls: loading") {
			t.Errorf("Start with %+v: %v", tc, err)
		}
	}
	cfg := DefaultConfig()
	cfg.TLS = TLSConfig{CertFile: good.CertFile}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "must be set together") {
		t.Errorf("Validate with a certificate and no key: %v", err)
	}
}
