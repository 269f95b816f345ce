package proxy

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsgraph/ops/internal/config"
)

// upstream is one backend of a route with its health.
type upstream struct {
	url    *url.URL
	addr   string       // host:port to dial
	active atomic.Int64 // requests in flight, for least_conn
	// healthy is the active check's verdict; ejectedUntil the passive one's.
	healthy      atomic.Bool
	ejectedUntil atomic.Int64 // unix nanos
	fails        atomic.Int32 // consecutive passive failures

	mu          sync.Mutex
	checkFails  int
	checkPasses int
}

func newUpstream(u *url.URL) *upstream {
	up := &upstream{url: u, addr: u.Host}
	if u.Port() == "" {
		up.addr = net.JoinHostPort(u.Hostname(), "80")
	}
	up.healthy.Store(true)
	return up
}

// usable reports whether the upstream may take requests now.
func (u *upstream) usable(now int64) bool {
	return u.healthy.Load() && u.ejectedUntil.Load() <= now
}

// pool balances over a route's upstreams.
type pool struct {
	ups     []*upstream
	least   bool
	next    atomic.Uint64
	passive config.Passive
}

// pick returns a usable upstream, or nil when none is.
func (p *pool) pick() *upstream {
	now := time.Now().UnixNano()
	n := len(p.ups)
	if p.least {
		var best *upstream
		start := int(p.next.Add(1) % uint64(n)) // rotate ties
		for i := 0; i < n; i++ {
			u := p.ups[(start+i)%n]
			if u.usable(now) && (best == nil || u.active.Load() < best.active.Load()) {
				best = u
			}
		}
		return best
	}
	start := p.next.Add(1)
	for i := 0; i < n; i++ {
		if u := p.ups[int((start+uint64(i))%uint64(n))]; u.usable(now) {
			return u
		}
	}
	return nil
}

// failedStatus reports whether an upstream's status code counts against
// it (passive.fail_statuses; none by default).
func (p *pool) failedStatus(code int) bool {
	return code != 0 && slices.Contains(p.passive.FailStatuses, code)
}

// result records a proxied request's outcome for passive ejection. Only
// the upstream's faults count (connection refused or reset, a timeout, a
// broken response, a status in fail_statuses); what a client does wrong
// never takes an upstream out for everyone.
func (p *pool) result(u *upstream, failed bool) {
	if p.passive.MaxFails <= 0 {
		return
	}
	if !failed {
		u.fails.Store(0)
		return
	}
	if int(u.fails.Add(1)) >= p.passive.MaxFails {
		u.fails.Store(0)
		u.ejectedUntil.Store(time.Now().Add(p.passive.EjectFor.D()).UnixNano())
	}
}

// check runs active health checks until ctx ends.
func (p *pool) check(ctx context.Context, h config.Health, client *http.Client, onChange func(u *upstream, healthy bool)) {
	if h.Path == "" {
		return
	}
	t := time.NewTicker(h.Interval.D())
	defer t.Stop()
	for {
		for _, u := range p.ups {
			ok := probe(ctx, client, u.url, h)
			u.mu.Lock()
			if ok {
				u.checkFails, u.checkPasses = 0, u.checkPasses+1
				if !u.healthy.Load() && u.checkPasses >= h.Passes {
					u.healthy.Store(true)
					onChange(u, true)
				}
			} else {
				u.checkPasses, u.checkFails = 0, u.checkFails+1
				if u.healthy.Load() && u.checkFails >= h.Fails {
					u.healthy.Store(false)
					onChange(u, false)
				}
			}
			u.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func probe(ctx context.Context, c *http.Client, base *url.URL, h config.Health) bool {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout.D())
	defer cancel()
	u := *base
	u.Path = singleJoin(base.Path, h.Path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "ops-health-check")
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

func singleJoin(a, b string) string {
	switch {
	case a == "" || a == "/":
		return b
	case a[len(a)-1] == '/' && len(b) > 0 && b[0] == '/':
		return a + b[1:]
	case a[len(a)-1] != '/' && (len(b) == 0 || b[0] != '/'):
		return a + "/" + b
	}
	return a + b
}
