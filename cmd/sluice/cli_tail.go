package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const defaultConsoleURL = "http://127.0.0.1:3113"

// feedEvent is one line of the engine's invocation feed (engine.FeedEvent).
type feedEvent struct {
	Time       time.Time `json:"time"`
	FunctionID string    `json:"function_id"`
	Namespace  string    `json:"namespace"`
	Caller     string    `json:"caller"`
	CallerName string    `json:"caller_name"`
	DurationMS float64   `json:"duration_ms"`
	Outcome    string    `json:"outcome"`
	ErrorCode  string    `json:"error_code"`
}

// tail follows the admin listener's /api/invocations server-sent events.
func (cc *clientCmd) tail(args []string) error {
	var consoleURL, function string
	var count int
	cc.fs.StringVar(&consoleURL, "console-url", envOr(cc.getenv, "SLUICE_CONSOLE_URL", defaultConsoleURL), "the engine's admin listener (env SLUICE_CONSOLE_URL)")
	cc.fs.StringVar(&function, "function", "", "only this function id (a trailing * matches a prefix)")
	cc.fs.IntVar(&count, "count", 0, "exit after this many invocations (0: follow until interrupted)")
	cc.fs.Usage = cc.usage("tail [--function ID] [--count N] [--console-url URL]",
		"Follow invocations as they finish: time, outcome, duration, function, caller.\n"+
			"Reads the console listener (--console-addr of sluice serve); --timeout bounds connecting.")
	pos, err := cc.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("tail takes no arguments (use --function ID)")
	}
	u, err := url.Parse(strings.TrimSuffix(consoleURL, "/") + "/api/invocations")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return usageErr("--console-url %q: want http://host:port", consoleURL)
	}
	if function != "" {
		u.RawQuery = url.Values{"function": {function}}.Encode()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	req.Header.Set("Accept", "text/event-stream")
	if cc.token != "" {
		req.Header.Set("Authorization", "Bearer "+cc.token)
	}
	// --timeout bounds the wait for the response headers, not the stream.
	timer := time.AfterFunc(cc.timeout, cancel)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("console %s: %w", consoleURL, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.NewDecoder(res.Body).Decode(&body)
		if body.Error.Message == "" {
			body.Error.Message = res.Status
		}
		return fmt.Errorf("console %s: %s (%s)", consoleURL, body.Error.Message, res.Status)
	}
	timer.Stop()
	// On stderr, so that stdout holds only invocations: from here on
	// every invocation that finishes is reported.
	fmt.Fprintf(cc.stderr, "following invocations on %s (Ctrl-C to stop)\n", consoleURL)
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var event string
	seen := 0
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event = v
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		switch event {
		case "dropped":
			var d struct{ Dropped uint64 }
			_ = json.Unmarshal([]byte(data), &d)
			fmt.Fprintf(cc.stderr, "sluice tail: %d invocations not shown so far (this client fell behind)\n", d.Dropped)
		case "invocation":
			if cc.json {
				fmt.Fprintln(cc.stdout, data)
			} else {
				var ev feedEvent
				if err := json.Unmarshal([]byte(data), &ev); err != nil {
					continue
				}
				fmt.Fprintln(cc.stdout, formatFeedEvent(ev))
			}
			seen++
			if count > 0 && seen >= count {
				return nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("console %s: %w", consoleURL, err)
	}
	return fmt.Errorf("console %s: the engine closed the stream", consoleURL)
}

// formatFeedEvent is one human-readable line:
//
//	12:04:05.123  ok        1.84ms  orders::create  ← billing (3f2a…)
func formatFeedEvent(ev feedEvent) string {
	outcome := ev.Outcome
	if ev.ErrorCode != "" {
		outcome += " " + ev.ErrorCode
	}
	dur := "-"
	if ev.Outcome != "void" {
		dur = fmt.Sprintf("%.2fms", ev.DurationMS)
	}
	caller := "engine"
	switch {
	case ev.CallerName != "":
		caller = ev.CallerName
	case ev.Caller != "":
		caller = ev.Caller
	}
	fn := ev.FunctionID
	if ev.Namespace != "" {
		fn += " [" + ev.Namespace + "]"
	}
	return fmt.Sprintf("%s  %-8s %10s  %s  ← %s", ev.Time.Local().Format("15:04:05.000"), outcome, dur, fn, caller)
}
