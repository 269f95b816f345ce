package grafana

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/provision")

var testViews = []View{
	{Name: "hourly_pages", Key: []string{"path"}, Window: time.Hour, Measures: []Measure{
		{"views", "count"}, {"visitors", "uniq(this.anonymousid)"}, {"last_referrer", "last(this.data.referrer)"},
		{"load_time", "avg(this.data.timing.loadMs)"}, {"bytes_sent", "sum(this.data.size)"},
	}},
	{Name: "orders_per_min", Key: []string{"country", "channel"}, Window: time.Minute, Measures: []Measure{
		{"orders", "count"}, {"lag", "max(this.data.lag)"},
	}},
	{Name: "carts", Key: []string{"key"}, Window: 24 * time.Hour, Measures: []Measure{{"items", "latest"}}},
	{Name: "totals", Key: []string{"country"}, Measures: []Measure{{"n", "count"}}},
}

var testOptions = Options{URL: "http://ops:7070/", DashboardsPath: "/etc/grafana/provisioning/dashboards/ops",
	PrometheusVersion: "3.16.0"}

// TestGrafanaGolden compares every generated file with testdata/provision
// (go test -run Golden -update rewrites them).
func TestGrafanaGolden(t *testing.T) {
	files, err := Provision(testViews, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{DatasourceFile, ProviderFile, HealthFile, ViewFile("hourly_pages"), ViewFile("orders_per_min")}
	got := make([]string, 0, len(files))
	for n := range files {
		got = append(got, n)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("files: got %v, want %v (no dashboard for views without a window or a numeric measure)", got, want)
	}
	dir := filepath.Join("testdata", "provision")
	if *update {
		_ = os.RemoveAll(dir)
	}
	for _, n := range got {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if *update {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, files[n], 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if !bytes.Equal(b, files[n]) {
			t.Errorf("%s differs from %s (run with -update after checking the change):\n%s", n, p, files[n])
		}
	}
	again, _ := Provision(testViews, testOptions)
	for n := range files {
		if !bytes.Equal(files[n], again[n]) {
			t.Errorf("%s: not deterministic", n)
		}
	}
}

func TestGrafanaDatasource(t *testing.T) {
	type ds struct {
		Name           string            `yaml:"name"`
		UID            string            `yaml:"uid"`
		Type           string            `yaml:"type"`
		URL            string            `yaml:"url"`
		BasicAuth      bool              `yaml:"basicAuth"`
		BasicAuthUser  string            `yaml:"basicAuthUser"`
		JSONData       map[string]any    `yaml:"jsonData"`
		SecureJSONData map[string]string `yaml:"secureJsonData"`
	}
	for _, tc := range []struct {
		name   string
		mod    func(*Options)
		secret string // httpHeaderValue1, or basicAuthPassword with basic auth
		basic  bool
	}{
		{"env reference", func(*Options) {}, "Bearer ${OPS_GRAFANA_TOKEN}", false},
		{"other env", func(o *Options) { o.TokenEnv = "GF_OPS_TOKEN" }, "Bearer ${GF_OPS_TOKEN}", false},
		{"literal token, $ escaped", func(o *Options) { o.Token = "ops_ab_c$d" }, "Bearer ops_ab_c$$d", false},
		{"basic auth", func(o *Options) { o.BasicAuthUser = "grafana" }, "${OPS_GRAFANA_TOKEN}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions
			o.Name, o.UID = "Ops prod", "ops-prod"
			tc.mod(&o)
			b, err := Datasource(o)
			if err != nil {
				t.Fatal(err)
			}
			var f struct {
				APIVersion  int  `yaml:"apiVersion"`
				Datasources []ds `yaml:"datasources"`
			}
			if err := yaml.Unmarshal(b, &f); err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			if f.APIVersion != 1 || len(f.Datasources) != 1 {
				t.Fatalf("%+v", f)
			}
			d := f.Datasources[0]
			if d.URL != "http://ops:7070/prometheus" || d.Type != "prometheus" || d.Name != "Ops prod" || d.UID != "ops-prod" {
				t.Errorf("data source: %+v", d)
			}
			if d.JSONData["httpMethod"] != "POST" || d.JSONData["timeInterval"] != "15s" || d.JSONData["prometheusVersion"] != "3.16.0" {
				t.Errorf("jsonData: %v", d.JSONData)
			}
			if tc.basic {
				if !d.BasicAuth || d.BasicAuthUser != "grafana" || d.SecureJSONData["basicAuthPassword"] != tc.secret || d.JSONData["httpHeaderName1"] != nil {
					t.Errorf("basic auth: %+v", d)
				}
				return
			}
			if d.BasicAuth || d.JSONData["httpHeaderName1"] != "Authorization" || d.SecureJSONData["httpHeaderValue1"] != tc.secret {
				t.Errorf("header: %v %v", d.JSONData, d.SecureJSONData)
			}
		})
	}
	if _, err := Datasource(Options{DashboardsPath: "/x"}); err == nil {
		t.Error("no URL: want an error")
	}
}

func TestGrafanaUnits(t *testing.T) {
	for _, tc := range []struct {
		m    Measure
		unit string
	}{
		{Measure{"views", "count"}, "short"},
		{Measure{"latency_ms", "count"}, "short"}, // a count counts events
		{Measure{"visitors", "uniq(this.userid)"}, "short"},
		{Measure{"latency_ms", "avg(this.data.latency)"}, "ms"},
		{Measure{"p_latency", "max(this.data.x)"}, "ms"},
		{Measure{"duration_seconds", "sum(this.data.d)"}, "s"},
		{Measure{"load_time", "avg(this.data.timing.loadMs)"}, "ms"},
		{Measure{"took", "avg(this.data.elapsed_us)"}, "µs"},
		{Measure{"wait", "avg(this.data.queue_ns)"}, "ns"},
		{Measure{"bytes_sent", "sum(this.data.size)"}, "bytes"},
		{Measure{"upload", "sum(this.data.size_kb)"}, "kbytes"},
		{Measure{"cpu_percent", "avg(this.data.cpu)"}, "percent"},
		{Measure{"hit_ratio", "avg(this.data.hit)"}, "percentunit"},
		{Measure{"revenue", "sum(this.data.total)"}, "short"},
		{Measure{"minutes", "sum(this.data.x)"}, "m"},
	} {
		if got, _ := unitOf(tc.m); got != tc.unit {
			t.Errorf("%s = %s: unit %q, want %q", tc.m.Name, tc.m.Src, got, tc.unit)
		}
	}
}

// variableRE matches Grafana variables in a query.
var variableRE = regexp.MustCompile(`\$(__rate_interval|[a-z][a-z0-9_]*)`)

// TestGrafanaQueriesParse parses every panel query and variable with
// Prometheus's parser once Grafana's variables are substituted (the
// cmd/ops tests run them against a real Ops).
func TestGrafanaQueriesParse(t *testing.T) {
	files, err := Provision(testViews, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	n := 0
	for name, b := range files {
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		var d Dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(d.UID) > 40 || d.Title == "" || len(d.Panels) == 0 {
			t.Errorf("%s: uid %q title %q, %d panels", name, d.UID, d.Title, len(d.Panels))
		}
		ids := map[int]bool{}
		for _, pn := range d.Panels {
			if ids[pn.ID] {
				t.Errorf("%s: panel id %d twice", name, pn.ID)
			}
			ids[pn.ID] = true
			if pn.Datasource.UID != DefaultUID || len(pn.Targets) == 0 {
				t.Errorf("%s: panel %q: datasource %v, %d targets", name, pn.Title, pn.Datasource, len(pn.Targets))
			}
			for _, tg := range pn.Targets {
				q := variableRE.ReplaceAllStringFunc(tg.Expr, func(v string) string {
					if v == "$__rate_interval" {
						return "1m"
					}
					return ".*"
				})
				if _, err := p.ParseExpr(q); err != nil {
					t.Errorf("%s: panel %q: %s: %v", name, pn.Title, tg.Expr, err)
				}
				n++
			}
		}
		var deploys bool
		for _, a := range d.Annotations.List {
			if a.Expr == "" {
				continue
			}
			if _, err := p.ParseExpr(a.Expr); err != nil || a.Datasource.UID != DefaultUID || !a.UseValueForTime {
				t.Errorf("%s: annotation %q: %s: %v", name, a.Name, a.Expr, err)
			}
			deploys = deploys || a.Name == "Deployments"
		}
		if !deploys {
			t.Errorf("%s: no deployments annotation", name)
		}
		for _, v := range d.Templating.List {
			sel, ok := strings.CutPrefix(v.Query, "label_values(")
			sel, _, _ = strings.Cut(sel, ", ")
			if _, err := p.ParseMetricSelector(sel); !ok || err != nil {
				t.Errorf("%s: variable %s: %q: %v", name, v.Name, v.Query, err)
			}
		}
	}
	if n < len(healthPanels)+5 {
		t.Errorf("only %d queries", n)
	}
}

func TestGrafanaViewQuery(t *testing.T) {
	v := testViews[1]
	got := viewExpr(v, v.Measures[0], keyLabels(v.Key))
	want := `topk(20, sum by (country, channel) (last_over_time(ops_view_orders{view="orders_per_min", country=~"$country", channel=~"$channel"}[1m] offset -59s999ms)))`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// lag is also Ops's own ops_views_lag{view=...}: leave that out.
	if got := viewExpr(v, v.Measures[1], keyLabels(v.Key)); !strings.Contains(got, `job!="ops"`) || !strings.HasPrefix(got, "topk(20, max by") {
		t.Errorf("lag: %s", got)
	}
	// A key field named view has no label: the TSDB's view label wins.
	if got := keyLabels([]string{"view", "path"}); !slices.Equal(got, []string{"path"}) {
		t.Errorf("keyLabels: %v", got)
	}
}

func TestGrafanaFromInfo(t *testing.T) {
	v, err := FromInfo("hits", []string{"page"}, []string{"n=count", `items=latest(root = this.state.or([]).append(this.event.data.item))`}, "1m0s")
	if err != nil {
		t.Fatal(err)
	}
	if v.Window != time.Minute || len(v.Measures) != 2 || v.Measures[1].Src != "latest(root = this.state.or([]).append(this.event.data.item))" || v.Measures[1].numeric() {
		t.Errorf("%+v", v)
	}
	if v, err := FromInfo("daily", []string{"k"}, []string{"n=count"}, "1d"); err != nil || v.Window != 24*time.Hour {
		t.Errorf("1d: %v %v", v.Window, err)
	}
	if v, err := FromInfo("flat", []string{"k"}, []string{"n=count"}, ""); err != nil || v.Windowed() || ViewDashboard(v, DatasourceRef{}) != nil {
		t.Errorf("no window: %+v %v", v, err)
	}
	for _, bad := range [][]string{{"count"}, {"=count"}} {
		if _, err := FromInfo("v", []string{"k"}, bad, "1m"); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
	if _, err := FromInfo("v", []string{"k"}, []string{"n=count"}, "an hour"); err == nil {
		t.Error("bad window: want an error")
	}
}

func TestGrafanaUID(t *testing.T) {
	long := strings.Repeat("a", 60)
	a, b := uid("ops-view-", long), uid("ops-view-", long[:59]+"b")
	if len(a) != 40 || len(b) != 40 || a == b {
		t.Errorf("%q %q", a, b)
	}
	if got := uid("ops-view-", "short"); got != "ops-view-short" {
		t.Error(got)
	}
	if got := grafanaInterval(90 * time.Second); got != "90s" {
		t.Error(got)
	}
	if got := grafanaInterval(24 * time.Hour); got != "1d" {
		t.Error(got)
	}
}

// FuzzGrafanaFromInfo feeds GET /api/v1/views entries (outside input) to
// the generator: it may refuse them, never panic or emit invalid JSON.
func FuzzGrafanaFromInfo(f *testing.F) {
	f.Add("hits", "page", "n=count", "1m0s")
	f.Add("v", "view", "lag=max(this.data.lag)", "1d")
	f.Add("v", "", "x=latest", "")
	f.Fuzz(func(t *testing.T, name, key, measure, window string) {
		v, err := FromInfo(name, []string{key}, []string{measure}, window)
		if err != nil {
			return
		}
		d := ViewDashboard(v, DatasourceRef{Type: "prometheus", UID: "ops"})
		if d == nil {
			return
		}
		if _, err := marshal(d); err != nil {
			t.Fatal(err)
		}
	})
}
