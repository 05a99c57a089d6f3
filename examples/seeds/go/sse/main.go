// Command sse is the seed's "Use Channels" Example 2 (server-sent events)
// with the Sluice Go SDK: five progress events and a done event on
// GET /events/stream, each flushed to the client as it is written.
//
//	go run ./examples/seeds/go/sse   then: curl -N http://127.0.0.1:3111/events/stream
//
// Env: III_URL (default ws://localhost:49134), SSE_DELAY_MS (pause between
// events, default 1000 as in the seed).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/sluicehq/sluice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	delay := time.Second
	if ms, err := strconv.Atoi(os.Getenv("SSE_DELAY_MS")); err == nil {
		delay = time.Duration(ms) * time.Millisecond
	}
	url := os.Getenv("III_URL")
	if url == "" {
		url = "ws://localhost:49134"
	}
	c, err := sluice.Connect(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	err = c.HandleHTTPFunc("GET /events/stream", "events::stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Connection", "keep-alive")
		w.WriteHeader(http.StatusOK)
		flusher := w.(http.Flusher)

		for i := 1; i <= 5; i++ {
			data, _ := json.Marshal(map[string]int{"step": i, "total": 5})
			fmt.Fprintf(w, "id: %d\nevent: progress\ndata: %s\n\n", i, data)
			flusher.Flush()
			select {
			case <-time.After(delay):
			case <-r.Context().Done(): // the client went away
				return
			}
		}
		data, _ := json.Marshal(map[string]string{"message": "complete"})
		fmt.Fprintf(w, "id: 6\nevent: done\ndata: %s\n\n", data)
	})
	if err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
}
