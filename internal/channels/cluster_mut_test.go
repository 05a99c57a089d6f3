package channels

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/natsnode/natstest"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

// TestEnableClusterTiming: a node timeout of 0 means 10 s; the keepalive
// tick is a quarter of the timeout, at least 50 ms and at most 1 s (kills
// cluster.go:132 CONDITIONALS_BOUNDARY: a timeout of 0 stayed 0; :133, not
// covered: 10 s; :135 ARITHMETIC_BASE ×2: timeout×4, 50 ms → 50 ns).
// CloseCluster stops the keepalive, and does nothing on a hub without
// cluster mode (kills :172, not covered, `h.cluster != nil` negated).
func TestEnableClusterTiming(t *testing.T) {
	srv := natstest.Start(t)
	NewHub(Config{}, nil).CloseCluster()
	for _, tc := range []struct{ timeout, wantTimeout, wantTick time.Duration }{
		{0, 10 * time.Second, time.Second},
		{-time.Second, 10 * time.Second, time.Second},
		{100 * time.Millisecond, 100 * time.Millisecond, 50 * time.Millisecond},
		{time.Second, time.Second, 250 * time.Millisecond},
		{2 * time.Second, 2 * time.Second, 500 * time.Millisecond},
		{time.Minute, time.Minute, time.Second},
	} {
		nc, err := nats.Connect("", nats.InProcessServer(srv.Server))
		if err != nil {
			t.Fatal(err)
		}
		h := NewHub(Config{}, nil)
		if err := h.EnableCluster(ClusterConfig{Conn: nc, Node: "n", NodeTimeout: tc.timeout}); err != nil {
			t.Fatal(err)
		}
		c := h.cluster
		got, tick := c.timeout, c.tick
		h.CloseCluster()
		nc.Close()
		select {
		case <-c.done: // the keepalive loop ended
		default:
			t.Fatal("CloseCluster left the keepalive running")
		}
		if got != tc.wantTimeout || tick != tc.wantTick {
			t.Errorf("NodeTimeout %v: timeout %v tick %v, want %v and %v", tc.timeout, got, tick, tc.wantTimeout, tc.wantTick)
		}
	}
}

// TestEnableClusterNodeNameLength: a node name whose tag (base64url) is
// exactly maxTagLen long is accepted, one byte more is refused (kills
// cluster.go:136 CONDITIONALS_BOUNDARY).
func TestEnableClusterNodeNameLength(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect("", nats.InProcessServer(srv.Server))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	longest := strings.Repeat("n", maxTagLen/4*3) // 150 bytes: a 200-character tag
	h := NewHub(Config{}, nil)
	if err := h.EnableCluster(ClusterConfig{Conn: nc, Node: longest, NodeTimeout: time.Second}); err != nil {
		t.Fatalf("a %d-byte node name: %v", len(longest), err)
	}
	if len(h.cluster.tag) != maxTagLen {
		t.Fatalf("tag of %d characters", len(h.cluster.tag))
	}
	h.CloseCluster()
	h = NewHub(Config{}, nil)
	err = h.EnableCluster(ClusterConfig{Conn: nc, Node: longest + "n", NodeTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "node name too long") {
		t.Fatalf("a %d-byte node name: %v", len(longest)+1, err)
	}
	if h.cluster != nil {
		t.Fatal("the refused cluster mode was enabled")
	}
}

// TestClusterLongestNodeName: a node whose name gives the longest tag
// allowed is reachable: a channel it created is written from another node
// (kills cluster.go:196 CONDITIONALS_BOUNDARY: an id with a tag of exactly
// maxTagLen was looked up locally and refused with 404).
func TestClusterLongestNodeName(t *testing.T) {
	longest := strings.Repeat("n", maxTagLen/4*3)
	hubs := newClusterHubs(t, Config{}, 5*time.Second, longest, "b")
	home, other := hubs[0], hubs[1]
	res, err := home.Create(0)
	if err != nil {
		t.Fatal(err)
	}
	r := home.dial(t, res.Reader, wire.DirRead)
	w := other.dial(t, res.Writer, wire.DirWrite)
	want := []msg{{websocket.TextMessage, []byte("across nodes")}}
	sendAll(t, w, want)
	closeWith(t, w, websocket.CloseNormalClosure, "")
	got, ce := readAll(t, r)
	if len(got) != 1 || string(got[0].data) != "across nodes" || ce == nil || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("reader got %v, %v", got, ce)
	}
}

// TestRemoteTagCharacters: a channel id names another node when its tag
// (after the last dot) is a base64url string of at most maxTagLen
// characters other than this node's own; any other character (a NATS
// wildcard, a space, a byte past ASCII) makes it a local id (kills
// cluster.go:200's character class boundaries and negations: 'a', 'z',
// 'A', ... were refused, so a node whose tag holds them was unreachable,
// or characters around them accepted).
func TestRemoteTagCharacters(t *testing.T) {
	c := &clusterHub{tag: "bXk"}
	for r := rune(0); r < 0x80; r++ {
		want := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if r == '.' {
			continue // the separator
		}
		id := "uuid.x" + string(r) + "y"
		tag, ok := c.remoteTag(id)
		if ok != want || (ok && tag != "x"+string(r)+"y") {
			t.Errorf("remoteTag(%q) = %q %v, want remote %v", id, tag, ok, want)
		}
	}
	for _, tc := range []struct {
		id   string
		want string
		ok   bool
	}{
		{"uuid.bm9kZQ", "bm9kZQ", true},
		{"a.b.azAZ09-_", "azAZ09-_", true},
		{"uuid.bXk", "", false}, // this node's own
		{"uuid.", "", false},
		{"no-dot", "", false},
		{"uuid.é", "", false},
		{"uuid." + strings.Repeat("a", maxTagLen), strings.Repeat("a", maxTagLen), true},
		{"uuid." + strings.Repeat("a", maxTagLen+1), "", false},
	} {
		if tag, ok := c.remoteTag(tc.id); tag != tc.want || ok != tc.ok {
			t.Errorf("remoteTag(%.30q) = %q %v, want %q %v", tc.id, tag, ok, tc.want, tc.ok)
		}
	}
}

// TestClusterBridgeSurvivesKeepalives: a cross-node channel whose nodes
// are both alive stays up across many keepalive periods while idle (kills
// cluster.go:366 ARITHMETIC_BASE and INVERT_NEGATIVES, `now-heard` →
// `now+heard`: every bridge was failed as silent at the first tick). What
// is tested is that time passing does not break the link, so the test lets
// time pass: 4 ticks. The node timeout is generous (2 s) so that a loaded
// machine's scheduling delays do not make a live link look silent.
func TestClusterBridgeSurvivesKeepalives(t *testing.T) {
	const timeout = 2 * time.Second
	hubs := newClusterHubs(t, Config{}, timeout, "a", "b")
	res, err := hubs[0].Create(0)
	if err != nil {
		t.Fatal(err)
	}
	r := hubs[0].dial(t, res.Reader, wire.DirRead)
	w := hubs[1].dial(t, res.Writer, wire.DirWrite)
	sendAll(t, w, []msg{{websocket.TextMessage, []byte("before")}})
	_ = r.SetReadDeadline(time.Now().Add(testWait))
	if _, b, err := r.ReadMessage(); err != nil || string(b) != "before" {
		t.Fatalf("%q %v", b, err)
	}
	time.Sleep(timeout) // 4 ticks of 500 ms
	sendAll(t, w, []msg{{websocket.TextMessage, []byte("after")}})
	closeWith(t, w, websocket.CloseNormalClosure, "")
	got, ce := readAll(t, r)
	if len(got) != 1 || string(got[0].data) != "after" || ce == nil || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("after %v idle: reader got %v, %v", timeout, got, ce)
	}
}

// senderMessages runs a sending bridge over frames already queued in its
// pipe (then the pipe's end) and returns the messages it published, up to
// and including its end message.
func senderMessages(t *testing.T, frames []Frame) [][]byte {
	t.Helper()
	n := natstest.Start(t)
	spy, err := n.Conn.SubscribeSync("spy")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	p := newMemPipe(len(frames), nil, nil)
	for _, f := range frames {
		if err := p.Send(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	p.CloseSend()
	c := &clusterHub{nc: n.Conn, node: "a", tag: "YQ"}
	b := c.newBridge("tok", true, p, nil, "b", "spy")
	b.runSender()
	var out [][]byte
	for {
		m, err := spy.NextMsg(testWait)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(out), err)
		}
		out = append(out, m.Data)
		if m.Data[0] == kindEnd {
			return out
		}
	}
}

// decodeRecords rebuilds the frames carried by data messages, checking
// their sequence numbers.
func decodeRecords(t *testing.T, msgs [][]byte) []Frame {
	t.Helper()
	var out []Frame
	var cur *Frame
	for i, d := range msgs {
		if seq := binary.BigEndian.Uint64(d[2:10]); seq != uint64(i+1) {
			t.Fatalf("message %d has sequence %d", i, seq)
		}
		if d[0] == kindEnd {
			break
		}
		for rest := d[10:]; len(rest) > 0; {
			fl, n := rest[0], int(binary.BigEndian.Uint32(rest[1:recordHeader]))
			if cur == nil {
				out = append(out, Frame{Text: fl&flagText != 0})
				cur = &out[len(out)-1]
			}
			cur.Data = append(cur.Data, rest[recordHeader:recordHeader+n]...)
			if fl&flagFin != 0 {
				cur = nil
			}
			rest = rest[recordHeader+n:]
		}
	}
	return out
}

// TestBridgeSenderMessageSize: a frame bigger than a data message travels
// in messages of at most bridgeMsgMax bytes, whole and in order, and the
// frame after it follows (kills cluster.go:494 ARITHMETIC_BASE ×2 and
// :502 ARITHMETIC_BASE ×2, the space left in a message: each made messages
// of bridgeMsgMax+10 bytes or more, which TestClusterBridgeOrder's frames
// still carried through NATS's 1 MiB limit; a frame of more than 1 MiB
// would have been lost).
func TestBridgeSenderMessageSize(t *testing.T) {
	big := make([]byte, 3*bridgeMsgMax+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	want := []Frame{{Data: big}, {Text: true, Data: []byte("after")}}
	msgs := senderMessages(t, want)
	for i, d := range msgs {
		if len(d) > bridgeMsgMax {
			t.Errorf("message %d: %d bytes, over bridgeMsgMax (%d)", i, len(d), bridgeMsgMax)
		}
	}
	if len(msgs) != 5 { // 4 data messages, then the end
		t.Errorf("%d messages, want 4 data messages and the end", len(msgs))
	}
	got := decodeRecords(t, msgs)
	if len(got) != 2 || !bytes.Equal(got[0].Data, big) || got[0].Text || !got[1].Text || string(got[1].Data) != "after" {
		t.Fatalf("frames rebuilt: %d", len(got))
	}
}

// TestBridgeSenderJoinsReadyFrames: frames ready in the pipe together share
// one data message (kills cluster.go:516 CONDITIONALS_NEGATION, `len(buf) <
// bridgeMsgMax-recordHeader` → `>=`: every frame went in a message of its
// own).
func TestBridgeSenderJoinsReadyFrames(t *testing.T) {
	var want []Frame
	for i := range 50 {
		want = append(want, Frame{Text: i%2 == 0, Data: []byte(fmt.Sprintf("frame %d", i))})
	}
	msgs := senderMessages(t, want)
	if len(msgs) != 2 {
		t.Errorf("%d messages for 50 small frames ready together, want one data message and the end", len(msgs))
	}
	got := decodeRecords(t, msgs)
	if len(got) != len(want) {
		t.Fatalf("%d frames rebuilt, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Text != want[i].Text || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("frame %d: %v %q, want %v %q", i, got[i].Text, got[i].Data, want[i].Text, want[i].Data)
		}
	}
}

// TestBridgeInboxBound: a receiver's queue may hold up to two windows of
// data messages (what a peer that keeps to its credit can have in flight,
// with room for a grant late on the way); past that the peer ignores its
// credit and the bridge fails (kills cluster.go:426 CONDITIONALS_BOUNDARY:
// exactly two windows failed a peer within them).
func TestBridgeInboxBound(t *testing.T) {
	c := &clusterHub{tag: "YQ", bridges: map[string]*bridge{}}
	b := c.newBridge("tok", false, newMemPipe(1, nil, nil), nil, "b", "")
	c.add(b)
	data := func(n int) *nats.Msg {
		d := make([]byte, n)
		d[0] = kindData
		return &nats.Msg{Subject: c.subject("tok"), Data: d}
	}
	for range 2 * bridgeWindow >> 20 { // each costs 1 MiB with its overhead
		c.dispatch(data(1<<20 - msgOverhead))
	}
	if b.inboxBytes != 2*bridgeWindow || b.ctx.Err() != nil {
		t.Fatalf("%d bytes queued (want %d): bridge stopped: %v", b.inboxBytes, 2*bridgeWindow, context.Cause(b.ctx))
	}
	c.dispatch(data(10))
	var ae *AbortError
	if !errors.As(context.Cause(b.ctx), &ae) || !strings.Contains(ae.Reason, "exceeded its credit") {
		t.Fatalf("a message past two windows: bridge cause %v, want exceeded its credit", context.Cause(b.ctx))
	}
}

// TestBridgeWaitCredit: a data message goes when what is in flight plus its
// cost fits the window (exactly fitting included), or alone when nothing
// is in flight; otherwise it waits for credit. The bridge is stopped
// first, so that a wait returns false at once (kills cluster.go:546
// ARITHMETIC_BASE: in flight = sent + granted; :547 ×5: `inflight == 0`
// negated, `inflight+cost` → `-` (a window plus a message in flight),
// `<=` → `<` and `>`).
func TestBridgeWaitCredit(t *testing.T) {
	c := &clusterHub{tag: "YQ", bridges: map[string]*bridge{}}
	b := c.newBridge("tok", true, newMemPipe(1, nil, nil), nil, "b", "")
	b.cancel(errors.New("stopped: waits return at once"))
	const granted = 10 << 20
	for _, tc := range []struct {
		inflight, cost uint64
		want           bool
	}{
		{0, 2 * bridgeWindow, true}, // alone: goes whatever its size
		{bridgeWindow - 100, 100, true},
		{bridgeWindow - 100, 101, false},
		{1, bridgeWindow, false},
		{bridgeWindow, 1, false},
	} {
		b.granted.Store(granted)
		b.sent = granted + tc.inflight
		if got := b.waitCredit(tc.cost); got != tc.want {
			t.Errorf("%d in flight, message of %d: waitCredit = %v, want %v", tc.inflight, tc.cost, got, tc.want)
		}
	}
}

// receiverRun queues msgs on a receiving bridge (as its peer's messages
// arrive), runs its receiver to the end and returns the frames it put in
// the pipe, how the pipe ended, the grants it sent, and the bridge.
func receiverRun(t *testing.T, msgs [][]byte) ([]Frame, error, []uint64, *bridge) {
	t.Helper()
	n := natstest.Start(t)
	spy, err := n.Conn.SubscribeSync("spy")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHub(Config{}, nil)
	p := newMemPipe(16, nil, nil)
	c := &clusterHub{nc: n.Conn, node: "a", tag: "YQ", bridges: map[string]*bridge{}}
	b := c.newBridge("tok", false, p, newChanMem(h.budget, h.cfg.MaxBufferBytes), "b", "spy")
	c.add(b)
	for _, d := range msgs {
		c.dispatch(&nats.Msg{Subject: c.subject("tok"), Data: d})
	}
	var frames []Frame
	var end error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			f, err := p.Recv(context.Background())
			if err != nil {
				end = err
				return
			}
			frames = append(frames, Frame{Text: f.Text, Data: bytes.Clone(f.Data)})
			f.Release()
		}
	}()
	b.runReceiver()
	p.CloseSend() // ends the reading loop if the receiver left the pipe open
	<-done
	if err := n.Conn.Flush(); err != nil { // the grants published are in the spy's queue
		t.Fatal(err)
	}
	var grants []uint64
	for {
		m, err := spy.NextMsg(50 * time.Millisecond)
		if err != nil {
			break
		}
		if m.Data[0] == kindGrant {
			grants = append(grants, binary.BigEndian.Uint64(m.Data[1:]))
		}
	}
	return frames, end, grants, b
}

// dataMsg is a data message of sequence number seq holding records
// (flags, payload) padded with filler records to size bytes if size > 0.
func dataMsg(seq uint64, size int, records ...[]byte) []byte {
	d := binary.BigEndian.AppendUint64([]byte{kindData, 0}, seq)
	for _, r := range records {
		d = append(d, r[0])
		d = binary.BigEndian.AppendUint32(d, uint32(len(r)-1))
		d = append(d, r[1:]...)
	}
	if size > 0 {
		pad := size - len(d) - recordHeader
		d = append(d, flagFin)
		d = binary.BigEndian.AppendUint32(d, uint32(pad))
		d = append(d, make([]byte, pad)...)
	}
	return d
}

func endMsg(seq uint64) []byte { return binary.BigEndian.AppendUint64([]byte{kindEnd, 0}, seq) }

// TestBridgeReceiverCredit: the receiver counts each data message's cost
// (its bytes plus msgOverhead) as consumed, takes it off its queue's
// count, and grants credit each time a quarter window more was consumed,
// exactly a quarter included (kills cluster.go:630 ARITHMETIC_BASE: the
// cost without the overhead; :632 ARITHMETIC_BASE: the queue's count grew;
// :650 ARITHMETIC_BASE `c-b.lastGrant` → `+` (a grant after every message
// past the first quarter) and CONDITIONALS_BOUNDARY (no grant at exactly a
// quarter)).
func TestBridgeReceiverCredit(t *testing.T) {
	quarter := bridgeWindow / 4
	msgs := [][]byte{
		dataMsg(1, quarter-msgOverhead, []byte{flagText | flagFin, 'h', 'i'}), // costs exactly a quarter
		dataMsg(2, 0, []byte{flagFin, 1, 2, 3}),
		endMsg(3),
	}
	frames, end, grants, b := receiverRun(t, msgs)
	if end != io.EOF {
		t.Fatalf("the pipe ended with %v, want EOF", end)
	}
	if len(frames) != 3 || !frames[0].Text || string(frames[0].Data) != "hi" || !bytes.Equal(frames[2].Data, []byte{1, 2, 3}) {
		t.Fatalf("%d frames", len(frames))
	}
	want := uint64(quarter + len(msgs[1]) + msgOverhead)
	if got := b.consumed.Load(); got != want {
		t.Errorf("consumed %d, want %d", got, want)
	}
	if b.inboxBytes != 0 {
		t.Errorf("the queue counts %d bytes once empty", b.inboxBytes)
	}
	if len(grants) != 1 || grants[0] != uint64(quarter) {
		t.Errorf("grants %v, want one of %d", grants, quarter)
	}
}

// TestBridgeReceiverMalformedRecord: a record announcing more bytes than
// its message holds breaks the stream (kills cluster.go:635
// ARITHMETIC_BASE: such a record was sliced past the message's end, a
// panic).
func TestBridgeReceiverMalformedRecord(t *testing.T) {
	bad := dataMsg(1, 0, []byte{flagFin, 'a', 'b'})
	binary.BigEndian.PutUint32(bad[11:], 5) // 5 bytes announced, 2 there
	frames, end, _, _ := receiverRun(t, [][]byte{bytes.Clone(bad[:len(bad):len(bad)]), endMsg(2)})
	var ae *AbortError
	if len(frames) != 0 || !errors.As(end, &ae) || ae.Reason != "cluster link: malformed message" {
		t.Fatalf("frames %d, end %v: want the malformed message's abort", len(frames), end)
	}
}

// TestBridgeReceiverReleasesPartialFrame: a stream that breaks in the middle
// of a frame arriving in several records gives that frame's charge back to
// the channel's memory (kills cluster.go:601 CONDITIONALS_NEGATION: the
// charge of the partial frame was kept).
func TestBridgeReceiverReleasesPartialFrame(t *testing.T) {
	partial := dataMsg(1, 0, append([]byte{0}, bytes.Repeat([]byte("p"), 1000)...)) // no fin: more to come
	lost := dataMsg(3, 0, []byte{flagFin, 'x'})                                     // seq 2 never came
	frames, end, _, b := receiverRun(t, [][]byte{partial, lost})
	var ae *AbortError
	if len(frames) != 0 || !errors.As(end, &ae) || !strings.Contains(ae.Reason, "lost messages") {
		t.Fatalf("frames %d, end %v: want the lost message's abort", len(frames), end)
	}
	if used := b.mem.used.Load(); used != 0 {
		t.Fatalf("%d bytes still charged to the channel after the stream broke mid-frame", used)
	}
}

// TestBridgeReceiverStoppedWhileWaiting: a receiver waiting for room in the
// channel's memory when its bridge is stopped ends the stream with the
// bridge's cause (kills cluster.go:643 CONDITIONALS_NEGATION: the wait's
// errStopped was taken for the cause, and the stream ended with "cluster
// link closed").
func TestBridgeReceiverStoppedWhileWaiting(t *testing.T) {
	n := natstest.Start(t)
	spy, err := n.Conn.SubscribeSync("spy")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	h := NewHub(Config{}, nil)
	p := newMemPipe(16, nil, nil) // nobody reads it: the first frame stays charged
	c := &clusterHub{nc: n.Conn, node: "a", tag: "YQ", bridges: map[string]*bridge{}}
	b := c.newBridge("tok", false, p, newChanMem(h.budget, 16), "b", "spy")
	c.add(b)
	c.dispatch(&nats.Msg{Subject: c.subject("tok"), Data: dataMsg(1, 0, []byte{flagFin, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []byte{flagFin, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})})
	// Stopped before it runs: the first frame goes in (charged alone), the
	// second waits for room that never comes and sees the stop.
	b.fail(&AbortError{Reason: "the test's cause"})
	b.runReceiver()
	p.CloseRecv() // frees the first frame
	var ae *AbortError
	if !errors.As(p.eofErr, &ae) || ae.Reason != "the test's cause" {
		t.Fatalf("the pipe's writer side ended with %v, want the bridge's cause", p.eofErr)
	}
	m, err := spy.NextMsg(testWait)
	if err != nil || m.Data[0] != kindStop || m.Data[1] != stopAbort || string(m.Data[2:]) != "the test's cause" {
		t.Fatalf("stop message %q %v, want an abort with the bridge's cause", m.Data, err)
	}
}

// TestBridgeHomeShutdownBeforeUpgrade: a home node shutting down while an
// end opened from another node has not confirmed its socket's upgrade
// tells that node, as a channel ending after the upgrade would: a remote
// reader's end gets the stream's end (broken, "node a shutting down"), a
// remote writer's end a stop with that reason (kills cluster.go:770
// CONDITIONALS_NEGATION ×2: nothing sent; :772 CONDITIONALS_NEGATION: the
// reason "engine shutting down" of this node's own sockets sent instead).
// The other node is played by the test on NATS: it opens the ends and
// never confirms an upgrade.
func TestBridgeHomeShutdownBeforeUpgrade(t *testing.T) {
	a := newClusterHubs(t, Config{}, 5*time.Second, "a")[0]
	open := func(ref wire.ChannelRef, dir, subj string) *nats.Subscription {
		t.Helper()
		spy, err := a.nc.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := json.Marshal(openRequest{ID: ref.ChannelID, Key: ref.AccessKey, Dir: dir, Node: "z", Subject: subj})
		m, err := a.nc.Request(openSubjectPrefix+a.cluster.tag, req, testWait)
		if err != nil {
			t.Fatal(err)
		}
		var rep openReply
		if err := json.Unmarshal(m.Data, &rep); err != nil || rep.Subject == "" {
			t.Fatalf("open %s: %s %v", dir, m.Data, err)
		}
		return spy
	}
	res1, _ := a.Create(0)
	res2, _ := a.Create(0)
	toReader := open(res1.Reader, wire.DirRead, bridgeSubjectPrefix+"eg.r")
	toWriter := open(res2.Writer, wire.DirWrite, bridgeSubjectPrefix+"eg.w")
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := toReader.NextMsg(testWait)
	if err != nil || m.Data[0] != kindEnd || m.Data[1] != 1 || string(m.Data[10:]) != "node a shutting down" {
		t.Fatalf("to the remote reader: %q %v, want a broken end: node a shutting down", m.Data, err)
	}
	m, err = toWriter.NextMsg(testWait)
	if err != nil || m.Data[0] != kindStop || m.Data[1] != stopAbort || string(m.Data[2:]) != "node a shutting down" {
		t.Fatalf("to the remote writer: %q %v, want a stop: node a shutting down", m.Data, err)
	}
}

// TestBridgeReceiverEmptyFrameLast: an empty frame whose record ends its
// data message (a header and no bytes) is a frame, not a malformed record
// (kills cluster.go:635 CONDITIONALS_BOUNDARY, `len(rest) < recordHeader`
// → `<=`: the stream broke on it).
func TestBridgeReceiverEmptyFrameLast(t *testing.T) {
	frames, end, _, _ := receiverRun(t, [][]byte{dataMsg(1, 0, []byte{flagText | flagFin, 'a'}, []byte{flagFin}), endMsg(2)})
	if end != io.EOF || len(frames) != 2 || string(frames[0].Data) != "a" || len(frames[1].Data) != 0 || frames[1].Text {
		t.Fatalf("frames %+v, end %v: want \"a\", an empty binary frame, then EOF", frames, end)
	}
}

// TestBridgeReceiverChargesQueuedFrames: frames the receiver put in the
// pipe stay charged to the channel's memory until the reader releases
// them, whether they came in one record or several (kills cluster.go:671
// and :686 CONDITIONALS_NEGATION: a frame sent into the pipe was released
// at once, so the channel's byte bound no longer held).
func TestBridgeReceiverChargesQueuedFrames(t *testing.T) {
	h := NewHub(Config{}, nil)
	p := newMemPipe(16, nil, nil)
	c := &clusterHub{tag: "YQ", bridges: map[string]*bridge{}}
	b := c.newBridge("tok", false, p, newChanMem(h.budget, h.cfg.MaxBufferBytes), "b", "")
	c.add(b)
	for _, d := range [][]byte{
		dataMsg(1, 0, []byte{flagFin, 1, 2, 3}, []byte{0, 4, 5}), // a frame, and the start of one
		dataMsg(2, 0, []byte{flagFin, 6}),
		endMsg(3),
	} {
		c.dispatch(&nats.Msg{Subject: c.subject("tok"), Data: d})
	}
	b.runReceiver()
	if used := b.mem.used.Load(); used != 6 {
		t.Fatalf("%d bytes charged for the 6 queued in the pipe", used)
	}
	for _, want := range []string{"\x01\x02\x03", "\x04\x05\x06"} {
		f, err := p.Recv(context.Background())
		if err != nil || string(f.Data) != want {
			t.Fatalf("frame %q %v, want %q", f.Data, err, want)
		}
		f.Release()
	}
	if used := b.mem.used.Load(); used != 0 {
		t.Fatalf("%d bytes charged once the reader released every frame", used)
	}
}

// TestBridgeHomeReportsRemoteEndActive: the home hub reports the change
// (onChanged: the engine's console and metrics, the tests' waits) when an
// end connected through another node becomes active (kills cluster.go:792
// CONDITIONALS_NEGATION: not reported; TestClusterBridgeEnds's waitActive
// passed only when the state changed before its first look).
func TestBridgeHomeReportsRemoteEndActive(t *testing.T) {
	hubs := newClusterHubs(t, Config{}, 5*time.Second, "a", "b")
	a, b := hubs[0], hubs[1]
	res, _ := a.Create(0)
	select {
	case <-a.changed:
	default:
	}
	b.dial(t, res.Writer, wire.DirWrite)
	deadline := time.After(testWait)
	for {
		select {
		case <-a.changed:
		case <-deadline:
			t.Fatal("no change reported on the home node for the remote writer")
		}
		if ch := a.channel(res.Writer.ChannelID); ch != nil {
			a.mu.Lock()
			active := ch.state[dirWrite] == endActive
			a.mu.Unlock()
			if active {
				return
			}
		}
	}
}

// TestBridgeProxyNamesHome: the node a socket connects through names the
// channel's home by its node name (NodeLeft of that node breaks the bridge
// once it has been silent) and sizes its proxy pipe as the home's channel
// (kills cluster.go:818 CONDITIONALS_NEGATION: the tag named the peer, so
// NodeLeft of the home's name found nothing; :847 CONDITIONALS_NEGATION:
// the proxy took the default buffer instead of the channel's).
func TestBridgeProxyNamesHome(t *testing.T) {
	hubs := newClusterHubs(t, Config{}, 5*time.Second, "a", "b")
	a, b := hubs[0], hubs[1]
	res, _ := a.Create(3)
	a.dial(t, res.Reader, wire.DirRead)
	w := b.dial(t, res.Writer, wire.DirWrite)
	a.waitActive(t, res.Writer.ChannelID, dirWrite)
	b.mu.Lock()
	var sizes []int
	for ch := range b.proxies {
		sizes = append(sizes, ch.size)
	}
	b.mu.Unlock()
	if len(sizes) != 1 || sizes[0] != 3 {
		t.Fatalf("proxy pipe sizes %v, want [3] (the channel's)", sizes)
	}
	b.cluster.mu.Lock()
	for _, br := range b.cluster.bridges {
		br.heard.Store(time.Now().Add(-3 * b.cluster.tick).UnixNano())
	}
	b.cluster.mu.Unlock()
	if n := b.NodeLeft("a"); n != 1 {
		t.Fatalf("NodeLeft(a) on node b broke %d bridges, want 1", n)
	}
	expectClose(t, w, wire.CloseInternal, "cluster node a left")
}

// TestBridgeRemoteReaderExpires: a channel whose reader connected through
// another node and whose writer never connects expires at its TTL: the
// reader gets 1011 "the writer never connected" (kills cluster.go:787
// CONDITIONALS_NEGATION, `ch.state[dirWrite] >= endActive` → `<`: the TTL
// timer was stopped when the remote reader came up alone, and the channel
// never expired).
func TestBridgeRemoteReaderExpires(t *testing.T) {
	hubs := newClusterHubs(t, Config{TTL: 300 * time.Millisecond}, 5*time.Second, "a", "b")
	res, _ := hubs[0].Create(0)
	r := hubs[1].dial(t, res.Reader, wire.DirRead)
	expectClose(t, r, wire.CloseInternal, "channel expired: the writer never connected")
}
