package engine

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/wire"
)

// TestValidHostPortBounds: ports 0 and 65535 are valid, 65536 and -1 are
// not. Kills metrics.go:24 (`n <= 65535` → `< 65535`; the other
// comparisons of the line were already killed).
func TestValidHostPortBounds(t *testing.T) {
	for s, want := range map[string]bool{
		"127.0.0.1:0": true, "127.0.0.1:65535": true, "[::1]:3113": true, "localhost:3113": true,
		"127.0.0.1:65536": false, "127.0.0.1:-1": false, "127.0.0.1:x": false, "127.0.0.1": false,
	} {
		if got := validHostPort(s); got != want {
			t.Errorf("validHostPort(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestMetricsQueueGauges: /metrics lists each queue's gauges, a function
// queue under its name and a durable topic under __topic::<topic>. Kills
// metrics.go:43 (`s != nil` negated: no queue gauges), :48 (`BrokerType ==
// "topic"` negated: the topic's gauges under its bare name, the queue's
// under the prefix), :51 (`err == nil` negated: no gauges) and, on the
// SQLite store, whose reads heed their context, :44 (`5*time.Second` →
// `5/time.Second`: a context already expired).
func TestMetricsQueueGauges(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testMetricsQueueGauges(t, DataDirMemory) })
	t.Run("sqlite", func(t *testing.T) { testMetricsQueueGauges(t, t.TempDir()) })
}

func testMetricsQueueGauges(t *testing.T, dataDir string) {
	e := startEngine(t, func(c *Config) {
		c.DataDir = dataDir
		c.Queues = map[string]QueueConfig{"jobs": DefaultQueueConfig()}
	})
	holdQueueJobs(t, e)
	// The enqueue was answered once stored and the delivery leased before
	// it was sent: both are counted now.
	rec := httptest.NewRecorder()
	e.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, l := range []string{`sluice_queue_depth{queue="jobs"} 1`, `sluice_queue_in_flight{queue="__topic::orders"} 1`} {
		if !strings.Contains(body, l+"\n") {
			t.Errorf("/metrics lacks %q", l)
		}
	}
	if strings.Contains(body, `{queue="orders"}`) || strings.Contains(body, `{queue="__topic::jobs"}`) {
		t.Errorf("a queue under the wrong name")
	}
	if t.Failed() {
		t.Log(body)
	}
}

// TestListenersCloseSlowHeaders: a client that starts a request and never
// finishes its headers is cut off after ReadHeaderTimeout (10 s) on the
// worker, HTTP and console listeners (slowloris). Kills engine.go:226 and
// metrics.go:85 (`10 * time.Second` → `10 / time.Second`, which is 0: no
// header timeout, the connection held for ever).
func TestListenersCloseSlowHeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 10 s")
	}
	e := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0" })
	done := make(chan string, 3)
	for name, u := range map[string]string{"worker": e.WorkerURL(), "http": e.HTTPURL(), "console": e.ConsoleURL()} {
		addr := u[strings.Index(u, "//")+2:]
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
			t.Fatal(err)
		}
		go func() {
			// The server answers 408 or just closes; either way the read ends.
			_ = conn.SetReadDeadline(time.Now().Add(25 * time.Second))
			_, err := io.ReadAll(bufio.NewReader(conn))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				done <- name + ": still open after 25 s"
				return
			}
			done <- ""
		}()
	}
	for range 3 {
		if msg := <-done; msg != "" {
			t.Error(msg)
		}
	}
	if res, err := http.Get(e.ConsoleURL() + "/healthz"); err != nil || res.StatusCode != 200 {
		t.Fatalf("console after the slow clients: %v %v", res, err)
	}
}

// holdQueueJobs leaves one job in flight on the durable topic "orders"'s
// queue (delivered to sub::a, never answered) and one waiting on "jobs"
// (its function, q::nobody, is not registered). The engine must have the
// queue "jobs".
func holdQueueJobs(t *testing.T, e *Engine) {
	t.Helper()
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"sub::a"}`)
	w.sendJSON(`{"type":"registertrigger","id":"ta","trigger_type":"durable:subscriber","function_id":"sub::a","config":{"topic":"orders"}}`)
	c := &queueCaller{w: dialRaw(t, e)}
	// Asked on w: its read loop handles the trigger before this call, so
	// the subscription exists before the publish (asked on another
	// connection, the function could show while the trigger was still
	// queued on w, and the publish then stored no copy).
	waitFunction(t, w, "sub::a")
	if res := c.call(fnDurablePublish, `{"topic":"orders","data":{"o":1}}`); res.Error != nil {
		t.Fatalf("publish: %+v", res)
	}
	// Delivered, never answered: in flight on the topic's queue.
	w.awaitInvoke("sub::a", func(wire.Message) bool { return true })
	// A job for a function nobody registered waits on "jobs".
	c.w.sendJSON(`{"type":"invokefunction","invocation_id":"e1","function_id":"q::nobody","data":{"n":1},"action":{"type":"enqueue","queue":"jobs"}}`)
	if res := c.w.await(func(m wire.Message) bool { return m.Type == wire.TypeInvocationResult && m.InvocationID == "e1" }); res.Error != nil {
		t.Fatalf("enqueue: %+v", res)
	}
}
