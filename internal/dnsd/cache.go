package dnsd

import (
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"

	"github.com/opsgraph/ops/internal/config"
)

// cache keeps upstream answers for their TTL (clamped to min_ttl and
// max_ttl), negative answers for the SOA's minimum (RFC 2308, capped by
// negative_ttl), and expired answers for serve_stale more, which are used
// only when every upstream fails (RFC 8767, with a TTL of 30 s). It is an
// LRU of at most cache.size answers, kept parsed: a hit is a copy with
// its TTLs counted down (unpacking the wire form again cost a fifth of a
// cached query's time).
type cache struct {
	cfg config.DNSCache
	lru *lru.Cache[cacheKey, *cached]
	now func() time.Time
}

type cacheKey struct {
	name          string
	qtype, qclass uint16
	// do: the client asked for DNSSEC records; cd: checking disabled.
	do, cd bool
}

type cached struct {
	msg     *dns.Msg // never changed once stored; hits copy it
	stored  time.Time
	expires time.Time
	// hits and fetching drive prefetch: a name asked again and again is
	// fetched anew shortly before it expires, once.
	hits     atomic.Int32
	fetching atomic.Bool
}

// Prefetch (dns.cache.prefetch): an answer asked at least prefetchHits
// times, with a TTL of at least prefetchMinTTL, is fetched again in the
// background by the first query in its last tenth of life (at least the
// last second), so popular names never expire in front of a client.
const (
	prefetchHits   = 2
	prefetchMinTTL = 3 * time.Second
)

// staleTTL is the TTL of a stale answer (RFC 8767 recommends 30 s).
const staleTTL = 30

func newCache(cfg config.DNSCache) *cache {
	if cfg.Size <= 0 {
		return nil
	}
	l, _ := lru.New[cacheKey, *cached](cfg.Size)
	return &cache{cfg: cfg, lru: l, now: time.Now}
}

func keyOf(q *dns.Msg, name string) cacheKey {
	k := cacheKey{name: name, qtype: q.Question[0].Qtype, qclass: q.Question[0].Qclass, cd: q.CheckingDisabled}
	if o := q.IsEdns0(); o != nil {
		k.do = o.Do()
	}
	return k
}

// get returns a fresh answer with its TTLs counted down, or an expired
// one still in the serve-stale window (stale true); nil when neither.
// prefetch is true for the one caller that should fetch it anew.
func (c *cache) get(k cacheKey) (m *dns.Msg, stale, prefetch bool) {
	if c == nil {
		return nil, false, false
	}
	e, ok := c.lru.Get(k)
	if !ok {
		return nil, false, false
	}
	now := c.now()
	if now.After(e.expires) {
		if now.Sub(e.expires) > c.cfg.ServeStale.D() {
			c.lru.Remove(k)
			return nil, false, false
		}
		stale = true
	} else if c.cfg.Prefetch && e.hits.Add(1) >= prefetchHits {
		life := e.expires.Sub(e.stored)
		if life >= prefetchMinTTL && e.expires.Sub(now) <= max(life/10, time.Second) {
			prefetch = e.fetching.CompareAndSwap(false, true)
		}
	}
	m = e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			switch {
			case stale:
				h.Ttl = staleTTL
			case h.Ttl > age:
				h.Ttl -= age
			default:
				h.Ttl = 0
			}
		}
	}
	return m, stale, prefetch
}

// put stores an upstream answer when it can be cached.
func (c *cache) put(k cacheKey, m *dns.Msg) {
	if c == nil || m.Truncated {
		return
	}
	ttl, ok := c.ttl(m)
	if !ok {
		return
	}
	now := c.now()
	c.lru.Add(k, &cached{msg: m.Copy(), stored: now, expires: now.Add(ttl)})
}

// ttl is how long m may be kept, and whether it may be at all: answers
// for their lowest TTL, NXDOMAIN and NODATA for the SOA's (RFC 2308),
// nothing else (SERVFAIL, REFUSED).
func (c *cache) ttl(m *dns.Msg) (time.Duration, bool) {
	clamp := func(d time.Duration) time.Duration {
		return min(max(d, c.cfg.MinTTL.D()), c.cfg.MaxTTL.D())
	}
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		low := ^uint32(0)
		for _, rr := range m.Answer {
			low = min(low, rr.Header().Ttl)
		}
		return clamp(time.Duration(low) * time.Second), true
	case m.Rcode == dns.RcodeNameError || m.Rcode == dns.RcodeSuccess:
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				d := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
				return min(d, c.cfg.NegativeTTL.D()), true
			}
		}
	}
	return 0, false
}

func (c *cache) len() int {
	if c == nil {
		return 0
	}
	return c.lru.Len()
}
