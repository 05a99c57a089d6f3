// Package natsnode connects an engine to NATS for cluster mode: either an
// nats-server embedded in the process (JetStream on, routes to the peer
// nodes) or an external NATS deployment reached by URL. The JetStream
// stores (internal/queue, internal/state) take the JetStream context it
// returns; nothing here is used, or started, when clustering is off.
package natsnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Config selects embedded or external NATS. URL set: external (the other
// embedded fields are ignored); otherwise an embedded server is started.
type Config struct {
	// NodeName is the stable name of this node (the embedded server's
	// name, the owner of the queue leases it takes). Required.
	NodeName string
	// StoreDir is the embedded server's JetStream directory (one per node).
	StoreDir string
	// ClusterName names the embedded cluster (all nodes must agree).
	ClusterName string
	// ClusterListen is the embedded server's route listener, host:port;
	// "" runs a standalone embedded server (one node).
	ClusterListen string
	// Peers are the other nodes' route addresses, host:port.
	Peers []string
	// ClusterAdvertise, when set, is the route address gossiped to the
	// other nodes instead of ClusterListen.
	ClusterAdvertise string
	// RouteSecret, when set, is the password every node presents on its
	// routes and requires from the others (the same on every node).
	RouteSecret string
	// RouteTLS, when set, encrypts the routes and authenticates both ends
	// (mutual TLS): Certificates is this node's certificate, presented when
	// it dials a peer and when a peer dials it; RootCAs is the CA every
	// node's certificate must chain to. A dialled node's certificate must
	// also name the address it is dialled at (IP or DNS SAN).
	RouteTLS *tls.Config
	// ClientListen, when set, also opens the embedded server's client port
	// (for the nats CLI, or nodes of another process); "" serves this
	// process only.
	ClientListen string
	// MaxPayload is the largest NATS message the embedded server accepts.
	MaxPayload int32

	// URL is an external NATS deployment (comma-separated server URLs).
	URL string
	// CredsFile is a NATS credentials file for the external URL.
	CredsFile string
	// TLS, when non-nil, is used for the connection to the external URL.
	TLS *tls.Config
	// Replicas of each JetStream stream and bucket; 0: 3 with a cluster of
	// three nodes or more, else 1.
	Replicas int

	Log *slog.Logger
}

// Node is a live connection to NATS (and the embedded server, if any).
type Node struct {
	Name     string
	Server   *server.Server // nil with an external URL
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Replicas int
}

// DefaultMaxPayload fits the engine's largest stored value (1 MiB by
// default) with room for the record around it.
const DefaultMaxPayload = 8 << 20

// Start connects to NATS as cfg says, waiting (bounded by ctx) until the
// server is ready for connections. JetStream itself may need longer in a
// cluster (a meta leader must be elected): stores retry their setup.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("nats: a node name is required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{Name: cfg.NodeName, Replicas: cfg.Replicas}
	var opts []nats.Option
	opts = append(opts, nats.Name("sluice-"+cfg.NodeName), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	var urls string
	if cfg.URL != "" {
		urls = cfg.URL
		if cfg.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		}
		if cfg.TLS != nil {
			opts = append(opts, nats.Secure(cfg.TLS))
		}
		if n.Replicas == 0 {
			n.Replicas = 1
		}
	} else {
		so, err := serverOptions(cfg)
		if err != nil {
			return nil, err
		}
		ns, err := server.NewServer(so)
		if err != nil {
			return nil, fmt.Errorf("nats: embedded server: %w", err)
		}
		ns.SetLoggerV2(slogAdapter{log.With("part", "nats")}, false, false, false)
		ns.Start()
		wait := 10 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = time.Until(dl)
		}
		if !ns.ReadyForConnections(wait) {
			ns.Shutdown()
			return nil, errors.New("nats: embedded server not ready")
		}
		n.Server = ns
		opts = append(opts, nats.InProcessServer(ns))
		if so.Username != "" {
			opts = append(opts, nats.UserInfo(so.Username, so.Password))
		}
		if n.Replicas == 0 {
			n.Replicas = 1
			if len(cfg.Peers)+1 >= 3 {
				n.Replicas = 3
			}
		}
	}
	nc, err := nats.Connect(urls, opts...)
	// An external deployment not reachable yet (started beside the engine,
	// restarting, its name not in DNS yet) is waited for until ctx ends; a
	// refusal (credentials, TLS) is final.
	for warned := false; cfg.URL != "" && notYetReachable(err); {
		if !warned {
			log.Warn("nats: no server reachable yet; retrying until the start timeout", "err", err)
			warned = true
		}
		if !waitRetry(ctx) {
			break
		}
		nc, err = nats.Connect(urls, opts...)
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("nats: connect: %w", err)
	}
	n.Conn = nc
	js, err := jetstream.New(nc)
	if err != nil {
		n.Close()
		return nil, err
	}
	n.JS = js
	return n, nil
}

func serverOptions(cfg Config) (*server.Options, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("nats: the embedded server needs a store directory")
	}
	so := &server.Options{
		ServerName: cfg.NodeName,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		MaxPayload: cfg.MaxPayload,
	}
	if so.MaxPayload == 0 {
		so.MaxPayload = DefaultMaxPayload
	}
	switch {
	case cfg.ClientListen == "" && cfg.ClusterListen == "":
		so.DontListen = true
	case cfg.ClientListen == "":
		// Routing waits for the client listener to be up (nats-server
		// never starts routes with DontListen): a loopback port on a random
		// number, closed to others by a password only this process knows.
		so.Host, so.Port = "127.0.0.1", server.RANDOM_PORT
		so.Username, so.Password = "sluice", nuid.Next()+nuid.Next()
	default:
		h, p, err := hostPort(cfg.ClientListen)
		if err != nil {
			return nil, fmt.Errorf("nats: client listen: %w", err)
		}
		so.Host, so.Port = h, p
	}
	if cfg.ClusterListen != "" {
		h, p, err := hostPort(cfg.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("nats: cluster listen: %w", err)
		}
		so.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: h, Port: p, Advertise: cfg.ClusterAdvertise}
		if so.Cluster.Name == "" {
			so.Cluster.Name = "sluice"
		}
		if cfg.RouteTLS != nil {
			tc, err := routeTLS(cfg.RouteTLS)
			if err != nil {
				return nil, err
			}
			so.Cluster.TLSConfig, so.Cluster.TLSTimeout = tc, RouteTLSTimeout.Seconds()
		}
		var user *url.Userinfo
		if cfg.RouteSecret != "" {
			so.Cluster.Username, so.Cluster.Password = routeUser, cfg.RouteSecret
			user = url.UserPassword(routeUser, cfg.RouteSecret)
		}
		for _, peer := range cfg.Peers {
			if _, _, err := hostPort(peer); err != nil {
				return nil, fmt.Errorf("nats: cluster peer %q: %w", peer, err)
			}
			so.Routes = append(so.Routes, &url.URL{Scheme: "nats-route", Host: peer, User: user})
		}
	} else if len(cfg.Peers) > 0 {
		return nil, errors.New("nats: cluster peers need a cluster listen address")
	} else if cfg.RouteTLS != nil {
		return nil, errors.New("nats: route TLS needs a cluster listen address")
	}
	return so, nil
}

// RouteTLSTimeout bounds a route's TLS handshake (nats-server's own
// default is 2 s, tight for a loaded machine).
const RouteTLSTimeout = 5 * time.Second

// routeTLS is the route TLS of the embedded server: as nats-server's own
// cluster "tls" block, strict both ways. An accepted route must present a
// certificate of the CA (client authentication required and verified); a
// dialled one must present a certificate of the CA naming the address
// dialled (Go's standard verification, nats-server sets the name).
func routeTLS(in *tls.Config) (*tls.Config, error) {
	if len(in.Certificates) == 0 && in.GetCertificate == nil {
		return nil, errors.New("nats: route TLS needs this node's certificate")
	}
	if in.RootCAs == nil {
		return nil, errors.New("nats: route TLS needs the CA of the nodes' certificates")
	}
	tc := in.Clone()
	tc.ClientAuth = tls.RequireAndVerifyClientCert
	tc.ClientCAs = tc.RootCAs
	tc.InsecureSkipVerify = false
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	return tc, nil
}

const routeUser = "sluice-route"

func hostPort(s string) (string, int, error) {
	h, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", s)
	}
	return h, p, nil
}

// Close drains nothing: it closes the connection and shuts the embedded
// server down (JetStream flushes its files).
func (n *Node) Close() {
	if n.Conn != nil {
		n.Conn.Close()
	}
	if n.Server != nil {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
	}
}

// Retry runs op until it succeeds or ctx ends, for JetStream setup calls
// that fail while a cluster is still electing its leaders.
func Retry(ctx context.Context, op func(context.Context) error) error {
	delay := 50 * time.Millisecond
	// A request sent before the cluster has a meta leader is never
	// answered: a short first limit (then doubling) retries it soon
	// instead of idling through a long one.
	limit := 500 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, limit)
		err := op(cctx)
		cancel()
		if err == nil {
			return nil
		}
		limit = min(limit*2, 5*time.Second)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(delay*2, time.Second)
	}
}

// slogAdapter sends the embedded server's log to the engine's logger
// (notices at debug level: the server is chatty at start).
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(f string, v ...any) { a.l.Debug(strings.TrimSpace(fmt.Sprintf(f, v...))) }
func (a slogAdapter) Warnf(f string, v ...any)   { a.l.Warn(strings.TrimSpace(fmt.Sprintf(f, v...))) }
func (a slogAdapter) Fatalf(f string, v ...any)  { a.l.Error(strings.TrimSpace(fmt.Sprintf(f, v...))) }
func (a slogAdapter) Errorf(f string, v ...any)  { a.l.Error(strings.TrimSpace(fmt.Sprintf(f, v...))) }
func (a slogAdapter) Debugf(string, ...any)      {}
func (a slogAdapter) Tracef(string, ...any)      {}

// KeyValue opens the bucket cfg names, creating it if needed (retried
// while a cluster elects its leaders, until ctx ends). Reads are then
// served by the stream's leader, not by any replica ("direct get"): a
// value acknowledged on one node is what the next read on any node sees,
// and a compare-and-set after a read does not spin on a lagging replica.
//
// A nats.go handle sends direct gets when the stream info it last read
// allowed them, and no server answers direct gets once the stream stops
// allowing them ("no responders"). Nodes opening one bucket at once race:
// nats.go creates it with direct gets on (and turns them back on when its
// create meets the stream another node already switched), so a handle
// bound in between would send direct gets for good. The handle's own
// view is therefore refreshed (Status) after the switch and checked, and
// the returned handle refreshes it again if a read gets no responders.
func KeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := Retry(ctx, func(ctx context.Context) error {
		var err error
		kv, err = js.KeyValue(ctx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, cfg)
		}
		if err != nil {
			return err
		}
		st, err := js.Stream(ctx, "KV_"+cfg.Bucket)
		if err != nil {
			return err
		}
		if sc := st.CachedInfo().Config; sc.AllowDirect {
			sc.AllowDirect = false
			if _, err := js.UpdateStream(ctx, sc); err != nil {
				return err
			}
		}
		return leaderReads(ctx, kv)
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream bucket %s: %w", cfg.Bucket, err)
	}
	return readsKV{kv}, nil
}

// errDirectGets: another node turned direct gets back on meanwhile (it
// turns them off again next).
var errDirectGets = errors.New("bucket allows direct gets again")

// leaderReads refreshes kv's view of its stream and checks that it sends
// its reads to the stream's leader.
func leaderReads(ctx context.Context, kv jetstream.KeyValue) error {
	st, err := kv.Status(ctx)
	if err != nil {
		return err
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo().Config.AllowDirect {
		return errDirectGets
	}
	return nil
}

// readsKV retries a read answered "no responders" after refreshing the
// handle's view of the stream: a handle that still sends direct gets
// (nothing serves them) switches to the leader's reads; a stream between
// leaders is waited for. Bounded by ctx and 100 × 50 ms.
type readsKV struct{ jetstream.KeyValue }

func (k readsKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	e, err := k.KeyValue.Get(ctx, key)
	for try := 0; try < 100 && errors.Is(err, nats.ErrNoResponders) && Backoff(ctx); try++ {
		_, _ = k.KeyValue.Status(ctx)
		e, err = k.KeyValue.Get(ctx, key)
	}
	return e, err
}

func (k readsKV) GetRevision(ctx context.Context, key string, rev uint64) (jetstream.KeyValueEntry, error) {
	e, err := k.KeyValue.GetRevision(ctx, key, rev)
	for try := 0; try < 100 && errors.Is(err, nats.ErrNoResponders) && Backoff(ctx); try++ {
		_, _ = k.KeyValue.Status(ctx)
		e, err = k.KeyValue.GetRevision(ctx, key, rev)
	}
	return e, err
}

// Transient reports an error of a JetStream call made while the stream
// has no leader (an election after a node left, or just after creation):
// retry it after Backoff.
func Transient(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.As(err, &api) && api.ErrorCode == jsTemporarilyUnavailable
}

// jsTemporarilyUnavailable is JetStream's "system temporarily unavailable"
// (503): its meta layer between leaders, seen for seconds while a cluster
// heals a partition.
const jsTemporarilyUnavailable jetstream.ErrorCode = 10008

// TransientFor is how long a write retries transient errors (JetStream
// between leaders, or its meta layer unavailable while a cluster heals)
// before it gives up with the error, whatever its context allows.
const TransientFor = 10 * time.Second

// RetryTransient reports whether an operation that failed with err should
// be tried again: err is Transient, the first such failure (*first, set
// here) is less than TransientFor ago, and Backoff waited.
func RetryTransient(ctx context.Context, err error, first *time.Time) bool {
	if !Transient(err) {
		return false
	}
	if first.IsZero() {
		*first = time.Now()
	} else if time.Since(*first) > TransientFor {
		return false
	}
	return Backoff(ctx)
}

// Backoff waits a little before a retry; false if ctx ended.
func Backoff(ctx context.Context) bool {
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// notYetReachable reports a connect error that may pass: every server
// refused the connection, its name did not resolve, or the dial timed out.
func notYetReachable(err error) bool {
	var dns *net.DNSError
	var ne net.Error
	return errors.Is(err, nats.ErrNoServers) || errors.As(err, &dns) || errors.As(err, &ne) && ne.Timeout()
}

// waitRetry waits a quarter of a second (five Backoffs) before another
// connect; false if ctx ended.
func waitRetry(ctx context.Context) bool {
	for range 5 {
		if !Backoff(ctx) {
			return false
		}
	}
	return true
}

// StopWatch stops a KV watcher made with ctx. Once ctx has ended it does
// nothing: nats.go then unsubscribes the watcher on its own goroutine,
// while Stop would wait for the JetStream API to delete the watcher's
// consumer, up to its 5 s timeout when the cluster has no meta leader
// (a peer just died), holding up the engine's exit.
func StopWatch(ctx context.Context, w jetstream.KeyWatcher) {
	if ctx.Err() == nil {
		_ = w.Stop()
	}
}
