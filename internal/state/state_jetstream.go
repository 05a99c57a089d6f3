package state

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/natsnode"
)

// JetStream is a Store on a JetStream key-value bucket, shared by every
// engine of a cluster. Each value is one key, <ns>.<group>.<key> with each
// part base64url-encoded (KV keys allow few characters); writes are
// compare-and-set on the key's revision, retried on conflict, so concurrent
// updates from any node never lose one another's changes.
type JetStream struct {
	kv jetstream.KeyValue
}

var _ Store = (*JetStream)(nil)

// JetStreamBucket is the bucket name the engine uses.
const JetStreamBucket = "sluice_state"

// OpenJetStream creates (or reuses) the bucket with the given replica
// count. In a cluster it retries while JetStream elects its leaders, until
// ctx ends.
func OpenJetStream(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*JetStream, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := natsnode.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: bucket, History: 1, Storage: jetstream.FileStorage, Replicas: replicas, Description: "sluice state and stream items",
	})
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return &JetStream{kv: kv}, nil
}

func enc(s string) string { return "_" + base64.RawURLEncoding.EncodeToString([]byte(s)) }

func dec(tok string) (string, bool) {
	if !strings.HasPrefix(tok, "_") {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok[1:])
	return string(b), err == nil
}

func kvKey(ns, group, key string) string { return enc(ns) + "." + enc(group) + "." + enc(key) }

// conflict reports a failed compare-and-set (someone wrote the key first).
func conflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == 10164)
}

// current reads a key: its value and revision (0: none).
func (s *JetStream) current(ctx context.Context, k string) ([]byte, uint64, error) {
	e, err := s.kv.Get(ctx, k) // retried on no responders by natsnode's handle
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return e.Value(), e.Revision(), nil
}

// write stores v if the key is still at rev (0: absent).
func (s *JetStream) write(ctx context.Context, k string, v []byte, rev uint64) error {
	if rev == 0 {
		_, err := s.kv.Create(ctx, k, v)
		return err
	}
	_, err := s.kv.Update(ctx, k, v, rev)
	return err
}

func (s *JetStream) Get(ctx context.Context, ns, group, key string) ([]byte, bool, error) {
	v, rev, err := s.current(ctx, kvKey(ns, group, key))
	return v, rev != 0, err
}

func (s *JetStream) Set(ctx context.Context, ns, group, key string, value []byte) (Change, error) {
	return s.Update(ctx, ns, group, key, func([]byte, bool) ([]byte, bool, error) { return value, true, nil })
}

func (s *JetStream) Delete(ctx context.Context, ns, group, key string) (Change, error) {
	k := kvKey(ns, group, key)
	for {
		old, rev, err := s.current(ctx, k)
		if err != nil || rev == 0 {
			return Change{}, err
		}
		err = s.kv.Delete(ctx, k, jetstream.LastRevision(rev))
		if conflict(err) {
			continue
		}
		if err != nil {
			return Change{}, err
		}
		return Change{Old: old, Had: true}, nil
	}
}

func (s *JetStream) Update(ctx context.Context, ns, group, key string, fn UpdateFunc) (Change, error) {
	k := kvKey(ns, group, key)
	var transient time.Time
	for {
		old, rev, err := s.current(ctx, k)
		if err != nil {
			return Change{}, err
		}
		had := rev != 0
		v, keep, err := fn(old, had)
		if err != nil {
			return Change{}, err
		}
		if !keep {
			return Change{Old: old, Had: had, New: old, Has: had}, nil
		}
		err = s.write(ctx, k, v, rev)
		if natsnode.RetryTransient(ctx, err, &transient) {
			continue // no stream leader yet: read and try again
		}
		if conflict(err) {
			if err := ctx.Err(); err != nil {
				return Change{}, err
			}
			continue // another writer came between: read again
		}
		if err != nil {
			return Change{}, err
		}
		return Change{Old: old, Had: had, New: v, Has: true}, nil
	}
}

// scan calls f with every live key matching filter (and its value unless
// metaOnly).
func (s *JetStream) scan(ctx context.Context, filter string, metaOnly bool, f func(key string, v []byte)) error {
	opts := []jetstream.WatchOpt{jetstream.IgnoreDeletes()}
	if metaOnly {
		opts = append(opts, jetstream.MetaOnly())
	}
	w, err := s.kv.Watch(ctx, filter, opts...)
	if err != nil {
		return err
	}
	defer natsnode.StopWatch(ctx, w)
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("state: watcher closed")
			}
			if e == nil {
				return nil // the initial values are all delivered
			}
			f(e.Key(), e.Value())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *JetStream) List(ctx context.Context, ns, group string) ([]Entry, error) {
	var out []Entry
	err := s.scan(ctx, enc(ns)+"."+enc(group)+".*", false, func(k string, v []byte) {
		parts := strings.Split(k, ".")
		if key, ok := dec(parts[len(parts)-1]); ok {
			out = append(out, Entry{Key: key, Value: v})
		}
	})
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, err
}

func (s *JetStream) Groups(ctx context.Context, ns string) ([]string, error) {
	set := map[string]bool{}
	err := s.scan(ctx, enc(ns)+".*.*", true, func(k string, _ []byte) {
		if parts := strings.Split(k, "."); len(parts) == 3 {
			if g, ok := dec(parts[1]); ok {
				set[g] = true
			}
		}
	})
	return sortedSet(set), err
}

func (s *JetStream) Namespaces(ctx context.Context, prefix string) ([]string, error) {
	set := map[string]bool{}
	err := s.scan(ctx, jetstream.AllKeys, true, func(k string, _ []byte) {
		if parts := strings.Split(k, "."); len(parts) == 3 {
			if ns, ok := dec(parts[0]); ok && strings.HasPrefix(ns, prefix) {
				set[ns] = true
			}
		}
	})
	return sortedSet(set), err
}

func sortedSet(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
