package sluice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/sluicehq/sluice"
)

// A standard http.Handler served as a function behind the engine's HTTP
// listener: path values, query, JSON in and out.
func ExampleClient_HandleHTTP() {
	e, stop := startExampleEngine()
	defer stop()
	ctx := context.Background()
	c, err := sluice.Connect(ctx, e.WorkerURL(), sluice.WithName("users"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	err = c.HandleHTTPFunc("POST /users/{id}/rename", "users::rename", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Name string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"id": r.PathValue("id"), "name": in.Name, "by": r.URL.Query().Get("by"),
		})
	})
	if err != nil {
		log.Fatal(err)
	}
	// Registrations are sent without waiting for an answer: Sync returns
	// once the engine has processed them, so the route exists.
	if err := c.Sync(ctx); err != nil {
		log.Fatal(err)
	}

	res, err := http.Post(e.HTTPURL()+"/users/42/rename?by=ada", "application/json", strings.NewReader(`{"name":"Grace"}`))
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	fmt.Println(res.StatusCode, res.Header.Get("Content-Type"))
	fmt.Print(string(b))
	// Output:
	// 200 application/json
	// {"by":"ada","id":"42","name":"Grace"}
}

// Server-sent events: set the headers, Flush, then write and Flush each
// event; the client receives every event as it is written.
func ExampleClient_HandleHTTP_serverSentEvents() {
	e, stop := startExampleEngine()
	defer stop()
	c, err := sluice.Connect(context.Background(), e.WorkerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	err = c.HandleHTTPFunc("GET /ticks", "ticks::stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.(http.Flusher).Flush() // headers now: the browser's EventSource opens
		for i := 1; i <= 3; i++ {
			select {
			case <-time.After(10 * time.Millisecond):
			case <-r.Context().Done(): // the client went away
				return
			}
			fmt.Fprintf(w, "id: %d\ndata: tick %d\n\n", i, i)
			w.(http.Flusher).Flush()
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Sync(context.Background()); err != nil {
		log.Fatal(err)
	}

	res, err := http.Get(e.HTTPURL() + "/ticks")
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	fmt.Println(res.Header.Get("Content-Type"))
	fmt.Print(string(b))
	// Output:
	// text/event-stream
	// id: 1
	// data: tick 1
	//
	// id: 2
	// data: tick 2
	//
	// id: 3
	// data: tick 3
}
