package interop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// Fault tests of cluster mode (issue 15, acceptance 2): a node SIGKILLed
// under load, and a node cut off from the others by the TCP proxies its
// NATS routes go through, then healed. Each reports what the load saw:
// calls answered, calls failed with a clear error (by code), calls hung
// (no answer within faultCallBound: must be 0), jobs acknowledged by an
// enqueue and never delivered (must be 0), and jobs delivered more than
// once (allowed: delivery is at least once).

const (
	// faultCallBound turns a hung call or enqueue into a count: a call to a
	// node that died ends within node_timeout (2 s here) and a tick.
	faultCallBound = 8 * time.Second
	// faultPace spaces each load goroutine's calls (a shared 2-core machine).
	faultPace = 10 * time.Millisecond
)

// ---------------------------------------------------------------- proxies

// faultProxy is a TCP proxy the test controls: each accepted connection
// goes to the first of its targets that accepts one. Cut, it closes the
// connections it carries and refuses new ones until healed.
type faultProxy struct {
	ln      net.Listener
	targets []string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}

	accepted, refused atomic.Int64
}

func newFaultProxy(t *testing.T, targets ...string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, targets: targets, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
	})
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

// track registers c, or closes it when the proxy is cut.
func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *faultProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *faultProxy) pipe(c net.Conn) {
	if !p.track(c) {
		p.refused.Add(1)
		return
	}
	var up net.Conn
	for _, target := range p.targets {
		var err error
		if up, err = net.DialTimeout("tcp", target, time.Second); err == nil {
			break
		}
	}
	if up == nil || !p.track(up) {
		if up != nil {
			p.refused.Add(1)
		}
		p.untrack(c)
		return
	}
	p.accepted.Add(1)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	p.untrack(c, up)
}

// setCut cuts the proxy (closing what it carries) or heals it; it returns
// how many connections it closed.
func (p *faultProxy) setCut(cut bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if !cut {
		return 0
	}
	n := len(p.conns)
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	return n
}

// ---------------------------------------------------------------- cluster

// faultCluster is three engine processes whose NATS routes each go
// through a proxy of the test: node i reaches node j at links[i][j].
// Each node advertises (NATS route gossip) a sink that refuses every
// connection, so that no node connects to another around the proxies.
type faultCluster struct {
	nodes []*engineProc
	links [][]*faultProxy
	sinks []*faultProxy
}

func startFaultCluster(t *testing.T, n int, extraArgs ...string) *faultCluster {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building the engine: %v", buildErr)
	}
	routes := clusterFreePorts(t, n)
	fc := &faultCluster{links: make([][]*faultProxy, n)}
	for i := range n {
		fc.links[i] = make([]*faultProxy, n)
		for j := range n {
			if j != i {
				fc.links[i][j] = newFaultProxy(t, routes[j])
			}
		}
		sink := newFaultProxy(t)
		sink.setCut(true)
		fc.sinks = append(fc.sinks, sink)
	}
	dir := t.TempDir()
	procs := make([]*proc, n)
	for i := range n {
		var peers []string
		for j := range n {
			if j != i {
				peers = append(peers, fc.links[i][j].addr())
			}
		}
		procs[i] = startClusterNode(t, dir, i, routes[i], peers, append([]string{"--cluster-advertise", fc.sinks[i].addr()}, extraArgs...)...)
	}
	fc.nodes = awaitClusterNodes(t, procs)
	return fc
}

// partition cuts (or heals) every link to and from node k; it returns the
// connections it closed.
func (fc *faultCluster) partition(k int, cut bool) int {
	n := 0
	for i := range fc.links {
		for j, p := range fc.links[i] {
			if p != nil && (i == k || j == k) {
				n += p.setCut(cut)
			}
		}
	}
	return n
}

// ---------------------------------------------------------------- load

// faultTally counts the outcomes of the load.
type faultTally struct {
	mu     sync.Mutex
	ok     map[string]int // by function
	failed map[string]int // by "function: code"
	hung   []string
}

func newFaultTally() *faultTally {
	return &faultTally{ok: map[string]int{}, failed: map[string]int{}}
}

// record classifies one call's outcome. A clear error is a *sluice.Error
// (the engine's answer); anything else is counted by its text.
func (ft *faultTally) record(what string, err error, ctx context.Context) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var se *sluice.Error
	switch {
	case err == nil:
		ft.ok[what]++
	case ctx.Err() != nil: // the SDK's TIMEOUT at the bound, or any error after it
		ft.hung = append(ft.hung, what+": "+err.Error())
	case errors.As(err, &se):
		ft.failed[what+": "+se.Code]++
	default:
		ft.failed[what+": "+err.Error()]++
	}
}

func (ft *faultTally) okCount(what string) int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.ok[what]
}

func (ft *faultTally) failedCount(what, code string) int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.failed[what+": "+code]
}

func (ft *faultTally) report(t *testing.T, phase string) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	t.Logf("%s: calls ok %v; failed %v; hung %d %v", phase, ft.ok, ft.failed, len(ft.hung), ft.hung)
}

// faultLoad drives calls and enqueues until stopped, counting into the
// tally of the current phase.
type faultLoad struct {
	t     *testing.T
	stop  chan struct{}
	wg    sync.WaitGroup
	tally atomic.Pointer[faultTally]

	mu        sync.Mutex
	acked     map[string]bool // job ids whose enqueue was acknowledged
	delivered map[string]int  // job id → deliveries
	newDeliv  chan struct{}
}

func newFaultLoad(t *testing.T) *faultLoad {
	l := &faultLoad{t: t, stop: make(chan struct{}), acked: map[string]bool{}, delivered: map[string]int{}, newDeliv: make(chan struct{}, 1)}
	l.tally.Store(newFaultTally())
	return l
}

// phase starts a new tally and returns the previous one.
func (l *faultLoad) phase() *faultTally { return l.tally.Swap(newFaultTally()) }

// call makes calls of fn through c (the caller named who) until stopped.
func (l *faultLoad) call(c *sluice.Client, who, fn string) {
	l.wg.Go(func() {
		for l.paced() {
			ctx, cancel := context.WithTimeout(context.Background(), faultCallBound)
			_, err := c.Trigger(ctx, fn, map[string]string{"from": who})
			l.tally.Load().record(who+"→"+fn, err, ctx)
			cancel()
		}
	})
}

// produce enqueues jobs of fn through c until stopped, each with a unique
// id, remembering the acknowledged ones.
func (l *faultLoad) produce(c *sluice.Client, who, fn string) {
	l.wg.Go(func() {
		for n := 0; l.paced(); n++ {
			id := fmt.Sprintf("%s-%d", who, n)
			ctx, cancel := context.WithTimeout(context.Background(), faultCallBound)
			_, err := c.Enqueue(ctx, "default", fn, map[string]string{"id": id})
			if err == nil {
				l.mu.Lock()
				l.acked[id] = true
				l.mu.Unlock()
			}
			l.tally.Load().record(who+" enqueue", err, ctx)
			cancel()
		}
	})
}

// faultWork stands for a handler's work, so that a node holds jobs and
// calls in flight when it fails.
func faultWork(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(20 * time.Millisecond):
	}
}

func (l *faultLoad) paced() bool {
	select {
	case <-l.stop:
		return false
	case <-time.After(faultPace):
		return true
	}
}

// consume registers fn on c as a job consumer recording each delivery,
// each taking work.
func (l *faultLoad) consume(c *sluice.Client, fn string, work time.Duration) {
	if err := sluice.Register(c, fn, func(ctx context.Context, in struct{ ID string }) (any, error) {
		l.mu.Lock()
		l.delivered[in.ID]++
		l.mu.Unlock()
		select {
		case l.newDeliv <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
		case <-time.After(work):
		}
		return nil, nil
	}); err != nil {
		l.t.Fatal(err)
	}
}

// finish stops the load and waits (bounded) until every acknowledged job
// was delivered; it returns the ids of those never delivered, the number
// delivered more than once, and the outcomes of the calls that were in
// flight when the load stopped.
func (l *faultLoad) finish(d time.Duration) (acked int, lost []string, dups int, last *faultTally) {
	close(l.stop)
	l.wg.Wait()
	last = l.phase()
	deadline := time.After(d)
	for {
		l.mu.Lock()
		lost = lost[:0]
		for id := range l.acked {
			if l.delivered[id] == 0 {
				lost = append(lost, id)
			}
		}
		acked = len(l.acked)
		dups = 0
		for _, k := range l.delivered {
			if k > 1 {
				dups++
			}
		}
		l.mu.Unlock()
		if len(lost) == 0 {
			return acked, nil, dups, last
		}
		select {
		case <-l.newDeliv:
		case <-deadline:
			slices.Sort(lost)
			return acked, lost, dups, last
		}
	}
}

// until polls cond every 20 ms (the load goroutines make the events it
// waits for), failing the test with what after d.
func faultUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkFaultTally fails the test for a hung call or an error that is not a
// clear engine error among allowed codes.
func checkFaultTally(t *testing.T, phase string, ft *faultTally, allowed ...string) {
	t.Helper()
	ft.report(t, phase)
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if len(ft.hung) > 0 {
		t.Errorf("%s: %d calls hung (no answer within %v): %v", phase, len(ft.hung), faultCallBound, ft.hung)
	}
	for k, n := range ft.failed {
		code := k[strings.LastIndex(k, ": ")+2:]
		if !slices.Contains(allowed, code) {
			t.Errorf("%s: %d calls failed with %q, not one of the clear errors %v", phase, n, k, allowed)
		}
	}
}

// noFaultFailures fails the test for any failed call of whats (calls
// between nodes that stay up and connected must keep working).
func noFaultFailures(t *testing.T, phase string, ft *faultTally, whats ...string) {
	t.Helper()
	ft.mu.Lock()
	defer ft.mu.Unlock()
	for k, n := range ft.failed {
		if slices.Contains(whats, k[:strings.LastIndex(k, ": ")]) {
			t.Errorf("%s: %d calls %s between nodes that stayed up and connected", phase, n, k)
		}
	}
}

// faultLogMark is the index the next line of l will have.
func faultLogMark(l *lineLog) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped + len(l.lines)
}

// faultLogSince waits for a line of l from index mark on that match accepts.
func faultLogSince(ctx context.Context, l *lineLog, mark int, match func(string) bool) error {
	l.mu.Lock()
	i := l.dropped // wait visits every kept line once, oldest first
	l.mu.Unlock()
	_, err := l.wait(ctx, func(s string) bool {
		i++
		return i > mark && match(s)
	})
	return err
}

// faultLogHas reports whether l has a line from index mark on that match
// accepts, now.
func faultLogHas(l *lineLog, mark int, match func(string) bool) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range l.lines {
		if l.dropped+i >= mark && match(s) {
			return s
		}
	}
	return ""
}

// ---------------------------------------------------------------- tests

// TestClusterFaultKillUnderLoad: three nodes; Go callers on nodes 0 and 1
// call a function served only on each node (fault::n0, n1, n2) and one of a
// Node SDK 0.22.1 worker on node 2, while Go producers on nodes 0 and 1
// enqueue jobs consumed on every node. Node 2's workers connect through a
// load balancer (a proxy to node 2, else node 0). Node 2 is SIGKILLed under
// this load: no call hangs, calls between nodes 0 and 1 never fail, calls
// to node 2 fail with invocation_stopped or function_not_found until its
// workers re-register on node 0 through the balancer, then succeed; every
// acknowledged job is delivered (those node 2 held once more).
// On 7bf40b1 this passed as well: it guards the kill path.
func TestClusterFaultKillUnderLoad(t *testing.T) {
	nodes := startClusterEngines(t, 3, "--cluster-node-timeout", "2s")
	ctx := ctxFor(t, 60*time.Second)
	lb := newFaultProxy(t, nodes[2].Addr, nodes[0].Addr)
	viaLB := &engineProc{proc: nodes[2].proc, URL: "ws://" + lb.addr(), Addr: lb.addr()}
	load := newFaultLoad(t)

	for i := range 3 {
		on := nodes[i]
		if i == 2 {
			on = viaLB
		}
		w := connectGo(t, on, fmt.Sprintf("worker-of-node-%d", i))
		fn := fmt.Sprintf("fault::n%d", i)
		if err := sluice.Register(w, fn, func(ctx context.Context, in struct{ From string }) (any, error) {
			faultWork(ctx)
			return "ok", nil
		}); err != nil {
			t.Fatal(err)
		}
		// Node 2's consumer is slower: it holds jobs when it dies.
		load.consume(w, "fault::job", map[bool]time.Duration{false: 20 * time.Millisecond, true: 200 * time.Millisecond}[i == 2])
		waitFunctions(ctx, t, w, fn, "fault::job")
	}
	startWorker(t, flavourNamed("node-0.22.1"), viaLB, "worker.mjs", "sdk2", "SEEDS=0")

	fns := []string{"fault::n0", "fault::n1", "fault::n2", "sdk2::echo"}
	for i := range 2 {
		who := fmt.Sprintf("node-%d", i)
		c := connectGo(t, nodes[i], "caller-on-"+who)
		waitFunctions(ctx, t, c, fns...)
		for _, fn := range fns {
			load.call(c, who, fn)
		}
		load.produce(connectGo(t, nodes[i], "producer-on-"+who), who, "fault::job")
	}
	// Node 2's own jobs are handed to its consumer, leased by node 2.
	load.produce(connectGo(t, viaLB, "producer-on-node-2"), "node-2", "fault::job")
	// Warm: every caller has had an answer from every function.
	faultUntil(t, 20*time.Second, "not every function answered every caller", func() bool {
		for i := range 2 {
			for _, fn := range fns {
				if load.tally.Load().okCount(fmt.Sprintf("node-%d→%s", i, fn)) == 0 {
					return false
				}
			}
		}
		return true
	})
	checkFaultTally(t, "before the kill", load.phase(), "function_not_found")

	nodes[2].kill()
	killed := time.Now()
	// Node 2's workers come back through the balancer on node 0: calls to
	// their functions are answered again.
	faultUntil(t, 20*time.Second, "calls to node 2's functions never answered again after it died", func() bool {
		ft := load.tally.Load()
		return ft.okCount("node-1→fault::n2") > 0 && ft.okCount("node-1→sdk2::echo") > 0 && ft.okCount("node-0→fault::n2") > 0
	})
	t.Logf("node 2's functions answered again %v after the kill", time.Since(killed).Round(time.Millisecond))
	// The surviving nodes store jobs again (once JetStream has elected
	// leaders for what node 2 led).
	faultUntil(t, 20*time.Second, "the surviving nodes stored no job after the kill", func() bool {
		ft := load.tally.Load()
		return ft.okCount("node-0 enqueue") > 0 && ft.okCount("node-1 enqueue") > 0 && ft.okCount("node-2 enqueue") > 0
	})
	t.Logf("every producer stored jobs again %v after the kill", time.Since(killed).Round(time.Millisecond))
	// JetStream may still be electing leaders (an enqueue then answers
	// enqueue_error at its 5 s bound): "after" starts once both surviving
	// nodes have written node 2's takeover to the bucket.
	for i := range 2 {
		if _, err := nodes[i].stderr.wait(ctxWithin(ctx, 20*time.Second), func(s string) bool {
			return strings.Contains(s, `msg="cluster node's jobs taken over" node=node-2`) ||
				strings.Contains(s, `msg="cluster node left" node=node-2`) && strings.Contains(s, "err=<nil>")
		}); err != nil {
			t.Fatalf("node-%d never took over node-2's jobs: %v", i, err)
		}
	}
	t.Logf("both surviving nodes took node 2's jobs over %v after the kill", time.Since(killed).Round(time.Millisecond))
	during := load.phase()
	// More load on the surviving nodes once all is back.
	faultUntil(t, 10*time.Second, "the surviving nodes did not serve after the kill", func() bool {
		return load.tally.Load().okCount("node-0→fault::n1") > 20
	})
	after := load.phase()
	acked, lost, dups, last := load.finish(25 * time.Second)
	t.Logf("jobs: %d acknowledged, %d lost %v, %d delivered more than once", acked, len(lost), lost, dups)
	checkFaultTally(t, "in flight at the end", last, "function_not_found")
	for i := range 2 {
		// The load may have recovered before node_timeout has passed.
		line, err := nodes[i].stderr.wait(ctxWithin(ctx, 10*time.Second), func(s string) bool {
			return strings.Contains(s, `msg="cluster node left" node=node-2`)
		})
		if err != nil {
			t.Errorf("node-%d never declared node-2 gone: %v", i, err)
			continue
		}
		t.Logf("node-%d: %s", i, line)
	}
	checkFaultTally(t, "from the kill until node 2's workers re-registered", during, "invocation_stopped", "function_not_found", "enqueue_error")
	checkFaultTally(t, "after", after, "function_not_found")
	noFaultFailures(t, "from the kill until node 2's workers re-registered", during, "node-0→fault::n1", "node-1→fault::n0", "node-0→fault::n0", "node-1→fault::n1")
	for i := range 2 {
		for _, fn := range []string{"fault::n0", "fault::n1"} {
			if during.okCount(fmt.Sprintf("node-%d→%s", i, fn)) == 0 {
				t.Errorf("node-%d→%s: no call answered while node 2 was down", i, fn)
			}
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged jobs never delivered: %v", len(lost), lost)
	}
	if ctx.Err() != nil {
		t.Fatal("test bound exceeded")
	}
}

// TestClusterFaultPartition: three nodes whose NATS routes go through
// proxies of the test. Node 2 holds a queue job (its handler still runs)
// when every link to and from it is cut; it keeps running. Meanwhile Go
// callers on each node call a function served only on each node, and Go
// producers on each node enqueue jobs consumed on every node. While cut:
// no call or enqueue hangs; calls between node 2 and the others fail
// clearly; the others declare node 2 gone and deliver the job it held to
// node 0. Healed: the routes come back through the proxies, each side
// logs the other joining, node 2 lists (and calls) a function registered
// on node 0 after healing, calls across work again, and every acknowledged
// job is delivered. Nodes 0 and 1 never take each other for gone, nor does
// node 2 take over their jobs, and calls between them never fail.
// On 7bf40b1: node 1 took node 0 for gone while JetStream elected a leader
// after the cut (no heartbeat could be written) and took over 154 of its
// leased jobs, the job node 2 held was not delivered within 15 s, node 2
// took over a job of node 1 right after healing, and an enqueue on node 0
// hung past the 8 s bound (the store retried without end).
func TestClusterFaultPartition(t *testing.T) {
	fc := startFaultCluster(t, 3, "--cluster-node-timeout", "2s")
	nodes := fc.nodes
	ctx := ctxFor(t, 60*time.Second)
	load := newFaultLoad(t)

	// Node 2 holds a job of fault::held when it is cut off.
	holder := connectGo(t, nodes[2], "holder-on-node-2")
	holding := make(chan struct{}, 1)
	if err := sluice.Register(holder, "fault::held", func(hctx context.Context, in struct{ N int }) (any, error) {
		holding <- struct{}{}
		select { // until node 2's engine gives up on it, or the test ends
		case <-hctx.Done():
		case <-ctx.Done():
		}
		return nil, errors.New("held")
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, holder, "fault::held")

	fns := []string{"fault::p0", "fault::p1", "fault::p2"}
	for i := range 3 {
		w := connectGo(t, nodes[i], fmt.Sprintf("worker-of-node-%d", i))
		if err := sluice.Register(w, fns[i], func(ctx context.Context, in struct{ From string }) (any, error) {
			faultWork(ctx)
			return "ok", nil
		}); err != nil {
			t.Fatal(err)
		}
		load.consume(w, "fault::job", 20*time.Millisecond)
		waitFunctions(ctx, t, w, fns[i], "fault::job")
	}
	producer := connectGo(t, nodes[0], "held-producer-on-node-0")
	if _, err := producer.Enqueue(ctx, "default", "fault::held", map[string]int{"n": 7}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-holding:
	case <-time.After(20 * time.Second):
		// Seen on a fresh cluster under load, before any fault: node 2's
		// lease reads answered "no responders" for over a minute.
		line := faultLogHas(nodes[2].stderr, 0, func(s string) bool { return strings.Contains(s, `msg="lease failed"`) })
		t.Fatalf("node 2 never got the held job (its last lease failure, if any: %s)", line)
	}
	taker := connectGo(t, nodes[0], "taker-on-node-0")
	takenOver := make(chan int, 4)
	if err := sluice.Register(taker, "fault::held", func(ctx context.Context, in struct{ N int }) (any, error) {
		takenOver <- in.N
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}

	callers := make([]*sluice.Client, 3)
	for i := range 3 {
		who := fmt.Sprintf("node-%d", i)
		callers[i] = connectGo(t, nodes[i], "caller-on-"+who)
		waitFunctions(ctx, t, callers[i], fns...)
		for _, fn := range fns {
			load.call(callers[i], who, fn)
		}
		load.produce(connectGo(t, nodes[i], "producer-on-"+who), who, "fault::job")
	}
	faultUntil(t, 20*time.Second, "not every function answered every caller", func() bool {
		for i := range 3 {
			for _, fn := range fns {
				if load.tally.Load().okCount(fmt.Sprintf("node-%d→%s", i, fn)) == 0 {
					return false
				}
			}
		}
		return true
	})
	checkFaultTally(t, "before the partition", load.phase(), "function_not_found")

	cutMarks := make([]int, 3)
	for i, n := range nodes {
		cutMarks[i] = faultLogMark(n.stderr)
	}
	closed := fc.partition(2, true)
	cut := time.Now()
	gossiped := int64(0)
	for _, sink := range fc.sinks {
		gossiped += sink.refused.Load()
	}
	t.Logf("partition: %d route connections to and from node 2 closed; %d connections to gossiped route addresses refused", closed, gossiped)
	select {
	case n := <-takenOver:
		t.Logf("the job node 2 held was delivered on node 0 %v after the cut", time.Since(cut).Round(time.Millisecond))
		if n != 7 {
			t.Fatalf("taken-over job carried %d", n)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the job node 2 held when it was cut off was never delivered on node 0")
	}
	// Calls across the cut fail clearly, on both sides; the majority side
	// stores jobs (once JetStream has a leader there).
	faultUntil(t, 15*time.Second, "calls across the cut did not fail (or not on both sides), or the majority stored no job", func() bool {
		ft := load.tally.Load()
		return ft.failedCount("node-0→fault::p2", "function_not_found")+ft.failedCount("node-0→fault::p2", "invocation_stopped") > 0 &&
			ft.failedCount("node-2→fault::p0", "function_not_found")+ft.failedCount("node-2→fault::p0", "invocation_stopped") > 0 &&
			ft.okCount("node-0 enqueue") > 0 && ft.okCount("node-1 enqueue") > 0
	})
	// Both sides see the cut (the minority too: it notices the majority
	// silent only after the node timeout), so that healing is a rejoin on
	// both sides. A cut shorter than that is another case: there node 2
	// kept node 0 as a member while dropping its functions, and calls
	// across answered again only 30 s after healing (left for a test of
	// its own; see the session 12 notes).
	for _, peer := range []int{0, 1} {
		if err := faultLogSince(ctxWithin(ctx, 15*time.Second), nodes[2].stderr, cutMarks[2], func(s string) bool {
			return strings.Contains(s, `msg="cluster node left" node=node-`+fmt.Sprint(peer))
		}); err != nil {
			t.Fatalf("node-2 never logged node-%d leaving while cut off: %v", peer, err)
		}
	}
	t.Logf("cut off for %v", time.Since(cut).Round(time.Millisecond))
	cutTally := load.phase()

	healMarks := make([]int, 3)
	for i, n := range nodes {
		healMarks[i] = faultLogMark(n.stderr)
	}
	fc.partition(2, false)
	healed := time.Now()
	for _, pair := range [][2]int{{0, 2}, {2, 0}, {2, 1}} {
		if err := faultLogSince(ctxWithin(ctx, 15*time.Second), nodes[pair[0]].stderr, healMarks[pair[0]], func(s string) bool {
			return strings.Contains(s, `msg="cluster node joined" node=node-`+fmt.Sprint(pair[1]))
		}); err != nil {
			t.Errorf("node-%d never logged node-%d joining again after the partition healed", pair[0], pair[1])
		}
	}
	faultUntil(t, 30*time.Second, "calls across did not work again after the partition healed", func() bool {
		ft := load.tally.Load()
		return ft.okCount("node-0→fault::p2") > 0 && ft.okCount("node-2→fault::p0") > 0 && ft.okCount("node-2 enqueue") > 0
	})
	t.Logf("calls across answered again %v after healing", time.Since(healed).Round(time.Millisecond))
	// JetStream may still change leaders after that (node 2 comes back
	// with a higher raft term, and the majority's leader steps down): an
	// enqueue then answers enqueue_error at its 5 s bound, seconds after
	// calls work again. Healing lasts until no enqueue has failed for longer
	// than that bound, so that "healed" measures the healed cluster.
	lastErrs, lastChange := -1, time.Now()
	faultUntil(t, 60*time.Second, "enqueues kept failing after the partition healed", func() bool {
		ft := load.tally.Load()
		errs := 0
		for i := range nodes {
			errs += ft.failedCount(fmt.Sprintf("node-%d enqueue", i), "enqueue_error")
		}
		if errs != lastErrs {
			lastErrs, lastChange = errs, time.Now()
		}
		return time.Since(lastChange) > 6*time.Second
	})
	t.Logf("enqueues settled %v after healing", time.Since(healed).Round(time.Millisecond))
	healTally := load.phase()

	// Node 2 hears node 0's heartbeats again: a function registered on
	// node 0 now is listed on node 2 with its node, and callable there.
	late := connectGo(t, nodes[0], "late-on-node-0")
	if err := sluice.Register(late, "fault::late0", func(ctx context.Context, in struct{}) (any, error) { return "late", nil }); err != nil {
		t.Fatal(err)
	}
	lctx := ctxWithin(ctx, 15*time.Second)
	for listed := false; !listed; {
		out, err := sluice.Call[struct {
			Functions []struct {
				Node string `json:"node"`
			} `json:"functions"`
		}](lctx, callers[2], "engine::functions::list", map[string]any{"prefix": "fault::late0"})
		listed = err == nil && len(out.Functions) == 1 && out.Functions[0].Node == "node-0"
		if !listed && lctx.Err() != nil {
			t.Fatalf("node 2 never listed the function registered on node 0 after healing (%+v, %v): it does not hear node 0's heartbeats", out, err)
		}
	}
	if raw, err := callers[2].Trigger(lctx, "fault::late0", nil); err != nil || string(raw) != `"late"` {
		t.Fatalf("node 2 calling node 0's new function after healing: %s %v", raw, err)
	}
	faultUntil(t, 10*time.Second, "the healed cluster did not serve", func() bool {
		ft := load.tally.Load()
		return ft.okCount("node-1→fault::p2") > 5 && ft.okCount("node-2→fault::p1") > 5
	})
	after := load.phase()
	acked, lost, dups, last := load.finish(45 * time.Second) // past the 30 s invocation timeout and a retry: a delivery whose answer the cut lost is retried only then
	t.Logf("jobs: %d acknowledged, %d lost %v, %d delivered more than once", acked, len(lost), lost, dups)
	checkFaultTally(t, "in flight at the end", last)
	checkFaultTally(t, "cut off", cutTally, "invocation_stopped", "function_not_found", "enqueue_error")
	checkFaultTally(t, "healing", healTally, "invocation_stopped", "function_not_found", "enqueue_error")
	checkFaultTally(t, "healed", after)
	majority := []string{"node-0→fault::p0", "node-0→fault::p1", "node-1→fault::p0", "node-1→fault::p1", "node-2→fault::p2"}
	noFaultFailures(t, "cut off", cutTally, majority...)
	noFaultFailures(t, "healing", healTally, majority...)
	// Neither node of the majority took the other for gone, and node 2
	// took over none of their jobs (they held their leases throughout).
	for _, pair := range [][2]int{{0, 1}, {1, 0}, {2, 0}, {2, 1}} {
		if line := faultLogHas(nodes[pair[0]].stderr, cutMarks[pair[0]], func(s string) bool {
			return strings.Contains(s, "node=node-"+fmt.Sprint(pair[1])) && strings.Contains(s, "jobs_taken_over=") &&
				(pair[0] != 2 || !strings.Contains(s, "jobs_taken_over=0"))
		}); line != "" && (pair[0] != 2 || true) {
			if pair[0] != 2 {
				t.Errorf("node-%d took node-%d, which stayed up and connected to it, for gone: %s", pair[0], pair[1], line)
			} else {
				t.Errorf("node-%d, cut off, took over jobs of node-%d, which lived on: %s", pair[0], pair[1], line)
			}
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged jobs never delivered: %v", len(lost), lost)
	}
	if ctx.Err() != nil {
		t.Fatal("test bound exceeded")
	}
}

// ctxWithin is ctx bounded by d more.
func ctxWithin(ctx context.Context, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(ctx, d)
	time.AfterFunc(d, cancel)
	return c
}
