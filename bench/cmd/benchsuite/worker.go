package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sluicehq/sluice/internal/benchrelay"
)

// worker: the raw-protocol worker process, the same for Sluice and the
// upstream engine. It registers
//
//	bench::echo  returns its data (the invocation benchmarks)
//	bench::http  POST echo/:id, the HTTP JSON echo (buffered response)
//	bench::blob  GET blob?n=BYTES, streamed on the response channel
//
// or, with -observed, bench::plain and bench::observed (echo) and
// bench::sink (answers nothing) for the observe workload,
//
// and answers invocations on its socket's reader goroutine (the blob is
// streamed from a goroutine of its own).
func cmdWorker(args []string) {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	engineURL := fs.String("url", "", "engine worker URL (ws://host:port)")
	observed := fs.Bool("observed", false, "register only bench::plain and bench::observed (echo) and bench::sink (the observe workload)")
	subscribe := fs.Int("subscribe", 0, "also bind bench::sub to topic benchps this many times (pubsub fan-out); prints DELIVERED n every 100 deliveries")
	alsoEcho := fs.String("also-echo", "", "also register this function id, an echo like bench::echo (the cluster workloads: a function served on one node only)")
	_ = fs.Parse(args)
	d := websocket.Dialer{ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	c, _, err := d.Dial(*engineURL, nil)
	if err != nil {
		log.Fatal(err)
	}
	var wmu sync.Mutex
	send := func(b []byte) {
		wmu.Lock()
		err := c.WriteMessage(websocket.TextMessage, b)
		wmu.Unlock()
		if err != nil {
			log.Fatal(err)
		}
	}
	regs := []string{
		`{"type":"registerfunction","id":"bench::echo"}`,
		`{"type":"registerfunction","id":"bench::http"}`,
		`{"type":"registerfunction","id":"bench::blob"}`,
		`{"type":"registertrigger","id":"6d1f8f5e-2b7a-4c61-9d2e-000000000001","trigger_type":"http","function_id":"bench::http","config":{"api_path":"echo/:id","http_method":"POST"}}`,
		`{"type":"registertrigger","id":"6d1f8f5e-2b7a-4c61-9d2e-000000000002","trigger_type":"http","function_id":"bench::blob","config":{"api_path":"blob","http_method":"GET"}}`,
	}
	if *observed {
		regs = []string{`{"type":"registerfunction","id":"bench::plain"}`, `{"type":"registerfunction","id":"bench::observed"}`,
			`{"type":"registerfunction","id":"bench::sink"}`}
	}
	if *alsoEcho != "" {
		regs = append(regs, fmt.Sprintf(`{"type":"registerfunction","id":%q}`, *alsoEcho))
	}
	for _, m := range regs {
		send([]byte(m))
	}
	if *subscribe > 0 {
		send([]byte(`{"type":"registerfunction","id":"bench::sub"}`))
		for i := range *subscribe {
			send(fmt.Appendf(nil, `{"type":"registertrigger","id":"6d1f8f5e-2b7a-4c61-9d2e-1%011d","trigger_type":"subscribe","function_id":"bench::sub","config":{"topic":"benchps"}}`, i))
		}
	}
	delivered := 0
	ready(*engineURL)
	base := strings.TrimSuffix(*engineURL, "/")
	type ref struct {
		ChannelID string `json:"channel_id"`
		AccessKey string `json:"access_key"`
	}
	var inv invocation
	var httpReq struct {
		PathParams  map[string]string `json:"path_params"`
		QueryParams map[string]string `json:"query_params"`
		Body        echoMsg           `json:"body"`
		Response    ref               `json:"response"`
	}
	out := make([]byte, 0, 4096)
	buf := make([]byte, 0, 64<<10)
	for {
		_, rd, err := c.NextReader()
		if err != nil {
			log.Fatal(err)
		}
		buf, err = benchrelay.ReadMessage(rd, buf[:0])
		if err != nil {
			log.Fatal(err)
		}
		if debug {
			log.Printf("worker recv %s", buf)
		}
		if !scanInvocation(buf, &inv) {
			continue
		}
		out = append(out[:0], `{"type":"invocationresult","invocation_id":"`...)
		out = append(out, inv.id...)
		out = append(out, `","function_id":"`...)
		out = append(out, inv.fn...)
		fn := string(inv.fn)
		if fn == *alsoEcho {
			fn = "bench::echo"
		}
		switch fn {
		case "bench::echo", "bench::plain", "bench::observed":
			out = append(out, `","result":`...)
			out = append(out, inv.data...)
			out = append(out, '}')
		case "bench::http":
			httpReq.Body = echoMsg{}
			if err := json.Unmarshal(inv.data, &httpReq); err != nil {
				log.Fatalf("worker: %v: %s", err, inv.data)
			}
			httpReq.Body.Where = httpReq.PathParams["id"]
			body, _ := json.Marshal(httpReq.Body)
			out = append(out, `","result":{"status_code":200,"headers":{"content-type":"application/json"},"body":`...)
			out = append(out, body...)
			out = append(out, "}}"...)
		case "bench::blob":
			if err := json.Unmarshal(inv.data, &httpReq); err != nil {
				log.Fatalf("worker: %v: %s", err, inv.data)
			}
			n, _ := strconv.ParseInt(httpReq.QueryParams["n"], 10, 64)
			u := base + "/ws/channels/" + httpReq.Response.ChannelID + "?key=" + httpReq.Response.AccessKey + "&dir=write"
			go streamBlob(u, n)
			out = append(out, `"}`...)
		case "bench::sink":
			out = append(out, `"}`...)
		case "bench::sub":
			out = append(out, `"}`...)
			if delivered++; delivered%100 == 0 {
				fmt.Printf("DELIVERED %d\n", delivered)
			}
		default:
			out = append(out, `","error":{"code":"function_not_found","message":"no such function"}}`...)
		}
		send(out)
	}
}

// streamBlob writes n bytes in 64 KiB binary frames to a channel.
func streamBlob(u string, n int64) {
	ws, err := dialRaw(u)
	if err != nil {
		log.Printf("blob: %v", err)
		return
	}
	full := ws.frame(0x2, blobChunk)
	for sent := int64(0); sent < n; {
		k := min(int64(len(blobChunk)), n-sent)
		f := full
		if k < int64(len(blobChunk)) {
			f = ws.frame(0x2, blobChunk[:k])
		}
		if err := ws.write(f); err != nil {
			log.Printf("blob: %v", err)
			return
		}
		sent += k
	}
	_ = ws.c.SetDeadline(time.Now().Add(2 * time.Second))
	ws.closeAndWait()
}

// invocation is the part of an invokefunction message the worker reads:
// slices of the message, found by scanning it (no decoding), so that the
// worker costs little more than the relay baseline's echo server.
type invocation struct{ id, fn, data []byte }

// scanInvocation finds the fields of an invokefunction message in b, in
// any key order; false for any other message.
func scanInvocation(b []byte, inv *invocation) bool {
	*inv = invocation{}
	isInvoke := false
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return false
		}
		kEnd := skipValue(b, i)
		key := b[i+1 : kEnd-1]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		vEnd := skipValue(b, i)
		if vEnd < 0 {
			return false
		}
		v := b[i:vEnd]
		str := func() []byte {
			if len(v) >= 2 && v[0] == '"' {
				return v[1 : len(v)-1]
			}
			return nil
		}
		switch string(key) {
		case "type":
			isInvoke = string(str()) == "invokefunction"
		case "invocation_id":
			inv.id = str()
		case "function_id":
			inv.fn = str()
		case "data":
			inv.data = v
		}
		i = skipSpace(b, vEnd)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			if inv.data == nil {
				inv.data = []byte("null")
			}
			return isInvoke
		}
		if b[i] != ',' {
			return false
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value at b[i] (-1 if malformed).
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		for i++; i < len(b); i++ {
			switch b[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return -1
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				j := skipValue(b, i)
				if j < 0 {
					return -1
				}
				i = j - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return i
}
