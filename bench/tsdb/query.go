package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// exprs are the range queries asked of both targets: per-series
// functions whose answer is large (500 series), aggregations whose answer
// is small, a top-k and a ratio of sums.
var exprs = []string{
	`rate(bench_requests_total[5m])`,
	`sum by (job) (rate(bench_requests_total[5m]))`,
	`sum by (job, code) (increase(bench_requests_total[1h]))`,
	`sum(rate(bench_requests_total{code=~"5.."}[5m])) / sum(rate(bench_requests_total[5m]))`,
	`topk(5, sum by (instance) (rate(bench_requests_total[5m])))`,
	`avg_over_time(bench_latency_seconds[10m])`,
	`max by (handler) (max_over_time(bench_latency_seconds{job="api"}[10m]))`,
	`quantile_over_time(0.9, bench_latency_seconds{handler="/search"}[30m])`,
}

// spans are the dashboard windows, with steps giving 240-720 points.
var spans = []struct{ rng, step time.Duration }{
	{time.Hour, 15 * time.Second},
	{6 * time.Hour, 30 * time.Second},
	{24 * time.Hour, 2 * time.Minute},
}

type query struct {
	expr       string
	rng, step  time.Duration
	start, end time.Time
}

func (q query) label() string {
	return fmt.Sprintf("%s/%s", short(q.rng), short(q.step))
}

// short writes 1h, 30s, 2m rather than 1h0m0s.
func short(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%gs", d.Seconds())
}

// queries lays the spans over the data: every query ends at the last
// whole minute with data, so start, end and every step are whole seconds.
func queries(ds *dataset) []query {
	end := ds.last.Truncate(time.Minute)
	var out []query
	for _, e := range exprs {
		for _, s := range spans {
			out = append(out, query{expr: e, rng: s.rng, step: s.step, start: end.Add(-s.rng), end: end})
		}
	}
	return out
}

// rangeQuery asks t for q and returns the body and the time from sending
// the request to the last byte of the answer.
func (t *target) rangeQuery(q query) ([]byte, time.Duration, error) {
	form := url.Values{
		"query": {q.expr},
		"start": {strconv.FormatInt(q.start.Unix(), 10)},
		"end":   {strconv.FormatInt(q.end.Unix(), 10)},
		"step":  {strconv.FormatFloat(q.step.Seconds(), 'f', -1, 64)},
	}
	return t.post("query_range", form)
}

func (t *target) instantQuery(expr string, at time.Time) ([]byte, error) {
	b, _, err := t.post("query", url.Values{"query": {expr}, "time": {strconv.FormatInt(at.Unix(), 10)}})
	return b, err
}

// post sends a form the way Grafana does (POST, urlencoded).
func (t *target) post(endpoint string, form url.Values) ([]byte, time.Duration, error) {
	req, err := http.NewRequest(http.MethodPost, t.base+t.apiPath+endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	t.auth(req)
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %s: %w", t.name, endpoint, err)
	}
	body, err := io.ReadAll(resp.Body)
	d := time.Since(start)
	_ = resp.Body.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %s: %w", t.name, endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("%s: %s %q: %s: %.300s", t.name, endpoint, form.Get("query"), resp.Status, body)
	}
	return body, d, nil
}

// result is a decoded query answer: series by their label set.
type result struct {
	typ    string
	series map[string][]point
	points int
}

type point struct {
	t float64
	v float64
}

func decode(body []byte) (*result, error) {
	var r struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("status %q", r.Status)
	}
	out := &result{typ: r.Data.ResultType, series: map[string][]point{}}
	for _, s := range r.Data.Result {
		key := labelKey(s.Metric)
		if _, dup := out.series[key]; dup {
			return nil, fmt.Errorf("series %s twice", key)
		}
		vals := s.Values
		if r.Data.ResultType == "vector" {
			vals = [][2]any{s.Value}
		}
		ps := make([]point, 0, len(vals))
		for _, v := range vals {
			t, ok1 := v[0].(float64)
			str, ok2 := v[1].(string)
			f, err := strconv.ParseFloat(str, 64)
			if !ok1 || !ok2 || err != nil {
				return nil, fmt.Errorf("series %s: bad point %v", key, v)
			}
			ps = append(ps, point{t, f})
		}
		out.series[key] = ps
		out.points += len(ps)
	}
	return out, nil
}

func labelKey(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	b.WriteByte('}')
	return b.String()
}

// tolerance is how far two values may differ, relative to the larger:
// the engines may sum in a different order (Prometheus 3 uses Kahan
// summation in sum and avg).
const tolerance = 1e-9

// compare says how a and b differ, or "" when they hold the same series,
// the same timestamps and the same values within tolerance. maxRel is the
// largest relative difference seen.
func compare(a, b *result) (diff string, maxRel float64) {
	if a.typ != b.typ {
		return fmt.Sprintf("result type %s vs %s", a.typ, b.typ), 0
	}
	if len(a.series) != len(b.series) {
		return fmt.Sprintf("%d series vs %d", len(a.series), len(b.series)), 0
	}
	keys := make([]string, 0, len(a.series))
	for k := range a.series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		pa := a.series[k]
		pb, ok := b.series[k]
		if !ok {
			return "series " + k + " only in the first", 0
		}
		if len(pa) != len(pb) {
			return fmt.Sprintf("series %s: %d points vs %d", k, len(pa), len(pb)), 0
		}
		for i := range pa {
			if pa[i].t != pb[i].t {
				return fmt.Sprintf("series %s: point %d at %.3f vs %.3f", k, i, pa[i].t, pb[i].t), 0
			}
			x, y := pa[i].v, pb[i].v
			if x == y || math.IsNaN(x) && math.IsNaN(y) {
				continue
			}
			rel := math.Abs(x-y) / math.Max(math.Abs(x), math.Abs(y))
			maxRel = max(maxRel, rel)
			if !(rel <= tolerance) {
				return fmt.Sprintf("series %s at %.3f: %g vs %g", k, pa[i].t, x, y), maxRel
			}
		}
	}
	return "", maxRel
}
