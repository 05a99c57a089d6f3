package engine

import (
	"crypto/tls"
	"fmt"
	"net"
)

// serverTLS builds the TLS settings both listeners share from c's files.
// ALPN offers HTTP/1.1 only: WebSocket upgrades (worker and channel
// sockets) need it, and HTTP triggers stream over it.
func serverTLS(c TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: loading %s and %s: %w", c.CertFile, c.KeyFile, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// wrapTLS serves ln over TLS when the engine has a certificate. The
// handshake runs on the connection's own goroutine, bounded by the
// server's ReadHeaderTimeout.
func (e *Engine) wrapTLS(ln net.Listener) net.Listener {
	if e.tlsCfg == nil {
		return ln
	}
	return tls.NewListener(ln, e.tlsCfg)
}

// scheme is secure when the listeners serve TLS, else plain.
func (e *Engine) scheme(plain, secure string) string {
	if e.tlsCfg != nil {
		return secure
	}
	return plain
}
