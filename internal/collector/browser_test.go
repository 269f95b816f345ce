package collector_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// A real browser loads a page with ops.js, arrives through a link with UTM
// and click ids, navigates inside a single-page app and clicks an outbound
// link: the page views and the click arrive with referrer, campaign and one
// cookieless visitor id.
func TestBrowserTracker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Collector.WriteKeys = config.Strings{key}
		c.Collector.CORSOrigins = config.Strings{"*"}
	})
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		switch {
		case req.URL.Path == "/a":
			fmt.Fprint(w, `<html><head><title>Home</title></head><body><a id="go" href="/b?utm_source=news&utm_campaign=nov&gclid=abc">go</a></body></html>`)
		default:
			fmt.Fprintf(w, `<html><head><title>Pricing</title><script src="%s/ops.js" data-key="%s"></script></head>
<body><a id="out" href="%s/healthz">partner</a></body></html>`, r.URL, key, r.URL)
		}
	}))
	defer site.Close()

	ctx := testutil.Browser(t)
	err := chromedp.Do(ctx,
		chromedp.Navigate(site.URL+"/a"),
		chromedp.Click(chromedp.CSS("#go")),
		chromedp.WaitVisible(chromedp.CSS("#out")),
		chromedp.Sleep(300*time.Millisecond),
		chromedp.Evaluate[chromedp.Void](`history.pushState({}, "", "/b/step2"); ops.track("Plan Chosen", {plan: "pro"}); undefined`),
		chromedp.Sleep(300*time.Millisecond),
		chromedp.Click(chromedp.CSS("#out")),
		chromedp.Sleep(500*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	type msg struct {
		Type, Event, AnonymousID string
		Properties               map[string]any
		Context                  struct {
			Page     struct{ Path, Referrer string }
			Campaign map[string]string
			ClickIDs map[string]string `json:"click_ids"`
		}
	}
	var got []msg
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		got = nil
		for _, e := range tracked(t, r.URL) {
			var m msg
			_ = json.Unmarshal(e.Event.Data, &m)
			got = append(got, m)
		}
		if len(got) < 4 {
			return fmt.Errorf("%d events: %+v", len(got), got)
		}
		return nil
	})
	var pages []string
	visitors := map[string]bool{}
	var outbound, chosen bool
	for _, m := range got {
		visitors[m.AnonymousID] = true
		switch {
		case m.Type == "page":
			pages = append(pages, m.Context.Page.Path)
		case m.Event == "Outbound Link Clicked":
			outbound = strings.HasSuffix(fmt.Sprint(m.Properties["href"]), "/healthz")
		case m.Event == "Plan Chosen":
			chosen = m.Properties["plan"] == "pro"
		}
	}
	first := got[0]
	if strings.Join(pages, ",") != "/b,/b/step2" {
		t.Errorf("page views %v", pages)
	}
	if !strings.HasSuffix(first.Context.Page.Referrer, "/a") || first.Context.Campaign["source"] != "news" ||
		first.Context.Campaign["name"] != "nov" || first.Context.ClickIDs["gclid"] != "abc" {
		t.Errorf("first page view: %+v", first.Context)
	}
	if !outbound || !chosen {
		t.Errorf("outbound %v, ops.track %v: %+v", outbound, chosen, got)
	}
	if len(visitors) != 1 || !strings.HasPrefix(first.AnonymousID, "v_") {
		t.Errorf("visitor ids %v", visitors)
	}
}

func TestTrackerSize(t *testing.T) {
	resp, err := http.Get(start(t).URL + "/ops.js")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The transport asked for gzip and undid it: the wire size is what the
	// header and the gzip'd body say.
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") || !resp.Uncompressed {
		t.Fatalf("ops.js: %d %v uncompressed=%v", resp.StatusCode, resp.Header, resp.Uncompressed)
	}
}
