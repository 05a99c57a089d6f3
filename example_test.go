package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/engine"
)

// startExampleEngine runs an engine inside the example on a free loopback
// port; normally the engine is a separate `sluice serve` process.
func startExampleEngine() (*engine.Engine, func()) {
	cfg := engine.DefaultConfig()
	cfg.Addr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	e, err := engine.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	return e, func() { _ = e.Shutdown(context.Background()) }
}

type GreetIn struct {
	Name string `json:"name"`
}

type GreetOut struct {
	Message string `json:"message"`
}

func Example() {
	e, stop := startExampleEngine()
	defer stop()
	ctx := context.Background()

	c, err := sluice.Connect(ctx, e.WorkerURL(), sluice.WithName("greeter"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A typed function: the payload is decoded into GreetIn, the result
	// encoded from GreetOut. Workers in any language can call it.
	err = sluice.Register(c, "greeter::hello", func(ctx context.Context, in GreetIn) (GreetOut, error) {
		if in.Name == "" {
			return GreetOut{}, &sluice.Error{Code: "bad_request", Message: "name is required"}
		}
		return GreetOut{Message: "Hello, " + in.Name + "!"}, nil
	})
	if err != nil {
		log.Fatal(err)
	}

	// Calls go through the engine to whichever worker serves the function
	// (here the same client: one socket keeps registration and call in order).
	out, err := sluice.Call[GreetOut](ctx, c, "greeter::hello", GreetIn{Name: "Ada"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Message)

	_, err = sluice.Call[GreetOut](ctx, c, "greeter::hello", GreetIn{})
	var se *sluice.Error
	if errors.As(err, &se) {
		fmt.Println(se.Code, "-", se.Message)
	}
	// Output:
	// Hello, Ada!
	// bad_request - name is required
}

func ExampleClient_Trigger_timeout() {
	e, stop := startExampleEngine()
	defer stop()
	ctx := context.Background()
	c, err := sluice.Connect(ctx, e.WorkerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_ = c.RegisterRaw("slow::op", func(ctx context.Context, _ *sluice.Invocation) (json.RawMessage, error) {
		<-ctx.Done() // never answers before the client closes
		return nil, ctx.Err()
	})

	// The ctx deadline bounds the call (without one, WithInvocationTimeout
	// applies, 30 s by default).
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = c.Trigger(tctx, "slow::op", nil)
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output: true
}

// cronish is a trigger type provider: the engine hands it every binding of
// its type, and it calls the bound function whenever its event happens.
type cronish struct{ c *sluice.Client }

func (p cronish) RegisterTrigger(ctx context.Context, b sluice.TriggerBinding) error {
	// Parse b.Config, start a timer that calls
	// p.c.TriggerVoid(ctx, b.FunctionID, event, sluice.WithCallMetadata(b.Metadata)).
	return nil
}

func (p cronish) UnregisterTrigger(ctx context.Context, b sluice.TriggerBinding) error {
	// Stop the timer of b.ID.
	return nil
}

func ExampleClient_RegisterTriggerType() {
	ctx := context.Background()
	c, err := sluice.Connect(ctx, "ws://localhost:49134")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.RegisterTriggerType("cronish", "fires on a schedule", cronish{c}); err != nil {
		log.Fatal(err)
	}
	// Any worker may now bind functions to it:
	_, err = c.RegisterTrigger(sluice.TriggerSpec{
		Type:       "cronish",
		FunctionID: "reports::daily",
		Config:     map[string]string{"every": "24h"},
	})
	if err != nil {
		log.Fatal(err)
	}
}
