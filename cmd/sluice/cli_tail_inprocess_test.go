package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeConsole serves /api/invocations as the engine's admin listener does
// (server-sent events), after checking the request; events are written as
// given, then the stream ends.
func fakeConsole(t *testing.T, events ...string) (url string, got chan *http.Request) {
	t.Helper()
	got = make(chan *http.Request, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		switch {
		case r.URL.Path != "/api/invocations":
			http.NotFound(w, r)
			return
		case r.Header.Get("Authorization") != "Bearer console-token-0123":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":"UNAUTHORIZED","message":"a console token is required"}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range events {
			fmt.Fprint(w, ev)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, got
}

const (
	feedOK  = "event: invocation\ndata: {\"time\":\"2026-01-02T03:04:05Z\",\"function_id\":\"orders::get\",\"caller_name\":\"billing\",\"duration_ms\":1.5,\"outcome\":\"ok\"}\n\n"
	feedErr = "event: invocation\ndata: {\"time\":\"2026-01-02T03:04:06Z\",\"function_id\":\"orders::put\",\"outcome\":\"error\",\"error_code\":\"bad_input\",\"duration_ms\":2}\n\n"
	feedGap = "event: dropped\ndata: {\"dropped\":3}\n\n"
)

// TestCLITail: sluice tail prints each finished invocation of the feed
// (one line, or its JSON with --json), reports dropped events on stderr,
// stops after --count, passes --function and the token on, and says why
// when the console refuses it or the stream ends.
func TestCLITail(t *testing.T) {
	tok := func(name string) string {
		if name == "SLUICE_TOKEN" {
			return "console-token-0123"
		}
		return ""
	}
	url, got := fakeConsole(t, ": hello\n\n", feedOK, feedGap, "event: ping\ndata: {}\n\n", "event: invocation\ndata: not json\n\n", feedErr, feedOK)

	var out, errb strings.Builder
	err := run(t.Context(), []string{"tail", "--console-url=" + url + "/", "--count=2", "--function=orders::*"}, tok, &out, &errb)
	if err != nil {
		t.Fatalf("tail: %v\n%s", err, errb.String())
	}
	r := <-got
	if r.URL.Query().Get("function") != "orders::*" || r.Header.Get("Accept") != "text/event-stream" {
		t.Errorf("request %s, Accept %q", r.URL, r.Header.Get("Accept"))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "orders::get") || !strings.Contains(lines[0], "← billing") ||
		!strings.Contains(lines[1], "error bad_input") || !strings.Contains(lines[1], "2.00ms") {
		t.Errorf("tail --count=2 printed:\n%s", out.String())
	}
	if !strings.Contains(errb.String(), "following invocations on "+url) || !strings.Contains(errb.String(), "3 invocations not shown so far") {
		t.Errorf("tail's stderr:\n%s", errb.String())
	}

	out.Reset()
	errb.Reset()
	err = run(t.Context(), []string{"tail", "--console-url=" + url, "--json"}, tok, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "the engine closed the stream") {
		t.Errorf("tail when the stream ends: %v", err)
	}
	if n := strings.Count(out.String(), `"function_id"`); n != 3 || !strings.Contains(out.String(), "not json") {
		t.Errorf("tail --json printed:\n%s", out.String())
	}

	for _, c := range []struct {
		args   []string
		getenv func(string) string
		code   int
		msg    string
	}{
		{[]string{"tail", "--console-url=" + url}, func(string) string { return "" }, 1, "a console token is required (401 Unauthorized)"},
		{[]string{"tail", "--console-url=" + url + "/elsewhere", "--token=console-token-0123"}, tok, 1, "404 Not Found"},
		{[]string{"tail", "--console-url=ftp://x"}, tok, 2, "want http://host:port"},
		{[]string{"tail", "extra", "--console-url=" + url}, tok, 2, "tail takes no arguments"},
		{[]string{"tail", "--console-url=http://127.0.0.1:1"}, tok, 1, "console http://127.0.0.1:1"},
	} {
		var out, errb strings.Builder
		err := run(t.Context(), c.args, c.getenv, &out, &errb)
		var ee *exitError
		if err == nil || !strings.Contains(err.Error(), c.msg) || (c.code == 2 && (!asExit(err, &ee) || ee.code != 2)) {
			t.Errorf("%q: %v, want %q (exit %d)", c.args, err, c.msg, c.code)
		}
	}
}

func asExit(err error, ee **exitError) bool {
	e, ok := err.(*exitError)
	*ee = e
	return ok
}
