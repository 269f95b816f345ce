package tsdb

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/graph"
)

// handleBatch turns a batch of view changes and OTLP points into samples,
// commits them and then acks. A crash between the commit and the ack
// redelivers the batch: view samples are skipped when the series already
// holds the value, OTLP samples land on timestamps already stored (the
// TSDB keeps the first), and delta accumulators skip points not newer
// than the last one applied.
func (m *Module) handleBatch(ctx context.Context, _ jetstream.Consumer, msgs []jetstream.Msg) error {
	var viewSS, otelSS []sample
	for _, msg := range msgs {
		evs, err := event.Decode(msg.Data())
		if err != nil {
			m.log.Warn("tsdb: undecodable message skipped", "err", err)
			continue
		}
		for _, ev := range evs {
			switch {
			case ev.Type == "otel.metric":
				var p otelPoint
				if err := json.Unmarshal(ev.Data, &p); err != nil {
					m.rejected.WithLabelValues("otlp", "invalid").Inc()
					continue
				}
				ss, meta, err := m.otelSamples(&p)
				if err != nil {
					m.log.Debug("tsdb: OTLP point skipped", "id", ev.ID, "err", err)
					m.rejected.WithLabelValues("otlp", "invalid").Inc()
					continue
				}
				if len(ss) > 0 {
					m.meta.set(metricFamily(ss[0].l.Get(model.MetricNameLabel), meta.Type), meta)
				}
				otelSS = append(otelSS, ss...)
			case strings.HasPrefix(ev.Type, "view."):
				viewSS = append(viewSS, m.viewSamples(ctx, ev)...)
			}
		}
	}
	if _, err := m.appendAll(ctx, "view", viewSS); err != nil {
		return err
	}
	if _, err := m.appendAll(ctx, "otlp", otelSS); err != nil {
		return err
	}
	m.meta.flush(m.log)
	for _, msg := range msgs {
		if err := msg.Ack(); err != nil {
			return err
		}
	}
	return nil
}

// metricFamily strips the suffixes a histogram's or summary's series add.
func metricFamily(name, typ string) string {
	if typ == "histogram" || typ == "summary" {
		for _, s := range []string{"_bucket", "_count", "_sum"} {
			if strings.HasSuffix(name, s) {
				return strings.TrimSuffix(name, s)
			}
		}
	}
	return name
}

// viewSlot is one windowed row's series: its labels' hash and its window.
type viewSlot struct {
	hash   uint64
	window int64
}

type lastSample struct {
	t int64
	v float64
}

// viewSamples makes one sample per numeric measure of a windowed row:
// ops_view_<measure>{view="<name>", <key labels>} at the time of the
// row's last folded event, kept inside the row's window and at least 1 ms
// after the row's previous sample. So an instant query at t sees the
// window holding t as it stood at t, and at a window's start the previous
// window's final value (docs/timeseries.md, Corrections). Deletions (rows
// leaving the view's keep period) keep their history.
func (m *Module) viewSamples(ctx context.Context, ev event.Event) []sample {
	var d graph.ChangeData
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.Window == nil || d.New == nil {
		return nil
	}
	w := d.Window.UnixMilli()
	end := w + max(d.WindowSeconds, 1)*1000 - 1
	names := make([]string, 0, len(d.New))
	for k := range d.New {
		names = append(names, k)
	}
	slices.Sort(names)
	// The row's labels, once; each measure adds its name.
	b := labels.NewBuilder(labels.EmptyLabels())
	for k, kv := range d.Key {
		name := sanitizeLabel(k)
		if name == "view" || name == model.MetricNameLabel {
			name = "key_" + name
		}
		b.Set(name, attrString(kv))
	}
	b.Set("view", d.View)
	var out []sample
	for _, measure := range names {
		v, ok := number(d.New[measure])
		if !ok {
			continue
		}
		metric := "ops_view_" + sanitizeName(measure)
		b.Set(model.MetricNameLabel, metric)
		l := b.Labels()
		slot := viewSlot{l.Hash(), w}
		m.viewsMu.Lock()
		last, known := m.views[slot]
		m.viewsMu.Unlock()
		if !known {
			last, known = m.lastStored(ctx, l, w, end)
		}
		// The sample goes at the time of the row's last folded event (the
		// change event's time), inside the window, and after the row's
		// previous sample.
		t := min(max(ev.Time.UnixMilli(), w), end)
		if known {
			if last.v == v || (math.IsNaN(v) && math.IsNaN(last.v)) {
				continue // redelivered, or a change of another measure
			}
			if last.t >= end {
				m.rejected.WithLabelValues("view", "window_full").Inc()
				continue
			}
			t = max(t, last.t+1)
		}
		m.viewsMu.Lock()
		m.views[slot] = lastSample{t, v}
		m.viewsMu.Unlock()
		m.meta.set(metric, metaEntry{Type: "gauge", Help: "Measure " + measure + " of windowed views, one sample per window row."})
		out = append(out, sample{l: l, t: t, v: v})
	}
	m.trimViews(ev.Time)
	return out
}

// trimViews forgets rows of windows long past; they are read back from
// the TSDB if they change again.
func (m *Module) trimViews(now time.Time) {
	m.viewsMu.Lock()
	defer m.viewsMu.Unlock()
	if len(m.views) < 100_000 {
		return
	}
	cut := now.Add(-2 * time.Hour).UnixMilli()
	for k := range m.views {
		if k.window < cut {
			delete(m.views, k)
		}
	}
}

// number is a measure's value as a sample: numbers as they are, booleans
// as 1 and 0 (the values come from JSON, so nothing else is numeric).
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// lastStored reads the newest float sample of series l in [mint, maxt].
func (m *Module) lastStored(ctx context.Context, l labels.Labels, mint, maxt int64) (lastSample, bool) {
	q, err := m.db.Querier(mint, maxt)
	if err != nil {
		return lastSample{}, false
	}
	defer func() { _ = q.Close() }()
	var ms []*labels.Matcher
	l.Range(func(lb labels.Label) { ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, lb.Name, lb.Value)) })
	set := q.Select(ctx, false, nil, ms...)
	var last lastSample
	found := false
	for set.Next() {
		s := set.At()
		if labels.Compare(s.Labels(), l) != 0 {
			continue
		}
		it := s.Iterator(nil)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt == chunkenc.ValFloat {
				t, v := it.At()
				if !found || t >= last.t {
					last, found = lastSample{t, v}, true
				}
			}
		}
	}
	return last, found
}

// accumulate turns a delta point into a cumulative value: the series'
// running total (read back from the TSDB after a restart) plus v. A point
// not newer than the last one applied was applied already: ok is false.
func (m *Module) accumulate(l labels.Labels, t int64, v float64) (float64, bool) {
	h := l.Hash()
	m.viewsMu.Lock()
	last, known := m.deltas[h]
	m.viewsMu.Unlock()
	if !known {
		last, known = m.lastStored(context.Background(), l, t-m.cfg.Retention.D().Milliseconds(), math.MaxInt64)
	}
	if known && t <= last.t {
		return 0, false
	}
	if known {
		v += last.v
	}
	m.viewsMu.Lock()
	m.deltas[h] = lastSample{t, v}
	m.viewsMu.Unlock()
	return v, true
}

// scrapeSelf stores the registry's metrics as job="ops" samples.
func (m *Module) scrapeSelf(ctx context.Context, now time.Time) error {
	mfs, err := m.deps.Registry.Gather()
	if err != nil && len(mfs) == 0 {
		return err
	}
	ss := familySamples(mfs, now.UnixMilli(), "ops", m.deps.Instance)
	// A series that was in the last scrape and is not in this one ends
	// now, as Prometheus's scrape loop ends it: a stale marker, so queries
	// and alert rules stop seeing it at once rather than after the
	// lookback delta (an ops_deploy_info of a replaced version, say).
	seen := make(map[uint64]labels.Labels, len(ss))
	for _, s := range ss {
		seen[s.l.Hash()] = s.l
	}
	for h, l := range m.selfLast {
		if _, ok := seen[h]; !ok {
			ss = append(ss, sample{l: l, t: now.UnixMilli(), v: math.Float64frombits(value.StaleNaN)})
		}
	}
	m.selfLast = seen
	for _, mf := range mfs {
		m.meta.set(mf.GetName(), metaEntry{Type: strings.ToLower(mf.GetType().String()), Help: mf.GetHelp(), Unit: mf.GetUnit()})
	}
	m.meta.flush(m.log)
	_, err = m.appendAll(ctx, "self", ss)
	return err
}

// familySamples flattens gathered metric families the way the text
// exposition format does (histogram _bucket/_sum/_count, summary
// quantiles), with job and instance labels.
func familySamples(mfs []*dto.MetricFamily, t int64, job, instance string) []sample {
	var out []sample
	for _, mf := range mfs {
		name := mf.GetName()
		for _, mt := range mf.GetMetric() {
			base := labels.NewBuilder(labels.EmptyLabels())
			for _, lp := range mt.GetLabel() {
				base.Set(lp.GetName(), lp.GetValue())
			}
			base.Set("job", job)
			if instance != "" {
				base.Set("instance", instance)
			}
			ts := t
			if mt.TimestampMs != nil {
				ts = mt.GetTimestampMs()
			}
			add := func(metric string, v float64, kv ...string) {
				b := labels.NewBuilder(base.Labels())
				b.Set(model.MetricNameLabel, metric)
				for i := 0; i+1 < len(kv); i += 2 {
					b.Set(kv[i], kv[i+1])
				}
				out = append(out, sample{l: b.Labels(), t: ts, v: v})
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				add(name, mt.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, mt.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, mt.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				s := mt.GetSummary()
				for _, q := range s.GetQuantile() {
					add(name, q.GetValue(), "quantile", formatFloat(q.GetQuantile()))
				}
				add(name+"_sum", s.GetSampleSum())
				add(name+"_count", float64(s.GetSampleCount()))
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := mt.GetHistogram()
				inf := false
				for _, b := range h.GetBucket() {
					add(name+"_bucket", float64(b.GetCumulativeCount()), "le", formatFloat(b.GetUpperBound()))
					inf = inf || math.IsInf(b.GetUpperBound(), 1)
				}
				if !inf {
					add(name+"_bucket", float64(h.GetSampleCount()), "le", "+Inf")
				}
				add(name+"_sum", h.GetSampleSum())
				add(name+"_count", float64(h.GetSampleCount()))
			}
		}
	}
	return out
}

// formatFloat writes le and quantile values as the text format does.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
