package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The HTTP echo's floors: what any engine built on net/http must do per
// request at the least, each part measured alone as a middle of the
// http-echo workloads.
//
//	http-bare  net/http answers the echo itself: accept, parse the request,
//	           route it, read the body, check it is JSON, write the answer.
//	           No backend hop, no WebSocket, no encoding/json decoding.
//	http-ws    the same, plus what an engine adds at the least: the request
//	           goes to a worker (a WebSocket echo process) as one frame on
//	           one shared connection and the answer comes back as one frame,
//	           matched by an 8-byte id. Frames queued meanwhile leave in one
//	           write, as the engine's do.

// bareAnswer appends the echo's answer to body (a JSON object, checked)
// to dst: the object with "where" set to id. Without decoding it: the
// request's body has no "where".
func bareAnswer(dst, body []byte, id string) ([]byte, bool) {
	body = bytes.TrimRight(body, " \t\r\n")
	if len(body) < 2 || body[len(body)-1] != '}' || !json.Valid(body) {
		return dst, false
	}
	dst = append(dst, body[:len(body)-1]...)
	if len(bytes.TrimSpace(body[1:len(body)-1])) > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, `"where":`...)
	dst = strconv.AppendQuote(dst, id) // the route's ids are digits
	return append(dst, '}'), true
}

var bareBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// readBody reads r's body into a pooled buffer (put it back when done).
func readBody(r *http.Request) (*[]byte, error) {
	bp := bareBufs.Get().(*[]byte)
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*bp = b
			return bp, nil
		}
		if err != nil {
			*bp = b
			return bp, err
		}
	}
}

// httpbare: the http-bare middle, or with -ws the http-ws middle.
func cmdHTTPBare(args []string) {
	fs := flag.NewFlagSet("httpbare", flag.ExitOnError)
	wsURL := fs.String("ws", "", "http-ws: the WebSocket echo each request goes to and back (empty: http-bare)")
	prof := fs.String("cpuprofile", "", "write a CPU profile of the whole life here when stopped (run -profile)")
	_ = fs.Parse(args)
	if *prof != "" {
		stopProfile = startCPUProfile(*prof)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		go func() {
			<-sig
			stopProfile()
			os.Exit(0)
		}()
	}
	var hop *wsHop
	if *wsURL != "" {
		var err error
		if hop, err = dialHop(*wsURL); err != nil {
			log.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo/{id}", func(w http.ResponseWriter, r *http.Request) {
		bp, err := readBody(r)
		defer bareBufs.Put(bp)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if hop != nil {
			hop.roundTrip(w, *bp, r.PathValue("id"))
			return
		}
		ap := bareBufs.Get().(*[]byte)
		defer bareBufs.Put(ap)
		out, ok := bareAnswer((*ap)[:0], *bp, r.PathValue("id"))
		*ap = out
		if !ok {
			http.Error(w, "not a JSON object", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ready("http://" + ln.Addr().String())
	log.Fatal(http.Serve(ln, mux))
}

// stopProfile ends -cpuprofile's profile (the worker's end, stopped
// first, ends http-ws too).
var stopProfile = func() {}

func bareFatal(v ...any) {
	stopProfile()
	log.Fatal(v...)
}

// wsHop is http-ws's one connection to the worker (the echo process).
type wsHop struct {
	ws *rawWS

	mu      sync.Mutex
	seq     uint64
	waiting map[uint64]*hopCall
	pending []byte        // frames not yet written
	wake    chan struct{} // the writer: pending has frames
}

type hopCall struct {
	done chan struct{}
	resp []byte // the answer's payload, after the id
}

var hopCalls = sync.Pool{New: func() any { return &hopCall{done: make(chan struct{}, 1)} }}

func dialHop(u string) (*wsHop, error) {
	ws, err := dialRaw(u)
	if err != nil {
		return nil, err
	}
	h := &wsHop{ws: ws, waiting: map[uint64]*hopCall{}, wake: make(chan struct{}, 1)}
	go h.writeLoop()
	go h.readLoop()
	return h, nil
}

// writeLoop writes everything pending in one write, then waits for more.
func (h *wsHop) writeLoop() {
	var out []byte
	for range h.wake {
		h.mu.Lock()
		out, h.pending = h.pending, out[:0]
		h.mu.Unlock()
		if err := h.ws.write(out); err != nil {
			bareFatal(err)
		}
	}
}

// readLoop hands each answer to the request waiting for it.
func (h *wsHop) readLoop() {
	var buf []byte
	for {
		var err error
		if buf, err = h.ws.readMessage(buf[:0], time.Time{}); err != nil {
			bareFatal(err)
		}
		if len(buf) < 8 {
			bareFatal(fmt.Sprintf("http-ws: a %d-byte answer", len(buf)))
		}
		id := binary.LittleEndian.Uint64(buf)
		h.mu.Lock()
		c := h.waiting[id]
		delete(h.waiting, id)
		h.mu.Unlock()
		if c == nil {
			bareFatal(fmt.Sprintf("http-ws: an answer to %d, not asked", id))
		}
		c.resp = append(c.resp[:0], buf[8:]...)
		c.done <- struct{}{}
	}
}

// roundTrip sends the request's answer (built here: the worker is an echo)
// to the worker with an id, waits for it to come back and writes it.
func (h *wsHop) roundTrip(w http.ResponseWriter, body []byte, id string) {
	c := hopCalls.Get().(*hopCall)
	defer hopCalls.Put(c)
	pp := bareBufs.Get().(*[]byte)
	defer bareBufs.Put(pp)
	payload, ok := bareAnswer(append((*pp)[:0], make([]byte, 8)...), body, id)
	*pp = payload
	if !ok {
		http.Error(w, "not a JSON object", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.seq++
	binary.LittleEndian.PutUint64(payload, h.seq)
	h.waiting[h.seq] = c
	first := len(h.pending) == 0
	h.pending = h.ws.appendFrame(h.pending, 0x2, payload)
	h.mu.Unlock()
	if first {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	<-c.done
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(c.resp)
}
