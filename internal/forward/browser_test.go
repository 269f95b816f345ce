package forward_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// TestBrowserContentFilter: Chromium through the forward proxy, as the
// issue asks: an allowed page loads, an adult-phrase page gets the block
// page (whose review button works), a lookalike domain gets the phishing
// warning and its Continue button leads on. Screenshots go to
// $OPS_ARTIFACTS (or the test's temp dir).
func TestBrowserContentFilter(t *testing.T) {
	fs := startFilter(t, "", func(c *config.Config) {
		c.Proxy.Forward.Auth = "none"
		c.Proxy.Forward.Rules = nil
		c.Phishing.Protect = config.Strings{"paypal.com"}
		c.Phishing.NewDomainDays = 0
	})
	artifacts := os.Getenv("OPS_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	ctx := testutil.BrowserIn(t, t.TempDir(), chromedp.ProxyServer("http://"+fs.proxy), chromedp.Flag("proxy-bypass-list", "<-loopback>"))
	visit := func(u, shot string) string {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Navigate(u)); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title + " | " + document.body.innerText`))
		if err != nil {
			t.Fatal(err)
		}
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(filepath.Join(artifacts, "forward-"+shot+".png"), png, 0o644)
		}
		return s
	}
	if got := visit(fs.url("news.test", "/"), "allowed"); !strings.Contains(got, "The council approved the budget.") {
		t.Fatalf("allowed page: %q", got)
	}
	got := visit(fs.url("adult-page.test", "/gallery"), "blocked")
	if !strings.Contains(got, "This page is blocked") || !strings.Contains(got, "adult") {
		t.Fatalf("adult page: %q", got)
	}
	// Ask for a review from the block page.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.Search(`//button[@id="review"]`))); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		if !strings.Contains(s, "Review requested") {
			return fmt.Errorf("after the review button: %q", s)
		}
		return nil
	})
	fs.waitEvent(t, "ev.proxy.review", `"host":"adult-page.test"`, `"category":"adult"`)

	got = visit(fs.url("paypa1.test", "/"), "phishing-warning")
	if !strings.Contains(got, "Are you sure?") || !strings.Contains(got, "phishing") {
		t.Fatalf("lookalike: %q", got)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.Search(`//a[@id="continue"]`))); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title`))
		if s != "Hello" {
			return fmt.Errorf("after Continue the title is %q", s)
		}
		return nil
	})
	t.Logf("screenshots in %s", artifacts)
}
