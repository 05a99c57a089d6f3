package engine

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	websocket "github.com/sluicehq/sluice/internal/ws"
	"github.com/sluicehq/sluice/internal/wsconn"
)

// The stream client WebSocket (upstream's stream port, 3112): browsers and
// other clients send {type: "join"|"leave", data: {subscriptionId,
// streamName, groupId, id?}}, get a "sync" of the item (id) or the group
// (no id) on join, then every create/update/delete/event of what they
// joined. stream:join bindings may refuse a join by answering
// {unauthorized: true}; streams.auth_function, when set, is called before
// the upgrade and its {context} is passed to join/leave bindings.

const (
	triggerTypeStreamJoin  = "stream:join"
	triggerTypeStreamLeave = "stream:leave"
	// streamClientMaxPending bounds the bytes waiting for one client
	// beyond what its socket's kernel buffer holds; a client that falls
	// this far behind is disconnected.
	streamClientMaxPending = 1 << 20
	// streamFanQueue bounds the messages waiting for the fan-out
	// goroutine; a writer that finds it full waits.
	streamFanQueue = 4096
)

// StreamsConfig configures the streams module.
type StreamsConfig struct {
	Enabled bool `yaml:"enabled"`
	// Addr is the stream client WebSocket's listen address; "" serves none.
	Addr string `yaml:"addr"`
	// AuthFunction, when set, is called with {headers, path,
	// query_params, addr} before a client's upgrade: an error refuses it
	// (401), a result's context goes to the join/leave bindings.
	AuthFunction string `yaml:"auth_function"`
}

func defaultStreamsConfig() StreamsConfig {
	return StreamsConfig{Enabled: true, Addr: "127.0.0.1:3112"}
}

type streamSub struct {
	c               *streamClient
	id, name, group string
	item            *string
}

type streamHub struct {
	e     *Engine
	join  *moduleTriggers[struct{}]
	leave *moduleTriggers[struct{}]

	mu   sync.RWMutex
	subs map[string]map[*streamSub]struct{} // streamName\x00groupId

	// fan carries changes to the fan-out goroutine, in the order they
	// were made; it writes each to every client concerned.
	fan      chan streamPush
	fanDone  chan struct{}
	stopOnce sync.Once

	srv *http.Server
	ln  net.Listener
}

type streamPush struct {
	name, group string
	id          *string
	b           []byte
}

// streamClient is one client socket, written without blocking: a message
// goes straight into the socket when the kernel takes it, else into a
// pending buffer its wsconn writer drains (bounded: streamClientMaxPending).
type streamClient struct {
	conn    *wsconn.Conn
	context jsontext.Value
	subs    map[string]*streamSub // by subscription id; reader goroutine only
}

func (c *streamClient) close() { c.conn.Abort() }

// push writes b to the client, or into batch's cork buffer (nil: none);
// b is never modified afterwards (the same bytes go to every client).
func (c *streamClient) push(batch *wsconn.Batch, b []byte) {
	if err := c.conn.SendIn(context.Background(), batch, wsconn.Text, b, nil); errors.Is(err, wsconn.ErrCongested) {
		c.close() // too slow: drop it rather than buffer without bound
	}
}

func (e *Engine) registerStreamClients(m *streamModule) {
	h := &streamHub{e: e, subs: map[string]map[*streamSub]struct{}{}, fan: make(chan streamPush, streamFanQueue), fanDone: make(chan struct{}),
		join: newModuleTriggers(parseConfig[struct{}]), leave: newModuleTriggers(parseConfig[struct{}])}
	m.hub = h
	e.addEngineTriggerType(triggerTypeStreamJoin, "Fired when a stream client joins; answer {unauthorized: true} to refuse", h.join)
	e.addEngineTriggerType(triggerTypeStreamLeave, "Fired when a stream client leaves", h.leave)
}

// startStreamClients listens on streams.addr. A port in use is logged, not
// fatal: the worker port and everything else still serve.
func (h *streamHub) start() {
	go h.fanOut()
	addr := h.e.cfg.Streams.Addr
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		h.e.log.Warn("stream client listener not started", "addr", addr, "err", err)
		return
	}
	h.ln = h.e.wrapTLS(ln)
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { h.e.serveErr <- serveOrClosed(h.srv, h.ln) }()
	h.e.log.Info("stream clients served", "addr", ln.Addr().String())
}

func (h *streamHub) stop() {
	h.stopOnce.Do(func() { close(h.fanDone) })
	if h.srv != nil {
		_ = h.srv.Close()
	}
	h.mu.RLock()
	var cs []*streamClient
	for _, set := range h.subs {
		for s := range set {
			cs = append(cs, s.c)
		}
	}
	h.mu.RUnlock()
	for _, c := range cs {
		c.close()
	}
}

// Addr is the stream client listener's address ("" when not serving).
func (h *streamHub) Addr() string {
	if h == nil || h.ln == nil {
		return ""
	}
	return h.ln.Addr().String()
}

var streamUpgrader = websocket.Upgrader{
	// Stream clients are browser pages on any origin (as upstream);
	// streams.auth_function and stream:join bindings decide who may read.
	CheckOrigin: func(*http.Request) bool { return true },
}

func (h *streamHub) serve(w http.ResponseWriter, r *http.Request) {
	var authCtx jsontext.Value
	if fn := h.e.cfg.Streams.AuthFunction; fn != "" {
		headers := map[string]string{}
		for k, v := range r.Header {
			headers[strings.ToLower(k)] = strings.Join(v, ", ")
		}
		in, _ := json.Marshal(map[string]any{"headers": headers, "path": r.URL.Path, "query_params": r.URL.Query(), "addr": r.RemoteAddr})
		v, errBody := h.e.callAndWait(fn, in, nil)
		if errBody != nil {
			h.e.log.Warn("stream client refused by auth_function", "remote", r.RemoteAddr, "code", errBody.Code, "message", errBody.Message)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var res struct {
			Context jsontext.Value `json:"context"`
		}
		_ = json.Unmarshal(v, &res, lenient)
		authCtx = res.Context
	}
	ws, err := wsconn.Upgrade(&streamUpgrader, w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(64 << 10)
	c := &streamClient{conn: wsconn.New(ws, wsconn.Options{MaxQueuedBytes: streamClientMaxPending}), context: authCtx, subs: map[string]*streamSub{}}
	defer func() {
		for _, s := range c.subs {
			h.remove(s)
			h.joinLeave(h.leave, c, s)
		}
		// The reader's last frame (a close echo, a 1002/1007) may still
		// be pending, as for a worker socket (workerConn.close).
		c.conn.HangupWithin(closeFlushWait)
	}()
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var msg struct {
			Type string `json:"type"`
			Data struct {
				SubscriptionID string  `json:"subscriptionId"`
				StreamName     string  `json:"streamName"`
				GroupID        string  `json:"groupId"`
				ID             *string `json:"id"`
			} `json:"data"`
		}
		if json.Unmarshal(b, &msg, lenient) != nil || msg.Data.SubscriptionID == "" {
			continue // upstream ignores what it cannot read
		}
		d := msg.Data
		switch msg.Type {
		case "join":
			s := &streamSub{c: c, id: d.SubscriptionID, name: d.StreamName, group: d.GroupID, item: d.ID}
			if !h.joinLeave(h.join, c, s) {
				c.push(nil, h.message(s.name, s.group, s.item, map[string]any{"type": "unauthorized"}))
				continue
			}
			if old := c.subs[s.id]; old != nil {
				h.remove(old)
			}
			c.subs[s.id] = s
			h.add(s)
			h.sync(s)
		case "leave":
			if s := c.subs[d.SubscriptionID]; s != nil {
				delete(c.subs, s.id)
				h.remove(s)
				h.joinLeave(h.leave, c, s)
			}
		}
	}
}

func subKey(name, group string) string { return name + "\x00" + group }

func (h *streamHub) add(s *streamSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := subKey(s.name, s.group)
	if h.subs[k] == nil {
		h.subs[k] = map[*streamSub]struct{}{}
	}
	h.subs[k][s] = struct{}{}
}

func (h *streamHub) remove(s *streamSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := subKey(s.name, s.group)
	delete(h.subs[k], s)
	if len(h.subs[k]) == 0 {
		delete(h.subs, k)
	}
}

// joinLeave calls the join or leave bindings; false: a join binding
// answered {unauthorized: true}.
func (h *streamHub) joinLeave(p *moduleTriggers[struct{}], c *streamClient, s *streamSub) bool {
	list := p.matching(func(*struct{}) bool { return true })
	if len(list) == 0 {
		return true
	}
	ctx := c.context
	if len(ctx) == 0 {
		ctx = jsontext.Value("null")
	}
	data, _ := json.Marshal(map[string]any{"subscription_id": s.id, "stream_name": s.name, "group_id": s.group, "id": s.item, "context": ctx})
	ok := true
	for _, mt := range list {
		v, errBody := h.e.callAndWaitIn(mt.t.Namespace, mt.t.FunctionID, data, mt.t.Metadata)
		if errBody != nil {
			h.e.log.Warn("stream join/leave handler failed", "trigger_id", mt.t.ID, "function_id", mt.t.FunctionID, "code", errBody.Code)
			continue
		}
		var r struct {
			Unauthorized bool `json:"unauthorized"`
		}
		if p == h.join && json.Unmarshal(v, &r, lenient) == nil && r.Unauthorized {
			ok = false
		}
	}
	return ok
}

// sync sends a joined subscription the item, or the group's items.
func (h *streamHub) sync(s *streamSub) {
	fn, in := "stream::list", map[string]any{"stream_name": s.name, "group_id": s.group}
	if s.item != nil {
		fn, in["item_id"] = "stream::get", *s.item
	}
	b, _ := json.Marshal(in)
	v, errBody := h.e.callAndWait(fn, b, nil)
	if errBody != nil {
		h.e.log.Warn("stream sync failed", "stream_name", s.name, "group_id", s.group, "code", errBody.Code, "message", errBody.Message)
		return
	}
	if len(v) == 0 {
		v = jsontext.Value("null")
	}
	s.c.push(nil, h.message(s.name, s.group, s.item, map[string]any{"type": "sync", "data": v}))
}

func (h *streamHub) message(name, group string, id *string, event map[string]any) []byte {
	b, _ := json.Marshal(streamMessage{Type: "stream", Timestamp: time.Now().UnixMilli(), StreamName: name, GroupID: group, ID: id, Event: event})
	return b
}

// publish queues a stream message for the subscriptions it concerns:
// those of its group, whole-group ones and those of its item. The
// fan-out goroutine writes it, after the messages published before it.
func (h *streamHub) publish(name, group string, id *string, b []byte) {
	h.mu.RLock()
	none := len(h.subs[subKey(name, group)]) == 0
	h.mu.RUnlock()
	if none {
		return
	}
	select {
	case h.fan <- streamPush{name, group, id, b}:
	case <-h.fanDone:
	}
}

// fanOut writes queued messages to their clients: each burst of messages
// is collected per client (a write batch) and written with one system
// call per client, from this goroutine, without waking one per client.
func (h *streamHub) fanOut() {
	var batch wsconn.Batch
	var to []*streamClient
	for {
		var p streamPush
		select {
		case p = <-h.fan:
		case <-h.fanDone:
			return
		}
		for more := true; more; {
			to = h.targets(to[:0], p)
			for i, c := range to {
				c.push(&batch, p.b)
				to[i] = nil
			}
			select {
			case p = <-h.fan:
			default:
				more = false
			}
		}
		batch.Flush()
	}
}

// targets appends the clients p concerns to to. The hub's lock is not
// held while writing to them: joins and leaves (and publish, on the
// store's writer) never wait for a fan-out.
func (h *streamHub) targets(to []*streamClient, p streamPush) []*streamClient {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.subs[subKey(p.name, p.group)] {
		if s.item == nil || (p.id != nil && *s.item == *p.id) {
			to = append(to, s.c)
		}
	}
	return to
}
