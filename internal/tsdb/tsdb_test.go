package tsdb_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

func start(t *testing.T, mod func(*config.Config)) *testutil.Running {
	t.Helper()
	return testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.TSDB.ScrapeInterval = 0 // tests that want it turn it on
		if mod != nil {
			mod(c)
		}
	})
}

// series builds a remote-write series: name, label pairs, then samples as
// (ms, value) pairs.
func series(name string, lbls []string, samples ...float64) prompb.TimeSeries {
	ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}}}
	for i := 0; i+1 < len(lbls); i += 2 {
		ts.Labels = append(ts.Labels, prompb.Label{Name: lbls[i], Value: lbls[i+1]})
	}
	for i := 0; i+1 < len(samples); i += 2 {
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: int64(samples[i]), Value: samples[i+1]})
	}
	return ts
}

func encodeWrite(t testing.TB, req *prompb.WriteRequest) []byte {
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

// push remote-writes body and returns the status and the response text.
func push(t testing.TB, base string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/prometheus/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// apiResp is Prometheus's envelope.
type apiResp struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
	code      int
}

func call(t testing.TB, base, method, endpoint string, params url.Values) apiResp {
	t.Helper()
	var req *http.Request
	u := base + "/prometheus/api/v1/" + endpoint
	if method == "GET" {
		req, _ = http.NewRequest("GET", u+"?"+params.Encode(), nil)
	} else {
		req, _ = http.NewRequest("POST", u, strings.NewReader(params.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r apiResp
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("%s %s: not JSON: %v", method, endpoint, err)
	}
	r.code = resp.StatusCode
	return r
}

type vecItem struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	Values [][2]any          `json:"values"`
}

func result(t testing.TB, r apiResp) (string, []vecItem) {
	t.Helper()
	if r.Status != "success" {
		t.Fatalf("status %q (%d): %s %s", r.Status, r.code, r.ErrorType, r.Error)
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.Data, &d); err != nil {
		t.Fatal(err)
	}
	var items []vecItem
	_ = json.Unmarshal(d.Result, &items)
	return d.ResultType, items
}

func val(t testing.TB, p [2]any) (float64, float64) {
	t.Helper()
	ts, _ := p[0].(float64)
	s, _ := p[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("value %v is not a float string", p[1])
	}
	return ts, v
}

// base is a minute boundary a little in the past, so tests' samples are
// recent and whole.
func base() int64 {
	return time.Now().Add(-30 * time.Minute).Truncate(time.Minute).UnixMilli()
}

// TestRemoteWriteAndQueryAPI writes known samples through remote write
// and reads them back through every endpoint, GET and POST.
func TestRemoteWriteAndQueryAPI(t *testing.T) {
	r := start(t, nil)
	b := float64(base())
	req := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			series("http_requests_total", []string{"job", "api", "code", "200"}, b, 10, b+60000, 70, b+120000, 130),
			series("http_requests_total", []string{"job", "api", "code", "500"}, b, 1, b+60000, 4, b+120000, 7),
			series("temperature_celsius", []string{"room", "lab"}, b, 21.5),
		},
		Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests served."}},
	}
	if code, msg := push(t, r.URL, encodeWrite(t, req)); code != http.StatusNoContent {
		t.Fatalf("remote write: %d %s", code, msg)
	}
	at := strconv.FormatFloat((b+120000)/1000, 'f', -1, 64)
	for _, method := range []string{"GET", "POST"} {
		typ, items := result(t, call(t, r.URL, method, "query", url.Values{"query": {"sum by (job) (http_requests_total)"}, "time": {at}}))
		if typ != "vector" || len(items) != 1 || items[0].Metric["job"] != "api" {
			t.Fatalf("%s query: %s %+v", method, typ, items)
		}
		if ts, v := val(t, items[0].Value); v != 137 || ts != (b+120000)/1000 {
			t.Fatalf("%s query: %v at %v, want 137", method, v, ts)
		}
	}
	// rate over the two minutes: (130-10)/120 s = 1/s.
	typ, items := result(t, call(t, r.URL, "GET", "query_range", url.Values{
		"query": {`rate(http_requests_total{code="200"}[2m])`}, "start": {at}, "end": {at}, "step": {"15"}}))
	if typ != "matrix" || len(items) != 1 || len(items[0].Values) != 1 {
		t.Fatalf("query_range: %s %+v", typ, items)
	}
	if _, v := val(t, items[0].Values[0]); math.Abs(v-1) > 1e-9 {
		t.Fatalf("rate = %v, want 1", v)
	}
	// A range over the stored minutes: one point per step.
	_, items = result(t, call(t, r.URL, "POST", "query_range", url.Values{
		"query": {`http_requests_total{code="500"}`},
		"start": {time.UnixMilli(int64(b)).UTC().Format(time.RFC3339)}, "end": {at}, "step": {"1m"}}))
	if len(items) != 1 || len(items[0].Values) != 3 {
		t.Fatalf("range points: %+v", items)
	}
	for i, want := range []float64{1, 4, 7} {
		if _, v := val(t, items[0].Values[i]); v != want {
			t.Fatalf("point %d = %v, want %v", i, v, want)
		}
	}
	// Scalar and string results.
	rs := call(t, r.URL, "GET", "query", url.Values{"query": {"1+1"}, "time": {at}})
	var sc struct {
		ResultType string `json:"resultType"`
		Result     [2]any `json:"result"`
	}
	_ = json.Unmarshal(rs.Data, &sc)
	if _, v := val(t, sc.Result); sc.ResultType != "scalar" || v != 2 {
		t.Fatalf("scalar: %s", rs.Data)
	}

	var list []map[string]string
	rs = call(t, r.URL, "GET", "series", url.Values{"match[]": {"http_requests_total", `{room="lab"}`}})
	if err := json.Unmarshal(rs.Data, &list); err != nil || len(list) != 3 {
		t.Fatalf("series: %s %s", rs.Status, rs.Data)
	}
	var names []string
	rs = call(t, r.URL, "GET", "labels", url.Values{})
	_ = json.Unmarshal(rs.Data, &names)
	if strings.Join(names, ",") != "__name__,code,job,room" {
		t.Fatalf("labels: %v", names)
	}
	rs = call(t, r.URL, "GET", "label/code/values", url.Values{"match[]": {"http_requests_total"}})
	_ = json.Unmarshal(rs.Data, &names)
	if strings.Join(names, ",") != "200,500" {
		t.Fatalf("label values: %v", names)
	}
	rs = call(t, r.URL, "GET", "label/__name__/values", url.Values{})
	_ = json.Unmarshal(rs.Data, &names)
	if strings.Join(names, ",") != "http_requests_total,temperature_celsius" {
		t.Fatalf("metric names: %v", names)
	}
	var meta map[string][]map[string]string
	rs = call(t, r.URL, "GET", "metadata", url.Values{"metric": {"http_requests_total"}})
	_ = json.Unmarshal(rs.Data, &meta)
	if m := meta["http_requests_total"]; len(m) != 1 || m[0]["type"] != "counter" || m[0]["help"] != "Requests served." {
		t.Fatalf("metadata: %s", rs.Data)
	}
	var bi map[string]string
	_ = json.Unmarshal(call(t, r.URL, "GET", "status/buildinfo", nil).Data, &bi)
	if !strings.HasPrefix(bi["version"], "3.") {
		t.Fatalf("buildinfo: %v", bi)
	}
	var pretty string
	_ = json.Unmarshal(call(t, r.URL, "GET", "format_query", url.Values{"query": {"sum(rate(x[5m]))by(job)"}}).Data, &pretty)
	if pretty != "sum by (job) (rate(x[5m]))" {
		t.Fatalf("format_query: %q", pretty)
	}
}

// TestBadInput: the error shapes and status codes Prometheus uses, and a
// refused write loses nothing stored before it.
func TestBadInput(t *testing.T) {
	r := start(t, func(c *config.Config) { c.TSDB.Query.MaxSamples = 100 })
	b := float64(base())
	var many []prompb.TimeSeries
	for i := range 200 {
		many = append(many, series("load", []string{"i", strconv.Itoa(i)}, b, float64(i)))
	}
	if code, msg := push(t, r.URL, encodeWrite(t, &prompb.WriteRequest{Timeseries: many})); code != 204 {
		t.Fatalf("write: %d %s", code, msg)
	}
	at := strconv.FormatFloat(b/1000, 'f', -1, 64)
	for _, c := range []struct {
		endpoint string
		params   url.Values
		code     int
		typ      string
		msg      string
	}{
		{"query", url.Values{"query": {"sum(rate(x[5m])"}}, 400, "bad_data", `invalid parameter "query": 1:`},
		{"query", url.Values{"query": {""}}, 400, "bad_data", "query is empty"},
		{"query", url.Values{"query": {"up"}, "time": {"yesterday"}}, 400, "bad_data", `invalid parameter "time"`},
		{"query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"100000000"}, "step": {"1"}}, 400, "bad_data", "exceeded maximum resolution of 11000 points"},
		{"query_range", url.Values{"query": {"up"}, "start": {"10"}, "end": {"0"}, "step": {"1"}}, 400, "bad_data", "end timestamp must not be before start time"},
		{"query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"10"}, "step": {"0"}}, 400, "bad_data", "zero or negative query resolution step"},
		{"query_range", url.Values{"query": {"up"}, "start": {"0"}, "end": {"10"}}, 400, "bad_data", `invalid parameter "step": missing`},
		{"query", url.Values{"query": {"load"}, "time": {at}}, 422, "execution", "query processing would load too many samples into memory"},
		{"series", url.Values{}, 400, "bad_data", "no match[] parameter provided"},
		{"series", url.Values{"match[]": {"{"}}, 400, "bad_data", `invalid parameter "match[]"`},
		{"query", url.Values{"query": {"count(load)"}, "time": {at}, "timeout": {"nonsense"}}, 400, "bad_data", `invalid parameter "timeout"`},
	} {
		rs := call(t, r.URL, "GET", c.endpoint, c.params)
		if rs.code != c.code || rs.Status != "error" || rs.ErrorType != c.typ || !strings.Contains(rs.Error, c.msg) {
			t.Errorf("%s %v: %d %s %s %q", c.endpoint, c.params, rs.code, rs.Status, rs.ErrorType, rs.Error)
		}
	}
	// A query that outlives its timeout: 503 timeout.
	slow := `count(count_over_time(load[1h:1ms]))`
	if rs := call(t, r.URL, "GET", "query", url.Values{"query": {slow}, "time": {at}, "timeout": {"0.001"}}); rs.code != 503 || rs.ErrorType != "timeout" {
		t.Errorf("timeout: %d %s %q", rs.code, rs.ErrorType, rs.Error)
	}

	good := encodeWrite(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series("kept", nil, b, 1)}})
	raw, _ := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series("kept", nil, b+1000, 2)}}).Marshal()
	noName, _ := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "job", Value: "x"}}, Samples: []prompb.Sample{{Timestamp: int64(b), Value: 1}}}}}).Marshal()
	if code, msg := push(t, r.URL, good); code != 204 {
		t.Fatalf("write: %d %s", code, msg)
	}
	for name, body := range map[string][]byte{
		"not snappy":        []byte("definitely not snappy"),
		"uncompressed":      raw,
		"snappy, not proto": snappy.Encode(nil, []byte("\xff\xff\xff\xff not a protobuf")),
		"no metric name":    snappy.Encode(nil, noName),
	} {
		code, msg := push(t, r.URL, body)
		if code != 400 || msg == "" {
			t.Errorf("%s: %d %q", name, code, msg)
		}
	}
	// A sample with a different value at a stored timestamp is refused
	// (400), the rest of the request is stored.
	mixed := encodeWrite(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series("kept", nil, b, 99, b+2000, 3)}})
	if code, msg := push(t, r.URL, mixed); code != 400 || !strings.Contains(msg, "1 of 2 samples refused") {
		t.Errorf("duplicate timestamp: %d %q", code, msg)
	}
	_, items := result(t, call(t, r.URL, "GET", "query", url.Values{"query": {"kept[10s]"}, "time": {strconv.FormatFloat((b+2000)/1000, 'f', -1, 64)}}))
	if len(items) != 1 || len(items[0].Values) != 2 {
		t.Fatalf("stored samples after bad writes: %+v", items)
	}
	if _, v := val(t, items[0].Values[0]); v != 1 {
		t.Fatalf("the stored sample changed: %v", v)
	}
	// Remote write 2.0 is refused with 415 (Prometheus agents fall back to 1.0).
	req, _ := http.NewRequest("POST", r.URL+"/prometheus/api/v1/write", bytes.NewReader(good))
	req.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("rw 2.0: %d", resp.StatusCode)
	}
	// Without credentials: 401; a viewer may read but not write.
	resp, err = testutil.Anonymous.Get(r.URL + "/prometheus/api/v1/query?query=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("anonymous query: %d", resp.StatusCode)
	}
}

// TestRestart: samples and metadata survive a stop and start on the same
// data directory.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	mod := func(c *config.Config) { c.DataDir = dir }
	r := start(t, mod)
	b := float64(base())
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series("survivor", []string{"k", "v"}, b, 1, b+15000, 2, b+30000, 3)},
		Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "survivor", Help: "h"}}}
	if code, msg := push(t, r.URL, encodeWrite(t, req)); code != 204 {
		t.Fatalf("write: %d %s", code, msg)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	r = start(t, mod)
	at := strconv.FormatFloat((b+30000)/1000, 'f', -1, 64)
	_, items := result(t, call(t, r.URL, "GET", "query", url.Values{"query": {"survivor[1m]"}, "time": {at}}))
	if len(items) != 1 || len(items[0].Values) != 3 {
		t.Fatalf("after restart: %+v", items)
	}
	var meta map[string][]map[string]string
	_ = json.Unmarshal(call(t, r.URL, "GET", "metadata", nil).Data, &meta)
	if len(meta["survivor"]) != 1 {
		t.Fatalf("metadata after restart: %v", meta)
	}
}

// TestSelfScrape: Ops's own metrics land with job="ops".
func TestSelfScrape(t *testing.T) {
	r := start(t, func(c *config.Config) { c.TSDB.ScrapeInterval = config.Duration(time.Second) })
	testutil.CheckFor(t, 10*time.Second, 200*time.Millisecond, func() error {
		rs := call(t, r.URL, "GET", "query", url.Values{"query": {`count_over_time(go_goroutines{job="ops"}[1m])`}})
		_, items := result(t, rs)
		if len(items) != 1 {
			return fmt.Errorf("%d series", len(items))
		}
		if _, v := val(t, items[0].Value); v < 2 {
			return fmt.Errorf("%v scrapes", v)
		}
		return nil
	})
	// Histograms are stored as classic buckets.
	_, items := result(t, call(t, r.URL, "GET", "query", url.Values{"query": {`ops_tsdb_query_duration_seconds_bucket{job="ops",le="+Inf"}`}}))
	if len(items) == 0 {
		t.Fatal("no histogram buckets from the self scrape")
	}
}
