package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestReload: POST /api/v1/proxy/reload swaps the routes; a request in
// flight on the old table finishes; a config that does not validate
// changes nothing.
func TestReload(t *testing.T) {
	a, _ := echoUpstream(t, "a")
	b, _ := echoUpstream(t, "b")
	release := make(chan struct{})
	started := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "part one;")
		w.(http.Flusher).Flush()
		close(started)
		<-release
		_, _ = io.WriteString(w, "part two")
	}))
	t.Cleanup(slow.Close)
	routes := []config.Route{
		{Name: "slow", Path: "/slow", Upstreams: config.Strings{slow.URL}},
		{Name: "main", Upstreams: config.Strings{a.URL}},
	}
	r, base := startProxy(t, routes, nil)
	next := r.Cfg
	r.App.SetReloader(func() (*config.Config, error) {
		c := *next
		c.Proxy.Routes = []config.Route{{Name: "main", Upstreams: config.Strings{b.URL}}}
		if errs := c.Validate(); len(errs) > 0 {
			return nil, errs
		}
		return &c, nil
	})
	if _, s := get(t, base, "x.test", "/"); s.Name != "a" {
		t.Fatalf("before: %s", s.Name)
	}
	// A long response in flight across the reload.
	body := make(chan string, 1)
	go func() {
		resp, err := testutil.Anonymous.Get(base + "/slow")
		if err != nil {
			body <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body <- string(b)
	}()
	<-started
	resp, err := http.Post(r.URL+"/api/v1/proxy/reload", "application/json", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reload: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, s := get(t, base, "x.test", "/"); s.Name != "b" {
		t.Fatalf("after: %s", s.Name)
	}
	close(release)
	if got := <-body; got != "part one;part two" {
		t.Fatalf("in-flight response: %q", got)
	}
	// A bad config is refused with the field named and changes nothing.
	r.App.SetReloader(func() (*config.Config, error) {
		c := *next
		c.Proxy.Routes = []config.Route{{Name: "Bad Name", Upstreams: config.Strings{"ftp://x"}}}
		if errs := c.Validate(); len(errs) > 0 {
			return nil, errs
		}
		return &c, nil
	})
	resp, _ = http.Post(r.URL+"/api/v1/proxy/reload", "application/json", nil)
	b2, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !contains(string(b2), "proxy.routes[0].name") {
		t.Fatalf("bad reload: %d %s", resp.StatusCode, b2)
	}
	if _, s := get(t, base, "x.test", "/"); s.Name != "b" {
		t.Fatalf("after refused reload: %s", s.Name)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
