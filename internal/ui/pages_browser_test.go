package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/miekg/dns"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

func apiDo(t *testing.T, method, u, body string) {
	t.Helper()
	resp, b := fetch(t, http.DefaultClient, method, u, map[string]string{"Content-Type": "application/json"}, body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, b)
	}
}

// TestEveryPageInChromium opens each page as an admin and checks what it
// draws from the API: the live tail shows an event published after it
// opened, the views page queries a view, the graph draws its nodes, the
// series page charts a PromQL query, the policy page clears a block (with
// the CSRF token the page carries), the access page creates a token.
func TestEveryPageInChromium(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oops" {
			w.WriteHeader(502)
		}
		fmt.Fprint(w, "upstream")
	}))
	t.Cleanup(up.Close)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Collector.WriteKeys = config.Strings{writeKey}
		c.TSDB.ScrapeInterval = config.Duration(time.Second)
		c.Proxy.Listen = "127.0.0.1:0"
		c.Proxy.Routes = []config.Route{{Name: "site", Upstreams: config.Strings{up.URL}}}
	})
	addUser(t, r.URL, "ada", "admin-password", "admin")
	apiDo(t, "PUT", r.URL+"/api/v1/processors/clean", `{"from":["ev.shop.order"],"map":"root = this.data","to":"ev.shop.clean"}`)
	apiDo(t, "PUT", r.URL+"/api/v1/views/orders", `{"from":["ev.shop.clean"],"key":{"sku":"this.data.sku"},"measures":{"count":"count","revenue":"sum(this.data.price)"}}`)
	for i, sku := range []string{"apple", "pear", "apple"} {
		apiDo(t, "POST", r.URL+"/api/v1/events", fmt.Sprintf(`{"specversion":"1.0","id":"o-%d","type":"shop.order","source":"test","data":{"sku":%q,"price":%d}}`, i, sku, 10+i))
	}
	apiDo(t, "PUT", r.URL+"/api/v1/policy/ip/203.0.113.9", `{"action":"block","reason":"test block"}`)

	b := signedIn(t, r.URL, "live")
	ctx, shot, noError := b.ctx, b.shot, b.noError
	wait := func(sel chromedp.Search) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(sel) }
	if err := chromedp.Do(ctx,
		poll(`document.querySelector('#tailstate').textContent.startsWith('following')`, 10*time.Second),
	); err != nil {
		t.Fatal(err)
	}
	// The event carries markup: the page shows it as text and runs none
	// of it (textContent only, and a CSP without inline script).
	apiDo(t, "POST", r.URL+"/api/v1/events", `{"specversion":"1.0","id":"live-1","type":"shop.order","source":"live-test","data":{"sku":"fig<img src=x onerror=\"window.pwned=1\">","price":3}}`)
	if err := chromedp.Do(ctx, wait(`//div[@id="tail"]//td[contains(text(), 'fig')]`)); err != nil {
		t.Fatal("live tail: the new event did not appear: ", err)
	}
	if pwned, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.pwned === 1 || document.querySelector('#tail img') !== null`)); pwned {
		t.Fatal("markup in event data became HTML in the live tail")
	}
	noError("live")
	shot("live.png")

	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var v struct{ Rows []any }
		getJSON(t, r.URL+"/api/v1/views/orders", &v)
		if len(v.Rows) != 3 {
			return fmt.Errorf("view has %d rows", len(v.Rows))
		}
		return nil
	})
	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/views"),
		chromedp.Click(chromedp.Search(`//div[@id="viewlist"]//button[text()="orders"]`)),
		wait(`//div[@id="rows"]//td[text()="apple"]`),
	); err != nil {
		t.Fatal("views: ", err)
	}
	opts, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('#viewsort option')].map(o => o.value).join(',')`))
	if opts != ",-count,-revenue,sku" { // measures are listed as name=expression
		t.Fatalf("sort choices %q", opts)
	}
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#viewsort`), "-revenue"),
		chromedp.Click(chromedp.Search(`//form[@id="viewq"]//button[text()="Query"]`)),
		poll(`(r => r && r.cells[0].textContent === 'apple' && r.cells[2].textContent === '22')(document.querySelector('#rows tbody tr'))`, 5*time.Second),
	); err != nil {
		t.Fatal("views: ", err)
	}
	noError("views")
	shot("views.png")

	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/graph"),
		chromedp.WaitVisible(chromedp.CSS(`#graph svg`)),
		poll(`[...document.querySelectorAll('#graph .node text')].map(t => t.textContent).join(' ').includes('orders')`, 5*time.Second),
	); err != nil {
		t.Fatal("graph: ", err)
	}
	edges, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#graph path.edge').length`))
	if edges != 2 { // ev.shop.order -> clean -> orders
		t.Fatalf("graph draws %d edges, want 2", edges)
	}
	noError("graph")
	shot("graph.png")

	// Editor: write a processor, see it run on the recent orders, save it.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/editor"),
		chromedp.WaitVisible(chromedp.CSS(`#espec`)),
		chromedp.SetValue(chromedp.CSS(`#espec`), "from: [ev.shop.order]\nwhere: this.data.price > 10\nmap: 'root.item = this.data.sku.uppercase()'\nto: ev.shop.item\n"),
		poll(`document.querySelector('#epreview').textContent.includes('ev.shop.item {"item":"PEAR"}') && document.querySelector('#epreview').textContent.includes('skipped')`, 5*time.Second),
		// A broken mapping names its field, and the last good preview stays.
		chromedp.SetValue(chromedp.CSS(`#espec`), "from: [ev.shop.order]\nmap: 'root = this.'\nto: ev.shop.item\n"),
		poll(`document.querySelector('#estate').textContent.startsWith('map')`, 5*time.Second),
		chromedp.SetValue(chromedp.CSS(`#espec`), "from: [ev.shop.order]\nmap: 'root.item = this.data.sku.uppercase()'\nto: ev.shop.item\n"),
		chromedp.SendKeys(chromedp.CSS(`#ename`), "upper\r"),
		poll(`document.querySelector('#estate').textContent.includes('processor upper created')`, 5*time.Second),
	); err != nil {
		st, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#estate').textContent + ' | ' + document.querySelector('#epreview').textContent.slice(0, 400)`))
		t.Fatal("editor: ", err, st)
	}
	noError("editor")
	shot("editor.png")
	var procs struct{ Processors []struct{ Name string } }
	getJSON(t, r.URL+"/api/v1/processors", &procs)
	if fmt.Sprint(procs.Processors) != "[{clean} {upper}]" {
		t.Fatalf("processors after save: %v", procs.Processors)
	}

	// Series: Ops scrapes itself every second here; the HTTP request
	// counter shows up.
	testutil.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		var q struct {
			Data struct{ Result []any }
		}
		getJSON(t, r.URL+"/prometheus/api/v1/query?query=ops_http_requests_total", &q)
		if len(q.Data.Result) == 0 {
			return fmt.Errorf("no ops_http_requests_total yet")
		}
		return nil
	})
	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/series?q="+strings.ReplaceAll("sum by (code) (ops_http_requests_total)", " ", "%20")),
		poll(`document.querySelectorAll('#schart svg path.line').length > 0 && document.querySelectorAll('#stable tbody tr td').length > 1`, 10*time.Second),
	); err != nil {
		t.Fatal("series: ", err)
	}
	noError("series")
	shot("series.png")

	// Proxy: traffic through the proxy shows in the charts and the top
	// paths, canonical ("/shop/../checkout" is "/checkout").
	var proxyURL string
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p := r.App.Proxy(); p != nil && len(p.Addrs()) > 0 {
			proxyURL = "http://" + p.Addrs()[0].String()
			return nil
		}
		return fmt.Errorf("proxy not listening")
	})
	for path, n := range map[string]int{"/shop/../checkout": 4, "/oops": 2, "/": 1} {
		for range n {
			resp, err := http.Get(proxyURL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/proxy"),
		poll(`(r => r.length > 0 && r[0].querySelectorAll('td')[0].textContent === '/checkout' && r[0].querySelectorAll('td')[2].textContent === '4')([...document.querySelectorAll('#toppaths tbody tr')])`, 10*time.Second),
		poll(`[...document.querySelectorAll('#toppaths tbody tr')].some(tr => tr.querySelectorAll('td')[0].textContent === '/oops' && tr.querySelectorAll('td')[4].textContent === '2')`, 5*time.Second),
		poll(`document.querySelectorAll('#ppanels svg path.line').length > 0`, 20*time.Second),
	); err != nil {
		t.Fatal("proxy: ", err)
	}
	noError("proxy")
	shot("proxy.png")

	// Policy: clear the block (a DELETE with the page's CSRF token).
	var pol struct{ Entries []struct{ Subject string } }
	getJSON(t, r.URL+"/api/v1/policy", &pol)
	if len(pol.Entries) != 1 || pol.Entries[0].Subject != "203.0.113.0" { // addresses are kept as their /24
		t.Fatalf("policy: %+v", pol)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/policy"),
		poll(`document.querySelector('#policy').textContent.includes('203.0.113.0')`, 5*time.Second),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true; undefined`),
		chromedp.Click(chromedp.Search(`//div[@id="policy"]//button[text()="Clear"]`)),
		poll(`document.querySelector('#policy').textContent.includes('Nothing is blocked')`, 5*time.Second),
	); err != nil {
		t.Fatal("policy: ", err)
	}
	noError("policy")
	getJSON(t, r.URL+"/api/v1/policy", &pol)
	for _, e := range pol.Entries {
		if e.Subject == "203.0.113.0" {
			t.Fatal("the block is still stored after Clear")
		}
	}

	// Deploys: two releases with configs, a host on the old one; the page
	// shows what runs, the drift, and the diff between the two.
	apiDo(t, "POST", r.URL+"/api/v1/deployments", `{"id":"r1","service":"shop","env":"prod","version":"1.0","config":"workers: 2\n"}`)
	apiDo(t, "POST", r.URL+"/api/v1/deployments", `{"id":"r2","service":"shop","env":"prod","version":"1.1","config":"workers: 4\n"}`)
	apiDo(t, "POST", r.URL+"/api/v1/deployments/heartbeat", `{"service":"shop","env":"prod","host":"web-9","version":"1.0"}`)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/deploys"),
		poll(`document.querySelector('#services').textContent.includes('1.1') && document.querySelector('#drift').textContent.includes('web-9')`, 10*time.Second),
		chromedp.Click(chromedp.Search(`//div[@id="deploys"]//button[text()="diff"]`)),
		poll(`!document.querySelector('#diffcard').hidden && [...document.querySelectorAll('#diff .del')].some(e => e.textContent === '-workers: 2\n') && [...document.querySelectorAll('#diff .add')].some(e => e.textContent === '+workers: 4\n')`, 5*time.Second),
	); err != nil {
		t.Fatal("deploys: ", err)
	}
	noError("deploys")
	shot("deploys.png")

	// Access: create a token; the secret is shown once and works.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/access"),
		chromedp.SendKeys(chromedp.CSS(`#addtoken input[name=name]`), "grafana"),
		chromedp.Click(chromedp.Search(`//form[@id="addtoken"]//button`)),
		chromedp.WaitVisible(chromedp.CSS(`#newtoken code`)),
	); err != nil {
		t.Fatal("access: ", err)
	}
	secret, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#newtoken code`)))
	req, _ := http.NewRequest("GET", r.URL+"/api/v1/views", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := testutil.Anonymous.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the token the page showed does not work: %v %v", err, resp)
	}
	resp.Body.Close()
	if err := chromedp.Do(ctx, wait(`//div[@id="tokens"]//td[text()="grafana"]`)); err != nil {
		t.Fatal(err)
	}
	noError("access")
	shot("access.png")

	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/status"),
		wait(`//div[@id="modules"]//td[text()="analytics"]`),
		poll(`document.querySelector('#overview').textContent.includes('MiB')`, 5*time.Second),
	); err != nil {
		t.Fatal("status: ", err)
	}
	noError("status")
	shot("status.png")
}

// poll waits until the expression is true.
func poll(expr string, d time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(d))(ctx, tg)
		return err
	})
}

// TestAlertsPageInChromium: the Alerts page shows a firing alert and its
// rule, makes a silence from its form (with the page's CSRF token) and
// expires it.
func TestAlertsPageInChromium(t *testing.T) {
	amFile := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := os.WriteFile(amFile, []byte("route:\n  receiver: none\nreceivers:\n  - name: none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.Alert.AlertmanagerConfig = amFile })
	addUser(t, r.URL, "ada", "admin-password", "admin")
	b := signedIn(t, r.URL, "status")
	ctx, shot, noError := b.ctx, b.shot, b.noError
	// Alerts: a rule that fires; a silence made on the page, then expired.
	apiDo(t, "PUT", r.URL+"/api/v1/alerts/rules/web", "groups:\n  - name: web\n    interval: 1s\n    rules:\n      - alert: Loud\n        expr: vector(1) > 0\n        annotations: {summary: \"api is down\"}\n")
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		var a struct {
			Alerts []struct{ Alert, State string }
		}
		getJSON(t, r.URL+"/api/v1/alerts", &a)
		if len(a.Alerts) != 1 || a.Alerts[0].State != "firing" {
			return fmt.Errorf("%+v", a)
		}
		return nil
	})
	if err := chromedp.Do(ctx,
		chromedp.Navigate(r.URL+"/ui/alerts"),
		poll(`document.querySelector('#active').textContent.includes('api is down') && document.querySelector('#rules').textContent.includes('Loud')`, 10*time.Second),
	); err != nil {
		txt, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.textContent`))
		t.Fatal("alerts page: ", err, txt)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#addsilence input[name=matchers]`), `alertname="Loud"`),
		chromedp.Click(chromedp.Search(`//form[@id="addsilence"]//button`)),
		poll(`document.querySelector('#silences').textContent.includes('alertname="Loud"') && document.querySelector('#silences').textContent.includes('active')`, 10*time.Second),
		chromedp.Click(chromedp.Search(`//div[@id="silences"]//button[text()="Expire"]`)),
		poll(`document.querySelector('#silences').textContent.includes('expired')`, 10*time.Second),
	); err != nil {
		t.Fatal("alerts: ", err)
	}
	noError("alerts")
	shot("alerts.png")
}

// TestDNSPageInChromium: the DNS page shows the resolver's totals, top
// domains, blocked names with their rule, clients, and the query log,
// for queries asked over UDP a moment before.
func TestDNSPageInChromium(t *testing.T) {
	ub := testutil.StartUnbound(t, `local-zone: "ui.test." static
local-data: "www.ui.test. 300 IN A 192.0.2.10"
local-data: "ads.ui.test. 300 IN A 192.0.2.66"`)
	list := filepath.Join(t.TempDir(), "ads.txt")
	if err := os.WriteFile(list, []byte("||ads.ui.test^\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.DNS.Upstreams, c.DNS.UpstreamCA = config.Strings{"tls://" + ub.TLS}, ub.CAFile
		c.DNS.Listen = "127.0.0.1:0"
		c.DNS.Block.Lists = config.Strings{list}
	})
	addr := r.App.DNS().Addr("udp").String()
	for _, name := range []string{"www.ui.test.", "www.ui.test.", "ads.ui.test."} {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		if _, err := dns.Exchange(q, addr); err != nil {
			t.Fatal(err)
		}
	}
	addUser(t, r.URL, "ada", "admin-password", "admin")
	b := signedIn(t, r.URL, "dns")
	ctx := b.ctx
	if err := chromedp.Do(ctx,
		poll(`document.querySelector('#topdomains').textContent.includes('www.ui.test')`+
			` && document.querySelector('#topblocked').textContent.includes('ads.txt:1')`+
			` && document.querySelector('#topclients').textContent.includes('127.0.0.0')`+
			` && document.querySelector('#querylog').textContent.includes('blocked')`+
			` && document.querySelector('nav').textContent.includes('DNS')`, 15*time.Second),
	); err != nil {
		txt, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.textContent`))
		t.Fatal("dns page: ", err, txt)
	}
	b.noError("the DNS page")
	b.shot("dns.png")
}

// TestBrowsingPageInChromium: the Browsing page counts the forward
// proxy's decisions a moment before: an allowed host, a host a rule
// blocks (with its rule), the categories, and who asked.
func TestBrowsingPageInChromium(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<p>hello</p>") }))
	t.Cleanup(site.Close)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		f := &c.Proxy.Forward
		f.Listen, f.Auth = "127.0.0.1:0", "none"
		f.DenyNetworks, f.DenyOwn = nil, false
		f.Filter.Enabled = true
		f.Rules = []config.ForwardRule{{Name: "no-localhost", Hosts: config.Strings{"localhost"}, Action: "block"}}
	})
	_, port, _ := strings.Cut(strings.TrimPrefix(site.URL, "http://"), ":")
	pc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: func(*http.Request) (*url.URL, error) {
		return &url.URL{Scheme: "http", Host: r.App.Forward().Addr().String()}, nil
	}}}
	for _, u := range []string{"http://127.0.0.1:" + port + "/", "http://127.0.0.1:" + port + "/x", "http://localhost:" + port + "/"} {
		resp, err := pc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	addUser(t, r.URL, "ada", "admin-password", "admin")
	b := signedIn(t, r.URL, "browsing")
	if err := chromedp.Do(b.ctx,
		poll(`document.querySelector('#bactions').textContent.includes('allow')`+
			` && document.querySelector('#bblocked').textContent.includes('localhost')`+
			` && document.querySelector('#bblocked').textContent.includes('no-localhost')`+
			` && document.querySelector('#busers').textContent.includes('127.0.0.0')`+
			` && document.querySelector('#breviews').textContent.includes('No review requests')`+
			` && document.querySelector('nav').textContent.includes('Browsing')`, 15*time.Second),
	); err != nil {
		txt, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.textContent`))
		t.Fatal("browsing page: ", err, txt)
	}
	b.noError("the Browsing page")
	b.shot("browsing.png")
}

// browserSession is headless Chromium signed in (as the admin ada, added
// by the test) on one page of the app at base.
type browserSession struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
}

func signedIn(t *testing.T, base, page string) *browserSession {
	t.Helper()
	b := &browserSession{t: t, ctx: testutil.Browser(t), artifacts: os.Getenv("OPS_ARTIFACTS")}
	if b.artifacts == "" {
		b.artifacts = t.TempDir()
	}
	if err := chromedp.Do(b.ctx,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(base+"/login?next=/ui/"+page),
		chromedp.SendKeys(chromedp.CSS(`#user`), "ada"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "admin-password"),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-page=`+page+`]`)),
	); err != nil {
		t.Fatal(err)
	}
	return b
}

// shot saves a screenshot under $OPS_ARTIFACTS (or a temp dir).
func (b *browserSession) shot(name string) {
	if png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)); err == nil {
		_ = os.WriteFile(filepath.Join(b.artifacts, name), png, 0o644)
	}
}

// noError fails the test when the page shows its error line.
func (b *browserSession) noError(page string) {
	b.t.Helper()
	msg, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(e => e && !e.hidden ? e.textContent : '')(document.querySelector('#error'))`))
	if msg != "" {
		b.t.Fatalf("%s shows an error: %s", page, msg)
	}
}
