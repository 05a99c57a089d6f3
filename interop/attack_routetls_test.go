package interop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testtls"
)

// Route TLS: the embedded cluster's NATS routes (node to node: calls, job
// payloads, state values, channel bytes) encrypted, each end verifying the
// other's certificate against the cluster CA.

// routeTLSSecret is the route secret startClusterNode gives every node.
const routeTLSSecret = "interop-route-secret-0123"

// routeTLSFlags are the route TLS flags of a node presenting cert.
func routeTLSFlags(ca string, cert testtls.Files) []string {
	return []string{"--cluster-tls-ca", ca, "--cluster-tls-cert", cert.CertFile, "--cluster-tls-key", cert.KeyFile}
}

// startRouteTLSCluster starts three nodes with extra flags and returns them
// with their route addresses.
func startRouteTLSCluster(t *testing.T, extra ...string) ([]*engineProc, []string, string) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building the engine: %v", buildErr)
	}
	routes := clusterFreePorts(t, 3)
	dir := t.TempDir()
	procs := make([]*proc, 3)
	for i := range 3 {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		procs[i] = startClusterNode(t, dir, i, routes[i], peers, extra...)
	}
	return awaitClusterNodes(t, procs), routes, dir
}

// routeTLSCall calls fn on a worker of nodes[2] from a client of nodes[0]
// (retried while node 0 does not know the function yet) and checks the
// echo.
func routeTLSCall(t *testing.T, ctx context.Context, nodes []*engineProc, fn string, v int) {
	t.Helper()
	callee := connectGo(t, nodes[2], "callee-"+fn)
	if err := sluice.Register(callee, fn, func(ctx context.Context, in struct {
		V int `json:"v"`
	}) (any, error) {
		return map[string]int{"echo": in.V}, nil
	}); err != nil {
		t.Fatal(err)
	}
	caller := connectGo(t, nodes[0], "caller-"+fn)
	raw, err := triggerServed(ctx, caller, fn, map[string]int{"v": v})
	if err != nil {
		t.Fatalf("cross-node call %s from node 0 to node 2: %v", fn, err)
	}
	if want := fmt.Sprintf(`{"echo":%d}`, v); string(raw) != want {
		t.Fatalf("cross-node call %s: %s, want %s", fn, raw, want)
	}
}

// routeTLSPlainConnect speaks the NATS route protocol in plain text to a
// route port: it sends CONNECT with the cluster's route secret and a PING,
// and returns what came back until the connection closed (or 5 s passed:
// closed reports which), with its own address.
func routeTLSPlainConnect(t *testing.T, addr string) (got, local string, closed bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local = c.LocalAddr().String()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	connect := fmt.Sprintf(`CONNECT {"user":"sluice-route","pass":%q,"tls_required":false,"name":"intruder","cluster":"sluice","headers":true}`+"\r\nPING\r\n", routeTLSSecret)
	if _, err := c.Write([]byte(connect)); err != nil {
		return "", local, true // closed before the CONNECT: refused
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if strings.Contains(b.String(), "PONG") {
			return b.String(), local, false // answered: accepted as a route
		}
		if err != nil {
			var ne net.Error
			return b.String(), local, !errors.As(err, &ne) || !ne.Timeout()
		}
	}
}

// routeTLSClient speaks the route protocol over TLS to addr, trusting
// ca's CA and presenting cert (none when nil): it sends CONNECT with the
// route secret and a PING and returns what came back and the read error
// that ended it (nil if PONG came back: accepted).
func routeTLSClient(t *testing.T, addr string, ca testtls.Files, cert *testtls.Files) (got, local string, err error) {
	t.Helper()
	cfg := ca.ClientConfig()
	if cert != nil {
		kp, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", "", err // refused in the handshake
	}
	defer c.Close()
	local = c.LocalAddr().String()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, `CONNECT {"user":"sluice-route","pass":%q,"tls_required":true,"name":"intruder","cluster":"sluice","headers":true}`+"\r\nPING\r\n", routeTLSSecret); err != nil {
		return "", local, err
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if strings.Contains(b.String(), "PONG") {
			return b.String(), local, nil
		}
		if err != nil {
			return b.String(), local, err
		}
	}
}

// TestAttackRouteTLS: three nodes with route TLS serve a cross-node call,
// and each of these is refused by node 0 (a TLS route handshake error in
// its log, no INFO or PONG sent) while the three keep serving calls:
//   - a raw TCP client speaking the route protocol in plain text (CONNECT
//     with the right route secret, as an eavesdropper on an unencrypted
//     route reads it);
//   - a raw TLS client trusting the cluster CA with a certificate of
//     another CA, and one with no certificate (client certificates are
//     verified against the CA);
//   - a fourth engine with the right secret whose certificate and CA are
//     another CA's: it does not join, and gives up its start.
//
// On 43b200c (no route TLS; the same cluster with its secret only): the
// plaintext CONNECT was answered with INFO and PONG, and the fourth engine
// joined (it logged "cluster node ready").
func TestAttackRouteTLS(t *testing.T) {
	good, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	nodes, routes, dir := startRouteTLSCluster(t, routeTLSFlags(good.CAFile, good)...)
	ctx := ctxFor(t, 120*time.Second)
	for _, n := range nodes {
		if _, err := n.stderr.wait(ctx, func(s string) bool {
			return strings.Contains(s, `msg="cluster node ready"`) && strings.Contains(s, "route_tls=on")
		}); err != nil {
			t.Fatalf("a node did not log route_tls=on: %v", err)
		}
	}
	routeTLSCall(t, ctx, nodes, "routetls::before", 1)
	refusedAt := func(what, local string) {
		t.Helper()
		if _, err := nodes[0].stderr.wait(ctx, func(s string) bool {
			return strings.Contains(s, "TLS route handshake error") && strings.Contains(s, local)
		}); err != nil {
			t.Fatalf("node 0 logged no TLS route handshake error for %s (%s): %v", what, local, err)
		}
	}

	// A plaintext route connection.
	got, local, closed := routeTLSPlainConnect(t, routes[0])
	if strings.Contains(got, "INFO") || strings.Contains(got, "PONG") || !closed {
		t.Fatalf("plaintext route connection: got %q, closed %v; want it closed without INFO or PONG", got, closed)
	}
	refusedAt("the plaintext route", local)

	// TLS clients without a certificate of the CA.
	for _, c := range []struct {
		what string
		cert *testtls.Files
	}{{"a certificate of another CA", &other}, {"no certificate", nil}} {
		got, local, err := routeTLSClient(t, routes[0], good, c.cert)
		if err == nil || strings.Contains(got, "INFO") {
			t.Fatalf("a TLS route client with %s: got %q (%v); want it refused", c.what, got, err)
		}
		if local != "" {
			refusedAt("a TLS route client with "+c.what, local)
		}
	}

	// An engine of another CA, with the route secret.
	intruder := startClusterNode(t, dir, 3, clusterFreePorts(t, 1)[0], routes[:1],
		append(routeTLSFlags(other.CAFile, other), "--cluster-start-timeout", "3s")...)
	if _, err := intruder.stderr.wait(ctx, func(s string) bool {
		return strings.Contains(s, "TLS route handshake error") && strings.Contains(s, "certificate signed by unknown authority")
	}); err != nil {
		t.Fatalf("the intruder logged no refused certificate: %v", err)
	}
	if _, err := nodes[0].stderr.wait(ctx, func(s string) bool {
		return strings.Contains(s, "TLS route handshake error") && strings.Contains(s, "remote error")
	}); err != nil {
		t.Fatalf("node 0 logged no refused route from the intruder: %v", err)
	}
	select {
	case <-intruder.exited:
	case <-ctx.Done():
		t.Fatal("the intruder did not give up its start")
	}
	if strings.Contains(intruder.stderr.String(), "cluster node ready") || intruder.err == nil {
		t.Fatalf("the intruder joined (exit %v):\n%s", intruder.err, intruder.stderr)
	}
	routeTLSCall(t, ctx, nodes, "routetls::after", 2)
}

// TestRouteTLSRefusedConfig: route TLS files that cannot be loaded stop
// the start with an error naming the file (also a certificate the CA did
// not sign); a certificate without a CA is refused by the configuration
// check. On 43b200c the flags were unknown.
func TestRouteTLSRefusedConfig(t *testing.T) {
	if buildErr != nil {
		t.Fatalf("building the engine: %v", buildErr)
	}
	good, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := testtls.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing-ca.pem")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing CA", []string{"--cluster-tls-ca", missing, "--cluster-tls-cert", good.CertFile, "--cluster-tls-key", good.KeyFile}, missing},
		{"key is not a key", []string{"--cluster-tls-ca", good.CAFile, "--cluster-tls-cert", good.CertFile, "--cluster-tls-key", good.CAFile}, good.CAFile},
		{"no CA", []string{"--cluster-tls-cert", good.CertFile, "--cluster-tls-key", good.KeyFile}, "ca_file"},
		{"certificate of another CA", []string{"--cluster-tls-ca", good.CAFile, "--cluster-tls-cert", other.CertFile, "--cluster-tls-key", other.KeyFile}, other.CertFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0",
				"--streams-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--node-name", "n", "--cluster-listen", "127.0.0.1:0", "--cluster-peers", "127.0.0.1:1"}, tc.args...)
			ctx := ctxFor(t, 30*time.Second)
			cmd := exec.CommandContext(ctx, engineBin, args...)
			cmd.Env = append(os.Environ(), "SLUICE_CONFIG=")
			out, err := cmd.CombinedOutput()
			if err == nil || ctx.Err() != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("exit %v, output:\n%s\nwant a refusal naming %q", err, out, tc.want)
			}
		})
	}
}
