package dnsd

import (
	"context"
	"regexp"

	"github.com/miekg/dns"
)

// Safe search (dns.safe_search): the search engines' own mechanisms for
// networks that want it, by DNS: their names are answered as a CNAME to
// the host each engine runs for the purpose, and that host's addresses.
// Google: forcesafesearch.google.com; Bing: strict.bing.com;
// DuckDuckGo: safe.duckduckgo.com; YouTube: restrict.youtube.com
// (Restricted Mode, strict).

// safeTargets maps exact names to their safe host.
var safeTargets = map[string]string{
	"bing.com": "strict.bing.com", "www.bing.com": "strict.bing.com",
	"duckduckgo.com": "safe.duckduckgo.com", "www.duckduckgo.com": "safe.duckduckgo.com", "start.duckduckgo.com": "safe.duckduckgo.com",
	"youtube.com": "restrict.youtube.com", "www.youtube.com": "restrict.youtube.com", "m.youtube.com": "restrict.youtube.com",
	"youtubei.googleapis.com": "restrict.youtube.com", "youtube.googleapis.com": "restrict.youtube.com",
	"www.youtube-nocookie.com": "restrict.youtube.com",
}

// googleSearch is Google's search on its country domains.
var googleSearch = regexp.MustCompile(`^(www\.)?google\.(com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2})$`)

// safeTarget returns the safe host for name, or "": Google's search on
// every country domain (google.com, www.google.co.uk, ...) and the
// names above.
func safeTarget(name string) string {
	if t, ok := safeTargets[name]; ok {
		return t
	}
	if googleSearch.MatchString(name) {
		return "forcesafesearch.google.com"
	}
	return ""
}

// safeAnswer answers a safe-search name: a CNAME to its safe host, then
// what the safe host resolves to (through the cache and upstreams, like
// any name).
func (s *Server) safeAnswer(ctx context.Context, req *dns.Msg, target string, o *outcome) *dns.Msg {
	q := req.Question[0]
	sub := req.Copy()
	sub.Question = []dns.Question{{Name: target + ".", Qtype: q.Qtype, Qclass: q.Qclass}}
	var so outcome
	r := s.answer(ctx, sub, &so)
	o.upstream, o.cached, o.rule = so.upstream, so.cached, "safe_search:"+target
	out := r.Copy()
	out.Question = req.Question
	cname := &dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300}, Target: target + "."}
	out.Answer = append([]dns.RR{cname}, r.Answer...)
	return out
}
