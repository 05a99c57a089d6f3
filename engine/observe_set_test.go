package engine

import (
	"slices"
	"strings"
	"testing"
)

// Filters that read only input, caller and metadata are matched as the
// invocation starts (observe.Set); each call activates exactly the
// observers whose filters accept it and whose `on` fits the result:
// number thresholds sharing a path, a conjunction over caller and
// metadata, a string prefix, a filter for the general evaluator ($in).
func TestObserveEarlyMatchedFilters(t *testing.T) {
	e := startEngine(t)
	src := obsDial(t, e)
	src.send(`{"type":"registerfunction","id":"p::s"}`)
	src.noFrame("observeresult")
	w := obsDial(t, e)
	for _, o := range []struct{ id, source string }{
		{"a", `"filters":{"input.n":{"$gt":10}}`},
		{"b", `"filters":{"input.n":{"$gt":20}}`},
		{"c", `"on":"error","filters":{"caller.worker_name":{"$eq":"caller"},"metadata.tenant":{"$eq":"t1"}}`},
		{"d", `"filters":{"input.tag":{"$prefix":"x"},"input.n":{"$lte":5}}`},
		{"g", `"filters":{"input.n":{"$in":[7]}}`},
	} {
		w.send(`{"type":"registerfunction","id":"p::` + o.id + `"}`)
		w.send(`{"type":"observe","id":"` + o.id + `","source":{"function_id":"p::s",` + o.source + `},"target":{"function_id":"p::` + o.id + `"}}`)
		if r := w.await("observeresult", withID(o.id)); r["state"] != "active" {
			t.Fatalf("%s: %v", o.id, r)
		}
	}
	caller := obsDial(t, e)
	caller.send(`{"type":"invokefunction","invocation_id":"reg","function_id":"engine::workers::register","data":{"runtime":"test","name":"caller"}}`)
	caller.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == "reg" })
	for _, c := range []struct {
		id, data, meta string
		fail           bool
		want           []string
	}{
		{"none", `{"n":5,"tag":"y"}`, `{}`, false, nil},
		{"a", `{"n":15}`, `{}`, false, []string{"a"}},
		{"ab", `{"n":25,"tag":"x"}`, `{"tenant":"t1"}`, false, []string{"a", "b"}},
		{"d", `{"n":5,"tag":"xx"}`, `{}`, false, []string{"d"}},
		{"g", `{"n":7}`, `{}`, false, []string{"g"}},
		{"c", `{"n":25}`, `{"tenant":"t1"}`, true, []string{"c"}},
		{"failnone", `{"n":1}`, `{"tenant":"t2"}`, true, nil},
		{"notobject", `[1]`, `null`, false, nil},
	} {
		caller.send(`{"type":"invokefunction","invocation_id":"` + c.id + `","function_id":"p::s","data":` + c.data + `,"metadata":` + c.meta + `}`)
		inv := src.await("invokefunction", invokeOf("p::s"))
		if c.fail {
			src.send(`{"type":"invocationresult","invocation_id":"` + inv["invocation_id"].(string) + `","function_id":"p::s","error":{"code":"E","message":"x"}}`)
		} else {
			src.answer(inv, `{}`)
		}
		caller.await("invocationresult", func(m map[string]any) bool { return m["invocation_id"] == c.id })
		if len(c.want) == 0 {
			continue
		}
		var got []string
		for fn := range w.awaitInvokes(len(c.want)) {
			got = append(got, strings.TrimPrefix(fn, "p::"))
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Fatalf("call %s activated %v, want %v", c.id, got, c.want)
		}
	}
	w.noFrame("invokefunction")
}
