package canon

import (
	"errors"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// ErrHost is a Host that has no canonical form.
var ErrHost = errors.New("host: not a valid host name or address")

// idnaProfile maps internationalised names as browsers do for lookups
// (UTS #46, transitional processing off) and checks the result; '_' is
// allowed, as container and internal host names use it.
var idnaProfile = idna.New(idna.MapForLookup(), idna.StrictDomainName(false), idna.Transitional(false), idna.BidiRule())

// Host splits a Host header (or authority) into its canonical host and
// its port (empty when none was given): names lower case and in ASCII
// (IDNA), one trailing dot removed, IPv6 addresses without brackets in
// their RFC 5952 form. The empty host is returned as it is.
func Host(hostport string) (host, port string, err error) {
	if hostport == "" {
		return "", "", nil
	}
	host = hostport
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "", "", ErrHost
		}
		host, port = hostport[1:end], strings.TrimPrefix(hostport[end+1:], ":")
		if rest := hostport[end+1:]; rest != "" && rest[0] != ':' {
			return "", "", ErrHost
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return "", "", ErrHost
		}
		return a.String(), port, checkPort(port)
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		host, port = hostport[:i], hostport[i+1:]
		if err := checkPort(port); err != nil || strings.IndexByte(host, ':') >= 0 {
			return "", "", ErrHost
		}
	}
	if IsCanonicalHost(host) {
		return host, port, nil
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return "", "", ErrHost
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		return a.String(), port, nil
	}
	ascii, err := idnaProfile.ToASCII(host)
	ascii = strings.ToLower(ascii)
	if err != nil || !IsCanonicalHost(ascii) {
		return "", "", ErrHost
	}
	return ascii, port, nil
}

func checkPort(p string) error {
	if len(p) > 5 {
		return ErrHost
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return ErrHost
		}
	}
	return nil
}

// IsCanonicalHost reports whether h (no port) needs no change: lower-case
// letters, digits, '-', '_' and single inner dots. (An xn-- label passes
// unchecked: it is ASCII, and matching compares it byte for byte.)
func IsCanonicalHost[T string | []byte](h T) bool {
	if len(h) == 0 || h[len(h)-1] == '.' || h[0] == '.' {
		return false
	}
	prevDot := false
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			prevDot = false
		case c == '.':
			if prevDot {
				return false
			}
			prevDot = true
		default:
			return false
		}
	}
	return true
}
