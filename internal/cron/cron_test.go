package cron

import (
	"strings"
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	base := time.Date(2026, 3, 14, 10, 20, 30, 500, time.UTC) // a Saturday
	for _, c := range []struct{ expr, want string }{
		{"* * * * * *", "2026-03-14T10:20:31Z"},
		{"*/15 * * * * *", "2026-03-14T10:20:45Z"},
		{"0 * * * * *", "2026-03-14T10:21:00Z"},
		{"0 0 * * * *", "2026-03-14T11:00:00Z"},
		{"0 30 9 * * *", "2026-03-15T09:30:00Z"},
		{"0 0 0 1 * *", "2026-04-01T00:00:00Z"},
		{"0 0 12 * * MON", "2026-03-16T12:00:00Z"},
		{"0 0 12 * * 2", "2026-03-16T12:00:00Z"},   // 2 = Monday (Sunday = 1)
		{"0 0 12 ? * SUN", "2026-03-15T12:00:00Z"}, // ? in a day field
		{"0 0 0 29 FEB *", "2028-02-29T00:00:00Z"},
		{"0 0 0 1 1 * 2030", "2030-01-01T00:00:00Z"},
		{"0 0 0 1 1 * 2027-2030/2", "2027-01-01T00:00:00Z"},
		{"5,10 20-22/2 10 * * *", "2026-03-14T10:22:05Z"},
		{"@hourly", "2026-03-14T11:00:00Z"},
		{"0 0 0 13 * FRI", "2026-11-13T00:00:00Z"}, // both day fields must match
	} {
		s, err := Parse(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		got, ok := s.Next(base)
		if !ok || got.Format(time.RFC3339) != c.want {
			t.Errorf("%s: next %v (%v), want %s", c.expr, got.Format(time.RFC3339), ok, c.want)
		}
	}
}

func TestNextNone(t *testing.T) {
	s, err := Parse("0 0 0 30 FEB *")
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := s.Next(time.Now()); ok {
		t.Fatalf("Feb 30 scheduled at %v", n)
	}
	s, _ = Parse("0 0 0 1 1 * 1999")
	if _, ok := s.Next(time.Now()); ok {
		t.Fatal("a past year scheduled")
	}
}

func TestNextTimeZone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	s, _ := Parse("0 0 9 * * *")
	got, _ := s.Next(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC).In(ny))
	if got.UTC().Format(time.RFC3339) != "2026-06-01T13:00:00Z" {
		t.Fatalf("09:00 New York: %v", got.UTC())
	}
	// The DST fall-back hour (01:xx happens twice) does not loop.
	s, _ = Parse("0 30 * * * *")
	from := time.Date(2026, 11, 1, 1, 40, 0, 0, ny)
	got, ok := s.Next(from)
	if !ok || !got.After(from) {
		t.Fatalf("after %v: %v %v", from, got, ok)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{"* * * * *", "want 6 or 7"},
		{"60 * * * * *", "out of range"},
		{"* * 24 * * *", "out of range"},
		{"* * * 0 * *", "out of range"},
		{"* * * * 13 *", "out of range"},
		{"* * * * * 8", "out of range"},
		{"*/0 * * * * *", "step"},
		{"5-1 * * * * *", "backwards"},
		{"x * * * * *", "not a number"},
		{"? * * * * *", "not a number"},
		{"* * * * * * 2100", "out of range"},
	} {
		_, err := Parse(c.expr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.expr, err, c.want)
		}
	}
}
