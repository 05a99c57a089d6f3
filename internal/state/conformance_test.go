package state_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsnode/natstest"
	"github.com/sluicehq/sluice/internal/queue"
	"github.com/sluicehq/sluice/internal/state"
)

// stores runs a test against every implementation.
func stores(t *testing.T, test func(t *testing.T, s state.Store)) {
	t.Run("memory", func(t *testing.T) { test(t, state.NewMemory()) })
	t.Run("sqlite", func(t *testing.T) { test(t, openSQLite(t, t.TempDir())) })
	t.Run("jetstream", func(t *testing.T) { test(t, openJetStream(t, t.TempDir())) })
}

// openJetStream runs an embedded nats-server on dir and opens the store on
// its JetStream.
func openJetStream(t *testing.T, dir string) *state.JetStream {
	t.Helper()
	n := natstest.StartIn(t, dir)
	s, err := state.OpenJetStream(ctx, n.JS, state.JetStreamBucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openSQLite(t *testing.T, dir string) *state.SQLite {
	t.Helper()
	q, err := queue.OpenSQLite(dir, queue.SyncNormal)
	if err != nil {
		t.Fatal(err)
	}
	s, err := state.OpenSQLite(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); q.Close() })
	return s
}

var ctx = context.Background()

func TestSetGetDelete(t *testing.T) {
	stores(t, func(t *testing.T, s state.Store) {
		if _, ok, err := s.Get(ctx, "n", "g", "k"); ok || err != nil {
			t.Fatalf("empty store: ok %v err %v", ok, err)
		}
		ch, err := s.Set(ctx, "n", "g", "k", []byte(`1`))
		if err != nil || ch.Had || string(ch.New) != "1" || !ch.Has {
			t.Fatalf("first set: %+v %v", ch, err)
		}
		ch, err = s.Set(ctx, "n", "g", "k", []byte(`2`))
		if err != nil || !ch.Had || string(ch.Old) != "1" || string(ch.New) != "2" {
			t.Fatalf("second set: %+v %v", ch, err)
		}
		if v, ok, _ := s.Get(ctx, "n", "g", "k"); !ok || string(v) != "2" {
			t.Fatalf("get: %q %v", v, ok)
		}
		// Same key in another group or namespace is another value.
		if _, ok, _ := s.Get(ctx, "n", "g2", "k"); ok {
			t.Fatal("group not separated")
		}
		if _, ok, _ := s.Get(ctx, "m", "g", "k"); ok {
			t.Fatal("namespace not separated")
		}
		ch, err = s.Delete(ctx, "n", "g", "k")
		if err != nil || !ch.Had || string(ch.Old) != "2" || ch.Has {
			t.Fatalf("delete: %+v %v", ch, err)
		}
		if ch, _ := s.Delete(ctx, "n", "g", "k"); ch.Had {
			t.Fatal("deleted twice")
		}
		if _, ok, _ := s.Get(ctx, "n", "g", "k"); ok {
			t.Fatal("value survived delete")
		}
	})
}

func TestListGroupsNamespaces(t *testing.T) {
	stores(t, func(t *testing.T, s state.Store) {
		for _, k := range []struct{ ns, g, k string }{
			{"state", "b", "2"}, {"state", "b", "1"}, {"state", "a", "x"},
			{"stream/x", "g", "1"}, {"stream/y", "g", "1"}, {"other", "g", "1"},
		} {
			if _, err := s.Set(ctx, k.ns, k.g, k.k, []byte(`"`+k.k+`"`)); err != nil {
				t.Fatal(err)
			}
		}
		l, err := s.List(ctx, "state", "b")
		if err != nil || len(l) != 2 || l[0].Key != "1" || l[1].Key != "2" || string(l[1].Value) != `"2"` {
			t.Fatalf("list: %+v %v", l, err)
		}
		if l, _ := s.List(ctx, "state", "none"); len(l) != 0 {
			t.Fatalf("list of empty group: %+v", l)
		}
		g, _ := s.Groups(ctx, "state")
		if len(g) != 2 || g[0] != "a" || g[1] != "b" {
			t.Fatalf("groups: %v", g)
		}
		n, _ := s.Namespaces(ctx, "stream/")
		if len(n) != 2 || n[0] != "stream/x" || n[1] != "stream/y" {
			t.Fatalf("namespaces: %v", n)
		}
		s.Delete(ctx, "state", "a", "x")
		if g, _ := s.Groups(ctx, "state"); len(g) != 1 {
			t.Fatalf("emptied group still listed: %v", g)
		}
	})
}

func TestUpdate(t *testing.T) {
	stores(t, func(t *testing.T, s state.Store) {
		ch, err := s.Update(ctx, "n", "g", "k", func(old []byte, had bool) ([]byte, bool, error) {
			if had {
				t.Errorf("had %q", old)
			}
			return []byte(`"a"`), true, nil
		})
		if err != nil || ch.Had || string(ch.New) != `"a"` {
			t.Fatalf("update create: %+v %v", ch, err)
		}
		boom := errors.New("boom")
		if _, err := s.Update(ctx, "n", "g", "k", func([]byte, bool) ([]byte, bool, error) { return []byte(`"b"`), true, boom }); !errors.Is(err, boom) {
			t.Fatalf("update error: %v", err)
		}
		ch, _ = s.Update(ctx, "n", "g", "k", func(old []byte, had bool) ([]byte, bool, error) { return nil, false, nil })
		if string(ch.New) != `"a"` || string(ch.Old) != `"a"` {
			t.Fatalf("kept update: %+v", ch)
		}
		if v, _, _ := s.Get(ctx, "n", "g", "k"); string(v) != `"a"` {
			t.Fatalf("failed update changed the value: %q", v)
		}
	})
}

// TestConcurrentUpdates: 8 goroutines × 100 increments through Update
// lose none.
func TestConcurrentUpdates(t *testing.T) {
	stores(t, func(t *testing.T, s state.Store) {
		const workers, each = 8, 100
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					_, err := s.Update(ctx, "n", "g", "counter", func(old []byte, had bool) ([]byte, bool, error) {
						n := 0
						if had {
							n, _ = strconv.Atoi(string(old))
						}
						return []byte(strconv.Itoa(n + 1)), true, nil
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if v, _, _ := s.Get(ctx, "n", "g", "counter"); string(v) != strconv.Itoa(workers*each) {
			t.Fatalf("counter %s, want %d", v, workers*each)
		}
	})
}

// TestSQLiteReopen: values outlive the store (same directory).
func TestSQLiteReopen(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.OpenSQLite(dir, queue.SyncNormal)
	if err != nil {
		t.Fatal(err)
	}
	s, err := state.OpenSQLite(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "n", "g", "k", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	q.Close()
	s2 := openSQLite(t, dir)
	if v, ok, _ := s2.Get(ctx, "n", "g", "k"); !ok || string(v) != `{"a":1}` {
		t.Fatalf("after reopen: %q %v", v, ok)
	}
}

// TestJetStreamReopen: values outlive the server (same store directory),
// and keys with characters NATS subjects forbid (dots, spaces, "*", ">",
// empty strings) round-trip.
func TestJetStreamReopen(t *testing.T) {
	dir := t.TempDir()
	n := natstest.StartIn(t, dir)
	s, err := state.OpenJetStream(ctx, n.JS, state.JetStreamBucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct{ ns, g, k string }{{"n", "g", "k"}, {"a.b", "*", "> x"}, {"", "", ""}} {
		if _, err := s.Set(ctx, k.ns, k.g, k.k, []byte(`{"a":1}`)); err != nil {
			t.Fatalf("set %q: %v", k, err)
		}
	}
	n.Close()
	s2 := openJetStream(t, dir)
	if v, ok, _ := s2.Get(ctx, "n", "g", "k"); !ok || string(v) != `{"a":1}` {
		t.Fatalf("after restart: %q %v", v, ok)
	}
	if l, err := s2.List(ctx, "a.b", "*"); err != nil || len(l) != 1 || l[0].Key != "> x" {
		t.Fatalf("odd key list: %+v %v", l, err)
	}
	if g, _ := s2.Groups(ctx, ""); len(g) != 1 || g[0] != "" {
		t.Fatalf("empty group: %q", g)
	}
}

// TestJetStreamTwoEnginesIncrement: two stores on their own connections to
// one bucket (two engines of a cluster) increment one counter at once;
// revision compare-and-set loses none of the 2×4×50 increments.
func TestJetStreamTwoEnginesIncrement(t *testing.T) {
	n := natstest.Start(t)
	var ss []state.Store
	for range 2 {
		nc, err := nats.Connect("", nats.InProcessServer(n.Server))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := state.OpenJetStream(ctx, js, state.JetStreamBucket, 1)
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	const per, each = 4, 50
	var wg sync.WaitGroup
	for _, s := range ss {
		for range per {
			wg.Go(func() {
				for range each {
					if _, err := s.Update(ctx, "n", "g", "c", func(old []byte, had bool) ([]byte, bool, error) {
						n, _ := strconv.Atoi(string(old))
						return []byte(strconv.Itoa(n + 1)), true, nil
					}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if v, _, _ := ss[1].Get(ctx, "n", "g", "c"); string(v) != strconv.Itoa(2*per*each) {
		t.Fatalf("counter %s, want %d", v, 2*per*each)
	}
}
