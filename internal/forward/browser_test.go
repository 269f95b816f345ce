package forward_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestBrowsingThroughForwardProxy: headless Chromium with
// --proxy-server set to Ops's forward proxy (loopback not bypassed)
// loads an allowed page through it, and gets the block page for a host a
// rule blocks.
func TestBrowsingThroughForwardProxy(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!doctype html><title>Allowed</title><h1>a page through the proxy</h1>")
	}))
	t.Cleanup(site.Close)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		f := &c.Proxy.Forward
		f.Listen, f.Auth = "127.0.0.1:0", "none"
		f.DenyNetworks = config.Strings{"169.254.0.0/16"}
		f.DenyOwn = false
		f.Rules = []config.ForwardRule{{Name: "no-localhost", Hosts: config.Strings{"localhost"}, Action: "block"}}
	})
	proxy := r.App.Forward().Addr().String()
	ctx := testutil.BrowserIn(t, t.TempDir(), chromedp.ProxyServer("http://"+proxy), chromedp.Flag("proxy-bypass-list", "<-loopback>"))
	_, port, _ := net.SplitHostPort(site.Listener.Addr().String())
	text := func(u string) string {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Navigate(u)); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title + " | " + document.body.innerText`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got := text("http://127.0.0.1:" + port + "/"); !strings.Contains(got, "a page through the proxy") {
		t.Fatalf("allowed page: %q", got)
	}
	if got := text("http://localhost:" + port + "/"); !strings.Contains(got, "Blocked: localhost") || !strings.Contains(got, "no-localhost") {
		t.Fatalf("blocked page: %q", got)
	}
	// Both went through the proxy: each is an event.
	testutil.CheckFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		req, _ := http.NewRequest("GET", r.URL+"/api/v1/events?subject=ev.proxy.browse&limit=20", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), `"host":"127.0.0.1","port":`+port) || !strings.Contains(string(b), `"host":"localhost","port":`+port) {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
}
