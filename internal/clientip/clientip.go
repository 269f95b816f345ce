// Package clientip finds a request's client address behind trusted proxies
// and anonymises addresses the way every Ops event does (/24 for IPv4, /48
// for IPv6), so that a policy keyed by an anonymised address matches what
// events report.
package clientip

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ParsePrefixes parses a validated CIDR list (config checked it), skipping
// anything that does not parse.
func ParsePrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// From is the request's client: the connection's address, or, when
// that is a trusted proxy, the nearest untrusted address in
// X-Forwarded-For (read right to left, as proxies append).
func From(r *http.Request, trusted []netip.Prefix) netip.Addr {
	a, _ := FromVia(r, trusted)
	return a
}

// FromVia is From, and also whether the connection itself came from a
// trusted proxy (whose forwarding headers may then be passed on).
func FromVia(r *http.Request, trusted []netip.Prefix) (client netip.Addr, viaTrusted bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return Resolve(a, strings.Join(r.Header.Values("X-Forwarded-For"), ","), trusted)
}

// Resolve is FromVia for a connection from peer whose X-Forwarded-For
// values, joined by commas, are xff.
func Resolve(peer netip.Addr, xff string, trusted []netip.Prefix) (client netip.Addr, viaTrusted bool) {
	a := peer.Unmap()
	isTrusted := func(x netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(x) {
				return true
			}
		}
		return false
	}
	if !isTrusted(a) {
		return a, false
	}
	hops := strings.Split(xff, ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return a, true // a malformed hop: trust nothing beyond the proxy
		}
		h = h.Unmap()
		if !isTrusted(h) {
			return h, true
		}
		a = h
	}
	return a, true
}

// Anonymize zeroes the host bits: 203.0.113.7 -> 203.0.113.0, and an IPv6
// address keeps its /48.
func Anonymize(a netip.Addr) netip.Addr {
	a = a.WithZone("").Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Addr{}
	}
	return p.Addr()
}
