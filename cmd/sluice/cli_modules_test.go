package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCLIStateStreamInProcess: state get/set/delete/list and stream list
// against an in-process engine (interop.TestCLIModules drives the built
// binary with official-SDK workers).
func TestCLIStateStreamInProcess(t *testing.T) {
	u := "--url=" + cliEngine(t)
	run := func(want int, args ...string) string {
		t.Helper()
		out, errs, code := cli(t, append(args, u)...)
		if code != want {
			t.Fatalf("sluice %v: exit %d, want %d\nstdout %s\nstderr %s", args, code, want, out, errs)
		}
		return out
	}
	if got := run(0, "state", "get", "s1", "k1"); got != "null\n" {
		t.Errorf("get of a missing key printed %q", got)
	}
	if got := run(0, "state", "set", "s1", "k1", "n=1", "tag=x"); got != `{"n":1,"tag":"x"}`+"\n" {
		t.Errorf("set printed %q", got)
	}
	var setRes struct{ Old, New json.RawMessage }
	out := run(0, "state", "set", "s1", "k1", `{"n":2}`, "--json")
	if err := json.Unmarshal([]byte(strings.ReplaceAll(strings.ReplaceAll(out, "old_value", "old"), "new_value", "new")), &setRes); err != nil ||
		string(setRes.Old) != `{"n":1,"tag":"x"}` || string(setRes.New) != `{"n":2}` {
		t.Errorf("set --json printed %q", out)
	}
	run(0, "state", "set", "s2", "k", `"text"`)
	if got := run(0, "state", "get", "s1", "k1"); got != `{"n":2}`+"\n" {
		t.Errorf("get printed %q", got)
	}
	if got := run(0, "state", "list"); got != "s1\ns2\n" {
		t.Errorf("list (scopes) printed %q", got)
	}
	if got := run(0, "state", "list", "--json"); got != `["s1","s2"]`+"\n" {
		t.Errorf("list --json printed %q", got)
	}
	if got := run(0, "state", "list", "s1"); got != `{"n":2}`+"\n" {
		t.Errorf("list s1 printed %q", got)
	}
	if got := run(0, "state", "list", "s2"); got != "text\n" {
		t.Errorf("list s2 printed %q", got)
	}
	if got := run(0, "state", "delete", "s2", "k"); got != `"text"`+"\n" {
		t.Errorf("delete printed %q", got)
	}
	run(2, "state", "get", "s1")
	run(2, "state", "set", "s1", "k1")
	run(2, "state", "set", "s1", "k1", "{bad")
	run(2, "state", "frob")
	run(2, "state")

	if got := run(0, "stream", "list", "--json"); got != "[]\n" {
		t.Errorf("stream list of none printed %q", got)
	}
	run(0, "trigger", "stream::set", `{"stream_name":"board","group_id":"g1","item_id":"i1","data":{"v":1}}`)
	run(0, "trigger", "stream::set", `{"stream_name":"board","group_id":"g2","item_id":"i1","data":{"v":2}}`)
	if got := run(0, "stream", "list", "--json"); got != `[{"id":"board","groups":["g1","g2"]}]`+"\n" {
		t.Errorf("stream list --json printed %q", got)
	}
	if got := run(0, "stream", "list"); !strings.HasPrefix(got, "STREAM") || !strings.Contains(got, "g1,g2") {
		t.Errorf("stream list printed %q", got)
	}
	if got := run(0, "stream", "list", "board"); got != "g1\ng2\n" {
		t.Errorf("stream list board printed %q", got)
	}
	if got := run(0, "stream", "list", "board", "g2", "--json"); got != `[{"v":2}]`+"\n" {
		t.Errorf("stream list board g2 printed %q", got)
	}
	run(2, "stream")
	run(2, "stream", "get")
	run(2, "stream", "list", "a", "b", "c")

	help, _, _ := cli(t, "-h")
	comp, _, _ := cli(t, "completion", "bash")
	for _, w := range []string{"state get", "state set", "state list", "stream list"} {
		if !strings.Contains(help, w) {
			t.Errorf("-h does not mention %q", w)
		}
	}
	if !strings.Contains(comp, "get set delete list") || !strings.Contains(comp, " state stream ") {
		t.Errorf("bash completion lacks state/stream")
	}
}
