package identity

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/config"
)

// Password guessing is slowed in two ways that do not wait for anything:
//
//   - a throttle per user name and per client address (identity.lockout
//     user and address): after Failures refused logins within Within, that
//     key's logins are refused (429) for For, before any password is
//     checked, so a refused attempt costs no bcrypt;
//   - attempts for one user name, or from one address, are checked one at
//     a time (keyed locks), and after a refusal the next waits until the
//     event graph has acted on its ev.auth.failed (settle), so a lock that
//     a graph writes to POLICY (examples/bruteforce.yaml) holds from the
//     very next attempt. A parallel burst cannot get more attempts checked
//     than the threshold.
//
// Both live in the process: with several nodes each counts its own
// attempts (the POLICY locks the graph writes are shared).

// throttle counts refused logins per key.
type throttle struct {
	cfg config.Throttle
	mu  sync.Mutex
	m   map[string]*tally
	// sweep drops idle keys; at most maxKeys are tracked (a spray of
	// made-up names beyond that goes uncounted by this throttle, and is
	// still counted per address).
	lastSweep time.Time
}

type tally struct {
	fails []time.Time // within the window, oldest first
	until time.Time   // refused until
}

const maxKeys = 1 << 17

func newThrottle(c config.Throttle) *throttle {
	return &throttle{cfg: c, m: map[string]*tally{}}
}

// refused reports whether key is locked out now, and for how long.
func (t *throttle) refused(key string, now time.Time) (bool, time.Duration) {
	if t == nil || t.cfg.Failures <= 0 {
		return false, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[key]; e != nil && now.Before(e.until) {
		return true, e.until.Sub(now)
	}
	return false, 0
}

// fail records a refused login for key.
func (t *throttle) fail(key string, now time.Time) {
	if t == nil || t.cfg.Failures <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastSweep) > time.Minute {
		t.sweep(now)
	}
	e := t.m[key]
	if e == nil {
		if len(t.m) >= maxKeys {
			return
		}
		e = &tally{}
		t.m[key] = e
	}
	e.prune(now, t.cfg.Within.D())
	e.fails = append(e.fails, now)
	if len(e.fails) >= t.cfg.Failures {
		e.until, e.fails = now.Add(t.cfg.For.D()), e.fails[:0]
	}
}

// succeed clears key's count (a user who signed in starts afresh).
func (t *throttle) succeed(key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[key]; e != nil && e.until.IsZero() {
		delete(t.m, key)
	} else if e != nil {
		e.fails = e.fails[:0]
	}
}

// clear forgets the keys match selects (an admin lifted the lock).
func (t *throttle) clear(match func(key string) bool) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.m {
		if match(k) {
			delete(t.m, k)
		}
	}
}

func (e *tally) prune(now time.Time, within time.Duration) {
	i := 0
	for i < len(e.fails) && now.Sub(e.fails[i]) > within {
		i++
	}
	e.fails = append(e.fails[:0], e.fails[i:]...)
}

func (t *throttle) sweep(now time.Time) {
	t.lastSweep = now
	for k, e := range t.m {
		e.prune(now, t.cfg.Within.D())
		if len(e.fails) == 0 && !now.Before(e.until) {
			delete(t.m, k)
		}
	}
}

// userKey folds a user name as directories compare them, so "Alice" and
// "alice" share one count.
func userKey(user string) string { return strings.ToLower(strings.TrimSpace(user)) }

// addrKey is a client address as the throttle counts it: IPv4 alone, IPv6
// by its /64 (what one subscriber gets).
func addrKey(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}

// ClearThrottle lifts this node's login throttle for a user, or for the
// addresses whose anonymised form is ip (how POLICY names them), when an
// admin clears that user's or address's policy entry.
func (m *Module) ClearThrottle(kind, subject string) {
	switch kind {
	case "user":
		k := "u:" + userKey(subject)
		m.userThrottle.clear(func(key string) bool { return key == k })
	case "ip":
		m.addrThrottle.clear(func(key string) bool {
			a, err := netip.ParseAddr(key)
			if p, perr := netip.ParsePrefix(key); perr == nil {
				a, err = p.Addr(), nil
			}
			return err == nil && clientip.Anonymize(a).String() == subject
		})
	}
}

// keyLocks serialises work per key; a waiter leaves when its context
// ends.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

// lock takes the lock of every non-empty key in order (callers pass keys
// in a fixed order, so two callers never wait on each other crosswise)
// and returns the function that releases them.
func (l *keyLocks) lock(ctx context.Context, keys ...string) (func(), error) {
	var held []string
	unlock := func() {
		for i := len(held) - 1; i >= 0; i-- {
			l.release(held[i])
		}
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		l.mu.Lock()
		if l.m == nil {
			l.m = map[string]*keyLock{}
		}
		e := l.m[k]
		if e == nil {
			e = &keyLock{ch: make(chan struct{}, 1)}
			l.m[k] = e
		}
		e.refs++
		l.mu.Unlock()
		select {
		case e.ch <- struct{}{}:
			held = append(held, k)
		case <-ctx.Done():
			l.drop(k)
			unlock()
			return nil, ctx.Err()
		}
	}
	return unlock, nil
}

func (l *keyLocks) release(k string) {
	l.mu.Lock()
	e := l.m[k]
	l.mu.Unlock()
	<-e.ch
	l.drop(k)
}

func (l *keyLocks) drop(k string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[k]; e != nil {
		if e.refs--; e.refs == 0 {
			delete(l.m, k)
		}
	}
}
