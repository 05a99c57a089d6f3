package engine

import (
	"strconv"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/internal/wsconn"
	"github.com/sluicehq/sluice/wire"
)

// Calls and answers batched per read burst (codec 2, cluster_codec.go).
// A worker connection's reader defers its socket writes while it has
// whole frames buffered and flushes before its next blocking read
// (wsconn.Batch); calls to another node made during such a burst join it
// the same way: the calls to one function subject are collected and sent
// as one NATS message at the flush, and on the serving node the answers
// its worker's reader produces in one burst for one calling node go back
// as one message. Each NATS message costs both embedded servers a parse
// and nats.go a copy and a goroutine hand-off: at 128 calls in flight,
// 11-12 calls or answers to a message took the nodes' CPU per cross-node
// call from about 37 to 29 µs.
//
// Only what one burst produced is batched (at most maxBurstCalls calls and
// maxBurstBytes bytes, half the server's max_payload if less): a batch
// goes to one node of the queue group, so calls arriving over time still
// spread over the nodes serving the function. A lone call is sent as
// before.
const (
	maxBurstCalls = 64
	maxBurstBytes = 64 << 10
)

// callBurst is the calls to one subject collected during one burst.
type callBurst struct {
	r      *clusterRouter
	subj   string
	buf    []byte // codecCalls and the entries
	tokens []string
}

// callBurstIn is the burst collecting calls to subj in wb, or a new one
// when wb defers its writes; nil when the call is to go out at once (the
// reader has nothing more buffered and collected nothing for subj).
func (r *clusterRouter) callBurstIn(wb *wsconn.Batch, subj string) *callBurst {
	for _, f := range wb.Deferred() {
		if cb, ok := f.(*callBurst); ok && cb.r == r && cb.subj == subj {
			return cb
		}
	}
	if !wb.Deferring() {
		return nil
	}
	cb := &callBurst{r: r, subj: subj}
	wb.Defer(cb)
	return cb
}

// add appends the call token (its request envelope env) to the burst,
// sending the burst first when it is full.
func (cb *callBurst) add(token string, env []byte) {
	if len(cb.tokens) >= maxBurstCalls || len(cb.tokens) > 0 && len(cb.buf)+len(env) > cb.r.burstBytes {
		cb.FlushBatch()
	}
	if cb.buf == nil {
		cb.buf = append(getBuf(len(env)+64), codecCalls)
	}
	cb.buf = appendBatchEntry(cb.buf, token, env)
	cb.tokens = append(cb.tokens, token)
}

// FlushBatch sends the calls collected (wsconn.Flusher).
func (cb *callBurst) FlushBatch() {
	r, tokens := cb.r, cb.tokens
	if len(tokens) == 0 {
		return
	}
	var err error
	if len(tokens) == 1 {
		// Alone: as an unbatched call, answered to its own reply subject.
		_ = batchEntries(cb.buf, codecCalls, func(_, env []byte) { err = r.nc.PublishRequest(cb.subj, r.inbox+tokens[0], env) })
		cb.tokens = tokens[:0]
	} else {
		r.mu.Lock()
		r.seq++
		bt := "_" + strconv.FormatUint(r.seq, 36) // no call token starts with "_"
		n := 0
		for _, t := range tokens {
			if c := r.calls[t]; c != nil {
				c.batch = bt
				n++
			}
		}
		if n > 0 {
			if r.sent == nil {
				r.sent = map[string][]string{}
			}
			r.sent[bt] = tokens
		}
		r.mu.Unlock()
		err = r.nc.PublishRequest(cb.subj, r.inbox+bt, cb.buf)
		cb.tokens = nil // r.sent holds them
	}
	putBuf(cb.buf)
	cb.buf = nil
	if err != nil {
		for _, t := range tokens {
			r.finish(t, invocation.Result{Err: &wire.ErrorBody{Code: wire.CodeInvocationStopped, Message: "Invocation stopped: " + err.Error()}})
		}
	}
}

// batchNotFound ends the calls of the batch whose reply token is bt: NATS
// found no node serving their function.
func (r *clusterRouter) batchNotFound(bt string) {
	r.mu.Lock()
	tokens := r.sent[bt]
	delete(r.sent, bt)
	r.mu.Unlock()
	for _, t := range tokens {
		r.mu.Lock()
		c := r.calls[t]
		r.mu.Unlock()
		if c != nil {
			r.finish(t, invocation.Result{Err: wire.ErrFunctionNotFoundIn(c.fn, c.ns, nil)})
		}
	}
}

// answerBurst is the answers to one calling node (its inbox prefix)
// collected during one burst of the serving worker's reader.
type answerBurst struct {
	r      *clusterRouter
	prefix string
	buf    []byte // codecAnswers and the entries
	first  string // the token of the first entry
	n      int
}

// answer sends the answer of the batched call token to the node whose
// inbox prefix is prefix: with the other answers of res's burst when its
// producer defers writes, else at once.
func (r *clusterRouter) answer(prefix, token string, res invocation.Result) {
	b, err := encodeReply(&remoteReply{Value: res.Value, Err: res.Err, Traceparent: res.Traceparent, Baggage: res.Baggage}, true)
	if err != nil {
		b, _ = encodeReply(&remoteReply{Err: &wire.ErrorBody{Code: wire.CodeInvalidArguments, Message: "cluster: result not sent: " + err.Error()}}, true)
	}
	defer putBuf(b)
	if wb := batchOf(res.Batch); wb != nil {
		if ab := r.answerBurstIn(wb, prefix); ab != nil {
			ab.add(token, b)
			return
		}
	}
	_ = r.nc.Publish(prefix+token, b)
}

func (r *clusterRouter) answerBurstIn(wb *wsconn.Batch, prefix string) *answerBurst {
	for _, f := range wb.Deferred() {
		if ab, ok := f.(*answerBurst); ok && ab.r == r && ab.prefix == prefix {
			return ab
		}
	}
	if !wb.Deferring() {
		return nil
	}
	ab := &answerBurst{r: r, prefix: prefix}
	wb.Defer(ab)
	return ab
}

func (ab *answerBurst) add(token string, env []byte) {
	if ab.n >= maxBurstCalls || ab.n > 0 && len(ab.buf)+len(env) > ab.r.burstBytes {
		ab.FlushBatch()
	}
	if ab.buf == nil {
		ab.buf = append(getBuf(len(env)+64), codecAnswers)
	}
	if ab.n == 0 {
		ab.first = token
	}
	ab.buf = appendBatchEntry(ab.buf, token, env)
	ab.n++
}

// FlushBatch sends the answers collected (wsconn.Flusher).
func (ab *answerBurst) FlushBatch() {
	switch ab.n {
	case 0:
		return
	case 1:
		_ = batchEntries(ab.buf, codecAnswers, func(_, env []byte) { _ = ab.r.nc.Publish(ab.prefix+ab.first, env) })
	default:
		_ = ab.r.nc.Publish(ab.prefix+"_", ab.buf)
	}
	putBuf(ab.buf)
	ab.buf, ab.n, ab.first = nil, 0, ""
}
