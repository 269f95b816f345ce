package grafana

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// The dashboard model, as much of Grafana's JSON as the generated
// dashboards use (schema of Grafana 10 and later).

// Dashboard is one dashboard's JSON.
type Dashboard struct {
	UID           string      `json:"uid"`
	Title         string      `json:"title"`
	Description   string      `json:"description,omitempty"`
	Tags          []string    `json:"tags"`
	Timezone      string      `json:"timezone"`
	Editable      bool        `json:"editable"`
	GraphTooltip  int         `json:"graphTooltip"`
	Refresh       string      `json:"refresh"`
	SchemaVersion int         `json:"schemaVersion"`
	Version       int         `json:"version"`
	Time          TimeRange   `json:"time"`
	Templating    Templating  `json:"templating"`
	Annotations   Annotations `json:"annotations"`
	Panels        []Panel     `json:"panels"`
}

// Annotations are the dashboard's annotation queries.
type Annotations struct {
	List []Annotation `json:"list"`
}

// Annotation is one annotation query: Grafana's built-in one, or a PromQL
// query whose series values are the events' times.
type Annotation struct {
	BuiltIn         int           `json:"builtIn,omitempty"`
	Datasource      DatasourceRef `json:"datasource"`
	Enable          bool          `json:"enable"`
	Hide            bool          `json:"hide"`
	IconColor       string        `json:"iconColor"`
	Name            string        `json:"name"`
	Type            string        `json:"type,omitempty"`
	Expr            string        `json:"expr,omitempty"`
	Step            string        `json:"step,omitempty"`
	UseValueForTime bool          `json:"useValueForTime,omitempty"`
	TitleFormat     string        `json:"titleFormat,omitempty"`
	TextFormat      string        `json:"textFormat,omitempty"`
	TagKeys         string        `json:"tagKeys,omitempty"`
}

// DeployExpr is the deployments annotation's query: the time of each
// deployment's latest status change, in milliseconds, which Grafana reads
// as the annotation's time ("series value as timestamp").
const DeployExpr = "ops_deploy_timestamp_seconds * 1000"

// annotations are every dashboard's: Grafana's own, and deployments (from
// the deploy module's series) so a change on a chart lines up with the
// release that caused it.
func annotations(ds DatasourceRef) Annotations {
	return Annotations{List: []Annotation{
		{BuiltIn: 1, Datasource: DatasourceRef{Type: "grafana", UID: "-- Grafana --"}, Enable: true, Hide: true,
			IconColor: "rgba(0, 211, 255, 1)", Name: "Annotations & Alerts", Type: "dashboard"},
		{Datasource: ds, Enable: true, IconColor: "purple", Name: "Deployments", Expr: DeployExpr, Step: "1m",
			UseValueForTime: true, TitleFormat: "{{service}}/{{env}} {{version}}", TextFormat: "{{status}}", TagKeys: "service,env,status"},
	}}
}

// TimeRange is the dashboard's default time range.
type TimeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Templating holds the dashboard's variables.
type Templating struct {
	List []Variable `json:"list"`
}

// Variable is a query variable over label values.
type Variable struct {
	Name       string          `json:"name"`
	Label      string          `json:"label"`
	Type       string          `json:"type"`
	Datasource DatasourceRef   `json:"datasource"`
	Query      string          `json:"query"`
	Definition string          `json:"definition"`
	Refresh    int             `json:"refresh"` // 2: on time range change
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
	Sort       int             `json:"sort"`
	Current    VariableCurrent `json:"current"`
}

// VariableCurrent is a variable's selection when the dashboard opens.
type VariableCurrent struct {
	Text  []string `json:"text"`
	Value []string `json:"value"`
}

// Panel is one panel.
type Panel struct {
	ID          int           `json:"id"`
	Type        string        `json:"type"`
	Title       string        `json:"title"`
	Description string        `json:"description,omitempty"`
	GridPos     GridPos       `json:"gridPos"`
	Datasource  DatasourceRef `json:"datasource"`
	// Interval is the panel's minimum step.
	Interval    string       `json:"interval,omitempty"`
	Targets     []Target     `json:"targets"`
	FieldConfig FieldConfig  `json:"fieldConfig"`
	Options     PanelOptions `json:"options"`
}

// GridPos places a panel on the 24-column grid.
type GridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string        `json:"refId"`
	Datasource   DatasourceRef `json:"datasource"`
	Expr         string        `json:"expr"`
	LegendFormat string        `json:"legendFormat,omitempty"`
	Range        bool          `json:"range"`
	Instant      bool          `json:"instant"`
	EditorMode   string        `json:"editorMode"`
}

// FieldConfig sets units and the drawing style.
type FieldConfig struct {
	Defaults  FieldDefaults `json:"defaults"`
	Overrides []any         `json:"overrides"`
}

// FieldDefaults apply to every series of a panel.
type FieldDefaults struct {
	Unit     string      `json:"unit"`
	Decimals *int        `json:"decimals,omitempty"`
	Min      *float64    `json:"min,omitempty"`
	Custom   FieldCustom `json:"custom"`
}

// FieldCustom is the timeseries panel's style.
type FieldCustom struct {
	DrawStyle         string `json:"drawStyle"`
	LineInterpolation string `json:"lineInterpolation"`
	LineWidth         int    `json:"lineWidth"`
	FillOpacity       int    `json:"fillOpacity"`
	ShowPoints        string `json:"showPoints"`
	PointSize         int    `json:"pointSize"`
	SpanNulls         bool   `json:"spanNulls"`
}

// PanelOptions are the legend and tooltip.
type PanelOptions struct {
	Legend  Legend  `json:"legend"`
	Tooltip Tooltip `json:"tooltip"`
}

// Legend of a panel.
type Legend struct {
	DisplayMode string   `json:"displayMode"`
	Placement   string   `json:"placement"`
	ShowLegend  bool     `json:"showLegend"`
	Calcs       []string `json:"calcs"`
}

// Tooltip of a panel.
type Tooltip struct {
	Mode string `json:"mode"`
	Sort string `json:"sort"`
}

const (
	schemaVersion = 39
	// topN bounds the series of a view panel per step: a key of high
	// cardinality (a path, a user) would otherwise draw thousands of lines.
	topN = 20
)

// ownViewMetrics are Ops's own metrics named ops_view_*, with a view
// label (internal/views). A measure of the same name shares their metric
// name, so its panel leaves out the self-scraped series (job="ops").
var ownViewMetrics = map[string]bool{
	"lag": true, "errors_total": true, "changes_total": true, "events_in_total": true, "late_events_total": true,
}

// ViewDashboard is the dashboard of a windowed view: a variable per key
// field and one timeseries panel per numeric measure. It is nil for a view
// without a window or without a numeric measure.
func ViewDashboard(v View, ds DatasourceRef) *Dashboard {
	if !v.Windowed() {
		return nil
	}
	var measures []Measure
	for _, m := range v.Measures {
		if m.numeric() {
			measures = append(measures, m)
		}
	}
	if len(measures) == 0 {
		return nil
	}
	keys := keyLabels(v.Key)
	win := promDuration(v.Window)
	d := &Dashboard{
		UID:   uid("ops-view-", v.Name),
		Title: "Ops view " + v.Name,
		Description: fmt.Sprintf("Rows of the windowed view %s (%s windows, key %s), from the series ops_view_<measure>{view=%q}.",
			v.Name, win, strings.Join(v.Key, ", "), v.Name),
		Tags: []string{"ops", "ops-view"}, Editable: true, GraphTooltip: 1,
		SchemaVersion: schemaVersion, Version: 1,
		Time:    TimeRange{From: viewRange(v.Window), To: "now"},
		Refresh: "1m", Annotations: annotations(ds),
	}
	if v.Window >= time.Hour {
		d.Refresh = "5m"
	}
	for _, k := range keys {
		q := fmt.Sprintf("label_values(%s{view=%q}, %s)", metricName(measures[0]), v.Name, k)
		d.Templating.List = append(d.Templating.List, Variable{
			Name: k, Label: k, Type: "query", Datasource: ds, Query: q, Definition: q,
			Refresh: 2, Multi: true, IncludeAll: true, AllValue: ".*", Sort: 1,
			Current: VariableCurrent{Text: []string{"All"}, Value: []string{"$__all"}},
		})
	}
	if d.Templating.List == nil {
		d.Templating.List = []Variable{}
	}
	legend := make([]string, len(keys))
	for i, k := range keys {
		legend[i] = "{{" + k + "}}"
	}
	w := 12
	if len(measures) == 1 {
		w = 24
	}
	for i, m := range measures {
		unit, decimals := unitOf(m)
		p := Panel{
			ID: i + 1, Type: "timeseries", Title: m.Name,
			Description: fmt.Sprintf("%s = %s per %s window, top %d rows by value. Each point is the value of the window that starts at that time.",
				m.Name, m.Src, win, topN),
			GridPos:    GridPos{H: 9, W: w, X: (i % 2) * 12, Y: (i / 2) * 9},
			Datasource: ds,
			// One point per window: a finer step would only repeat it.
			Interval: grafanaInterval(v.Window),
			Targets: []Target{{RefID: "A", Datasource: ds, Expr: viewExpr(v, m, keys), LegendFormat: strings.Join(legend, " "),
				Range: true, EditorMode: "code"}},
			FieldConfig: FieldConfig{Defaults: FieldDefaults{Unit: unit, Decimals: decimals,
				Custom: FieldCustom{DrawStyle: "line", LineInterpolation: "stepAfter", LineWidth: 1, FillOpacity: 10,
					ShowPoints: "auto", PointSize: 5}}, Overrides: []any{}},
			Options: PanelOptions{Legend: Legend{DisplayMode: "table", Placement: "right", ShowLegend: true, Calcs: []string{"lastNotNull", "max"}},
				Tooltip: Tooltip{Mode: "multi", Sort: "desc"}},
		}
		d.Panels = append(d.Panels, p)
	}
	return d
}

// viewExpr is a measure's query. The TSDB stores each change of a row at
// the time of its newest event, inside the row's window. A plain selector
// evaluated at the window's start therefore sees the previous window, and
// for the lookback delta (5m) after the window it still sees the last
// value. last_over_time over [window] shifted forward
// by window-1ms reads exactly [start, start+window-1ms] at each step, the
// window's newest value; with the panel's step a multiple of the window,
// every step is a window's start.
func viewExpr(v View, m Measure, keys []string) string {
	ms := []string{fmt.Sprintf("view=%q", v.Name)}
	for _, k := range keys {
		ms = append(ms, fmt.Sprintf(`%s=~"$%s"`, k, k))
	}
	if ownViewMetrics[m.Name] {
		ms = append(ms, `job!="ops"`)
	}
	sel := fmt.Sprintf("%s{%s}[%s] offset -%s", metricName(m), strings.Join(ms, ", "),
		promDuration(v.Window), promDuration(v.Window-time.Millisecond))
	return fmt.Sprintf("topk(%d, %s by (%s) (last_over_time(%s)))", topN, aggregator(m), strings.Join(keys, ", "), sel)
}

func metricName(m Measure) string { return "ops_view_" + m.Name }

// keyLabels are the labels a view's key fields become. The TSDB sets the
// label view to the view's name, so a key field named view has no label
// of its own. Names are already valid labels: config validation allows
// lower-case letters, digits and _ only.
func keyLabels(key []string) []string {
	out := make([]string, 0, len(key))
	for _, k := range key {
		if k != "view" {
			out = append(out, k)
		}
	}
	return out
}

// aggregator folds series of one key. Each row is one series, so with
// every key field in by() it changes nothing; it is the one that stays
// right when a user removes key fields from by().
func aggregator(m Measure) string {
	switch m.kind() {
	case "min", "max", "avg":
		return m.kind()
	case "last":
		return "max"
	}
	return "sum"
}

// unitOf guesses a measure's unit from its name, then from the field its
// definition reads: counts are plain numbers; _ms, _seconds, _bytes and
// the like name their unit; a duration without one (latency, duration,
// elapsed) is taken as milliseconds, the usual unit of event timings.
func unitOf(m Measure) (string, *int) {
	zero := 0
	switch m.kind() {
	case "count", "uniq":
		return "short", &zero
	}
	if u := unitFromName(m.Name); u != "" {
		return u, nil
	}
	if u := unitFromName(fieldOf(m.Src)); u != "" {
		return u, nil
	}
	return "short", nil
}

var unitWords = []struct {
	words []string
	unit  string
}{
	{[]string{"ms", "msec", "millis", "milliseconds"}, "ms"},
	{[]string{"us", "usec", "micros", "microseconds"}, "µs"},
	{[]string{"ns", "nanos", "nanoseconds"}, "ns"},
	{[]string{"s", "sec", "secs", "seconds"}, "s"},
	{[]string{"minutes", "mins"}, "m"},
	{[]string{"hours"}, "h"},
	{[]string{"days"}, "d"},
	{[]string{"bytes", "byte"}, "bytes"},
	{[]string{"kb", "kib", "kilobytes"}, "kbytes"},
	{[]string{"mb", "mib", "megabytes"}, "mbytes"},
	{[]string{"gb", "gib", "gigabytes"}, "gbytes"},
	{[]string{"percent", "pct"}, "percent"},
	{[]string{"ratio", "fraction"}, "percentunit"},
	{[]string{"duration", "latency", "elapsed", "rtt", "ttfb"}, "ms"},
}

// unitFromName is the unit named by the last unit word of a snake_case or
// camelCase name: duration_seconds is s, latencyMs is ms, sent_bytes is
// bytes.
func unitFromName(name string) string {
	words := splitWords(name)
	for i := len(words) - 1; i >= 0; i-- {
		for _, uw := range unitWords {
			for _, w := range uw.words {
				if words[i] == w {
					return uw.unit
				}
			}
		}
	}
	return ""
}

func splitWords(s string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, strings.ToLower(cur.String()))
			cur.Reset()
		}
	}
	prevLower := false
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z':
			if prevLower {
				flush()
			}
			cur.WriteRune(r)
			prevLower = false
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			cur.WriteRune(r)
			prevLower = true
		default:
			flush()
			prevLower = false
		}
	}
	flush()
	return out
}

// fieldOf is the last field name a definition reads: "duration_ms" of
// "avg(this.data.duration_ms)".
func fieldOf(src string) string {
	_, inner, ok := strings.Cut(src, "(")
	if !ok {
		return ""
	}
	last := ""
	for _, f := range strings.FieldsFunc(inner, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) {
		if f != "this" && f != "data" {
			last = f
		}
	}
	return last
}

// viewRange is a dashboard's default range: a few hundred windows at most.
func viewRange(w time.Duration) string {
	switch {
	case w < 5*time.Minute:
		return "now-6h"
	case w < time.Hour:
		return "now-24h"
	case w < 24*time.Hour:
		return "now-7d"
	}
	return "now-90d"
}

// promDuration writes d in PromQL's duration syntax (1m, 59s999ms, 1d).
func promDuration(d time.Duration) string { return model.Duration(d).String() }

// grafanaInterval writes d in one unit, as Grafana's interval fields want.
func grafanaInterval(d time.Duration) string {
	for _, u := range []struct {
		size time.Duration
		s    string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d%u.size == 0 {
			return strconv.FormatInt(int64(d/u.size), 10) + u.s
		}
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// uid is a dashboard UID: Grafana allows 40 characters, view names 63.
func uid(prefix, name string) string {
	s := prefix + name
	if len(s) <= 40 {
		return s
	}
	h := sha256.Sum256([]byte(name))
	return s[:40-9] + "-" + hex.EncodeToString(h[:4])
}
