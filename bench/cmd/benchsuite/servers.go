package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"

	"github.com/sluicehq/sluice/internal/benchrelay"
)

// The baseline servers, each run as a process of its own. Each prints
// "READY <address>" on stdout once it listens, then serves until killed.

func ready(addr string) { fmt.Printf("READY %s\n", addr) }

// wsecho: a gorilla WebSocket server that writes every message back.
func cmdWSEcho(args []string) {
	s, err := benchrelay.StartEcho()
	if err != nil {
		log.Fatal(err)
	}
	ready(s.URL)
	select {}
}

// wsrelay: a gorilla WebSocket relay to -target, one upstream connection
// per client, one goroutine per direction.
func cmdWSRelay(args []string) {
	fs := flag.NewFlagSet("wsrelay", flag.ExitOnError)
	target := fs.String("target", "", "WebSocket URL to relay to")
	_ = fs.Parse(args)
	s, err := benchrelay.StartRelay(*target)
	if err != nil {
		log.Fatal(err)
	}
	ready(s.URL)
	select {}
}

// tcprelay: pairs a writer connection (first byte 'W') with a reader
// connection (first byte 'R') and moves the writer's bytes to the reader:
// -mode copy through a 64 KiB buffer (read/write: the same four kernel
// copies a WebSocket relay does), -mode splice with io.Copy between the
// TCP connections (splice(2) on Linux: the bytes never enter the relay).
func cmdTCPRelay(args []string) {
	fs := flag.NewFlagSet("tcprelay", flag.ExitOnError)
	mode := fs.String("mode", "copy", "copy or splice")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ready(ln.Addr().String())
	var mu sync.Mutex
	var writer, reader net.Conn
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			var role [1]byte
			if _, err := io.ReadFull(c, role[:]); err != nil {
				c.Close()
				return
			}
			mu.Lock()
			if role[0] == 'W' {
				writer = c
			} else {
				reader = c
			}
			in, out := writer, reader
			if in == nil || out == nil {
				mu.Unlock()
				return
			}
			writer, reader = nil, nil
			mu.Unlock()
			defer in.Close()
			defer out.Close()
			if *mode == "splice" {
				_, _ = io.Copy(out, in)
			} else {
				_, _ = io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, 64<<10))
			}
		}()
	}
}

// echoMsg is the body of the HTTP JSON echo, the same for every target.
type echoMsg struct {
	ID    int      `json:"id"`
	Name  string   `json:"name"`
	Tags  []string `json:"tags"`
	Where string   `json:"where"`
}

var blobChunk = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}()

// httpbackend: the plain net/http server with the same two handlers as
// the engine's worker: POST /echo/{id} (JSON echo) and GET /blob?n=BYTES.
func cmdHTTPBackend(args []string) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo/{id}", func(w http.ResponseWriter, r *http.Request) {
		var m echoMsg
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m.Where = r.PathValue("id")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	})
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		for sent := int64(0); sent < n; {
			k := min(int64(len(blobChunk)), n-sent)
			if _, err := w.Write(blobChunk[:k]); err != nil {
				return
			}
			sent += k
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ready("http://" + ln.Addr().String())
	log.Fatal(http.Serve(ln, mux))
}

// revproxy: httputil.ReverseProxy in front of -target with a pooled
// transport.
func cmdRevProxy(args []string) {
	fs := flag.NewFlagSet("revproxy", flag.ExitOnError)
	target := fs.String("target", "", "backend base URL")
	_ = fs.Parse(args)
	u, err := url.Parse(*target)
	if err != nil {
		log.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}
	p := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }, Transport: tr}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ready("http://" + ln.Addr().String())
	log.Fatal(http.Serve(ln, p))
}
