package engine

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Browsers send an Origin header with every WebSocket handshake and let any
// page open a socket to any address, loopback included: without a check,
// a page open in a developer's browser could register functions on a local
// engine, call them, and read and write channels. Workers (the official
// SDKs, gorilla, ws, websockets, tungstenite) send no Origin. So the worker
// port refuses a handshake whose Origin is neither local nor listed in
// Config.AllowedOrigins. Matching the request's own Host, as ws.Upgrader's
// default check does, is not enough: a page on a rebound DNS name has the
// same Host as its Origin.

// originAllowed reports whether a request may upgrade: it has no Origin,
// or a local one (http(s) on localhost, 127.0.0.0/8, [::1], any port), or
// one in the allow-list ("*" allows any).
func (e *Engine) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || localOrigin(origin) {
		return true
	}
	o := normalizeOrigin(origin)
	for _, a := range e.cfg.AllowedOrigins {
		if a == "*" || normalizeOrigin(a) == o {
			return true
		}
	}
	return false
}

// localOrigin says whether origin is a page served from this machine's
// loopback interface.
func localOrigin(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// normalizeOrigin lower-cases an origin and drops a trailing slash, so that
// allow-list entries compare as browsers send them.
func normalizeOrigin(o string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o), "/"))
}

// validOrigin checks an allowed_origins entry: "*", "null", or
// scheme://host[:port].
func validOrigin(o string) error {
	if o == "*" || o == "null" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || strings.TrimSuffix(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("config: allowed_origins entry %q: want scheme://host[:port], \"null\" or \"*\"", o)
	}
	return nil
}

// checkOrigin refuses, with 403 and a body saying why, requests to h whose
// Origin is not allowed; h is a WebSocket endpoint of the worker port.
func (e *Engine) checkOrigin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.originAllowed(r) {
			origin := r.Header.Get("Origin")
			e.log.Warn("websocket handshake refused: origin not allowed", "origin", origin, "path", r.URL.Path, "remote", r.RemoteAddr)
			http.Error(w, fmt.Sprintf("origin %q is not allowed to connect to this engine: "+
				"only local origins (localhost, 127.0.0.0/8, [::1]) and those in allowed_origins "+
				"(--allowed-origins, SLUICE_ALLOWED_ORIGINS) are; workers send no Origin", origin), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
