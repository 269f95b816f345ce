package proxy

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/opsgraph/ops/internal/config"
)

// limiter holds one token bucket per key (client address or user), with
// per-key overrides. Idle buckets are swept so the map stays bounded by the
// number of recently active clients.
type limiter struct {
	rate    rate.Limit
	burst   int
	users   map[string]rate.Limit
	cidrs   []cidrRate
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type cidrRate struct {
	p netip.Prefix
	r rate.Limit
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

func newLimiter(perSec float64, c config.RateLimit) *limiter {
	if perSec <= 0 {
		return nil
	}
	l := &limiter{rate: rate.Limit(perSec), burst: max(c.Burst, 1), users: map[string]rate.Limit{}, buckets: map[string]*bucket{}, swept: time.Now()}
	for k, v := range c.Overrides {
		if p, err := netip.ParsePrefix(k); err == nil {
			l.cidrs = append(l.cidrs, cidrRate{p.Masked(), rate.Limit(v)})
		} else {
			l.users[k] = rate.Limit(v)
		}
	}
	return l
}

// allow takes a token for key; it reports how long to wait when refused.
// override is a POLICY rate for this key, or 0.
func (l *limiter) allow(key string, ip netip.Addr, override float64, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 5*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		r := l.rate
		if ur, ok := l.users[key]; ok {
			r = ur
		}
		for _, c := range l.cidrs {
			if ip.IsValid() && c.p.Contains(ip) {
				r = c.r
			}
		}
		b = &bucket{l: rate.NewLimiter(r, l.burst)}
		l.buckets[key] = b
	}
	if override > 0 && b.l.Limit() != rate.Limit(override) {
		b.l.SetLimitAt(now, rate.Limit(override))
	}
	b.seen = now
	res := b.l.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}
