package alert_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/alert"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

func call(t *testing.T, method, u, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	switch {
	case strings.HasPrefix(body, "["):
		req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	case strings.HasPrefix(body, "{"):
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := testutil.Anonymous.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A rule over what the deploy module exports: a bad version running.
const rulesFile = `groups:
  - name: deploys
    interval: 1s
    rules:
      - alert: BadVersion
        expr: ops_deploy_info{version="bad"} == 1
        for: 2s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.service }}/{{ $labels.env }} runs {{ $labels.version }}"
      - record: ops:deployments:sum
        expr: sum(ops_deployments_total)
`

type stored struct {
	Events []struct {
		Event struct {
			Type string
			ID   string
			Data alert.StateChange
		}
	}
}

// TestRuleFileFiresAndResolves loads an unchanged Prometheus rule file,
// makes its alert pend, fire and resolve through a real deployment, and
// checks the alert as the API, the ALERTS series and the ev.alert.*
// events show it: each state change recorded once.
func TestRuleFileFiresAndResolves(t *testing.T) {
	dir := t.TempDir()
	rf := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(rf, []byte(rulesFile), 0o600); err != nil {
		t.Fatal(err)
	}
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.TSDB.ScrapeInterval = config.Duration(time.Second)
		c.Alert.RuleFiles = config.Strings{filepath.Join(dir, "*.yml")}
	})
	record := func(version string) {
		t.Helper()
		if code, body := call(t, "POST", r.URL+"/api/v1/deployments", r.Token, `{"service":"api","env":"prod","version":"`+version+`"}`); code != 201 {
			t.Fatalf("record %s: %d %s", version, code, body)
		}
	}
	record("bad")
	var active struct{ Alerts []alert.Active }
	testutil.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		_, body := call(t, "GET", r.URL+"/api/v1/alerts", r.Token, "")
		if err := json.Unmarshal([]byte(body), &active); err != nil {
			return err
		}
		if len(active.Alerts) != 1 || active.Alerts[0].State != "firing" {
			return fmt.Errorf("%s", body)
		}
		return nil
	})
	a := active.Alerts[0]
	if a.Labels["severity"] != "page" || a.Labels["alertname"] != "BadVersion" || a.Annotations["summary"] != "api/prod runs bad" || a.FiredAt == nil {
		t.Fatalf("alert: %+v", a)
	}
	// ALERTS as Prometheus writes it.
	testutil.CheckFor(t, 10*time.Second, 200*time.Millisecond, func() error {
		_, body := call(t, "GET", r.URL+"/prometheus/api/v1/query?query="+url.QueryEscape(`ALERTS{alertname="BadVersion",alertstate="firing",severity="page"}`), r.Token, "")
		if !strings.Contains(body, `"service":"api"`) {
			return fmt.Errorf("%s", body)
		}
		return nil
	})
	// A good version replaces the info series: the alert resolves.
	record("good")
	var evs stored
	testutil.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		_, body := call(t, "GET", r.URL+"/api/v1/events?subject="+url.QueryEscape("ev.alert.>"), r.Token, "")
		if err := json.Unmarshal([]byte(body), &evs); err != nil {
			return err
		}
		if n := len(evs.Events); n == 0 || evs.Events[n-1].Event.Type != "alert.resolved" {
			return fmt.Errorf("%s", body)
		}
		return nil
	})
	var types []string
	for _, x := range evs.Events {
		e := x.Event
		types = append(types, e.Type)
		if e.Data.Alert != "BadVersion" || e.Data.Labels["service"] != "api" || e.Data.Group != "deploys" {
			t.Fatalf("event %+v", e)
		}
	}
	if got := strings.Join(types, ","); got != "alert.pending,alert.firing,alert.resolved" {
		t.Fatalf("state changes %s, want pending, firing, resolved once each", got)
	}
	// The recording rule wrote its series.
	_, body := call(t, "GET", r.URL+"/prometheus/api/v1/query?query="+url.QueryEscape("ops:deployments:sum"), r.Token, "")
	if !strings.Contains(body, `"__name__":"ops:deployments:sum"`) {
		t.Fatalf("recording rule: %s", body)
	}
}

// TestRulesThroughTheAPI: a group is added, listed, refused with the rule
// and position named when its PromQL is bad, and removed.
func TestRulesThroughTheAPI(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	base := r.URL + "/api/v1/alerts/rules"
	bad := "groups:\n  - name: web\n    rules:\n      - alert: Ok\n        expr: up == 0\n      - alert: Broken\n        expr: sum(rate(x[5m]) by (job)\n"
	code, body := call(t, "PUT", base+"/web", r.Token, bad)
	var e struct{ Error, Field string }
	_ = json.Unmarshal([]byte(body), &e)
	if code != 400 || e.Field != "groups[web].rules[1]" || !strings.Contains(e.Error, `"Broken"`) || !strings.Contains(e.Error, "7:15") {
		t.Fatalf("bad PromQL: %d %s", code, body)
	}
	for _, c := range []struct{ path, body, field string }{
		{"/web", "groups:\n  - name: other\n    rules: []\n", "groups"},
		{"/web", "groups:\n  - name: web\n    rules:\n      - alert: X\n        expr: up\n        for: soon\n", "groups"},
		{"/bad%20name", "groups: []\n", "name"},
		{"/web", "groups:\n  - name: web\n    colour: red\n", "groups"},
		{"/web", "groups:\n  - name: web\n    interval: 1ms\n    rules: []\n", "groups[web].interval"},
	} {
		code, body := call(t, "PUT", base+c.path, r.Token, c.body)
		_ = json.Unmarshal([]byte(body), &e)
		if code != 400 || e.Field != c.field {
			t.Errorf("%q: %d %s, want 400 naming %s", c.body, code, body, c.field)
		}
	}
	good := "groups:\n  - name: web\n    interval: 1s\n    rules:\n      - alert: Nothing\n        expr: vector(1) == 2\n"
	// A viewer reads and checks but does not change the rules.
	code, body = call(t, "POST", r.URL+"/api/v1/tokens", r.Token, `{"name":"v","role":"viewer"}`)
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(body), &tok); code != 201 || err != nil {
		t.Fatalf("viewer token: %d %s", code, body)
	}
	if code, _ := call(t, "PUT", base+"/web", tok.Token, good); code != 403 {
		t.Fatalf("a viewer stored rules: %d", code)
	}
	if code, _ := call(t, "GET", r.URL+"/api/v1/alerts", tok.Token, ""); code != 200 {
		t.Fatalf("a viewer cannot read alerts: %d", code)
	}
	if code, body := call(t, "PUT", base+"/web", r.Token, good); code != 200 {
		t.Fatalf("put: %d %s", code, body)
	}
	if code, body := call(t, "POST", base+"/check", r.Token, good); code != 200 || !strings.Contains(body, `"rules":1`) {
		t.Fatalf("check: %d %s", code, body)
	}
	listed := func() []alert.GroupInfo {
		_, body := call(t, "GET", base, r.Token, "")
		var res struct{ Groups []alert.GroupInfo }
		_ = json.Unmarshal([]byte(body), &res)
		return res.Groups
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		gs := listed()
		if len(gs) != 1 || gs[0].Name != "web" || len(gs[0].Rules) != 1 || gs[0].Rules[0].Health != "ok" {
			return fmt.Errorf("%+v", gs)
		}
		return nil
	})
	if code, _ := call(t, "DELETE", base+"/web", r.Token, ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if gs := listed(); len(gs) != 0 {
			return fmt.Errorf("%+v", gs)
		}
		return nil
	})
	if code, _ := call(t, "DELETE", base+"/web", r.Token, ""); code != 404 {
		t.Fatalf("delete again: %d", code)
	}
}

// TestRuleOverAView: a rule over a windowed view's series (the issue's
// "404s per client > 20 in a minute") fires for the client that did it,
// with the view's key as a label, and not for the one that did not.
func TestRuleOverAView(t *testing.T) {
	dir := t.TempDir()
	rf := filepath.Join(dir, "rules.yml")
	_ = os.WriteFile(rf, []byte(`groups:
  - name: abuse
    interval: 1s
    rules:
      - alert: ManyNotFound
        expr: ops_view_hits{view="not_found_per_client"} > 20
        labels: {severity: ticket}
        annotations: {summary: "{{ $labels.client }}: {{ $value }} 404s in a minute"}
`), 0o600)
	views, err := config.Parse([]byte(`views:
  - name: not_found_per_client
    from: ev.web.not_found
    key: {client: this.data.client}
    window: 1m
    measures:
      hits: count
`))
	if err != nil {
		t.Fatal(err)
	}
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Views = views.Views
		c.Alert.RuleFiles = config.Strings{rf}
	})
	var batch []string
	for i := range 25 {
		batch = append(batch, fmt.Sprintf(`{"specversion":"1.0","id":"nf-%d","source":"/edge","type":"web.not_found","data":{"client":"10.0.0.9"}}`, i))
	}
	for i := range 3 {
		batch = append(batch, fmt.Sprintf(`{"specversion":"1.0","id":"ok-%d","source":"/edge","type":"web.not_found","data":{"client":"10.0.0.7"}}`, i))
	}
	if code, body := call(t, "POST", r.URL+"/api/v1/events", r.Token, "["+strings.Join(batch, ",")+"]"); code/100 != 2 {
		t.Fatalf("publish: %d %s", code, body)
	}
	var active struct{ Alerts []alert.Active }
	testutil.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		_, body := call(t, "GET", r.URL+"/api/v1/alerts", r.Token, "")
		if err := json.Unmarshal([]byte(body), &active); err != nil {
			return err
		}
		if len(active.Alerts) == 0 {
			return fmt.Errorf("%s", body)
		}
		return nil
	})
	if len(active.Alerts) != 1 || active.Alerts[0].Labels["client"] != "10.0.0.9" || active.Alerts[0].Annotations["summary"] != "10.0.0.9: 25 404s in a minute" {
		t.Fatalf("alerts: %+v", active.Alerts)
	}
}

// TestSameAlertsAsPrometheus: Debian's Prometheus gets Ops's series by
// remote write and evaluates the same rule file; both fire the same
// alert (same labels) and resolve it, and Ops's start of the alert is
// within an evaluation interval (plus the remote-write delay) of
// Prometheus's.
func TestSameAlertsAsPrometheus(t *testing.T) {
	dir := t.TempDir()
	rf := filepath.Join(dir, "rules.yml")
	_ = os.WriteFile(rf, []byte(rulesFile), 0o600)
	prom := testutil.StartPrometheus(t, "global: {scrape_interval: 1h, evaluation_interval: 1s}\nrule_files: ["+rf+"]\n", "--web.enable-remote-write-receiver")
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.TSDB.ScrapeInterval = config.Duration(time.Second)
		c.TSDB.RemoteWrite = []config.RemoteWrite{{URL: prom.URL + "/api/v1/write", Name: "prom", BatchSize: 100}}
		c.Alert.RuleFiles = config.Strings{rf}
	})
	type seen struct {
		Labels   map[string]string
		State    string
		ActiveAt time.Time
	}
	promAlerts := func() []seen {
		resp, err := http.Get(prom.URL + "/api/v1/alerts")
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var res struct {
			Data struct {
				Alerts []struct {
					Labels   map[string]string `json:"labels"`
					State    string            `json:"state"`
					ActiveAt time.Time         `json:"activeAt"`
				} `json:"alerts"`
			} `json:"data"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&res)
		var out []seen
		for _, a := range res.Data.Alerts {
			out = append(out, seen{a.Labels, a.State, a.ActiveAt})
		}
		return out
	}
	opsAlerts := func() []seen {
		_, body := call(t, "GET", r.URL+"/api/v1/alerts", r.Token, "")
		var res struct{ Alerts []alert.Active }
		_ = json.Unmarshal([]byte(body), &res)
		var out []seen
		for _, a := range res.Alerts {
			out = append(out, seen{a.Labels, a.State, a.ActiveAt})
		}
		return out
	}
	if code, body := call(t, "POST", r.URL+"/api/v1/deployments", r.Token, `{"service":"api","env":"prod","version":"bad"}`); code != 201 {
		t.Fatalf("record: %d %s", code, body)
	}
	var theirs, ours []seen
	testutil.CheckFor(t, 40*time.Second, 200*time.Millisecond, func() error {
		theirs, ours = promAlerts(), opsAlerts()
		if len(theirs) != 1 || len(ours) != 1 || theirs[0].State != "firing" || ours[0].State != "firing" {
			return fmt.Errorf("prometheus %+v, ops %+v", theirs, ours)
		}
		return nil
	})
	if fmt.Sprint(theirs[0].Labels) != fmt.Sprint(ours[0].Labels) {
		t.Fatalf("labels differ:\nprometheus %v\nops        %v", theirs[0].Labels, ours[0].Labels)
	}
	d := ours[0].ActiveAt.Sub(theirs[0].ActiveAt)
	t.Logf("Ops's alert became active %v after Prometheus's (negative: before)", d)
	if d.Abs() > 2*time.Second { // 1 s interval + remote write's delay
		t.Fatalf("Ops's alert active at %v, Prometheus's at %v: %v apart", ours[0].ActiveAt, theirs[0].ActiveAt, d)
	}
	if code, body := call(t, "POST", r.URL+"/api/v1/deployments", r.Token, `{"service":"api","env":"prod","version":"good"}`); code != 201 {
		t.Fatalf("record: %d %s", code, body)
	}
	testutil.CheckFor(t, 40*time.Second, 200*time.Millisecond, func() error {
		theirs, ours = promAlerts(), opsAlerts()
		if len(theirs) != 0 || len(ours) != 0 {
			return fmt.Errorf("prometheus %+v, ops %+v", theirs, ours)
		}
		return nil
	})
}
