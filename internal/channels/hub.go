// Package channels is the engine side of iii channels: byte streams between
// two functions, each end a WebSocket (GET /ws/channels/{id}?key=&dir=) or
// an in-process end used by the HTTP trigger code.
//
// A Hub owns every channel of one engine. Each channel is a bounded Pipe of
// frames between its write end and its read end; the frames are the
// writer's WebSocket messages, forwarded one for one and unchanged (binary =
// data, text = message). A channel holds at most its buffer size in frames
// and MaxBufferBytes in bytes (one frame of any size when it holds nothing
// else), and all channels together MaxTotalBufferBytes (mem.go): when a
// bound is reached the write end stops reading its socket and TCP pushes
// back on the writer.
//
// In cluster mode (EnableCluster, cluster.go) a channel's id names the node
// that created it, and a socket connecting to another node is bridged to
// that node's pipe over NATS with the same guarantees.
//
// A channel created for a connection (CreateFor) counts against that
// connection's quota (MaxPerOwner) while it is open; ReleaseOwner, called
// when the connection ends, removes those of its channels that no end has
// connected to yet.
//
// Close codes (what each socket sees; see PROTOCOL.md §5 and "Where we go
// further"):
//
//	reader, writer finished cleanly      1000, after every frame the engine read
//	reader, writer vanished or failed    1011 + reason (connection lost, writer
//	                                     closed with an error code, frame too
//	                                     large, protocol error), after every
//	                                     frame the engine had read
//	reader, channel expired or shutdown  1011 + reason, at once
//	writer, reader went away             1011 "reader closed"
//	writer, frame over MaxFrameSize      1009 + reason
//	writer, broke the WebSocket protocol 1002 + reason (the reader gets 1011)
//	writer, channel expired              1011 "channel expired: …"
//	writer, engine shutdown              1001 "engine shutting down"
//
// A writer's close frame is a clean end for codes 1000, 1001, 1005 (no
// status) and the application range 3000–4999; the RFC 6455 error codes
// (1002–1015 other than those) mean the writer failed, so the reader gets
// 1011 with the writer's reason. That is how a Go SDK writer's
// CloseWithError reaches the reader.
package channels

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/wire"
)

// Config tunes a Hub. Zero fields take their defaults.
type Config struct {
	DefaultBuffer       int           // frames per channel when Create gets <= 0; default 64
	MaxBuffer           int           // upper clamp of a channel's buffer; default 1024 (lower clamp 1)
	MaxBufferBytes      int64         // bytes buffered per channel (but always one frame); default 4 MiB
	MaxTotalBufferBytes int64         // bytes buffered by all channels together; default 256 MiB
	MaxFrameSize        int64         // largest frame accepted from a writer; default 16 MiB
	MaxChannels         int           // open channels at most; default 100_000
	MaxPerOwner         int           // open channels per owner (CreateFor); default 1000
	TTL                 time.Duration // a channel whose other end never connects expires; default 5 min
}

const (
	defaultBuffer              = 64
	defaultMaxBuffer           = 1024
	defaultMaxBufferBytes      = 4 << 20
	defaultMaxTotalBufferBytes = 256 << 20
	defaultMaxFrameSize        = 16 << 20
	defaultMaxChannels         = 100_000
	defaultMaxPerOwner         = 1000
	defaultTTL                 = 5 * time.Minute

	// controlWait bounds writing a close frame; closeWait bounds waiting for
	// the peer's close reply before the TCP connection is dropped.
	controlWait = time.Second
	closeWait   = 2 * time.Second
)

// Errors of Create and of the local ends.
var (
	ErrChannelLimit  = errors.New("channels: channel limit reached") // engine answers wire.CodeChannelLimit
	ErrOwnerLimit    = errors.New("channels: channel limit of this connection reached")
	ErrShuttingDown  = errors.New("channels: engine shutting down")
	ErrFrameTooLarge = errors.New("channels: frame too large")
	ErrClosed        = errors.New("channels: end already closed")
)

// Ends of a channel, as array indexes.
const (
	dirWrite = 0
	dirRead  = 1
)

type endState uint8

const (
	endFree    endState = iota // nobody connected yet
	endClaimed                 // a socket is being upgraded
	endActive                  // connected (socket or local end)
	endDone                    // finished
)

type channel struct {
	id    string
	key   string
	pipe  Pipe
	mem   *chanMem
	owner string // the connection it counts against; "" = none
	size  int    // buffer size in frames

	created       time.Time
	frames, bytes atomic.Uint64 // received from its writer socket

	// Guarded by Hub.mu.
	state     [2]endState
	stopTimer func() bool
	expiryDue bool   // the TTL passed while an end was mid-upgrade
	onReady   func() // the local end's OnReady hook, called at most once
	closeSend bool   // the local writer closed before the pipe was made
}

// A channel with a local end gets its pipe (a buffer of size frames, the
// costliest part of a channel) and memory account only when something can
// go through it: its remote end connects (claim), the local end writes,
// reads or closes, or the channel ends. An HTTP exchange answered from the
// function's result, whose function never connected to its channels,
// never pays for them. ch.pipe and ch.mem are written under Hub.mu; a
// socket's goroutines read them after claim, local ends through pipeFor.

// pipeLocked returns ch's pipe, making it if need be. h.mu is held.
func (h *Hub) pipeLocked(ch *channel) Pipe {
	if ch.pipe == nil {
		ch.pipe = newMemPipe(ch.size, h.onSendBlocked, h.onChanged)
		if ch.closeSend {
			ch.pipe.CloseSend()
		}
		ch.mem = newChanMem(h.budget, h.cfg.MaxBufferBytes)
	}
	return ch.pipe
}

// closeUnmade records a clean end of the stream of a local writer that has
// no pipe yet (the pipe starts closed when made), and reports whether it
// did.
func (h *Hub) closeUnmade(ch *channel) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch.pipe != nil {
		return false
	}
	ch.closeSend = true
	return true
}

// pipeFor is pipeLocked for the local ends, which hold no lock.
func (h *Hub) pipeFor(ch *channel) Pipe {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pipeLocked(ch)
}

// takeReady returns ch's OnReady hook, once. h.mu is held.
func takeReady(ch *channel) func() {
	f := ch.onReady
	ch.onReady = nil
	return f
}

// retiredPipe stands for the pipe of a channel retired before it had one
// (such a channel has no memory account either): Recv and Send fail with
// "channel retired", and nothing can be queued.
var retiredPipe Pipe = func() Pipe {
	p := newMemPipe(1, nil, nil)
	p.Abort(&AbortError{Reason: "channel retired"})
	return p
}()

func (ch *channel) ref(dir string) wire.ChannelRef {
	return wire.ChannelRef{ChannelID: ch.id, AccessKey: ch.key, Direction: dir}
}

// Hub owns the channels of one engine. It is safe for concurrent use.
type Hub struct {
	cfg      Config
	log      *slog.Logger
	writerUp websocket.Upgrader
	readerUp websocket.Upgrader

	budget *budget

	mu    sync.Mutex
	chans map[string]*channel
	owned map[string]map[*channel]struct{} // open channels by owner
	socks map[*websocket.Conn]struct{}     // force-closed when Shutdown runs out of time
	// Cluster mode (cluster.go): nil when off. proxies are the pipes of
	// sockets bridged to other nodes' channels.
	cluster *clusterHub
	proxies map[*channel]struct{}
	closed  bool
	wg      sync.WaitGroup // socket goroutines

	// Counted for metrics (Counters).
	frames, bytes, aborted atomic.Uint64

	// Test seams.
	afterFunc     func(time.Duration, func()) (stop func() bool)
	onSendBlocked func()      // a writer found its pipe full
	onChanged     func()      // an end finished, a channel expired or a frame was queued
	onReaderBatch func(n int) // a reader socket is about to get a batch of n frames
}

// NewHub returns an empty hub. log may be nil.
func NewHub(cfg Config, log *slog.Logger) *Hub {
	if cfg.DefaultBuffer <= 0 {
		cfg.DefaultBuffer = defaultBuffer
	}
	if cfg.MaxBuffer <= 0 {
		cfg.MaxBuffer = defaultMaxBuffer
	}
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = defaultMaxFrameSize
	}
	if cfg.MaxChannels <= 0 {
		cfg.MaxChannels = defaultMaxChannels
	}
	if cfg.MaxBufferBytes <= 0 {
		cfg.MaxBufferBytes = defaultMaxBufferBytes
	}
	if cfg.MaxTotalBufferBytes <= 0 {
		cfg.MaxTotalBufferBytes = defaultMaxTotalBufferBytes
	}
	if cfg.MaxPerOwner <= 0 {
		cfg.MaxPerOwner = defaultMaxPerOwner
	}
	if cfg.TTL <= 0 {
		cfg.TTL = defaultTTL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	anyOrigin := func(*http.Request) bool { return true } // the access key is the credential
	return &Hub{
		cfg: cfg,
		log: log,
		// ws.Conn does the handshakes, control frames and the protocol
		// of every read and write: frameReader reads a writer socket's
		// messages through its FrameReader (frames.go), and a reader
		// socket's data goes out with WriteMessages, each message one
		// frame as its writer sent it.
		writerUp: websocket.Upgrader{
			CheckOrigin: anyOrigin,
		},
		readerUp: websocket.Upgrader{
			CheckOrigin:     anyOrigin,
			WriteBufferSize: int(cfg.MaxFrameSize),
		},
		budget:  newBudget(cfg.MaxTotalBufferBytes),
		chans:   make(map[string]*channel),
		owned:   make(map[string]map[*channel]struct{}),
		socks:   make(map[*websocket.Conn]struct{}),
		proxies: make(map[*channel]struct{}),
		afterFunc: func(d time.Duration, f func()) func() bool {
			return time.AfterFunc(d, f).Stop
		},
	}
}

// Create opens a channel with neither end connected and returns its two
// refs (same id and key, directions "write" and "read"). bufferSize <= 0
// means Config.DefaultBuffer; it is clamped to [1, Config.MaxBuffer].
func (h *Hub) Create(bufferSize int) (wire.CreateChannelResult, error) {
	return h.CreateFor("", bufferSize)
}

// CreateFor is Create on behalf of owner (a connection id; "" = none): the
// channel counts against owner's quota of Config.MaxPerOwner open channels
// (ErrOwnerLimit beyond it) until it leaves the hub, and ReleaseOwner
// removes it if no end has connected by then.
func (h *Hub) CreateFor(owner string, bufferSize int) (wire.CreateChannelResult, error) {
	ch, err := h.newChannel(owner, bufferSize, -1)
	if err != nil {
		return wire.CreateChannelResult{}, err
	}
	return wire.CreateChannelResult{Writer: ch.ref(wire.DirWrite), Reader: ch.ref(wire.DirRead)}, nil
}

// CreateWithLocalWriter opens a channel whose write end is held in process
// and returns the read end's ref for a worker.
func (h *Hub) CreateWithLocalWriter(bufferSize int) (wire.ChannelRef, *LocalWriter, error) {
	ch, err := h.newChannel("", bufferSize, dirWrite)
	if err != nil {
		return wire.ChannelRef{}, nil, err
	}
	return ch.ref(wire.DirRead), &LocalWriter{h: h, ch: ch}, nil
}

// CreateWithLocalReader opens a channel whose read end is held in process
// and returns the write end's ref for a worker.
func (h *Hub) CreateWithLocalReader(bufferSize int) (wire.ChannelRef, *LocalReader, error) {
	ch, err := h.newChannel("", bufferSize, dirRead)
	if err != nil {
		return wire.ChannelRef{}, nil, err
	}
	return ch.ref(wire.DirWrite), &LocalReader{h: h, ch: ch}, nil
}

func (h *Hub) newChannel(owner string, bufferSize, localEnd int) (*channel, error) {
	if bufferSize <= 0 {
		bufferSize = h.cfg.DefaultBuffer
	}
	bufferSize = max(1, min(bufferSize, h.cfg.MaxBuffer))
	id := uuid.NewString() // v4: 122 random bits each
	if h.cluster != nil {
		id = h.cluster.newID(id)
	}
	ch := &channel{
		id:      id,
		size:    bufferSize,
		key:     uuid.NewString(),
		owner:   owner,
		created: time.Now(),
	}
	if localEnd < 0 { // a local end's pipe is made on demand
		ch.pipe = newMemPipe(bufferSize, h.onSendBlocked, h.onChanged)
		ch.mem = newChanMem(h.budget, h.cfg.MaxBufferBytes)
	}
	if localEnd >= 0 {
		ch.state[localEnd] = endActive
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrShuttingDown
	}
	if len(h.chans) >= h.cfg.MaxChannels {
		return nil, ErrChannelLimit
	}
	if owner != "" {
		set := h.owned[owner]
		if len(set) >= h.cfg.MaxPerOwner {
			return nil, ErrOwnerLimit
		}
		if set == nil {
			set = make(map[*channel]struct{})
			h.owned[owner] = set
		}
		set[ch] = struct{}{}
	}
	h.chans[ch.id] = ch
	ch.stopTimer = h.afterFunc(h.cfg.TTL, func() { h.expire(ch) })
	return ch, nil
}

// Len returns the number of open channels.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.chans)
}

// ChannelInfo describes an open channel for the console.
type ChannelInfo struct {
	ID      string    `json:"id"`    // the first 8 characters of its id (never its key)
	Owner   string    `json:"owner"` // the worker it counts against, "" for none
	Created time.Time `json:"created"`
	Writer  string    `json:"writer"` // waiting, connecting, connected or done
	Reader  string    `json:"reader"`
	Frames  uint64    `json:"frames"` // received from its writer socket
	Bytes   uint64    `json:"bytes"`
}

var endNames = [...]string{endFree: "waiting", endClaimed: "connecting", endActive: "connected", endDone: "done"}

// List returns up to limit open channels, the most recent first, and how
// many are open.
func (h *Hub) List(limit int) ([]ChannelInfo, int) {
	h.mu.Lock()
	all := make([]*channel, 0, len(h.chans))
	for _, ch := range h.chans {
		all = append(all, ch)
	}
	states := make(map[*channel][2]endState, len(all))
	for _, ch := range all {
		states[ch] = ch.state
	}
	h.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].created.After(all[j].created) })
	n := len(all)
	if len(all) > limit {
		all = all[:limit]
	}
	out := make([]ChannelInfo, 0, len(all))
	for _, ch := range all {
		st := states[ch]
		out = append(out, ChannelInfo{ID: ch.id[:8], Owner: ch.owner, Created: ch.created,
			Writer: endNames[st[dirWrite]], Reader: endNames[st[dirRead]], Frames: ch.frames.Load(), Bytes: ch.bytes.Load()})
	}
	return out, n
}

// Counters returns the data frames and payload bytes received from writer
// sockets, and the number of writer sockets that broke off, since the hub
// was made.
func (h *Hub) Counters() (frames, bytes, aborted uint64) {
	return h.frames.Load(), h.bytes.Load(), h.aborted.Load()
}

// Owned returns the number of open channels that count against owner.
func (h *Hub) Owned(owner string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.owned[owner])
}

// BufferedBytes returns the bytes that channel frames hold right now (the
// charge against Config.MaxTotalBufferBytes).
func (h *Hub) BufferedBytes() int64 { return h.budget.Used() }

// ReleaseOwner is called when owner's connection ends: its open channels no
// longer count against it, and those that no end has connected to yet are
// removed at once (a later connection gets 404) instead of waiting for the
// TTL. It returns how many it removed.
func (h *Hub) ReleaseOwner(owner string) int {
	if owner == "" {
		return 0
	}
	h.mu.Lock()
	var gone []*channel
	for ch := range h.owned[owner] {
		ch.owner = ""
		if ch.state[dirWrite] != endFree || ch.state[dirRead] != endFree || h.chans[ch.id] != ch {
			continue
		}
		delete(h.chans, ch.id)
		ch.state = [2]endState{endDone, endDone}
		if ch.stopTimer != nil {
			ch.stopTimer()
			ch.stopTimer = nil
		}
		h.pipeLocked(ch)
		gone = append(gone, ch)
	}
	delete(h.owned, owner)
	h.mu.Unlock()
	for _, ch := range gone {
		ch.pipe.Abort(&AbortError{Reason: "channel released: its creator disconnected"})
	}
	if len(gone) > 0 {
		h.log.Info("unconnected channels of a departed creator released", "owner", owner, "channels", len(gone))
		if h.onChanged != nil {
			h.onChanged()
		}
	}
	return len(gone)
}

// removeLocked takes ch out of the registry and its owner's count. h.mu is
// held.
func (h *Hub) removeLocked(ch *channel) {
	if h.chans[ch.id] != ch {
		return
	}
	delete(h.chans, ch.id)
	if ch.owner != "" {
		if set := h.owned[ch.owner]; set != nil {
			delete(set, ch)
			if len(set) == 0 {
				delete(h.owned, ch.owner)
			}
		}
	}
}

// expire ends a channel one of whose ends never connected within the TTL
// (PROTOCOL.md §5.7); the end that did connect gets 1011 "channel expired…".
func (h *Hub) expire(ch *channel) {
	h.mu.Lock()
	w, r := ch.state[dirWrite], ch.state[dirRead]
	if h.chans[ch.id] != ch || (w != endFree && r != endFree) {
		// An end being upgraded decides: if its upgrade fails, unclaim
		// expires the channel.
		ch.expiryDue = w == endClaimed || r == endClaimed
		h.mu.Unlock()
		return
	}
	h.removeLocked(ch)
	p, ready := h.pipeLocked(ch), takeReady(ch)
	h.mu.Unlock()
	if h.onChanged != nil {
		defer h.onChanged()
	}
	if ready != nil {
		defer ready() // after the abort: the local reader reads the reason
	}
	reason := "channel expired: the reader never connected"
	switch {
	case w == endFree && r == endFree:
		reason = "channel expired: no end connected"
	case w == endFree:
		reason = "channel expired: the writer never connected"
	}
	h.log.Debug("channel expired", "channel_id", ch.id, "reason", reason)
	p.Abort(&AbortError{Reason: reason})
}

// retire removes a channel with a local end whose remote end never
// connected, and reports whether it did.
func (h *Hub) retire(ch *channel, local int) bool {
	h.mu.Lock()
	if ch.state[1-local] != endFree || h.chans[ch.id] != ch {
		h.mu.Unlock()
		return false
	}
	h.removeLocked(ch)
	ch.state = [2]endState{endDone, endDone}
	if ch.stopTimer != nil {
		ch.stopTimer()
		ch.stopTimer = nil
	}
	ch.onReady = nil // the local end retires it: it is done reading
	p := ch.pipe
	if p == nil {
		// Nothing was ever queued or waited on: no pipe to make and abort.
		ch.pipe = retiredPipe
	}
	h.mu.Unlock()
	if p != nil {
		p.Abort(&AbortError{Reason: "channel retired"})
	}
	if h.onChanged != nil {
		h.onChanged()
	}
	return true
}

// claim reserves one end of a channel for a connecting socket, or says why
// not (HTTP status and body).
func (h *Hub) claim(id, key string, end int) (*channel, int, string) {
	ch, status, msg, ready := h.claimEnd(id, key, end)
	if ready != nil {
		ready()
	}
	return ch, status, msg
}

func (h *Hub) claimEnd(id, key string, end int) (_ *channel, status int, msg string, ready func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, http.StatusServiceUnavailable, "engine shutting down", nil
	}
	ch := h.chans[id]
	if ch == nil || subtle.ConstantTimeCompare([]byte(key), []byte(ch.key)) != 1 {
		return nil, http.StatusNotFound, "Channel not found", nil
	}
	if ch.state[end] != endFree {
		if end == dirWrite {
			return nil, http.StatusConflict, "the write end of this channel is already taken", nil
		}
		return nil, http.StatusConflict, "the read end of this channel is already taken", nil
	}
	ch.state[end] = endClaimed
	h.wg.Add(1)
	h.pipeLocked(ch) // the socket's goroutines use ch.pipe from now on
	return ch, 0, "", takeReady(ch)
}

// unclaim frees an end whose upgrade failed, so that the client can retry.
func (h *Hub) unclaim(ch *channel, end int) {
	h.mu.Lock()
	if ch.state[end] == endClaimed {
		ch.state[end] = endFree
	}
	due := ch.expiryDue
	h.mu.Unlock()
	if due {
		h.expire(ch)
	}
	h.wg.Done()
}

func (h *Hub) activate(ch *channel, end int, ws *websocket.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch.state[end] = endActive
	h.socks[ws] = struct{}{}
	if ch.state[dirWrite] >= endActive && ch.state[dirRead] >= endActive && ch.stopTimer != nil {
		ch.stopTimer()
		ch.stopTimer = nil
	}
}

// finish records that one end is over; a channel whose both ends are over
// leaves the registry (the reference engine leaks it).
func (h *Hub) finish(ch *channel, end int, ws *websocket.Conn) {
	if h.onChanged != nil {
		defer h.onChanged()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ch.state[end] = endDone
	if ws != nil {
		delete(h.socks, ws)
	}
	if ch.state[dirWrite] == endDone && ch.state[dirRead] == endDone {
		h.removeLocked(ch)
		if ch.stopTimer != nil {
			ch.stopTimer()
			ch.stopTimer = nil
		}
	}
}

// Shutdown ends every channel: readers get 1011 "engine shutting down",
// writer sockets 1001, local ends an *AbortError; Create fails from now on.
// It waits for the channel sockets to finish their close handshakes; when
// ctx ends first it drops the remaining connections and returns ctx.Err()
// (nil when there were none: a deadline that passed before Shutdown was
// called, with nothing open, cut nothing).
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	chans := make([]*channel, 0, len(h.chans))
	for _, ch := range h.chans {
		chans = append(chans, ch)
		if ch.stopTimer != nil {
			ch.stopTimer()
			ch.stopTimer = nil
		}
	}
	for ch := range h.proxies {
		chans = append(chans, ch)
	}
	var ready []func()
	for _, ch := range chans {
		h.pipeLocked(ch)
		if f := takeReady(ch); f != nil {
			ready = append(ready, f)
		}
	}
	clear(h.chans)
	clear(h.owned)
	h.mu.Unlock()

	for _, ch := range chans {
		ch.pipe.Abort(errShutdown)
	}
	for _, f := range ready {
		f()
	}
	if h.cluster != nil {
		defer h.cluster.close()
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	h.mu.Lock()
	dropped := len(h.socks)
	for ws := range h.socks {
		ws.NetConn().Close()
	}
	h.mu.Unlock()
	<-done
	if dropped == 0 {
		return nil
	}
	return ctx.Err()
}
