package engine

import (
	"strings"
	"testing"

	"github.com/go-json-experiment/json"

	"github.com/sluicehq/sluice/wire"
)

// A cron binding's timezone: an unknown zone is refused naming it, a known
// one schedules in that zone (the event's times carry its offset).
// Mutations: cron.go:53 (`c.Timezone != ""` negated: the zone was never
// loaded, times came in UTC) and :54 (the LoadLocation error test negated:
// a valid zone refused, an unknown one accepted with no location, which
// panicked the job's goroutine).
func TestCronTimezone(t *testing.T) {
	e := startEngine(t)
	h := dialRaw(t, e)
	h.sendJSON(`{"type":"registerfunction","id":"tz::run"}`)
	h.sendJSON(`{"type":"registertrigger","id":"cr-badtz","trigger_type":"cron","function_id":"tz::run","config":{"expression":"* * * * * *","timezone":"No/Such_Zone"}}`)
	if m := h.expect(wire.TypeTriggerRegistrationResult); m.ID != "cr-badtz" || m.Error == nil || !strings.Contains(m.Error.Message, `cron timezone "No/Such_Zone"`) {
		t.Fatalf("unknown timezone: %+v", m)
	}
	// Asia/Kolkata is +05:30 all year (no daylight saving time).
	h.sendJSON(`{"type":"registertrigger","id":"cr-tz","trigger_type":"cron","function_id":"tz::run","config":{"expression":"* * * * * *","timezone":"Asia/Kolkata"}}`)
	inv := h.await(func(m wire.Message) bool {
		if m.Type == wire.TypeTriggerRegistrationResult {
			t.Fatalf("Asia/Kolkata refused: %+v", m)
		}
		return m.Type == wire.TypeInvokeFunction && m.FunctionID == "tz::run"
	})
	var ev struct {
		JobID         string `json:"job_id"`
		ScheduledTime string `json:"scheduled_time"`
		ActualTime    string `json:"actual_time"`
	}
	if err := json.Unmarshal(inv.Data, &ev, lenient); err != nil || ev.JobID != "cr-tz" ||
		!strings.HasSuffix(ev.ScheduledTime, "+05:30") || !strings.HasSuffix(ev.ActualTime, "+05:30") {
		t.Fatalf("cron event in Asia/Kolkata: %s (%v)", inv.Data, err)
	}
}
