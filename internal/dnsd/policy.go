package dnsd

import (
	"strings"
	"sync"
	"time"

	"github.com/opsgraph/ops/internal/policy"
)

// livePolicy mirrors the domain entries of the POLICY bucket: a view, a
// processor, an admin (ops policy set domain ...) or the chat can block a
// name live; it applies to the next query (the watch's delay, well under
// a second on one node), before the cache, and wins over list exceptions.
type livePolicy struct {
	mu     sync.RWMutex
	byName map[string]policy.Entry // subject -> entry
	byKey  map[string]string       // bucket key -> subject
}

func newLivePolicy() *livePolicy {
	return &livePolicy{byName: map[string]policy.Entry{}, byKey: map[string]string{}}
}

// apply is the watch's callback.
func (p *livePolicy) apply(key string, e *policy.Entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.byKey[key]; ok {
		delete(p.byName, old)
		delete(p.byKey, key)
	}
	if e != nil && e.Kind == policy.Domain && e.Action == "block" {
		p.byName[e.Subject] = *e
		p.byKey[key] = e.Subject
	}
}

// match returns the active block covering name (or a parent domain).
func (p *livePolicy) match(name string) (string, bool) {
	if p == nil {
		return "", false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.byName) == 0 {
		return "", false
	}
	now := time.Now()
	for d := name; d != ""; {
		if e, ok := p.byName[d]; ok && e.Active(now) {
			rule := "policy:" + d
			if e.Reason != "" {
				rule += " (" + e.Reason + ")"
			}
			return rule, true
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return "", false
}
