package tsdb_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// promQuery asks a real Prometheus (no auth) for an instant vector.
func promQuery(t *testing.T, base, q string) map[string]float64 {
	t.Helper()
	resp, err := testutil.Anonymous.Get(base + "/api/v1/query?" + url.Values{"query": {q}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r apiResp
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("prometheus answered %s", b)
	}
	r.code = resp.StatusCode
	_, items := result(t, r)
	out := map[string]float64{}
	for _, it := range items {
		_, v := val(t, it.Value)
		out[it.Metric["batch"]] = v
	}
	return out
}

// TestRemoteWriteFromPrometheus: Debian's Prometheus scrapes a target and
// remote-writes to Ops with a token; the series appear in Ops.
func TestRemoteWriteFromPrometheus(t *testing.T) {
	r := start(t, nil)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, "# HELP demo_temperature_celsius A demo gauge.\n# TYPE demo_temperature_celsius gauge\ndemo_temperature_celsius{room=\"lab\"} 21.5\n")
	}))
	defer target.Close()
	u, _ := url.Parse(target.URL)
	testutil.StartPrometheus(t, fmt.Sprintf(`
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: demo
    static_configs: [{targets: [%q]}]
remote_write:
  - url: %s/prometheus/api/v1/write
    authorization: {credentials: %q}
    queue_config: {batch_send_deadline: 500ms}
    metadata_config: {send_interval: 1s}
`, u.Host, r.URL, r.Token))
	testutil.CheckFor(t, 30*time.Second, 250*time.Millisecond, func() error {
		got := instant(t, r.URL, `demo_temperature_celsius{job="demo",room="lab"}`, time.Now(), "")
		if got[""] != 21.5 {
			return fmt.Errorf("demo gauge %v", got)
		}
		if up := instant(t, r.URL, `up{job="demo"}`, time.Now(), ""); up[""] != 1 {
			return fmt.Errorf("up %v", up)
		}
		return nil
	})
	testutil.CheckFor(t, 15*time.Second, 250*time.Millisecond, func() error {
		var meta map[string][]map[string]string
		_ = json.Unmarshal(call(t, r.URL, "GET", "metadata", url.Values{"metric": {"demo_temperature_celsius"}}).Data, &meta)
		if m := meta["demo_temperature_celsius"]; len(m) != 1 || m[0]["type"] != "gauge" {
			return fmt.Errorf("metadata %v", meta)
		}
		return nil
	})
}

// TestRemoteWriteToPrometheus: Ops ships what it stores to Debian's
// Prometheus (remote-write receiver on). Prometheus is stopped half-way
// and Ops restarted while it is away; when it returns, every sample
// arrives, once.
func TestRemoteWriteToPrometheus(t *testing.T) {
	prom := testutil.StartPrometheus(t, "global: {scrape_interval: 1h}\n", "--web.enable-remote-write-receiver")
	dir := t.TempDir()
	mod := func(c *config.Config) {
		c.DataDir = dir
		c.TSDB.RemoteWrite = []config.RemoteWrite{{URL: prom.URL + "/api/v1/write", Name: "prom", BatchSize: 50}}
	}
	r := start(t, mod)
	t0 := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	sent := 0
	batch := func(r *testutil.Running, b int) {
		t.Helper()
		var ts []prompb.TimeSeries
		for s := range 20 {
			x := series("shipped", []string{"batch", strconv.Itoa(b), "s", strconv.Itoa(s)})
			for i := range 10 {
				x.Samples = append(x.Samples, prompb.Sample{Timestamp: t0.Add(time.Duration(b*10+i) * time.Second).UnixMilli(), Value: float64(i)})
			}
			ts = append(ts, x)
			sent += 10
		}
		if code, msg := push(t, r.URL, encodeWrite(t, &prompb.WriteRequest{Timeseries: ts})); code != 204 {
			t.Fatalf("write: %d %s", code, msg)
		}
	}
	counts := func() map[string]float64 {
		return promQuery(t, prom.URL, `sum by (batch) (count_over_time(shipped[1h]))`)
	}
	batch(r, 0)
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if got := counts(); got["0"] != 200 {
			return fmt.Errorf("before the outage: %v", got)
		}
		return nil
	})
	prom.Stop()
	batch(r, 1)
	time.Sleep(1500 * time.Millisecond) // the sender fails and backs off
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	r = start(t, mod)
	batch(r, 2)
	prom.Start()
	testutil.CheckFor(t, 60*time.Second, 250*time.Millisecond, func() error {
		got := counts()
		if got["0"] != 200 || got["1"] != 200 || got["2"] != 200 {
			return fmt.Errorf("after the outage: %v", got)
		}
		return nil
	})
	if sent != 600 {
		t.Fatalf("sent %d", sent)
	}
	// Ops reports the shipped samples and no backlog.
	testutil.CheckFor(t, 10*time.Second, 200*time.Millisecond, func() error {
		return hasMetrics(r.URL, `ops_tsdb_remote_queue_bytes{remote="prom"} 0`, `ops_tsdb_remote_samples_sent_total{remote="prom"} 400`)
	})
}

// hasMetrics says which of lines (exact exposition lines) Ops's /metrics
// lacks.
func hasMetrics(base string, lines ...string) error {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	have := strings.Split(string(b), "\n")
	for _, line := range lines {
		if !slices.Contains(have, line) {
			return fmt.Errorf("no %s", line)
		}
	}
	return nil
}

// TestRemoteWriteOutRetries: a receiver that fails twice with 503 gets
// the request again (with the configured headers and basic auth) until it
// answers 204; a 400 drops the request and counts it.
func TestRemoteWriteOutRetries(t *testing.T) {
	var mu sync.Mutex
	var got []prompb.WriteRequest
	calls, refuse := 0, false
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		user, pass, _ := r.BasicAuth()
		if r.Header.Get("X-Scope-OrgID") != "shop" || user != "ops" || pass != "s3cret" || r.Header.Get("Content-Encoding") != "snappy" {
			http.Error(w, "bad headers", http.StatusUnauthorized)
			return
		}
		if calls <= 2 {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		if refuse {
			http.Error(w, "out of bounds", http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		var req prompb.WriteRequest
		if err == nil {
			err = req.Unmarshal(raw)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got = append(got, req)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	r := start(t, func(c *config.Config) {
		c.TSDB.RemoteWrite = []config.RemoteWrite{{URL: recv.URL, Name: "r", Headers: map[string]string{"X-Scope-OrgID": "shop"},
			BasicAuth: config.BasicAuth{Username: "ops", Password: "s3cret"}}}
	})
	b := float64(base())
	if code, msg := push(t, r.URL, encodeWrite(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series("out", []string{"k", "v"}, b, 1, b+1000, 2)}})); code != 204 {
		t.Fatalf("write: %d %s", code, msg)
	}
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 {
			return fmt.Errorf("%d requests stored after %d calls", len(got), calls)
		}
		return nil
	})
	mu.Lock()
	ts := got[0].Timeseries
	if calls != 3 || len(ts) != 1 || len(ts[0].Samples) != 2 || ts[0].Samples[1].Value != 2 || ts[0].Labels[0].Value != "out" {
		t.Fatalf("calls %d, received %+v", calls, got)
	}
	refuse = true
	mu.Unlock()
	if code, _ := push(t, r.URL, encodeWrite(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series("out", []string{"k", "v"}, b+2000, 3)}})); code != 204 {
		t.Fatal(code)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		return hasMetrics(r.URL, `ops_tsdb_remote_samples_dropped_total{remote="r"} 1`, `ops_tsdb_remote_retries_total{remote="r"} 2`, `ops_tsdb_remote_samples_sent_total{remote="r"} 2`)
	})
}
