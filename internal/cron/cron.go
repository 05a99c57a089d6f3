// Package cron parses the cron expressions of the cron trigger type
// (upstream's: seconds first, an optional year last) and computes their
// next run.
//
//	sec min hour day-of-month month day-of-week [year]
//
// Each field takes *, ? (day fields), a value, a range a-b, a list a,b,c
// and steps */n, a/n, a-b/n. Months take JAN-DEC, days of week SUN-SAT or
// 1-7 with Sunday = 1 (as upstream's Rust cron crate). A time must match
// both day fields. Years run 1970-2099. Macros: @yearly, @monthly,
// @weekly, @daily, @hourly.
package cron

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed expression.
type Schedule struct {
	sec, min, hour, dom, mon, dow []bool
	year                          []bool // index year-minYear
}

const minYear, maxYear = 1970, 2099

var macros = map[string]string{
	"@yearly":   "0 0 0 1 1 *",
	"@annually": "0 0 0 1 1 *",
	"@monthly":  "0 0 0 1 * *",
	"@weekly":   "0 0 0 * * 1",
	"@daily":    "0 0 0 * * *",
	"@hourly":   "0 0 * * * *",
}

var monthNames = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
var dayNames = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}

// Parse reads a 6- or 7-field expression or a macro.
func Parse(expr string) (*Schedule, error) {
	e := strings.TrimSpace(expr)
	if m, ok := macros[strings.ToLower(e)]; ok {
		e = m
	}
	f := strings.Fields(e)
	if len(f) != 6 && len(f) != 7 {
		return nil, fmt.Errorf("cron expression %q has %d fields; want 6 or 7: sec min hour day-of-month month day-of-week [year]", expr, len(f))
	}
	if len(f) == 6 {
		f = append(f, "*")
	}
	s := &Schedule{}
	specs := []struct {
		name     string
		lo, hi   int
		names    []string
		nameBase int
		dst      *[]bool
		question bool
	}{
		{"seconds", 0, 59, nil, 0, &s.sec, false},
		{"minutes", 0, 59, nil, 0, &s.min, false},
		{"hours", 0, 23, nil, 0, &s.hour, false},
		{"day-of-month", 1, 31, nil, 0, &s.dom, true},
		{"month", 1, 12, monthNames, 1, &s.mon, false},
		{"day-of-week", 1, 7, dayNames, 1, &s.dow, true},
		{"year", minYear, maxYear, nil, 0, &s.year, false},
	}
	for i, sp := range specs {
		set, err := parseField(f[i], sp.lo, sp.hi, sp.names, sp.nameBase, sp.question)
		if err != nil {
			return nil, fmt.Errorf("cron expression %q: %s field %q: %w", expr, sp.name, f[i], err)
		}
		*sp.dst = set
	}
	return s, nil
}

func parseField(f string, lo, hi int, names []string, nameBase int, question bool) ([]bool, error) {
	set := make([]bool, hi-lo+1)
	val := func(s string) (int, error) {
		for i, n := range names {
			if strings.EqualFold(s, n) {
				return i + nameBase, nil
			}
		}
		v, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", s)
		}
		if v < lo || v > hi {
			return 0, fmt.Errorf("%d is out of range %d-%d", v, lo, hi)
		}
		return v, nil
	}
	for _, part := range strings.Split(f, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("step %q must be a positive number", stepStr)
			}
			step = n
		}
		var a, b int
		switch {
		case rng == "*" || (rng == "?" && question):
			a, b = lo, hi
		case strings.Contains(rng, "-"):
			x, y, _ := strings.Cut(rng, "-")
			var err error
			if a, err = val(x); err != nil {
				return nil, err
			}
			if b, err = val(y); err != nil {
				return nil, err
			}
			if a > b {
				return nil, fmt.Errorf("range %s is backwards", rng)
			}
		default:
			v, err := val(rng)
			if err != nil {
				return nil, err
			}
			a, b = v, v
			if hasStep {
				b = hi
			}
		}
		for v := a; v <= b; v += step {
			set[v-lo] = true
		}
	}
	return set, nil
}

// Next returns the first time after t (in t's location) that matches, at
// a whole second; ok false if there is none before 2100.
func (s *Schedule) Next(t time.Time) (time.Time, bool) {
	loc := t.Location()
	t = t.Truncate(time.Second).Add(time.Second)
	for range 200_000 {
		prev := t
		y, mo, d := t.Date()
		h, mi, sec := t.Clock()
		switch {
		case y > maxYear:
			return time.Time{}, false
		case y < minYear || !s.year[y-minYear]:
			t = time.Date(y+1, 1, 1, 0, 0, 0, 0, loc)
		case !s.mon[int(mo)-1]:
			t = time.Date(y, mo+1, 1, 0, 0, 0, 0, loc)
		case !s.dom[d-1] || !s.dow[int(t.Weekday())]:
			t = time.Date(y, mo, d+1, 0, 0, 0, 0, loc)
		case !s.hour[h]:
			t = time.Date(y, mo, d, h+1, 0, 0, 0, loc)
		case !s.min[mi]:
			t = time.Date(y, mo, d, h, mi+1, 0, 0, loc)
		case !s.sec[sec]:
			t = t.Add(time.Second)
		default:
			return t, true
		}
		if !t.After(prev) { // a repeated hour at a DST change
			t = prev.Add(time.Second)
		}
	}
	return time.Time{}, false
}
