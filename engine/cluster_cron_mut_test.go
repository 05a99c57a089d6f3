package engine

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/registry"
)

// cronKV answers a cron claim's Creates with the errors given in turn
// (then ErrKeyExists) and its Get with the value stored.
type cronKV struct {
	jetstream.KeyValue
	answers []error
	creates []string // the values created
	stored  []byte   // what Get finds; nil: Get fails
	gets    int
}

func (k *cronKV) Create(_ context.Context, key string, value []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	k.creates = append(k.creates, key+"="+string(value))
	if len(k.answers) == 0 {
		return 0, jetstream.ErrKeyExists
	}
	err := k.answers[0]
	k.answers = k.answers[1:]
	return 1, err
}

type cronEntry struct {
	jetstream.KeyValueEntry
	v []byte
}

func (e cronEntry) Value() []byte { return e.v }

func (k *cronKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	k.gets++
	if k.stored == nil {
		return nil, jetstream.ErrKeyNotFound
	}
	return cronEntry{v: k.stored}, nil
}

// TestClaimCron: a cron claim is won when its create is stored; lost when
// the key exists; after a transient failure (no JetStream answer) and a
// retry that finds the key, won if the key holds this claim's own token
// (the first create was stored, its answer lost), else lost; a claim that
// fails otherwise is lost, with a warning while the engine runs and none
// once it stops. Without a cluster every time is run. Kills
// cluster_cron.go:66 ×2, :77, :82 ×2 (the stored token compared, its
// lookup's error), :87 (`ctx.Err() == nil` negated: no retry) and :91
// (each negated).
func TestClaimCron(t *testing.T) {
	logs := newClusterLogs()
	cfg := DefaultConfig()
	cfg.DataDir = DataDirMemory
	e, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cancel)
	m := &cronModule{e: e}
	mt := &moduleTrigger[*cronConfig]{t: &registry.Trigger{ID: "tick", FunctionID: "cron::fn"}, cfg: &cronConfig{key: "k1"}}
	at := time.Unix(1700000000, 0)
	claim := func(kv jetstream.KeyValue) bool {
		t.Helper()
		e.cluster = &clusterNode{name: "self", cron: kv}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return m.claimCron(ctx, mt, at)
	}

	e.cluster = nil
	if !m.claimCron(context.Background(), mt, at) {
		t.Fatal("without a cluster a time is not claimed")
	}
	e.cluster = &clusterNode{name: "self"}
	if !m.claimCron(context.Background(), mt, at) {
		t.Fatal("without the cron bucket a time is not claimed")
	}
	kv := &cronKV{answers: []error{nil}}
	if !claim(kv) || len(kv.creates) != 1 || !strings.HasPrefix(kv.creates[0], "c.k1.1700000000=self ") {
		t.Fatalf("a stored claim: lost, or created %v", kv.creates)
	}
	if kv := (&cronKV{}); claim(kv) || kv.gets != 0 {
		t.Fatalf("a time claimed already: won, or its key read (%d gets)", kv.gets)
	}
	// The first create stored after all, its answer lost: the retry finds it.
	first := &storedFirst{&cronKV{answers: []error{nats.ErrNoResponders}}}
	if !claim(first) || len(first.creates) != 2 || first.gets != 1 || first.creates[0] != first.creates[1] {
		t.Fatalf("a claim stored whose answer was lost: lost (creates %v, %d gets)", first.creates, first.gets)
	}
	other := &cronKV{answers: []error{jetstream.ErrNoStreamResponse}, stored: []byte("node-b 1")}
	if claim(other) || len(other.creates) != 2 || other.gets != 1 {
		t.Fatalf("a time another node claimed during the retry: won (creates %v, %d gets)", other.creates, other.gets)
	}
	unreadable := &cronKV{answers: []error{nats.ErrNoResponders}}
	if claim(unreadable) || unreadable.gets != 1 {
		t.Fatalf("a claim whose key cannot be read after the retry: won (%d gets)", unreadable.gets)
	}

	const skipped = "cron run skipped: its claim was not stored"
	if claim(&cronKV{answers: []error{errors.New("boom")}}) {
		t.Fatal("a failed claim won")
	}
	logs.waitFor(t, time.Second, 1, skipped, "trigger_id=tick", "err=boom")
	e.cancel()
	if claim(&cronKV{answers: []error{errors.New("boom")}}) || logs.count(skipped) != 1 {
		t.Fatalf("a failed claim while the engine stops: won, or logged (%d lines)", logs.count(skipped))
	}
}

// storedFirst is a cronKV whose Get finds the value of the first create
// (stored although its answer was lost).
type storedFirst struct{ *cronKV }

func (s *storedFirst) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	s.gets++
	if len(s.creates) == 0 {
		return nil, jetstream.ErrKeyNotFound
	}
	_, v, _ := strings.Cut(s.creates[0], "=")
	return cronEntry{v: []byte(v)}, nil
}

// TestCronBucketClaimsExpire: the claims bucket has a TTL of at least a
// minute (claims must outlast the clock skew between nodes, and must
// expire: there is one key per schedule and time). Kills
// cluster_cron.go:32 (`15 * time.Minute` → `/`: a TTL of 0, claims kept
// for ever).
func TestCronBucketClaimsExpire(t *testing.T) {
	e, _ := startClusterLogged(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.cluster.cron.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != cronClaimTTL || st.TTL() < time.Minute {
		t.Fatalf("the cron claims bucket's TTL is %s (cronClaimTTL %s), want at least a minute", st.TTL(), cronClaimTTL)
	}
}
