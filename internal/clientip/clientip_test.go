package clientip

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestFrom(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct {
		remote, xff, want string
	}{
		{"203.0.113.9:5000", "", "203.0.113.9"},
		{"203.0.113.9:5000", "1.2.3.4", "203.0.113.9"},                        // an untrusted client cannot claim another address
		{"127.0.0.1:5000", "198.51.100.7", "198.51.100.7"},                    // behind our proxy
		{"127.0.0.1:5000", "6.6.6.6, 198.51.100.7, 10.1.2.3", "198.51.100.7"}, // nearest untrusted hop wins
		{"127.0.0.1:5000", "not-an-ip", "127.0.0.1"},                          // malformed: stop at the proxy
		{"[::ffff:127.0.0.1]:80", "2001:db8::1", "2001:db8::1"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := From(r, trusted).String(); got != c.want {
			t.Errorf("%s via %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
}

func TestAnonymize(t *testing.T) {
	for in, want := range map[string]string{"203.0.113.77": "203.0.113.0", "::ffff:10.1.2.3": "10.1.2.0", "2001:db8:1:2::9": "2001:db8:1::"} {
		if got := Anonymize(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("Anonymize(%s) = %s, want %s", in, got, want)
		}
	}
}
