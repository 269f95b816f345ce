package analytics

import (
	"testing"
	"unicode/utf8"

	"github.com/opsgraph/ops/internal/event"
)

// TestProxyPage: which proxied responses are page views.
func TestProxyPage(t *testing.T) {
	for _, c := range []struct {
		status int
		ctype  string
		path   string
		want   bool
	}{
		{200, "text/html", "/", true},
		{200, "application/xhtml+xml", "/a", true},
		{200, "text/css", "/a.css", false},
		{200, "", "/", false},
		{404, "text/html", "/x", false},
		{304, "", "/pricing", true},
		{304, "", "/blog/post.html", true},
		{304, "", "/app.js", false},
		{304, "", "/v1.2/", true},
		{500, "text/html", "/", false},
	} {
		if got := proxyPage(c.status, c.ctype, c.path); got != c.want {
			t.Errorf("%d %q %s: %v", c.status, c.ctype, c.path, got)
		}
	}
}

// FuzzParseHit: whatever a tracking or proxy event's data holds, parsing
// it neither panics nor yields a hit with values past the bounds.
func FuzzParseHit(f *testing.F) {
	f.Add("track.page", []byte(`{"anonymousId":"a","context":{"page":{"path":"/x","url":"https://h/x?utm_source=s","referrer":"https://www.google.com/"},"userAgent":"Mozilla/5.0 Chrome/120.0"}}`))
	f.Add("track.track", []byte(`{"userId":"u","event":"Signup","properties":{"plan":"pro","n":1,"ok":true,"o":{}}}`))
	f.Add("proxy.request", []byte(`{"method":"GET","host":"Shop.Example:8080","path":"/p","status":200,"content_type":"text/html","ip":"10.0.0.0","user_agent":"Mozilla/5.0 Firefox/120.0","referrer":"https://t.co/x","utm":{"source":"x"}}`))
	f.Add("proxy.request", []byte(`{"method":"GET","host":"[::1]:80","path":"","status":304,"user_agent":"x"}`))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e := event.NewJSON("fuzz", typ, data)
		parse := parseHit
		if typ == "proxy.request" {
			parse = parseProxyHit
		}
		h, err := parse(&e)
		if err != nil {
			return
		}
		check := func(what, v string) {
			if len(v) > maxValueLen || !utf8.ValidString(v) && utf8.ValidString(string(data)) {
				t.Fatalf("%s: %q", what, v)
			}
		}
		check("page", h.page)
		check("name", h.name)
		for d, v := range h.visit {
			check(Dim(d).String(), v)
		}
		if len(h.props) > maxProps {
			t.Fatalf("%d props", len(h.props))
		}
	})
}
