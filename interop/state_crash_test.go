package interop

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sluice "github.com/sluicehq/sluice"
)

// TestStateCrashDurability: 8 Go writers set distinct keys and stream items
// and increment a shared counter (state::update) while the engine is SIGKILLed at a random
// moment; after a restart on the same data directory every acknowledged
// set (state and stream item) is there with its value, and the counter holds at least every
// acknowledged increment and at most every attempted one.
//
// On f9f823a (before the state module) no state::set was acknowledged
// (function_not_found).
func TestStateCrashDurability(t *testing.T) {
	const writers, perWriter = 8, 400
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	killAfter := int64(200 + rng.IntN(1500))
	t.Logf("seed %d: SIGKILL after %d acknowledged writes", seed, killAfter)

	data := filepath.Join(t.TempDir(), "data")
	e1 := startEngine(t, "127.0.0.1:0", "--data-dir", data)
	ctx := ctxFor(t, 30*time.Second)

	var nAcked, incAcked, incTried atomic.Int64
	acked := make([][]bool, writers)
	killed := make(chan struct{})
	var killOnce sync.Once
	var wg sync.WaitGroup
	for w := range writers {
		acked[w] = make([]bool, perWriter)
		c := connectGo(t, e1, "state-crash-"+strconv.Itoa(w))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				select {
				case <-killed:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := c.Trigger(cctx, "state::set", map[string]any{"scope": "crash", "key": stateCrashKey(w, i), "value": map[string]int{"w": w, "i": i}})
				if err == nil {
					_, err = c.Trigger(cctx, "stream::set", map[string]any{"stream_name": "crash", "group_id": strconv.Itoa(w), "item_id": strconv.Itoa(i), "data": i})
				}
				if err == nil {
					incTried.Add(1)
					_, err = c.Trigger(cctx, "state::update", map[string]any{"scope": "crash-count", "key": "n",
						"ops": []map[string]any{{"type": "increment", "path": "", "by": 1}}})
					if err == nil {
						incAcked.Add(1)
					}
				}
				cancel()
				if err != nil {
					return // the engine is gone
				}
				acked[w][i] = true
				if nAcked.Add(1) == killAfter {
					killOnce.Do(func() {
						e1.kill()
						<-e1.exited
						close(killed)
					})
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatalf("engine never killed: %d acknowledged", nAcked.Load())
	}
	t.Logf("killed after %d acknowledged writes (%d increments acknowledged, %d attempted)", nAcked.Load(), incAcked.Load(), incTried.Load())

	e2 := startEngine(t, "127.0.0.1:0", "--data-dir", data)
	c := connectGo(t, e2, "state-crash-check")
	found := 0
	for w := range writers {
		for i := range perWriter {
			if !acked[w][i] {
				continue
			}
			v, err := sluice.Call[map[string]int](ctx, c, "state::get", map[string]string{"scope": "crash", "key": stateCrashKey(w, i)})
			if err != nil || v["w"] != w || v["i"] != i {
				t.Fatalf("acknowledged key %s after restart: %v %v", stateCrashKey(w, i), v, err)
			}
			item, err := sluice.Call[int](ctx, c, "stream::get", map[string]string{"stream_name": "crash", "group_id": strconv.Itoa(w), "item_id": strconv.Itoa(i)})
			if err != nil || item != i {
				t.Fatalf("acknowledged stream item %d/%d after restart: %v %v", w, i, item, err)
			}
			found++
		}
	}
	raw, err := c.Trigger(ctx, "state::get", map[string]string{"scope": "crash-count", "key": "n"})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil || n < incAcked.Load() || n > incTried.Load() {
		t.Fatalf("counter %s after restart: want %d..%d (%v)", raw, incAcked.Load(), incTried.Load(), err)
	}
	t.Logf("after restart: %d acknowledged keys all present, counter %d", found, n)
}

func stateCrashKey(w, i int) string { return strconv.Itoa(w) + "-" + strconv.Itoa(i) }
