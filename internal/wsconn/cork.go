package wsconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	websocket "github.com/sluicehq/sluice/internal/ws"
)

// corkConn lets the writer goroutine batch several queued frames into one
// write system call: while corked, writes are collected in memory and
// flushed together when the queue is drained. Under load this divides the
// number of syscalls (the dominant cost of small messages) by the batch
// size; an idle socket is never corked, so latency is unaffected.
//
// Frames reach the socket from ws.Conn (control frames, oversized data
// frames) and from rawWrite, which bypasses ws.Conn's lock. Each frame is
// one Write, and Writes are serialised by mu, so frames never interleave.
// ws.Conn sets a write deadline before each of its writes (a second for a
// pong); that deadline is recorded and applied only to ws.Conn's own
// writes, since raw data writes have none (stalls are the watchdog's job).
type corkConn struct {
	net.Conn
	client bool // we dialed: frames we write are masked
	mu     sync.Mutex
	corked bool
	buf    []byte
	// wd is the write deadline ws.Conn last asked for; applied is the one
	// set on Conn.
	wd, applied time.Time

	nb nbState       // non-blocking mode (nonblock.go)
	rx atomic.Uint64 // bytes read
}

// SetWriteDeadline records ws.Conn's deadline for its next writes.
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wd = t
	c.mu.Unlock()
	return nil
}

// deadline sets the socket's write deadline to t if it is not set already.
// The caller holds mu.
func (c *corkConn) deadline(t time.Time) error {
	if t.Equal(c.applied) {
		return nil
	}
	c.applied = t
	return c.Conn.SetWriteDeadline(t)
}

// maxCork bounds the bytes collected before a forced flush.
const maxCork = 256 << 10

// Write is ws.Conn's write: with the deadline it asked for.
func (c *corkConn) Write(p []byte) (int, error) { return c.write(p, true) }

// writeRaw writes a frame of rawWrite's, without a deadline.
func (c *corkConn) writeRaw(p []byte) (int, error) { return c.write(p, false) }

func (c *corkConn) write(p []byte, fromWS bool) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked && c.nb.on {
		return len(p), c.nbWrite(p)
	}
	if !c.corked {
		var d time.Time
		if fromWS {
			d = c.wd
		}
		if err := c.deadline(d); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	var err error
	if len(c.buf) >= maxCork {
		err = c.flushLocked()
	}
	return len(p), err
}

// lockForLarge gives rawWriteLarge the connection to itself: what was
// collected is flushed first (order), and the write deadline is cleared.
// unlock releases it.
func (c *corkConn) lockForLarge() (unlock func(), err error) {
	c.mu.Lock()
	if err = c.flushLocked(); err == nil {
		err = c.deadline(time.Time{})
	}
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	return c.mu.Unlock, nil
}

// corkIfOpen corks c unless it is corked already, and reports whether it
// did.
func (c *corkConn) corkIfOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		return false
	}
	c.corked = true
	return true
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what was collected and stops collecting.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	return c.flushLocked()
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	var err error
	if c.nb.on {
		err = c.nbWrite(c.buf)
	} else if err = c.deadline(time.Time{}); err != nil {
		return err
	} else {
		_, err = c.Conn.Write(c.buf)
	}
	if cap(c.buf) > maxCork*2 {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// hijacker wraps a ResponseWriter so that the upgraded connection is a
// corkConn.
type hijacker struct {
	http.ResponseWriter
}

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &corkConn{Conn: c}, brw, nil
}

// Upgrade upgrades an HTTP request to a WebSocket whose writes can be
// batched by Conn.
func Upgrade(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request, h http.Header) (*websocket.Conn, error) {
	return u.Upgrade(hijacker{w}, r, h)
}

// Dialer returns a copy of d (nil means websocket.DefaultDialer) whose
// connections can be batched by Conn. For wss:// it does the TLS handshake
// itself, so that Conn writes frames on the TLS connection (one frame per
// Write, big messages in large fragments); not when d has a TLS dialer of
// its own, nor through a proxy (the ws dialer then runs TLS over the
// tunnel, and ws.Conn writes the frames).
func Dialer(d *websocket.Dialer) *websocket.Dialer {
	if d == nil {
		d = websocket.DefaultDialer
	}
	nd := *d
	inner := d.NetDialContext
	dialTCP := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if inner != nil {
			return inner(ctx, network, addr)
		}
		var dd net.Dialer
		return dd.DialContext(ctx, network, addr)
	}
	nd.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialTCP(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &corkConn{Conn: c, client: true}, nil
	}
	if d.NetDialTLSContext == nil {
		tlsConfig := d.TLSClientConfig
		nd.NetDialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialTCP(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cfg := &tls.Config{}
			if tlsConfig != nil {
				cfg = tlsConfig.Clone()
			}
			if cfg.ServerName == "" {
				if host, _, err := net.SplitHostPort(addr); err == nil {
					cfg.ServerName = host
				}
			}
			tc := tls.Client(c, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			return &corkConn{Conn: tc, client: true}, nil
		}
	}
	return &nd
}
