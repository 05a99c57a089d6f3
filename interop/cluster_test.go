package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice"
)

// clusterStartTimeout bounds the start of a cluster: the nodes' JetStream
// must elect a meta leader before any engine listens.
const clusterStartTimeout = 90 * time.Second

// clusterFreePorts reserves n loopback ports for NATS routes (closed again
// before the engines bind them).
func clusterFreePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// startClusterEngines runs n engine processes as one cluster with embedded
// NATS routed to each other. They start together: each waits for the
// others' JetStream before it listens.
func startClusterEngines(t *testing.T, n int, extraArgs ...string) []*engineProc {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building the engine: %v", buildErr)
	}
	routes := clusterFreePorts(t, n)
	dir := t.TempDir()
	procs := make([]*proc, n)
	for i := range n {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		procs[i] = startClusterNode(t, dir, i, routes[i], peers, extraArgs...)
	}
	return awaitClusterNodes(t, procs)
}

// startClusterNode starts engine process node-i of a cluster: its NATS
// routes listen on listen and dial peers.
func startClusterNode(t *testing.T, dir string, i int, listen string, peers []string, extraArgs ...string) *proc {
	t.Helper()
	name := fmt.Sprintf("node-%d", i)
	cmd := exec.Command(engineBin, "serve", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0", "--streams-addr", "127.0.0.1:0",
		"--log-level", "info", "--data-dir", filepath.Join(dir, name), "--node-name", name,
		"--cluster-listen", listen, "--cluster-peers", strings.Join(peers, ","))
	cmd.Args = append(cmd.Args, extraArgs...)
	cmd.Env = append(os.Environ(), "SLUICE_CONFIG=", "SLUICE_CLUSTER_SECRET=interop-route-secret-0123")
	return startProc(t, "engine "+name, cmd)
}

// awaitClusterNodes waits for each node to listen and to log its cluster
// of 3 replicas.
func awaitClusterNodes(t *testing.T, procs []*proc) []*engineProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	out := make([]*engineProc, len(procs))
	for i, p := range procs {
		line, err := p.stderr.wait(ctx, startedRE.MatchString)
		if err != nil {
			t.Fatalf("engine node-%d did not start: %v", i, p.exitNote(err))
		}
		if _, err := p.stderr.wait(ctx, func(s string) bool {
			return strings.Contains(s, `msg="cluster node ready"`) && strings.Contains(s, "replicas=3")
		}); err != nil {
			t.Fatalf("node-%d did not log its cluster with 3 replicas: %v", i, err)
		}
		m := startedRE.FindStringSubmatch(line)
		out[i] = &engineProc{proc: p, URL: m[1], Addr: m[2], HTTPURL: m[3]}
	}
	return out
}

// TestClusterQueueAndState: three engine processes with embedded NATS
// routes. A job enqueued through node 0 is delivered to the only consumer,
// connected to node 2 (every job, none twice in this clean run); a state
// value written through node 0 is read through node 2; increments through
// all three nodes at once lose none (JetStream KV compare-and-set).
// A job for a function that registers later, on node 1, goes there; a
// queue defined through node 0 at run time is usable through node 2.
// Then cross-node calls (clusterCalls).
// Before this branch there was no cluster mode: the flags were unknown.
func TestClusterQueueAndState(t *testing.T) {
	nodes := startClusterEngines(t, 3)
	clusterQueueAndState(t, nodes)
	clusterCalls(t, nodes)
}

func clusterQueueAndState(t *testing.T, nodes []*engineProc) {
	ctx := ctxFor(t, 90*time.Second)

	consumer := connectGo(t, nodes[2], "consumer-on-node-2")
	const jobs = 30
	got := make(chan int, jobs*2)
	if err := sluice.Register(consumer, "cluster::job", func(ctx context.Context, in struct{ N int }) (any, error) {
		got <- in.N
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, consumer, "cluster::job")

	producer := connectGo(t, nodes[0], "producer-on-node-0")
	// A job for a function no node serves yet waits, and goes to the node
	// where it registers later.
	if _, err := producer.Enqueue(ctx, "default", "cluster::late", map[string]int{"n": -1}); err != nil {
		t.Fatal(err)
	}
	for i := range jobs {
		if _, err := producer.Enqueue(ctx, "default", "cluster::job", map[string]int{"n": i}); err != nil {
			t.Fatalf("enqueue %d through node 0: %v", i, err)
		}
	}
	seen := map[int]int{}
	for len(seen) < jobs {
		select {
		case n := <-got:
			seen[n]++
		case <-ctx.Done():
			t.Fatalf("the consumer on node 2 got %d of %d jobs enqueued on node 0", len(seen), jobs)
		}
	}
	for n, k := range seen {
		if k != 1 {
			t.Errorf("job %d delivered %d times in a run without failures", n, k)
		}
	}

	// queue::define through node 0 declares the queue on node 2 as well
	// (retry while node 2 has not heard of it yet).
	if _, err := producer.Trigger(ctx, "queue::define", map[string]any{"name": "clq", "max_retries": 2}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := consumer.Enqueue(ctx, "clq", "cluster::job", map[string]int{"n": 1000})
		if err == nil {
			break
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("enqueue on node 2 to the queue defined on node 0: %v", err)
		}
	}
	for n := 0; n != 1000; {
		select {
		case n = <-got:
		case <-ctx.Done():
			t.Fatal("the job of the queue defined on node 0 was not delivered")
		}
	}

	late := connectGo(t, nodes[1], "late-on-node-1")
	lateGot := make(chan int, 2)
	if err := sluice.Register(late, "cluster::late", func(ctx context.Context, in struct{ N int }) (any, error) {
		lateGot <- in.N
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-lateGot:
		if n != -1 {
			t.Fatalf("late job payload %d", n)
		}
	case <-ctx.Done():
		t.Fatal("a job enqueued on node 0 before its function registered on node 1 was not delivered there")
	}

	// State written on node 0, read on node 2.
	if _, err := producer.Trigger(ctx, "state::set", map[string]any{"scope": "cl", "key": "k", "value": map[string]string{"from": "node-0"}}); err != nil {
		t.Fatal(err)
	}
	raw, err := consumer.Trigger(ctx, "state::get", map[string]string{"scope": "cl", "key": "k"})
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(raw, &v); err != nil || v["from"] != "node-0" {
		t.Fatalf("state::get on node 2: %s %v, want {\"from\":\"node-0\"}", raw, err)
	}

	// Increments through every node at once.
	clients := []*sluice.Client{producer, connectGo(t, nodes[1], "incr-on-node-1"), consumer}
	const each = 40
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for _, c := range clients {
		wg.Go(func() {
			for range each {
				if _, err := c.Trigger(ctx, "state::update", map[string]any{"scope": "cl", "key": "count",
					"ops": []map[string]any{{"type": "increment", "path": "n", "by": 1}}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	raw, err = clients[1].Trigger(ctx, "state::get", map[string]string{"scope": "cl", "key": "count"})
	if err != nil {
		t.Fatal(err)
	}
	var cnt struct{ N int }
	if err := json.Unmarshal(raw, &cnt); err != nil || cnt.N != len(clients)*each {
		t.Fatalf("counter after %d increments through 3 nodes: %s %v", len(clients)*each, raw, err)
	}
}

// clusterCalls: a function served only by a worker on node 2 is called
// from a client on node 0 (result, handler error, void call) and listed by
// node 0's engine::functions::list with its node (and its worker by
// engine::workers::list); a publish through node 0 reaches a subscriber
// bound on node 2; a function
// no node serves is function_not_found at once; a function served on nodes
// 1 and 2 shares the calls of node 0 between them.
func clusterCalls(t *testing.T, nodes []*engineProc) {
	ctx := ctxFor(t, 60*time.Second)
	callee := connectGo(t, nodes[2], "callee-on-node-2")
	voided := make(chan int, 1)
	if err := sluice.Register(callee, "cluster::echo", func(ctx context.Context, in struct {
		V    int  `json:"v"`
		Fail bool `json:"fail"`
	}) (any, error) {
		if in.Fail {
			return nil, errors.New("failed on purpose")
		}
		return map[string]int{"echo": in.V}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := sluice.Register(callee, "cluster::void", func(ctx context.Context, in struct{ N int }) (any, error) {
		voided <- in.N
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	caller := connectGo(t, nodes[0], "caller-on-node-0")
	// Node 2 offers its new functions to the others asynchronously (a NATS
	// subscription reaching node 0 through the routes): retry while node 0
	// does not know of it yet.
	raw, err := triggerServed(ctx, caller, "cluster::echo", map[string]int{"v": 7})
	if err != nil || string(raw) != `{"echo":7}` {
		t.Fatalf("cross-node call from node 0 to node 2: %s %v", raw, err)
	}
	// Discovery on node 0 lists node 2's function, with its node and worker
	// (node 2's heartbeat carries it: retry until it arrived).
	for {
		out, err := sluice.Call[struct {
			Functions []struct {
				FunctionID string `json:"function_id"`
				WorkerName string `json:"worker_name"`
				Node       string `json:"node"`
			} `json:"functions"`
		}](ctx, caller, "engine::functions::list", map[string]any{"prefix": "cluster::echo"})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Functions) == 1 {
			if f := out.Functions[0]; f.Node != "node-2" || f.WorkerName != "callee-on-node-2" {
				t.Fatalf("node 0 lists node 2's function as %+v", f)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("node 0's engine::functions::list never showed node 2's function: %+v", out.Functions)
		}
	}
	// engine::workers::list on node 0 shows node 2's worker with its node
	// (as of node 2's next heartbeat).
	for found := false; !found; {
		out, err := sluice.Call[struct {
			Workers []struct {
				Name *string `json:"name"`
				Node string  `json:"node"`
			} `json:"workers"`
		}](ctx, caller, "engine::workers::list", map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range out.Workers {
			if w.Name != nil && *w.Name == "callee-on-node-2" {
				if w.Node != "node-2" {
					t.Fatalf("node 0 lists node 2's worker on node %q", w.Node)
				}
				found = true
			}
		}
		if !found && ctx.Err() != nil {
			t.Fatalf("node 0's engine::workers::list never showed node 2's worker: %+v", out.Workers)
		}
	}
	_, err = caller.Trigger(ctx, "cluster::echo", map[string]any{"fail": true})
	if err == nil || !strings.Contains(asError(t, err).Message, "failed on purpose") {
		t.Fatalf("a handler error on node 2 reached node 0 as %v", err)
	}
	if err := caller.TriggerVoid(ctx, "cluster::void", map[string]int{"n": 5}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-voided:
		if n != 5 {
			t.Fatalf("void call carried %d", n)
		}
	case <-ctx.Done():
		t.Fatal("a void call from node 0 never reached node 2")
	}
	_, err = caller.Trigger(ctx, "cluster::nowhere", map[string]int{})
	if err == nil || asError(t, err).Code != "function_not_found" {
		t.Fatalf("a function no node serves: %v, want function_not_found", err)
	}

	// publish through node 0 reaches a subscriber bound on node 2, once.
	heard := make(chan string, 4)
	if err := sluice.Register(callee, "cluster::on_topic", func(ctx context.Context, in struct{ Msg string }) (any, error) {
		heard <- in.Msg
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := callee.RegisterTrigger(sluice.TriggerSpec{Type: "subscribe", FunctionID: "cluster::on_topic", Config: map[string]any{"topic": "cl-topic"}}); err != nil {
		t.Fatal(err)
	}
	// Node 2 reads a connection's messages in order: once a later call of
	// the same client is answered, the binding is in place.
	if _, err := callee.Trigger(ctx, "engine::functions::list", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.Trigger(ctx, "publish", map[string]any{"topic": "cl-topic", "data": map[string]string{"msg": "hello"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-heard:
		if m != "hello" {
			t.Fatalf("subscriber on node 2 got %q", m)
		}
	case <-ctx.Done():
		t.Fatal("a publish through node 0 never reached the subscriber bound on node 2")
	}

	// One function on nodes 1 and 2: node 0's calls are shared.
	served := map[string]int{}
	var mu sync.Mutex
	for i, n := range []*engineProc{nodes[1], nodes[2]} {
		name := fmt.Sprintf("node-%d", i+1)
		c := connectGo(t, n, "shared-on-"+name)
		if err := sluice.Register(c, "cluster::shared", func(ctx context.Context, in struct{}) (any, error) {
			mu.Lock()
			served[name]++
			mu.Unlock()
			return name, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Until both nodes' offers reached node 0 its calls go to one of them:
	// call until both have served, bounded by ctx.
	seen := map[string]bool{}
	for len(seen) < 2 {
		raw, err := caller.Trigger(ctx, "cluster::shared", map[string]int{})
		if ctx.Err() != nil {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("node 0's calls never reached both nodes serving the function: %v", served)
		}
		if err != nil && asError(t, err).Code == "function_not_found" {
			continue // not offered by either node yet
		}
		if err != nil {
			t.Fatalf("shared call: %v", err)
		}
		var who string
		_ = json.Unmarshal(raw, &who)
		seen[who] = true
	}
}

// TestClusterNodeKilledJobTakenOver: node 1 holds a queue job (its worker
// is still running it) and runs a call from node 0 when it is SIGKILLed;
// once the others have not heard from it for --cluster-node-timeout they
// take over its lease, the job is delivered to the same function on node 2,
// and the call ends with invocation_stopped (not TIMEOUT at the 30 s
// invocation timeout). Without the takeover (checked by disabling it) the
// job stayed leased by the dead node until it restarted.
func TestClusterNodeKilledJobTakenOver(t *testing.T) {
	nodes := startClusterEngines(t, 3, "--cluster-node-timeout", "2s")
	ctx := ctxFor(t, 90*time.Second)
	first := connectGo(t, nodes[1], "holder-on-node-1")
	started := make(chan struct{}, 1)
	if err := sluice.Register(first, "cluster::held", func(hctx context.Context, in struct{ N int }) (any, error) {
		started <- struct{}{}
		select { // never answers: node 1 dies holding the job
		case <-hctx.Done():
		case <-ctx.Done():
		}
		return nil, errors.New("unreachable")
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, first, "cluster::held")
	producer := connectGo(t, nodes[0], "producer-on-node-0")
	if _, err := producer.Enqueue(ctx, "default", "cluster::held", map[string]int{"n": 42}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the job never reached node 1")
	}
	second := connectGo(t, nodes[2], "taker-on-node-2")
	got := make(chan int, 1)
	if err := sluice.Register(second, "cluster::held", func(ctx context.Context, in struct{ N int }) (any, error) {
		got <- in.N
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFunctions(ctx, t, second, "cluster::held")
	// A call from node 0 that node 1's worker is running when node 1 dies.
	if err := sluice.Register(first, "cluster::block", func(hctx context.Context, in struct{}) (any, error) {
		started <- struct{}{}
		select {
		case <-hctx.Done():
		case <-ctx.Done():
		}
		return nil, errors.New("unreachable")
	}); err != nil {
		t.Fatal(err)
	}
	callErr := make(chan error, 1)
	go func() {
		for {
			_, err := producer.Trigger(ctx, "cluster::block", map[string]int{})
			var se *sluice.Error
			if errors.As(err, &se) && se.Code == "function_not_found" && ctx.Err() == nil {
				continue // node 1 has not offered it to node 0 yet
			}
			callErr <- err
			return
		}
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the call from node 0 never reached node 1")
	}
	nodes[1].kill()
	select {
	case n := <-got:
		if n != 42 {
			t.Fatalf("taken-over job carried %d", n)
		}
	case <-ctx.Done():
		t.Fatal("the job node 1 held when it was killed was never delivered on node 2")
	}
	select {
	case err := <-callErr:
		var se *sluice.Error
		// (Under load a node's note that it took the call can come late; the
		// call then ends when any node leaves, with a message saying so.)
		if !errors.As(err, &se) || se.Code != "invocation_stopped" || !strings.Contains(se.Message, "left the cluster") {
			t.Fatalf("the call node 1 was running when it died ended with %v, want invocation_stopped (a node left)", err)
		}
	case <-ctx.Done():
		t.Fatal("the call node 1 was running when it died never ended")
	}
	taken := func(s string) bool {
		return (strings.Contains(s, `msg="cluster node left" node=node-1`) || strings.Contains(s, `msg="cluster node's jobs taken over" node=node-1`)) &&
			strings.Contains(s, "jobs_taken_over=1")
	}
	// Node 0 or node 2 took it over (each logs the departure; one wins).
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	found := make(chan bool, 2)
	for _, n := range []*engineProc{nodes[0], nodes[2]} {
		go func() {
			_, err := n.stderr.wait(wctx, taken)
			if err == nil {
				cancel()
			}
			found <- err == nil
		}()
	}
	if a, b := <-found, <-found; !a && !b {
		t.Fatal("neither node 0 nor node 2 logged taking over node 1's job")
	}
}

// triggerServed calls fn through c, again while the engine answers
// function_not_found (the function's offer has not reached c's node yet),
// until ctx ends.
func triggerServed(ctx context.Context, c *sluice.Client, fn string, in any) (json.RawMessage, error) {
	for {
		raw, err := c.Trigger(ctx, fn, in)
		var se *sluice.Error
		if err == nil || !errors.As(err, &se) || se.Code != sluice.CodeFunctionNotFound || ctx.Err() != nil {
			return raw, err
		}
	}
}
