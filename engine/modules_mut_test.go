package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	websocket "github.com/sluicehq/sluice/internal/ws"

	"github.com/sluicehq/sluice/internal/registry"
)

// Shutdown stops the stream client listener when the streams module is
// on, and does nothing for it when the module is off.
// Mutation: modules.go:48 (`m != nil` negated in stopModules: the listener
// stayed open after Shutdown; with the module off, Shutdown dereferenced
// nil).
func TestShutdownStopsStreamClients(t *testing.T) {
	for _, on := range []bool{true, false} {
		cfg := DefaultConfig()
		cfg.Addr, cfg.HTTPAddr, cfg.ConsoleAddr, cfg.Streams.Addr, cfg.DataDir = "127.0.0.1:0", "", "", "127.0.0.1:0", DataDirMemory
		cfg.Streams.Enabled = on
		e, err := New(cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		shut := false
		t.Cleanup(func() { // a failure before the Shutdown below must not leave the engine running
			if !shut {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = e.Shutdown(ctx)
			}
		})
		addr := e.StreamClientsAddr()
		if (addr != "") != on {
			t.Fatalf("streams on=%v: stream clients address %q", on, addr)
		}
		if on {
			ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
			if err != nil {
				t.Fatalf("stream clients before Shutdown: %v", err)
			}
			ws.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = e.Shutdown(ctx)
		cancel()
		shut = true
		if err != nil {
			t.Fatalf("streams on=%v: Shutdown: %v", on, err)
		}
		if on {
			if ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil); err == nil {
				ws.Close()
				t.Fatal("the stream client listener still accepts after Shutdown")
			}
		}
	}
}

// moduleTriggers: a binding registered again under its id drops the old
// one first; unregistering drops it once, an unknown id drops nothing; a
// module without onDrop (state, pubsub) needs none.
// Mutations: modules.go:116 (`p.onDrop != nil` negated: the old binding was
// not dropped, a replaced cron job ran on beside the new one; a module
// without onDrop called nil) and :129 ×2 (the same in UnregisterTrigger:
// an unregistered cron job ran on; onDrop(nil) for an unknown id).
func TestModuleTriggersReplaceAndDrop(t *testing.T) {
	parse := func(raw jsontext.Value) (string, error) { return string(raw), nil }
	p := newModuleTriggers(parse)
	var log []string
	p.onAdd = func(mt *moduleTrigger[string]) { log = append(log, "add "+mt.t.ID+" "+mt.cfg) }
	p.onDrop = func(mt *moduleTrigger[string]) {
		if mt == nil {
			log = append(log, "drop nil")
			return
		}
		log = append(log, "drop "+mt.t.ID+" "+mt.cfg)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.RegisterTrigger(&registry.Trigger{ID: "a", Config: jsontext.Value(`1`)}))
	must(p.RegisterTrigger(&registry.Trigger{ID: "a", Config: jsontext.Value(`2`)}))
	p.UnregisterTrigger(&registry.Trigger{ID: "a"})
	p.UnregisterTrigger(&registry.Trigger{ID: "missing"})
	if got, want := strings.Join(log, "; "), "add a 1; drop a 1; add a 2; drop a 2"; got != want {
		t.Fatalf("calls: %s, want %s", got, want)
	}
	if len(p.matching(func(*string) bool { return true })) != 0 {
		t.Fatal("a binding left after unregistering")
	}

	q := newModuleTriggers(parse) // no onAdd, no onDrop
	must(q.RegisterTrigger(&registry.Trigger{ID: "b", Config: jsontext.Value(`1`)}))
	must(q.RegisterTrigger(&registry.Trigger{ID: "b", Config: jsontext.Value(`2`)}))
	if m := q.matching(func(c *string) bool { return *c == "2" }); len(m) != 1 {
		t.Fatalf("replaced binding: %d match the new config", len(m))
	}
	q.UnregisterTrigger(&registry.Trigger{ID: "b"})
}

// An event dropped for want of a delivery slot is logged the first time
// and every thousandth, with the running total.
// Mutations: modules.go:242 (`n == 1` negated, `n%1000 == 0` negated, `%`
// → `*`).
func TestEventDropsLoggedPerThousand(t *testing.T) {
	e, logs := startEngineLogged(t)
	for range cap(e.modules.events) { // every slot busy
		e.modules.events <- struct{}{}
	}
	t.Cleanup(func() {
		for range cap(e.modules.events) {
			<-e.modules.events
		}
	})
	ran := false
	for range 2001 {
		e.deliver("test", func() { ran = true })
	}
	if ran {
		t.Fatal("an event ran with no slot free")
	}
	var totals []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "event dropped: too many event deliveries in flight") {
			_, total, _ := strings.Cut(l, "dropped_total=")
			totals = append(totals, total)
		}
	}
	if got := strings.Join(totals, ","); got != "1,1000,2000" {
		t.Fatalf("drop log lines with totals %q, want 1,1000,2000", got)
	}
}
