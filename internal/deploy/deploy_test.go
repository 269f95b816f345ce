package deploy_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/deploy"
	"github.com/opsgraph/ops/internal/grafana"
	"github.com/opsgraph/ops/internal/testutil"
)

// call sends a JSON request with the token and returns the status and body.
func call(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	return testutil.Call(t, method, url, token, body)
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	return v
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

const cfgV1 = "server:\n  port: 8080\n  log_level: info\nfeatures:\n  checkout: false\n"
const cfgV2 = "server:\n  port: 8080\n  log_level: debug\nfeatures:\n  checkout: true\n"

// TestRecordDriftDiff records two deployments with their configs, has
// three hosts report what they run, and reads back what runs, the drift,
// the config diff and the info series, as an operator would during an
// incident.
func TestRecordDriftDiff(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.TSDB.ScrapeInterval = config.Duration(time.Second) })
	base := r.URL + "/api/v1/deployments"

	code, body := call(t, "POST", base, r.Token, js(map[string]any{"id": "d1", "service": "API", "env": "prod", "version": "1.4.1",
		"commit": "a1b2c3d", "hosts": []string{"web-1", "web-2"}, "config": cfgV1}))
	if code != 201 {
		t.Fatalf("record: %d %s", code, body)
	}
	d1 := decode[deploy.Recorded](t, body).Deployment
	if d1.Service != "api" || d1.Status != "succeeded" || d1.Who == "" || len(d1.ConfigHash) != 64 {
		t.Fatalf("recorded %+v", d1)
	}
	code, body = call(t, "POST", base, r.Token, js(map[string]any{"id": "d2", "service": "api", "env": "prod", "version": "1.4.2",
		"commit": "d4e5f6a", "hosts": []string{"web-1", "web-2"}, "config": cfgV2}))
	if code != 201 {
		t.Fatalf("record: %d %s", code, body)
	}
	d2 := decode[deploy.Recorded](t, body).Deployment
	// A CI job that retries stores nothing twice.
	code, body = call(t, "POST", base, r.Token, js(map[string]any{"id": "d2", "service": "api", "env": "prod", "version": "1.4.2"}))
	if code != 200 || decode[deploy.Recorded](t, body).Stored {
		t.Fatalf("retry: %d %s", code, body)
	}
	// The same config twice is stored once: same hash.
	code, body = call(t, "POST", base, r.Token, js(map[string]any{"id": "s1", "service": "api", "env": "staging", "version": "1.4.2", "config": cfgV2}))
	if code != 201 || decode[deploy.Recorded](t, body).Deployment.ConfigHash != d2.ConfigHash {
		t.Fatalf("staging: %d %s", code, body)
	}

	beat := func(host, version, hash string, every float64) {
		t.Helper()
		code, body := call(t, "POST", base+"/heartbeat", r.Token, js(map[string]any{"service": "api", "env": "prod", "host": host,
			"version": version, "config_hash": hash, "every": every}))
		if code != 202 {
			t.Fatalf("heartbeat %s: %d %s", host, code, body)
		}
	}
	beat("web-1", "1.4.2", d2.ConfigHash, 0)
	beat("web-2", "1.4.1", d1.ConfigHash, 0) // did not get the new release
	beat("web-3", "1.4.2", d2.ConfigHash, 0.2)

	// web-2 drifts on version and config at once; web-3 goes silent after
	// three missed 0.2 s heartbeats; web-1 runs what it should.
	var drift struct{ Drift []deploy.Service }
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		_, body := call(t, "GET", base+"/drift?service=api", r.Token, "")
		drift = decode[struct{ Drift []deploy.Service }](t, body)
		if len(drift.Drift) != 1 || len(drift.Drift[0].Hosts) != 2 {
			return fmt.Errorf("%s", body)
		}
		return nil
	})
	got := map[string]string{}
	for _, h := range drift.Drift[0].Hosts {
		got[h.Host] = strings.Join(h.Drift, ",")
	}
	if got["web-2"] != "version,config" || got["web-3"] != "silent" || drift.Drift[0].Desired.Version != "1.4.2" {
		t.Fatalf("drift: %+v", drift.Drift[0])
	}
	_, body = call(t, "GET", base+"/services?env=prod", r.Token, "")
	svcs := decode[struct{ Services []deploy.Service }](t, body).Services
	if len(svcs) != 1 || svcs[0].Current.Version != "1.4.2" || len(svcs[0].Hosts) != 3 || svcs[0].Drifted != 2 {
		t.Fatalf("services: %s", body)
	}

	// What changed between the releases, as a unified diff.
	code, body = call(t, "GET", base+"/diff?from=d1&to=api/prod/d2", r.Token, "")
	if code != 200 || !strings.Contains(body, "-  log_level: info\n+  log_level: debug\n") || !strings.Contains(body, "+  checkout: true") ||
		!strings.HasPrefix(body, "--- api/prod@1.4.1 (d1)\n+++ api/prod@1.4.2 (d2)\n") {
		t.Fatalf("diff: %d\n%s", code, body)
	}
	code, body = call(t, "GET", base+"/configs/"+d1.ConfigHash, r.Token, "")
	if code != 200 || body != cfgV1 {
		t.Fatalf("config: %d %q", code, body)
	}

	// The running version is a series: what the TSDB scrapes and Grafana
	// shows.
	_, body = call(t, "GET", r.URL+"/metrics", r.Token, "")
	if !strings.Contains(body, `ops_deploy_info{commit="d4e5f6a",env="prod",service="api",version="1.4.2"} 1`) ||
		strings.Contains(body, `version="1.4.1"`) {
		t.Fatalf("metrics lack the running version or keep the old one:\n%s", grep(body, "ops_deploy"))
	}
	// Drift is a series too, for alert rules (ops_deploy_drift_hosts > 0).
	for _, want := range []string{`ops_deploy_drift_hosts{env="prod",reason="version",service="api"} 1`,
		`ops_deploy_drift_hosts{env="prod",reason="config",service="api"} 1`,
		`ops_deploy_drift_hosts{env="prod",reason="silent",service="api"} 1`,
		`ops_deploy_drift_hosts{env="prod",reason="missing",service="api"} 0`} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %s:\n%s", want, grep(body, "ops_deploy_drift"))
		}
	}

	// The annotation query of the provisioned Grafana dashboards, run
	// against the TSDB: one point per service/env whose value is the
	// latest deployment's time in milliseconds, labelled for the title.
	testutil.CheckFor(t, 10*time.Second, 200*time.Millisecond, func() error {
		_, body := call(t, "GET", r.URL+"/prometheus/api/v1/query?query="+url.QueryEscape(grafana.DeployExpr), r.Token, "")
		var res struct {
			Data struct {
				Result []struct {
					Metric map[string]string
					Value  [2]any
				}
			}
		}
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			return err
		}
		for _, s := range res.Data.Result {
			if s.Metric["env"] == "prod" {
				want := fmt.Sprint(d2.Updated.UnixMilli())
				if s.Metric["service"] != "api" || s.Metric["version"] != "1.4.2" || s.Metric["status"] != "succeeded" || s.Value[1] != want {
					t.Fatalf("annotation series %v, want time %s", s, want)
				}
				return nil
			}
		}
		return fmt.Errorf("no annotation series yet: %s", body)
	})

	// History, newest first, as CSV too.
	_, body = call(t, "GET", base+"?service=api&env=prod", r.Token, "")
	list := decode[struct{ Deployments []deploy.Deployment }](t, body).Deployments
	if len(list) != 2 || list[0].ID != "d2" || list[1].ID != "d1" {
		t.Fatalf("list: %s", body)
	}
	_, body = call(t, "GET", base+"?service=api&format=csv", r.Token, "")
	if lines := strings.Split(strings.TrimSpace(body), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[0], "at,service,env,version,status") {
		t.Fatalf("csv: %s", body)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestDORA records a month's deployments with their real times and checks
// the four figures against what they must be by hand.
func TestDORA(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	base := r.URL + "/api/v1/deployments"
	t0 := time.Now().UTC().Add(-10 * 24 * time.Hour).Truncate(time.Hour)
	rec := func(id, version, status string, at time.Time, commit *time.Time) {
		t.Helper()
		m := map[string]any{"id": id, "service": "web", "env": "prod", "version": version, "status": status, "at": at}
		if commit != nil {
			m["commit_time"] = commit
		}
		if code, body := call(t, "POST", base, r.Token, js(m)); code != 201 {
			t.Fatalf("%s %s: %d %s", id, status, code, body)
		}
	}
	c1, c3 := t0.Add(-time.Hour), t0.Add(24*time.Hour)
	rec("d1", "1", "succeeded", t0, &c1)                                  // lead 3600 s
	rec("d2", "2", "started", t0.Add(24*time.Hour), nil)                  //
	rec("d2", "2", "failed", t0.Add(24*time.Hour+10*time.Minute), nil)    // restored by d3: 1800 s
	rec("d3", "3", "succeeded", t0.Add(24*time.Hour+30*time.Minute), &c3) // lead 1800 s
	rec("d4", "4", "succeeded", t0.Add(48*time.Hour), nil)
	rec("d4", "4", "rolled_back", t0.Add(48*time.Hour+5*time.Minute), nil) // restored by its rollback: 300 s

	from, to := t0.Add(-time.Hour), t0.Add(71*time.Hour) // three days
	code, body := call(t, "GET", base+"/dora?service=web&from="+from.Format(time.RFC3339)+"&to="+to.Format(time.RFC3339), r.Token, "")
	if code != 200 {
		t.Fatalf("dora: %d %s", code, body)
	}
	d := decode[deploy.DORA](t, body)
	if d.Deployments["succeeded"] != 2 || d.Deployments["failed"] != 1 || d.Deployments["rolled_back"] != 1 || d.Failures != 2 {
		t.Fatalf("counts: %s", body)
	}
	if d.Frequency != 2.0/3 || *d.ChangeFailureRate != 50 || *d.LeadTime != 2700 || *d.TimeToRestore != 1050 {
		t.Fatalf("figures: %s", body)
	}
	// After the rollback, what runs is d3's version again.
	_, body = call(t, "GET", base+"/services?service=web", r.Token, "")
	if s := decode[struct{ Services []deploy.Service }](t, body).Services; len(s) != 1 || s[0].Current.Version != "3" {
		t.Fatalf("after rollback: %s", body)
	}
	// A final status does not change; a rollback needs a recorded deployment.
	for _, c := range []struct {
		body  string
		field string
	}{
		{`{"id":"d4","service":"web","env":"prod","version":"4","status":"succeeded"}`, "status"},
		{`{"id":"d3","service":"web","env":"prod","version":"9","status":"failed"}`, "version"},
		{`{"id":"nope","service":"web","env":"prod","version":"4","status":"rolled_back"}`, "status"},
	} {
		code, body := call(t, "POST", base, r.Token, c.body)
		if code != 409 || decode[struct{ Field string }](t, body).Field != c.field {
			t.Errorf("%s: %d %s, want 409 naming %s", c.body, code, body, c.field)
		}
	}
}

// TestBadInput: every refusal names the field, and nothing is stored.
func TestBadInput(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.Deploy.MaxConfigBytes = 1 << 10 })
	base := r.URL + "/api/v1/deployments"
	for _, c := range []struct {
		path, body string
		code       int
		field      string
	}{
		{"", `{"service":"api prod","env":"prod","version":"1"}`, 400, "service"},
		{"", `{"service":"api","version":"1"}`, 400, "env"},
		{"", `{"service":"api","env":"prod"}`, 400, "version"},
		{"", `{"service":"api","env":"prod","version":"1","status":"done"}`, 400, "status"},
		{"", `{"service":"api","env":"prod","version":"1","config":"a: [1, 2"}`, 400, "config"},
		{"", `{"service":"api","env":"prod","version":"1","config":"` + strings.Repeat("x", 2000) + `"}`, 400, "config"},
		{"", `{"service":"api","env":"prod","version":"1","config_hash":"` + strings.Repeat("ab", 32) + `"}`, 400, "config_hash"},
		{"", `{"service":"api","env":"prod","version":"1","hosts":["web 1"]}`, 400, "hosts[0]"},
		{"", `{"service":"api","env":"prod","version":"1","colour":"red"}`, 400, "colour"},
		{"", `{"service":"api","env":"prod","version":1}`, 400, "version"},
		{"", `{"service":"api","env":"prod","version":"1\u0000"}`, 400, "version"},
		{"/heartbeat", `{"service":"api","env":"prod","version":"1"}`, 400, "host"},
		{"/heartbeat", `{"service":"api","env":"prod","version":"1","host":"h","every":-1}`, 400, "every"},
	} {
		code, body := call(t, "POST", base+c.path, r.Token, c.body)
		if code != c.code || decode[struct{ Field string }](t, body).Field != c.field {
			t.Errorf("%s: %d %s, want %d naming %q", c.body, code, body, c.code, c.field)
		}
	}
	for _, q := range []struct{ query, field string }{
		{"/dora?since=yesterday", "since"}, {"?limit=0", "limit"}, {"/diff?from=x&to=y", "from"}, {"?service=A.B", "service"},
		{"/configs/zz", "hash"},
	} {
		code, body := call(t, "GET", base+q.query, r.Token, "")
		if code != 400 || decode[struct{ Field string }](t, body).Field != q.field {
			t.Errorf("%s: %d %s, want 400 naming %s", q.query, code, body, q.field)
		}
	}
	_, body := call(t, "GET", base, r.Token, "")
	if n := len(decode[struct{ Deployments []deploy.Deployment }](t, body).Deployments); n != 0 {
		t.Fatalf("bad input stored %d deployments", n)
	}
}

// TestPermissionsAndRestart: a viewer reads but cannot record, and what was
// recorded is all there after a restart (rebuilt from the bus).
func TestPermissionsAndRestart(t *testing.T) {
	dir := t.TempDir()
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.DataDir = dir })
	base := r.URL + "/api/v1/deployments"
	code, body := call(t, "POST", r.URL+"/api/v1/tokens", r.Token, `{"name":"v","role":"viewer"}`)
	if code != 201 && code != 200 {
		t.Fatalf("token: %d %s", code, body)
	}
	viewer := decode[struct{ Token string }](t, body).Token
	if code, _ := call(t, "POST", base, viewer, `{"service":"api","env":"prod","version":"1"}`); code != 403 {
		t.Fatalf("viewer recorded a deployment: %d", code)
	}
	if code, _ := call(t, "POST", base+"/heartbeat", viewer, `{"service":"api","env":"prod","version":"1","host":"h"}`); code != 403 {
		t.Fatalf("viewer sent a heartbeat: %d", code)
	}
	// Heartbeats are a reserved domain: the generic publish API wants
	// deploy:write too.
	ce := `{"specversion":"1.0","id":"x1","source":"/h","type":"deploy.heartbeat","data":{"service":"api","env":"prod","host":"h","version":"9"}}`
	if code, body := call(t, "POST", r.URL+"/api/v1/events", viewer, ce); code != 403 {
		t.Fatalf("viewer published a heartbeat: %d %s", code, body)
	}
	for i := range 3 {
		if code, body := call(t, "POST", base, r.Token, js(map[string]any{"service": "api", "env": "prod", "version": fmt.Sprint(i)})); code != 201 {
			t.Fatalf("record: %d %s", code, body)
		}
	}
	if code, _ := call(t, "GET", base, viewer, ""); code != 200 {
		t.Fatalf("viewer cannot read: %d", code)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	r2 := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.DataDir = dir })
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, body := call(t, "GET", r2.URL+"/api/v1/deployments/services", r2.Token, "")
		s := decode[struct{ Services []deploy.Service }](t, body).Services
		if len(s) != 1 || s[0].Current == nil || s[0].Current.Version != "2" {
			return fmt.Errorf("%s", body)
		}
		return nil
	})
	_, body = call(t, "GET", r2.URL+"/api/v1/deployments", r2.Token, "")
	if n := len(decode[struct{ Deployments []deploy.Deployment }](t, body).Deployments); n != 3 {
		t.Fatalf("after restart: %d deployments, want 3", n)
	}
}
