package httptrigger

import (
	"net/http"
	"strings"
)

// corsPolicy answers preflights and labels responses for browsers. With no
// configuration it is fully permissive, like the reference engine: any
// origin, method and header.
type corsPolicy struct {
	anyOrigin bool
	origins   map[string]bool
	anyMethod bool
	methods   string // "GET, POST" when restricted
}

func newCORSPolicy(c *CORS) corsPolicy {
	p := corsPolicy{anyOrigin: true, anyMethod: true}
	if c == nil {
		return p
	}
	if len(c.AllowedOrigins) > 0 && !contains(c.AllowedOrigins, "*") {
		p.anyOrigin = false
		p.origins = make(map[string]bool, len(c.AllowedOrigins))
		for _, o := range c.AllowedOrigins {
			p.origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
		}
	}
	if len(c.AllowedMethods) > 0 && !contains(c.AllowedMethods, "*") {
		p.anyMethod = false
		ms := make([]string, len(c.AllowedMethods))
		for i, m := range c.AllowedMethods {
			ms[i] = strings.ToUpper(m)
		}
		p.methods = strings.Join(ms, ", ")
	}
	return p
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if strings.TrimSpace(v) == s {
			return true
		}
	}
	return false
}

// apply adds the CORS headers for r and answers a preflight; it reports
// whether the request has been answered.
func (p *corsPolicy) apply(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	h := w.Header()
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !p.anyOrigin {
		h.Add("Vary", "Origin")
		if !p.origins[strings.ToLower(origin)] {
			if preflight {
				writeError(w, http.StatusForbidden, "FORBIDDEN", "CORS: origin "+origin+" is not allowed")
				return true
			}
			return false // served, but the browser will not let the page read it
		}
		h.Set("Access-Control-Allow-Origin", origin)
	} else {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	if !preflight {
		h.Set("Access-Control-Expose-Headers", "*")
		return false
	}
	h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
	if p.anyMethod {
		h.Set("Access-Control-Allow-Methods", strings.ToUpper(r.Header.Get("Access-Control-Request-Method")))
	} else {
		h.Set("Access-Control-Allow-Methods", p.methods)
	}
	if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
		h.Set("Access-Control-Allow-Headers", rh)
	}
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}
