package main

// The config file: YAML read onto an engine.Config. The engine package
// itself knows no YAML library; its types only carry yaml tags (and, where
// a value needs it, the legacy decode-function form of UnmarshalYAML).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/sluicehq/sluice/engine"
	"go.yaml.in/yaml/v4"
)

// loadConfigFile overlays the YAML file at path onto c. Unknown keys are errors,
// so that a typo does not silently leave a default in place; the error
// lists the valid keys. A missing file is an error matching fs.ErrNotExist.
func loadConfigFile(c *engine.Config, path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return configNotFound(path)
	} else if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if err := checkYAML(&doc, reflect.TypeFor[engine.Config](), ""); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// io.EOF: the file holds no document (empty, or only comments).
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return c.Validate()
}

// checkYAML reports, before the document is decoded into a Config, what a
// person needs to fix it: every unknown key with the keys valid at its
// place (and the closest one), and durations or sizes in a form that does
// not parse, by their dotted key. It walks t's yaml tags, so new Config
// fields are covered without further code. Type mismatches of other kinds
// are left to the decoder.
func checkYAML(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind == yaml.DocumentNode {
		var errs []error
		for _, c := range n.Content {
			errs = append(errs, checkYAML(c, t, path))
		}
		return errors.Join(errs...)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[time.Duration]():
		if n.Kind == yaml.ScalarNode {
			if _, err := time.ParseDuration(n.Value); err != nil {
				return fmt.Errorf("line %d: %s: %q is not a duration; write it with a unit: 30s, 5m, 1h30m", n.Line, path, n.Value)
			}
		}
		return nil
	case t == reflect.TypeFor[engine.ByteSize]():
		if n.Kind == yaml.ScalarNode {
			if _, err := engine.ParseByteSize(n.Value); err != nil {
				return fmt.Errorf("line %d: %s: %w", n.Line, path, err)
			}
		}
		return nil
	case t.Kind() == reflect.Map && t.Elem().Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		// Named entries (queues): each is checked like a section.
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, checkYAML(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value))
		}
		return errors.Join(errs...)
	case t.Kind() != reflect.Struct || n.ShortTag() == "!!null":
		return nil
	}
	fields := map[string]reflect.Type{}
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" {
			name = strings.ToLower(f.Name) // the decoder's default
		}
		if !f.IsExported() || name == "-" {
			continue
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: want a mapping with the keys %s", n.Line, path, strings.Join(names, ", "))
	}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if path != "" {
			key = path + "." + k.Value
		}
		ft, ok := fields[k.Value]
		if !ok {
			where := "at the top level"
			if path != "" {
				where = "under " + path
			}
			msg := fmt.Sprintf("line %d: unknown key %q; valid keys %s: %s", k.Line, k.Value, where, strings.Join(names, ", "))
			if s := closest(k.Value, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			errs = append(errs, errors.New(msg))
			continue
		}
		errs = append(errs, checkYAML(v, ft, key))
	}
	return errors.Join(errs...)
}

// closest returns the name within edit distance 2 of s, if there is one.
func closest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// configNotFound is loadConfigFile's error for a missing file.
type configNotFound string

func (p configNotFound) Error() string      { return "config file " + string(p) + " not found" }
func (configNotFound) Is(target error) bool { return target == fs.ErrNotExist }
