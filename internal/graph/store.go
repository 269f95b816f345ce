package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
)

// SpecBucket holds the processors and views created through the API, so
// they survive restarts and every node sees the same graph.
const SpecBucket = "OPS_GRAPH"

// ErrReadOnly is a change to a node defined in ops.yaml.
var ErrReadOnly = errors.New("defined in ops.yaml; read-only through the API")

// ErrNotFound is a delete of a node that does not exist.
var ErrNotFound = errors.New("no such node")

// Store is the graph as the config file and the API define it together.
type Store struct {
	kv   jetstream.KeyValue
	base *config.Config
}

// OpenStore opens (or creates) the spec bucket.
func OpenStore(ctx context.Context, b *bus.Bus, base *config.Config) (*Store, error) {
	kv, err := b.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: SpecBucket, Description: "processors and views created through the API", History: 5})
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv, base: base}, nil
}

// Origin says where a node is defined: "config" or "api".
func (s *Store) Origin(kind, name string) string {
	switch kind {
	case "processor":
		for _, p := range s.base.Processors {
			if p.Name == name {
				return "config"
			}
		}
	case "view":
		for _, v := range s.base.Views {
			if v.Name == name {
				return "config"
			}
		}
	}
	return "api"
}

func key(kind, name string) string {
	if kind == "processor" {
		return "p." + name
	}
	return "v." + name
}

// Effective returns the config's nodes plus the API's, in that order.
func (s *Store) Effective(ctx context.Context) (*config.Config, error) {
	c := *s.base
	c.Processors = slices.Clone(s.base.Processors)
	c.Views = slices.Clone(s.base.Views)
	lister, err := s.kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return &c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", bus.ErrUnavailable, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue // deleted in between
		}
		switch {
		case strings.HasPrefix(k, "p."):
			var p config.Processor
			if err := json.Unmarshal(e.Value(), &p); err != nil {
				return nil, fmt.Errorf("stored processor %s: %w", k, err)
			}
			c.Processors = append(c.Processors, p)
		case strings.HasPrefix(k, "v."):
			var v config.View
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				return nil, fmt.Errorf("stored view %s: %w", k, err)
			}
			c.Views = append(c.Views, v)
		}
	}
	return &c, nil
}

// Graph compiles the effective graph.
func (s *Store) Graph(ctx context.Context) (*Graph, error) {
	c, err := s.Effective(ctx)
	if err != nil {
		return nil, err
	}
	return Compile(c)
}

// check compiles the effective graph after change; errors name the field.
func (s *Store) check(ctx context.Context, change func(c *config.Config)) error {
	c, err := s.Effective(ctx)
	if err != nil {
		return err
	}
	change(c)
	if errs := c.Validate(); len(errs) > 0 {
		return errs
	}
	_, err = Compile(c)
	return err
}

// PutProcessor creates or replaces an API processor after checking the
// whole graph with it (Bloblang, names, cycles). It reports whether it was
// new.
func (s *Store) PutProcessor(ctx context.Context, p config.Processor) (bool, error) {
	if s.Origin("processor", p.Name) == "config" {
		return false, ErrReadOnly
	}
	err := s.check(ctx, func(c *config.Config) {
		c.Processors = slices.DeleteFunc(c.Processors, func(x config.Processor) bool { return x.Name == p.Name })
		c.Processors = append(c.Processors, p)
	})
	if err != nil {
		return false, err
	}
	return s.put(ctx, key("processor", p.Name), p)
}

// PutView creates or replaces an API view likewise.
func (s *Store) PutView(ctx context.Context, v config.View) (bool, error) {
	if s.Origin("view", v.Name) == "config" {
		return false, ErrReadOnly
	}
	err := s.check(ctx, func(c *config.Config) {
		c.Views = slices.DeleteFunc(c.Views, func(x config.View) bool { return x.Name == v.Name })
		c.Views = append(c.Views, v)
	})
	if err != nil {
		return false, err
	}
	return s.put(ctx, key("view", v.Name), v)
}

func (s *Store) put(ctx context.Context, k string, v any) (bool, error) {
	_, err := s.kv.Get(ctx, k)
	created := errors.Is(err, jetstream.ErrKeyNotFound)
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	if _, err := s.kv.Put(ctx, k, b); err != nil {
		return false, fmt.Errorf("%w: %v", bus.ErrUnavailable, err)
	}
	return created, nil
}

// Delete removes an API node.
func (s *Store) Delete(ctx context.Context, kind, name string) error {
	if s.Origin(kind, name) == "config" {
		return ErrReadOnly
	}
	k := key(kind, name)
	if _, err := s.kv.Get(ctx, k); errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err := s.kv.Delete(ctx, k); err != nil {
		return fmt.Errorf("%w: %v", bus.ErrUnavailable, err)
	}
	return nil
}

// Change is a node created, replaced or deleted through the API.
type Change struct {
	Kind    string // processor or view
	Name    string
	Deleted bool
}

// Watch reports API changes (after the ones present at start, which
// Effective already includes) until ctx ends.
func (s *Store) Watch(ctx context.Context) (<-chan Change, error) {
	out := make(chan Change, 16)
	done, err := bus.WatchKV(ctx, s.kv, func(key string, present bool) {
		kind, name, _ := strings.Cut(key, ".")
		select {
		case out <- Change{Kind: map[string]string{"p": "processor", "v": "view"}[kind], Name: name, Deleted: !present}:
		case <-ctx.Done():
		}
	}, jetstream.UpdatesOnly())
	if err != nil {
		return nil, err
	}
	// The modules range over the channel until ctx ends; it closes only after
	// the watch stopped sending.
	go func() { <-done; close(out) }()
	return out, nil
}
