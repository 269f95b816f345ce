package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/opsgraph/ops/internal/api"
	"github.com/opsgraph/ops/internal/testutil"
)

func otelEvents(t *testing.T, url, subject string) []api.StoredEvent {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/events?limit=1000&subject=" + subject)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Events []api.StoredEvent }
	_ = json.NewDecoder(resp.Body).Decode(&p)
	return p.Events
}

// The OpenTelemetry Go SDK's OTLP/HTTP exporters, unmodified, send traces,
// metrics and logs to Ops.
func TestOTLPExporters(t *testing.T) {
	r := start(t)
	ctx := context.Background()
	host := strings.TrimPrefix(r.URL, "http://")
	auth := map[string]string{"Authorization": "Bearer " + key}

	te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(host), otlptracehttp.WithInsecure(), otlptracehttp.WithHeaders(auth))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(te))
	tr := tp.Tracer("checkout")
	c1, parent := tr.Start(ctx, "POST /checkout")
	_, child := tr.Start(c1, "charge card")
	child.SetAttributes(attribute.Int("amount_cents", 1250))
	child.End()
	parent.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	me, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(host), otlpmetrichttp.WithInsecure(), otlpmetrichttp.WithHeaders(auth))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me)))
	meter := mp.Meter("checkout")
	orders, _ := meter.Int64Counter("orders")
	orders.Add(ctx, 3)
	lat, _ := meter.Float64Histogram("latency")
	lat.Record(ctx, 0.12)
	if err := mp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	le, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(host), otlploghttp.WithInsecure(), otlploghttp.WithHeaders(auth))
	if err != nil {
		t.Fatal(err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(le)))
	var rec otellog.Record
	rec.SetBody(attribute.StringValue("card declined"))
	rec.SetSeverity(otellog.SeverityWarn)
	rec.SetTimestamp(time.Now())
	lp.Logger("checkout").Emit(ctx, rec)
	if err := lp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		spans := otelEvents(t, r.URL, "ev.otel.span")
		if len(spans) != 2 {
			return fmt.Errorf("%d spans", len(spans))
		}
		var child, parent map[string]any
		for _, s := range spans {
			var d map[string]any
			_ = json.Unmarshal(s.Event.Data, &d)
			if d["name"] == "charge card" {
				child = d
			} else {
				parent = d
			}
		}
		if child["parent_span_id"] != parent["span_id"] || child["trace_id"] != parent["trace_id"] || len(child["trace_id"].(string)) != 32 {
			return fmt.Errorf("span linkage: %v / %v", child, parent)
		}
		if child["attributes"].(map[string]any)["amount_cents"] != 1250.0 {
			return fmt.Errorf("attributes %v", child["attributes"])
		}
		pts := otelEvents(t, r.URL, "ev.otel.metric")
		kinds := map[string]bool{}
		for _, p := range pts {
			var d map[string]any
			_ = json.Unmarshal(p.Event.Data, &d)
			kinds[fmt.Sprint(d["name"], "/", d["type"])] = true
			if d["name"] == "orders" && (d["value"] != 3.0 || d["temporality"] != "cumulative" || d["monotonic"] != true) {
				return fmt.Errorf("orders point %v", d)
			}
		}
		if !kinds["orders/sum"] || !kinds["latency/histogram"] {
			return fmt.Errorf("metric points %v", kinds)
		}
		logs := otelEvents(t, r.URL, "ev.otel.log")
		if len(logs) != 1 || !strings.Contains(string(logs[0].Event.Data), `"body":"card declined"`) {
			return fmt.Errorf("logs %d", len(logs))
		}
		return nil
	})
}

func TestOTLPJSONAndErrors(t *testing.T) {
	r := start(t)
	body := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},
	  "scopeSpans":[{"scope":{"name":"s"},"spans":[
	    {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,
	     "startTimeUnixNano":"1764244800000000000","endTimeUnixNano":"1764244800250000000"},
	    {"traceId":"","spanId":"","name":"bad"}]}]}]}`
	code, m := post(t, r.URL, "/v1/traces", body, map[string]string{"Authorization": "Bearer " + key})
	ps, _ := m["partialSuccess"].(map[string]any)
	if code != 200 || ps["rejectedSpans"] != "1" {
		t.Fatalf("json export: %d %v", code, m)
	}
	spans := otelEvents(t, r.URL, "ev.otel.span")
	if len(spans) != 1 || spans[0].Event.ID != "5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174" {
		t.Fatalf("spans %+v", spans)
	}
	var d map[string]any
	_ = json.Unmarshal(spans[0].Event.Data, &d)
	if d["kind"] != "SERVER" || d["duration_ms"] != 250.0 || d["resource"].(map[string]any)["service.name"] != "shop" {
		t.Fatalf("span %v", d)
	}
	for name, c := range map[string]struct {
		hdr  map[string]string
		body string
		code int
	}{
		"no key":       {nil, body, 401},
		"bad protobuf": {map[string]string{"Authorization": "Bearer " + key, "Content-Type": "application/x-protobuf"}, "\xff\xff\xff", 400},
		"bad json":     {map[string]string{"Authorization": "Bearer " + key}, `{"resourceSpans":`, 400},
		"content type": {map[string]string{"Authorization": "Bearer " + key, "Content-Type": "text/csv"}, body, 415},
	} {
		if code, m := post(t, r.URL, "/v1/traces", c.body, c.hdr); code != c.code {
			t.Errorf("%s: %d %v", name, code, m)
		}
	}
}
