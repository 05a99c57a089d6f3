package engine

import (
	"bytes"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

// validJSON makes s a JSON value: itself when it is one, else a JSON
// string of it (or null).
func validJSON(s string) jsontext.Value {
	if s == "" {
		return nil
	}
	if v := jsontext.Value(s); v.IsValid(jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)) {
		return v
	}
	b, err := json.Marshal(s)
	if err != nil {
		return jsontext.Value("null")
	}
	return b
}

func sameRequest(a, b remoteRequest) bool {
	return a.Namespace == b.Namespace && a.FunctionID == b.FunctionID && bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Metadata, b.Metadata) &&
		a.Traceparent == b.Traceparent && a.Baggage == b.Baggage && a.CallerWorkerID == b.CallerWorkerID && a.MinTimeoutMS == b.MinTimeoutMS
}

func sameReply(a, b remoteReply) bool {
	if (a.Err == nil) != (b.Err == nil) || (a.Err != nil && *a.Err != *b.Err) {
		return false
	}
	return a.TakenBy == b.TakenBy && bytes.Equal(a.Value, b.Value) && a.Traceparent == b.Traceparent && a.Baggage == b.Baggage
}

// checkRequestCodec: q survives the binary envelope, decodes as its JSON
// envelope does (differential: the reflection codec is the reference), and
// every truncation of the binary envelope is refused.
func checkRequestCodec(t *testing.T, q remoteRequest) {
	t.Helper()
	b, _ := encodeRequest(&q, true)
	if !isBinaryEnvelope(b) {
		t.Fatalf("binary request starts with %#x", b[0])
	}
	var got remoteRequest
	if err := decodeRequest(b, &got); err != nil || !sameRequest(got, q) {
		t.Fatalf("binary round trip: %+v, %v; want %+v", got, err, q)
	}
	if j, err := encodeRequest(&q, false); err == nil { // JSON refuses invalid UTF-8 in strings
		var fromJSON remoteRequest
		if err := decodeRequest(j, &fromJSON); err != nil || !sameRequest(fromJSON, got) {
			t.Fatalf("JSON envelope decodes to %+v (%v), binary to %+v", fromJSON, err, got)
		}
	}
	for n := 1; n < len(b); n++ {
		var p remoteRequest
		if decodeRequest(b[:n], &p) == nil {
			t.Fatalf("truncated to %d of %d bytes: decoded %+v", n, len(b), p)
		}
	}
}

func checkReplyCodec(t *testing.T, r remoteReply) {
	t.Helper()
	b, _ := encodeReply(&r, true)
	if !isBinaryEnvelope(b) {
		t.Fatalf("binary reply starts with %#x", b[0])
	}
	var got remoteReply
	if err := decodeReply(b, &got); err != nil || !sameReply(got, r) {
		t.Fatalf("binary round trip: %+v, %v; want %+v", got, err, r)
	}
	if j, err := encodeReply(&r, false); err == nil {
		var fromJSON remoteReply
		if err := decodeReply(j, &fromJSON); err != nil || !sameReply(fromJSON, got) {
			t.Fatalf("JSON envelope decodes to %+v (%v), binary to %+v", fromJSON, err, got)
		}
	}
	for n := 1; n < len(b); n++ {
		var p remoteReply
		if decodeReply(b[:n], &p) == nil {
			t.Fatalf("truncated to %d of %d bytes: decoded %+v", n, len(b), p)
		}
	}
}

func TestClusterEnvelopeCodec(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70<<10) // beyond the pooled buffers
	for _, q := range []remoteRequest{
		{FunctionID: "f"},
		{Namespace: "ns", FunctionID: "bench::remote", Data: jsontext.Value(`{"a":[1,2,{"b":"ü"}]}`), Metadata: jsontext.Value(`{"m":1}`),
			Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Baggage: "k=v", CallerWorkerID: "w-1", MinTimeoutMS: 30_000},
		{FunctionID: "f", Data: jsontext.Value(`"` + string(big) + `"`)},
		{FunctionID: "f", Data: jsontext.Value(`null`), MinTimeoutMS: 1 << 40},
	} {
		checkRequestCodec(t, q)
	}
	for _, r := range []remoteReply{
		{},
		{TakenBy: "node-1"},
		{Value: jsontext.Value(`{"x":"y"}`), Traceparent: "tp", Baggage: "bg"},
		{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped, Message: "gone", Stacktrace: "at x"}},
		{Err: &wire.ErrorBody{}},
		{Value: jsontext.Value(`"` + string(big) + `"`)},
	} {
		checkReplyCodec(t, r)
	}
}

// TestClusterEnvelopeRefused: binary envelopes that break the layout are
// refused, never half-read, and a value that is not JSON never reaches a
// worker (the JSON envelope's decoder refused those too).
func TestClusterEnvelopeRefused(t *testing.T) {
	for name, b := range map[string][]byte{
		"length past the end":  {codecRequest, 0, 50, 'f'},
		"data not JSON":        append([]byte{codecRequest, 0, 1, 'f', 3}, "{x}\x00\x00\x00\x00\x00"...),
		"overlong uvarint":     append([]byte{codecRequest}, bytes.Repeat([]byte{0xff}, 11)...),
		"min timeout too big":  {codecRequest, 0, 1, 'f', 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"only the type byte":   {codecRequest},
		"JSON that is no JSON": []byte(`{"fn":`),
	} {
		var q remoteRequest
		if err := decodeRequest(b, &q); err == nil {
			t.Errorf("request %s: decoded %+v", name, q)
		}
	}
	for name, b := range map[string][]byte{
		"unknown kind":        {codecReply, 7},
		"empty note":          {codecReply, replyNote, 0},
		"error flag 2":        {codecReply, replyResult, 0, 2},
		"value not JSON":      {codecReply, replyResult, 2, '{', '{', 0, 0, 0},
		"cut after the value": {codecReply, replyResult, 0},
	} {
		var r remoteReply
		if err := decodeReply(b, &r); err == nil {
			t.Errorf("reply %s: decoded %+v", name, r)
		}
	}
	// Fields appended by a later version are ignored.
	q := remoteRequest{FunctionID: "f", Data: jsontext.Value(`1`)}
	b, _ := encodeRequest(&q, true)
	var got remoteRequest
	if err := decodeRequest(append(b, 9, 'x'), &got); err != nil || !sameRequest(got, q) {
		t.Fatalf("with a field appended: %+v, %v", got, err)
	}
}

func FuzzClusterRequestCodec(f *testing.F) {
	f.Add("ns", "f::g", `{"a":1}`, `{"m":true}`, "tp", "bg", "w", int64(5))
	f.Add("", "", "", "", "", "", "", int64(-3))
	f.Add("\xff", "é", "not json", "[", "\x00", "", "c", int64(1<<50))
	f.Fuzz(func(t *testing.T, ns, fn, data, meta, tp, bg, caller string, ms int64) {
		q := remoteRequest{Namespace: ns, FunctionID: fn, Data: validJSON(data), Metadata: validJSON(meta), Traceparent: tp, Baggage: bg,
			CallerWorkerID: caller, MinTimeoutMS: min(max(ms, 0), 1<<53)}
		checkRequestCodec(t, q)
	})
}

func FuzzClusterReplyCodec(f *testing.F) {
	f.Add("", `{"v":1}`, false, "", "", "", "tp", "bg")
	f.Add("node-1", "", false, "", "", "", "", "")
	f.Add("", "", true, "timeout", "took long", "stack", "", "\xfe")
	f.Fuzz(func(t *testing.T, takenBy, value string, hasErr bool, code, msg, stack, tp, bg string) {
		r := remoteReply{TakenBy: takenBy}
		if takenBy == "" {
			r = remoteReply{Value: validJSON(value), Traceparent: tp, Baggage: bg}
			if hasErr {
				r.Err = &wire.ErrorBody{Code: code, Message: msg, Stacktrace: stack}
			}
		}
		checkReplyCodec(t, r)
	})
}

// FuzzClusterEnvelopeDecode: any bytes from another node decode or are
// refused without a panic, and what decodes carries JSON values only.
func FuzzClusterEnvelopeDecode(f *testing.F) {
	b, _ := encodeRequest(&remoteRequest{FunctionID: "f", Data: jsontext.Value(`[1]`), MinTimeoutMS: 9}, true)
	f.Add(b)
	b, _ = encodeReply(&remoteReply{Value: jsontext.Value(`{}`), Err: &wire.ErrorBody{Code: "c"}}, true)
	f.Add(b)
	f.Add([]byte{codecReply, replyNote, 1, 'n'})
	f.Fuzz(func(t *testing.T, b []byte) {
		valid := func(v jsontext.Value) bool {
			return v == nil || v.IsValid(jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true))
		}
		var q remoteRequest
		if decodeRequest(b, &q) == nil && (!valid(q.Data) || !valid(q.Metadata)) {
			t.Fatalf("request decoded with a value that is not JSON: %+v", q)
		}
		var r remoteReply
		if decodeReply(b, &r) == nil && !valid(r.Value) {
			t.Fatalf("reply decoded with a value that is not JSON: %+v", r)
		}
	})
}

// TestClusterCodecFollowsMembers: calls go out in the binary envelope only
// while every live node announces it (a node of an older version reads
// JSON only); a node that left no longer holds it back.
func TestClusterCodecFollowsMembers(t *testing.T) {
	e, _ := startClusterLogged(t, func(c *Config) { c.Cluster.NodeTimeout = time.Minute })
	m := e.cluster.membersNow()
	r := e.cluster.router
	m.seen("new", time.Now(), heartbeat{Codec: clusterCodec})
	if !r.binary.Load() {
		t.Fatal("every node reads the binary envelope, calls go out as JSON")
	}
	m.seen("old", time.Now(), heartbeat{})
	if r.binary.Load() {
		t.Fatal("a node reading JSON only is live, calls go out in binary")
	}
	m.left("old", "test")
	if !r.binary.Load() || !r.batches.Load() {
		t.Fatal("the JSON-only node left, calls still go out as JSON or one per message")
	}
	// A node of codec 1 reads the binary envelope but not batches.
	m.seen("codec1", time.Now(), heartbeat{Codec: codecBinary})
	if !r.binary.Load() || r.batches.Load() {
		t.Fatalf("a codec 1 node is live: binary %v (want true), batches %v (want false)", r.binary.Load(), r.batches.Load())
	}
	m.left("codec1", "test")
	if !r.batches.Load() {
		t.Fatal("the codec 1 node left, calls still go out one per message")
	}
}

// TestClusterAnswersInRequestEncoding: a node answers a call in the
// encoding it came in: JSON to a node of an older version, binary to its
// peers.
func TestClusterAnswersInRequestEncoding(t *testing.T) {
	e := startNodes(t, 1)[0]
	nc := e.cluster.node.Conn
	w := dialRaw(t, e)
	w.sendJSON(`{"type":"registerfunction","id":"enc::fn"}`)
	go serveRaw(w, "enc::fn", `"here"`, make(chan struct{}, 16))
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ := json.Marshal(remoteRequest{FunctionID: "enc::fn"})
		m, err := nc.Request(fnSubject("", "enc::fn"), j, 5*time.Second)
		if err == nil {
			if string(m.Data) != `{"value":"here"}` {
				t.Fatalf("answer to a JSON call: %q", m.Data)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never offered: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the router's sync has not run yet
	}
	b, _ := encodeRequest(&remoteRequest{FunctionID: "enc::fn", Data: jsontext.Value(`1`)}, true)
	m, err := nc.Request(fnSubject("", "enc::fn"), b, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rep remoteReply
	if !isBinaryEnvelope(m.Data) || decodeReply(m.Data, &rep) != nil || string(rep.Value) != `"here"` || rep.Err != nil {
		t.Fatalf("answer to a binary call: %q", m.Data)
	}
	// A malformed binary call is refused in binary.
	m, err = nc.Request(fnSubject("", "enc::fn"), []byte{codecRequest, 0, 90}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rep = remoteReply{}
	if decodeReply(m.Data, &rep) != nil || !isBinaryEnvelope(m.Data) || rep.Err == nil || rep.Err.Code != wire.CodeInvalidArguments {
		t.Fatalf("answer to a malformed binary call: %q", m.Data)
	}
}

// TestClusterCallDeadlines: calls to a node that never answers end with
// TIMEOUT, none before its timeout and each within its slot after it, and
// calls due in one slot share one timer; calls with their own (longer)
// minimum timeout keep waiting.
func TestClusterCallDeadlines(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := startNodes(t, 1, func(c *Config) { c.InvocationTimeout = timeout })[0]
	r := e.cluster.router
	noteAndHold(t, e.cluster.node.Conn, "held::fn", make(chan *nats.Msg, 64))
	type ended struct {
		res     invocation.Result
		elapsed time.Duration
	}
	const n = 40
	results := make(chan ended, n+1)
	start := time.Now()
	for range n {
		r.Invoke(&invocation.Request{FunctionID: "held::fn"}, func(res invocation.Result) { results <- ended{res, time.Since(start)} })
	}
	sent := time.Since(start)
	long := make(chan invocation.Result, 1)
	r.Invoke(&invocation.Request{FunctionID: "held::fn", MinTimeout: time.Minute}, func(res invocation.Result) { long <- res })
	r.mu.Lock()
	slots := map[time.Duration]bool{}
	for _, c := range r.calls {
		s := expirySlot(c.timeout)
		slots[(c.due.Sub(r.base)+s-1)/s*s] = true
	}
	timers := len(r.expiries)
	r.mu.Unlock()
	if timers != len(slots) || timers >= n {
		t.Fatalf("%d calls due in %d slots have %d timers", n+1, len(slots), timers)
	}
	for range n {
		select {
		case x := <-results:
			if x.res.Err == nil || x.res.Err.Code != wire.CodeTimeout || x.res.Err.Message != "Invocation timed out after 300ms (on another node)" {
				t.Fatalf("result %+v", x.res.Err)
			}
			if x.elapsed < timeout || x.elapsed > sent+timeout+expirySlot(timeout)+2*time.Second {
				t.Fatalf("a call ended after %s (timeout %s, all sent within %s)", x.elapsed, timeout, sent)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a call never timed out")
		}
	}
	select {
	case res := <-long:
		t.Fatalf("the call with a minute's minimum timeout ended: %+v", res.Err)
	default:
	}
}

// TestClusterTakenNotes: a call from another node that runs past the note
// delay is noted once to its caller, in the encoding it came in; the
// shared note timer stops once no call runs.
func TestClusterTakenNotes(t *testing.T) {
	e := startNodes(t, 1)[0]
	r := e.cluster.router
	nc := e.cluster.node.Conn
	notes := make(chan *nats.Msg, 16)
	sub, err := nc.Subscribe("_INBOX.notes.*", func(m *nats.Msg) { notes <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	bin := r.startServed("_INBOX.notes.bin", "", true)
	js := r.startServed("_INBOX.notes.json", "", false)
	got := map[string]string{}
	for len(got) < 2 {
		select {
		case m := <-notes:
			var rep remoteReply
			if decodeReply(m.Data, &rep) != nil || rep.TakenBy != "node-0" || got[m.Subject] != "" {
				t.Fatalf("note %q on %s (notes so far %v)", m.Data, m.Subject, got)
			}
			got[m.Subject] = string(m.Data)
		case <-time.After(5 * time.Second):
			t.Fatalf("notes: %v, want one per call", got)
		}
	}
	if !isBinaryEnvelope([]byte(got["_INBOX.notes.bin"])) || got["_INBOX.notes.json"] != `{"taken_by":"node-0"}` {
		t.Fatalf("notes %q, want binary and JSON", got)
	}
	r.endServed(bin)
	r.endServed(js)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.smu.Lock()
		idle := r.noteTimer == nil
		r.smu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the note timer still runs with no call")
		}
		time.Sleep(5 * time.Millisecond) // the timer's next round stops it
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 0 {
		t.Fatalf("a call was noted twice: %q", (<-notes).Data)
	}
}

// TestClusterCallDeadlineSkipped: a call whose deadline lies after the
// firing of the only slot timer armed for it (as when a wall-clock step
// gave it the slot key of an earlier call) still ends with TIMEOUT, not
// before its deadline: the sweep that skips it arms its own slot. On
// d798691 the early call ended and the skipped one never did (no timer
// left for it).
func TestClusterCallDeadlineSkipped(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := startNodes(t, 1, func(c *Config) { c.InvocationTimeout = timeout })[0]
	r := e.cluster.router
	ended := make(chan endedCall, 2)
	call := func(token string, due time.Time) *remoteCall {
		// Taken by a node that stays quiet: only the deadline ends it.
		return &remoteCall{fn: "held::fn", ns: wire.DefaultNamespace, node: "node-quiet", sent: time.Now(), due: due, timeout: timeout,
			done: func(res invocation.Result) { ended <- endedCall{token, res} }}
	}
	now := time.Now()
	early, late := now.Add(50*time.Millisecond), now.Add(250*time.Millisecond)
	r.mu.Lock()
	r.calls["skip-early"] = call("skip-early", early)
	r.calls["skip-late"] = call("skip-late", late)
	r.expireAt(early, timeout) // the late call's own slot is never armed
	r.mu.Unlock()
	for _, want := range []struct {
		token string
		due   time.Time
	}{{"skip-early", early}, {"skip-late", late}} {
		select {
		case c := <-ended:
			if c.token != want.token || c.res.Err == nil || c.res.Err.Code != wire.CodeTimeout {
				t.Fatalf("%s ended with %+v, want %s with TIMEOUT", c.token, c.res.Err, want.token)
			}
			if time.Now().Before(want.due) {
				t.Fatalf("%s ended before its deadline", c.token)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s never timed out", want.token)
		}
	}
}
