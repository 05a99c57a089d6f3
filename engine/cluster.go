package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/natsnode"
	"github.com/sluicehq/sluice/internal/queue"
	"github.com/sluicehq/sluice/internal/state"
)

// clusterNode is what cluster mode adds to an engine: the NATS connection
// (and embedded server) and the JetStream stores that replace the SQLite
// ones. nil when clustering is off; nothing of NATS runs then.
type clusterNode struct {
	name    string
	node    *natsnode.Node
	queue   *queue.JetStream
	kv      *state.JetStream
	router  *clusterRouter             // cross-node invocations (cluster_invoke.go)
	members atomic.Pointer[membership] // cluster_members.go; nil until started
	cron    jetstream.KeyValue         // cron runs claimed (cluster_cron.go)

	eventsLost atomic.Int64 // state/stream events not sent to the other nodes
}

// membersNow is the membership, nil until it started.
func (c *clusterNode) membersNow() *membership { return c.members.Load() }

// startCluster joins the cluster before anything listens: it starts (or
// connects to) NATS and opens the JetStream buckets, waiting for a new
// cluster to elect its leaders, bounded by cluster.start_timeout.
func (e *Engine) startCluster(ctx context.Context) error {
	c := e.cfg.Cluster
	if !c.On() {
		return nil
	}
	began := time.Now()
	name := c.NodeName
	if name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return errors.New("cluster: no cluster.node_name and no host name to default to")
		}
		name = h
	}
	storeDir := c.StoreDir
	if storeDir == "" && c.NATSURL == "" {
		storeDir = filepath.Join(e.cfg.DataDir, "nats")
	}
	tc, err := natsTLS(c.NATSTLS)
	if err != nil {
		return err
	}
	rtc, err := routeTLS(c.RouteTLS)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.StartTimeout)
	defer cancel()
	n, err := natsnode.Start(ctx, natsnode.Config{
		NodeName: name, StoreDir: storeDir, ClusterName: c.Name, ClusterListen: c.Listen, ClusterAdvertise: c.Advertise, Peers: c.Peers, RouteSecret: c.Secret, RouteTLS: rtc,
		URL: c.NATSURL, CredsFile: c.NATSCreds, TLS: tc, Replicas: c.Replicas, Log: e.log,
	})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	q, err := queue.OpenJetStream(ctx, n.JS, queue.JetStreamBucket, name, n.Replicas)
	if err != nil {
		n.Close()
		return fmt.Errorf("cluster: %w", err)
	}
	kv, err := state.OpenJetStream(ctx, n.JS, state.JetStreamBucket, n.Replicas)
	if err != nil {
		q.Close()
		n.Close()
		return fmt.Errorf("cluster: %w", err)
	}
	e.cluster = &clusterNode{name: name, node: n, queue: q, kv: kv}
	if err := e.openCronBucket(ctx); err != nil {
		e.cluster = nil
		q.Close()
		n.Close()
		return fmt.Errorf("cluster: %w", err)
	}
	if err := e.newRouter(); err != nil {
		e.cluster = nil
		q.Close()
		n.Close()
		return fmt.Errorf("cluster: %w", err)
	}
	if err := e.hub.EnableCluster(channels.ClusterConfig{Conn: n.Conn, Node: name, NodeTimeout: c.NodeTimeout}); err != nil {
		e.cluster = nil
		q.Close()
		n.Close()
		return fmt.Errorf("cluster: channels: %w", err)
	}
	e.log.Info("cluster node ready", "node", name, "embedded_nats", n.Server != nil, "cluster_listen", c.Listen,
		"peers", len(c.Peers), "route_auth", onOff(c.Secret != ""), "route_tls", onOff(rtc != nil), "nats_url", c.NATSURL != "", "replicas", n.Replicas, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// stopCluster closes NATS after the stores are closed.
func (e *Engine) stopCluster() {
	if e.cluster == nil {
		return
	}
	if m := e.cluster.membersNow(); m != nil {
		m.leave()
	}
	e.hub.CloseCluster()    // done by the hub's shutdown, unless the start failed
	e.cluster.queue.Close() // idempotent: the queue manager may have closed it
	e.cluster.node.Close()
}

func natsTLS(c NATSTLSConfig) (*tls.Config, error) {
	if c.CAFile == "" && c.CertFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: nats_tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster: nats_tls.ca_file %s: no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: nats_tls: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// routeTLS loads the route certificate and CA (natsnode makes the
// verification mutual); nil when route TLS is off. Errors name the file.
func routeTLS(c NATSTLSConfig) (*tls.Config, error) {
	if !c.set() {
		return nil, nil
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: route_tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster: route_tls.ca_file %s: no PEM certificate", c.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: route_tls: cert_file %s, key_file %s: %w", c.CertFile, c.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil { // GODEBUG=x509keypairleaf=0
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("cluster: route_tls.cert_file %s: %w", c.CertFile, err)
		}
	}
	// Every node presents its certificate both ways: one the peers would
	// refuse (another CA, expired, server-only) stops the start here rather
	// than leave the node out of the cluster until start_timeout.
	// A chain through intermediates follows the leaf in cert_file (the
	// peers get it in the handshake).
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return nil, fmt.Errorf("cluster: route_tls.cert_file %s: not valid against ca_file %s for server and client authentication: %w", c.CertFile, c.CAFile, err)
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}

// servesLocally reports whether a function is registered on this node
// (cluster dispatchers lease only jobs they can deliver).
func (e *Engine) servesLocally(fn string) bool {
	_, ok := e.reg.Function(fn)
	return ok
}
