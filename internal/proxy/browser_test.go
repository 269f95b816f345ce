package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/klauspost/compress/gzip"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestInjectedTrackerInBrowser: a site that knows nothing of Ops (its HTML
// is gzip'd and has no script) is put behind the proxy with injection on;
// a real browser's page view reaches Ops through the first-party /_ops/
// endpoints on the site's own host.
func TestInjectedTrackerInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Encoding", "gzip")
		g := gzip.NewWriter(w)
		fmt.Fprint(g, `<!doctype html><html><head><title>Shop</title></head><body><h1 id="h">Shop</h1></body></html>`)
		_ = g.Close()
	}))
	t.Cleanup(site.Close)
	const key = "wk_browser_test_key"
	r, base := startProxy(t, []config.Route{{Name: "shop", Upstreams: config.Strings{site.URL},
		Inject: config.Inject{Tracker: true, WriteKey: key}}}, func(c *config.Config) {
		c.Collector.WriteKeys = config.Strings{key}
	})
	ctx := testutil.Browser(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/products?utm_source=ads"),
		chromedp.WaitVisible(chromedp.CSS("#h")),
	); err != nil {
		t.Fatal(err)
	}
	scripts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('script[src="/_ops/ops.js"]').length`))
	if err != nil {
		t.Fatal(err)
	}
	if scripts != 1 {
		t.Fatalf("%d injected scripts", scripts)
	}
	b := testutil.BusOf(t, r)
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		got, _, err := b.Read(t.Context(), bus.ReadOptions{Filter: "ev.track.>", Limit: 10})
		if err != nil {
			return err
		}
		for _, s := range got {
			var m struct {
				Type    string
				Context struct {
					Page     struct{ Path string }
					Campaign map[string]string
				}
			}
			_ = json.Unmarshal(s.Event.Data, &m)
			if m.Type == "page" && m.Context.Page.Path == "/products" && m.Context.Campaign["source"] == "ads" {
				return nil
			}
		}
		return fmt.Errorf("no page view among %d tracked events", len(got))
	})
	// The page itself was served compressed to the browser.
	got, _, _ := b.Read(t.Context(), bus.ReadOptions{Filter: "ev.proxy.request", Limit: 10})
	if len(got) == 0 {
		t.Fatal("no request event for the page")
	}
}
