package engine

import (
	"slices"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// TestRemoteFunctionDetailPick: engine::functions::info of a function
// served on other nodes. Node "a" serves f in namespace "other", nodes "b"
// and "c" in the default one (as "" and as "default"), "z" is gone.
// Without a namespace the default one wins over the first node in name
// order, and of two in the default one the first node does; with one, only
// that namespace's; the routes listed are the picked node's for that
// function and namespace. Kills cluster_discovery.go:47 ×3, :50 ×4, :55 and
// :63 ×2 (each condition negated), which the two-node test, with one
// function on one node, could not tell apart.
func TestRemoteFunctionDetailPick(t *testing.T) {
	e := offlineCluster(t, map[string]*memberState{
		"a": {functions: []hbFunction{{ID: "f", Namespace: "other", Worker: "wa"}, {ID: "g", Worker: "wa-g"}},
			routes: []hbRoute{{ID: "ra", FunctionID: "f", Namespace: "other", Config: jsontext.Value(`{"api_path":"/a"}`)}}},
		"b": {functions: []hbFunction{{ID: "f", Worker: "wb", Description: "of b", Request: jsontext.Value(`{"type":"object"}`)}},
			routes: []hbRoute{{ID: "rb", FunctionID: "f"}, {ID: "rb-h", FunctionID: "h"}, {ID: "rb-other", FunctionID: "f", Namespace: "other"}}},
		"c": {functions: []hbFunction{{ID: "f", Namespace: "default", Worker: "wc"}}},
		"z": {gone: true, functions: []hbFunction{{ID: "gone-fn", Worker: "wz"}}},
	})
	routes := func(d *functionDetail) []string {
		var ids []string
		for _, r := range d.RegisteredTriggers {
			ids = append(ids, r.ID)
		}
		return ids
	}
	d, f := e.remoteFunctionDetail("f", nil)
	if d == nil || d.Node != "b" || d.WorkerName != "wb" || d.Namespace != "default" || d.Description != "of b" ||
		string(d.RequestSchema) != `{"type":"object"}` || !slices.Equal(routes(d), []string{"rb"}) {
		t.Fatalf("f without a namespace: %+v, want b's (default namespace, first node) with its route rb", d)
	}
	if f == nil || f.ID != "f" || f.Namespace != "default" || f.Description != "of b" {
		t.Fatalf("f's registry view: %+v", f)
	}
	d, _ = e.remoteFunctionDetail("f", strp("other"))
	if d == nil || d.Node != "a" || d.WorkerName != "wa" || d.Namespace != "other" || !slices.Equal(routes(d), []string{"ra"}) ||
		string(d.RegisteredTriggers[0].Config) != `{"api_path":"/a"}` {
		t.Fatalf("f in namespace other: %+v, want a's with its route ra", d)
	}
	d, _ = e.remoteFunctionDetail("f", strp("default"))
	if d == nil || d.Node != "b" {
		t.Fatalf("f in namespace default: %+v, want b's", d)
	}
	d, _ = e.remoteFunctionDetail("g", nil)
	if d == nil || d.Node != "a" || d.WorkerName != "wa-g" || len(d.RegisteredTriggers) != 0 {
		t.Fatalf("g: %+v, want a's without routes", d)
	}
	for _, c := range []struct {
		id string
		ns *string
	}{{"f", strp("nowhere")}, {"nothing", nil}, {"gone-fn", nil}} {
		if d, f := e.remoteFunctionDetail(c.id, c.ns); d != nil || f != nil {
			t.Fatalf("%s in %v: %+v, want none", c.id, c.ns, d)
		}
	}
}

// TestRemoteWorkerInfoPick: engine::workers::info of a worker connected to
// another node, by name (a namespace given, or the default one preferred)
// or by id (an id beats a name), with only that worker's functions,
// trigger types and http routes. Kills cluster_discovery.go:78 ×4, :79,
// :82 ×4, :87, :94, :101 and :107 (each condition negated).
func TestRemoteWorkerInfoPick(t *testing.T) {
	e := offlineCluster(t, map[string]*memberState{
		"a": {
			workers: []workerSummary{{ID: "wa1", Name: strp("svc"), Namespace: "team"}, {ID: "wa2", Name: strp("solo"), Namespace: "team"},
				{ID: "wa3", Name: strp("dup")}, {ID: "wa4"}},
			functions: []hbFunction{{ID: "fa1", WorkerID: "wa1", Worker: "svc"}, {ID: "fa2", WorkerID: "wa2", Worker: "solo"}},
			types:     []hbTriggerType{{ID: "ta1", WorkerID: "wa1", Worker: "svc"}, {ID: "ta2", WorkerID: "wa2", Worker: "solo"}},
			routes:    []hbRoute{{ID: "ra1", FunctionID: "fa1", Holder: "wa1", Config: jsontext.Value(`{"api_path":"/x","http_method":"GET"}`)}, {ID: "ra2", FunctionID: "fa2", Holder: "wa2"}},
		},
		"b": {workers: []workerSummary{{ID: "wb1", Name: strp("svc")}}},
		"c": {workers: []workerSummary{{ID: "dup", Name: strp("other"), Namespace: "team"}}},
	})
	type info struct {
		Worker struct {
			ID   string `json:"id"`
			Node string `json:"node"`
		} `json:"worker"`
		Functions    []functionSummary    `json:"functions"`
		TriggerTypes []triggerTypeSummary `json:"trigger_types"`
		Registered   []registeredTrigger  `json:"registered_triggers"`
	}
	get := func(name string, ns *string) *info {
		t.Helper()
		m := e.remoteWorkerInfo(workersInfoInput{Name: name, Namespace: ns})
		if m == nil {
			return nil
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var out info
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return &out
	}
	i := get("svc", strp("team"))
	if i == nil || i.Worker.ID != "wa1" || i.Worker.Node != "a" {
		t.Fatalf("svc in team: %+v, want wa1 on a", i)
	}
	if len(i.Functions) != 1 || i.Functions[0].FunctionID != "fa1" || i.Functions[0].Node != "a" ||
		len(i.TriggerTypes) != 1 || i.TriggerTypes[0].ID != "ta1" ||
		len(i.Registered) != 1 || i.Registered[0].ID != "ra1" || i.Registered[0].Node != "a" || i.Registered[0].ConfigSummary == "" {
		t.Fatalf("wa1's functions, types and routes: %+v", i)
	}
	if i = get("svc", nil); i == nil || i.Worker.ID != "wb1" || i.Worker.Node != "b" {
		t.Fatalf("svc without a namespace: %+v, want wb1 (default namespace) on b", i)
	}
	if i = get("svc", strp("default")); i == nil || i.Worker.ID != "wb1" {
		t.Fatalf("svc in default: %+v, want wb1", i)
	}
	if i = get("wa2", nil); i == nil || i.Worker.ID != "wa2" || len(i.Functions) != 1 || i.Functions[0].FunctionID != "fa2" {
		t.Fatalf("wa2 by id: %+v", i)
	}
	// "dup" is the name of wa3 (default namespace, node a) and the id of a
	// worker on c: the id wins.
	if i = get("dup", nil); i == nil || i.Worker.ID != "dup" || i.Worker.Node != "c" {
		t.Fatalf("dup: %+v, want the worker whose id it is, on c", i)
	}
	for _, c := range []struct {
		name string
		ns   *string
	}{{"svc", strp("elsewhere")}, {"nobody", nil}} {
		if i := get(c.name, c.ns); i != nil {
			t.Fatalf("%s in %v: %+v, want none", c.name, c.ns, i)
		}
	}
}
