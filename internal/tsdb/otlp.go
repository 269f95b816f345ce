package tsdb

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/opsgraph/ops/internal/graph"
)

// otelPoint is the data of an ev.otel.metric event (see the collector).
type otelPoint struct {
	Name        string         `json:"name"`
	Unit        string         `json:"unit"`
	Description string         `json:"description"`
	Type        string         `json:"type"`
	Attributes  map[string]any `json:"attributes"`
	Resource    map[string]any `json:"resource"`
	Time        time.Time      `json:"time"`
	StartTime   time.Time      `json:"start_time"`
	Value       *float64       `json:"value"`
	Temporality string         `json:"temporality"`
	Monotonic   bool           `json:"monotonic"`
	Count       float64        `json:"count"`
	Sum         *float64       `json:"sum"`
	Bounds      []float64      `json:"bounds"`
	Buckets     []float64      `json:"bucket_counts"`
	Scale       int32          `json:"scale"`
	ZeroCount   float64        `json:"zero_count"`
	Positive    expBuckets     `json:"positive"`
	Negative    expBuckets     `json:"negative"`
	Quantiles   []struct {
		Quantile float64 `json:"quantile"`
		Value    float64 `json:"value"`
	} `json:"quantiles"`
}

type expBuckets struct {
	Offset  int32     `json:"offset"`
	Buckets []float64 `json:"bucket_counts"`
}

// unitWords is the OpenTelemetry-to-Prometheus unit table (the
// compatibility spec's "Metric Metadata" section).
var unitWords = map[string]string{
	"d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds",
	"By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes", "TiBy": "tibibytes",
	"KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
	"m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
	"Cel": "celsius", "Hz": "hertz", "%": "percent",
}

var perWords = map[string]string{"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}

// unitSuffix turns an OTLP unit into the name suffix the spec gives:
// "s" -> "seconds", "By/s" -> "bytes_per_second", "{request}" -> "".
func unitSuffix(unit string) string {
	if i := strings.IndexByte(unit, '{'); i >= 0 {
		if j := strings.IndexByte(unit[i:], '}'); j >= 0 {
			unit = unit[:i] + unit[i+j+1:]
		}
	}
	unit = strings.TrimSpace(unit)
	if unit == "" || unit == "1" {
		return ""
	}
	main, per, hasPer := strings.Cut(unit, "/")
	out := unitWords[main]
	if out == "" {
		out = main
	}
	if hasPer {
		p := perWords[per]
		if p == "" {
			p = per
		}
		if out == "" {
			return "per_" + p
		}
		out += "_per_" + p
	}
	return sanitizeName(out)
}

// sanitizeName keeps [a-zA-Z0-9_:], turns runs of anything else into one
// "_", trims underscores at the ends and prefixes "_" to a leading digit.
func sanitizeName(s string) string {
	var b strings.Builder
	under := false
	for _, r := range s {
		if r == '_' || r == ':' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			if r == '_' && under {
				continue
			}
			under = r == '_'
			b.WriteRune(r)
			continue
		}
		if !under {
			b.WriteByte('_')
		}
		under = true
	}
	out := strings.Trim(b.String(), "_")
	if out != "" && out[0] >= '0' && out[0] <= '9' {
		out = "_" + out
	}
	return out
}

// sanitizeLabel names a label after an attribute key: [a-zA-Z0-9_] with
// anything else as "_", "key_" before a leading digit or a single
// leading underscore; a leading "__" is kept.
func sanitizeLabel(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	switch {
	case out == "":
		return "_"
	case out[0] >= '0' && out[0] <= '9':
		return "key_" + out
	case out[0] == '_' && !strings.HasPrefix(out, "__"):
		return "key" + out
	}
	return out
}

// otelMetricName is the spec's name: sanitized, the unit as a suffix,
// "_ratio" for unit 1 gauges and "_total" for monotonic sums.
func otelMetricName(p *otelPoint) string {
	name := sanitizeName(p.Name)
	if u := unitSuffix(p.Unit); u != "" && !strings.Contains(name, u) {
		name += "_" + u
	}
	if p.Unit == "1" && p.Type == "gauge" && !strings.HasSuffix(name, "_ratio") {
		name += "_ratio"
	}
	if p.Type == "sum" && p.Monotonic {
		name = strings.TrimSuffix(name, "_total") + "_total"
	}
	if name == "" {
		name = "_"
	}
	return name
}

// attrString renders an attribute value as a label value: strings as
// they are, numbers without exponent, other values as JSON.
func attrString(v any) string { return graph.Render(v) }

// otelLabels builds the series labels: the point's attributes, job and
// instance from the resource (service.namespace/service.name and
// service.instance.id).
func otelLabels(p *otelPoint) *labels.Builder {
	b := labels.NewBuilder(labels.EmptyLabels())
	keys := make([]string, 0, len(p.Attributes))
	for k := range p.Attributes {
		keys = append(keys, k)
	}
	slices.Sort(keys) // colliding sanitized names join in a stable order
	for _, k := range keys {
		n := sanitizeLabel(k)
		v := attrString(p.Attributes[k])
		if old := b.Get(n); old != "" {
			v = old + ";" + v
		}
		b.Set(n, v)
	}
	if job := jobOf(p.Resource); job != "" {
		b.Set("job", job)
	}
	if inst := attrString(p.Resource["service.instance.id"]); inst != "" {
		b.Set("instance", inst)
	}
	return b
}

func jobOf(res map[string]any) string {
	name := attrString(res["service.name"])
	if ns := attrString(res["service.namespace"]); ns != "" && name != "" {
		return ns + "/" + name
	}
	return name
}

// targetInfo is the spec's target_info series: one per resource with
// attributes beyond job and instance.
func targetInfo(p *otelPoint, t int64) (sample, bool) {
	b := labels.NewBuilder(labels.EmptyLabels())
	n := 0
	for k, v := range p.Resource {
		switch k {
		case "service.name", "service.namespace", "service.instance.id":
			continue
		}
		b.Set(sanitizeLabel(k), attrString(v))
		n++
	}
	if n == 0 {
		return sample{}, false
	}
	if job := jobOf(p.Resource); job != "" {
		b.Set("job", job)
	}
	if inst := attrString(p.Resource["service.instance.id"]); inst != "" {
		b.Set("instance", inst)
	}
	b.Set(model.MetricNameLabel, "target_info")
	return sample{l: b.Labels(), t: t, v: 1}, true
}

// otelSamples translates one point. Delta sums and delta classic
// histograms become cumulative through m.accumulate.
func (m *Module) otelSamples(p *otelPoint) ([]sample, metaEntry, error) {
	if p.Name == "" {
		return nil, metaEntry{}, fmt.Errorf("metric without a name")
	}
	t := p.Time.UnixMilli()
	name := otelMetricName(p)
	lb := otelLabels(p)
	with := func(metric string, extra ...string) labels.Labels {
		b := labels.NewBuilder(lb.Labels())
		b.Set(model.MetricNameLabel, metric)
		for i := 0; i+1 < len(extra); i += 2 {
			b.Set(extra[i], extra[i+1])
		}
		return b.Labels()
	}
	delta := p.Temporality == "delta"
	var out []sample
	add := func(l labels.Labels, v float64, cumulate bool) {
		if cumulate {
			var ok bool
			if v, ok = m.accumulate(l, t, v); !ok {
				return
			}
		}
		out = append(out, sample{l: l, t: t, v: v})
	}
	meta := metaEntry{Help: p.Description, Unit: unitSuffix(p.Unit)}
	switch p.Type {
	case "gauge":
		if p.Value == nil {
			return nil, meta, fmt.Errorf("gauge %s without a value", p.Name)
		}
		meta.Type = "gauge"
		add(with(name), *p.Value, false)
	case "sum":
		if p.Value == nil {
			return nil, meta, fmt.Errorf("sum %s without a value", p.Name)
		}
		meta.Type = "gauge"
		if p.Monotonic {
			meta.Type = "counter"
		}
		add(with(name), *p.Value, delta && p.Monotonic)
	case "histogram":
		meta.Type = "histogram"
		if len(p.Buckets) != len(p.Bounds)+1 && len(p.Buckets) != 0 {
			return nil, meta, fmt.Errorf("histogram %s: %d bucket counts for %d bounds", p.Name, len(p.Buckets), len(p.Bounds))
		}
		var cum float64
		for i, c := range p.Buckets {
			cum += c
			le := "+Inf"
			if i < len(p.Bounds) {
				le = strconv.FormatFloat(p.Bounds[i], 'f', -1, 64)
			}
			add(with(name+"_bucket", "le", le), cum, delta)
		}
		if len(p.Buckets) == 0 {
			add(with(name+"_bucket", "le", "+Inf"), p.Count, delta)
		}
		add(with(name+"_count"), p.Count, delta)
		if p.Sum != nil {
			add(with(name+"_sum"), *p.Sum, delta)
		}
	case "exponential_histogram":
		meta.Type = "histogram"
		fh, err := nativeHistogram(p)
		if err != nil {
			return nil, meta, fmt.Errorf("exponential histogram %s: %w", p.Name, err)
		}
		out = append(out, sample{l: with(name), t: t, fh: fh})
	case "summary":
		meta.Type = "summary"
		for _, q := range p.Quantiles {
			add(with(name, "quantile", strconv.FormatFloat(q.Quantile, 'f', -1, 64)), q.Value, false)
		}
		add(with(name+"_count"), p.Count, false)
		if p.Sum != nil {
			add(with(name+"_sum"), *p.Sum, false)
		}
	default:
		return nil, meta, fmt.Errorf("metric %s: unknown type %q", p.Name, p.Type)
	}
	if ti, ok := targetInfo(p, t); ok {
		out = append(out, ti)
	}
	return out, meta, nil
}

// nativeHistogram maps an OTLP exponential histogram onto a Prometheus
// native histogram: the same exponential buckets (schema = scale, scales
// above 8 merged down to 8), Prometheus's bucket index = OTLP's + 1.
// Delta points become gauge histograms, which PromQL does not treat as
// counters.
func nativeHistogram(p *otelPoint) (*histogram.FloatHistogram, error) {
	scale := p.Scale
	if scale < -4 {
		return nil, fmt.Errorf("scale %d below -4 has no Prometheus schema", scale)
	}
	shift := max(scale-8, 0)
	fh := &histogram.FloatHistogram{Schema: min(scale, 8), Count: p.Count, ZeroCount: p.ZeroCount, ZeroThreshold: 1e-128}
	if p.Sum != nil {
		fh.Sum = *p.Sum
	} else {
		fh.Sum = math.NaN()
	}
	if p.Temporality == "delta" {
		fh.CounterResetHint = histogram.GaugeType
	}
	fh.PositiveSpans, fh.PositiveBuckets = expSpans(p.Positive, shift)
	fh.NegativeSpans, fh.NegativeBuckets = expSpans(p.Negative, shift)
	if err := fh.Validate(); err != nil {
		return nil, err
	}
	return fh, nil
}

// expSpans turns OTLP buckets (offset, counts) into spans and absolute
// counts, merging 2^shift neighbours when the scale is above 8.
func expSpans(b expBuckets, shift int32) ([]histogram.Span, []float64) {
	var spans []histogram.Span
	var counts []float64
	next := int32(math.MinInt32)
	for i, c := range b.Buckets {
		if c == 0 {
			continue
		}
		idx := (b.Offset+int32(i))>>shift + 1
		switch {
		case len(spans) > 0 && idx == next-1:
			counts[len(counts)-1] += c
			continue
		case len(spans) > 0 && idx == next:
			spans[len(spans)-1].Length++
		case len(spans) > 0:
			spans = append(spans, histogram.Span{Offset: idx - next, Length: 1})
		default:
			spans = append(spans, histogram.Span{Offset: idx, Length: 1})
		}
		counts = append(counts, c)
		next = idx + 1
	}
	return spans, counts
}
