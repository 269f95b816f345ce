package collector

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
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
		if got := clientAddr(r, trusted).String(); got != c.want {
			t.Errorf("%s via %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
}

// The visitor id uses the truncated address: two clients in one /24 with the
// same browser and site are one visitor; another /24 is another.
func TestVisitorIDTruncates(t *testing.T) {
	salt := []byte("salt")
	r := httptest.NewRequest("POST", "/beacon/v1/batch", nil)
	r.Header.Set("Origin", "https://shop.example")
	r.Header.Set("User-Agent", "UA")
	a := visitorID(salt, r, netip.MustParseAddr("198.51.100.7"))
	b := visitorID(salt, r, netip.MustParseAddr("198.51.100.200"))
	c := visitorID(salt, r, netip.MustParseAddr("198.51.101.7"))
	d := visitorID([]byte("tomorrow"), r, netip.MustParseAddr("198.51.100.7"))
	if a != b || a == c || a == d {
		t.Fatalf("ids %s %s %s %s", a, b, c, d)
	}
}
