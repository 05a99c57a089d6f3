package interop

import (
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/ws/wsframe"
	"github.com/sluicehq/sluice/wire"
)

// Attacks with invalid UTF-8 in text messages. The engine decodes a text
// message with wire.DecodeText, which trusts the socket to have checked
// its UTF-8, and forwards the raw values it vouches for (an invocation's
// data, a result) to other workers without scanning them again. A text
// message that is not UTF-8 must therefore end its socket with 1007 before
// it is decoded, however its bytes are split into fragments; forwarded, it
// would break the receiving worker's socket (its SDK answers with 1007).

// utf8Peer is a bare worker socket. It writes frames as the test builds
// them and reads with gorilla, which does not check a text message's
// UTF-8: what the engine forwards is seen as it was sent.
type utf8Peer struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	msgs chan []byte   // messages received
	in   chan []byte   // what next and closedWith read: msgs, or what a server loop passes on
	end  chan struct{} // closed when the socket's read fails
	err  error         // that failure; set before end is closed
}

func dialUTF8Peer(t testing.TB, e *engineProc) *utf8Peer {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if e.tls != nil {
		d.TLSClientConfig = e.tls.ClientConfig()
	}
	ws, _, err := d.Dial(e.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &utf8Peer{ws: ws, msgs: make(chan []byte, 64), end: make(chan struct{})}
	p.in = p.msgs
	ws.SetPingHandler(func(s string) error {
		return p.write(utf8Frames(wsframe.OpPong, s))
	})
	go func() {
		defer close(p.end)
		defer close(p.msgs)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				p.err = err
				return
			}
			p.msgs <- b
		}
	}()
	t.Cleanup(func() { ws.Close(); <-p.end })
	return p
}

// write writes raw frames, whole (over TLS too: NetConn is the TLS
// connection).
func (p *utf8Peer) write(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err := p.ws.NetConn().Write(b)
	return err
}

// send writes msg as one text frame.
func (p *utf8Peer) send(t testing.TB, msg string) {
	t.Helper()
	if err := p.write(utf8Frames(wsframe.OpText, msg)); err != nil {
		t.Fatal(err)
	}
}

// next waits for a message of type typ (and invocation id, if not "").
func (p *utf8Peer) next(t testing.TB, typ, id string) (wire.Message, []byte) {
	t.Helper()
	deadline := time.After(callTimeout)
	for {
		select {
		case b, ok := <-p.in:
			if !ok {
				t.Fatalf("the engine closed the socket (%v) while it waited for a %s %s", p.err, typ, id)
			}
			var m wire.Message
			if wire.Decode(b, &m) == nil && m.Type == typ && (id == "" || m.InvocationID == id) {
				return m, b
			}
		case <-deadline:
			t.Fatalf("no %s %s within %v", typ, id, callTimeout)
		}
	}
}

// closedWith waits for the engine to close the socket and checks that it
// did so with code, having sent nothing but messages of the types allowed.
func (p *utf8Peer) closedWith(t testing.TB, code int, allowed ...string) {
	t.Helper()
	deadline := time.After(closeTimeout)
	for {
		select {
		case b, ok := <-p.in:
			if !ok {
				<-p.end
				if c, ok := closeCode(p.err); !ok || c != code {
					t.Fatalf("the socket ended with %v, want close %d", p.err, code)
				}
				return
			}
			var m wire.Message
			_ = wire.Decode(b, &m)
			found := false
			for _, a := range allowed {
				found = found || m.Type == a
			}
			if !found {
				t.Fatalf("the engine sent %.200q where it should have closed the socket with %d", b, code)
			}
		case <-deadline:
			t.Fatalf("the socket was not closed within %v (want close %d)", closeTimeout, code)
		}
	}
}

// closeCode is the code of the close frame err reports, if it is one.
func closeCode(err error) (int, bool) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, true
	}
	return 0, false
}

// closeTimeout bounds the wait for a close the engine sends as soon as it
// has read the frame that calls for it.
const closeTimeout = 10 * time.Second

// utf8Frames encodes a message of opcode op as masked client frames, one
// per part: the parts are the fragments, split exactly where the test
// says.
func utf8Frames(op int, parts ...string) []byte {
	var out []byte
	var hdr [wsframe.MaxHeader]byte
	for i, part := range parts {
		k := rand.Uint32()
		key := [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
		n := wsframe.PutHeader(hdr[:], i == len(parts)-1, op, len(part), true, key)
		out = append(out, hdr[:n]...)
		start := len(out)
		out = append(out, part...)
		wsframe.Mask(key, 0, out[start:])
		op = wsframe.OpContinuation
	}
	return out
}

// utf8Victim is a worker that serves utf8::victim, echoing each call's
// data, and records what it was sent; other messages go to next.
type utf8Victim struct {
	*utf8Peer
	mu      sync.Mutex
	calls   map[string]string // invocation id -> data, as received
	invalid []string          // messages received that are not UTF-8
}

func newUTF8Victim(t testing.TB, e *engineProc) *utf8Victim {
	v := &utf8Victim{utf8Peer: dialUTF8Peer(t, e), calls: map[string]string{}}
	v.in = make(chan []byte, 256)
	v.send(t, `{"type":"registerfunction","id":"utf8::victim"}`)
	go v.serve()
	return v
}

func (v *utf8Victim) serve() {
	defer close(v.in)
	for b := range v.msgs {
		var m wire.Message
		if wire.Decode(b, &m) != nil {
			continue
		}
		v.mu.Lock()
		if !utf8.Valid(b) {
			v.invalid = append(v.invalid, string(b))
		}
		if m.Type == wire.TypeInvokeFunction {
			v.calls[m.InvocationID] = string(m.Data)
		}
		v.mu.Unlock()
		if m.Type != wire.TypeInvokeFunction {
			v.in <- b
		} else {
			_ = v.write(utf8Frames(wsframe.OpText, `{"type":"invocationresult","invocation_id":"`+m.InvocationID+
				`","function_id":"`+m.FunctionID+`","result":`+string(m.Data)+`}`))
		}
	}
}

// check fails the test if the victim received a call id (if not "") or
// anything not UTF-8.
func (v *utf8Victim) check(t *testing.T, id string) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	if d, ok := v.calls[id]; ok && id != "" {
		t.Errorf("the engine forwarded %s to the victim, data %.80q", id, d)
	}
	if len(v.invalid) > 0 {
		t.Errorf("the victim received %d messages that are not UTF-8, first %.200q", len(v.invalid), v.invalid[0])
	}
}

// TestAttackWireInvalidUTF8: over ws:// and wss://, a raw worker sends an
// invokefunction for another worker's function, and answers a call to
// its own function, with invalid UTF-8 in the data or result: in one
// frame, split across fragments (each fragment UTF-8 on its own up to
// where the next completes the sequence), and deep in a message of many
// fragments. Each time the engine must close the sender's socket with
// 1007 and forward nothing; the receiving worker (a raw socket that would
// see any bytes forwarded) and a Go SDK caller go on being served. Before
// each attack the same socket sends the same message with valid UTF-8
// split in the same place, which must arrive byte for byte: the path the
// attack takes does forward.
func TestAttackWireInvalidUTF8(t *testing.T) {
	for _, scheme := range []string{"ws", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			var e *engineProc
			if scheme == "wss" {
				e = startTLSEngine(t)
			} else {
				e = startPlainEngine(t)
			}
			victim := newUTF8Victim(t, e)
			caller := connectGo(t, e, "utf8-caller")
			ctx := ctxFor(t, 4*callTimeout)
			waitFunctions(ctx, t, caller, "utf8::victim")
			served := func(after string) {
				t.Helper()
				if got, err := sluice.Call[string](ctx, caller, "utf8::victim", after); err != nil || got != after {
					t.Fatalf("the victim after %s: %q, %v", after, got, err)
				}
			}

			// The payload (a JSON string's content) in parts: the
			// control's is valid UTF-8, the attack's is not.
			type payload struct {
				name            string
				control, attack []string
			}
			long := strings.Repeat("a", 64<<10-1) // the rune straddles two fragments
			payloads := []payload{
				{"one frame", []string{"café"}, []string{"caf\xe9"}},
				{"split sequence", []string{"ok\xe2\x82", "\xacok"}, []string{"ok\xe2\x82", "(ok"}},
				{"split surrogate", []string{"\xed", "\x9f\xbf"}, []string{"\xed", "\xa0\x80"}},
				{"deep in fragments", split(long+"\xc3\xa9"+long, 4096), split(long+"\xc0\x80"+long, 4096)},
			}
			// frame builds a message whose payload parts go in fragments
			// of their own, head and tail joined to the first and last.
			frame := func(head string, parts []string, tail string) []byte {
				p := append([]string(nil), parts...)
				p[0] = head + p[0]
				p[len(p)-1] += tail
				return utf8Frames(wsframe.OpText, p...)
			}

			for i, pl := range payloads {
				t.Run("invoke/"+pl.name, func(t *testing.T) {
					attacker := dialUTF8Peer(t, e)
					attacker.next(t, wire.TypeWorkerRegistered, "")
					invoke := func(id string) string {
						return `{"type":"invokefunction","invocation_id":"` + id + `","function_id":"utf8::victim","data":"`
					}
					control, attack := "control-"+string(rune('a'+i)), "attack-"+string(rune('a'+i))
					if err := attacker.write(frame(invoke(control), pl.control, `"}`)); err != nil {
						t.Fatal(err)
					}
					want := `"` + strings.Join(pl.control, "") + `"`
					if m, _ := attacker.next(t, wire.TypeInvocationResult, control); m.Error != nil || string(m.Result) != want {
						t.Fatalf("control: result %.80q, error %+v; want %.80q", m.Result, m.Error, want)
					}
					if err := attacker.write(frame(invoke(attack), pl.attack, `"}`)); err != nil {
						t.Fatal(err)
					}
					attacker.closedWith(t, websocket.CloseInvalidFramePayloadData)
					served("invoke/" + pl.name)
					victim.check(t, attack)
				})
			}

			for i, pl := range payloads {
				t.Run("result/"+pl.name, func(t *testing.T) {
					attacker := dialUTF8Peer(t, e)
					fn := "utf8::attacker" + string(rune('a'+i))
					attacker.send(t, `{"type":"registerfunction","id":"`+fn+`"}`)
					waitFunctions(ctx, t, caller, fn)
					answer := func(id string, parts []string) {
						t.Helper()
						victim.send(t, `{"type":"invokefunction","invocation_id":"`+id+`","function_id":"`+fn+`","data":null}`)
						attacker.next(t, wire.TypeInvokeFunction, id)
						head := `{"type":"invocationresult","invocation_id":"` + id + `","function_id":"` + fn + `","result":"`
						if err := attacker.write(frame(head, parts, `"}`)); err != nil {
							t.Fatal(err)
						}
					}
					control, attack := "rcontrol-"+fn, "rattack-"+fn
					answer(control, pl.control)
					want := `"` + strings.Join(pl.control, "") + `"`
					if m, _ := victim.next(t, wire.TypeInvocationResult, control); m.Error != nil || string(m.Result) != want {
						t.Fatalf("control: result %.80q, error %+v; want %.80q", m.Result, m.Error, want)
					}
					answer(attack, pl.attack)
					attacker.closedWith(t, websocket.CloseInvalidFramePayloadData)
					m, raw := victim.next(t, wire.TypeInvocationResult, attack)
					if m.Error == nil || m.Result != nil || !utf8.Valid(raw) {
						t.Fatalf("the caller of the attacker's function got %.200q, want an error", raw)
					}
					served("result/" + pl.name)
					victim.check(t, "")
				})
			}

			// A stream client's messages are not forwarded, but its
			// socket must refuse invalid UTF-8 as a worker's does, and
			// the close must reach it over wss:// too.
			t.Run("stream client", func(t *testing.T) {
				line, err := e.stderr.wait(ctx, func(s string) bool { return strings.Contains(s, "stream clients served") })
				if err != nil {
					t.Fatal(err)
				}
				url := scheme + "://" + regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1] + "/"
				d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
				if e.tls != nil {
					d.TLSClientConfig = e.tls.ClientConfig()
				}
				dial := func() *websocket.Conn {
					ws, _, err := d.Dial(url, nil)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { ws.Close() })
					_ = ws.SetReadDeadline(time.Now().Add(closeTimeout))
					return ws
				}
				bad := dial()
				join := `{"type":"join","data":{"subscriptionId":"s","streamName":"utf8","groupId":"g`
				if _, err := bad.NetConn().Write(utf8Frames(wsframe.OpText, join+"\xe2\x82", `("}}`)); err != nil {
					t.Fatal(err)
				}
				_, b, err := bad.ReadMessage()
				if code, ok := closeCode(err); !ok || code != websocket.CloseInvalidFramePayloadData {
					t.Fatalf("a stream client's invalid UTF-8: got %.200q, %v; want close 1007", b, err)
				}
				good := dial()
				if err := good.WriteMessage(websocket.TextMessage, []byte(join+`"}}`)); err != nil {
					t.Fatal(err)
				}
				if _, b, err := good.ReadMessage(); err != nil || !strings.Contains(string(b), `"sync"`) {
					t.Fatalf("another stream client after the attack: %.200q, %v", b, err)
				}
			})
		})
	}
}

// split cuts s into parts of n bytes (the last shorter), wherever that
// falls in a rune.
func split(s string, n int) []string {
	var parts []string
	for len(s) > n {
		parts = append(parts, s[:n])
		s = s[n:]
	}
	return append(parts, s)
}
