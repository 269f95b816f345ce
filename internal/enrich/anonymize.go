package enrich

import (
	"net/netip"
	"strings"
)

// AnonymizeIP truncates or removes the client IP address.
//
// Mode "truncate" keeps the network and zeroes the host part: IPv4 to its
// /24 (1.2.3.4 -> 1.2.3.0), IPv6 to its /48 (2001:db8:1234:5678::1 ->
// 2001:db8:1234::). An IPv4-mapped IPv6 address is truncated as IPv4 and
// written in IPv4 form, and an "address:port" keeps only the truncated
// address. Mode "drop" deletes the field.
//
// Whatever cannot be truncated is deleted, never passed through: an
// unparseable string, and also a present value that is not a string (a
// number, an object), because a raw value under an IP field may still
// identify a person. A missing field is left missing.
type AnonymizeIP struct {
	field path
	drop  bool
}

var _ Enricher = (*AnonymizeIP)(nil)

func buildAnonymizeIP(o Options) (Enricher, error) {
	field, err := optPath(o, "field")
	if err != nil {
		return nil, err
	}
	mode, err := optOneOf(o, "mode", "truncate", "drop")
	if err != nil {
		return nil, err
	}
	return &AnonymizeIP{field: field, drop: mode == "drop"}, nil
}

// Enrich implements Enricher; it never fails, since it only shortens or
// removes a value where one already is.
func (a *AnonymizeIP) Enrich(obj map[string]any) error {
	v, ok := a.field.get(obj)
	if !ok {
		return nil
	}
	if s, isStr := v.(string); isStr && !a.drop {
		if t, ok := truncateIP(s); ok {
			// The path exists up to its parent, so set cannot fail.
			return a.field.set(obj, t)
		}
	}
	a.field.del(obj)
	return nil
}

// truncateIP returns s's address with the host bits zeroed, or false when s
// is neither an address nor an address:port.
func truncateIP(s string) (string, bool) {
	s = strings.TrimSpace(s)
	ip, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return "", false
		}
		ip = ap.Addr()
	}
	// Zones are interface names on the sender's host, not part of the
	// address; Prefix would drop them anyway.
	ip = ip.WithZone("").Unmap()
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return "", false
	}
	return p.Addr().String(), true
}
