package proxy

import (
	"context"
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
	paths []policy.Entry          // blocked path prefixes, for a scan
}

func openPolicy(ctx context.Context, b *bus.Bus, log *slog.Logger) (*policyCache, error) {
	s, err := policy.Open(ctx, b)
	if err != nil {
		return nil, err
	}
	return &policyCache{store: s, log: log, m: map[string]policy.Entry{}}, nil
}

func (p *policyCache) watch(ctx context.Context) {
	p.store.Watch(ctx, p.log, func(key string, e *policy.Entry) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if e == nil {
			delete(p.m, key)
		} else {
			p.m[key] = *e
		}
		p.reindex()
	})
}

// active returns the entry in force for kind and an already normalised
// subject.
func (p *policyCache) active(kind, subject string) (policy.Entry, bool) {
	p.mu.RLock()
	e, ok := p.m[policy.Key(kind, subject)]
	p.mu.RUnlock()
	return e, ok && e.Active(time.Now())
}

// empty reports whether no entry is held (the common case: nothing to
// check).
func (p *policyCache) empty() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.m) == 0
}

// reindex rebuilds the path list; call with mu held.
func (p *policyCache) reindex() {
	p.paths = p.paths[:0]
	for _, e := range p.m {
		if e.Kind == policy.Path {
			p.paths = append(p.paths, e)
		}
	}
}

// blockedPath returns the active block covering path, if any.
func (p *policyCache) blockedPath(path string) (policy.Entry, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	now := time.Now()
	for _, e := range p.paths {
		if e.Active(now) && (path == e.Subject || pathUnder(path, e.Subject)) {
			return e, true
		}
	}
	return policy.Entry{}, false
}
