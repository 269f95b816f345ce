package alert

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"go.yaml.in/yaml/v2"
)

// Rule unit tests in the file format of `promtool test rules`: input
// series given in the expanding notation ("1+1x10", "_", "stale",
// native histograms), checked alerts at evaluation times, and PromQL
// expressions with their expected samples. The rules run in Prometheus's
// own rule manager over a throwaway TSDB, evaluated step by step as
// promtool does: samples are loaded up to each step, then every group is
// evaluated in group_eval_order.

// UnitTestFile is a `promtool test rules` file.
type UnitTestFile struct {
	RuleFiles          []string       `yaml:"rule_files"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval,omitempty"`
	GroupEvalOrder     []string       `yaml:"group_eval_order"`
	Tests              []UnitTest     `yaml:"tests"`
	FuzzyCompare       bool           `yaml:"fuzzy_compare,omitempty"`
}

// UnitTest is one test group of a file.
type UnitTest struct {
	Name           string            `yaml:"name,omitempty"`
	Interval       model.Duration    `yaml:"interval"`
	InputSeries    []InputSeries     `yaml:"input_series"`
	AlertTests     []AlertTest       `yaml:"alert_rule_test,omitempty"`
	ExprTests      []ExprTest        `yaml:"promql_expr_test,omitempty"`
	ExternalLabels map[string]string `yaml:"external_labels,omitempty"`
	ExternalURL    string            `yaml:"external_url,omitempty"`
	StartTimestamp string            `yaml:"start_timestamp,omitempty"`
}

// InputSeries is a series and its values in expanding notation.
type InputSeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

// AlertTest says which alerts of a name fire at a time.
type AlertTest struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []struct {
		ExpLabels      map[string]string `yaml:"exp_labels"`
		ExpAnnotations map[string]string `yaml:"exp_annotations"`
	} `yaml:"exp_alerts"`
}

// ExprTest says what an expression returns at a time.
type ExprTest struct {
	Expr       string         `yaml:"expr"`
	EvalTime   model.Duration `yaml:"eval_time"`
	ExpSamples []struct {
		Labels    string  `yaml:"labels"`
		Value     float64 `yaml:"value"`
		Histogram string  `yaml:"histogram"`
	} `yaml:"exp_samples"`
}

// RunUnitTests runs each test file, writing promtool's report (the file,
// then SUCCESS or FAILED: with each failure) to w; it returns false when
// any test failed or a file could not be run.
func RunUnitTests(ctx context.Context, w io.Writer, files ...string) bool {
	ok := true
	for _, f := range files {
		fmt.Fprintf(w, "Processing test file: %s\n", f)
		errs := runUnitTestFile(ctx, f)
		if len(errs) > 0 {
			ok = false
			fmt.Fprintln(w, "  FAILED:")
			for _, e := range errs {
				fmt.Fprintln(w, e.Error())
				fmt.Fprintln(w)
			}
		} else {
			fmt.Fprintln(w, "  SUCCESS")
		}
		fmt.Fprintln(w)
	}
	return ok
}

func runUnitTestFile(ctx context.Context, file string) []error {
	b, err := os.ReadFile(file)
	if err != nil {
		return []error{err}
	}
	var f UnitTestFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return []error{err}
	}
	var ruleFiles []string
	for _, rf := range f.RuleFiles {
		if !filepath.IsAbs(rf) {
			rf = filepath.Join(filepath.Dir(file), rf)
		}
		m, err := filepath.Glob(rf)
		if err != nil {
			return []error{fmt.Errorf("rule_files: %w", err)}
		}
		if len(m) == 0 {
			return []error{fmt.Errorf("rule_files: nothing matches %s", rf)}
		}
		ruleFiles = append(ruleFiles, m...)
	}
	if f.EvaluationInterval == 0 {
		f.EvaluationInterval = model.Duration(time.Minute)
	}
	if f.EvaluationInterval < 0 {
		return []error{fmt.Errorf("evaluation_interval: want a positive duration, got %s", f.EvaluationInterval)}
	}
	order := map[string]int{}
	for i, g := range f.GroupEvalOrder {
		if _, dup := order[g]; dup {
			return []error{fmt.Errorf("group_eval_order: %s is named twice", g)}
		}
		order[g] = i
	}
	var errs []error
	for i, t := range f.Tests {
		if t.Interval == 0 {
			t.Interval = f.EvaluationInterval
		}
		if t.Interval < 0 {
			errs = append(errs, fmt.Errorf("    tests[%d].interval: want a positive duration, got %s", i, t.Interval))
			continue
		}
		name := t.Name
		if name == "" {
			name = fmt.Sprintf("unnamed#%d", i)
		}
		for _, e := range runUnitTest(ctx, t, time.Duration(f.EvaluationInterval), order, f.FuzzyCompare, ruleFiles) {
			errs = append(errs, fmt.Errorf("    name: %s,\n%w", name, e))
		}
	}
	return errs
}

// maxSteps bounds a test's evaluations (a year of minutes is 525,600).
const maxSteps = 1_000_000

// maxSamples bounds one input series' values once expanded (each
// "a+bxN" is N+1 of them).
const maxSamples = 10_000_000

var repeat = regexp.MustCompile(`x(\d+)`)

// expandedLen is about how many values a series' notation expands to.
func expandedLen(values string) int {
	n := len(strings.Fields(values))
	for _, m := range repeat.FindAllStringSubmatch(values, -1) {
		k, err := strconv.Atoi(m[1])
		if err != nil || k > maxSamples {
			return maxSamples + 1
		}
		n += k
	}
	return n
}

// pending is an input series' samples not loaded yet.
type pending struct {
	lbls labels.Labels
	vals []parser.SequenceValue
	next int
}

func runUnitTest(ctx context.Context, t UnitTest, evalEvery time.Duration, order map[string]int, fuzzy bool, ruleFiles []string) []error {
	p := parser.NewParser(parser.Options{})
	start := time.Unix(0, 0).UTC()
	if t.StartTimestamp != "" {
		ts, err := parseTestTime(t.StartTimestamp)
		if err != nil {
			return []error{fmt.Errorf("start_timestamp: %w", err)}
		}
		start = ts
	}
	var input []*pending
	for _, s := range t.InputSeries {
		if n := expandedLen(s.Values); n > maxSamples {
			return []error{fmt.Errorf("    input_series %s: %d values, more than %d", s.Series, n, maxSamples)}
		}
		l, v, err := p.ParseSeriesDesc(s.Series + " " + s.Values)
		if err != nil {
			return []error{fmt.Errorf("    input_series %s: %w", s.Series, err)}
		}
		input = append(input, &pending{lbls: l, vals: v})
	}
	dir, err := os.MkdirTemp("", "ops-rules-test")
	if err != nil {
		return []error{err}
	}
	defer os.RemoveAll(dir)
	opts := tsdb.DefaultOptions()
	opts.WALSegmentSize = -1 // nothing here outlives the test
	db, err := tsdb.Open(dir, slog.New(slog.DiscardHandler), nil, opts, nil)
	if err != nil {
		return []error{err}
	}
	defer db.Close()
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
		EnableAtModifier: true, EnableNegativeOffset: true, NoStepSubqueryIntervalFn: func(int64) int64 { return evalEvery.Milliseconds() }, Parser: p})
	mgr := rules.NewManager(&rules.ManagerOptions{QueryFunc: rules.EngineQueryFunc(engine, db), AppendableV2: db, Queryable: db,
		Context: ctx, NotifyFunc: func(context.Context, string, ...*rules.Alert) {}, Logger: slog.New(slog.DiscardHandler), Parser: p})
	groupMap, errs := mgr.LoadGroups(time.Duration(t.Interval), labels.FromMap(t.ExternalLabels), t.ExternalURL, nil, false, ruleFiles...)
	if errs != nil {
		return errs
	}
	groups := make([]*rules.Group, 0, len(groupMap))
	for _, g := range groupMap {
		groups = append(groups, g)
	}
	sort.Slice(groups, func(i, j int) bool {
		if oi, oj := order[groups[i].Name()], order[groups[j].Name()]; oi != oj {
			return oi < oj
		}
		return groups[i].Name() < groups[j].Name()
	})
	for _, g := range groups {
		for _, r := range g.Rules() {
			if ar, ok := r.(*rules.AlertingRule); ok {
				ar.SetRestored(true) // no earlier run to restore `for` from
			}
		}
	}

	var last model.Duration
	byTime := map[model.Duration][]AlertTest{}
	var times []model.Duration
	for _, at := range t.AlertTests {
		if at.Alertname == "" {
			return []error{fmt.Errorf("    alert_rule_test at eval_time %v: alertname is missing", at.EvalTime)}
		}
		if byTime[at.EvalTime] == nil {
			times = append(times, at.EvalTime)
		}
		byTime[at.EvalTime] = append(byTime[at.EvalTime], at)
		last = max(last, at.EvalTime)
	}
	slices.Sort(times)
	for _, et := range t.ExprTests {
		last = max(last, et.EvalTime)
	}

	if int64(last)/evalEvery.Nanoseconds() > maxSteps {
		return []error{fmt.Errorf("    eval_time %s: more than %d evaluations of every %s away", last, maxSteps, evalEvery)}
	}
	var out []error
	step := time.Duration(t.Interval)
	next := 0
	for ts := start; !ts.After(start.Add(time.Duration(last))); ts = ts.Add(evalEvery) {
		if err := loadUntil(db, input, start, step, ts); err != nil {
			return append(out, err)
		}
		for _, g := range groups {
			g.Eval(ctx, ts)
			for _, r := range g.Rules() {
				if err := r.LastError(); err != nil {
					return append(out, fmt.Errorf("    rule: %s, time: %s, err: %w", r.Name(), ts.Sub(start), err))
				}
			}
		}
		// The alert checks whose time falls in this step.
		for next < len(times) && time.Duration(times[next]) < ts.Add(evalEvery).Sub(start) {
			for _, at := range byTime[times[next]] {
				if err := checkAlerts(groups, at); err != nil {
					out = append(out, err)
				}
			}
			next++
		}
	}
	for _, et := range t.ExprTests {
		if err := checkExpr(ctx, engine, db, p, start, et, fuzzy); err != nil {
			out = append(out, err)
		}
	}
	return out
}

// loadUntil appends every input sample up to ts.
func loadUntil(db *tsdb.DB, input []*pending, start time.Time, step time.Duration, ts time.Time) error {
	app := db.AppenderV2(context.Background())
	for _, s := range input {
		for ; s.next < len(s.vals); s.next++ {
			at := start.Add(time.Duration(s.next) * step)
			if at.After(ts) {
				break
			}
			v := s.vals[s.next]
			if v.Omitted {
				continue
			}
			var err error
			if v.Histogram != nil {
				_, err = app.Append(0, s.lbls, 0, at.UnixMilli(), 0, nil, v.Histogram, storage.AOptions{})
			} else {
				_, err = app.Append(0, s.lbls, 0, at.UnixMilli(), v.Value, nil, nil, storage.AOptions{})
			}
			if err != nil {
				_ = app.Rollback()
				return fmt.Errorf("    input_series %s: %w", s.lbls, err)
			}
		}
	}
	return app.Commit()
}

// firing is an alert as a test compares it: labels and annotations.
type firing struct{ labels, annotations labels.Labels }

func (f firing) String() string {
	return "Labels:" + f.labels.String() + "\n               Annotations:" + f.annotations.String()
}

func sortFiring(fs []firing) {
	sort.Slice(fs, func(i, j int) bool {
		if c := labels.Compare(fs[i].labels, fs[j].labels); c != 0 {
			return c < 0
		}
		return labels.Compare(fs[i].annotations, fs[j].annotations) < 0
	})
}

func checkAlerts(groups []*rules.Group, at AlertTest) error {
	var got []firing
	for _, g := range groups {
		for _, r := range g.Rules() {
			ar, ok := r.(*rules.AlertingRule)
			if !ok || ar.Name() != at.Alertname {
				continue
			}
			for _, a := range ar.ActiveAlerts() {
				if a.State == rules.StateFiring {
					got = append(got, firing{a.Labels.Copy(), a.Annotations.Copy()})
				}
			}
		}
	}
	var want []firing
	for _, e := range at.ExpAlerts {
		l := map[string]string{}
		for k, v := range e.ExpLabels {
			l[k] = v
		}
		l[labels.AlertName] = at.Alertname
		want = append(want, firing{labels.FromMap(l), labels.FromMap(e.ExpAnnotations)})
	}
	sortFiring(got)
	sortFiring(want)
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		same = labels.Equal(got[i].labels, want[i].labels) && labels.Equal(got[i].annotations, want[i].annotations)
	}
	if same {
		return nil
	}
	return fmt.Errorf("    alertname: %s, time: %s,\n        exp: %s\n        got: %s", at.Alertname, at.EvalTime, listFiring(want), listFiring(got))
}

func listFiring(fs []firing) string {
	if len(fs) == 0 {
		return "[]"
	}
	var b strings.Builder
	for i, f := range fs {
		fmt.Fprintf(&b, "\n            %d: %s", i, f)
	}
	return b.String()
}

// sample is a query result as a test compares it.
type sample struct {
	labels labels.Labels
	value  float64
	hist   *histogram.FloatHistogram
	// hintSet: an expected histogram that says its counter reset hint
	// (counter_reset_hint:...); without it, the hint is not compared.
	hintSet bool
}

func (s sample) String() string {
	if s.hist != nil {
		return s.labels.String() + " " + s.hist.TestExpression()
	}
	return s.labels.String() + " " + strconv.FormatFloat(s.value, 'E', -1, 64)
}

func checkExpr(ctx context.Context, engine *promql.Engine, q storage.Queryable, p parser.Parser, start time.Time, et ExprTest, fuzzy bool) error {
	fail := func(err error) error {
		return fmt.Errorf("    expr: %q, time: %s, err: %w", et.Expr, et.EvalTime, err)
	}
	qry, err := engine.NewInstantQuery(ctx, q, nil, et.Expr, start.Add(time.Duration(et.EvalTime)))
	if err != nil {
		return fail(err)
	}
	res := qry.Exec(ctx)
	if res.Err != nil {
		return fail(res.Err)
	}
	var got []sample
	switch v := res.Value.(type) {
	case promql.Vector:
		for _, s := range v {
			got = append(got, sample{labels: s.Metric.Copy(), value: s.F, hist: s.H})
		}
	case promql.Scalar:
		got = append(got, sample{labels: labels.EmptyLabels(), value: v.V})
	default:
		return fail(errors.New("the result is not a vector or a scalar"))
	}
	var want []sample
	for _, s := range et.ExpSamples {
		l, err := p.ParseMetric(s.Labels)
		if err != nil {
			return fail(fmt.Errorf("labels %q: %w", s.Labels, err))
		}
		x := sample{labels: l, value: s.Value}
		if s.Histogram != "" {
			_, vals, err := p.ParseSeriesDesc("{} " + s.Histogram)
			if err != nil || len(vals) != 1 || vals[0].Histogram == nil {
				return fail(fmt.Errorf("labels %q: histogram %q is not one histogram (%v)", s.Labels, s.Histogram, err))
			}
			x.value, x.hist, x.hintSet = 0, vals[0].Histogram, vals[0].CounterResetHintSet
		}
		want = append(want, x)
	}
	order := func(ss []sample) {
		sort.Slice(ss, func(i, j int) bool { return labels.Compare(ss[i].labels, ss[j].labels) < 0 })
	}
	order(got)
	order(want)
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		g, w := got[i], want[i]
		same = labels.Equal(g.labels, w.labels) && (g.hist == nil) == (w.hist == nil)
		if same && g.hist != nil {
			h := g.hist
			if !w.hintSet {
				h = h.Copy()
				h.CounterResetHint = w.hist.CounterResetHint
				got[i].hist = h
			}
			same = h.TestExpression() == w.hist.TestExpression()
		} else if same {
			same = floatsMatch(g.value, w.value, fuzzy)
		}
	}
	if same {
		return nil
	}
	return fmt.Errorf("    expr: %q, time: %s,\n        exp: %s\n        got: %s", et.Expr, et.EvalTime, listSamples(want), listSamples(got))
}

// floatsMatch compares as promtool does: exactly, or with fuzzy_compare
// to the next float either way.
func floatsMatch(a, b float64, fuzzy bool) bool {
	return a == b || fuzzy && (math.Nextafter(a, math.Inf(-1)) == b || math.Nextafter(a, math.Inf(1)) == b)
}

func listSamples(ss []sample) string {
	if len(ss) == 0 {
		return "nil"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = s.String()
	}
	return strings.Join(parts, ", ")
}

// parseTestTime reads start_timestamp: RFC 3339 or Unix seconds.
func parseTestTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 or Unix seconds, got %q", s)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}
