package engine

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNATSTLS: the client TLS of an external NATS: none without a CA or a
// certificate; a CA alone is trusted, a certificate alone is presented;
// an unreadable CA, a CA file without a PEM certificate, and a bad key
// pair are refused, each naming the setting. Kills cluster.go:123 ×2,
// :127, :129, :137, :139 (each negated).
func TestNATSTLS(t *testing.T) {
	good, _ := writeTestTLS(t)
	notPEM := filepath.Join(t.TempDir(), "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tc, err := natsTLS(NATSTLSConfig{}); tc != nil || err != nil {
		t.Fatalf("no TLS settings: %v %v, want none", tc, err)
	}
	tc, err := natsTLS(NATSTLSConfig{CAFile: good.CertFile})
	if err != nil || tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 0 || tc.MinVersion != tls.VersionTLS12 {
		t.Fatalf("a CA only: %+v %v", tc, err)
	}
	tc, err = natsTLS(NATSTLSConfig{CertFile: good.CertFile, KeyFile: good.KeyFile})
	if err != nil || tc == nil || tc.RootCAs != nil || len(tc.Certificates) != 1 {
		t.Fatalf("a certificate only: %+v %v", tc, err)
	}
	tc, err = natsTLS(NATSTLSConfig{CAFile: good.CertFile, CertFile: good.CertFile, KeyFile: good.KeyFile})
	if err != nil || tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 {
		t.Fatalf("a CA and a certificate: %+v %v", tc, err)
	}
	for _, c := range []struct {
		cfg  NATSTLSConfig
		want string
	}{
		{NATSTLSConfig{CAFile: filepath.Join(t.TempDir(), "missing.pem")}, "cluster: nats_tls.ca_file: "},
		{NATSTLSConfig{CAFile: notPEM}, "no PEM certificate"},
		{NATSTLSConfig{CertFile: good.CertFile, KeyFile: notPEM}, "cluster: nats_tls: "},
	} {
		if tc, err := natsTLS(c.cfg); tc != nil || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: %v %v, want an error with %q", c.cfg, tc, err, c.want)
		}
	}
}

// TestNodeDefaultsAndStartLog: an embedded node without a node name is
// named after its host and keeps JetStream in <data_dir>/nats; the start
// is logged with whether NATS is embedded, the routes authenticated, and
// an external NATS used. Kills cluster.go:50, :52 ×2, :58 ×2, :104 and
// :105 ×2 (each negated).
func TestNodeDefaultsAndStartLog(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Skipf("no host name here (%v)", err)
	}
	dir := t.TempDir()
	logs := newClusterLogs()
	e := startEngineWithLogger(t, slog.New(slog.NewTextHandler(logs, nil)), func(c *Config) {
		c.DataDir, c.Cluster.Enabled, c.Cluster.Secret = dir, true, "0123456789abcdef"
	})
	if n := e.nodeName(); n != host {
		t.Fatalf("node name %q, want the host name %q", n, host)
	}
	if fi, err := os.Stat(filepath.Join(dir, "nats")); err != nil || !fi.IsDir() {
		t.Fatalf("JetStream's directory <data_dir>/nats: %v", err)
	}
	logs.waitFor(t, time.Second, 1, "cluster node ready", "embedded_nats=true", "route_auth=on", "nats_url=false")

	ext, extLogs := startClusterLogged(t)
	if n := ext.nodeName(); n != "node-0" {
		t.Fatalf("node name %q, want node-0 as configured", n)
	}
	extLogs.waitFor(t, time.Second, 1, "cluster node ready", "node=node-0", "embedded_nats=false", "route_auth=off", "nats_url=true")
}

// TestNodeLeavesAtShutdown: a node that shuts down deletes its
// heartbeat, so the others see it leave at once ("shut down"), not after
// node_timeout of silence. Kills cluster.go:114 (`m != nil` negated).
func TestNodeLeavesAtShutdown(t *testing.T) {
	e0, logs := startClusterLogged(t)
	e1 := startEngine(t, func(c *Config) {
		c.DataDir, c.Cluster.NATSURL, c.Cluster.NodeName = DataDirMemory, e0.cfg.Cluster.NATSURL, "node-1"
		c.Cluster.NodeTimeout = 2 * time.Second
	})
	logs.waitFor(t, 10*time.Second, 1, "cluster node joined", "node=node-1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ln := logs.waitFor(t, 10*time.Second, 1, "cluster node left", "node=node-1"); !strings.Contains(ln, `why="shut down"`) {
		t.Fatalf("node 1 shut down, node 0 logged: %s", ln)
	}
}
