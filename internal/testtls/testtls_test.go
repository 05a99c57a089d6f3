package testtls

import (
	"crypto/tls"
	"path/filepath"
	"testing"
)

// TestWriteTrustedOnlyViaCA: the server certificate Write makes verifies
// for 127.0.0.1 and localhost through ClientConfig, and not without the CA.
func TestWriteTrustedOnlyViaCA(t *testing.T) {
	f, err := Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	dial := func(name string, cfg *tls.Config) error {
		cfg.ServerName = name
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, name := range []string{"127.0.0.1", "localhost"} {
		if err := dial(name, f.ClientConfig()); err != nil {
			t.Errorf("%s through the CA: %v", name, err)
		}
	}
	if err := dial("127.0.0.1", &tls.Config{}); err == nil {
		t.Error("the certificate verified without its CA")
	}
	if err := dial("example.com", f.ClientConfig()); err == nil {
		t.Error("the certificate verified for a name it does not hold")
	}
}

// TestWriteFailsClearly: a directory that cannot be written is an error,
// not a half-written set of files reported as ready.
func TestWriteFailsClearly(t *testing.T) {
	if _, err := Write(filepath.Join(t.TempDir(), "missing", "dir")); err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
}
