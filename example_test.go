package sluice_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"slices"
	"sync"
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

// ticker is a trigger type provider: the engine hands it every binding of
// its type, and it calls the bound function whenever its event happens —
// here every config.every, config.times times.
type ticker struct {
	c    *sluice.Client
	mu   sync.Mutex
	stop map[string]chan struct{} // by binding id
}

func (p *ticker) RegisterTrigger(ctx context.Context, b sluice.TriggerBinding) error {
	var cfg struct {
		Every string `json:"every"`
		Times int    `json:"times"`
	}
	if err := json.Unmarshal(b.Config, &cfg); err != nil {
		return err // the binding is refused; its registrant is told why
	}
	every, err := time.ParseDuration(cfg.Every)
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	p.mu.Lock()
	p.stop[b.ID] = stop
	p.mu.Unlock()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 1; i <= cfg.Times; i++ {
			select {
			case <-t.C:
			case <-stop:
				return
			}
			_ = p.c.TriggerVoid(context.Background(), b.FunctionID, map[string]int{"tick": i},
				sluice.WithCallMetadata(b.Metadata))
		}
	}()
	return nil
}

func (p *ticker) UnregisterTrigger(ctx context.Context, b sluice.TriggerBinding) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if stop, ok := p.stop[b.ID]; ok {
		close(stop)
		delete(p.stop, b.ID)
	}
	return nil
}

func ExampleClient_RegisterTriggerType() {
	e, stop := startExampleEngine()
	defer stop()
	ctx := context.Background()
	c, err := sluice.Connect(ctx, e.WorkerURL())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.RegisterTriggerType("ticker", "fires every config.every, config.times times", &ticker{c: c, stop: map[string]chan struct{}{}}); err != nil {
		log.Fatal(err)
	}

	// Any worker may now bind its functions to it (here the same one).
	ticks := make(chan int, 3)
	err = sluice.Register(c, "reports::tick", func(ctx context.Context, in struct{ Tick int }) (any, error) {
		ticks <- in.Tick
		return nil, nil
	})
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.RegisterTrigger(sluice.TriggerSpec{
		Type:       "ticker",
		FunctionID: "reports::tick",
		Config:     map[string]any{"every": "10ms", "times": 3},
	})
	if err != nil {
		log.Fatal(err)
	}
	got := []int{<-ticks, <-ticks, <-ticks}
	slices.Sort(got) // handlers may run concurrently
	fmt.Println(got)
	// Output: [1 2 3]
}
