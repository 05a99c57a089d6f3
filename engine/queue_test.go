package engine

import (
	"strings"
	"testing"
	"time"
)

func TestQueueRetryBackoff(t *testing.T) {
	for _, tc := range []struct {
		base    int64
		attempt int
		want    time.Duration
	}{
		{1000, 1, time.Second}, {1000, 2, 2 * time.Second}, {1000, 3, 4 * time.Second},
		{20, 4, 160 * time.Millisecond}, {0, 5, 0}, {1000, 200, 24 * time.Hour},
	} {
		if got := retryBackoff(tc.base, tc.attempt); got != tc.want {
			t.Errorf("retryBackoff(%d, %d) = %v, want %v", tc.base, tc.attempt, got, tc.want)
		}
	}
}

func TestQueueGroupOf(t *testing.T) {
	for _, tc := range []struct {
		data, want string
		ok         bool
	}{
		{`{"acct":"a-1"}`, "a-1", true},
		{`{"acct":42}`, "42", true},
		{`{"acct":null}`, "", false},
		{`{"other":1}`, "", false},
		{`[1,2]`, "", false},
		{`"s"`, "", false},
	} {
		got, ok := groupOf([]byte(tc.data), "acct")
		if got != tc.want || ok != tc.ok {
			t.Errorf("groupOf(%s) = %q %v, want %q %v", tc.data, got, ok, tc.want, tc.ok)
		}
	}
}

func TestQueueConfigValidate(t *testing.T) {
	ok := DefaultQueueConfig()
	if err := ok.Validate("q"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mut  func(*QueueConfig)
		want string
	}{
		{func(q *QueueConfig) { q.Type = "lifo" }, "invalid type"},
		{func(q *QueueConfig) { q.Type = "fifo" }, "message_group_field"},
		{func(q *QueueConfig) { q.Concurrency = 0 }, "concurrency"},
		{func(q *QueueConfig) { q.MaxRetries = 0 }, "max_retries"},
		{func(q *QueueConfig) { q.BackoffMS = -1 }, "negative"},
		{func(q *QueueConfig) { q.VisibilityTimeoutMS = 0 }, "visibility_timeout_ms"},
	} {
		q := DefaultQueueConfig()
		tc.mut(&q)
		if err := q.Validate("q"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want an error about %s", err, tc.want)
		}
	}
}
