package proxy

import (
	"net/url"
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/config"
)

// FuzzMatch: any Host header and path picks a route or none, never panics,
// and a route is only chosen when its path prefix holds segment-wise.
func FuzzMatch(f *testing.F) {
	cfg := config.Default()
	cfg.Proxy.Routes = []config.Route{
		{Name: "a", Hosts: config.Strings{"example.com"}, Path: "/api", Upstreams: config.Strings{"http://127.0.0.1:1"}},
		{Name: "b", Hosts: config.Strings{"*.example.org"}, Upstreams: config.Strings{"http://127.0.0.1:2"}},
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		f.Fatal(errs)
	}
	m := &Module{metrics: newMetrics(func() float64 { return 0 })}
	tb, err := m.build(cfg.Proxy)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("example.com:80", "/api/x")
	f.Add("[::1]:8080", "/")
	f.Add("a.example.org", "/apix")
	f.Add("", "")
	f.Add("[", "//api")
	f.Fuzz(func(t *testing.T, host, path string) {
		rt := tb.match(host, path)
		if rt != nil && rt.cfg.Name == "a" && !(path == "/api" || strings.HasPrefix(path, "/api/")) {
			t.Fatalf("route a for path %q", path)
		}
	})
}

// FuzzRedactQuery: a redacted parameter's value never reaches the event.
func FuzzRedactQuery(f *testing.F) {
	f.Add("token=abc&x=1")
	f.Add("TOKEN=abc&token=def")
	f.Add("%74oken=abc") // token, percent-encoded
	f.Add("utm_source=a&utm_source=b")
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := redactQuery(raw, map[string]bool{"token": true})
		vals, err := url.ParseQuery(q)
		if err != nil {
			t.Fatalf("redacted query does not parse: %q", q)
		}
		for k, vs := range vals {
			if strings.EqualFold(k, "token") {
				for _, v := range vs {
					if v != "REDACTED" {
						t.Fatalf("token value %q kept from %q", v, raw)
					}
				}
			}
		}
	})
}
