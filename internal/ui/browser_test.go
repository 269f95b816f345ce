package ui_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

var updateShot = flag.Bool("update", false, "rewrite docs/ui-dashboard.png from the dashboard test")

const writeKey = "wk_ui_test"

// seed sends a known month of traffic through the collector: n visitors,
// each with one to four page views in one visit on one of the last 25
// days, from a few sources; some sign up. It returns how many events went.
func seed(t *testing.T, base string, n int) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	now := time.Now().UTC()
	sources := []string{"https://www.google.com/", "https://www.bing.com/", "", "https://news.ycombinator.com/item?id=1"}
	paths := []string{"/", "/pricing", "/blog/launch", "/docs/start", "/about"}
	var msgs []string
	count := 0
	flush := func() {
		if len(msgs) == 0 {
			return
		}
		req, _ := http.NewRequest("POST", base+"/v1/batch", strings.NewReader(`{"batch":[`+strings.Join(msgs, ",")+`]}`))
		req.SetBasicAuth(writeKey, "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := testutil.Anonymous.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("batch: %v %v", err, resp)
		}
		resp.Body.Close()
		msgs = msgs[:0]
	}
	for v := range n {
		aid := fmt.Sprintf("visitor-%d", v)
		day := rng.IntN(25)
		at := now.Add(-time.Duration(day)*24*time.Hour - time.Duration(1+rng.IntN(600))*time.Minute)
		ref := sources[rng.IntN(len(sources))]
		views := 1 + rng.IntN(4)
		for i := range views {
			p := paths[rng.IntN(len(paths))]
			if i == 0 {
				p = paths[rng.IntN(2)]
			}
			r := ref
			if i > 0 {
				r = "https://shop.example/"
			}
			msgs = append(msgs, fmt.Sprintf(`{"type":"page","anonymousId":%q,"timestamp":%q,"context":{"page":{"path":%q,"url":"https://shop.example%s","referrer":%q},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36","screen":{"width":1440}}}`,
				aid, at.Add(time.Duration(i)*time.Minute).Format(time.RFC3339Nano), p, p, r))
			count++
		}
		if rng.IntN(5) == 0 {
			msgs = append(msgs, fmt.Sprintf(`{"type":"track","event":"Signup","anonymousId":%q,"timestamp":%q,"properties":{"plan":"pro"},"context":{"page":{"path":"/pricing","url":"https://shop.example/pricing"}}}`,
				aid, at.Add(time.Duration(views)*time.Minute).Format(time.RFC3339Nano)))
			count++
		}
		if len(msgs) >= 200 {
			flush()
		}
	}
	// A page whose path holds the filter syntax's own characters.
	msgs = append(msgs, fmt.Sprintf(`{"type":"page","anonymousId":"odd","timestamp":%q,"context":{"page":{"path":"/odd;page|x*","url":"https://shop.example/odd"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"}}`,
		now.Add(-49*time.Hour).Format(time.RFC3339Nano)))
	count++
	flush()
	return count
}

func getJSON(t *testing.T, u string, out any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// shown formats API totals the way the dashboard shows them (en-US).
func shown(results map[string]float64) map[string]string {
	group := func(n int) string {
		s := strconv.Itoa(n)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	}
	pct := strconv.FormatFloat(float64(int(results["bounce_rate"]*10+0.5))/10, 'f', -1, 64) + "%"
	return map[string]string{"visitors": group(int(results["visitors"])), "visits": group(int(results["visits"])),
		"pageviews": group(int(results["pageviews"])), "bounce_rate": pct}
}

// TestDashboardInChromium signs in with the login form, opens the
// dashboard over seeded traffic, filters by clicking a source, changes the
// range, downloads a table as CSV, and checks every number against the
// API; screenshots go to $OPS_ARTIFACTS (or the test's temp dir).
func TestDashboardInChromium(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Collector.WriteKeys = config.Strings{writeKey}
		c.Analytics.Goals = config.Strings{"event==Signup", "page==/pricing"}
		c.Analytics.Funnels = []config.Funnel{{Name: "signup", Steps: []string{"page==/", "page==/pricing", "event==Signup"}}}
	})
	addUser(t, r.URL, "vera", "viewer-password", "viewer")
	sent := seed(t, r.URL, 400)
	// A release three days ago: the chart marks it.
	rel := fmt.Sprintf(`{"service":"shop","env":"prod","version":"2.0.0","at":%q}`, time.Now().Add(-72*time.Hour).UTC().Format(time.RFC3339))
	req, _ := http.NewRequest("POST", r.URL+"/api/v1/deployments", strings.NewReader(rel))
	req.Header.Set("Authorization", "Bearer "+r.Token)
	if resp, err := testutil.Anonymous.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("record a deployment: %v %v", err, resp)
	}
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		var st struct{ Events int }
		getJSON(t, r.URL+"/api/v1/analytics/status", &st)
		if st.Events != sent {
			return fmt.Errorf("analytics holds %d of %d events", st.Events, sent)
		}
		return nil
	})
	artifacts := os.Getenv("OPS_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	downloads := t.TempDir()
	ctx := testutil.Browser(t)
	loaded := func(n int) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](fmt.Sprintf(`document.body.dataset.loaded === '%d' && document.body.getAttribute('aria-busy') === 'false'`, n),
				chromedp.WithPollingTimeout(15*time.Second))(ctx, tg)
			if err != nil {
				st, _ := chromedp.Evaluate[string](`JSON.stringify({loaded: document.body.dataset.loaded, busy: document.body.getAttribute('aria-busy'), error: (document.querySelector('#error') || {}).textContent, url: location.href})`)(ctx, tg)
				return fmt.Errorf("page %d not loaded: %w (%s)", n, err, st)
			}
			return nil
		})
	}
	eval := func(js string, out any) {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		if err := json.Unmarshal(v, out); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
	}
	stats := func() map[string]string {
		var m map[string]string
		eval(`Object.fromEntries([...document.querySelectorAll('.stat')].map(s => [s.dataset.metric, s.querySelector('.value').textContent]))`, &m)
		return m
	}
	apiTotals := func(q string) map[string]string {
		var a struct{ Results map[string]float64 }
		getJSON(t, r.URL+"/api/v1/analytics/aggregate?"+q, &a)
		return shown(a.Results)
	}
	check := func(step, q string) {
		t.Helper()
		got, want := stats(), apiTotals(q)
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: the dashboard shows %s %q, the API says %q (%s)", step, k, got[k], v, q)
			}
		}
		t.Logf("%s: %v", step, got)
	}
	shot := func(name string) {
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(artifacts, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Sign in: the dashboard sends an anonymous browser to the login form.
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads}); err != nil {
		t.Fatal(err)
	}
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(r.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#user`)),
		chromedp.SendKeys(chromedp.CSS(`#user`), "vera"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "viewer-password"),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-page=dashboard]`)),
		loaded(1),
	)
	if err != nil {
		t.Fatal(err)
	}
	check("30 days", "period=30d")
	if visitors := stats()["visitors"]; visitors != "401" {
		t.Fatalf("visitors %q: 401 visitors were sent within the last 25 days", visitors)
	}
	shot("dashboard.png")
	if *updateShot {
		b, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(`main`), chromedp.NodeVisible))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../../docs/ui-dashboard.png", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Filter: click Google in the Sources table.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.Search(`//section[@data-title="Sources"]//button[@class="linkish" and text()="Google"]`)),
		loaded(2),
	); err != nil {
		t.Fatal(err)
	}
	check("30 days, source is Google", "period=30d&filters="+url.QueryEscape("source==Google"))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if !strings.Contains(loc, "filters=source%3D%3DGoogle") {
		t.Fatalf("the filter is not in the address: %s", loc)
	}

	// Range: last 7 days, keeping the filter.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#period`), "7d"), // fires change, as a person picking it does
		loaded(3),
	); err != nil {
		t.Fatal(err)
	}
	check("7 days, source is Google", "period=7d&filters="+url.QueryEscape("source==Google"))

	// A filter typed in the form: page contains "pricing".
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#fdim`), "page"),
		chromedp.SetValue(chromedp.CSS(`#fop`), "~"),
		chromedp.SendKeys(chromedp.CSS(`#fval`), "pricing\r"), // Enter submits the form
		loaded(4),
	); err != nil {
		t.Fatal(err)
	}
	check("7 days, Google, page contains pricing", "period=7d&filters="+url.QueryEscape("source==Google;page~pricing"))
	shot("dashboard-filtered.png")

	// Without filters, 7 days against the 7 before.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/?period=7d&compare=1"),
		loaded(1),
	); err != nil {
		t.Fatal(err)
	}
	var lines int
	eval(`document.querySelectorAll('#chart path.line').length`, &lines)
	if lines != 2 {
		t.Fatalf("compare: the chart has %d lines, want this period's and the one before", lines)
	}
	var marks []string
	eval(`[...document.querySelectorAll('#chart .mark')].map(m => m.dataset.mark)`, &marks)
	if len(marks) != 1 || marks[0] != "shop/prod 2.0.0 succeeded" {
		t.Fatalf("deployment marks on the chart: %q, want the release of three days ago", marks)
	}
	var change string
	eval(`(document.querySelector('[data-metric=visitors] .change') || {}).textContent || ''`, &change)
	var cmp struct {
		Comparison struct{ Change map[string]*float64 }
	}
	getJSON(t, r.URL+"/api/v1/analytics/aggregate?period=7d&compare=previous_period", &cmp)
	c := cmp.Comparison.Change["visitors"]
	if c == nil {
		t.Fatal("the API has no change for visitors over 7 days")
	}
	arrow := "↑ "
	if *c < 0 {
		arrow = "↓ "
	} else if *c == 0 {
		arrow = ""
	}
	if want := arrow + strconv.FormatFloat(math.Round(math.Abs(*c)*10)/10, 'f', -1, 64) + "%"; change != want {
		t.Fatalf("compare: the dashboard shows %q, the API's change is %v (want %q)", change, *c, want)
	}
	// Back to 30 days for the tables below.
	if err := chromedp.Do(ctx, chromedp.Navigate(r.URL+"/ui/?period=30d"), loaded(1)); err != nil {
		t.Fatal(err)
	}

	// Download the Pages table as CSV (the API's, with every row) and
	// compare it with the API's JSON.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.Search(`//section[@data-title="Pages"]//a[text()="Download CSV"]`))); err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		b, err := os.ReadFile(filepath.Join(downloads, "breakdown-page.csv"))
		if err != nil {
			return err
		}
		rows, err = csv.NewReader(strings.NewReader(string(b))).ReadAll()
		return err
	})
	var bd struct {
		Results []struct {
			Value    string
			Visitors int
		}
	}
	getJSON(t, r.URL+"/api/v1/analytics/breakdown?period=30d&property=page&limit=1000", &bd)
	if len(rows) != len(bd.Results)+1 || rows[0][0] != "page" || rows[0][1] != "visitors" || len(bd.Results) != 6 {
		t.Fatalf("CSV has %d rows (%v), the API %d", len(rows), rows, len(bd.Results))
	}
	for i, res := range bd.Results {
		if rows[i+1][0] != res.Value || rows[i+1][1] != strconv.Itoa(res.Visitors) {
			t.Fatalf("CSV row %d %v, API %+v", i+1, rows[i+1], res)
		}
	}

	// Clicking a page whose path holds ; | and * filters on exactly it.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.Search(`//section[@data-title="Pages"]//button[@class="linkish" and text()="/odd;page|x*"]`)),
		loaded(2),
	); err != nil {
		t.Fatal(err)
	}
	check("30 days, the odd page", "period=30d&filters="+url.QueryEscape(`page==/odd\;page\|x\*`))
	if v := stats()["visitors"]; v != "1" {
		t.Fatalf("the odd page has %s visitors, want 1", v)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(r.URL+"/ui/?period=30d"), loaded(1)); err != nil {
		t.Fatal(err)
	}

	// A table the page draws itself (the graph's nodes, the views list)
	// downloads what it shows.
	if err := chromedp.Do(ctx, chromedp.Navigate(r.URL+"/ui/status"),
		chromedp.WaitVisible(chromedp.CSS(`#modules table`)),
		chromedp.Click(chromedp.Search(`//div[@id="modules"]//button[text()="Download CSV"]`))); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		b, err := os.ReadFile(filepath.Join(downloads, "modules.csv"))
		if err != nil {
			return err
		}
		if !strings.HasPrefix(string(b), "Module,State,Error\r\n") || !strings.Contains(string(b), "analytics,running,") {
			return fmt.Errorf("modules.csv: %q", b)
		}
		return nil
	})
	if err := chromedp.Do(ctx, chromedp.Navigate(r.URL+"/ui/?period=30d"), loaded(1)); err != nil {
		t.Fatal(err)
	}

	// Funnel and retention are drawn from the configured funnel.
	var steps, cohorts int
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll('#funnel .funnel li').length === 3`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatal(err)
	}
	eval(`document.querySelectorAll('#funnel .funnel li').length`, &steps)
	eval(`document.querySelectorAll('#retention tbody tr').length`, &cohorts)
	if steps != 3 || cohorts < 3 {
		t.Fatalf("funnel steps %d, retention cohorts %d", steps, cohorts)
	}

	// On a phone: nothing wider than the screen.
	var overflow bool
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(r.URL+"/ui/"),
		loaded(1),
	); err != nil {
		t.Fatal(err)
	}
	eval(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow)
	shot("dashboard-phone.png")
	if overflow {
		t.Fatal("the dashboard is wider than a 390 px phone screen")
	}

	// Keyboard: the first Tab reaches the skip link, Enter moves to main.
	var active string
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	eval(`document.activeElement.className`, &active)
	if active != "skip" {
		t.Fatalf("first Tab focuses %q, want the skip link", active)
	}
	// A shared link, opened by someone with no account: the same numbers.
	var share struct{ Link string }
	resp, err := http.Post(r.URL+"/api/v1/analytics/shares", "application/json", strings.NewReader(`{"name":"board","site":"shop.example"}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("share: %v %v", err, resp)
	}
	json.NewDecoder(resp.Body).Decode(&share)
	resp.Body.Close()
	if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(r.URL+share.Link+"?period=30d"), loaded(1)); err != nil {
		t.Fatal(err)
	}
	check("shared link, 30 days", "period=30d&site=shop.example")
	if navs, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('nav, .me form').length`)); navs != 0 {
		t.Fatal("the shared page shows the menu or a sign-out form")
	}
	shot("shared.png")

	var paint float64
	eval(`(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || 0`, &paint)
	t.Logf("first contentful paint: %.0f ms (informational, not a pass/fail figure)", paint)
}
