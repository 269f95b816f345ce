package collector

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	collogs "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/slim/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/slim/otlp/common/v1"
	metrics "go.opentelemetry.io/proto/slim/otlp/metrics/v1"

	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/reply"
)

// OTLP/HTTP (https://opentelemetry.io/docs/specs/otlp/#otlphttp): protobuf
// or JSON bodies, optionally gzip'd. The protobuf types are the slim ones
// (no gRPC), so the binary does not carry a gRPC stack it never serves.

const (
	ctProto = "application/x-protobuf"
	ctJSON  = "application/json"
)

// otlpBody reads and checks an OTLP request; it reports whether it is JSON.
func (m *Module) otlpBody(w http.ResponseWriter, r *http.Request) ([]byte, bool, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		reply.Error(w, http.StatusMethodNotAllowed, "method", "use POST")
		return nil, false, false
	}
	if !m.keyOK(r, bearer(r)) {
		reply.Error(w, http.StatusUnauthorized, "Authorization", "missing or unknown write key: send Authorization: Bearer <key> (OTEL_EXPORTER_OTLP_HEADERS)")
		return nil, false, false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != ctProto && mt != ctJSON) {
		reply.Error(w, http.StatusUnsupportedMediaType, "Content-Type", fmt.Sprintf("want %s or %s, got %q", ctProto, ctJSON, r.Header.Get("Content-Type")))
		return nil, false, false
	}
	body, fe := readBody(w, r, int64(m.cfg.MaxBatchBytes)*8)
	if fe != nil {
		writeFieldErr(w, fe)
		return nil, false, false
	}
	return body, mt == ctJSON, true
}

func bearer(r *http.Request) string {
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		return strings.TrimPrefix(a, "Bearer ")
	}
	return ""
}

func decodeOTLP(body []byte, isJSON bool, msg proto.Message) error {
	if isJSON {
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, msg)
	}
	return proto.Unmarshal(body, msg)
}

func answerOTLP(w http.ResponseWriter, isJSON bool, msg proto.Message) {
	var b []byte
	if isJSON {
		b, _ = protojson.Marshal(msg)
		w.Header().Set("Content-Type", ctJSON)
	} else {
		b, _ = proto.Marshal(msg)
		w.Header().Set("Content-Type", ctProto)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// otlpID reads a trace or span id. OTLP/JSON writes ids in hex where
// protojson expects base64; a 32- or 16-character hex string is also valid
// base64, so protojson hands back its base64 decoding, which we re-encode
// and read as hex.
func otlpID(b []byte, isJSON bool, size int) (string, bool) {
	if isJSON && len(b) == size*3/2 { // 2*size hex characters, read as base64
		h := base64.StdEncoding.EncodeToString(b)
		if d, err := hex.DecodeString(h); err == nil && len(d) == size {
			b = d
		}
	}
	if len(b) != size {
		return "", false
	}
	zero := true
	for _, c := range b {
		zero = zero && c == 0
	}
	return hex.EncodeToString(b), !zero
}

func anyValue(v *common.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *common.AnyValue_StringValue:
		return x.StringValue
	case *common.AnyValue_BoolValue:
		return x.BoolValue
	case *common.AnyValue_IntValue:
		return x.IntValue
	case *common.AnyValue_DoubleValue:
		return x.DoubleValue
	case *common.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *common.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, anyValue(e))
		}
		return out
	case *common.AnyValue_KvlistValue:
		return attrs(x.KvlistValue.GetValues())
	}
	return nil
}

func attrs(kvs []*common.KeyValue) map[string]any {
	out := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		out[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return out
}

func nanos(n uint64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n)).UTC()
}

func otelEvent(typ, id string, t time.Time, subject string, data any) (event.Event, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return event.Event{}, err
	}
	if t.IsZero() {
		t = time.Now().UTC()
	}
	return event.Event{SpecVersion: event.SpecVersion, ID: id, Source: "/collector/otlp", Type: typ, Subject: subject,
		Time: t, DataContentType: "application/json", Data: b}, nil
}

// hashID is a deterministic id for records without one of their own, so a
// retried export is stored once.
func hashID(parts ...any) string {
	h := sha256.New()
	for _, p := range parts {
		b, _ := json.Marshal(p)
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (m *Module) traces(w http.ResponseWriter, r *http.Request) {
	body, isJSON, ok := m.otlpBody(w, r)
	if !ok {
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := decodeOTLP(body, isJSON, &req); err != nil {
		reply.Error(w, http.StatusBadRequest, "body", "not an OTLP ExportTraceServiceRequest: "+err.Error())
		return
	}
	evs, rejected, firstErr := spanEvents(&req, isJSON)
	if len(evs) > 0 {
		if _, err := m.deps.Bus.Publish(r.Context(), evs); err != nil {
			m.deps.Bus.WriteError(w, err)
			return
		}
	}
	resp := &coltrace.ExportTraceServiceResponse{}
	if rejected > 0 {
		resp.PartialSuccess = &coltrace.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: firstErr}
	}
	answerOTLP(w, isJSON, resp)
}

// spanEvents maps spans to ev.otel.span events, one a span, id trace-span.
func spanEvents(req *coltrace.ExportTraceServiceRequest, isJSON bool) ([]event.Event, int64, string) {
	var evs []event.Event
	var rejected int64
	var firstErr string
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			scope := map[string]any{"name": ss.GetScope().GetName(), "version": ss.GetScope().GetVersion()}
			for _, sp := range ss.GetSpans() {
				tid, ok1 := otlpID(sp.GetTraceId(), isJSON, 16)
				sid, ok2 := otlpID(sp.GetSpanId(), isJSON, 8)
				if !ok1 || !ok2 {
					rejected++
					if firstErr == "" {
						firstErr = fmt.Sprintf("span %q: traceId must be 16 and spanId 8 non-zero bytes", sp.GetName())
					}
					continue
				}
				parent, _ := otlpID(sp.GetParentSpanId(), isJSON, 8)
				start, end := nanos(sp.GetStartTimeUnixNano()), nanos(sp.GetEndTimeUnixNano())
				var spanEvents []map[string]any
				for _, e := range sp.GetEvents() {
					spanEvents = append(spanEvents, map[string]any{"name": e.GetName(), "time": nanos(e.GetTimeUnixNano()), "attributes": attrs(e.GetAttributes())})
				}
				d := map[string]any{
					"trace_id": tid, "span_id": sid, "parent_span_id": parent, "name": sp.GetName(),
					"kind":  strings.TrimPrefix(sp.GetKind().String(), "SPAN_KIND_"),
					"start": start, "end": end, "duration_ms": float64(end.Sub(start).Microseconds()) / 1000,
					"status":     map[string]any{"code": strings.TrimPrefix(sp.GetStatus().GetCode().String(), "STATUS_CODE_"), "message": sp.GetStatus().GetMessage()},
					"attributes": attrs(sp.GetAttributes()), "resource": res, "scope": scope,
				}
				if len(spanEvents) > 0 {
					d["events"] = spanEvents
				}
				e, err := otelEvent("otel.span", tid+"-"+sid, start, sp.GetName(), d)
				if err != nil {
					rejected++
					continue
				}
				evs = append(evs, e)
			}
		}
	}
	return evs, rejected, firstErr
}

func (m *Module) logs(w http.ResponseWriter, r *http.Request) {
	body, isJSON, ok := m.otlpBody(w, r)
	if !ok {
		return
	}
	var req collogs.ExportLogsServiceRequest
	if err := decodeOTLP(body, isJSON, &req); err != nil {
		reply.Error(w, http.StatusBadRequest, "body", "not an OTLP ExportLogsServiceRequest: "+err.Error())
		return
	}
	evs := logEvents(&req, isJSON)
	if len(evs) > 0 {
		if _, err := m.deps.Bus.Publish(r.Context(), evs); err != nil {
			m.deps.Bus.WriteError(w, err)
			return
		}
	}
	answerOTLP(w, isJSON, &collogs.ExportLogsServiceResponse{})
}

// logEvents maps log records to ev.otel.log events; ids hash the record.
func logEvents(req *collogs.ExportLogsServiceRequest, isJSON bool) []event.Event {
	var evs []event.Event
	for _, rl := range req.GetResourceLogs() {
		res := attrs(rl.GetResource().GetAttributes())
		for _, sl := range rl.GetScopeLogs() {
			scope := map[string]any{"name": sl.GetScope().GetName(), "version": sl.GetScope().GetVersion()}
			for _, lr := range sl.GetLogRecords() {
				t := nanos(lr.GetTimeUnixNano())
				if t.IsZero() {
					t = nanos(lr.GetObservedTimeUnixNano())
				}
				tid, _ := otlpID(lr.GetTraceId(), isJSON, 16)
				sid, _ := otlpID(lr.GetSpanId(), isJSON, 8)
				d := map[string]any{
					"time": t, "severity": lr.GetSeverityText(), "severity_number": int32(lr.GetSeverityNumber()),
					"body": anyValue(lr.GetBody()), "attributes": attrs(lr.GetAttributes()),
					"trace_id": tid, "span_id": sid, "resource": res, "scope": scope,
				}
				e, err := otelEvent("otel.log", hashID(d), t, "", d)
				if err == nil {
					evs = append(evs, e)
				}
			}
		}
	}
	return evs
}

// Metric points go to ev.otel.metric one point an event, in the shape the
// time-series module will ingest.
func (m *Module) metrics(w http.ResponseWriter, r *http.Request) {
	body, isJSON, ok := m.otlpBody(w, r)
	if !ok {
		return
	}
	var req colmetrics.ExportMetricsServiceRequest
	if err := decodeOTLP(body, isJSON, &req); err != nil {
		reply.Error(w, http.StatusBadRequest, "body", "not an OTLP ExportMetricsServiceRequest: "+err.Error())
		return
	}
	evs, rejected := metricEvents(&req)
	if len(evs) > 0 {
		if _, err := m.deps.Bus.Publish(r.Context(), evs); err != nil {
			m.deps.Bus.WriteError(w, err)
			return
		}
	}
	resp := &colmetrics.ExportMetricsServiceResponse{}
	if rejected > 0 {
		resp.PartialSuccess = &colmetrics.ExportMetricsPartialSuccess{RejectedDataPoints: rejected, ErrorMessage: "metrics without data"}
	}
	answerOTLP(w, isJSON, resp)
}

// metricEvents maps every data point to an ev.otel.metric event.
func metricEvents(req *colmetrics.ExportMetricsServiceRequest) ([]event.Event, int64) {
	var evs []event.Event
	var rejected int64
	for _, rm := range req.GetResourceMetrics() {
		res := attrs(rm.GetResource().GetAttributes())
		for _, sm := range rm.GetScopeMetrics() {
			scope := map[string]any{"name": sm.GetScope().GetName(), "version": sm.GetScope().GetVersion()}
			for _, mt := range sm.GetMetrics() {
				base := func(kind string, a []*common.KeyValue, t, start uint64) map[string]any {
					return map[string]any{"name": mt.GetName(), "unit": mt.GetUnit(), "description": mt.GetDescription(), "type": kind,
						"attributes": attrs(a), "resource": res, "scope": scope, "time": nanos(t), "start_time": nanos(start)}
				}
				var points []map[string]any
				switch d := mt.GetData().(type) {
				case *metrics.Metric_Gauge:
					for _, p := range d.Gauge.GetDataPoints() {
						pt := base("gauge", p.GetAttributes(), p.GetTimeUnixNano(), p.GetStartTimeUnixNano())
						pt["value"] = numberValue(p)
						points = append(points, pt)
					}
				case *metrics.Metric_Sum:
					for _, p := range d.Sum.GetDataPoints() {
						pt := base("sum", p.GetAttributes(), p.GetTimeUnixNano(), p.GetStartTimeUnixNano())
						pt["value"] = numberValue(p)
						pt["temporality"] = temporality(d.Sum.GetAggregationTemporality())
						pt["monotonic"] = d.Sum.GetIsMonotonic()
						points = append(points, pt)
					}
				case *metrics.Metric_Histogram:
					for _, p := range d.Histogram.GetDataPoints() {
						pt := base("histogram", p.GetAttributes(), p.GetTimeUnixNano(), p.GetStartTimeUnixNano())
						pt["temporality"] = temporality(d.Histogram.GetAggregationTemporality())
						pt["count"], pt["sum"] = p.GetCount(), p.GetSum()
						pt["bounds"], pt["bucket_counts"] = p.GetExplicitBounds(), p.GetBucketCounts()
						if p.Min != nil {
							pt["min"] = p.GetMin()
						}
						if p.Max != nil {
							pt["max"] = p.GetMax()
						}
						points = append(points, pt)
					}
				case *metrics.Metric_ExponentialHistogram:
					for _, p := range d.ExponentialHistogram.GetDataPoints() {
						pt := base("exponential_histogram", p.GetAttributes(), p.GetTimeUnixNano(), p.GetStartTimeUnixNano())
						pt["temporality"] = temporality(d.ExponentialHistogram.GetAggregationTemporality())
						pt["count"], pt["sum"], pt["scale"], pt["zero_count"] = p.GetCount(), p.GetSum(), p.GetScale(), p.GetZeroCount()
						pt["positive"] = map[string]any{"offset": p.GetPositive().GetOffset(), "bucket_counts": p.GetPositive().GetBucketCounts()}
						pt["negative"] = map[string]any{"offset": p.GetNegative().GetOffset(), "bucket_counts": p.GetNegative().GetBucketCounts()}
						points = append(points, pt)
					}
				case *metrics.Metric_Summary:
					for _, p := range d.Summary.GetDataPoints() {
						pt := base("summary", p.GetAttributes(), p.GetTimeUnixNano(), p.GetStartTimeUnixNano())
						pt["count"], pt["sum"] = p.GetCount(), p.GetSum()
						var qs []map[string]float64
						for _, q := range p.GetQuantileValues() {
							qs = append(qs, map[string]float64{"quantile": q.GetQuantile(), "value": q.GetValue()})
						}
						pt["quantiles"] = qs
						points = append(points, pt)
					}
				default:
					rejected++
				}
				for _, pt := range points {
					t, _ := pt["time"].(time.Time)
					e, err := otelEvent("otel.metric", hashID(pt["name"], pt["type"], sortedKeys(pt["attributes"]), res, t), t, mt.GetName(), pt)
					if err != nil {
						rejected++
						continue
					}
					evs = append(evs, e)
				}
			}
		}
	}
	return evs, rejected
}

func numberValue(p *metrics.NumberDataPoint) any {
	switch v := p.GetValue().(type) {
	case *metrics.NumberDataPoint_AsDouble:
		return v.AsDouble
	case *metrics.NumberDataPoint_AsInt:
		return v.AsInt
	}
	return nil
}

func temporality(t metrics.AggregationTemporality) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "AGGREGATION_TEMPORALITY_"))
}

// sortedKeys renders attributes in a stable order for hashing.
func sortedKeys(v any) [][2]any {
	m, _ := v.(map[string]any)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][2]any, len(keys))
	for i, k := range keys {
		out[i] = [2]any{k, m[k]}
	}
	return out
}
