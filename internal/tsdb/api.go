package tsdb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/jsonutil"

	"github.com/opsgraph/ops/internal/promver"
)

// The Prometheus HTTP API's error types and the status codes it answers
// them with (web/api/v1 in Prometheus).
const (
	errBadData     = "bad_data"
	errExec        = "execution"
	errTimeout     = "timeout"
	errCanceled    = "canceled"
	errInternal    = "internal"
	errUnavailable = "unavailable"
	errNotFound    = "not_found"
)

var errStatus = map[string]int{
	errBadData: http.StatusBadRequest, errExec: http.StatusUnprocessableEntity, errTimeout: http.StatusServiceUnavailable,
	errCanceled: 499, errInternal: http.StatusInternalServerError, errUnavailable: http.StatusServiceUnavailable,
	errNotFound: http.StatusNotFound,
}

type apiError struct {
	typ string
	err error
}

func (e *apiError) Error() string { return e.err.Error() }

func badData(format string, a ...any) *apiError {
	return &apiError{errBadData, fmt.Errorf(format, a...)}
}

// apiFunc answers with data (and warnings) or an error.
type apiFunc func(r *http.Request) (any, annotations.Annotations, *apiError)

const prefix = "/prometheus/api/v1/"

func (m *Module) mount() {
	read := func(name string, f apiFunc) {
		h := m.wrap(name, f)
		m.deps.Handle("GET "+prefix+name, "series:read", h)
		m.deps.Handle("POST "+prefix+name, "series:read", h)
	}
	read("query", m.query)
	read("query_range", m.queryRange)
	read("series", m.series)
	read("labels", m.labelNames)
	read("label/{name}/values", m.labelValues)
	read("metadata", m.metadata)
	read("status/buildinfo", m.buildInfo)
	read("format_query", m.formatQuery)
	read("parse_query", m.parseQuery)
	read("query_exemplars", func(*http.Request) (any, annotations.Annotations, *apiError) { return []any{}, nil, nil })
	m.deps.Handle("POST "+prefix+"write", "series:write", http.HandlerFunc(m.remoteWrite))
}

// wrap parses the form (GET query or POST body), times the call and
// writes Prometheus's envelope.
func (m *Module) wrap(name string, f apiFunc) http.Handler {
	obs := m.queryDur.WithLabelValues(name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() { obs.Observe(time.Since(start).Seconds()) }()
		if err := r.ParseForm(); err != nil {
			writeError(w, badData("error parsing form values: %v", err), nil)
			return
		}
		data, warns, aerr := f(r)
		if aerr != nil {
			writeError(w, aerr, data)
			return
		}
		writeData(w, data, warns)
	})
}

var jsonAPI = jsoniter.ConfigCompatibleWithStandardLibrary

func writeData(w http.ResponseWriter, data any, warns annotations.Annotations) {
	st := jsonAPI.BorrowStream(nil)
	defer jsonAPI.ReturnStream(st)
	st.WriteObjectStart()
	st.WriteObjectField("status")
	st.WriteString("success")
	st.WriteMore()
	st.WriteObjectField("data")
	writeValue(st, data)
	ws, infos := warns.AsStrings("", 10, 10)
	if len(ws) > 0 {
		st.WriteMore()
		st.WriteObjectField("warnings")
		st.WriteVal(ws)
	}
	if len(infos) > 0 {
		st.WriteMore()
		st.WriteObjectField("infos")
		st.WriteVal(infos)
	}
	st.WriteObjectEnd()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(st.Buffer())
}

func writeError(w http.ResponseWriter, e *apiError, data any) {
	st := jsonAPI.BorrowStream(nil)
	defer jsonAPI.ReturnStream(st)
	st.WriteObjectStart()
	st.WriteObjectField("status")
	st.WriteString("error")
	st.WriteMore()
	st.WriteObjectField("errorType")
	st.WriteString(e.typ)
	st.WriteMore()
	st.WriteObjectField("error")
	st.WriteString(e.err.Error())
	if data != nil {
		st.WriteMore()
		st.WriteObjectField("data")
		writeValue(st, data)
	}
	st.WriteObjectEnd()
	w.Header().Set("Content-Type", "application/json")
	code := errStatus[e.typ]
	if code == 0 {
		code = http.StatusInternalServerError
	}
	w.WriteHeader(code)
	_, _ = w.Write(st.Buffer())
}

// queryData is the data of query and query_range.
type queryData struct {
	ResultType parser.ValueType
	Result     parser.Value
}

// writeValue writes query results the way Prometheus does (timestamps as
// float seconds, values as strings) and anything else with jsoniter.
func writeValue(st *jsoniter.Stream, v any) {
	qd, ok := v.(*queryData)
	if !ok {
		st.WriteVal(v)
		return
	}
	st.WriteObjectStart()
	st.WriteObjectField("resultType")
	st.WriteString(string(qd.ResultType))
	st.WriteMore()
	st.WriteObjectField("result")
	switch r := qd.Result.(type) {
	case promql.Matrix:
		writeArray(st, len(r), func(i int) {
			s := r[i]
			st.WriteObjectStart()
			st.WriteObjectField("metric")
			writeLabels(st, s.Metric)
			if len(s.Floats) > 0 {
				st.WriteMore()
				st.WriteObjectField("values")
				writeArray(st, len(s.Floats), func(j int) { writePoint(st, s.Floats[j].T, s.Floats[j].F) })
			}
			if len(s.Histograms) > 0 {
				st.WriteMore()
				st.WriteObjectField("histograms")
				writeArray(st, len(s.Histograms), func(j int) { writeHistPoint(st, s.Histograms[j]) })
			}
			st.WriteObjectEnd()
		})
	case promql.Vector:
		writeArray(st, len(r), func(i int) {
			s := r[i]
			st.WriteObjectStart()
			st.WriteObjectField("metric")
			writeLabels(st, s.Metric)
			st.WriteMore()
			if s.H != nil {
				st.WriteObjectField("histogram")
				writeHistPoint(st, promql.HPoint{T: s.T, H: s.H})
			} else {
				st.WriteObjectField("value")
				writePoint(st, s.T, s.F)
			}
			st.WriteObjectEnd()
		})
	case promql.Scalar:
		writePoint(st, r.T, r.V)
	case promql.String:
		st.WriteArrayStart()
		jsonutil.MarshalTimestamp(r.T, st)
		st.WriteMore()
		st.WriteString(r.V)
		st.WriteArrayEnd()
	default:
		st.WriteNil()
	}
	st.WriteObjectEnd()
}

// writeArray writes [item(0),item(1),...].
func writeArray(st *jsoniter.Stream, n int, item func(i int)) {
	st.WriteArrayStart()
	for i := range n {
		if i > 0 {
			st.WriteMore()
		}
		item(i)
	}
	st.WriteArrayEnd()
}

func writeLabels(st *jsoniter.Stream, ls labels.Labels) {
	st.WriteObjectStart()
	i := 0
	ls.Range(func(l labels.Label) {
		if i > 0 {
			st.WriteMore()
		}
		i++
		st.WriteObjectField(l.Name)
		st.WriteString(l.Value)
	})
	st.WriteObjectEnd()
}

func writePoint(st *jsoniter.Stream, t int64, f float64) {
	st.WriteArrayStart()
	jsonutil.MarshalTimestamp(t, st)
	st.WriteMore()
	jsonutil.MarshalFloat(f, st)
	st.WriteArrayEnd()
}

func writeHistPoint(st *jsoniter.Stream, p promql.HPoint) {
	st.WriteArrayStart()
	jsonutil.MarshalTimestamp(p.T, st)
	st.WriteMore()
	jsonutil.MarshalHistogram(p.H, st)
	st.WriteArrayEnd()
}

// parseTime reads Prometheus's time parameter: Unix seconds (with a
// fraction) or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
		}
		sec, frac := math.Modf(t)
		frac = math.Round(frac*1000) / 1000
		return time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case minTimeFormatted:
		return minTime, nil
	case maxTimeFormatted:
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// The bounds Prometheus uses for "no start" and "no end".
var (
	minTime          = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime          = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()
	minTimeFormatted = minTime.Format(time.RFC3339Nano)
	maxTimeFormatted = maxTime.Format(time.RFC3339Nano)
)

func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, *apiError) {
	v := r.Form.Get(name)
	if v == "" {
		return def, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, badData("invalid parameter %q: %v", name, err)
	}
	return t, nil
}

// parseDuration reads a duration: seconds (with a fraction) or a
// Prometheus duration such as 5m.
func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if ts > float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

func parseLimit(r *http.Request, name string) (int, *apiError) {
	s := r.Form.Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, badData("invalid parameter %q: cannot parse %q to a valid limit", name, s)
	}
	return n, nil
}

// queryOpts applies the request's lookback_delta.
func queryOpts(r *http.Request) (promql.QueryOpts, *apiError) {
	var lookback time.Duration
	if s := r.Form.Get("lookback_delta"); s != "" {
		d, err := parseDuration(s)
		if err != nil {
			return nil, badData("invalid parameter %q: %v", "lookback_delta", err)
		}
		lookback = d
	}
	return promql.NewPrometheusQueryOpts(r.Form.Get("stats") == "all", lookback, nil), nil
}

// queryContext applies the request's timeout (bounded by the configured one).
func (m *Module) queryContext(r *http.Request) (context.Context, context.CancelFunc, *apiError) {
	ctx := r.Context()
	if s := r.Form.Get("timeout"); s != "" {
		d, err := parseDuration(s)
		if err != nil {
			return nil, nil, badData("invalid parameter %q: %v", "timeout", err)
		}
		c, cancel := context.WithTimeout(ctx, d)
		return c, cancel, nil
	}
	return ctx, func() {}, nil
}

func (m *Module) parseQueryParam(r *http.Request) (string, *apiError) {
	q := r.Form.Get("query")
	if q == "" {
		return "", badData("invalid parameter %q: query is empty", "query")
	}
	if _, err := m.parser.ParseExpr(q); err != nil {
		return "", badData("invalid parameter %q: %v", "query", err)
	}
	return q, nil
}

func (m *Module) query(r *http.Request) (any, annotations.Annotations, *apiError) {
	qs, aerr := m.parseQueryParam(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	ts, aerr := parseTimeParam(r, "time", time.Now())
	if aerr != nil {
		return nil, nil, aerr
	}
	return m.run(r, func(ctx context.Context, opts promql.QueryOpts) (promql.Query, error) {
		return m.engine.NewInstantQuery(ctx, m.db, opts, qs, ts)
	})
}

func (m *Module) queryRange(r *http.Request) (any, annotations.Annotations, *apiError) {
	qs, aerr := m.parseQueryParam(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	for _, p := range []string{"start", "end", "step"} {
		if r.Form.Get(p) == "" {
			return nil, nil, badData("invalid parameter %q: missing", p)
		}
	}
	start, aerr := parseTimeParam(r, "start", time.Time{})
	if aerr != nil {
		return nil, nil, aerr
	}
	end, aerr := parseTimeParam(r, "end", time.Time{})
	if aerr != nil {
		return nil, nil, aerr
	}
	if end.Before(start) {
		return nil, nil, badData("invalid parameter %q: end timestamp must not be before start time", "end")
	}
	step, err := parseDuration(r.Form.Get("step"))
	if err != nil {
		return nil, nil, badData("invalid parameter %q: %v", "step", err)
	}
	if step <= 0 {
		return nil, nil, badData("invalid parameter %q: zero or negative query resolution step widths are not accepted. Try a positive integer", "step")
	}
	if end.Sub(start)/step > time.Duration(m.cfg.Query.MaxPoints) {
		return nil, nil, badData("exceeded maximum resolution of %d points per timeseries. Try decreasing the query resolution (?step=XX)", m.cfg.Query.MaxPoints)
	}
	return m.run(r, func(ctx context.Context, opts promql.QueryOpts) (promql.Query, error) {
		return m.engine.NewRangeQuery(ctx, m.db, opts, qs, start, end, step)
	})
}

// run reads the parameters query and query_range share (limit,
// lookback_delta, timeout), makes the query and executes it.
func (m *Module) run(r *http.Request, newQuery func(context.Context, promql.QueryOpts) (promql.Query, error)) (any, annotations.Annotations, *apiError) {
	limit, aerr := parseLimit(r, "limit")
	if aerr != nil {
		return nil, nil, aerr
	}
	opts, aerr := queryOpts(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	ctx, cancel, aerr := m.queryContext(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer cancel()
	q, err := newQuery(ctx, opts)
	if err != nil {
		return nil, nil, badData("invalid parameter %q: %v", "query", err)
	}
	return m.exec(ctx, q, limit)
}

func (m *Module) exec(ctx context.Context, q promql.Query, limit int) (any, annotations.Annotations, *apiError) {
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Warnings, engineError(res.Err)
	}
	v := res.Value
	var warns annotations.Annotations = res.Warnings
	if limit > 0 {
		switch x := v.(type) {
		case promql.Matrix:
			if len(x) > limit {
				v = x[:limit]
				warns.Add(fmt.Errorf("results truncated due to limit"))
			}
		case promql.Vector:
			if len(x) > limit {
				v = x[:limit]
				warns.Add(fmt.Errorf("results truncated due to limit"))
			}
		}
	}
	return &queryData{ResultType: v.Type(), Result: v}, warns, nil
}

// engineError maps an engine error to Prometheus's error type.
func engineError(err error) *apiError {
	var (
		cancelled promql.ErrQueryCanceled
		timeout   promql.ErrQueryTimeout
		storErr   promql.ErrStorage
	)
	switch {
	case errors.As(err, &cancelled):
		return &apiError{errCanceled, err}
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return &apiError{errTimeout, err}
	case errors.As(err, &storErr):
		return &apiError{errInternal, err}
	case errors.Is(err, context.Canceled):
		return &apiError{errCanceled, err}
	}
	return &apiError{errExec, err}
}

// selectorRange reads match[], start and end for the metadata endpoints.
func (m *Module) selectorRange(r *http.Request, required bool) ([][]*labels.Matcher, time.Time, time.Time, *apiError) {
	var sets [][]*labels.Matcher
	for _, s := range r.Form["match[]"] {
		ms, err := m.parser.ParseMetricSelector(s)
		if err != nil {
			return nil, time.Time{}, time.Time{}, badData("invalid parameter %q: %v", "match[]", err)
		}
		sets = append(sets, ms)
	}
	if required && len(sets) == 0 {
		return nil, time.Time{}, time.Time{}, badData("no match[] parameter provided")
	}
	start, aerr := parseTimeParam(r, "start", minTime)
	if aerr != nil {
		return nil, time.Time{}, time.Time{}, aerr
	}
	end, aerr := parseTimeParam(r, "end", maxTime)
	if aerr != nil {
		return nil, time.Time{}, time.Time{}, aerr
	}
	if end.Before(start) {
		return nil, time.Time{}, time.Time{}, badData("invalid parameter %q: end timestamp must not be before start time", "end")
	}
	return sets, start, end, nil
}

// selected is what series, labels and label values read from a request:
// match[] sets, the time range (ms), limit and a querier over the range.
type selected struct {
	sets       [][]*labels.Matcher
	start, end int64
	limit      int
	q          storage.Querier
}

func (m *Module) selection(r *http.Request, matchRequired bool) (*selected, *apiError) {
	sets, start, end, aerr := m.selectorRange(r, matchRequired)
	if aerr != nil {
		return nil, aerr
	}
	limit, aerr := parseLimit(r, "limit")
	if aerr != nil {
		return nil, aerr
	}
	q, err := m.db.Querier(start.UnixMilli(), end.UnixMilli())
	if err != nil {
		return nil, &apiError{errExec, err}
	}
	return &selected{sets: sets, start: start.UnixMilli(), end: end.UnixMilli(), limit: limit, q: q}, nil
}

func (m *Module) series(r *http.Request) (any, annotations.Annotations, *apiError) {
	sel, aerr := m.selection(r, true)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer func() { _ = sel.q.Close() }()
	q, sets, limit := sel.q, sel.sets, sel.limit
	hints := &storage.SelectHints{Start: sel.start, End: sel.end, Func: "series", Limit: limit}
	var set storage.SeriesSet
	if len(sets) == 1 {
		set = q.Select(r.Context(), false, hints, sets[0]...)
	} else {
		var all []storage.SeriesSet
		for _, ms := range sets {
			all = append(all, q.Select(r.Context(), true, hints, ms...))
		}
		set = storage.NewMergeSeriesSet(all, 0, storage.ChainedSeriesMerge)
	}
	out := []labels.Labels{}
	var warns annotations.Annotations
	for set.Next() {
		if limit > 0 && len(out) >= limit {
			warns.Add(errors.New("results truncated due to limit"))
			break
		}
		out = append(out, set.At().Labels())
	}
	warns.Merge(set.Warnings())
	if err := set.Err(); err != nil {
		return nil, warns, engineError(err)
	}
	return out, warns, nil
}

func (m *Module) labelNames(r *http.Request) (any, annotations.Annotations, *apiError) {
	return m.labelList(r, func(q storage.Querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelNames(r.Context(), hints, ms...)
	})
}

func (m *Module) labelValues(r *http.Request) (any, annotations.Annotations, *apiError) {
	name := r.PathValue("name")
	// Grafana and Prometheus send names outside the legacy charset as
	// U__ escaped (model.UnescapeName).
	if strings.HasPrefix(name, "U__") {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if name == "" {
		return nil, nil, badData("invalid label name: %q", r.PathValue("name"))
	}
	return m.labelList(r, func(q storage.Querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelValues(r.Context(), name, hints, ms...)
	})
}

// labelList answers labels and label values: the union of list over the
// match[] sets (or all series), sorted and limited.
func (m *Module) labelList(r *http.Request, list func(storage.Querier, *storage.LabelHints, []*labels.Matcher) ([]string, annotations.Annotations, error)) (any, annotations.Annotations, *apiError) {
	sel, aerr := m.selection(r, false)
	if aerr != nil {
		return nil, nil, aerr
	}
	defer func() { _ = sel.q.Close() }()
	q, sets, limit := sel.q, sel.sets, sel.limit
	hints := &storage.LabelHints{Limit: limit}
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	out := []string{}
	var warns annotations.Annotations
	seen := map[string]bool{}
	for _, ms := range sets {
		vs, w, err := list(q, hints, ms)
		if err != nil {
			return nil, nil, &apiError{errExec, err}
		}
		warns.Merge(w)
		for _, v := range vs {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
		warns.Add(errors.New("results truncated due to limit"))
	}
	return out, warns, nil
}

func (m *Module) metadata(r *http.Request) (any, annotations.Annotations, *apiError) {
	limit, aerr := parseLimit(r, "limit")
	if aerr != nil {
		return nil, nil, aerr
	}
	perMetric, aerr := parseLimit(r, "limit_per_metric")
	if aerr != nil {
		return nil, nil, aerr
	}
	return m.meta.list(r.Form.Get("metric"), limit, perMetric), nil, nil
}

// prometheusVersion is what buildinfo reports, so that Grafana enables the
// features of the embedded release.
func prometheusVersion() string {
	if v := promver.Version(); v != "" {
		return v
	}
	return "3.0.0" // built without module information (go run of a file)
}

func (m *Module) buildInfo(*http.Request) (any, annotations.Annotations, *apiError) {
	return map[string]string{
		"version": prometheusVersion(), "revision": "ops", "branch": "", "buildUser": "", "buildDate": "",
		"goVersion": runtime.Version(),
	}, nil, nil
}

func (m *Module) formatQuery(r *http.Request) (any, annotations.Annotations, *apiError) {
	expr, err := m.parser.ParseExpr(r.Form.Get("query"))
	if err != nil {
		return nil, nil, badData("invalid parameter %q: %v", "query", err)
	}
	return expr.Pretty(0), nil, nil
}

func (m *Module) parseQuery(r *http.Request) (any, annotations.Annotations, *apiError) {
	expr, err := m.parser.ParseExpr(r.Form.Get("query"))
	if err != nil {
		return nil, nil, badData("invalid parameter %q: %v", "query", err)
	}
	return map[string]string{"type": string(expr.Type()), "query": expr.String()}, nil, nil
}
