package dnsd

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/opsgraph/ops/internal/config"
)

func answerOf(name string, ttl uint32) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Response = true
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.IPv4(192, 0, 2, 1)}}
	return m
}

// TestCacheTTLsAndPrefetch: TTLs count down, clamp to min/max, expire
// into the serve-stale window; a name asked twice is prefetched once by
// the first query in its last tenth of life, and again after it is
// stored anew.
func TestCacheTTLsAndPrefetch(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newCache(config.DNSCache{Size: 10, MinTTL: config.Duration(5 * time.Second), MaxTTL: config.Duration(time.Hour),
		NegativeTTL: config.Duration(time.Minute), ServeStale: config.Duration(time.Hour), Prefetch: true})
	c.now = func() time.Time { return now }
	q := new(dns.Msg)
	q.SetQuestion("a.example.", dns.TypeA)
	k := keyOf(q, "a.example")
	c.put(k, answerOf("a.example.", 100))
	m, stale, pf := c.get(k)
	if m == nil || stale || pf || m.Answer[0].Header().Ttl != 100 {
		t.Fatalf("fresh: %v %v %v", m, stale, pf)
	}
	now = now.Add(40 * time.Second)
	if m, _, pf = c.get(k); m.Answer[0].Header().Ttl != 60 || pf {
		t.Fatalf("40 s later: TTL %d, prefetch %v", m.Answer[0].Header().Ttl, pf)
	}
	now = now.Add(51 * time.Second) // 9 s left of 100: its last tenth
	if _, _, pf = c.get(k); !pf {
		t.Fatal("not prefetched in its last tenth")
	}
	if _, _, pf = c.get(k); pf {
		t.Fatal("prefetched twice")
	}
	now = now.Add(10 * time.Second)
	if m, stale, _ = c.get(k); !stale || m.Answer[0].Header().Ttl != staleTTL {
		t.Fatalf("expired: stale %v %v", stale, m)
	}
	c.put(k, answerOf("a.example.", 1)) // clamped up to min_ttl 5 s
	now = now.Add(4 * time.Second)
	if m, stale, _ = c.get(k); m == nil || stale {
		t.Fatal("min_ttl not applied")
	}
	c.put(k, answerOf("a.example.", 7200)) // clamped down to 1 h
	now = now.Add(3601 * time.Second)
	if _, stale, _ = c.get(k); !stale {
		t.Fatal("max_ttl not applied")
	}
	nx := new(dns.Msg)
	nx.SetRcode(q, dns.RcodeNameError)
	nx.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600}, Minttl: 300}}
	c.put(k, nx) // RFC 2308: min(SOA TTL, minimum), capped by negative_ttl (1 min)
	now = now.Add(61 * time.Second)
	if _, stale, _ = c.get(k); !stale {
		t.Fatal("negative_ttl not applied")
	}
	sf := new(dns.Msg)
	sf.SetRcode(q, dns.RcodeServerFailure)
	c.lru.Purge()
	c.put(k, sf)
	if m, _, _ = c.get(k); m != nil {
		t.Fatal("SERVFAIL cached")
	}
}
