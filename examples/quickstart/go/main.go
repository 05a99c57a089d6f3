// Command go is the Go half of the README quickstart: it serves
// "go::greet" and calls the Node worker's "node::shout".
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/sluicehq/sluice"
)

type greetIn struct {
	Name string `json:"name"`
}

type greetOut struct {
	Greeting string `json:"greeting"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	url := os.Getenv("III_URL")
	if url == "" {
		url = "ws://127.0.0.1:49134"
	}
	c, err := sluice.Connect(ctx, url, sluice.WithName("quickstart-go"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	err = sluice.Register(c, "go::greet", func(ctx context.Context, in greetIn) (greetOut, error) {
		return greetOut{Greeting: "Hello, " + in.Name + ", from Go"}, nil
	})
	if err != nil {
		log.Fatal(err)
	}

	// Call the Node worker once it is there.
	for ctx.Err() == nil {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		out, err := sluice.Call[map[string]string](callCtx, c, "node::shout", map[string]string{"text": "hi from go"})
		cancel()
		if err == nil {
			fmt.Println("node::shout answered:", out["text"])
			break
		}
		fmt.Println("waiting for node::shout:", err)
		time.Sleep(time.Second)
	}
	<-ctx.Done()
}
