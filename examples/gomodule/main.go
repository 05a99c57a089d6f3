// Command myworker is the smallest program in a module of its own that
// uses the Sluice Go SDK: see "Using the Go SDK from your own module" in
// the README. It serves "myworker::hello" until interrupted.
package main

import (
	"context"
	"log"
	"os"
	"os/signal"

	"github.com/sluicehq/sluice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c, err := sluice.Connect(ctx, "ws://127.0.0.1:49134", sluice.WithName("myworker"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	err = sluice.Register(c, "myworker::hello", func(ctx context.Context, in struct{ Name string }) (string, error) {
		return "Hello, " + in.Name, nil
	})
	if err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
}
