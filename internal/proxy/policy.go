package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/policy"
)

// policyCache mirrors the POLICY bucket in memory through a watch, so each
// request checks a map, and a new entry applies within the watch's delay
// (milliseconds on one node).
type policyCache struct {
	store *policy.Store
	log   *slog.Logger
	mu    sync.RWMutex
	m     map[string]policy.Entry // bucket key -> entry
}

func openPolicy(ctx context.Context, b *bus.Bus, log *slog.Logger) (*policyCache, error) {
	s, err := policy.Open(ctx, b)
	if err != nil {
		return nil, err
	}
	return &policyCache{store: s, log: log, m: map[string]policy.Entry{}}, nil
}

func (p *policyCache) watch(ctx context.Context) {
	kv := p.store.KV()
	for ctx.Err() == nil {
		done, err := bus.WatchKV(ctx, kv, func(key string, present bool) {
			if !present {
				p.mu.Lock()
				delete(p.m, key)
				p.mu.Unlock()
				return
			}
			v, err := kv.Get(ctx, key)
			if err != nil {
				return
			}
			var e policy.Entry
			if json.Unmarshal(v.Value(), &e) != nil {
				p.log.Warn("unreadable policy entry", "key", key)
				return
			}
			p.mu.Lock()
			p.m[key] = e
			p.mu.Unlock()
		})
		if err != nil {
			p.log.Warn("policy watch failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		<-done
	}
}

// active returns the entry in force for kind and an already normalised
// subject.
func (p *policyCache) active(kind, subject string) (policy.Entry, bool) {
	p.mu.RLock()
	e, ok := p.m[policy.Key(kind, subject)]
	p.mu.RUnlock()
	return e, ok && e.Active(time.Now())
}
