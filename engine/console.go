package engine

import (
	"context"
	"embed"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/auth"
	"github.com/sluicehq/sluice/internal/channels"
	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/metrics"
	"github.com/sluicehq/sluice/wire"
)

// The web console (docs/operations.md#web-console): static files embedded
// in the binary, and JSON and server-sent-event endpoints under /api on
// the admin listener.

//go:embed console
var consoleFS embed.FS

const (
	// feedBuffer is one feed subscriber's backlog; beyond it events are
	// dropped for that subscriber (and counted), never waited for.
	feedBuffer = 1024
	// consoleCookie carries the console token for browsers (EventSource
	// cannot send headers).
	consoleCookie = "sluice_console_token"
	// consoleCallTimeout bounds a call made from the console.
	consoleCallTimeout = 60 * time.Second
	// maxConsoleBody bounds a console request body.
	maxConsoleBody = 4 << 20
	// maxConsoleStreams bounds the event streams open at once (each holds
	// a goroutine and a feed buffer).
	maxConsoleStreams = 64
)

// SnapshotInterval is how often /api/live pushes a snapshot.
var snapshotInterval = time.Second

// mountConsole adds the console's pages and API to the admin mux.
func (e *Engine) mountConsole(mux *http.ServeMux) {
	static, _ := fs.Sub(consoleFS, "console")
	files := http.FileServerFS(static)
	mux.Handle("GET /{$}", e.consoleGuard(false, files))
	mux.Handle("GET /console/", e.consoleGuard(false, http.StripPrefix("/console/", files)))
	mux.Handle("GET /api/session", e.consoleGuard(false, http.HandlerFunc(e.apiSession)))
	mux.Handle("POST /api/login", e.consoleGuard(false, http.HandlerFunc(e.apiLogin)))
	mux.Handle("GET /api/overview", e.consoleGuard(true, http.HandlerFunc(e.apiOverview)))
	mux.Handle("GET /api/live", e.consoleGuard(true, http.HandlerFunc(e.apiLive)))
	mux.Handle("GET /api/invocations", e.consoleGuard(true, http.HandlerFunc(e.apiInvocations)))
	mux.Handle("POST /api/call", e.consoleGuard(true, http.HandlerFunc(e.apiCall)))
}

// consoleTokens are the tokens the console accepts: the main worker
// listener's. ok is false when the main listener uses RBAC without tokens:
// the console then refuses everything rather than run unauthenticated.
func (e *Engine) consoleTokens() (tokens []string, ok bool) {
	a := e.cfg.Auth
	if len(a.Tokens) > 0 {
		return a.Tokens, true
	}
	return nil, a.RBAC == nil
}

// consoleGuard applies the console's checks: the Host must be a loopback
// name when the listener is on loopback (a DNS-rebinding page has another
// Host), a POST must come from the console's own origin with a JSON body,
// and, when auth is on, protected endpoints need a token (header, cookie or
// ?token=).
func (e *Engine) consoleGuard(protected bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		w.Header().Set("Referrer-Policy", "no-referrer")
		if e.consoleLoopback() && !loopbackHost(r.Host) {
			consoleError(w, http.StatusForbidden, "FORBIDDEN", "the console answers only requests addressed to a loopback host (localhost, 127.0.0.1, [::1]); got Host "+strconv.Quote(r.Host))
			return
		}
		if r.Method == http.MethodPost {
			if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
				consoleError(w, http.StatusForbidden, "FORBIDDEN", "cross-origin console request refused (Origin "+strconv.Quote(o)+")")
				return
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "application/json") {
				consoleError(w, http.StatusUnsupportedMediaType, "BAD_REQUEST", "console requests take Content-Type: application/json")
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxConsoleBody)
		}
		if protected && !e.consoleAuthorized(r) {
			if _, ok := e.consoleTokens(); !ok {
				consoleError(w, http.StatusForbidden, auth.CodeAuthError, "the console needs auth.tokens when the main worker listener uses RBAC: configure a token to use it")
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-console"`)
			consoleError(w, http.StatusUnauthorized, auth.CodeAuthError, "missing or invalid token: send Authorization: Bearer <token>, or log in on the console page")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (e *Engine) consoleAuthorized(r *http.Request) bool {
	tokens, ok := e.consoleTokens()
	if !ok {
		return false
	}
	if len(tokens) == 0 {
		return true
	}
	if tok := auth.Token(r); tok != "" && auth.TokenOK(tok, tokens) {
		return true
	}
	c, err := r.Cookie(consoleCookie)
	return err == nil && auth.TokenOK(c.Value, tokens)
}

func (e *Engine) consoleLoopback() bool {
	if e.consoleLn == nil {
		return false
	}
	ap, err := netip.ParseAddrPort(e.consoleLn.Addr().String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// loopbackHost says whether a Host header names this machine's loopback.
func loopbackHost(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Unmap().IsLoopback()
}

func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && strings.EqualFold(u.Host, host)
}

func consoleError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": wire.ErrorBody{Code: code, Message: msg}})
	_, _ = w.Write(append(b, '\n'))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	b, err := json.Marshal(v)
	if err != nil {
		consoleError(w, http.StatusInternalServerError, wire.CodeSerializationError, err.Error())
		return
	}
	_, _ = w.Write(append(b, '\n'))
}

// apiSession tells the page whether it must log in.
func (e *Engine) apiSession(w http.ResponseWriter, r *http.Request) {
	tokens, ok := e.consoleTokens()
	writeJSON(w, map[string]any{"auth": !ok || len(tokens) > 0, "authorized": e.consoleAuthorized(r), "version": Version})
}

// apiLogin checks a token and stores it in an HttpOnly, SameSite=Strict
// cookie, which the page's fetch and EventSource requests then carry.
func (e *Engine) apiLogin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token string `json:"token"`
	}
	if err := json.UnmarshalRead(r.Body, &in); err != nil {
		consoleError(w, http.StatusBadRequest, "BAD_REQUEST", "want {\"token\": \"...\"}")
		return
	}
	tokens, ok := e.consoleTokens()
	if !ok || (len(tokens) > 0 && !auth.TokenOK(in.Token, tokens)) {
		e.log.Warn("console login refused: wrong token", "remote", r.RemoteAddr)
		consoleError(w, http.StatusUnauthorized, auth.CodeAuthError, "wrong token")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: in.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, map[string]bool{"ok": true})
}

// builtinJSON runs an engine builtin directly (not routed, not counted).
func (e *Engine) builtinJSON(ctx context.Context, id string, in string) jsontext.Value {
	v, errBody, ok := e.self.Call(ctx, &invocation.Request{FunctionID: id, Data: jsontext.Value(in)})
	if !ok || errBody != nil || len(v) == 0 {
		return jsontext.Value("null")
	}
	return v
}

type consoleQueue struct {
	Name            string `json:"name"`
	BrokerType      string `json:"broker_type"`
	SubscriberCount int    `json:"subscriber_count"`
	Depth           int64  `json:"depth"`
	InFlight        int64  `json:"in_flight"`
	DLQ             int64  `json:"dlq"`
}

// consoleChannelList bounds the channels a snapshot lists.
const consoleChannelList = 200

type consoleChannel struct {
	channels.ChannelInfo
	OwnerName string `json:"owner_name,omitempty"`
}

type consoleSnapshot struct {
	Engine struct {
		Version         string  `json:"version"`
		UptimeSeconds   float64 `json:"uptime_seconds"`
		WorkerURL       string  `json:"worker_url"`
		HTTPURL         string  `json:"http_url"`
		StreamsAddr     string  `json:"streams_addr"`
		InFlight        int64   `json:"invocations_in_flight"`
		FeedSubscribers int     `json:"feed_subscribers"`
		FeedDropped     uint64  `json:"feed_dropped"`
		TimeMS          int64   `json:"time_ms"`
	} `json:"engine"`
	Workers       jsontext.Value           `json:"workers"`
	Functions     jsontext.Value           `json:"functions"`
	Triggers      jsontext.Value           `json:"triggers"`
	FunctionStats map[string]metrics.Stats `json:"function_stats"`
	HTTPStats     []metrics.RouteStats     `json:"http_stats"`
	Channels      struct {
		Active        int    `json:"active"`
		BufferedBytes int64  `json:"buffered_bytes"`
		FramesTotal   uint64 `json:"frames_total"`
		BytesTotal    uint64 `json:"bytes_total"`
		AbortedTotal  uint64 `json:"aborted_total"`
		// List is the most recent open channels (at most
		// consoleChannelList), with the owner's worker name.
		List []consoleChannel `json:"list"`
	} `json:"channels"`
	Queues []consoleQueue `json:"queues"`
}

func (e *Engine) snapshot(ctx context.Context) *consoleSnapshot {
	s := &consoleSnapshot{}
	s.Engine.Version = Version
	s.Engine.UptimeSeconds = time.Since(e.started).Seconds()
	s.Engine.WorkerURL, s.Engine.HTTPURL = e.WorkerURL(), e.HTTPURL()
	if m := e.modules.streams; m != nil && m.hub != nil {
		s.Engine.StreamsAddr = m.hub.Addr()
	}
	s.Engine.InFlight = e.metrics.InFlight()
	s.Engine.FeedSubscribers = e.metrics.Feed.Subscribers()
	s.Engine.FeedDropped = e.metrics.Feed.Dropped()
	s.Engine.TimeMS = time.Now().UnixMilli()
	s.Workers = e.builtinJSON(ctx, wire.FnWorkersList, `{}`)
	s.Functions = e.builtinJSON(ctx, wire.FnFunctionsList, `{"include_internal":true}`)
	s.Triggers = e.builtinJSON(ctx, wire.FnRegisteredTriggersList, `{"include_internal":true}`)
	s.FunctionStats = e.metrics.FunctionStats()
	s.HTTPStats = e.metrics.HTTPStats()
	s.Channels.Active = e.hub.Len()
	s.Channels.BufferedBytes = e.hub.BufferedBytes()
	s.Channels.FramesTotal, s.Channels.BytesTotal, s.Channels.AbortedTotal = e.hub.Counters()
	list, _ := e.hub.List(consoleChannelList)
	s.Channels.List = make([]consoleChannel, 0, len(list))
	for _, c := range list {
		s.Channels.List = append(s.Channels.List, consoleChannel{ChannelInfo: c, OwnerName: e.workerNameByID(c.Owner)})
	}
	s.Queues = []consoleQueue{}
	if st := e.queues.current(); st != nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for _, t := range e.queueKeys(ctx) {
			q := consoleQueue{Name: t.Name, BrokerType: t.BrokerType, SubscriberCount: t.SubscriberCount}
			key := t.Name
			if t.BrokerType == "topic" {
				key = topicQueuePrefix + t.Name
			}
			if qs, err := st.Stats(ctx, key); err == nil {
				q.Depth, q.InFlight, q.DLQ = qs.Pending, qs.Leased, qs.Dead
			}
			s.Queues = append(s.Queues, q)
		}
	}
	return s
}

func (e *Engine) apiOverview(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, e.snapshot(r.Context()))
}

// sse starts a server-sent event stream; nil if the writer cannot flush.
func sse(w http.ResponseWriter) http.Flusher {
	f, ok := w.(http.Flusher)
	if !ok {
		consoleError(w, http.StatusInternalServerError, "INTERNAL", "streaming unsupported")
		return nil
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "retry: 2000\n\n")
	f.Flush()
	return f
}

func writeEvent(w io.Writer, event string, data []byte) error {
	_, err := io.WriteString(w, "event: "+event+"\ndata: ")
	if err == nil {
		_, err = w.Write(data)
	}
	if err == nil {
		_, err = io.WriteString(w, "\n\n")
	}
	return err
}

// FeedEvent is one finished invocation as /api/invocations and sluice
// tail report it.
type FeedEvent struct {
	Time       time.Time `json:"time"`
	FunctionID string    `json:"function_id"`
	Namespace  string    `json:"namespace,omitempty"` // "" : the default one
	// Caller is the calling worker's id, "" for the engine (HTTP
	// triggers, queues, modules, the console); CallerName its name.
	Caller     string  `json:"caller"`
	CallerName string  `json:"caller_name,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	Outcome    string  `json:"outcome"`
	ErrorCode  string  `json:"error_code,omitempty"`
}

func (e *Engine) workerNameByID(id string) string {
	if id == "" {
		return ""
	}
	if w, ok := e.reg.Worker(id); ok {
		return w.Name
	}
	return ""
}

// apiLive pushes a snapshot now and every snapshotInterval, and the
// invocation feed (as apiInvocations) unless ?invocations=0: one
// connection per console tab (browsers allow six per host).
func (e *Engine) apiLive(w http.ResponseWriter, r *http.Request) {
	e.serveEvents(w, r, true, r.URL.Query().Get("invocations") != "0")
}

// apiInvocations streams finished invocations as "invocation" events
// (?function= filters by function id, exact or a trailing "*" prefix), and
// a "dropped" event with the running total whenever this subscriber fell
// behind and lost some.
func (e *Engine) apiInvocations(w http.ResponseWriter, r *http.Request) {
	e.serveEvents(w, r, false, true)
}

func (e *Engine) serveEvents(w http.ResponseWriter, r *http.Request, snapshots, invocations bool) {
	filter := r.URL.Query().Get("function")
	match := func(string) bool { return true }
	if p, ok := strings.CutSuffix(filter, "*"); ok {
		match = func(id string) bool { return strings.HasPrefix(id, p) }
	} else if filter != "" {
		match = func(id string) bool { return id == filter }
	}
	if e.consoleStreams.Add(1) > maxConsoleStreams {
		e.consoleStreams.Add(-1)
		consoleError(w, http.StatusServiceUnavailable, "TOO_MANY_STREAMS", "too many console event streams open ("+strconv.Itoa(maxConsoleStreams)+"): close some console tabs or sluice tail processes")
		return
	}
	defer e.consoleStreams.Add(-1)
	// Subscribed before the stream starts: a client that has read the
	// first line sees every invocation that finishes after it.
	var feed <-chan metrics.Invocation
	var sub *metrics.Subscription
	if invocations {
		sub = e.metrics.Feed.Subscribe(feedBuffer)
		defer sub.Close()
		feed = sub.C
	}
	f := sse(w)
	if f == nil {
		return
	}
	var tick <-chan time.Time
	sendSnapshot := func() error {
		b, err := json.Marshal(e.snapshot(r.Context()))
		if err != nil {
			return err
		}
		return writeEvent(w, "snapshot", b)
	}
	if snapshots {
		t := time.NewTicker(snapshotInterval)
		defer t.Stop()
		tick = t.C
		if sendSnapshot() != nil {
			return
		}
		f.Flush()
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	names := map[string]string{}
	var reported uint64
	for {
		select {
		case ev := <-feed:
			for n, more := 0, true; more && n < 256; n++ {
				if match(ev.FunctionID) {
					name, ok := names[ev.CallerWorkerID]
					if !ok {
						name = e.workerNameByID(ev.CallerWorkerID)
						if len(names) < 1024 {
							names[ev.CallerWorkerID] = name
						}
					}
					b, _ := json.Marshal(FeedEvent{Time: ev.Time.UTC(), FunctionID: ev.FunctionID, Namespace: ev.Namespace, Caller: ev.CallerWorkerID, CallerName: name,
						DurationMS: float64(ev.Duration.Microseconds()) / 1000, Outcome: metrics.OutcomeName(ev.Outcome), ErrorCode: ev.ErrorCode})
					if writeEvent(w, "invocation", b) != nil {
						return
					}
				}
				select {
				case ev = <-feed:
				default:
					more = false
				}
			}
		case <-tick:
			if sendSnapshot() != nil {
				return
			}
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-e.shuttingDown:
			return
		}
		if sub != nil {
			if d := sub.Dropped(); d != reported {
				reported = d
				if writeEvent(w, "dropped", []byte(`{"dropped":`+strconv.FormatUint(d, 10)+`}`)) != nil {
					return
				}
			}
		}
		f.Flush()
	}
}

// apiCall invokes a function as the engine: {function_id, payload, void?}
// → {result} or {error: {code, message}} (HTTP 200 either way: the call
// was made). The console's trigger form, DLQ redrive and state and stream
// browsers use it.
func (e *Engine) apiCall(w http.ResponseWriter, r *http.Request) {
	var in struct {
		FunctionID string         `json:"function_id"`
		Payload    jsontext.Value `json:"payload"`
		Void       bool           `json:"void"`
	}
	if err := json.UnmarshalRead(r.Body, &in); err != nil || in.FunctionID == "" {
		consoleError(w, http.StatusBadRequest, "BAD_REQUEST", "want {\"function_id\": \"...\", \"payload\": ...}")
		return
	}
	if len(in.Payload) == 0 {
		in.Payload = jsontext.Value("null")
	}
	req := &invocation.Request{FunctionID: in.FunctionID, Data: in.Payload, Void: in.Void}
	e.log.Info("console call", "function_id", in.FunctionID, "void", in.Void, "remote", r.RemoteAddr)
	if in.Void {
		e.inv.Invoke(req, nil)
		writeJSON(w, map[string]any{"result": nil})
		return
	}
	ch := make(chan invocation.Result, 1)
	e.inv.Invoke(req, func(res invocation.Result) {
		ch <- invocation.Result{Value: jsontext.Value(append([]byte(nil), res.Value...)), Err: res.Err}
	})
	timer := time.NewTimer(consoleCallTimeout)
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			writeJSON(w, map[string]any{"error": res.Err})
			return
		}
		v := res.Value
		if len(v) == 0 {
			v = jsontext.Value("null")
		}
		writeJSON(w, map[string]any{"result": v})
	case <-timer.C:
		writeJSON(w, map[string]any{"error": wire.ErrorBody{Code: wire.CodeTimeout, Message: "no answer within " + consoleCallTimeout.String()}})
	case <-r.Context().Done():
	}
}
