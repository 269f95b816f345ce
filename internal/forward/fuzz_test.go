package forward

import (
	"strings"
	"testing"
)

// FuzzAuthority: whatever a CONNECT target or URL host holds, it parses
// to a lower-case host without spaces and a port in range, or an error.
func FuzzAuthority(f *testing.F) {
	for _, s := range []string{"example.com:443", "EXAMPLE.com.:443", "[::1]:443", "[fe80::1%eth0]:443", "bücher.example:443", "a:0", "a:65536", "a:+1", "x", ":443", "a b:443"} {
		f.Add(s, 0)
		f.Add(s, 80)
	}
	f.Fuzz(func(t *testing.T, a string, def int) {
		if def != 0 && def != 80 && def != 443 {
			return
		}
		host, port, err := parseAuthority(a, def)
		if err != nil {
			return
		}
		if host == "" || strings.ContainsAny(host, " \t\r\n") || host != strings.ToLower(host) || port < 1 || port > 65535 {
			t.Fatalf("%q -> %q %d", a, host, port)
		}
	})
}
