package state

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Memory is a Store in RAM (data_dir "memory", tests).
type Memory struct {
	mu sync.RWMutex
	m  map[string]map[string]map[string][]byte // ns > group > key
}

// NewMemory returns an empty Memory store.
func NewMemory() *Memory { return &Memory{m: map[string]map[string]map[string][]byte{}} }

var _ Store = (*Memory)(nil)

func (s *Memory) Get(_ context.Context, ns, group, key string) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[ns][group][key]
	return v, ok, nil
}

func (s *Memory) put(ns, group, key string, v []byte) {
	g := s.m[ns]
	if g == nil {
		g = map[string]map[string][]byte{}
		s.m[ns] = g
	}
	k := g[group]
	if k == nil {
		k = map[string][]byte{}
		g[group] = k
	}
	k[key] = slices.Clone(v)
}

func (s *Memory) del(ns, group, key string) {
	g := s.m[ns]
	delete(g[group], key)
	if len(g[group]) == 0 {
		delete(g, group)
	}
	if len(g) == 0 {
		delete(s.m, ns)
	}
}

func (s *Memory) Set(_ context.Context, ns, group, key string, value []byte) (Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.m[ns][group][key]
	s.put(ns, group, key, value)
	return Change{Old: old, Had: had, New: value, Has: true}, nil
}

func (s *Memory) Delete(_ context.Context, ns, group, key string) (Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.m[ns][group][key]
	if had {
		s.del(ns, group, key)
	}
	return Change{Old: old, Had: had}, nil
}

func (s *Memory) Update(_ context.Context, ns, group, key string, fn UpdateFunc) (Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.m[ns][group][key]
	v, keep, err := fn(old, had)
	if err != nil {
		return Change{}, err
	}
	if !keep {
		return Change{Old: old, Had: had, New: old, Has: had}, nil
	}
	s.put(ns, group, key, v)
	return Change{Old: old, Had: had, New: v, Has: true}, nil
}

func (s *Memory) List(_ context.Context, ns, group string) ([]Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Entry, 0, len(s.m[ns][group]))
	for k, v := range s.m[ns][group] {
		out = append(out, Entry{Key: k, Value: v})
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (s *Memory) Groups(_ context.Context, ns string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.m[ns]))
	for g := range s.m[ns] {
		out = append(out, g)
	}
	slices.Sort(out)
	return out, nil
}

func (s *Memory) Namespaces(_ context.Context, prefix string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for ns := range s.m {
		if strings.HasPrefix(ns, prefix) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out, nil
}

var _ AsyncStore = (*Memory)(nil)

// SetAsync, DeleteAsync and UpdateAsync complete before they return.
func (s *Memory) SetAsync(ctx context.Context, ns, group, key string, value []byte, done func(Change, error)) {
	done(s.Set(ctx, ns, group, key, value))
}

func (s *Memory) DeleteAsync(ctx context.Context, ns, group, key string, done func(Change, error)) {
	done(s.Delete(ctx, ns, group, key))
}

func (s *Memory) UpdateAsync(ctx context.Context, ns, group, key string, fn UpdateFunc, done func(Change, error)) {
	done(s.Update(ctx, ns, group, key, fn))
}
