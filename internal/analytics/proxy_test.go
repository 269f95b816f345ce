package analytics_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

const (
	chrome  = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
)

// TestProxyPageviews: with analytics.proxy_pageviews, the HTML pages the
// proxy serves are page views of cookieless visitors; assets, API calls,
// errors, other methods and bots are not.
func TestProxyPageviews(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, ".css"):
			w.Header().Set("Content-Type", "text/css")
		case strings.HasPrefix(r.URL.Path, "/api/"):
			w.Header().Set("Content-Type", "application/json")
		case r.URL.Path == "/missing":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(404)
		case r.Header.Get("If-None-Match") == `"v1"`:
			w.WriteHeader(304)
			return
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("ETag", `"v1"`)
		}
		fmt.Fprint(w, "<!doctype html><title>x</title>")
	}))
	t.Cleanup(up.Close)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Proxy.Listen = "127.0.0.1:0"
		c.Proxy.Routes = []config.Route{{Name: "site", Upstreams: config.Strings{up.URL}}}
		c.Proxy.Tracking.Enabled = true
		c.Analytics.ProxyPageviews = true
	})
	var base string
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p := r.App.Proxy(); p != nil && len(p.Addrs()) > 0 {
			base = "http://" + p.Addrs()[0].String()
			return nil
		}
		return fmt.Errorf("proxy not listening")
	})
	do := func(method, path, ua string, hdr ...string) {
		req, _ := http.NewRequest(method, base+path, nil)
		req.Host = "Shop.Example"
		req.Header.Set("User-Agent", ua)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := testutil.Anonymous.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// Chrome: a visit from a newsletter, two pages, and what is not a page.
	do("GET", "/?utm_source=newsletter&utm_campaign=dec", chrome)
	do("GET", "/pricing", chrome, "Referer", "http://shop.example/")
	do("GET", "/app.css", chrome)
	do("GET", "/api/cart", chrome)
	do("POST", "/pricing", chrome)
	do("GET", "/missing", chrome)
	do("HEAD", "/", chrome)
	// Firefox: from Google, the pricing page, then again from its cache.
	do("GET", "/pricing", firefox, "Referer", "https://www.google.com/")
	do("GET", "/pricing", firefox, "If-None-Match", `"v1"`)
	do("GET", "/", "Googlebot/2.1 (+http://www.google.com/bot.html)")
	do("GET", "/", "")

	var agg aggAnswer
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		get(t, r.URL, "/api/v1/analytics/aggregate?period=day", r.Token, &agg)
		if agg.Results.Pageviews != 4 {
			return fmt.Errorf("%+v", agg.Results)
		}
		return nil
	})
	if a := agg.Results; a.Visitors != 2 || a.Visits != 2 || a.BounceRate != 0 {
		t.Errorf("aggregate: %+v", a)
	}
	type rows struct {
		Results []struct {
			Value               string
			Visitors, Pageviews int
		}
	}
	breakdown := func(prop string) string {
		var b rows
		get(t, r.URL, "/api/v1/analytics/breakdown?period=day&property="+prop, r.Token, &b)
		var out []string
		for _, x := range b.Results {
			out = append(out, fmt.Sprintf("%s:%d/%d", x.Value, x.Visitors, x.Pageviews))
		}
		return strings.Join(out, " ")
	}
	for prop, want := range map[string]string{
		"page":         "/pricing:2/3 /:1/1",
		"source":       "Google:1/2 newsletter:1/2",
		"utm_campaign": ":1/2 dec:1/2",
		"hostname":     "shop.example:2/4",
		"browser":      "Chrome:1/2 Firefox:1/2",
		"entry_page":   "/:1/2 /pricing:1/2",
	} {
		if got := breakdown(prop); got != want {
			t.Errorf("%s: %s, want %s", prop, got, want)
		}
	}
}
