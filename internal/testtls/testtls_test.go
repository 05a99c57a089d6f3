package testtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
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

// TestWriteMakesWhatItSays: the CA is a CA, the server certificate is an
// ECDSA P-256 server (and client) certificate signed by it, both valid now and for
// about a day, and the key file holds the certificate's key.
func TestWriteMakesWhatItSays(t *testing.T) {
	f, err := Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	parse := func(path string) *x509.Certificate {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "CERTIFICATE" {
			t.Fatalf("%s: not a PEM certificate", path)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ca, srv := parse(f.CAFile), parse(f.CertFile)
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA %v, key usage %b", ca.IsCA, ca.KeyUsage)
	}
	if srv.IsCA || !slices.Equal(srv.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("server certificate: IsCA %v, ext key usage %v", srv.IsCA, srv.ExtKeyUsage)
	}
	if err := srv.CheckSignatureFrom(ca); err != nil {
		t.Errorf("server certificate not signed by the CA: %v", err)
	}
	pub, ok := srv.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("server key %T, want ECDSA P-256", srv.PublicKey)
	}
	now := time.Now()
	for _, c := range []*x509.Certificate{ca, srv} {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) || c.NotAfter.Sub(now) > 25*time.Hour || c.NotAfter.Sub(now) < 23*time.Hour {
			t.Errorf("%s valid %v to %v, want now to about a day from now", c.Subject.CommonName, c.NotBefore, c.NotAfter)
		}
	}
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatalf("key file does not match the certificate: %v", err)
	}
	if !pair.Leaf.Equal(srv) {
		t.Error("key pair's certificate differs from the certificate file")
	}
	if fi, err := os.Stat(f.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v, %v", fi.Mode(), err)
	}
}
