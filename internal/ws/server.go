package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// acceptGUID is the key suffix of RFC 6455 §1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(acceptGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// Upgrader upgrades HTTP requests to WebSocket connections (the server's
// opening handshake, RFC 6455 §4.2).
type Upgrader struct {
	// HandshakeTimeout bounds writing the 101 response (0: none).
	HandshakeTimeout time.Duration
	// ReadBufferSize is the buffer frame headers and small payloads are
	// read through (payloads of 1 KiB or more go straight to the reader's
	// memory). 0: 4 KiB.
	ReadBufferSize int
	// WriteBufferSize is the largest frame payload WriteMessage writes;
	// longer messages are fragmented. 0: 64 KiB.
	WriteBufferSize int
	// Subprotocols the server speaks, in order of preference.
	Subprotocols []string
	// CheckOrigin decides whether a request's Origin may connect; nil
	// allows no Origin header or one whose host is the request's Host.
	CheckOrigin func(r *http.Request) bool
	// Error answers a refused handshake; nil: http.Error.
	Error func(w http.ResponseWriter, r *http.Request, status int, reason error)
}

func (u *Upgrader) refuse(w http.ResponseWriter, r *http.Request, status int, reason string) (*Conn, error) {
	err := errors.New("websocket: " + reason)
	w.Header().Set("Sec-Websocket-Version", "13")
	if u.Error != nil {
		u.Error(w, r, status, err)
	} else {
		http.Error(w, http.StatusText(status), status)
	}
	return nil, err
}

// Upgrade checks the handshake request, answers it with 101 Switching
// Protocols (adding h) and returns the connection. A refused request is
// answered with an HTTP error and returns an error.
func (u *Upgrader) Upgrade(w http.ResponseWriter, r *http.Request, h http.Header) (*Conn, error) {
	const badHandshake = "not a websocket handshake: "
	switch {
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return u.refuse(w, r, http.StatusBadRequest, badHandshake+"'upgrade' token not found in 'Connection' header")
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return u.refuse(w, r, http.StatusBadRequest, badHandshake+"'websocket' token not found in 'Upgrade' header")
	case r.Method != http.MethodGet:
		return u.refuse(w, r, http.StatusMethodNotAllowed, badHandshake+"request method is not GET")
	case r.Header.Get("Sec-Websocket-Version") != "13":
		return u.refuse(w, r, http.StatusBadRequest, "unsupported version: 13 not found in 'Sec-Websocket-Version' header")
	}
	if _, ok := h["Sec-Websocket-Extensions"]; ok {
		return u.refuse(w, r, http.StatusInternalServerError, "application specific 'Sec-WebSocket-Extensions' headers are unsupported")
	}
	check := u.CheckOrigin
	if check == nil {
		check = sameOrigin
	}
	if !check(r) {
		return u.refuse(w, r, http.StatusForbidden, "request origin not allowed by Upgrader.CheckOrigin")
	}
	key := r.Header.Get("Sec-Websocket-Key")
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return u.refuse(w, r, http.StatusBadRequest, badHandshake+"'Sec-WebSocket-Key' header must be Base64 encoded value of 16-byte in length")
	}
	subproto := u.subprotocol(r, h)

	netConn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return u.refuse(w, r, http.StatusInternalServerError, "hijack: "+err.Error())
	}
	if brw.Reader.Buffered() > 0 {
		netConn.Close()
		return nil, errors.New("websocket: client sent data before handshake is complete")
	}

	p := make([]byte, 0, 256)
	p = append(p, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	p = append(p, acceptKey(key)...)
	p = append(p, "\r\n"...)
	if subproto != "" {
		p = append(p, "Sec-WebSocket-Protocol: "+subproto+"\r\n"...)
	}
	for k, vs := range h {
		if k == "Sec-Websocket-Protocol" {
			continue
		}
		for _, v := range vs {
			for _, c := range v { // no header injection
				if c == '\r' || c == '\n' {
					v = ""
					break
				}
			}
			p = append(p, k+": "+v+"\r\n"...)
		}
	}
	p = append(p, "\r\n"...)
	if u.HandshakeTimeout > 0 {
		_ = netConn.SetWriteDeadline(time.Now().Add(u.HandshakeTimeout))
	}
	if _, err := netConn.Write(p); err != nil {
		netConn.Close()
		return nil, err
	}
	if u.HandshakeTimeout > 0 {
		_ = netConn.SetWriteDeadline(time.Time{})
	}
	// Nothing is buffered (refused above): frames are read from netConn
	// itself, through the reader's own buffer only.
	c := newConn(netConn, true, netConn, subproto, u.ReadBufferSize)
	c.fragment = u.WriteBufferSize
	return c, nil
}

func (u *Upgrader) subprotocol(r *http.Request, h http.Header) string {
	if u.Subprotocols == nil {
		if h != nil {
			return h.Get("Sec-Websocket-Protocol")
		}
		return ""
	}
	for _, want := range Subprotocols(r) {
		for _, have := range u.Subprotocols {
			if want == have {
				return want
			}
		}
	}
	return ""
}

// Subprotocols returns the subprotocols a handshake request asks for.
func Subprotocols(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// sameOrigin allows requests without an Origin header and those whose
// Origin's host is the request's Host.
func sameOrigin(r *http.Request) bool {
	origin := r.Header["Origin"]
	if len(origin) == 0 {
		return true
	}
	u, err := url.Parse(origin[0])
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// headerHasToken reports whether a comma-separated header has token
// (case-insensitive).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
