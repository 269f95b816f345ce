package proxy

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
)

func TestACL(t *testing.T) {
	a := compileACL(config.ACL{Default: "deny", Rules: []config.ACLRule{
		{Action: "deny", CIDRs: config.Strings{"203.0.113.0/24"}},
		{Action: "allow", Paths: config.Strings{"/public/**", "/favicon.ico"}},
		{Action: "allow", Paths: config.Strings{"/api/*/status"}, Methods: config.Strings{"get"}},
		{Action: "allow", Paths: config.Strings{"/admin/**"}, Users: config.Strings{"alice"}},
		{Action: "allow", Paths: config.Strings{"/reports/**"}, Groups: config.Strings{"Finance"}, Time: "08:00-18:00"},
		{Action: "allow", Paths: config.Strings{"/night/**"}, Time: "22:00-06:00"},
		{Action: "allow", Header: "X-Internal: yes"},
		{Action: "allow", Paths: config.Strings{"/any-key"}, Header: "X-Key: *"},
	}})
	noon := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	night := time.Date(2026, 11, 27, 23, 30, 0, 0, time.UTC)
	ip := netip.MustParseAddr("198.51.100.9")
	bad := netip.MustParseAddr("203.0.113.50")
	h := func(kv ...string) http.Header {
		x := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			x.Set(kv[i], kv[i+1])
		}
		return x
	}
	for _, c := range []struct {
		name string
		s    subject
		want bool
		rule int
	}{
		{"public deep", subject{method: "GET", path: "/public/a/b.css", ip: ip}, true, 1},
		{"favicon", subject{method: "GET", path: "/favicon.ico", ip: ip}, true, 1},
		{"blocked range first", subject{method: "GET", path: "/public/x", ip: bad}, false, 0},
		{"one segment glob", subject{method: "GET", path: "/api/v2/status", ip: ip}, true, 2},
		{"glob does not cross segments", subject{method: "GET", path: "/api/v2/x/status", ip: ip}, false, -1},
		{"method", subject{method: "POST", path: "/api/v2/status", ip: ip}, false, -1},
		{"user", subject{method: "GET", path: "/admin/x", ip: ip, user: "alice"}, true, 3},
		{"other user", subject{method: "GET", path: "/admin/x", ip: ip, user: "bob"}, false, -1},
		{"group in hours", subject{method: "GET", path: "/reports/q3", ip: ip, groups: []string{"finance"}, now: noon}, true, 4},
		{"group after hours", subject{method: "GET", path: "/reports/q3", ip: ip, groups: []string{"finance"}, now: night}, false, -1},
		{"window across midnight", subject{method: "GET", path: "/night/x", ip: ip, now: night}, true, 5},
		{"outside window", subject{method: "GET", path: "/night/x", ip: ip, now: noon}, false, -1},
		{"header value", subject{method: "GET", path: "/x", ip: ip, header: h("X-Internal", "yes")}, true, 6},
		{"header wrong value", subject{method: "GET", path: "/x", ip: ip, header: h("X-Internal", "no")}, false, -1},
		{"header any value", subject{method: "GET", path: "/any-key", ip: ip, header: h("X-Key", "k")}, true, 7},
		{"default deny", subject{method: "GET", path: "/", ip: ip}, false, -1},
	} {
		if c.s.header == nil {
			c.s.header = http.Header{}
		}
		if c.s.now.IsZero() {
			c.s.now = noon
		}
		got, rule := a.decide(c.s)
		if got != c.want || rule != c.rule {
			t.Errorf("%s: allowed %v by rule %d, want %v by %d", c.name, got, rule, c.want, c.rule)
		}
	}
}

func TestRateLimiter(t *testing.T) {
	l := newLimiter(2, config.RateLimit{Burst: 3, Overrides: map[string]float64{"vip": 100, "10.0.0.0/8": 50}})
	now := time.Now()
	ip := netip.MustParseAddr("198.51.100.1")
	n := 0
	for i := 0; i < 10; i++ {
		if ok, _ := l.allow("198.51.100.1", ip, 0, now); ok {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("burst: %d allowed, want 3", n)
	}
	ok, wait := l.allow("198.51.100.1", ip, 0, now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("refusal: %v %v", ok, wait)
	}
	if ok, _ := l.allow("198.51.100.1", ip, 0, now.Add(600*time.Millisecond)); !ok {
		t.Fatal("not refilled at 2/s after 600ms")
	}
	// Overrides by user and by range; other keys are separate buckets.
	for _, k := range []struct {
		key string
		ip  netip.Addr
	}{{"vip", netip.Addr{}}, {"10.1.2.3", netip.MustParseAddr("10.1.2.3")}} {
		n = 0
		for i := 0; i < 20; i++ {
			if ok, _ := l.allow(k.key, k.ip, 0, now.Add(time.Duration(i)*20*time.Millisecond)); ok {
				n++
			}
		}
		if n < 15 {
			t.Errorf("%s override: %d of 20 allowed", k.key, n)
		}
	}
}

func TestRedactQuery(t *testing.T) {
	q, utm := redactQuery("token=s3cret&Password=x&utm_source=news&utm_Medium=mail&page=2", map[string]bool{"token": true, "password": true})
	if q != "Password=REDACTED&page=2&token=REDACTED&utm_Medium=mail&utm_source=news" || utm["source"] != "news" || utm["medium"] != "mail" {
		t.Fatalf("%s %v", q, utm)
	}
	if q, _ := redactQuery("%zz=1&token=abc", map[string]bool{"token": true}); q != "" {
		t.Fatalf("unparseable query kept: %s", q)
	}
}
