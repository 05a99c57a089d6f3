package natsnode_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsnode"
	"github.com/sluicehq/sluice/internal/testtls"
)

// routeTLSConfig is the route TLS of a node trusting ca's CA and
// presenting cert's certificate.
func routeTLSConfig(t *testing.T, ca, cert testtls.Files) *tls.Config {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{kp}}
}

// certFingerprint is the SHA-256 of f's certificate, as nats-server logs a
// certificate it refused.
func certFingerprint(t *testing.T, f testtls.Files) string {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(kp.Certificate[0])
	return hex.EncodeToString(sum[:])
}

// awaitRouteTLS waits for a message of logs containing all of want.
func awaitRouteTLS(ctx context.Context, t *testing.T, logs chan string, want ...string) {
	t.Helper()
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("no log message with %q", want)
		case m := <-logs:
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(m, w)
			}
			if ok {
				return
			}
		}
	}
}

// awaitRoutes waits until n's server has at least min routes.
func awaitRoutes(ctx context.Context, t *testing.T, n *natsnode.Node, min int) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n.Server.NumRoutes() < min {
		select {
		case <-ctx.Done():
			t.Fatalf("node %s has %d routes, want %d", n.Name, n.Server.NumRoutes(), min)
		case <-tick.C:
		}
	}
}

// TestRouteTLS: three nodes with route TLS (one CA) route to each other
// and serve a JetStream bucket of 3 replicas. Refused by node a, each
// with a TLS route handshake error in a's log and no route: a node of
// another CA (it refuses a's certificate), a node trusting the CA but
// presenting another CA's certificate (a refuses it: client certificates
// are verified), a node without route TLS, a raw plaintext CONNECT (no
// INFO: the handshake comes first) and a TLS client with no certificate.
// The bucket keeps working. On 43b200c route TLS did not exist: a node
// without it and the plaintext CONNECT were answered (INFO, PONG).
func TestRouteTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	good, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 6)
	logA := make(chan string, 4096)
	start := func(name, listen string, peers []string, tc *tls.Config, log *slog.Logger) *natsnode.Node {
		return startNode(t, natsnode.Config{NodeName: name, ClusterListen: listen, Peers: peers, RouteTLS: tc, Log: log})
	}
	a := start("a", addrs[0], addrs[1:3], routeTLSConfig(t, good, good), slog.New(msgHandler{logA}))
	b := start("b", addrs[1], []string{addrs[0], addrs[2]}, routeTLSConfig(t, good, good), nil)
	c := start("c", addrs[2], addrs[0:2], routeTLSConfig(t, good, good), nil)
	for _, n := range []*natsnode.Node{a, b, c} {
		awaitRoutes(ctx, t, n, 2)
	}
	kvA, err := natsnode.KeyValue(ctx, a.JS, jetstream.KeyValueConfig{Bucket: "routetls", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	kvC, err := natsnode.KeyValue(ctx, c.JS, jetstream.KeyValueConfig{Bucket: "routetls", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	putGet := func(v string) {
		t.Helper()
		if _, err := kvA.Put(ctx, "k", []byte(v)); err != nil {
			t.Fatal(err)
		}
		if e, err := kvC.Get(ctx, "k"); err != nil || string(e.Value()) != v {
			t.Fatalf("value through c: %v", err)
		}
	}
	putGet("one")
	if st, err := a.JS.Stream(ctx, "KV_routetls"); err != nil || st.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("bucket stream: %v", err)
	}
	routesA := a.Server.NumRoutes()

	refused := func(name, listen string, tc *tls.Config, want ...string) {
		t.Helper()
		n := start(name, listen, addrs[:1], tc, nil)
		awaitRouteTLS(ctx, t, logA, append([]string{"TLS route handshake error"}, want...)...)
		if r := n.Server.NumRoutes(); r != 0 {
			t.Fatalf("node %s has %d routes", name, r)
		}
		n.Close()
	}
	refused("another-ca", addrs[3], routeTLSConfig(t, other, other), "remote error")
	refused("another-cert", addrs[4], routeTLSConfig(t, good, other), certFingerprint(t, other))
	refused("plain", addrs[5], nil, "does not look like a TLS handshake")

	// A raw route client speaking plain text: nothing but a closed connection.
	conn, err := net.DialTimeout("tcp", addrs[0], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte(`CONNECT {"name":"intruder","cluster":"sluice","tls_required":false}` + "\r\nPING\r\n"))
	got := make([]byte, 4096)
	nr, err := conn.Read(got)
	var ne net.Error
	if strings.Contains(string(got[:nr]), "INFO") || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a plaintext route client read %q (%v), want the connection closed", got[:nr], err)
	}
	awaitRouteTLS(ctx, t, logA, "TLS route handshake error", conn.LocalAddr().String())

	// A TLS client without a certificate: refused once a sees it has none.
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addrs[0], &tls.Config{RootCAs: good.Pool, MinVersion: tls.VersionTLS12})
	if err == nil {
		defer tc.Close()
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = tc.Write([]byte("CONNECT {}\r\nPING\r\n"))
		nr, err = tc.Read(got)
		if err == nil || strings.Contains(string(got[:nr]), "INFO") {
			t.Fatalf("a TLS route client without a certificate read %q (%v)", got[:nr], err)
		}
		awaitRouteTLS(ctx, t, logA, "TLS route handshake error", tc.LocalAddr().String())
	}

	putGet("two")
	if r := a.Server.NumRoutes(); r != routesA {
		t.Fatalf("a has %d routes after the refusals, %d before", r, routesA)
	}
}

// TestRouteTLSRefusals: route TLS without this node's certificate or
// without the CA, or without a cluster listener, is refused before
// anything listens; a node's configured TLS is made strict (client
// certificates required and verified against the CA, at least TLS 1.2).
func TestRouteTLSRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	good, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	full := routeTLSConfig(t, good, good)
	for _, tc := range []struct {
		name string
		cfg  natsnode.Config
		want string
	}{
		{"no certificate", natsnode.Config{ClusterListen: "127.0.0.1:0", RouteTLS: &tls.Config{RootCAs: good.Pool}}, "route TLS needs this node's certificate"},
		{"no CA", natsnode.Config{ClusterListen: "127.0.0.1:0", RouteTLS: &tls.Config{Certificates: full.Certificates}}, "route TLS needs the CA"},
		{"no cluster listen", natsnode.Config{RouteTLS: full}, "route TLS needs a cluster listen address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.NodeName, tc.cfg.StoreDir = "n", t.TempDir()
			n, err := natsnode.Start(ctx, tc.cfg)
			if err == nil {
				n.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
	lax := full.Clone()
	lax.InsecureSkipVerify, lax.MinVersion, lax.ClientAuth = true, tls.VersionTLS10, tls.NoClientCert
	addrs := freeAddrs(t, 2)
	startNode(t, natsnode.Config{ClusterListen: addrs[0], Peers: addrs[1:], RouteTLS: lax}) // the peer never answers
	// The listener asks for, and verifies, a client certificate.
	conn, err := tls.Dial("tcp", addrs[0], &tls.Config{RootCAs: good.Pool, MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &tls.Certificate{}, nil
		}})
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 16))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a route client without a certificate read from a node whose TLS config had ClientAuth off")
	}
}

// TestRouteTLSChecksDialledName: a node dialling a peer checks that the
// peer's certificate names the address dialled: a certificate of the CA
// for 127.0.0.1 served at 127.0.0.2 is refused by the dialler (x509 name
// mismatch in its log) and no route forms.
func TestRouteTLSChecksDialledName(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	other := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	good, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logA := make(chan string, 1024)
	b := startNode(t, natsnode.Config{NodeName: "b", ClusterListen: other, Peers: freeAddrs(t, 1), RouteTLS: routeTLSConfig(t, good, good)})
	a := startNode(t, natsnode.Config{NodeName: "a", ClusterListen: freeAddrs(t, 1)[0], Peers: []string{other},
		RouteTLS: routeTLSConfig(t, good, good), Log: slog.New(msgHandler{logA})})
	awaitRouteTLS(ctx, t, logA, "TLS route handshake error", "not 127.0.0.2")
	if a.Server.NumRoutes() != 0 || b.Server.NumRoutes() != 0 {
		t.Fatalf("routes a %d, b %d; want none", a.Server.NumRoutes(), b.Server.NumRoutes())
	}
}
