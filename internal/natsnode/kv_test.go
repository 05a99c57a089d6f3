package natsnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startJS runs a standalone embedded server and returns n JetStream
// contexts on their own connections to it (n nodes opening buckets).
func startJS(t *testing.T, n int) []jetstream.JetStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	node, err := Start(ctx, Config{NodeName: "test", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	var out []jetstream.JetStream
	for range n {
		nc, err := nats.Connect("", nats.InProcessServer(node.Server))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, js)
	}
	return out
}

// TestKeyValueConcurrentOpens: three nodes opening each of 40 new buckets
// at once all get handles that read from the stream's leader, without the
// retry of readsKV. On 3292cd8 (200 buckets, the handles KeyValue
// returned) 71 of 600 answered every read "no responders" for good: bound
// while another node's create had turned direct gets back on.
func TestKeyValueConcurrentOpens(t *testing.T) {
	jss := startJS(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for b := range 40 {
		bucket := fmt.Sprintf("b%d", b)
		kvs := make([]jetstream.KeyValue, len(jss))
		var wg sync.WaitGroup
		for i, js := range jss {
			wg.Go(func() {
				kv, err := KeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: bucket})
				if err != nil {
					t.Error(err)
					return
				}
				kvs[i] = kv.(readsKV).KeyValue
			})
		}
		wg.Wait()
		for i, kv := range kvs {
			if kv == nil {
				t.FailNow()
			}
			if _, err := kv.Get(ctx, "missing"); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Fatalf("bucket %s, node %d: read answered %v, want key not found", bucket, i, err)
			}
		}
	}
}

// TestKeyValueReadsRecoverStaleHandle: a handle bound while the bucket
// allowed direct gets, which were switched off since, gets no responders
// from nats.go; KeyValue's handle refreshes its view and reads.
func TestKeyValueReadsRecoverStaleHandle(t *testing.T) {
	jss := startJS(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := jss[0].CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b"}) // direct gets on
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := KeyValue(ctx, jss[1], jetstream.KeyValueConfig{Bucket: "b"}); err != nil { // switches them off
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("the stale handle read: %v, want no responders (the premise)", err)
	}
	r := readsKV{kv}
	if e, err := r.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("read through readsKV: %v", err)
	}
	if e, err := r.GetRevision(ctx, "k", 1); err != nil || string(e.Value()) != "v" {
		t.Fatalf("read of a revision through readsKV: %v", err)
	}
	if _, err := r.Get(ctx, "missing"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("read of a missing key: %v", err)
	}
}
