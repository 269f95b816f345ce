package proxy

import (
	"bufio"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/canon"
	"github.com/opsgraph/ops/internal/config"
)

// fuzzTable compiles routes (after mod) as the proxy would, without a
// running module.
func fuzzTable(f *testing.F, routes []config.Route, mod func(*config.Config)) *table {
	cfg := config.Default()
	cfg.Proxy.Routes = routes
	if mod != nil {
		mod(&cfg)
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		f.Fatal(errs)
	}
	m := &Module{metrics: newMetrics(func() float64 { return 0 }), log: slog.New(slog.DiscardHandler)}
	tb, err := m.build(cfg.Proxy)
	if err != nil {
		f.Fatal(err)
	}
	return tb
}

// FuzzMatch: any Host header and path picks a route or none, never panics,
// and a route is only chosen when its path prefix holds segment-wise.
func FuzzMatch(f *testing.F) {
	tb := fuzzTable(f, []config.Route{
		{Name: "a", Hosts: config.Strings{"example.com"}, Path: "/api", Upstreams: config.Strings{"http://127.0.0.1:1"}},
		{Name: "b", Hosts: config.Strings{"*.example.org"}, Upstreams: config.Strings{"http://127.0.0.1:2"}},
	}, nil)
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

// FuzzACLPath is the differential test of path canonicalisation: random
// request targets go through what the proxy does (net/http's parsing,
// canonRequest, route and ACL with both readings) with a rule denying
// /admin/**. Whenever the proxy would forward a request, neither the
// target as the client sent it nor the path sent upstream may read, to
// the permissive reference, as /admin or below. Both encoded-slash
// modes are held to it.
func FuzzACLPath(f *testing.F) {
	tables := map[bool]*table{}
	for _, keep := range []bool{false, true} {
		tables[keep] = fuzzTable(f, []config.Route{{Name: "site", Upstreams: config.Strings{"http://127.0.0.1:1"},
			ACL: config.ACL{Rules: []config.ACLRule{{Action: "deny", Paths: config.Strings{"/admin/**"}}}}}},
			func(c *config.Config) {
				if keep {
					c.Proxy.EncodedSlashes = "keep"
				}
			})
	}
	for _, s := range []string{"/admin", "//admin/x", "/x/../admin", "/%2e/admin", "/%61dmin", "/admin;x/y", "/a%2F..%2Fadmin",
		"/public/..;/admin", "/x/..%5Cadmin", "/ok/page", "/admin%20/x", "/ADMIN"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, target string, keep bool) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")))
		if err != nil {
			return // net/http refuses it before the proxy sees it
		}
		tb := tables[keep]
		alt, err := tb.canonRequest(r)
		if err != nil {
			return // refused with 400
		}
		p := r.URL.EscapedPath()
		rt := tb.match(hostOnly(r.Host), p)
		if rt == nil || alt != "" && tb.match(hostOnly(r.Host), alt) != rt {
			return
		}
		if ok, _ := rt.acl.decide(subject{method: "GET", path: p, alt: alt}); !ok {
			return
		}
		for what, q := range map[string]string{"the client's target": strings.SplitN(target, "?", 2)[0], "the path sent upstream": p} {
			if ref := canon.Lenient(q); ref == "/admin" || strings.HasPrefix(ref, "/admin/") {
				t.Fatalf("allowed %q (keep %v): %s reads as %q; sent upstream %q", target, keep, what, ref, p)
			}
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
