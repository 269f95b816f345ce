package tsdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/testutil"
)

const writeKey = "wk_tsdb_test_0123456789"

func publish(t *testing.T, base string, evs ...string) {
	t.Helper()
	resp, err := http.Post(base+"/api/v1/events", event.BatchContentType, strings.NewReader("["+strings.Join(evs, ",")+"]"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
}

func ev(id, typ string, tm time.Time, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/t","type":%q,"time":%q,"data":%s}`, id, typ, tm.UTC().Format(time.RFC3339Nano), data)
}

// instant runs an instant query at ts and returns value by the given
// label's value ("" keys a single series).
func instant(t *testing.T, base, q string, ts time.Time, by string) map[string]float64 {
	t.Helper()
	_, items := result(t, call(t, base, "GET", "query", url.Values{"query": {q}, "time": {strconv.FormatFloat(float64(ts.UnixMilli())/1000, 'f', -1, 64)}}))
	out := map[string]float64{}
	for _, it := range items {
		_, v := val(t, it.Value)
		out[it.Metric[by]] = v
	}
	return out
}

// TestWindowedViewSeries: each measure of a windowed view row is a series
// at the window's start; a later change of the row is seen by queries
// after it.
func TestWindowedViewSeries(t *testing.T) {
	c, err := config.Parse([]byte(`
views:
  - name: per_min
    from: ev.shop.order
    key: {region: this.data.region}
    window: 1m
    measures:
      orders: count
      revenue: sum(this.data.total)
      top: max(this.data.total)
  - name: by_view
    from: ev.shop.order
    key: {view: this.data.region}
    window: 1m
    measures:
      orders: count
      revenue: sum(this.data.total)
      top: max(this.data.total)
`))
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, func(cfg *config.Config) { cfg.Views = c.Views })
	w := time.Now().Add(-5 * time.Minute).Truncate(time.Minute)
	publish(t, r.URL,
		ev("o1", "shop.order", w.Add(5*time.Second), `{"region":"eu","total":10}`),
		ev("o2", "shop.order", w.Add(6*time.Second), `{"region":"eu","total":30}`),
		ev("o3", "shop.order", w.Add(7*time.Second), `{"region":"us","total":5}`),
		ev("o4", "shop.order", w.Add(70*time.Second), `{"region":"eu","total":1}`),
	)
	end := w.Add(50 * time.Second)
	testutil.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		got := instant(t, r.URL, `ops_view_orders{view="per_min"}`, end, "region")
		if got["eu"] != 2 || got["us"] != 1 {
			return fmt.Errorf("orders %v", got)
		}
		return nil
	})
	if got := instant(t, r.URL, `ops_view_revenue{view="per_min"}`, end, "region"); got["eu"] != 40 || got["us"] != 5 {
		t.Fatalf("revenue %v", got)
	}
	if got := instant(t, r.URL, `ops_view_top{view="per_min",region="eu"}`, end, ""); got[""] != 30 {
		t.Fatalf("max %v", got)
	}
	// A key named view keeps its value as key_view; view names the view.
	// (Another view: its rows arrive on their own.)
	testutil.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if got := instant(t, r.URL, `ops_view_orders{view="by_view"}`, end, "key_view"); got["eu"] != 2 || got["us"] != 1 {
			return fmt.Errorf("key named view: %v", got)
		}
		return nil
	})
	// Samples sit at the row's newest event: before the first event of
	// the next window, a query sees the first window as it ended; after
	// it, the next window's row.
	if got := instant(t, r.URL, `ops_view_orders{view="per_min",region="eu"}`, w.Add(65*time.Second), ""); got[""] != 2 {
		t.Fatalf("between windows %v", got)
	}
	if got := instant(t, r.URL, `ops_view_orders{view="per_min",region="eu"}`, w.Add(75*time.Second), ""); got[""] != 1 {
		t.Fatalf("next window %v", got)
	}
	// A late event corrects the first window: queries after it see 3.
	publish(t, r.URL, ev("o5", "shop.order", w.Add(30*time.Second), `{"region":"eu","total":2}`))
	testutil.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if got := instant(t, r.URL, `ops_view_orders{view="per_min",region="eu"}`, end, ""); got[""] != 3 {
			return fmt.Errorf("corrected orders %v", got)
		}
		return nil
	})
	// One series per row and measure: the correction did not add a series.
	if got := instant(t, r.URL, `count(ops_view_orders{view="per_min"})`, end, ""); got[""] != 2 {
		t.Fatalf("series %v", got)
	}
	// The first window's samples: 2 at the second event (6 s), then 3 at
	// the late one (30 s).
	_, items := result(t, call(t, r.URL, "GET", "query", url.Values{
		"query": {`ops_view_orders{view="per_min",region="eu"}[1m]`}, "time": {strconv.FormatInt(w.Add(59*time.Second).Unix(), 10)}}))
	if len(items) != 1 || len(items[0].Values) != 2 {
		t.Fatalf("samples in the window: %+v", items)
	}
	if ts, v := val(t, items[0].Values[1]); v != 3 || ts != float64(w.Add(30*time.Second).UnixMilli())/1000 {
		t.Fatalf("correction sample %v at %v", v, ts)
	}
}

// TestOTLPMetrics: the OpenTelemetry Go SDK's OTLP exporter sends a
// counter, a gauge, an explicit-bucket histogram, an exponential
// histogram and a delta counter through the collector; PromQL reads them
// under the names the OpenTelemetry-to-Prometheus rules give.
func TestOTLPMetrics(t *testing.T) {
	r := start(t, func(c *config.Config) { c.Collector.WriteKeys = config.Strings{writeKey} })
	ctx := context.Background()
	host := strings.TrimPrefix(r.URL, "http://")
	auth := map[string]string{"Authorization": "Bearer " + writeKey}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName("checkout"), semconv.ServiceInstanceID("pod-1"), attribute.String("deployment.environment", "test"))

	exp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(host), otlpmetrichttp.WithInsecure(), otlpmetrichttp.WithHeaders(auth))
	if err != nil {
		t.Fatal(err)
	}
	expView := sdkmetric.NewView(sdkmetric.Instrument{Name: "payload.size"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}})
	reader := sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(reader), sdkmetric.WithView(expView))
	meter := mp.Meter("checkout")
	orders, _ := meter.Int64Counter("orders", metric.WithUnit("{order}"), metric.WithDescription("Orders placed."))
	orders.Add(ctx, 3, metric.WithAttributes(attribute.String("pay.method", "card")))
	depth, _ := meter.Float64Gauge("queue.depth")
	depth.Record(ctx, 7)
	lat, _ := meter.Float64Histogram("http.latency", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0.1, 0.2, 0.5))
	lat.Record(ctx, 0.12)
	lat.Record(ctx, 0.3)
	size, _ := meter.Int64Histogram("payload.size", metric.WithUnit("By"))
	for _, v := range []int64{100, 200, 400, 800} {
		size.Record(ctx, v)
	}
	if err := mp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// A delta exporter: two exports of 2 and 5 make a counter at 7.
	dexp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(host), otlpmetrichttp.WithInsecure(), otlpmetrichttp.WithHeaders(auth),
		otlpmetrichttp.WithTemporalitySelector(func(sdkmetric.InstrumentKind) metricdata.Temporality { return metricdata.DeltaTemporality }))
	if err != nil {
		t.Fatal(err)
	}
	dreader := sdkmetric.NewPeriodicReader(dexp, sdkmetric.WithInterval(time.Hour))
	dmp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(dreader))
	jobs, _ := dmp.Meter("worker").Int64Counter("jobs.done")
	jobs.Add(ctx, 2)
	if err := dmp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the second point's time must be later
	jobs.Add(ctx, 5)
	if err := dmp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	testutil.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if got := instant(t, r.URL, `orders_total{job="checkout",instance="pod-1",pay_method="card"}`, now, ""); got[""] != 3 {
			return fmt.Errorf("orders_total %v", got)
		}
		if got := instant(t, r.URL, `jobs_done_total{job="checkout"}`, now, ""); got[""] != 7 {
			return fmt.Errorf("delta counter %v", got)
		}
		return nil
	})
	if got := instant(t, r.URL, `queue_depth{job="checkout"}`, now, ""); got[""] != 7 {
		t.Fatalf("gauge %v", got)
	}
	buckets := instant(t, r.URL, `http_latency_seconds_bucket{job="checkout"}`, now, "le")
	if buckets["0.1"] != 0 || buckets["0.2"] != 1 || buckets["0.5"] != 2 || buckets["+Inf"] != 2 || len(buckets) != 4 {
		t.Fatalf("buckets %v", buckets)
	}
	if got := instant(t, r.URL, `http_latency_seconds_sum`, now, ""); got[""] != 0.42 {
		t.Fatalf("sum %v", got)
	}
	if got := instant(t, r.URL, `histogram_quantile(0.5, http_latency_seconds_bucket)`, now, ""); got[""] <= 0.1 || got[""] > 0.2 {
		t.Fatalf("median %v", got)
	}
	// The exponential histogram is a native histogram.
	if got := instant(t, r.URL, `histogram_count(payload_size_bytes)`, now, ""); got[""] != 4 {
		t.Fatalf("native count %v", got)
	}
	if got := instant(t, r.URL, `histogram_sum(payload_size_bytes)`, now, ""); got[""] != 1500 {
		t.Fatalf("native sum %v", got)
	}
	// 1.6 of 4 observations: inside the bucket holding 200.
	if got := instant(t, r.URL, `histogram_quantile(0.4, payload_size_bytes)`, now, ""); got[""] < 195 || got[""] > 205 {
		t.Fatalf("native median %v", got)
	}
	// Raw native histograms, as Prometheus writes them: "histogram" in a
	// vector, "histograms" in a matrix.
	at := strconv.FormatFloat(float64(now.UnixMilli())/1000, 'f', -1, 64)
	var vec struct {
		Result []struct {
			Histogram [2]json.RawMessage `json:"histogram"`
		} `json:"result"`
	}
	_ = json.Unmarshal(call(t, r.URL, "GET", "query", url.Values{"query": {"payload_size_bytes"}, "time": {at}}).Data, &vec)
	if len(vec.Result) != 1 || !strings.Contains(string(vec.Result[0].Histogram[1]), `"count":"4","sum":"1500","buckets":[[0,`) {
		t.Fatalf("native histogram in a vector: %+v", vec)
	}
	var mat struct {
		Result []struct {
			Histograms [][2]json.RawMessage `json:"histograms"`
		} `json:"result"`
	}
	_ = json.Unmarshal(call(t, r.URL, "GET", "query_range", url.Values{"query": {"payload_size_bytes"}, "start": {at}, "end": {at}, "step": {"15"}}).Data, &mat)
	if len(mat.Result) != 1 || len(mat.Result[0].Histograms) != 1 || !strings.Contains(string(mat.Result[0].Histograms[0][1]), `"count":"4"`) {
		t.Fatalf("native histogram in a matrix: %+v", mat)
	}
	// Other resource attributes: target_info.
	if got := instant(t, r.URL, `target_info{job="checkout",deployment_environment="test"}`, now, ""); got[""] != 1 {
		t.Fatalf("target_info %v", got)
	}
	var meta map[string][]map[string]string
	_ = json.Unmarshal(call(t, r.URL, "GET", "metadata", url.Values{"metric": {"orders_total"}}).Data, &meta)
	if m := meta["orders_total"]; len(m) != 1 || m[0]["type"] != "counter" || m[0]["help"] != "Orders placed." {
		t.Fatalf("metadata %v", meta)
	}
}
