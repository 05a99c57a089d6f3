package main

// Client subcommands: they connect to a running engine as a worker (the Go
// SDK) and call its engine::* functions.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice"
)

// exitError carries the process exit status: 1 for an error the engine or
// a function reported (or an unreachable engine), 2 for a usage error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

// clientCommands maps each client subcommand to its implementation.
var clientCommands = map[string]func(*clientCmd, []string) error{
	"functions": (*clientCmd).functions,
	"workers":   (*clientCmd).workers,
	"triggers":  (*clientCmd).triggers,
	"trigger":   (*clientCmd).trigger,
	"queue":     (*clientCmd).queue,
	"tail":      (*clientCmd).tail,
}

// clientCmd is one client subcommand's run: its flags and connection.
type clientCmd struct {
	name    string
	fs      *flag.FlagSet
	url     string
	token   string
	json    bool
	timeout time.Duration
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	tty     bool // stdout is a terminal: pretty output
	getenv  func(string) string

	c *sluice.Client
}

const (
	defaultURL     = "ws://127.0.0.1:49134"
	connectTimeout = 5 * time.Second
)

func newClientCmd(name string, getenv func(string) string, stdout, stderr io.Writer) *clientCmd {
	cc := &clientCmd{name: name, stdout: stdout, stderr: stderr, stdin: os.Stdin, getenv: getenv}
	if f, ok := stdout.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			cc.tty = true
		}
	}
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cc.url, "url", envOr(getenv, "SLUICE_URL", defaultURL), "engine worker URL (env SLUICE_URL)")
	fs.StringVar(&cc.token, "token", getenv("SLUICE_TOKEN"), "auth token when the engine requires one (env SLUICE_TOKEN; prefer the env var: flags show in ps)")
	fs.BoolVar(&cc.json, "json", false, "machine-readable JSON output")
	fs.DurationVar(&cc.timeout, "timeout", 30*time.Second, "bound on connecting and on the call")
	cc.fs = fs
	return cc
}

// parse parses flags anywhere among the arguments and returns the
// positional ones.
func (cc *clientCmd) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := cc.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &exitError{code: 2, err: err}
		}
		args = cc.fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if len(args) > 0 && args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runClient(ctx context.Context, name string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cc := newClientCmd(name, getenv, stdout, stderr)
	err := clientCommands[name](cc, args)
	if cc.c != nil {
		cc.c.Close()
	}
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	var se *sluice.Error
	code := ""
	if errors.As(err, &se) {
		code = se.Code
	}
	if cc.json {
		msg := err.Error()
		if se != nil {
			msg = se.Message
		}
		b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
		fmt.Fprintln(stdout, string(b))
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		err = &exitError{code: 1, err: err}
	}
	return err
}

// connect dials the engine (bounded by --timeout) as a worker named
// sluice-cli.
func (cc *clientCmd) connect(ctx context.Context) error {
	opts := []sluice.Option{
		sluice.WithName("sluice-cli"),
		sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		sluice.WithReconnectBackoff(50*time.Millisecond, 500*time.Millisecond),
	}
	if cc.token != "" {
		opts = append(opts, sluice.WithToken(cc.token))
	}
	// The SDK retries a refused handshake (a wrong token, a draining
	// engine) until its context ends: bound that wait below --timeout.
	cctx, cancel := context.WithTimeout(ctx, min(cc.timeout, connectTimeout))
	defer cancel()
	c, err := sluice.Connect(cctx, cc.url, opts...)
	if err != nil {
		return err
	}
	cc.c = c
	return nil
}

// call connects if needed and calls an engine function.
func (cc *clientCmd) call(fn string, in any) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cc.timeout)
	defer cancel()
	if cc.c == nil {
		if err := cc.connect(ctx); err != nil {
			return nil, err
		}
	}
	return cc.c.Trigger(ctx, fn, in)
}

// printJSON writes v indented on a terminal, compact otherwise.
func (cc *clientCmd) printJSON(raw json.RawMessage) error {
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	var buf bytes.Buffer
	var err error
	if cc.tty {
		err = json.Indent(&buf, raw, "", "  ")
	} else {
		err = json.Compact(&buf, raw)
	}
	if err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, err = cc.stdout.Write(buf.Bytes())
	return err
}

func (cc *clientCmd) table(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(cc.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return x
	case float64:
		return fmt.Sprint(x)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// functions: list, or info ID.
func (cc *clientCmd) functions(args []string) error {
	var internal bool
	cc.fs.BoolVar(&internal, "all", false, "include the engine's own functions")
	cc.fs.Usage = cc.usage("functions [list] | functions info FUNCTION_ID", "List registered functions, or show one with its triggers.")
	pos, err := cc.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		pos = []string{"list"}
	}
	switch pos[0] {
	case "list":
		if len(pos) > 1 {
			return usageErr("functions list takes no arguments")
		}
		raw, err := cc.call("engine::functions::list", map[string]any{"include_internal": internal})
		if err != nil {
			return err
		}
		var out struct {
			Functions []map[string]any `json:"functions"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return err
		}
		if cc.json {
			return cc.printJSON(mustJSON(out.Functions))
		}
		sort.Slice(out.Functions, func(i, j int) bool {
			return str(out.Functions[i]["function_id"]) < str(out.Functions[j]["function_id"])
		})
		rows := make([][]string, 0, len(out.Functions))
		for _, f := range out.Functions {
			rows = append(rows, []string{str(f["function_id"]), str(f["worker_name"]), str(f["description"])})
		}
		cc.table([]string{"FUNCTION", "WORKER", "DESCRIPTION"}, rows)
		return nil
	case "info":
		if len(pos) != 2 {
			return usageErr("usage: sluice functions info FUNCTION_ID")
		}
		raw, err := cc.call("engine::functions::info", map[string]any{"function_id": pos[1]})
		if err != nil {
			return err
		}
		if cc.json {
			return cc.printJSON(raw)
		}
		var f map[string]any
		if err := json.Unmarshal(raw, &f); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(cc.stdout, 0, 4, 2, ' ', 0)
		for _, k := range []string{"function_id", "worker_name", "description", "request_schema", "response_schema", "metadata"} {
			if v, ok := f[k]; ok {
				fmt.Fprintf(tw, "%s:\t%s\n", k, str(v))
			}
		}
		trs, _ := f["registered_triggers"].([]any)
		fmt.Fprintf(tw, "triggers:\t%d\n", len(trs))
		for _, t := range trs {
			m, _ := t.(map[string]any)
			fmt.Fprintf(tw, "  %s\t%s %s\n", str(m["id"]), str(m["trigger_type"]), str(m["config"]))
		}
		return tw.Flush()
	default:
		return usageErr("functions: unknown action %q (want list or info)", pos[0])
	}
}

func (cc *clientCmd) workers(args []string) error {
	cc.fs.Usage = cc.usage("workers", "List connected workers (this CLI's own connection is left out).")
	pos, err := cc.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("workers takes no arguments")
	}
	raw, err := cc.call("engine::workers::list", map[string]any{})
	if err != nil {
		return err
	}
	var out struct {
		Workers []map[string]any `json:"workers"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	self := cc.c.WorkerID()
	ws := out.Workers[:0]
	for _, w := range out.Workers {
		if w["id"] != self {
			ws = append(ws, w)
		}
	}
	if cc.json {
		return cc.printJSON(mustJSON(ws))
	}
	rows := make([][]string, 0, len(ws))
	for _, w := range ws {
		rows = append(rows, []string{str(w["id"]), str(w["name"]), str(w["runtime"]), str(w["version"]), str(w["status"]),
			str(w["function_count"]), str(w["active_invocations"])})
	}
	cc.table([]string{"ID", "NAME", "RUNTIME", "VERSION", "STATUS", "FUNCTIONS", "ACTIVE"}, rows)
	return nil
}

func (cc *clientCmd) triggers(args []string) error {
	var types, internal bool
	cc.fs.BoolVar(&types, "types", false, "list trigger types instead of registered triggers")
	cc.fs.BoolVar(&internal, "all", false, "include the engine's own")
	cc.fs.Usage = cc.usage("triggers [--types]", "List registered triggers (bindings of a trigger type to a function), or the trigger types.")
	pos, err := cc.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("triggers takes no arguments")
	}
	fn, key := "engine::registered-triggers::list", "registered_triggers"
	if types {
		fn, key = "engine::triggers::list", "triggers"
	}
	raw, err := cc.call(fn, map[string]any{"include_internal": internal})
	if err != nil {
		return err
	}
	var out map[string][]map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	list := out[key]
	if list == nil {
		list = []map[string]any{}
	}
	if cc.json {
		return cc.printJSON(mustJSON(list))
	}
	var rows [][]string
	if types {
		for _, t := range list {
			rows = append(rows, []string{str(t["id"]), str(t["worker_name"]), str(t["description"])})
		}
		cc.table([]string{"TYPE", "WORKER", "DESCRIPTION"}, rows)
		return nil
	}
	for _, t := range list {
		rows = append(rows, []string{str(t["id"]), str(t["trigger_type"]), str(t["function_id"]), str(t["worker_name"]), str(t["config_summary"])})
	}
	cc.table([]string{"ID", "TYPE", "FUNCTION", "WORKER", "CONFIG"}, rows)
	return nil
}

// trigger FUNCTION [JSON | - | k=v ...] [--void | --enqueue QUEUE]
func (cc *clientCmd) trigger(args []string) error {
	var void bool
	var queue string
	cc.fs.BoolVar(&void, "void", false, "fire and forget: no result")
	cc.fs.StringVar(&queue, "enqueue", "", "hand the call to this durable queue; prints the receipt id")
	cc.fs.Usage = cc.usage("trigger FUNCTION [JSON | - | key=value ...]",
		"Call a function and print its result. The input is one JSON value, - to read it from stdin,\n"+
			"or key=value pairs making an object (a value that parses as JSON is taken as JSON, else as a string).")
	pos, err := cc.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr("usage: sluice trigger FUNCTION [JSON | - | key=value ...]")
	}
	if void && queue != "" {
		return usageErr("--void and --enqueue exclude each other")
	}
	fn := pos[0]
	payload, err := cc.payload(pos[1:])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cc.timeout)
	defer cancel()
	if err := cc.connect(ctx); err != nil {
		return err
	}
	switch {
	case void:
		if err := cc.c.TriggerVoid(ctx, fn, payload); err != nil {
			return err
		}
		if cc.json {
			return cc.printJSON(json.RawMessage(`{"sent":true}`))
		}
		return nil
	case queue != "":
		id, err := cc.c.Enqueue(ctx, queue, fn, payload)
		if err != nil {
			return err
		}
		if cc.json {
			return cc.printJSON(mustJSON(map[string]string{"messageReceiptId": id}))
		}
		fmt.Fprintln(cc.stdout, id)
		return nil
	}
	raw, err := cc.c.Trigger(ctx, fn, payload)
	if err != nil {
		return err
	}
	return cc.printJSON(raw)
}

func (cc *clientCmd) payload(args []string) (json.RawMessage, error) {
	switch {
	case len(args) == 0:
		return nil, nil
	case len(args) == 1 && args[0] == "-":
		b, err := io.ReadAll(cc.stdin)
		if err != nil {
			return nil, err
		}
		if !json.Valid(b) {
			return nil, usageErr("stdin is not one JSON value")
		}
		return b, nil
	case len(args) == 1 && !strings.Contains(args[0], "="):
		if !json.Valid([]byte(args[0])) {
			return nil, usageErr("input %q is not JSON (use key=value pairs for an object)", args[0])
		}
		return json.RawMessage(args[0]), nil
	case len(args) == 1 && json.Valid([]byte(args[0])):
		return json.RawMessage(args[0]), nil
	}
	obj := map[string]json.RawMessage{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usageErr("argument %q: want key=value", a)
		}
		if json.Valid([]byte(v)) {
			obj[k] = json.RawMessage(v)
		} else {
			obj[k] = mustJSON(v)
		}
	}
	return mustJSON(obj), nil
}

// queue stats [QUEUE] | dlq QUEUE | redrive QUEUE [MESSAGE_ID]
func (cc *clientCmd) queue(args []string) error {
	var limit int
	cc.fs.IntVar(&limit, "limit", 50, "dlq: most messages to list")
	cc.fs.Usage = cc.usage("queue stats [QUEUE] | queue dlq [QUEUE] | queue redrive QUEUE [MESSAGE_ID]",
		"Durable queues: depth and consumers, dead-lettered jobs, and putting them back.")
	pos, err := cc.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr("usage: sluice queue stats|dlq|redrive ...")
	}
	switch {
	case pos[0] == "stats" && len(pos) == 1:
		raw, err := cc.call("engine::queue::list_topics", map[string]any{})
		if err != nil {
			return err
		}
		var topics []map[string]any
		if err := json.Unmarshal(raw, &topics); err != nil {
			return err
		}
		var all []map[string]any
		for _, t := range topics {
			name := str(t["name"])
			raw, err := cc.call("engine::queue::topic_stats", map[string]any{"topic": name})
			if err != nil {
				return err
			}
			var st map[string]any
			if err := json.Unmarshal(raw, &st); err != nil {
				return err
			}
			st["name"], st["broker_type"] = name, t["broker_type"]
			all = append(all, st)
		}
		if all == nil {
			all = []map[string]any{}
		}
		return cc.printRows(mustJSON(all), []string{"QUEUE", "TYPE", "DEPTH", "CONSUMERS", "DLQ"},
			func(s map[string]any) []string {
				return []string{str(s["name"]), str(s["broker_type"]), str(s["depth"]), str(s["consumer_count"]), str(s["dlq_depth"])}
			})
	case pos[0] == "stats" && len(pos) == 2:
		raw, err := cc.call("engine::queue::topic_stats", map[string]any{"topic": pos[1]})
		if err != nil {
			return err
		}
		return cc.printJSON(raw)
	case pos[0] == "dlq" && len(pos) == 1:
		return cc.callRows("engine::queue::dlq_topics", map[string]any{}, []string{"QUEUE", "TYPE", "MESSAGES"},
			func(t map[string]any) []string {
				return []string{str(t["topic"]), str(t["broker_type"]), str(t["message_count"])}
			})
	case pos[0] == "dlq" && len(pos) == 2:
		return cc.callRows("engine::queue::dlq_messages", map[string]any{"topic": pos[1], "limit": limit},
			[]string{"ID", "FUNCTION", "RETRIES", "FAILED_AT", "ERROR"},
			func(m map[string]any) []string {
				failed := "-"
				if f, ok := m["failed_at"].(float64); ok {
					failed = time.Unix(int64(f), 0).UTC().Format(time.RFC3339)
				}
				return []string{str(m["id"]), str(m["function_id"]), str(m["retries"]), failed, str(m["error"])}
			})
	case pos[0] == "redrive" && (len(pos) == 2 || len(pos) == 3):
		fn, in := "iii::queue::redrive", map[string]any{"queue": pos[1]}
		if len(pos) == 3 {
			fn, in["message_id"] = "iii::queue::redrive_message", pos[2]
		}
		raw, err := cc.call(fn, in)
		if err != nil {
			return err
		}
		if cc.json {
			return cc.printJSON(raw)
		}
		var r map[string]any
		_ = json.Unmarshal(raw, &r)
		fmt.Fprintf(cc.stdout, "redriven: %s\n", str(r["redriven"]))
		return nil
	default:
		return usageErr("usage: sluice queue stats [QUEUE] | dlq [QUEUE] | redrive QUEUE [MESSAGE_ID]")
	}
}

// callRows calls fn with in and prints its result, a JSON list of
// objects, as printRows does.
func (cc *clientCmd) callRows(fn string, in any, header []string, row func(map[string]any) []string) error {
	raw, err := cc.call(fn, in)
	if err != nil {
		return err
	}
	return cc.printRows(raw, header, row)
}

// printRows prints raw, a JSON list of objects, as it is with --json, and
// otherwise as a table with one row per object.
func (cc *clientCmd) printRows(raw json.RawMessage, header []string, row func(map[string]any) []string) error {
	if cc.json {
		return cc.printJSON(raw)
	}
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		return err
	}
	var rows [][]string
	for _, m := range list {
		rows = append(rows, row(m))
	}
	cc.table(header, rows)
	return nil
}

func (cc *clientCmd) usage(synopsis, what string) func() {
	return func() {
		w := cc.fs.Output()
		fmt.Fprintf(w, "usage: sluice %s [flags]\n\n%s\n\nflags:\n", synopsis, what)
		cc.fs.PrintDefaults()
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
