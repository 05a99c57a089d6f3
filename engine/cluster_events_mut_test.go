package engine

import (
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// TestEventsLostCountedAndLogged: an event sent to the other nodes
// is not counted lost nor logged; one that cannot be sent (here: its data
// is not JSON, so it cannot be encoded) is counted, and logged at the
// first loss and every thousandth. Kills cluster_events.go:38 (`err != nil`
// negated: every sent event counted and logged as lost) and :39 ×3 (`n ==
// 1` negated, `n%1000` → `n*1000`, `== 0` negated: the log at the first, or
// the thousandth, loss).
func TestEventsLostCountedAndLogged(t *testing.T) {
	e, logs := startClusterLogged(t)
	const lost = "cluster: event not sent to the other nodes"
	e.publishEvent(clusterEvent{Kind: "state", Scope: "s", Key: "k", Data: jsontext.Value(`{"n":1}`)})
	if n, l := e.cluster.eventsLost.Load(), logs.count(lost); n != 0 || l != 0 {
		t.Fatalf("an event sent: %d lost, %d log lines; want 0 and 0", n, l)
	}
	bad := clusterEvent{Kind: "stream", Scope: "s", Key: "k", Data: jsontext.Value(`{"n":`)}
	e.publishEvent(bad)
	if n, l := e.cluster.eventsLost.Load(), logs.count(lost, "kind=stream", "lost_total=1"); n != 1 || l != 1 {
		t.Fatalf("a first event lost: %d lost, %d log lines of it; want 1 and 1", n, l)
	}
	for range 998 {
		e.publishEvent(bad)
	}
	if n, l := e.cluster.eventsLost.Load(), logs.count(lost); n != 999 || l != 1 {
		t.Fatalf("999 events lost: counted %d, %d log lines; want 999 and 1", n, l)
	}
	e.publishEvent(bad)
	if n, l := e.cluster.eventsLost.Load(), logs.count(lost, "lost_total=1000"); n != 1000 || l != 1 || logs.count(lost) != 2 {
		t.Fatalf("1000 events lost: counted %d, %d log lines at 1000, %d in all; want 1000, 1, 2", n, l, logs.count(lost))
	}
}
