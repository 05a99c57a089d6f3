package engine

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
