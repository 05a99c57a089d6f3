package engine

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testtls"
)

// TestRouteTLSFiles: route TLS is off without files; with a CA, a
// certificate and its key it presents the certificate and trusts the CA
// (natsnode makes it mutual). A CA file missing or without a PEM
// certificate, a key that is not one, and a certificate the CA did not
// sign stop the start, each error naming the file.
func TestRouteTLSFiles(t *testing.T) {
	good, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tc, err := routeTLS(NATSTLSConfig{}); tc != nil || err != nil {
		t.Fatalf("no route TLS files: %v %v, want none", tc, err)
	}
	tc, err := routeTLS(NATSTLSConfig{CAFile: good.CAFile, CertFile: good.CertFile, KeyFile: good.KeyFile})
	if err != nil || tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.MinVersion != tls.VersionTLS12 {
		t.Fatalf("route TLS: %+v %v", tc, err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, c := range []struct {
		cfg  NATSTLSConfig
		want []string
	}{
		{NATSTLSConfig{CAFile: missing, CertFile: good.CertFile, KeyFile: good.KeyFile}, []string{"cluster: route_tls.ca_file: ", missing}},
		{NATSTLSConfig{CAFile: notPEM, CertFile: good.CertFile, KeyFile: good.KeyFile}, []string{"route_tls.ca_file " + notPEM, "no PEM certificate"}},
		{NATSTLSConfig{CAFile: good.CAFile, CertFile: good.CertFile, KeyFile: notPEM}, []string{"cluster: route_tls: ", "key_file " + notPEM}},
		{NATSTLSConfig{CAFile: good.CAFile, CertFile: other.CertFile, KeyFile: other.KeyFile}, []string{"route_tls.cert_file " + other.CertFile, "not valid against ca_file " + good.CAFile}},
	} {
		tc, err := routeTLS(c.cfg)
		if tc != nil || err == nil {
			t.Fatalf("%+v: %v %v, want an error", c.cfg, tc, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%+v: %v, want %q in it", c.cfg, err, w)
			}
		}
	}
}

// TestRouteTLSIntermediateChain: a certificate issued by an intermediate
// CA, with the intermediate after it in cert_file and only the root in
// ca_file, passes the start's check (the peers get the chain in the
// handshake). On 6e672f8 the check ignored the chain: "certificate signed
// by unknown authority".
func TestRouteTLSIntermediateChain(t *testing.T) {
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	issue := func(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := time.Now()
	caTmpl := func(serial int64, name string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	}
	rootKey, interKey, leafKey := key(), key(), key()
	rootTmpl := caTmpl(1, "root")
	root := issue(rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	inter := issue(caTmpl(2, "intermediate"), root, &interKey.PublicKey, rootKey)
	leaf := issue(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "node"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}, inter, &leafKey.PublicKey, interKey)
	dir := t.TempDir()
	write := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kb, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := NATSTLSConfig{
		CAFile:   write("root.pem", &pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}),
		CertFile: write("chain.pem", &pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}, &pem.Block{Type: "CERTIFICATE", Bytes: inter.Raw}),
		KeyFile:  write("key.pem", &pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}
	if tc, err := routeTLS(cfg); err != nil || tc == nil {
		t.Fatalf("a leaf of an intermediate with its chain: %v", err)
	}
	cfg.CertFile = write("leaf.pem", &pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}) // the intermediate missing
	if _, err := routeTLS(cfg); err == nil {
		t.Fatal("a leaf without its intermediate passed the check")
	}
}
