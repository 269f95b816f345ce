package ui

import (
	"bytes"
	"html/template"
	"net/http"
	"strings"

	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/web"
)

// A page of the UI: its route, the permission it needs, the module it
// shows (left out of the menu when that module is off) and its body.
type pageDef struct {
	Name, Title, Path, Perm, Module string
}

var pages = []pageDef{
	{"dashboard", "Dashboard", "/ui/{$}", "analytics:read", "analytics"},
	{"live", "Live", "/ui/live", "events:read", ""},
	{"views", "Views", "/ui/views", "views:read", "views"},
	{"graph", "Graph", "/ui/graph", "graph:read", ""},
	{"editor", "Editor", "/ui/editor", "graph:write", ""},
	{"series", "Series", "/ui/series", "series:read", "tsdb"},
	{"proxy", "Proxy", "/ui/proxy", "series:read", "proxy"},
	{"policy", "Policy", "/ui/policy", "policy:read", "policy"},
	{"deploys", "Deploys", "/ui/deploys", "deploy:read", "deploy"},
	{"alerts", "Alerts", "/ui/alerts", "alert:read", "alert"},
	{"dns", "DNS", "/ui/dns", "dns:read", "dns"},
	{"browsing", "Browsing", "/ui/browsing", "events:read", "forward"},
	{"access", "Access", "/ui/access", "users:read", ""},
	{"status", "Status", "/ui/status", "system:read", ""},
}

func (p pageDef) href() string {
	if p.Path == "/ui/{$}" {
		return "/ui/"
	}
	return p.Path
}

type navItem struct {
	Title, Href string
	Current     bool
}

type pageData struct {
	Page, Title, User, CSRF, Perms, Theme string
	// A shared dashboard: no menu, no account; the reports come from
	// APIBase (the share's routes).
	Shared        bool
	APIBase, Site string
	Can           map[string]bool
	Nav           []navItem
	Asset         map[string]string // name -> versioned URL
	Running       map[string]bool
}

func (m *Module) page(p pageDef) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		can := m.can(r)
		d := pageData{Page: p.Name, Title: p.Title, CSRF: identity.CSRF(r.Context()), Can: can, Perms: permList(can),
			Asset: map[string]string{}, Running: map[string]bool{}, APIBase: "/api/v1/analytics/"}
		if id := identity.FromContext(r.Context()); id != nil {
			d.User = id.User
		}
		for _, q := range pages {
			if (q.Module == "" || m.running(q.Module)) && m.deps.Allowed(r, q.Perm) {
				d.Nav = append(d.Nav, navItem{Title: q.Title, Href: q.href(), Current: q.Name == p.Name})
			}
		}
		for _, name := range []string{"proxy", "tsdb", "analytics", "views", "policy", "deploy"} {
			d.Running[name] = m.running(name)
		}
		m.render(w, r, p.Name, d)
	})
}

// render writes a page with the UI's security headers.
func (m *Module) render(w http.ResponseWriter, r *http.Request, name string, d pageData) {
	for _, n := range web.Names() {
		d.Asset[n] = "/ui/assets/" + n + "?v=" + web.Get(n).Hash
	}
	if c, err := r.Cookie("ops_theme"); err == nil && (c.Value == "dark" || c.Value == "light") {
		d.Theme = c.Value
	}
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, name, d); err != nil {
		m.log.Error("render page", "page", name, "err", err)
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	if d.Shared {
		h.Set("Referrer-Policy", "no-referrer") // the link is the credential
		h.Set("X-Robots-Tag", "noindex")
	}
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", csp)
	_, _ = w.Write(buf.Bytes())
}

// sharedPage serves /share/{token}: the dashboard, read-only, for one site,
// to whoever has the link.
func (m *Module) sharedPage(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	name, site, err := m.deps.Shared(r.Context(), token)
	if err != nil {
		status := http.StatusNotFound
		if !strings.Contains(err.Error(), "no such shared link") {
			status = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(err.Error() + "\n"))
		return
	}
	title := name
	if site != "" {
		title = site + " · " + name
	}
	m.render(w, r, "dashboard", pageData{Page: "dashboard", Title: title, Shared: true, APIBase: "/share/" + token + "/api/", Site: site,
		Can: map[string]bool{}, Asset: map[string]string{}, Running: map[string]bool{}})
}

// csp allows only this origin's script, styles and API; nothing inline
// but styles set from the script (CSSOM, which CSP does not block).
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var tmpl = template.Must(template.New("ui").Parse(layout + bodies))

const layout = `{{define "top"}}<!doctype html>
<html lang="en"{{if .Theme}} data-theme="{{.Theme}}"{{end}}><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}} · Ops</title>
<link rel="stylesheet" href="{{index .Asset "app.css"}}">
<link rel="icon" href="{{index .Asset "icon.svg"}}" type="image/svg+xml">
<script src="{{index .Asset "app.js"}}" defer></script>
</head>
<body data-page="{{.Page}}" data-csrf="{{.CSRF}}" data-can="{{.Perms}}" data-api="{{.APIBase}}"{{if .Shared}} data-shared="1"{{end}}>
<a class="skip" href="#main">Skip to content</a>
<header class="top">{{if .Shared}}<span class="brand">{{.Title}}</span>
<div class="me"><button type="button" id="theme" title="Light or dark theme" aria-label="Switch between light and dark theme">◐</button><span class="muted">shared, read-only</span></div>
{{else}}<a class="brand" href="/ui/">Ops</a>
<nav aria-label="Main"><ul>{{range .Nav}}<li><a href="{{.Href}}"{{if .Current}} aria-current="page"{{end}}>{{.Title}}</a></li>{{end}}</ul></nav>
<div class="me"><button type="button" id="theme" title="Light or dark theme" aria-label="Switch between light and dark theme">◐</button>
<span class="user">{{.User}}</span>
<form method="post" action="/api/v1/logout"><input type="hidden" name="csrf_token" value="{{.CSRF}}"><button type="submit">Sign out</button></form></div>{{end}}
</header>
<main id="main" tabindex="-1">
<p id="error" class="error" role="alert" hidden></p>
{{end}}
{{define "bottom"}}</main>
<noscript><p class="error">This page draws its data with JavaScript; the same data is at /api/v1 (docs/api.md).</p></noscript>
</body></html>{{end}}
`

const bodies = `
{{define "dashboard"}}{{template "top" .}}
<div class="head"><h1>{{if .Shared}}{{if .Site}}{{.Site}}{{else}}Dashboard{{end}}{{else}}Dashboard{{end}}</h1>
<p class="realtime" aria-live="polite"><span class="dot"></span> <b id="realtime">–</b> current visitors</p></div>
<form id="controls" class="controls">
{{if not .Shared}}<label>Site <select name="site" id="site"><option value="">All sites</option></select></label>{{end}}
<label>Range <select name="period" id="period">
<option value="day">Today</option><option value="7d">Last 7 days</option><option value="30d" selected>Last 30 days</option>
<option value="month">This month</option><option value="91d">Last 91 days</option><option value="12mo">Last 12 months</option>
<option value="custom">Custom range</option></select></label>
<span id="custom" hidden><label>From <input type="date" name="from" id="from"></label> <label>To <input type="date" name="to" id="to"></label> <button type="submit">Apply</button></span>
<label class="check"><input type="checkbox" name="compare" id="compare"> Compare with the previous period</label>
</form>
<section class="filters" aria-label="Filters"><ul id="filters"></ul>
<form id="addfilter" class="controls">
<label>Filter <select name="dim" id="fdim">
<option>page</option><option>entry_page</option><option>exit_page</option><option>source</option><option>referrer</option>
<option>utm_source</option><option>utm_medium</option><option>utm_campaign</option><option>utm_term</option><option>utm_content</option>
<option>browser</option><option>os</option><option>device</option><option>screen</option><option>country</option><option>hostname</option><option>event</option>
</select></label>
<select name="op" id="fop" aria-label="Operator"><option value="==">is</option><option value="!=">is not</option><option value="~">contains</option><option value="!~">does not contain</option></select>
<input name="val" id="fval" aria-label="Value" list="suggest" required autocomplete="off"><datalist id="suggest"></datalist>
<button type="submit">Add filter</button></form></section>
<section id="stats" class="stats" aria-label="Totals"></section>
<section class="card"><div class="cardhead"><h2 id="charttitle">Visitors</h2>
<div class="tools"><button type="button" class="kind" data-kind="line" aria-pressed="true">Line</button><button type="button" class="kind" data-kind="bar" aria-pressed="false">Bar</button>
<a id="tscsv" class="csv" download="timeseries.csv">Download CSV</a></div></div>
<div id="chart" class="chart"></div></section>
<div class="grid">
<section class="card panel" data-title="Sources" data-dims="source referrer utm_source utm_medium utm_campaign utm_term utm_content"></section>
<section class="card panel" data-title="Pages" data-dims="page entry_page exit_page"></section>
<section class="card panel" data-title="Locations" data-dims="country hostname"></section>
<section class="card panel" data-title="Devices" data-dims="browser os device screen"></section>
<section class="card panel" data-title="Custom events" data-dims="event"></section>
<section class="card" id="goals"><div class="cardhead"><h2>Goals</h2><a class="csv" download>Download CSV</a></div><div class="body"></div></section>
</div>
<section class="card" id="funnel"><div class="cardhead"><h2>Funnel</h2>
<form class="controls" id="funnelform"><label>Funnel <select name="funnel" id="funnelname"><option value="">Steps below</option></select></label>
<label>Steps <input name="steps" id="funnelsteps" size="40" placeholder="page==/;page==/pricing;event==Signup"></label>
<label>Window <input name="window" id="funnelwindow" size="5" placeholder="7d"></label> <button type="submit">Show</button></form>
<a class="csv" download>Download CSV</a></div><div class="body"></div></section>
<section class="card" id="retention"><div class="cardhead"><h2>Retention</h2>
<div class="tools"><label>By <select id="retiv"><option value="week">week</option><option value="day">day</option></select></label><a class="csv" download>Download CSV</a></div></div><div class="body"></div></section>
{{template "bottom" .}}{{end}}

{{define "live"}}{{template "top" .}}
<h1>Live events</h1>
<form id="tailform" class="controls">
<label>Subject <input name="subject" id="subject" value="ev.>" size="24"></label>
<label>Contains <input name="q" id="tailq" size="20"></label>
<button type="submit">Follow</button> <button type="button" id="pause" aria-pressed="false">Pause</button>
<span id="tailstate" aria-live="polite"></span></form>
<div id="tail"></div>
{{template "bottom" .}}{{end}}

{{define "views"}}{{template "top" .}}
<h1>Views</h1>
<div id="viewlist"></div>
<section id="viewrows" class="card" hidden><div class="cardhead"><h2 id="viewname"></h2></div>
<form id="viewq" class="controls"><label>Key filter <input name="key" id="viewkey" placeholder="field=value" size="20"></label>
<label>Sort <select name="sort" id="viewsort"><option value="">key order</option></select></label>
<label>Rows <select name="limit" id="viewlimit"><option>50</option><option>200</option><option>1000</option></select></label>
<button type="submit">Query</button> <a id="viewcsv" class="csv" download>CSV (all rows)</a></form>
<div id="rows"></div></section>
{{template "bottom" .}}{{end}}

{{define "graph"}}{{template "top" .}}
<h1>Event graph</h1>
<p class="muted">Subjects flow left to right: sources, processors, views. Every change of a view is an event again.</p>
<div id="graph" class="chart wide"></div>
<div id="nodes"></div>
{{template "bottom" .}}{{end}}

{{define "editor"}}{{template "top" .}}
<h1>Processor and view editor</h1>
<p class="muted">Write a processor or a view as in <code>ops.yaml</code>. The preview runs it, as you type, over the latest events of its <code>from:</code> subjects with the code the running graph uses; nothing is stored or published until you save (docs/graph.md).</p>
<form id="editor" class="controls stack">
<div class="controls"><label>Kind <select id="ekind"><option value="processor">Processor</option><option value="view">View</option></select></label>
<label>Name <input id="ename" required pattern="[A-Za-z0-9_-]+" size="20" placeholder="blog_views"></label>
<label>Sample <select id="elimit"><option>20</option><option>50</option><option>200</option></select></label></div>
<label for="espec">Definition (YAML)</label><textarea id="espec" rows="10" spellcheck="false"></textarea>
<div class="controls"><button type="submit">Save</button> <span id="estate" aria-live="polite"></span></div>
</form>
<section class="card"><div class="cardhead"><h2>Preview</h2><span id="ecount" class="muted"></span></div><div id="erows"></div><div id="epreview"></div></section>
{{template "bottom" .}}{{end}}

{{define "series"}}{{template "top" .}}
<h1>Time series</h1>
<form id="promql" class="controls stack">
<label for="expr">PromQL</label><textarea id="expr" name="query" rows="2" spellcheck="false">sum by (code) (rate(ops_http_requests_total[5m]))</textarea>
<div><label>Range <select id="srange"><option value="900">15 minutes</option><option value="3600" selected>1 hour</option><option value="21600">6 hours</option><option value="86400">1 day</option><option value="604800">7 days</option></select></label>
<button type="submit">Run</button></div></form>
<section class="card"><div id="schart" class="chart"></div></section>
<div id="stable"></div>
{{template "bottom" .}}{{end}}

{{define "proxy"}}{{template "top" .}}
<div class="head"><h1>Proxy traffic</h1>
<label>Range <select id="prange"><option value="3600">1 hour</option><option value="21600">6 hours</option><option value="86400" selected>1 day</option><option value="604800">7 days</option></select></label></div>
<div id="ppanels" class="grid"></div>
{{template "bottom" .}}{{end}}

{{define "policy"}}{{template "top" .}}
<h1>Policy</h1>
<p class="muted">Blocks and locks that the edge enforces now: set by rules on the event graph or by people. Clearing one lets the subject in again at once.</p>
<div id="policy"></div>
{{template "bottom" .}}{{end}}

{{define "deploys"}}{{template "top" .}}
<div class="head"><h1>Deployments</h1>
<label>DORA over <select id="drange"><option value="7d">7 days</option><option value="30d" selected>30 days</option><option value="90d">90 days</option></select></label></div>
<section class="stats" id="dora" aria-label="DORA figures"></section>
<section class="card"><div class="cardhead"><h2>What runs where</h2></div><div id="services"></div></section>
<section class="card"><div class="cardhead"><h2>Drift</h2></div><div id="drift"></div></section>
<section class="card"><div class="cardhead"><h2>Recent deployments</h2><a class="csv" href="/api/v1/deployments?format=csv&amp;limit=10000" download="deployments.csv">CSV</a></div><div id="deploys"></div></section>
<section class="card" id="diffcard" hidden><div class="cardhead"><h2 id="difftitle">Config diff</h2></div><pre id="diff" class="diff"></pre></section>
{{template "bottom" .}}{{end}}

{{define "alerts"}}{{template "top" .}}
<h1>Alerts</h1>
<section class="card"><div class="cardhead"><h2>Pending and firing</h2></div><div id="active"></div></section>
<section class="card"><div class="cardhead"><h2>Silences</h2></div><div id="silences"></div>
{{if index .Can "alert:write"}}<form id="addsilence" class="controls">
<label>Matchers <input name="matchers" required placeholder='alertname="HighLatency"'></label><label>For <input name="for" value="2h" required size="6"></label>
<label>Comment <input name="comment"></label><button type="submit">Silence</button></form>{{end}}</section>
<section class="card"><div class="cardhead"><h2>Rules</h2></div><div id="rules"></div></section>
{{template "bottom" .}}{{end}}

{{define "dns"}}{{template "top" .}}
<h1>DNS</h1>
<div class="controls"><label>Range <select id="dnsrange"><option value="15m">15 minutes</option><option value="1h" selected>1 hour</option><option value="24h">24 hours</option></select></label></div>
<section class="card"><div class="cardhead"><h2>Queries</h2></div><div id="dnstotals"></div></section>
<section class="card"><div class="cardhead"><h2>Top domains</h2><a class="csv" href="/api/v1/dns/stats?format=csv&amp;limit=300&amp;since=24h" download="dns-top.csv">CSV</a></div><div id="topdomains"></div></section>
<section class="card"><div class="cardhead"><h2>Blocked</h2></div><div id="topblocked"></div></section>
<section class="card"><div class="cardhead"><h2>Clients</h2></div><div id="topclients"></div></section>
{{if index .Can "events:read"}}<section class="card"><div class="cardhead"><h2>Query log (last 5 minutes)</h2><a class="csv" href="/api/v1/events?subject=ev.dns.query&amp;limit=10000&amp;format=csv" download="dns-queries.csv">CSV</a></div><div id="querylog"></div></section>{{end}}
{{template "bottom" .}}{{end}}

{{define "browsing"}}{{template "top" .}}
<h1>Browsing</h1>
<p class="muted">What the forward proxy decided: its ev.proxy.browse and ev.proxy.review events (docs/forward.md).</p>
<div class="controls"><label>Range <select id="brange"><option value="15">15 minutes</option><option value="60" selected>1 hour</option><option value="1440">24 hours</option></select></label></div>
<section class="card"><div class="cardhead"><h2>Decisions</h2></div><div id="bactions"></div></section>
<section class="card"><div class="cardhead"><h2>Blocked and warned</h2></div><div id="bblocked"></div></section>
<section class="card"><div class="cardhead"><h2>Categories</h2></div><div id="bcats"></div></section>
<section class="card"><div class="cardhead"><h2>People</h2></div><div id="busers"></div></section>
<section class="card"><div class="cardhead"><h2>Review requests</h2><a class="csv" href="/api/v1/events?subject=ev.proxy.review&amp;limit=10000&amp;format=csv" download="reviews.csv">CSV</a></div><div id="breviews"></div></section>
{{template "bottom" .}}{{end}}

{{define "access"}}{{template "top" .}}
<h1>Access</h1>
<section class="card"><div class="cardhead"><h2>Users</h2></div><div id="users"></div>
{{if index .Can "users:write"}}<form id="adduser" class="controls">
<label>Name <input name="name" required></label><label>Password <input name="password" type="password" minlength="8" required autocomplete="new-password"></label>
<label>Role <select name="role"><option>viewer</option><option>editor</option><option>admin</option></select></label><button type="submit">Add user</button></form>{{end}}</section>
{{if index .Can "tokens:read"}}<section class="card"><div class="cardhead"><h2>API tokens</h2></div><div id="tokens"></div>
{{if index .Can "tokens:write"}}<form id="addtoken" class="controls">
<label>Name <input name="name" required></label><label>Role <select name="role"><option>viewer</option><option>editor</option><option>admin</option></select></label>
<label>Expires in <select name="expires"><option value="">never</option><option value="30d">30 days</option><option value="90d">90 days</option></select></label><button type="submit">Create token</button></form>
<p id="newtoken" class="secret" hidden></p>{{end}}</section>{{end}}
{{if index .Can "keys:read"}}<section class="card"><div class="cardhead"><h2>Write keys</h2></div><div id="keys"></div>
{{if index .Can "keys:write"}}<form id="addkey" class="controls"><label>Name <input name="name" required></label><button type="submit">Create write key</button></form>
<p id="newkey" class="secret" hidden></p>{{end}}</section>{{end}}
{{if index .Can "analytics:write"}}<section class="card"><div class="cardhead"><h2>Shared dashboards</h2></div><div id="shares"></div>
<form id="addshare" class="controls"><label>Name <input name="name" required placeholder="for the board"></label><label>Site <input name="site" placeholder="shop.example (empty: all)"></label><button type="submit">Create link</button></form>
<p id="newshare" class="secret" hidden></p></section>{{end}}
{{if index .Can "campaigns:write"}}<section class="card"><div class="cardhead"><h2>Campaign link</h2></div>
<form id="addcampaign" class="controls"><label>Campaign <input name="name" required placeholder="spring-sale"></label><label>Target URL <input name="url" type="url" required size="30" placeholder="https://shop.example/sale"></label><button type="submit">Create</button></form>
<p id="newcampaign" class="secret" hidden></p></section>{{end}}
{{template "bottom" .}}{{end}}

{{define "status"}}{{template "top" .}}
<h1>System status</h1>
<div id="overview" class="stats"></div>
<section class="card"><div class="cardhead"><h2>Modules</h2></div><div id="modules"></div></section>
<section class="card"><div class="cardhead"><h2>Streams</h2></div><div id="streams"></div></section>
{{template "bottom" .}}{{end}}
`
