package tsdb_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
)

// loadClientData writes two counters over 10 minutes at 15 s: c{k="a"}
// rises by 1 and c{k="b"} by 3 per scrape.
func loadClientData(t *testing.T, base string) (time.Time, time.Time) {
	t.Helper()
	start := time.UnixMilli(time.Now().Add(-20 * time.Minute).Truncate(time.Minute).UnixMilli())
	a := series("c_total", []string{"k", "a", "job", "j"})
	b := series("c_total", []string{"k", "b", "job", "j"})
	for i := range 41 {
		ts := start.Add(time.Duration(i) * 15 * time.Second).UnixMilli()
		a.Samples = append(a.Samples, prompb.Sample{Timestamp: ts, Value: float64(i)})
		b.Samples = append(b.Samples, prompb.Sample{Timestamp: ts, Value: float64(3 * i)})
	}
	if code, msg := push(t, base, encodeWrite(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{a, b}})); code != 204 {
		t.Fatalf("write: %d %s", code, msg)
	}
	return start, start.Add(10 * time.Minute)
}

// TestPromtool runs Debian's promtool (installed by make test) against
// Ops, checking the values it prints. promtool has no auth flags for
// every command, so the token goes in the URL as a basic-auth password.
func TestPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool not installed (make test installs the prometheus package)")
	}
	r := start(t, nil)
	from, to := loadClientData(t, r.URL)
	u, _ := url.Parse(r.URL)
	u.User = url.UserPassword("promtool", r.Token)
	u.Path = "/prometheus"
	server := u.String()
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	unix := func(tm time.Time) string { return strconv.FormatInt(tm.Unix(), 10) }

	out := run("query", "instant", "--time", unix(to), server, `sum by (job) (rate(c_total[1m]))`)
	// promtool prints "{job="j"} => 0.26666666666666666 @[...]": 4 per 15 s = 16/60.
	if !strings.Contains(out, `{job="j"} => 0.26666666666666`) {
		t.Fatalf("instant: %q", out)
	}
	out = run("query", "range", "--start", unix(to.Add(-time.Minute)), "--end", unix(to), "--step", "30s", server, `c_total{k="b"}`)
	// Three points: 3*36, 3*38 and 3*40.
	for _, want := range []string{"108 @[", "114 @[", "120 @["} {
		if !strings.Contains(out, want) {
			t.Fatalf("range: %q lacks %q", out, want)
		}
	}
	out = run("query", "series", "--match", `c_total{k="a"}`, "--start", unix(from), "--end", unix(to), server)
	if strings.TrimSpace(out) != `{__name__="c_total", job="j", k="a"}` {
		t.Fatalf("series: %q", out)
	}
	out = run("query", "labels", "--start", unix(from), "--end", unix(to), server, "k")
	if strings.Fields(out)[0] != "a" || strings.Fields(out)[1] != "b" || len(strings.Fields(out)) != 2 {
		t.Fatalf("labels: %q", out)
	}
	// A bad query makes promtool fail with Ops's message.
	bad, err := exec.Command("promtool", "query", "instant", server, "sum(").CombinedOutput()
	if err == nil || !strings.Contains(string(bad), "bad_data") {
		t.Fatalf("bad query: %v %s", err, bad)
	}
}

// TestGoClient uses client_golang's API client, unmodified.
func TestGoClient(t *testing.T) {
	r := start(t, nil)
	from, to := loadClientData(t, r.URL)
	c, err := promapi.NewClient(promapi.Config{Address: r.URL + "/prometheus", RoundTripper: http.DefaultTransport})
	if err != nil {
		t.Fatal(err)
	}
	api := promv1.NewAPI(c)
	ctx := context.Background()

	v, warns, _, err := api.Query(ctx, `sum(increase(c_total[10m]))`, to)
	if err != nil || len(warns) > 0 {
		t.Fatal(err, warns)
	}
	vec := v.(model.Vector)
	// increase over 10 min: 40 and 120 (extrapolation stops at the edges).
	if len(vec) != 1 || vec[0].Value < 159 || vec[0].Value > 161 {
		t.Fatalf("query: %v", v)
	}
	v, _, _, err = api.QueryRange(ctx, `c_total{k="a"}`, promv1.Range{Start: from, End: to, Step: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	m := v.(model.Matrix)
	if len(m) != 1 || len(m[0].Values) != 11 || m[0].Values[10].Value != 40 || !m[0].Values[0].Timestamp.Time().Equal(from) {
		t.Fatalf("range: %v", v)
	}
	set, _, _, err := api.Series(ctx, []string{`{job="j"}`}, from, to)
	if err != nil || len(set) != 2 {
		t.Fatalf("series: %v %v", set, err)
	}
	names, _, _, err := api.LabelNames(ctx, nil, from, to)
	if err != nil || fmt.Sprint(names) != "__name__, job, k" {
		t.Fatalf("labels: %v %v", names, err)
	}
	vals, _, _, err := api.LabelValues(ctx, "k", []string{"c_total"}, from, to)
	if err != nil || len(vals) != 2 || vals[1] != "b" {
		t.Fatalf("label values: %v %v", vals, err)
	}
	bi, err := api.Buildinfo(ctx)
	if err != nil || !strings.HasPrefix(bi.Version, "3.") {
		t.Fatalf("buildinfo: %+v %v", bi, err)
	}
	if _, err := api.Metadata(ctx, "", ""); err != nil {
		t.Fatalf("metadata: %v", err)
	}
	// The client hands back the data as raw JSON (a quoted string), as it
	// does against Prometheus.
	if f, err := api.FormatQuery(ctx, "sum(c_total)by(k)"); err != nil || f != `"sum by (k) (c_total)"` {
		t.Fatalf("format: %q %v", f, err)
	}
	_, _, _, err = api.Query(ctx, `sum(`, to)
	var perr *promv1.Error
	if !asError(err, &perr) || perr.Type != promv1.ErrBadData {
		t.Fatalf("bad query: %#v", err)
	}
}

func asError(err error, target **promv1.Error) bool {
	e, ok := err.(*promv1.Error)
	if ok {
		*target = e
	}
	return ok
}
