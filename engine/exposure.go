package engine

import "net"

// authEnabled reports whether workers must authenticate to connect to the
// main worker listener (tokens or RBAC).
func (c *Config) authEnabled() bool { return c.Auth.enabled() }

// exposedMsg is the warning logged when the worker listener accepts
// connections from other machines and anyone may connect.
const exposedMsg = "SECURITY: the worker listener is reachable from other machines and workers need no authentication: " +
	"anyone who can connect can register functions, call every function and read every channel; " +
	"bind it to a loopback address or enable authentication"

// plaintextMsg is the warning logged when workers authenticate over an
// exposed listener without TLS.
const plaintextMsg = "SECURITY: the worker listener is reachable from other machines without TLS: " +
	"worker credentials and all data travel in clear text; set tls.cert_file and tls.key_file"

// warnExposed logs a warning at startup when the worker listener is not
// bound to loopback only and no authentication protects it (or when
// credentials would cross the network in clear text).
func (e *Engine) warnExposed(authEnabled bool) {
	if e.ln == nil || !exposed(e.ln.Addr()) {
		return
	}
	switch {
	case !authEnabled:
		e.log.Warn(exposedMsg, "addr", e.ln.Addr().String(), "tls", e.tlsCfg != nil)
	case e.tlsCfg == nil:
		e.log.Warn(plaintextMsg, "addr", e.ln.Addr().String())
	}
}

// exposed reports whether a listener on addr accepts connections from
// other machines: anything but a loopback IP (an unspecified address such
// as 0.0.0.0 or :: listens on every interface).
func exposed(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return true
	}
	return !tcp.IP.IsLoopback()
}
