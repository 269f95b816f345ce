package dnsd

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opsgraph/ops/internal/config"
)

// Per-client settings (dns.clients). A query is matched to at most one
// client entry: by its DoH path token (/dns-query/<token>, as NextDNS
// does), else the first label of the name its DoT connection asked for
// (kids.dns.example.com -> kids), else the longest address prefix. A
// matched client's own lists and blocked services are checked before the
// global lists, and its allow list wins over them; schedules block
// services only within their hours.

// caller is who asked, and how.
type caller struct {
	addr      netip.Addr
	via       string
	encrypted bool
	token     string // DoH path token
	sni       string // DoT server name
}

type dnsClient struct {
	cfg      config.DNSClient
	prefixes []netip.Prefix
	lists    *lists
	filt     atomic.Pointer[filter] // lists, allow and blocked services
	sched    *schedule
}

// schedule blocks its services on its days between from and to.
type schedule struct {
	filt     *filter
	days     map[time.Weekday]bool // empty: every day
	from, to int                   // minutes after midnight
	loc      *time.Location
}

func (s *schedule) active(now time.Time) bool {
	if s == nil {
		return false
	}
	t := now.In(s.loc)
	if len(s.days) > 0 && !s.days[t.Weekday()] {
		return false
	}
	m := t.Hour()*60 + t.Minute()
	if s.from <= s.to {
		return m >= s.from && m < s.to
	}
	return m >= s.from || m < s.to // over midnight: 22:00-06:00
}

func servicesFilter(services []string, source string) *filter {
	f := newFilter()
	for _, sv := range services {
		for _, d := range config.DNSServiceDomains(sv) {
			f.add(d, rule{kind: ruleBlock, source: source + ":" + sv})
		}
	}
	return f
}

func newClients(cfgs []config.DNSClient, dataDir string, s *Server) ([]*dnsClient, error) {
	var out []*dnsClient
	for _, c := range cfgs {
		dc := &dnsClient{cfg: c, lists: newLists(config.DNSBlock{Lists: c.Lists, Allow: c.Allow}, dataDir, s.log.With("client", c.Name))}
		for _, a := range c.Addresses {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				ad, _ := netip.ParseAddr(a)
				p = netip.PrefixFrom(ad, ad.BitLen())
			}
			dc.prefixes = append(dc.prefixes, p.Masked())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := dc.lists.load(ctx)
		cancel()
		if err != nil {
			return nil, err
		}
		dc.rebuild()
		if sc := c.Schedule; len(sc.Services) > 0 {
			from, _ := time.Parse("15:04", sc.From)
			to, _ := time.Parse("15:04", sc.To)
			loc := time.Local
			if sc.Timezone != "" {
				loc, _ = time.LoadLocation(sc.Timezone)
			}
			dc.sched = &schedule{filt: servicesFilter(sc.Services, "schedule"), days: map[time.Weekday]bool{},
				from: from.Hour()*60 + from.Minute(), to: to.Hour()*60 + to.Minute(), loc: loc}
			for _, d := range sc.Days {
				i := strings.Index("sunmontuewedthufrisat", strings.ToLower(d))
				dc.sched.days[time.Weekday(i/3)] = true
			}
		}
		out = append(out, dc)
	}
	return out, nil
}

// rebuild makes the client's filter from its lists and services.
func (c *dnsClient) rebuild() {
	f := c.lists.build()
	for _, sv := range c.cfg.BlockedServices {
		for _, d := range config.DNSServiceDomains(sv) {
			f.add(d, rule{kind: ruleBlock, source: "service:" + sv})
		}
	}
	c.filt.Store(f)
}

// decide is the client's verdict on a name: blocked (by), allowed (its
// allow list), or neither (the global lists decide).
func (c *dnsClient) decide(name string, now time.Time) (blocked, allowed bool, by string) {
	if c.sched.active(now) {
		if b, r := c.sched.filt.match(name); b {
			return true, false, r
		}
	}
	f := c.filt.Load()
	if b, r := f.match(name); b {
		return true, false, r
	}
	return false, f.allows(name), ""
}

// clientFor finds the client entry of a query, or nil.
func (s *Server) clientFor(c caller) *dnsClient {
	if len(s.clients) == 0 {
		return nil
	}
	if c.token != "" {
		return s.byToken[c.token]
	}
	if c.sni != "" {
		label, _, _ := strings.Cut(strings.ToLower(c.sni), ".")
		if dc := s.byDoT[label]; dc != nil {
			return dc
		}
	}
	var best *dnsClient
	bits := -1
	if !c.addr.IsValid() {
		return nil
	}
	for _, dc := range s.clients {
		for _, p := range dc.prefixes {
			if p.Bits() > bits && p.Contains(c.addr) {
				best, bits = dc, p.Bits()
			}
		}
	}
	return best
}
