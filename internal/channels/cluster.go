package channels

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/sluicehq/sluice/wire"
)

// Channels across cluster nodes.
//
// In cluster mode a channel's id ends in ".<base64url(node name)>": the
// node that created it is its home, and holds its pipe. A socket that
// connects on another node (the ref carries only id, key and direction, and
// every SDK connects to its own engine) is bridged to the home over NATS
// core subjects:
//
//   - open: the connecting node asks the home (request on
//     sluice.ch.<home tag>) with the id, the key and the direction; the home
//     checks the key and claims the end exactly as for a local socket, and
//     answers with a refusal (404, 409, 503, sent to the client before the
//     WebSocket upgrade) or its bridge subject;
//   - the connecting node upgrades the socket and runs it on a proxy pipe of
//     its own, as a local socket; a bridge pumps frames between the proxy
//     pipe and the home pipe, in the direction of the stream;
//   - flow control: the receiving side grants credit (bytes of messages
//     moved into its pipe); the sending side never has more than
//     bridgeWindow of messages unacknowledged, so NATS buffers at most that
//     much per bridge and the pipes' bounds push back end to end;
//   - frames travel as records (flags, length, bytes) in data messages of
//     at most bridgeMsgMax, each with a sequence number: frames ready
//     together share a message, a bigger frame spans several; frame
//     boundaries, the text flag and the order are kept, and a lost message
//     (a route that broke) breaks the stream (1011) instead of corrupting
//     it;
//   - the end of the stream (clean or broken, with its reason) travels
//     after the last frame; the reader's departure travels back;
//   - both sides send a keepalive (with the credit) every
//     bridgeTick; a side that hears nothing from its peer for the node
//     timeout, or whose peer node the membership declares gone, breaks the
//     stream: the reader gets 1011, the writer's socket 1011.
//
// The NATS connection is the node's own, authenticated like its routes:
// only nodes of the cluster can reach these subjects, and a key is checked
// by the home node only.
const (
	openSubjectPrefix   = "sluice.ch."
	bridgeSubjectPrefix = "sluice.chb."
	// bridgeWindow bounds the bytes of data messages one bridge has in
	// flight (sent, not yet moved into the receiving pipe). 4 MiB keeps a
	// stream through two NATS servers near a raw NATS publish stream's rate
	// (1 MiB: 0.75 of it, 4 MiB: 0.92; docs/benchmarks.md "Cluster").
	bridgeWindow = 4 << 20
	// bridgeMsgMax is the largest data message (well under the 1 MiB
	// max_payload of a default nats-server).
	bridgeMsgMax = 256 << 10
	// recordHeader precedes each frame's bytes in a data message: flags,
	// length (uint32).
	recordHeader = 5
	// msgOverhead is what every data message costs against the window
	// besides its bytes, so that tiny frames are bounded in number too.
	msgOverhead = 64
	// openTimeout bounds the home node's answer to an open.
	openTimeout = 5 * time.Second
	maxTagLen   = 200
)

// Message kinds on a bridge subject (first byte).
const (
	kindUpgraded = 'U' // connecting side → home: the socket is up
	kindCancel   = 'C' // connecting side → home: the upgrade failed, unclaim
	kindData     = 'D' // sender → receiver: flags, seq, payload
	kindEnd      = 'E' // sender → receiver: flags (0 clean, 1 broken), seq, reason
	kindGrant    = 'G' // both ways: keepalive; from a receiver, credit (bytes consumed)
	kindStop     = 'X' // receiver → sender: stop kind, reason
)

const (
	flagText = 1
	flagFin  = 2

	stopReaderGone = 0
	stopAbort      = 1
)

// ClusterConfig enables channels across nodes (Hub.EnableCluster).
type ClusterConfig struct {
	Conn        *nats.Conn    // the node's NATS connection
	Node        string        // this node's name
	NodeTimeout time.Duration // a bridge silent this long is broken
}

type clusterHub struct {
	h       *Hub
	nc      *nats.Conn
	node    string
	tag     string // base64url(node): the suffix of this node's channel ids
	timeout time.Duration
	tick    time.Duration

	subs      []*nats.Subscription
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	bridges map[string]*bridge // by token (the last token of its subject)
}

// EnableCluster makes the hub's channel ids name this node and bridges
// sockets to channels of other nodes over NATS. Call it before the hub
// serves anything. Without it the hub is node-local and nothing of this
// file runs.
func (h *Hub) EnableCluster(cfg ClusterConfig) error {
	c := &clusterHub{h: h, nc: cfg.Conn, node: cfg.Node, tag: base64.RawURLEncoding.EncodeToString([]byte(cfg.Node)),
		timeout: cfg.NodeTimeout, stop: make(chan struct{}), done: make(chan struct{}), bridges: map[string]*bridge{}}
	if c.timeout <= 0 {
		c.timeout = 10 * time.Second
	}
	c.tick = min(max(c.timeout/4, 50*time.Millisecond), time.Second)
	if len(c.tag) > maxTagLen {
		return fmt.Errorf("channels: node name too long for channel ids (%d bytes)", len(cfg.Node))
	}
	sub, err := c.nc.Subscribe(openSubjectPrefix+c.tag, c.serveOpen)
	if err != nil {
		return err
	}
	c.subs = append(c.subs, sub)
	sub, err = c.nc.Subscribe(bridgeSubjectPrefix+c.tag+".*", c.dispatch)
	if err != nil {
		c.unsubscribe()
		return err
	}
	// The window bounds what each bridge has in flight; the dispatcher never
	// blocks. No pending limit, so that NATS never drops a message the
	// credit allowed.
	_ = sub.SetPendingLimits(-1, -1)
	c.subs = append(c.subs, sub)
	if err := c.nc.Flush(); err != nil {
		c.unsubscribe()
		return err
	}
	h.cluster = c
	go c.keepalive()
	return nil
}

func (c *clusterHub) unsubscribe() {
	for _, s := range c.subs {
		_ = s.Unsubscribe()
	}
}

// CloseCluster stops the keepalives and the subscriptions of cluster mode
// (Shutdown does it too; for an engine whose start failed). Idempotent.
func (h *Hub) CloseCluster() {
	if h.cluster != nil {
		h.cluster.close()
	}
}

// close stops the keepalives; the bridges have ended (Shutdown).
func (c *clusterHub) close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.done
		c.unsubscribe()
	})
}

// newID is a channel id naming this node.
func (c *clusterHub) newID(uuid string) string { return uuid + "." + c.tag }

// remoteTag returns the home tag of a channel id of another node.
func (c *clusterHub) remoteTag(id string) (string, bool) {
	i := strings.LastIndexByte(id, '.')
	if i < 0 {
		return "", false
	}
	tag := id[i+1:]
	if tag == c.tag || tag == "" || len(tag) > maxTagLen {
		return "", false
	}
	for _, r := range tag {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "", false
		}
	}
	return tag, true
}

// NodeLeft breaks the bridges to a node the membership declared gone,
// unless they heard from it within the last two keepalive periods: the
// membership's verdict rests on JetStream writes, which can stall under
// load while the node and the link are fine (the bridge's own silence
// check still applies).
func (h *Hub) NodeLeft(node string) int {
	c := h.cluster
	if c == nil {
		return 0
	}
	recent := time.Now().Add(-2 * c.tick).UnixNano()
	c.mu.Lock()
	var gone []*bridge
	for _, b := range c.bridges {
		if b.peerNode == node && b.heard.Load() < recent {
			gone = append(gone, b)
		}
	}
	c.mu.Unlock()
	n := 0
	for _, b := range gone {
		if b.fail(&AbortError{Reason: "cluster node " + node + " left"}) {
			n++
		}
	}
	return n
}

type openRequest struct {
	ID      string `json:"id"`
	Key     string `json:"key"`
	Dir     string `json:"dir"`
	Node    string `json:"node"`
	Subject string `json:"subj"`
}

type openReply struct {
	Status  int    `json:"status,omitempty"` // refused: the HTTP status
	Message string `json:"msg,omitempty"`
	Subject string `json:"subj,omitempty"`
	Buffer  int    `json:"buf,omitempty"`
}

// bridge is one side of a cross-node end: on the home node it is that end
// of the channel; on the connecting node it is the other end of the proxy
// pipe that the socket runs on.
type bridge struct {
	c        *clusterHub
	token    string
	subject  string // ours
	peerNode string
	peerSubj string
	sender   bool // frames flow from this side to the peer
	pipe     Pipe
	mem      *chanMem

	ctx    context.Context // cancelled, with a cause, when the bridge must stop
	cancel context.CancelCauseFunc

	heard    atomic.Int64 // unix nanos of the peer's last message
	final    atomic.Bool  // the peer has said everything (end or stop): no keepalive needed
	upgraded chan struct{}
	upOnce   sync.Once

	// Sender.
	sent     uint64 // cost of the data messages sent
	granted  atomic.Uint64
	grantSig chan struct{}
	seq      uint64

	// Receiver.
	consumed   atomic.Uint64
	lastGrant  uint64
	inMu       sync.Mutex
	inbox      [][]byte
	inboxBytes uint64
	inSig      chan struct{}
}

// stopCause is the cause a bridge's context ends with when the peer
// stopped it (a receiver's stop message).
type stopCause struct {
	readerGone bool
	abort      *AbortError
}

func (s *stopCause) Error() string { return "channels: bridge stopped by its peer" }

// newBridge makes a bridge with its token (nuid.Next()); add registers it
// for messages and keepalives.
func (c *clusterHub) newBridge(token string, sender bool, p Pipe, mem *chanMem, peerNode, peerSubj string) *bridge {
	ctx, cancel := context.WithCancelCause(context.Background())
	b := &bridge{c: c, token: token, subject: c.subject(token), peerNode: peerNode, peerSubj: peerSubj, sender: sender, pipe: p, mem: mem,
		ctx: ctx, cancel: cancel, upgraded: make(chan struct{}), grantSig: make(chan struct{}, 1), inSig: make(chan struct{}, 1)}
	b.heard.Store(time.Now().UnixNano())
	return b
}

func (c *clusterHub) subject(token string) string { return bridgeSubjectPrefix + c.tag + "." + token }

func (c *clusterHub) add(b *bridge) {
	c.mu.Lock()
	c.bridges[b.token] = b
	c.mu.Unlock()
}

func (c *clusterHub) remove(b *bridge) {
	c.mu.Lock()
	delete(c.bridges, b.token)
	c.mu.Unlock()
	b.cancel(context.Canceled)
}

// fail stops the bridge with err unless its peer already said everything.
func (b *bridge) fail(err *AbortError) bool {
	if b.final.Load() || b.ctx.Err() != nil {
		return false
	}
	b.cancel(err)
	return true
}

func (b *bridge) publish(data []byte) {
	if b.peerSubj != "" {
		_ = b.c.nc.Publish(b.peerSubj, data)
	}
}

func (b *bridge) sendGrant() {
	var m [9]byte
	m[0] = kindGrant
	binary.BigEndian.PutUint64(m[1:], b.consumed.Load())
	b.publish(m[:])
}

// keepalive sends every bridge's keepalive each tick and breaks the bridges
// whose peer has been silent for the node timeout.
func (c *clusterHub) keepalive() {
	defer close(c.done)
	t := time.NewTicker(c.tick)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		all := make([]*bridge, 0, len(c.bridges))
		for _, b := range c.bridges {
			all = append(all, b)
		}
		c.mu.Unlock()
		now := time.Now().UnixNano()
		for _, b := range all {
			if b.ctx.Err() != nil {
				continue
			}
			b.sendGrant()
			if now-b.heard.Load() > int64(c.timeout) {
				b.fail(&AbortError{Reason: "cluster link to node " + b.peerNode + " silent for " + c.timeout.String()})
			}
		}
	}
}

// dispatch takes every message to this node's bridges. It never blocks:
// data is queued on its bridge, within the credit the bridge granted.
func (c *clusterHub) dispatch(m *nats.Msg) {
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	c.mu.Lock()
	b := c.bridges[token]
	c.mu.Unlock()
	if b == nil || len(m.Data) == 0 {
		return
	}
	b.heard.Store(time.Now().UnixNano())
	d := m.Data
	switch d[0] {
	case kindUpgraded:
		b.upOnce.Do(func() { close(b.upgraded) })
	case kindCancel:
		b.final.Store(true)
		b.cancel(&AbortError{Reason: "the socket's upgrade failed"})
	case kindGrant:
		if len(d) >= 9 && b.sender {
			g := binary.BigEndian.Uint64(d[1:])
			if g > b.granted.Load() {
				b.granted.Store(g)
				select {
				case b.grantSig <- struct{}{}:
				default:
				}
			}
		}
	case kindStop:
		if !b.sender || len(d) < 2 {
			return
		}
		b.final.Store(true)
		cause := &stopCause{readerGone: d[1] == stopReaderGone}
		if !cause.readerGone {
			cause.abort = &AbortError{Reason: string(d[2:])}
		}
		b.cancel(cause)
	case kindData, kindEnd:
		if b.sender {
			return
		}
		if d[0] == kindEnd {
			b.final.Store(true)
		}
		b.inMu.Lock()
		b.inbox = append(b.inbox, d)
		if d[0] == kindData {
			b.inboxBytes += uint64(len(d)) + msgOverhead
		}
		over := b.inboxBytes > 2*bridgeWindow // the peer ignores its credit
		b.inMu.Unlock()
		if over {
			b.fail(&AbortError{Reason: "cluster link: node " + b.peerNode + " exceeded its credit"})
		}
		select {
		case b.inSig <- struct{}{}:
		default:
		}
	}
}

// pop returns the next message queued for a receiver, or nil when the
// bridge stopped or the pipe can take no more.
func (b *bridge) pop() []byte {
	for {
		b.inMu.Lock()
		if len(b.inbox) > 0 {
			d := b.inbox[0]
			b.inbox[0] = nil
			b.inbox = b.inbox[1:]
			b.inMu.Unlock()
			return d
		}
		b.inMu.Unlock()
		select {
		case <-b.inSig:
		case <-b.ctx.Done():
			return nil
		case <-b.pipe.Gone().Done():
			return nil
		}
	}
}

// runSender moves frames from the pipe to the peer. A data message holds
// records (flags, length, bytes) of one or more frames: the frames ready in
// the pipe together share a message up to bridgeMsgMax, a bigger frame
// spans several. Each message goes once the credit allows it. The sender
// ends with the stream's end message, or handles why it was stopped.
func (b *bridge) runSender() {
	buf := make([]byte, 0, bridgeMsgMax)
	for {
		f, err := b.pipe.Recv(b.ctx)
		if err != nil {
			var ae *AbortError
			switch {
			case err == io.EOF:
				b.sendEnd(nil)
			case errors.As(err, &ae):
				if ae == errShutdown {
					ae = &AbortError{Reason: "node " + b.c.node + " shutting down"}
				}
				b.sendEnd(ae)
			default:
				b.stopped()
			}
			return
		}
		flags := byte(0)
		if f.Text {
			flags = flagText
		}
		data := f.Data
		for first := true; first || len(data) > 0; first = false {
			if len(buf) == 0 {
				buf = append(buf, kindData, 0, 0, 0, 0, 0, 0, 0, 0, 0) // seq set by flush
			}
			space := bridgeMsgMax - len(buf) - recordHeader
			if space <= 0 {
				if buf, err = b.flush(buf); err != nil {
					f.Release()
					b.stopped()
					return
				}
				buf = append(buf, kindData, 0, 0, 0, 0, 0, 0, 0, 0, 0)
				space = bridgeMsgMax - len(buf) - recordHeader
			}
			n := min(len(data), space)
			fl := flags
			if n == len(data) {
				fl |= flagFin
			}
			buf = append(buf, fl)
			buf = binary.BigEndian.AppendUint32(buf, uint32(n))
			buf = append(buf, data[:n]...)
			data = data[n:]
		}
		f.Release()
		// More frames ready: they join this message (Recv will not block).
		if b.pipe.Len() > 0 && len(buf) < bridgeMsgMax-recordHeader {
			continue
		}
		if buf, err = b.flush(buf); err != nil {
			b.stopped()
			return
		}
	}
}

// flush sends the data message in buf once the credit allows it and
// returns buf emptied; an error if the bridge stopped meanwhile.
func (b *bridge) flush(buf []byte) ([]byte, error) {
	if len(buf) <= 10 {
		return buf[:0], nil
	}
	cost := uint64(len(buf)) + msgOverhead
	if !b.waitCredit(cost) {
		return buf, context.Cause(b.ctx)
	}
	b.seq++
	binary.BigEndian.PutUint64(buf[2:10], b.seq)
	b.publish(buf)
	b.sent += cost
	return buf[:0], nil
}

// waitCredit waits until a message of cost fits the window.
func (b *bridge) waitCredit(cost uint64) bool {
	for {
		inflight := b.sent - b.granted.Load()
		if inflight == 0 || inflight+cost <= bridgeWindow {
			return true
		}
		select {
		case <-b.grantSig:
		case <-b.ctx.Done():
			return false
		}
	}
}

func (b *bridge) sendEnd(abort *AbortError) {
	b.seq++
	m := []byte{kindEnd, 0}
	if abort != nil {
		m[1] = 1
	}
	m = binary.BigEndian.AppendUint64(m, b.seq)
	if abort != nil {
		m = append(m, abort.Reason...)
	}
	b.publish(m)
}

// stopped applies to the sending side's pipe why the bridge stopped: the
// remote reader left (the writer gets 1011 "reader closed"), the remote
// pipe broke, or the link did.
func (b *bridge) stopped() {
	cause := context.Cause(b.ctx)
	var sc *stopCause
	var ae *AbortError
	switch {
	case errors.As(cause, &sc) && sc.readerGone:
		b.pipe.CloseRecv()
	case errors.As(cause, &sc):
		b.pipe.Abort(sc.abort)
	default:
		if !errors.As(cause, &ae) {
			ae = &AbortError{Reason: "cluster link closed"}
		}
		b.pipe.Abort(ae)
		// The receiving side, if it still runs, ends at once.
		b.sendEnd(ae)
	}
}

// runReceiver moves the peer's frames into the pipe, granting credit as it
// goes, until the end message or a failure.
func (b *bridge) runReceiver() {
	var (
		next uint64 = 1
		asm  Frame  // a frame arriving in several chunks
	)
	defer func() {
		if asm.mem != nil {
			b.mem.endMessage()
			asm.Release()
		}
	}()
	for {
		d := b.pop()
		if d == nil {
			b.receiverStopped(nil)
			return
		}
		if len(d) < 10 {
			b.receiverStopped(&AbortError{Reason: "cluster link: malformed message"})
			return
		}
		seq := binary.BigEndian.Uint64(d[2:10])
		if seq != next {
			b.receiverStopped(&AbortError{Reason: fmt.Sprintf("cluster link to node %s lost messages", b.peerNode)})
			return
		}
		next++
		if d[0] == kindEnd {
			if d[1] == 0 {
				b.pipe.CloseSend()
			} else {
				b.pipe.FailSend(&AbortError{Reason: string(d[10:])})
			}
			return
		}
		cost := uint64(len(d)) + msgOverhead
		b.inMu.Lock()
		b.inboxBytes -= cost
		b.inMu.Unlock()
		for rest := d[10:]; len(rest) > 0; {
			if len(rest) < recordHeader || uint64(len(rest)-recordHeader) < uint64(binary.BigEndian.Uint32(rest[1:recordHeader])) {
				b.receiverStopped(&AbortError{Reason: "cluster link: malformed message"})
				return
			}
			flags, n := rest[0], int(binary.BigEndian.Uint32(rest[1:recordHeader]))
			payload := rest[recordHeader : recordHeader+n : recordHeader+n]
			rest = rest[recordHeader+n:]
			if err := b.receiveRecord(&asm, flags, payload); err != nil {
				if err == errStopped {
					err = nil // the bridge's or the pipe's cause says why
				}
				b.receiverStopped(err)
				return
			}
		}
		if c := b.consumed.Add(cost); c-b.lastGrant >= bridgeWindow/4 {
			b.lastGrant = c
			b.sendGrant()
		}
	}
}

// receiveRecord charges the channel's memory for one record, as a writer
// socket does for a frame (waiting while its bounds are reached, and
// granting no credit meanwhile), and sends the frame it completes into the
// pipe. asm holds a frame arriving in several records. A nil error with
// the bridge or the pipe stopped is reported as errStopped.
func (b *bridge) receiveRecord(asm *Frame, flags byte, payload []byte) error {
	n := int64(len(payload))
	if !b.mem.reserve(n, asm.cost, b.ctx.Done(), b.pipe.Gone().Done()) {
		b.mem.endMessage()
		return errStopped
	}
	if asm.mem == nil && flags&flagFin != 0 {
		f := Frame{Text: flags&flagText != 0, Data: payload, mem: b.mem, cost: n}
		b.mem.endMessage()
		if err := b.pipe.Send(b.ctx, f); err != nil {
			f.Release()
			return err
		}
		return nil
	}
	if asm.mem == nil {
		*asm = Frame{Text: flags&flagText != 0, mem: b.mem}
	}
	asm.Data = append(asm.Data, payload...)
	asm.cost += n
	if flags&flagFin != 0 {
		f := *asm
		*asm = Frame{}
		b.mem.endMessage()
		if err := b.pipe.Send(b.ctx, f); err != nil {
			f.Release()
			return err
		}
	}
	return nil
}

// receiverStopped ends the receiving side's stream after err (a Send error,
// nil when the bridge or the pipe stopped): the pipe's reader left or it
// broke (the sending side is told), or the link broke (the reader gets the
// frames already queued, then 1011).
func (b *bridge) receiverStopped(err error) {
	if err == nil {
		if cause := context.Cause(b.pipe.Gone()); cause != nil {
			err = cause
		} else {
			err = context.Cause(b.ctx)
		}
	}
	var ae *AbortError
	switch {
	case errors.Is(err, ErrReaderGone):
		b.publish([]byte{kindStop, stopReaderGone})
	case b.pipe.Gone().Err() != nil && errors.As(err, &ae):
		reason := ae.Reason
		if ae == errShutdown {
			reason = "node " + b.c.node + " shutting down"
		}
		b.publish(append([]byte{kindStop, stopAbort}, reason...))
	default:
		if !errors.As(err, &ae) {
			ae = &AbortError{Reason: "cluster link closed"}
		}
		b.pipe.FailSend(ae)
		// The sending side, if it still runs, stops at once.
		b.publish(append([]byte{kindStop, stopAbort}, ae.Reason...))
	}
}

// serveOpen answers another node's open of one of this node's channels.
func (c *clusterHub) serveOpen(m *nats.Msg) {
	var req openRequest
	reply := func(r openReply) {
		b, _ := json.Marshal(r)
		_ = m.Respond(b)
	}
	if err := json.Unmarshal(m.Data, &req); err != nil || req.Subject == "" || !strings.HasPrefix(req.Subject, bridgeSubjectPrefix) {
		reply(openReply{Status: http.StatusBadRequest, Message: "bad channel open from another node"})
		return
	}
	end := dirWrite
	if req.Dir == wire.DirRead {
		end = dirRead
	}
	ch, status, msg := c.h.claim(req.ID, req.Key, end)
	if ch == nil {
		reply(openReply{Status: status, Message: msg})
		return
	}
	// The bridge is the claimed end: it receives a remote writer's frames
	// into the channel, or sends the channel's frames to a remote reader.
	b := c.newBridge(nuid.Next(), end == dirRead, ch.pipe, ch.mem, req.Node, req.Subject)
	c.add(b)
	reply(openReply{Subject: b.subject, Buffer: ch.size})
	go c.runHome(b, ch, end)
}

// runHome runs a bridged end on the home node: it waits for the remote
// socket's upgrade (an end whose upgrade failed is unclaimed, as locally),
// then pumps.
func (c *clusterHub) runHome(b *bridge, ch *channel, end int) {
	defer c.remove(b)
	select {
	case <-b.upgraded:
	case <-b.ctx.Done():
	case <-ch.pipe.Gone().Done():
	}
	select {
	case <-b.upgraded:
	default:
		// The remote socket never came up (its upgrade failed, its node
		// went silent) or the channel ended meanwhile (expired, shutdown):
		// free the end as a failed local upgrade does, and tell the peer.
		if cause := context.Cause(ch.pipe.Gone()); cause != nil && b.ctx.Err() == nil {
			var ae *AbortError
			if !errors.As(cause, &ae) || ae == errShutdown {
				ae = &AbortError{Reason: "node " + c.node + " shutting down"}
			}
			if b.sender {
				b.sendEnd(ae)
			} else {
				b.publish(append([]byte{kindStop, stopAbort}, ae.Reason...))
			}
		}
		c.h.unclaim(ch, end)
		return
	}
	defer c.h.wg.Done()
	c.h.mu.Lock()
	ch.state[end] = endActive
	if ch.state[dirWrite] >= endActive && ch.state[dirRead] >= endActive && ch.stopTimer != nil {
		ch.stopTimer()
		ch.stopTimer = nil
	}
	c.h.mu.Unlock()
	if c.h.onChanged != nil {
		c.h.onChanged()
	}
	if b.sender {
		b.runSender()
	} else {
		b.runReceiver()
	}
	c.h.finish(ch, end, nil)
}

// serveBridged serves a socket for a channel of another node (tag): every
// refusal comes from the home node, before the upgrade.
func (h *Hub) serveBridged(w http.ResponseWriter, r *http.Request, c *clusterHub, tag, id, key string, end int) {
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.wg.Add(1)
	}
	h.mu.Unlock()
	if closed {
		http.Error(w, "engine shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.wg.Done()
	home := tag
	if b, err := base64.RawURLEncoding.DecodeString(tag); err == nil {
		home = string(b)
	}
	dir := wire.DirWrite
	if end == dirRead {
		dir = wire.DirRead
	}
	token := nuid.Next()
	req, _ := json.Marshal(openRequest{ID: id, Key: key, Dir: dir, Node: c.node, Subject: c.subject(token)})
	resp, err := c.nc.Request(openSubjectPrefix+tag, req, openTimeout)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			http.Error(w, "Channel not found", http.StatusNotFound)
			return
		}
		h.log.Warn("channel open on another node failed", "channel_id", id, "node", home, "err", err)
		http.Error(w, "the channel's node did not answer", http.StatusServiceUnavailable)
		return
	}
	var rep openReply
	if err := json.Unmarshal(resp.Data, &rep); err != nil || (rep.Status == 0 && rep.Subject == "") {
		http.Error(w, "bad answer from the channel's node", http.StatusBadGateway)
		return
	}
	if rep.Status != 0 {
		http.Error(w, rep.Message, rep.Status)
		return
	}
	size := rep.Buffer
	if size <= 0 {
		size = h.cfg.DefaultBuffer
	}
	size = max(1, min(size, h.cfg.MaxBuffer))
	ch := &channel{id: id, size: size, created: time.Now(), mem: newChanMem(h.budget, h.cfg.MaxBufferBytes),
		pipe: newMemPipe(size, h.onSendBlocked, h.onChanged)}
	ch.state[1-end] = endActive // the bridge
	ch.state[end] = endClaimed
	// The bridge is the proxy pipe's other end: it sends what a writer
	// socket puts in, or receives what a reader socket takes out.
	b := c.newBridge(token, end == dirWrite, ch.pipe, ch.mem, home, rep.Subject)
	c.add(b)
	defer c.remove(b)
	up := &h.writerUp
	if end == dirRead {
		up = &h.readerUp
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		b.publish([]byte{kindCancel})
		return
	}
	b.publish([]byte{kindUpgraded})
	h.mu.Lock()
	shut := h.closed
	if !shut {
		h.proxies[ch] = struct{}{}
	}
	h.mu.Unlock()
	if shut {
		ch.pipe.Abort(errShutdown)
	}
	h.activate(ch, end, ws)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if b.sender {
			b.runSender()
		} else {
			b.runReceiver()
		}
	}()
	if end == dirWrite {
		h.runWriter(ch, ws)
	} else {
		h.runReader(ch, ws)
	}
	<-done
	h.mu.Lock()
	delete(h.proxies, ch)
	h.mu.Unlock()
}
