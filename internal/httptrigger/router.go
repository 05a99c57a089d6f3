package httptrigger

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/registry"
)

// route is one served binding of an http trigger. Immutable once built.
type route struct {
	triggerID  string
	holder     string // the worker that may replace the route (registry.Trigger.Holder)
	functionID string
	namespace  string // where functionID, the condition and middleware resolve
	method     string // upper case
	apiPath    string // as registered (the payload's "path")
	display    string // "GET /users/:id", for messages and logs
	pattern    string // ServeMux pattern, "GET /users/{id}"
	params     []param
	metadata   jsontext.Value
	condition  string
	middleware []string
}

// param locates one path parameter in a request path.
type param struct {
	name string
	seg  int  // index of the segment (0 = first after the leading slash)
	rest bool // *name: the rest of the path
}

// slot is the handler a ServeMux pattern points at. The route behind it is
// swapped atomically, so "last wins" replacement of an identical route
// never touches the mux; nil marks a removed route whose pattern is still
// in the mux until the next rebuild.
type slot struct{ rt atomic.Pointer[route] }

// ServeHTTP is never called: the server looks patterns up with
// ServeMux.Handler and dispatches itself.
func (*slot) ServeHTTP(http.ResponseWriter, *http.Request) {}

type muxState struct {
	mux   *http.ServeMux
	slots map[string]*slot // by pattern
	dead  int              // slots whose route was removed
}

// router is the route table. Lookups are one ServeMux lookup on an
// atomically loaded mux (cost independent of the number of routes).
//
// Changes follow these rules, all under mu:
//   - a new pattern is added to the live mux (ServeMux registration is
//     safe against concurrent lookups and checks conflicts before it
//     changes anything), so registering n routes costs O(n), not O(n²);
//   - a route identical to a live one (same method and path, same
//     parameter names) replaces it in its slot: last wins;
//   - a removal empties the slot and schedules a copy-on-write rebuild,
//     swapped in atomically; a lookup that lands on an emptied slot before
//     that rebuild forces it, so a removed route is never served and never
//     shadows a less specific one.
type router struct {
	mu        sync.Mutex
	cur       atomic.Pointer[muxState]
	routes    map[string]*route // by pattern: the source of truth
	byTrigger map[string]string // trigger id → pattern
	timer     *time.Timer       // pending rebuild
	closed    bool
}

// rebuildDelay coalesces the rebuilds of a burst of removals (a worker
// with many routes disconnecting).
const rebuildDelay = 10 * time.Millisecond

func newRouter() *router {
	r := &router{routes: make(map[string]*route), byTrigger: make(map[string]string)}
	r.cur.Store(&muxState{mux: http.NewServeMux(), slots: make(map[string]*slot)})
	return r
}

// ErrAPIPathRequired is returned for an http trigger without api_path.
var ErrAPIPathRequired = errors.New("api_path is required for http triggers")

// ErrRouteTaken is returned when another worker's trigger serves the same
// method and path.
var ErrRouteTaken = errors.New("route taken")

// parseTrigger builds the route of an http trigger.
func parseTrigger(t *registry.Trigger) (*route, error) {
	var cfg struct {
		APIPath               *string  `json:"api_path"`
		HTTPMethod            string   `json:"http_method"`
		ConditionFunctionID   string   `json:"condition_function_id"`
		MiddlewareFunctionIDs []string `json:"middleware_function_ids"`
	}
	if len(t.Config) > 0 {
		if err := json.Unmarshal(t.Config, &cfg, jsontext.AllowDuplicateNames(true)); err != nil {
			return nil, fmt.Errorf("invalid http trigger config: %v", err)
		}
	}
	if cfg.APIPath == nil {
		return nil, ErrAPIPathRequired
	}
	method := strings.ToUpper(strings.TrimSpace(cfg.HTTPMethod))
	if method == "" {
		method = http.MethodGet
	}
	if !isToken(method) {
		return nil, fmt.Errorf("invalid http_method %q", cfg.HTTPMethod)
	}
	rt := &route{
		triggerID:  t.ID,
		holder:     t.Holder(),
		functionID: t.FunctionID,
		namespace:  t.Namespace,
		method:     method,
		apiPath:    *cfg.APIPath,
		metadata:   t.Metadata,
		condition:  cfg.ConditionFunctionID,
		middleware: cfg.MiddlewareFunctionIDs,
	}
	muxPath, params, norm, err := convertPath(*cfg.APIPath)
	if err != nil {
		return nil, err
	}
	rt.params = params
	rt.pattern = method + " " + muxPath
	rt.display = method + " " + norm
	return rt, nil
}

// convertPath turns an iii api_path ("users/:id", "/files/*rest") into a
// ServeMux path ("/users/{id}", "/files/{rest...}"). The leading slash is
// optional and empty segments are ignored; a trailing slash is kept and
// matches exactly (no subtree match).
func convertPath(apiPath string) (muxPath string, params []param, normalized string, err error) {
	if strings.ContainsAny(apiPath, "{}?# \t\r\n") {
		return "", nil, "", fmt.Errorf("api_path %q: '{', '}', '?', '#' and spaces are not allowed (use :name for parameters)", apiPath)
	}
	trailing := len(apiPath) > 1 && strings.HasSuffix(apiPath, "/")
	var mb, nb strings.Builder
	seen := map[string]bool{}
	segs := strings.Split(apiPath, "/")
	i := 0
	for n, s := range segs {
		if s == "" {
			continue
		}
		mb.WriteByte('/')
		nb.WriteByte('/')
		nb.WriteString(s)
		switch s[0] {
		case ':', '*':
			name := s[1:]
			if !isIdent(name) {
				return "", nil, "", fmt.Errorf("api_path %q: parameter %q must be a letter or underscore followed by letters, digits or underscores", apiPath, s)
			}
			if seen[name] {
				return "", nil, "", fmt.Errorf("api_path %q: parameter %q appears twice", apiPath, name)
			}
			seen[name] = true
			rest := s[0] == '*'
			if rest && hasMoreSegments(segs[n+1:]) {
				return "", nil, "", fmt.Errorf("api_path %q: %q must be the last segment", apiPath, s)
			}
			params = append(params, param{name: name, seg: i, rest: rest})
			mb.WriteByte('{')
			mb.WriteString(name)
			if rest {
				mb.WriteString("...")
				trailing = false
			}
			mb.WriteByte('}')
		default:
			mb.WriteString(s)
		}
		i++
	}
	if mb.Len() == 0 {
		return "/{$}", nil, "/", nil
	}
	if trailing {
		mb.WriteString("/{$}")
		nb.WriteByte('/')
	}
	return mb.String(), params, nb.String(), nil
}

func hasMoreSegments(segs []string) bool {
	for _, s := range segs {
		if s != "" {
			return true
		}
	}
	return false
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// add serves rt, replacing an identical route of the same holder (last
// wins; another holder's is ErrRouteTaken) and any earlier
// route of the same trigger id.
func (r *router) add(rt *route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("http trigger server is closed")
	}
	st := r.cur.Load()
	if sl, ok := st.slots[rt.pattern]; ok {
		if old := r.routes[rt.pattern]; old != nil && old.triggerID != rt.triggerID && old.holder != rt.holder {
			// Trigger ids are public (discovery): without this, any worker
			// could re-point another's route by registering its path.
			return fmt.Errorf("%w: %s is served by trigger %s of another worker; only that worker may replace it",
				ErrRouteTaken, rt.display, old.triggerID)
		}
		r.removeTriggerLocked(rt.triggerID, rt.pattern)
		if old := r.routes[rt.pattern]; old != nil && old.triggerID != rt.triggerID {
			delete(r.byTrigger, old.triggerID) // taken over
		}
		if sl.rt.Swap(rt) == nil {
			st.dead--
		}
		r.routes[rt.pattern] = rt
		r.byTrigger[rt.triggerID] = rt.pattern
		return nil
	}
	sl := &slot{}
	sl.rt.Store(rt)
	err := handle(st.mux, rt.pattern, sl)
	if err != nil && st.dead > 0 {
		// The conflict may be with a removed route still in the mux.
		r.rebuildLocked()
		st = r.cur.Load()
		err = handle(st.mux, rt.pattern, sl)
	}
	if err != nil {
		return r.conflictError(rt, err)
	}
	st.slots[rt.pattern] = sl
	// Only now that the new route is in: drop this trigger's previous one.
	r.removeTriggerLocked(rt.triggerID, rt.pattern)
	r.routes[rt.pattern] = rt
	r.byTrigger[rt.triggerID] = rt.pattern
	return nil
}

// handle registers a pattern, turning ServeMux's panic into an error.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

func (r *router) conflictError(rt *route, err error) error {
	msg := err.Error()
	for p, other := range r.routes {
		if strings.Contains(msg, fmt.Sprintf("conflicts with pattern %q", p)) {
			return fmt.Errorf("route '%s' conflicts with already-registered route '%s' (function %s): both match the same requests",
				rt.display, other.display, other.functionID)
		}
	}
	if i := strings.IndexByte(msg, '\n'); i > 0 {
		msg = msg[:i]
	}
	return fmt.Errorf("route '%s' cannot be served: %s", rt.display, msg)
}

// remove stops serving the route of trigger id, if that trigger still owns
// it.
func (r *router) remove(triggerID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeTriggerLocked(triggerID, "")
}

func (r *router) removeTriggerLocked(triggerID, except string) {
	p, ok := r.byTrigger[triggerID]
	if !ok || p == except {
		return
	}
	delete(r.byTrigger, triggerID)
	if rt := r.routes[p]; rt == nil || rt.triggerID != triggerID {
		return
	}
	delete(r.routes, p)
	st := r.cur.Load()
	if sl := st.slots[p]; sl != nil && sl.rt.Swap(nil) != nil {
		st.dead++
	}
	if r.timer == nil && !r.closed {
		r.timer = time.AfterFunc(rebuildDelay, r.rebuildIfDirty)
	}
}

func (r *router) rebuildIfDirty() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur.Load().dead > 0 {
		r.rebuildLocked()
	}
}

// rebuildLocked builds a fresh mux from the route table and swaps it in.
// In-flight lookups keep the mux they loaded.
func (r *router) rebuildLocked() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	st := &muxState{mux: http.NewServeMux(), slots: make(map[string]*slot, len(r.routes))}
	for p, rt := range r.routes {
		sl := &slot{}
		sl.rt.Store(rt)
		if err := handle(st.mux, p, sl); err != nil {
			// Cannot happen: the table only holds routes that were accepted
			// together. Drop the route rather than serve a broken table.
			delete(r.routes, p)
			delete(r.byTrigger, rt.triggerID)
			continue
		}
		st.slots[p] = sl
	}
	r.cur.Store(st)
}

// lookup finds the route for req. On a miss, h is ServeMux's own answer
// (not found, method not allowed with Allow, or a redirect to the clean
// path) and rt is nil.
func (r *router) lookup(req *http.Request) (rt *route, h http.Handler) {
	for range 2 {
		h, _ = r.cur.Load().mux.Handler(req)
		sl, ok := h.(*slot)
		if !ok {
			return nil, h
		}
		if rt = sl.rt.Load(); rt != nil {
			return rt, nil
		}
		// A removed route still in this mux: rebuild now and look again.
		r.rebuildIfDirty()
	}
	return nil, http.NotFoundHandler()
}

func (r *router) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// len returns the number of routes served.
func (r *router) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.routes)
}

// pathParams extracts rt's parameters from the request path (which the
// mux has verified to be clean), percent-decoded by decodeParam.
func (rt *route) pathParams(escapedPath string) map[string]string {
	m := make(map[string]string, len(rt.params))
	if len(rt.params) == 0 {
		return m
	}
	p := strings.TrimPrefix(escapedPath, "/")
	seg, start := 0, 0
	for _, pr := range rt.params {
		for seg < pr.seg && start <= len(p) {
			i := strings.IndexByte(p[start:], '/')
			if i < 0 {
				start = len(p) + 1
				break
			}
			start += i + 1
			seg++
		}
		if start > len(p) {
			m[pr.name] = ""
			continue
		}
		end := len(p)
		if !pr.rest {
			if i := strings.IndexByte(p[start:], '/'); i >= 0 {
				end = start + i
			}
		}
		m[pr.name] = decodeParam(p[start:end])
	}
	return m
}

// decodeParam percent-decodes a parameter's raw (escaped) text, segment by
// segment, except what could turn a value into a different path: %2F
// ('/'), %5C ('\') and %00 stay encoded, and so does %25 ('%'), so that
// unescaping the value once gives exactly what the client sent. A segment
// that would decode to "." or ".." stays as it came (a literal one never
// gets here: the mux redirects to the cleaned path). So a parameter never
// holds a parent directory or a separator the client did not send as a
// real '/' (which only a *rest parameter can hold). A segment with a
// malformed escape is kept as it came.
func decodeParam(raw string) string {
	if strings.IndexByte(raw, '%') < 0 {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i, s := range strings.Split(raw, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(decodeSegment(s))
	}
	return b.String()
}

func decodeSegment(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return s
		}
		c := unhex(s[i+1])<<4 | unhex(s[i+2])
		switch c {
		case '/', '\\', '%', 0:
			out = append(out, s[i:i+3]...)
		default:
			out = append(out, c)
		}
		i += 2
	}
	if d := string(out); d != "." && d != ".." {
		return d
	}
	return s
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
