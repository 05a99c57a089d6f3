package main

import (
	"strings"
	"testing"
	"time"
)

func TestFormatFeedEvent(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.Local)
	for _, tc := range []struct {
		ev   feedEvent
		want []string
	}{
		{feedEvent{Time: at, FunctionID: "orders::get", CallerName: "billing", Caller: "w1", DurationMS: 1.234, Outcome: "ok"}, []string{"03:04:05.006", "ok", "1.23ms", "orders::get", "← billing"}},
		{feedEvent{Time: at, FunctionID: "f", Caller: "w1", DurationMS: 2, Outcome: "error", ErrorCode: "NOT_FOUND"}, []string{"error NOT_FOUND", "2.00ms", "← w1"}},
		{feedEvent{Time: at, FunctionID: "f", Outcome: "void"}, []string{"void", " - ", "← engine"}},
		{feedEvent{Time: at, FunctionID: "f", Namespace: "orders", Outcome: "ok"}, []string{"f [orders]"}},
	} {
		got := formatFeedEvent(tc.ev)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%q lacks %q", got, w)
			}
		}
	}
}
