package ws

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testtls"
	"github.com/sluicehq/sluice/internal/ws/wstest"
)

// The RFC 6455 conformance suite (internal/ws/wstest) against this
// package's server (a raw client talks to an Upgrader) and client (a
// Dialer talks to a raw server), over ws:// and wss://.

// echoPeer is our side under test: it echoes data messages until the
// read fails, then hangs up.
func echoPeer(c *Conn) error {
	defer c.Close()
	c.SetReadLimit(wstest.Limit)
	for {
		op, rd, err := c.NextReader()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		if err := c.WriteMessage(op, b); err != nil {
			return err
		}
	}
}

// conformanceTLS is the TLS material of the wss:// runs.
var conformanceTLS = sync.OnceValues(func() (*tls.Config, *tls.Config) {
	dir, err := mkTempDir()
	if err != nil {
		panic(err)
	}
	f, err := testtls.Write(dir)
	if err != nil {
		panic(err)
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		panic(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, f.ClientConfig()
})

func schemes() []string { return []string{"ws", "wss"} }

// TestConformanceServer runs the suite against Upgrader's connections.
func TestConformanceServer(t *testing.T) {
	for _, scheme := range schemes() {
		t.Run(scheme, func(t *testing.T) { conformServer(t, scheme, echoPeer) })
	}
}

// TestConformanceClient runs the suite against Dialer's connections.
func TestConformanceClient(t *testing.T) {
	for _, scheme := range schemes() {
		t.Run(scheme, func(t *testing.T) { conformClient(t, scheme, false, echoPeer) })
	}
}

// conformServer runs the server side of the suite against peer on the
// connections an Upgrader makes, over scheme.
func conformServer(t *testing.T, scheme string, peer func(*Conn) error) {
	up := &Upgrader{}
	srv := startServer(scheme, func(w http.ResponseWriter, r *http.Request) {
		if c, err := up.Upgrade(w, r, nil); err == nil {
			_ = peer(c)
		}
	})
	defer srv.Close()
	_, cfg := conformanceTLS()
	wstest.RunServer(t, scheme, srv.Listener.Addr().String(), cfg, nil)
}

// startServer serves h over scheme (wss: with the suite's TLS material).
func startServer(scheme string, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	if scheme == "wss" {
		srv.TLS, _ = conformanceTLS()
		srv.StartTLS()
	} else {
		srv.Start()
	}
	return srv
}

// conformClient runs the client side of the suite against peer on the
// connections a Dialer makes, over scheme; together: the first frames come
// in the same write as the 101.
func conformClient(t *testing.T, scheme string, together bool, peer func(*Conn) error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := &Dialer{HandshakeTimeout: 5 * time.Second}
	if scheme == "wss" {
		srvCfg, cliCfg := conformanceTLS()
		ln = tls.NewListener(ln, srvCfg)
		d.TLSClientConfig = cliCfg
	}
	wstest.RunClient(t, ln, together, nil, func(t *testing.T) {
		c, _, err := d.Dial(scheme+"://"+ln.Addr().String()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = peer(c)
	})
}

var tempDir string

func mkTempDir() (string, error) {
	if tempDir == "" {
		return "", errors.New("no temp dir")
	}
	return tempDir, nil
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ws-conformance")
	if err != nil {
		panic(err)
	}
	tempDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
