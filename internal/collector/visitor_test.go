package collector

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

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
