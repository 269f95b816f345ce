package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/grafana"
	"github.com/opsgraph/ops/internal/testutil"
)

// gqViews has a windowed view with measures of every numeric kind, one
// whose name is also one of Ops's own metrics (lag: ops_views_lag) and one
// that holds strings (note), plus a view without a window.
const gqViews = `
views:
  - name: orders_per_min
    from: ev.shop.order
    key:
      country: this.data.country
    window: 1m
    measures:
      orders: count
      revenue: sum(this.data.total)
      latency_ms: avg(this.data.ms)
      lag: max(this.data.lag)
      buyers: uniq(this.data.user)
      note: last(this.data.note)
  - name: totals
    from: ev.shop.order
    key: this.data.country
    measures:
      n: count
`

// runOps runs the real root command in this process.
func runOps(args ...string) (string, string, error) {
	cmd := rootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

// promResult is a query or query_range answer.
type promResult struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value"`
			Values [][]any           `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

// at returns the value of the series with label k=v at Unix time t.
func (r *promResult) at(k, v string, t int64) (string, bool) {
	for _, s := range r.Data.Result {
		if s.Metric[k] != v {
			continue
		}
		for _, p := range s.Values {
			if ts, _ := p[0].(float64); int64(ts) == t {
				return p[1].(string), true
			}
		}
		if len(s.Value) == 2 {
			if ts, _ := s.Value[0].(float64); int64(ts) == t {
				return s.Value[1].(string), true
			}
		}
	}
	return "", false
}

func (r *promResult) points() int {
	n := 0
	for _, s := range r.Data.Result {
		n += len(s.Values)
		if s.Value != nil {
			n++
		}
	}
	return n
}

func promAPI(t *testing.T, base, endpoint string, form url.Values) *promResult {
	t.Helper()
	resp, err := http.PostForm(base+"/prometheus/api/v1/"+endpoint, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r promResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s %v: %d %s", endpoint, form, resp.StatusCode, b)
	}
	if r.Status != "success" {
		t.Fatalf("%s %q: %s: %s", endpoint, form.Get("query"), r.ErrorType, r.Error)
	}
	return &r
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// windowValue is the final value of a row of orders_per_min in window w,
// as the generated panels read it.
const windowValue = `last_over_time(ops_view_%s{view="orders_per_min", country=%q}[1m] offset -59s999ms)`

// TestGrafanaAndQueryCLI runs one Ops with a windowed view, then checks
// ops grafana provision (every generated query runs on the real API) and
// ops query (table, json, csv, errors) against it.
func TestGrafanaAndQueryCLI(t *testing.T) {
	c, err := config.Parse([]byte(gqViews))
	if err != nil {
		t.Fatal(err)
	}
	app := testutil.StartApp(t, []string{"all"}, func(cfg *config.Config) {
		cfg.Views = c.Views
		// rate() over Ops's own metrics needs two scrapes; 15s would
		// make the test wait.
		cfg.TSDB.ScrapeInterval = config.Duration(time.Second)
	})
	// Two past windows: w0 gets de three times (in two requests, so its
	// series has a first sample and a later change) and fr twice; w1 gets
	// de once.
	w0 := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	w1 := w0.Add(time.Minute)
	ev := func(id string, at time.Time, data string) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/t","type":"shop.order","time":%q,"data":%s}`, id, at.Format(time.RFC3339), data)
	}
	publish := func(evs ...string) {
		t.Helper()
		resp, err := http.Post(app.URL+"/api/v1/events", "application/cloudevents-batch+json", strings.NewReader("["+strings.Join(evs, ",")+"]"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("publish: %d %s", resp.StatusCode, b)
		}
	}
	publish(ev("o1", w0.Add(5*time.Second), `{"country":"de","total":10.5,"ms":120,"lag":3,"user":"u1","note":"a"}`))
	instant := func(q string, at time.Time) *promResult {
		return promAPI(t, app.URL, "query", url.Values{"query": {q}, "time": {unix(at)}})
	}
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if v, _ := instant(fmt.Sprintf(windowValue, "orders", "de"), w0).at("country", "de", w0.Unix()); v != "1" {
			return fmt.Errorf("first sample of de in w0: %q", v)
		}
		return nil
	})
	publish(ev("o2", w0.Add(10*time.Second), `{"country":"de","total":10.5,"ms":130,"lag":5,"user":"u2","note":"b"}`),
		ev("o3", w0.Add(20*time.Second), `{"country":"de","total":10.5,"ms":140,"lag":4,"user":"u1","note":"c"}`),
		ev("o4", w0.Add(30*time.Second), `{"country":"fr","total":7,"ms":50,"lag":1,"user":"u3","note":"d"}`),
		ev("o5", w0.Add(40*time.Second), `{"country":"fr","total":8,"ms":70,"lag":2,"user":"u4","note":"e"}`),
		ev("o6", w1.Add(5*time.Second), `{"country":"de","total":1,"ms":10,"lag":9,"user":"u1","note":"f"}`))
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, c := range []struct {
			country string
			at      time.Time
			want    string
		}{{"de", w0, "3"}, {"fr", w0, "2"}, {"de", w1, "1"}} {
			if v, _ := instant(fmt.Sprintf(windowValue, "orders", c.country), c.at).at("country", c.country, c.at.Unix()); v != c.want {
				return fmt.Errorf("orders of %s at %s: %q, want %s", c.country, c.at.Format(time.TimeOnly), v, c.want)
			}
		}
		// Two scrapes of Ops's own metrics, for rate().
		if r := instant(`rate(ops_bus_events_published_total{job="ops"}[1m])`, time.Now()); len(r.Data.Result) == 0 {
			return fmt.Errorf("no rate of ops_bus_events_published_total yet")
		}
		return nil
	})

	t.Run("grafana", func(t *testing.T) { testGrafanaProvision(t, app, gqViews, w0, w1) })
	t.Run("query", func(t *testing.T) { testQueryCLI(t, app, w0, w1) })
}

var grafanaVarRE = regexp.MustCompile(`\$(__rate_interval|[a-z][a-z0-9_]*)`)

func testGrafanaProvision(t *testing.T, app *testutil.Running, cfgYAML string, w0, w1 time.Time) {
	dir := t.TempDir()
	out := filepath.Join(dir, "provisioning")
	// A dashboard of a view that is gone must be removed; other files stay.
	stale := filepath.Join(out, "dashboards", "ops", "ops-view-gone.json")
	mine := filepath.Join(out, "dashboards", "ops", "mine.json")
	for _, p := range []string{stale, mine} {
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		_ = os.WriteFile(p, []byte("{}"), 0o644)
	}
	stdout, stderr, err := runOps("--server", app.URL, "--token", app.Token, "grafana", "provision", "--out", out)
	if err != nil {
		t.Fatalf("provision: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, "removed "+stale) || !strings.Contains(stdout, "OPS_GRAFANA_TOKEN=$(ops token create") ||
		!strings.Contains(stderr, "view totals has no window") {
		t.Errorf("output:\n%s\nstderr:\n%s", stdout, stderr)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("stale dashboard kept")
	}
	if _, err := os.Stat(mine); err != nil {
		t.Error("a file provision did not write was removed")
	}

	// The data source: Prometheus on /prometheus, the token in a header
	// Grafana fills from its environment. Grafana's requests are made here
	// with that header, from a client that adds nothing of its own.
	var dsf struct {
		Datasources []struct {
			Name           string            `yaml:"name"`
			Type           string            `yaml:"type"`
			URL            string            `yaml:"url"`
			JSONData       map[string]any    `yaml:"jsonData"`
			SecureJSONData map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	b, err := os.ReadFile(filepath.Join(out, "datasources", "ops.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &dsf); err != nil || len(dsf.Datasources) != 1 {
		t.Fatalf("datasource YAML: %v\n%s", err, b)
	}
	ds := dsf.Datasources[0]
	if ds.Name != "Ops" || ds.Type != "prometheus" || ds.URL != app.URL+"/prometheus" || ds.JSONData["httpHeaderName1"] != "Authorization" {
		t.Fatalf("datasource: %+v", ds)
	}
	header := os.Expand(ds.SecureJSONData["httpHeaderValue1"], func(k string) string {
		if k == "OPS_GRAFANA_TOKEN" {
			return app.Token
		}
		return "$" + k
	})
	req, _ := http.NewRequest("GET", ds.URL+"/api/v1/status/buildinfo", nil)
	req.Header.Set(ds.JSONData["httpHeaderName1"].(string), header)
	if resp, err := testutil.Anonymous.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("buildinfo with the data source's header: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// The provider points at the folder the dashboards are in.
	var pf struct {
		Providers []struct {
			Type    string         `yaml:"type"`
			Options map[string]any `yaml:"options"`
		} `yaml:"providers"`
	}
	b, _ = os.ReadFile(filepath.Join(out, "dashboards", "ops.yaml"))
	if err := yaml.Unmarshal(b, &pf); err != nil || len(pf.Providers) != 1 {
		t.Fatalf("provider YAML: %v\n%s", err, b)
	}
	dashDir, _ := pf.Providers[0].Options["path"].(string)
	jsons, _ := filepath.Glob(filepath.Join(dashDir, "*.json"))
	var names []string
	for _, p := range jsons {
		names = append(names, filepath.Base(p))
	}
	if !slices.Equal(names, []string{"mine.json", "ops-health.json", "ops-view-orders_per_min.json"}) {
		t.Fatalf("dashboards in %s: %v", dashDir, names)
	}

	// The same views from the config file give the same dashboards.
	cfgFile := filepath.Join(dir, "ops.yaml")
	_ = os.WriteFile(cfgFile, []byte(cfgYAML), 0o600)
	out2 := filepath.Join(dir, "from-config")
	if stdout, stderr, err := runOps("--server", app.URL, "grafana", "provision", "--out", out2, "-c", cfgFile); err != nil {
		t.Fatalf("provision -c: %v\n%s%s", err, stdout, stderr)
	}
	for _, n := range []string{"ops-health.json", "ops-view-orders_per_min.json"} {
		a, _ := os.ReadFile(filepath.Join(dashDir, n))
		b, _ := os.ReadFile(filepath.Join(out2, "dashboards", "ops", n))
		if !bytes.Equal(a, b) || len(a) == 0 {
			t.Errorf("%s: from the API and from --config differ", n)
		}
	}

	for _, n := range []string{"ops-health.json", "ops-view-orders_per_min.json"} {
		b, _ := os.ReadFile(filepath.Join(dashDir, n))
		var d grafana.Dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if n == "ops-health.json" {
			checkHealth(t, app, &d)
		} else {
			checkViewDashboard(t, app, &d, w0, w1)
		}
	}
}

// expand substitutes what Grafana would: $__rate_interval, and "All" for
// the key variables.
func expand(t *testing.T, q string) string {
	t.Helper()
	q = grafanaVarRE.ReplaceAllStringFunc(q, func(v string) string {
		if v == "$__rate_interval" {
			return "1m"
		}
		return ".*"
	})
	if strings.Contains(q, "$") {
		t.Fatalf("unexpanded variable in %s", q)
	}
	return q
}

func checkViewDashboard(t *testing.T, app *testutil.Running, d *grafana.Dashboard, w0, w1 time.Time) {
	// The key variable lists the rows' keys (Grafana's label_values is the
	// label values endpoint with a match[]).
	if len(d.Templating.List) != 1 || d.Templating.List[0].Name != "country" {
		t.Fatalf("variables: %+v", d.Templating.List)
	}
	resp, err := http.Get(app.URL + "/prometheus/api/v1/label/country/values?" +
		url.Values{"match[]": {`ops_view_orders{view="orders_per_min"}`}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var lv struct{ Data []string }
	_ = json.NewDecoder(resp.Body).Decode(&lv)
	resp.Body.Close()
	if !slices.Equal(lv.Data, []string{"de", "fr"}) {
		t.Errorf("country values: %v", lv.Data)
	}
	// Value at w0 and w1 per row; "" is no point. The range query is
	// Grafana's: step = the panel's interval, start aligned to it.
	type want struct {
		unit          string
		de0, fr0, de1 string // fr has no row in w1
	}
	wants := map[string]want{
		"orders":     {unit: "short", de0: "3", fr0: "2", de1: "1"},
		"revenue":    {unit: "short", de0: "31.5", fr0: "15", de1: "1"},
		"latency_ms": {unit: "ms", de0: "130", fr0: "60", de1: "10"},
		"lag":        {unit: "short", de0: "5", fr0: "2", de1: "9"},
		"buyers":     {unit: "short", de0: "2", fr0: "2", de1: "1"},
		"note":       {unit: "short"}, // strings: no series, but a valid query
	}
	if len(d.Panels) != len(wants) {
		t.Errorf("%d panels, want %d", len(d.Panels), len(wants))
	}
	for _, p := range d.Panels {
		w, ok := wants[p.Title]
		if !ok {
			t.Errorf("unexpected panel %q", p.Title)
			continue
		}
		if p.Interval != "1m" || p.FieldConfig.Defaults.Unit != w.unit || len(p.Targets) != 1 {
			t.Errorf("panel %s: interval %q unit %q, %d targets", p.Title, p.Interval, p.FieldConfig.Defaults.Unit, len(p.Targets))
			continue
		}
		r := promAPI(t, app.URL, "query_range", url.Values{"query": {expand(t, p.Targets[0].Expr)},
			"start": {unix(w0.Add(-2 * time.Minute))}, "end": {unix(time.Now().Truncate(time.Minute).Add(time.Minute))}, "step": {"60"}})
		for _, s := range r.Data.Result {
			if c := s.Metric["country"]; len(s.Metric) != 1 || (c != "de" && c != "fr") {
				t.Errorf("panel %s: series %v (Ops's own ops_view_%s must not show)", p.Title, s.Metric, p.Title)
			}
		}
		if w.de0 == "" {
			if len(r.Data.Result) != 0 {
				t.Errorf("panel %s: want no series, got %v", p.Title, r.Data.Result)
			}
			continue
		}
		for _, c := range []struct {
			country string
			at      time.Time
			want    string
		}{{"de", w0, w.de0}, {"fr", w0, w.fr0}, {"de", w1, w.de1}, {"fr", w1, ""}, {"de", w0.Add(-time.Minute), ""}} {
			got, ok := r.at("country", c.country, c.at.Unix())
			if got != c.want || ok != (c.want != "") {
				t.Errorf("panel %s: %s at %s = %q, want %q", p.Title, c.country, c.at.Format(time.TimeOnly), got, c.want)
			}
		}
		if n := r.points(); n != 3 {
			t.Errorf("panel %s: %d points, want 3 (one per row and window)", p.Title, n)
		}
	}
}

// healthOptional are panels on series that exist only once a module has
// something to count (proxy routes, remote-write destinations).
var healthOptional = map[string]bool{"Proxy requests by status": true, "Proxy latency": true, "Remote-write lag": true}

func checkHealth(t *testing.T, app *testutil.Running, d *grafana.Dashboard) {
	if len(d.Panels) < 10 {
		t.Errorf("%d panels", len(d.Panels))
	}
	// Every query must succeed at once; a series that appeared with the
	// events (a view's counters) needs two scrapes before rate() has a
	// point, so data is polled for.
	testutil.CheckFor(t, 15*time.Second, 200*time.Millisecond, func() error {
		end := time.Now()
		var empty []string
		for _, p := range d.Panels {
			points := 0
			for _, tg := range p.Targets {
				r := promAPI(t, app.URL, "query_range", url.Values{"query": {expand(t, tg.Expr)},
					"start": {unix(end.Add(-2 * time.Minute))}, "end": {unix(end)}, "step": {"5"}})
				if r.Data.ResultType != "matrix" {
					t.Fatalf("panel %s: %s: result %s", p.Title, tg.Expr, r.Data.ResultType)
				}
				points += r.points()
			}
			if points == 0 && !healthOptional[p.Title] {
				empty = append(empty, p.Title)
			}
		}
		if len(empty) > 0 {
			return fmt.Errorf("panels without data: %q", empty)
		}
		return nil
	})
}

func testQueryCLI(t *testing.T, app *testutil.Running, w0, w1 time.Time) {
	q := `sum by (country) (last_over_time(ops_view_orders{view="orders_per_min"}[1m] offset -59s999ms))`
	base := []string{"--server", app.URL, "--token", app.Token, "query"}
	run := func(args ...string) string {
		t.Helper()
		out, stderr, err := runOps(append(slices.Clone(base), args...)...)
		if err != nil {
			t.Fatalf("ops query %q: %v\n%s", args, err, stderr)
		}
		return out
	}
	t0, t1 := w0.Format(time.RFC3339), w1.Format(time.RFC3339)

	out := run(q, "--time", unix(w0))
	want := fmt.Sprintf("COUNTRY  TIME                  VALUE\nde       %s  3\nfr       %s  2\n", t0, t0)
	if out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}

	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	out = run(q, "--time", t0, "-o", "json")
	if err := json.Unmarshal([]byte(out), &data); err != nil || data.ResultType != "vector" || len(data.Result) != 2 ||
		data.Result[0].Metric["country"] != "de" || data.Result[0].Value[1] != "3" || data.Result[0].Value[0] != float64(w0.Unix()) {
		t.Errorf("json: %v %+v\n%s", err, data, out)
	}

	out = run(q, "--start", t0, "--end", unix(w1.Add(time.Minute)), "--step", "1m", "-o", "csv")
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	wantCSV := [][]string{{"country", "time", "value"}, {"de", t0, "3"}, {"de", t1, "1"}, {"fr", t0, "2"}}
	if err != nil || !slices.EqualFunc(recs, wantCSV, slices.Equal) {
		t.Errorf("csv: %v\n%s", err, out)
	}

	// Raw series: a column per label, __name__ first. A view's sample
	// sits at its row's newest event (fr's at 40 s into w0).
	tq := w0.Add(50 * time.Second).Format(time.RFC3339)
	out = run(`ops_view_orders{country="fr"}`, "--time", tq, "-o", "csv")
	if !strings.HasPrefix(out, "__name__,country,view,time,value\nops_view_orders,fr,orders_per_min,"+tq+",2") {
		t.Errorf("csv of raw series:\n%s", out)
	}
	if out = run("1 + 1", "--time", t0); out != "TIME                  VALUE\n"+t0+"  2\n" {
		t.Errorf("scalar:\n%s", out)
	}
	if out = run(`absent(nothing_here)`, "--range", "--start", "-5m", "-o", "csv"); !strings.HasPrefix(out, "time,value\n") || strings.Count(out, "\n") < 5 {
		t.Errorf("relative range with the default step:\n%s", out)
	}

	// Errors: the API's errorType and message, and a non-zero exit.
	_, _, err = runOps(append(slices.Clone(base), "sum(rate(x[5m])")...)
	if err == nil || exitCode(err) == 0 || !strings.Contains(err.Error(), "bad_data") || !strings.Contains(err.Error(), "parse error") {
		t.Errorf("malformed query: %v", err)
	}
	_, _, err = runOps("--server", app.URL, "--token", "ops_bad_token", "query", "up")
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("bad token: %v", err)
	}
	for _, args := range [][]string{{"up", "--start", "yesterday"}, {"up", "--range", "--time", "now"}, {"up", "--start", "now", "--end", "-1h"}} {
		if _, _, err := runOps(append(slices.Clone(base), args...)...); err == nil {
			t.Errorf("%q: want an error", args)
		}
	}
}

func TestQueryTimes(t *testing.T) {
	now := time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"now", now},
		{"-1h", now.Add(-time.Hour)},
		{"now-30m", now.Add(-30 * time.Minute)},
		{"now+5m", now.Add(5 * time.Minute)},
		{"-2d", now.Add(-48 * time.Hour)},
		{"1795804620", time.Unix(1795804620, 0)},
		{"1795804620.5", time.Unix(1795804620, 5e8)},
		{"2026-11-27T12:00:00Z", now.Add(-time.Hour)},
		{"2026-11-27T14:00:00+02:00", now.Add(-time.Hour)},
	} {
		got, err := parseQueryTime(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("%q: %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-", "now-", "-1x", "NaN", "2026-11-27"} {
		if _, err := parseQueryTime(bad, now); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
	for _, tc := range []struct {
		r, step time.Duration
	}{{time.Hour, time.Minute}, {5 * time.Minute, 5 * time.Second}, {0, time.Second}, {24 * time.Hour, 30 * time.Minute}, {7 * 24 * time.Hour, 3 * time.Hour}} {
		if got := defaultStep(tc.r); got != tc.step {
			t.Errorf("defaultStep(%v) = %v, want %v", tc.r, got, tc.step)
		}
	}
	for in, want := range map[string]time.Duration{"30": 30 * time.Second, "0.5": 500 * time.Millisecond, "1m30s": 90 * time.Second, "1d": 24 * time.Hour} {
		if got, err := parseStep(in); err != nil || got != want {
			t.Errorf("step %q: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"0", "-1", "0s", "x"} {
		if _, err := parseStep(bad); err == nil {
			t.Errorf("step %q: want an error", bad)
		}
	}
}

// FuzzQueryTime: --start, --end and --time are typed by people.
func FuzzQueryTime(f *testing.F) {
	for _, s := range []string{"now", "-1h", "now+5m", "1795804620.5", "2026-11-27T12:00:00Z", "-1e400"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		if tm, err := parseQueryTime(s, now); err == nil {
			_ = apiTime(tm)
		}
	})
}
