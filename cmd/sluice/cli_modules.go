package main

// State and stream subcommands: the engine's state::* and stream::*
// builtins (docs/state-streams.md).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

func init() {
	clientCommands["state"] = (*clientCmd).state
	clientCommands["stream"] = (*clientCmd).stream
}

// state get SCOPE KEY | set SCOPE KEY VALUE | delete SCOPE KEY | list [SCOPE]
func (cc *clientCmd) state(args []string) error {
	const syn = "state get SCOPE KEY | state set SCOPE KEY [JSON | - | key=value ...] | state delete SCOPE KEY | state list [SCOPE]"
	cc.fs.Usage = cc.usage(syn,
		"State values: read, write (the value is one JSON value, - for stdin, or key=value pairs),\n"+
			"delete, list a scope's values, or without SCOPE list the scopes.")
	pos, err := cc.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErr("usage: sluice %s", syn)
	}
	switch {
	case pos[0] == "get" && len(pos) == 3:
		raw, err := cc.call("state::get", map[string]string{"scope": pos[1], "key": pos[2]})
		if err != nil {
			return err
		}
		return cc.printJSON(raw)
	case pos[0] == "set" && len(pos) >= 4:
		v, err := cc.payload(pos[3:])
		if err != nil {
			return err
		}
		raw, err := cc.call("state::set", map[string]any{"scope": pos[1], "key": pos[2], "value": v})
		if err != nil {
			return err
		}
		if cc.json {
			return cc.printJSON(raw) // {old_value, new_value}
		}
		var r struct {
			New json.RawMessage `json:"new_value"`
		}
		_ = json.Unmarshal(raw, &r)
		return cc.printJSON(r.New)
	case pos[0] == "delete" && len(pos) == 3:
		raw, err := cc.call("state::delete", map[string]string{"scope": pos[1], "key": pos[2]})
		if err != nil {
			return err
		}
		return cc.printJSON(raw) // the deleted value, null if none
	case pos[0] == "list" && len(pos) == 1:
		raw, err := cc.call("state::list_groups", map[string]any{})
		if err != nil {
			return err
		}
		var r struct {
			Groups []string `json:"groups"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		if r.Groups == nil {
			r.Groups = []string{}
		}
		if cc.json {
			return cc.printJSON(mustJSON(r.Groups))
		}
		for _, g := range r.Groups {
			fmt.Fprintln(cc.stdout, g)
		}
		return nil
	case pos[0] == "list" && len(pos) == 2:
		raw, err := cc.call("state::list", map[string]string{"scope": pos[1]})
		if err != nil {
			return err
		}
		return cc.printLines(raw)
	default:
		return usageErr("usage: sluice %s", syn)
	}
}

// stream list [STREAM [GROUP]]
func (cc *clientCmd) stream(args []string) error {
	const syn = "stream list [STREAM [GROUP]]"
	cc.fs.Usage = cc.usage(syn, "Streams: all streams with their groups, a stream's groups, or a group's items.")
	pos, err := cc.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || pos[0] != "list" || len(pos) > 3 {
		return usageErr("usage: sluice %s", syn)
	}
	switch len(pos) {
	case 1:
		raw, err := cc.call("stream::list_all", map[string]any{})
		if err != nil {
			return err
		}
		var r struct {
			Stream []struct {
				ID     string   `json:"id"`
				Groups []string `json:"groups"`
			} `json:"stream"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		if cc.json {
			return cc.printJSON(mustJSON(r.Stream))
		}
		rows := make([][]string, 0, len(r.Stream))
		for _, s := range r.Stream {
			rows = append(rows, []string{s.ID, fmt.Sprint(len(s.Groups)), strings.Join(s.Groups, ",")})
		}
		cc.table([]string{"STREAM", "GROUPS", "GROUP_IDS"}, rows)
		return nil
	case 2:
		raw, err := cc.call("stream::list_groups", map[string]string{"stream_name": pos[1]})
		if err != nil {
			return err
		}
		return cc.printLines(raw)
	default:
		raw, err := cc.call("stream::list", map[string]string{"stream_name": pos[1], "group_id": pos[2]})
		if err != nil {
			return err
		}
		return cc.printLines(raw)
	}
}

// printLines prints a JSON array: as it is with --json, else one element
// per line (strings bare, anything else as compact JSON).
func (cc *clientCmd) printLines(raw json.RawMessage) error {
	if cc.json {
		return cc.printJSON(raw)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return cc.printJSON(raw)
	}
	for _, v := range list {
		var s string
		if json.Unmarshal(v, &s) == nil {
			fmt.Fprintln(cc.stdout, s)
			continue
		}
		var b bytes.Buffer
		if json.Compact(&b, v) != nil {
			b.Reset()
			b.Write(v)
		}
		b.WriteByte('\n')
		if _, err := cc.stdout.Write(b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}
