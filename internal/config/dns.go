package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNS configures the resolver (docs/dns.md). It runs when upstreams are
// set.
type DNS struct {
	Upstreams    Strings      `yaml:"upstreams" doc:"where queries go: https://host/dns-query (DoH), tls://host[:853] (DoT), quic://host[:853] (DoQ), sdns://... (a DNSCrypt stamp); udp://host[:53] and tcp://host[:53] only with allow_plain; empty: no resolver (the module is off)"`
	AllowPlain   bool         `yaml:"allow_plain" doc:"allow unencrypted upstreams (udp://, tcp://), e.g. a LAN's own resolver"`
	Strategy     string       `yaml:"strategy" doc:"parallel (ask all, take the first good answer), round_robin, or failover (in order, the next on error)"`
	Forward      []DNSForward `yaml:"forward" doc:"conditional forwarding: names under a domain go to their own upstreams, e.g. {domain: corp.example, upstreams: [udp://10.0.0.2]}"`
	Bootstrap    Strings      `yaml:"bootstrap" doc:"addresses of upstream hosts given by name, as host=ip (e.g. dns.google=8.8.8.8): upstream names are never looked up in plain DNS"`
	Timeout      Duration     `yaml:"timeout" doc:"how long an upstream has to answer"`
	UpstreamCA   string       `yaml:"upstream_ca" doc:"CA certificates (PEM) that DoH and DoT upstreams' certificates are checked against instead of the system's (a private resolver)"`
	Listen       string       `yaml:"listen" doc:"plain DNS over UDP and TCP (a LAN's port 53); empty: off"`
	DoTListen    string       `yaml:"dot_listen" doc:"DNS over TLS (RFC 7858), e.g. :853; needs tls_cert and tls_key; empty: off"`
	DoQListen    string       `yaml:"doq_listen" doc:"DNS over QUIC (RFC 9250, UDP), e.g. :853; needs tls_cert and tls_key; empty: off"`
	DoHListen    string       `yaml:"doh_listen" doc:"DNS over HTTPS on a port of its own (HTTP/2 over TLS, /dns-query), served by a lighter HTTP/2 server than the main listener's, e.g. :8443; needs tls_cert and tls_key; empty: off"`
	TLSCert      string       `yaml:"tls_cert" doc:"certificate chain (PEM) for dot_listen, doq_listen and doh_listen"`
	TLSKey       string       `yaml:"tls_key" doc:"its key (PEM)"`
	DoH          bool         `yaml:"doh" doc:"serve DNS over HTTPS (RFC 8484, and JSON like Google's) at /dns-query on the main listener"`
	SafeSearch   bool         `yaml:"safe_search" doc:"answer Google, Bing, DuckDuckGo and YouTube with their safe-search hosts (forcesafesearch.google.com, strict.bing.com, safe.duckduckgo.com, restrict.youtube.com)"`
	StripECS     bool         `yaml:"strip_ecs" doc:"remove EDNS Client Subnet from queries before they go upstream"`
	Events       bool         `yaml:"events" doc:"record every query as an ev.dns.query event (client address anonymised to its /24 or /48)"`
	CheckDomain  string       `yaml:"check_domain" doc:"a domain whose names the resolver answers itself, for the client check page /_ops/dns-check (e.g. dnscheck.example.com, with no other DNS of its own); empty: no client check"`
	CheckAddress string       `yaml:"check_address" doc:"the address names under check_domain resolve to: where browsers reach Ops (its proxy's public IP)"`
	Cache        DNSCache     `yaml:"cache"`
	DNSSEC       DNSSEC       `yaml:"dnssec"`
	Block        DNSBlock     `yaml:"block"`
	Clients      []DNSClient  `yaml:"clients" doc:"settings for groups of clients, matched by DoH path token, DoT name or address; see docs/dns.md"`
}

// DNSSEC configures validation.
type DNSSEC struct {
	Validate     bool    `yaml:"validate" doc:"validate answers with DNSSEC: a chain of signatures from a trust anchor; a secure answer gets the AD bit, a bogus one is SERVFAIL with an Extended DNS Error saying why; names under dns.forward domains are not validated unless a trust anchor is given for them"`
	TrustAnchors Strings `yaml:"trust_anchors" doc:"DS or DNSKEY records in zone-file form that validation starts from; empty: the root zone's keys (KSK-2017 and KSK-2024)"`
	Insecure     Strings `yaml:"insecure" doc:"domains not validated (negative trust anchors, RFC 7646), e.g. a private zone under a signed public one"`
}

// DNSClient is the settings of one client or group of clients.
type DNSClient struct {
	Name string `yaml:"name"`
	// Matched by the first that applies: a DoH path token
	// (/dns-query/<token>), a DoT server-name label (<label>.dns.example.com),
	// the longest address prefix.
	Addresses       Strings     `yaml:"addresses"`
	DoHToken        string      `yaml:"doh_token"`
	DoTName         string      `yaml:"dot_name"`
	Lists           Strings     `yaml:"lists"`
	Allow           Strings     `yaml:"allow"`
	SafeSearch      bool        `yaml:"safe_search"`
	BlockedServices Strings     `yaml:"blocked_services"`
	Schedule        DNSSchedule `yaml:"schedule"`
}

// DNSSchedule blocks services at set times.
type DNSSchedule struct {
	Services Strings `yaml:"services"`
	Days     Strings `yaml:"days"` // mon..sun; empty: every day
	From     string  `yaml:"from"` // 15:04
	To       string  `yaml:"to"`
	Timezone string  `yaml:"timezone"`
}

// DNSForward sends the names under a domain to their own upstreams.
type DNSForward struct {
	Domain    string  `yaml:"domain"`
	Upstreams Strings `yaml:"upstreams"`
}

// DNSCache sizes the answer cache.
type DNSCache struct {
	Size        int      `yaml:"size" doc:"most answers kept; the least recently used go first; 0: no cache"`
	MinTTL      Duration `yaml:"min_ttl" doc:"answers are kept at least this long, whatever their TTL"`
	MaxTTL      Duration `yaml:"max_ttl" doc:"and at most this long"`
	NegativeTTL Duration `yaml:"negative_ttl" doc:"most time NXDOMAIN and empty answers are kept (RFC 2308: the SOA's minimum, capped by this)"`
	Prefetch    bool     `yaml:"prefetch" doc:"fetch a name asked at least twice again in the background in its last tenth of life (TTLs of 3 s and more), so popular names do not expire in front of clients"`
	ServeStale  Duration `yaml:"serve_stale" doc:"while upstreams fail, expired answers this young are served with a TTL of 30 s (RFC 8767); 0: never"`
}

// DNSBlock configures filtering.
type DNSBlock struct {
	Lists   Strings  `yaml:"lists" doc:"block lists, files or http(s) URLs: hosts files, one domain a line, *.wildcards, AdGuard/ABP rules (||example.com^, @@||example.com^ allows, $important, /regex/)"`
	Refresh Duration `yaml:"refresh" doc:"how often lists given by URL are fetched again (with If-None-Match); a failed fetch keeps the list held"`
	Allow   Strings  `yaml:"allow" doc:"domains never blocked (and their subdomains), whatever the lists say"`
	Mode    string   `yaml:"mode" doc:"the answer to a blocked name: nxdomain, refused, null (0.0.0.0 and ::), or an address (a block page the proxy serves)"`
}

// ValidDoHToken reports whether s could be a dns.clients doh_token or
// dot_name label (1 to 64 of A-Z a-z 0-9 _ -); servers check it per
// request.
func ValidDoHToken(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// dnsServices are the domains of the services clients can block by name
// (AdGuard Home's "blocked services" idea): each blocks the domains and
// their subdomains.
var dnsServices = map[string][]string{
	"facebook":  {"facebook.com", "facebook.net", "fb.com", "fbcdn.net", "fbsbx.com", "messenger.com"},
	"instagram": {"instagram.com", "cdninstagram.com", "ig.me"},
	"tiktok":    {"tiktok.com", "tiktokcdn.com", "tiktokv.com", "tiktokcdn-us.com", "byteoversea.com", "ibytedtos.com", "musical.ly"},
	"youtube":   {"youtube.com", "youtu.be", "ytimg.com", "googlevideo.com", "youtube-nocookie.com", "youtubei.googleapis.com"},
	"twitter":   {"twitter.com", "x.com", "twimg.com", "t.co"},
	"reddit":    {"reddit.com", "redd.it", "redditmedia.com", "redditstatic.com"},
	"snapchat":  {"snapchat.com", "snap.com", "sc-cdn.net", "snapkit.co"},
	"whatsapp":  {"whatsapp.com", "whatsapp.net", "wa.me"},
	"discord":   {"discord.com", "discord.gg", "discordapp.com", "discordapp.net", "discord.media"},
	"netflix":   {"netflix.com", "nflxvideo.net", "nflximg.net", "nflxext.com", "nflxso.net"},
	"twitch":    {"twitch.tv", "ttvnw.net", "jtvnw.net", "twitchcdn.net"},
	"steam":     {"steampowered.com", "steamcommunity.com", "steamstatic.com", "steamcontent.com"},
}

// KnownDNSService reports whether name is a service clients can block.
func KnownDNSService(name string) bool { _, ok := dnsServices[name]; return ok }

// DNSServiceDomains are a service's domains.
func DNSServiceDomains(name string) []string { return dnsServices[name] }

// DNSServiceNames lists the services, sorted.
func DNSServiceNames() []string {
	out := make([]string, 0, len(dnsServices))
	for n := range dnsServices {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func defaultDNS() DNS {
	return DNS{Strategy: "parallel", Timeout: Duration(3 * time.Second), DoH: true, StripECS: true, Events: true,
		Cache: DNSCache{Size: 10_000, MinTTL: 0, MaxTTL: Duration(24 * time.Hour), NegativeTTL: Duration(time.Hour), Prefetch: true, ServeStale: Duration(24 * time.Hour)},
		Block: DNSBlock{Mode: "nxdomain", Refresh: Duration(24 * time.Hour)}}
}

func (c *Config) validateDNS(add func(path, format string, a ...any)) {
	d := c.DNS
	if len(d.Upstreams) == 0 {
		return
	}
	boot := map[string]bool{}
	for _, b := range d.Bootstrap {
		host, ip, ok := strings.Cut(b, "=")
		if _, err := netip.ParseAddr(ip); !ok || host == "" || err != nil {
			add("dns.bootstrap", "want host=ip, e.g. dns.google=8.8.8.8; got %q", b)
			continue
		}
		boot[strings.ToLower(host)] = true
	}
	checkUp := func(path, u string) {
		if strings.HasPrefix(u, "sdns://") {
			return // a DNSCrypt stamp, with the resolver's address in it: read by the dns module
		}
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			add(path, "invalid upstream %q (examples: https://dns.google/dns-query, tls://1.1.1.1, sdns://... (DNSCrypt), udp://10.0.0.2)", u)
			return
		}
		switch p.Scheme {
		case "https", "tls", "quic":
		case "udp", "tcp":
			if !d.AllowPlain {
				add(path, "%s is plain DNS, which anyone on the path can read and change; set dns.allow_plain: true to allow it", u)
			}
		default:
			add(path, "scheme %q of %s: want https, tls, quic, sdns (a DNSCrypt stamp), udp or tcp", p.Scheme, u)
			return
		}
		if _, err := netip.ParseAddr(p.Hostname()); err != nil && !boot[strings.ToLower(p.Hostname())] {
			add(path, "%s names a host; give its address in dns.bootstrap (%s=<ip>) so it is not looked up in plain DNS", u, p.Hostname())
		}
	}
	for _, u := range d.Upstreams {
		checkUp("dns.upstreams", u)
	}
	for i, f := range d.Forward {
		path := fmt.Sprintf("dns.forward[%d]", i)
		if strings.Trim(f.Domain, ".") == "" {
			add(path+".domain", "must not be empty")
		}
		if len(f.Upstreams) == 0 {
			add(path+".upstreams", "must not be empty")
		}
		for _, u := range f.Upstreams {
			checkUp(path+".upstreams", u)
		}
	}
	switch d.Strategy {
	case "parallel", "round_robin", "failover":
	default:
		add("dns.strategy", "want parallel, round_robin or failover, got %q", d.Strategy)
	}
	if d.Timeout < Duration(10*time.Millisecond) || d.Timeout > Duration(time.Minute) {
		add("dns.timeout", "want 10ms to 1m, got %s", d.Timeout)
	}
	for path, l := range map[string]string{"dns.listen": d.Listen, "dns.dot_listen": d.DoTListen, "dns.doq_listen": d.DoQListen, "dns.doh_listen": d.DoHListen} {
		if l != "" {
			if err := checkListen(l); err != nil {
				add(path, "%v", err)
			}
		}
	}
	if d.DoTListen != "" && (d.TLSCert == "" || d.TLSKey == "") {
		add("dns.dot_listen", "needs dns.tls_cert and dns.tls_key")
	}
	if d.DoQListen != "" && (d.TLSCert == "" || d.TLSKey == "") {
		add("dns.doq_listen", "needs dns.tls_cert and dns.tls_key")
	}
	if d.DoHListen != "" && (d.TLSCert == "" || d.TLSKey == "") {
		add("dns.doh_listen", "needs dns.tls_cert and dns.tls_key")
	}
	if d.CheckDomain != "" {
		if _, err := netip.ParseAddr(d.CheckAddress); err != nil {
			add("dns.check_address", "want the IP address browsers reach Ops at, for dns.check_domain; got %q", d.CheckAddress)
		}
		if strings.Count(strings.Trim(d.CheckDomain, "."), ".") < 1 {
			add("dns.check_domain", "want a domain of yours such as dnscheck.example.com, got %q", d.CheckDomain)
		}
	}
	for i, a := range d.DNSSEC.TrustAnchors {
		rr, err := dns.NewRR(a)
		switch {
		case err != nil || rr == nil:
			add(fmt.Sprintf("dns.dnssec.trust_anchors[%d]", i), "want a DS or DNSKEY record such as \". IN DS 20326 8 2 E06D...\": %v", err)
		case rr.Header().Rrtype != dns.TypeDS && rr.Header().Rrtype != dns.TypeDNSKEY:
			add(fmt.Sprintf("dns.dnssec.trust_anchors[%d]", i), "is a %s record; want DS or DNSKEY", dns.TypeToString[rr.Header().Rrtype])
		}
	}
	for i, n := range d.DNSSEC.Insecure {
		if _, ok := dns.IsDomainName(n); !ok || strings.Trim(n, ".") == "" {
			add(fmt.Sprintf("dns.dnssec.insecure[%d]", i), "want a domain, got %q", n)
		}
	}
	if d.Cache.Size < 0 {
		add("dns.cache.size", "must not be negative")
	}
	if d.Cache.MaxTTL < d.Cache.MinTTL {
		add("dns.cache.max_ttl", "is below min_ttl")
	}
	for _, l := range d.Block.Lists {
		if strings.Contains(l, "://") {
			if u, err := url.Parse(l); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add("dns.block.lists", "%q: want a file or an http(s) URL", l)
			}
		}
	}
	if d.Block.Refresh < Duration(time.Minute) {
		add("dns.block.refresh", "want at least 1m, got %s", d.Block.Refresh)
	}
	names := map[string]bool{}
	for i, c := range d.Clients {
		path := fmt.Sprintf("dns.clients[%d]", i)
		if c.Name == "" || names[c.Name] {
			add(path+".name", "want a name of its own, got %q", c.Name)
		}
		names[c.Name] = true
		if len(c.Addresses) == 0 && c.DoHToken == "" && c.DoTName == "" {
			add(path, "matches nothing: give addresses, doh_token or dot_name")
		}
		for _, a := range c.Addresses {
			if _, err := netip.ParsePrefix(a); err != nil {
				if _, err := netip.ParseAddr(a); err != nil {
					add(path+".addresses", "want an address or a CIDR, got %q", a)
				}
			}
		}
		if t := c.DoHToken; t != "" && !ValidDoHToken(t) {
			add(path+".doh_token", "want 1 to 64 letters, digits, - or _, got %q", t)
		}
		if t := c.DoTName; t != "" && !ValidDoHToken(t) {
			add(path+".dot_name", "want one DNS label, got %q", t)
		}
		for _, sv := range append(append(Strings{}, c.BlockedServices...), c.Schedule.Services...) {
			if !KnownDNSService(sv) {
				add(path+".blocked_services", "unknown service %q (known: %s)", sv, strings.Join(DNSServiceNames(), ", "))
			}
		}
		if sc := c.Schedule; len(sc.Services) > 0 {
			for _, hm := range []string{sc.From, sc.To} {
				if _, err := time.Parse("15:04", hm); err != nil {
					add(path+".schedule", "from and to: want HH:MM, got %q", hm)
				}
			}
			for _, day := range sc.Days {
				if !strings.Contains("mon tue wed thu fri sat sun", strings.ToLower(day)) || len(day) != 3 {
					add(path+".schedule.days", "want mon, tue, ... sun, got %q", day)
				}
			}
			if sc.Timezone != "" {
				if _, err := time.LoadLocation(sc.Timezone); err != nil {
					add(path+".schedule.timezone", "%v", err)
				}
			}
		}
	}
	switch m := d.Block.Mode; m {
	case "nxdomain", "refused", "null":
	default:
		if _, err := netip.ParseAddr(m); err != nil {
			add("dns.block.mode", "want nxdomain, refused, null or an IP address, got %q", m)
		}
	}
}
