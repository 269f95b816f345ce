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

// From is the request's client: the connection's address, or, when
// that is a trusted proxy, the nearest untrusted address in
// X-Forwarded-For (read right to left, as proxies append).
func From(r *http.Request, trusted []netip.Prefix) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	a = a.Unmap()
	isTrusted := func(x netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(x) {
				return true
			}
		}
		return false
	}
	if !isTrusted(a) {
		return a
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return a // a malformed hop: trust nothing beyond the proxy
		}
		h = h.Unmap()
		if !isTrusted(h) {
			return h
		}
		a = h
	}
	return a
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
