package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSameOriginSchemes: an http or https origin naming the Host is the
// console's own; another scheme or host is not. Kills console.go:155
// (`u.Scheme == "https"` negated: https refused, ftp accepted).
func TestSameOriginSchemes(t *testing.T) {
	for _, c := range []struct {
		origin, host string
		want         bool
	}{
		{"http://127.0.0.1:3113", "127.0.0.1:3113", true},
		{"https://127.0.0.1:3113", "127.0.0.1:3113", true},
		{"https://LOCALHOST:3113", "localhost:3113", true},
		{"ftp://127.0.0.1:3113", "127.0.0.1:3113", false},
		{"https://evil.example", "127.0.0.1:3113", false},
	} {
		if got := sameOrigin(c.origin, c.host); got != c.want {
			t.Errorf("sameOrigin(%q, %q) = %v, want %v", c.origin, c.host, got, c.want)
		}
	}
}

// TestConsoleWithoutAuth: with no tokens the session needs no login and is
// authorized, and a login (of any token) succeeds; the cookie is Secure
// only over TLS. Kills console.go:179 (`len(tokens) > 0` → `>= 0`: "auth"
// true), :193 (same: every login refused) and :198 (`r.TLS != nil`
// negated).
func TestConsoleWithoutAuth(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0" })
	u := e.ConsoleURL()
	if res, body := consoleReq(t, "GET", u+"/api/session", "", nil); res.StatusCode != 200 ||
		!strings.Contains(body, `"auth":false`) || !strings.Contains(body, `"authorized":true`) {
		t.Errorf("session: %d %s", res.StatusCode, body)
	}
	res, body := consoleReq(t, "POST", u+"/api/login", `{"token":"anything"}`, jsonCT)
	if res.StatusCode != 200 || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("login without auth: %d %s", res.StatusCode, body)
	}
	for _, c := range res.Cookies() {
		if c.Name == consoleCookie && c.Secure {
			t.Errorf("cookie over plain HTTP is Secure: %+v", c)
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/login", strings.NewReader(`{"token":"anything"}`))
	req.TLS = &tls.ConnectionState{}
	e.apiLogin(rec, req)
	secure := false
	for _, c := range rec.Result().Cookies() {
		secure = secure || c.Name == consoleCookie && c.Secure
	}
	if rec.Code != 200 || !secure {
		t.Errorf("login over TLS: %d, cookies %v: want a Secure cookie", rec.Code, rec.Result().Cookies())
	}
}

// TestConsoleSnapshotStreamsAndQueues: the snapshot names the stream
// client listener and lists each queue with its counts, a durable topic's
// read under its __topic:: key. Kills console.go:263 ×2 (the stream
// listener's address left out), :284 (`st != nil` negated), :290 (the
// topic's counts read under its bare name), :293 (`err == nil` negated)
// and, on the SQLite store, whose reads heed their context, :285
// (`5*time.Second` → `5/time.Second`: a context already expired).
func TestConsoleSnapshotStreamsAndQueues(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testConsoleSnapshotStreamsAndQueues(t, DataDirMemory) })
	t.Run("sqlite", func(t *testing.T) { testConsoleSnapshotStreamsAndQueues(t, t.TempDir()) })
}

func testConsoleSnapshotStreamsAndQueues(t *testing.T, dataDir string) {
	e := startEngine(t, func(c *Config) {
		c.DataDir, c.Streams.Addr = dataDir, "127.0.0.1:0"
		c.Queues = map[string]QueueConfig{"jobs": DefaultQueueConfig()}
	})
	holdQueueJobs(t, e)
	s := e.snapshot(context.Background())
	if want := e.modules.streams.hub.Addr(); want == "" || s.Engine.StreamsAddr != want {
		t.Errorf("streams_addr %q, want the stream listener's %q", s.Engine.StreamsAddr, want)
	}
	got := map[string]consoleQueue{}
	for _, q := range s.Queues {
		got[q.Name] = q
	}
	if q := got["jobs"]; q.BrokerType != "function_queue" || q.Depth != 1 {
		t.Errorf("queue jobs: %+v (all: %+v)", q, s.Queues)
	}
	if q := got["orders"]; q.BrokerType != "topic" || q.InFlight != 1 || q.SubscriberCount != 1 {
		t.Errorf("topic orders: %+v (all: %+v)", q, s.Queues)
	}
}

// failAfter fails every write after the first n.
type failAfter struct {
	n   int
	buf bytes.Buffer
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("gone")
	}
	f.n--
	return f.buf.Write(p)
}

// TestWriteEventFormat: an event is "event: <name>\ndata: <data>\n\n";
// a write that fails stops it and is returned. Kills console.go:327
// (`err == nil` negated: the blank line that ends an event left out).
func TestWriteEventFormat(t *testing.T) {
	var b bytes.Buffer
	if err := writeEvent(&b, "snapshot", []byte(`{"a":1}`)); err != nil || b.String() != "event: snapshot\ndata: {\"a\":1}\n\n" {
		t.Errorf("writeEvent = %v, %q", err, b.String())
	}
	for n := range 3 {
		f := &failAfter{n: n}
		if err := writeEvent(f, "x", []byte("d")); err == nil {
			t.Errorf("writer failing after %d writes: no error", n)
		}
		if want := []string{"", "event: x\ndata: ", "event: x\ndata: d"}[n]; f.buf.String() != want {
			t.Errorf("writer failing after %d writes got %q, want %q", n, f.buf.String(), want)
		}
	}
}

// TestConsoleLiveWithoutInvocations: /api/live?invocations=0 streams
// snapshots (one at once, then one per snapshotInterval) without
// subscribing to the invocation feed; /api/live subscribes. Kills
// console.go:362 (`!= "0"` negated), :403 (`err != nil` negated: a
// snapshot never written) and :412 (negated: the stream ends after its
// first snapshot), :446 (negated: it ends after a tick's snapshot) and
// :458 (`sub != nil` negated: a nil subscription read); the run's tests did
// not reach them.
func TestConsoleLiveWithoutInvocations(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0" })
	for _, c := range []struct {
		query string
		subs  int
	}{{"?invocations=0", 0}, {"", 1}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", e.ConsoleURL()+"/api/live"+c.query, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// The feed is subscribed before the stream's first line; the
		// first snapshot follows it, the next one a snapshotInterval later.
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		snapshots, want := 0, 3 // the third after a tick's
		if c.subs > 0 {
			want = 1
		}
		for snapshots < want && sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var s consoleSnapshot
				if err := json.Unmarshal([]byte(d), &s); err != nil || s.Engine.Version != Version {
					t.Fatalf("/api/live%s: event data %.200s: %v", c.query, d, err)
				}
				snapshots++
			}
		}
		if snapshots < want {
			t.Fatalf("/api/live%s: %d snapshots before the stream ended (%v)", c.query, snapshots, sc.Err())
		}
		if got := e.metrics.Feed.Subscribers(); got != c.subs {
			t.Errorf("/api/live%s: %d feed subscribers, want %d", c.query, got, c.subs)
		}
		// The first stream (no subscription) may still be winding down
		// while the second is counted: it adds nothing.
		cancel()
		res.Body.Close()
	}
}

// TestConsoleFeedEvents: two calls give two invocation events in a row, no
// "dropped" event (nothing was lost), each with a duration in milliseconds
// no longer than the call took. Kills console.go:434 (`/ 1000` → `* 1000`:
// microseconds times 1000), :435 (negated: the stream ends after its first
// event) and :459 (`d != reported` negated: "dropped" after every batch).
func TestConsoleFeedEvents(t *testing.T) {
	e := startEngine(t, func(c *Config) { c.ConsoleAddr = "127.0.0.1:0" })
	w := dialRaw(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.ConsoleURL()+"/api/invocations?function=engine::health::check", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "retry:") {
		t.Fatalf("first line %q", sc.Text())
	}
	var longest time.Duration
	for i := range 2 {
		t0 := time.Now()
		w.call(strconv.Itoa(i), "engine::health::check", `{}`)
		longest = max(longest, time.Since(t0))
	}
	var events []string
	for len(events) < 2 && sc.Scan() {
		if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, ev)
			continue
		}
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok && events[len(events)-1] == "invocation" {
			var ev FeedEvent
			if err := json.Unmarshal([]byte(d), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.DurationMS < 0 || ev.DurationMS > float64(longest.Microseconds())/1000 {
				t.Errorf("duration_ms %v of a call that took at most %v", ev.DurationMS, longest)
			}
		}
	}
	if len(events) != 2 || events[0] != "invocation" || events[1] != "invocation" {
		t.Fatalf("events %q (%v), want two invocations", events, sc.Err())
	}
}
