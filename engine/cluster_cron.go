package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsnode"
)

// Cron across nodes. Every node holding a cron binding runs its schedule;
// at each scheduled time the nodes race to create the key
// c.<schedule>.<unix seconds> in the KV bucket sluice_cron (a create fails
// if the key exists), and only the node whose create succeeded calls the
// handler. JetStream orders the creates, so each scheduled time runs once
// in the cluster however many nodes hold the binding, and keeps running
// while any of them lives. Keys expire after cronClaimTTL.
//
// Bindings are the same schedule when they have the same namespace,
// function, expression, timezone and condition: SDKs give each worker's
// binding a fresh id, so the binding id cannot tell.
const (
	cronBucket = "sluice_cron"
	// cronClaimTTL must outlast the clock skew between nodes: a node
	// whose clock is behind by more would claim a time again.
	cronClaimTTL = 15 * time.Minute
	// cronClaimTimeout bounds a claim (JetStream electing a leader).
	cronClaimTimeout = 5 * time.Second
)

var cronClaimSeq atomic.Uint64

func (e *Engine) openCronBucket(ctx context.Context) error {
	kv, err := natsnode.KeyValue(ctx, e.cluster.node.JS, jetstream.KeyValueConfig{
		Bucket: cronBucket, History: 1, Storage: jetstream.FileStorage, Replicas: e.cluster.node.Replicas,
		TTL: cronClaimTTL, Description: "sluice cron runs claimed, one key per schedule and time",
	})
	if err != nil {
		return err
	}
	e.cluster.cron = kv
	return nil
}

// cronScheduleKey identifies a schedule across nodes (see above).
func cronScheduleKey(ns, fn string, c *cronConfig) string {
	h := sha256.New()
	for _, s := range []string{nsOrDefault(ns), fn, c.Expression, c.Timezone, c.ConditionFunctionID} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// claimCron reports whether this node runs the binding's time at. Without
// a cluster it always does. A claim JetStream could not store (no
// majority) skips the run: at most once, never twice.
func (m *cronModule) claimCron(ctx context.Context, mt *moduleTrigger[*cronConfig], at time.Time) bool {
	c := m.e.cluster
	if c == nil || c.cron == nil {
		return true
	}
	key := "c." + mt.cfg.key + "." + strconv.FormatInt(at.Unix(), 10)
	token := []byte(c.name + " " + strconv.FormatUint(cronClaimSeq.Add(1), 36))
	ctx, cancel := context.WithTimeout(ctx, cronClaimTimeout)
	defer cancel()
	retried := false
	for {
		_, err := c.cron.Create(ctx, key, token)
		switch {
		case err == nil:
			return true
		case errors.Is(err, jetstream.ErrKeyExists):
			if retried {
				// An earlier attempt may have been stored and its answer lost.
				if en, gerr := c.cron.Get(ctx, key); gerr == nil && string(en.Value()) == string(token) {
					return true
				}
			}
			return false
		case ctx.Err() == nil && natsnode.Transient(err) && natsnode.Backoff(ctx):
			retried = true
			continue
		}
		if m.e.ctx.Err() == nil {
			m.e.log.Warn("cron run skipped: its claim was not stored", "trigger_id", mt.t.ID, "function_id", mt.t.FunctionID,
				"scheduled_time", at.Format(time.RFC3339), "err", err)
		}
		return false
	}
}
