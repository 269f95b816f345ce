package analytics

import (
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/reply"
)

// Permission is what reading the reports needs (viewer).
const Permission = "analytics:read"

func (m *Module) mount(h func(pattern, perm string, h http.Handler)) {
	h("GET /api/v1/analytics/aggregate", Permission, http.HandlerFunc(m.aggregate))
	h("GET /api/v1/analytics/timeseries", Permission, http.HandlerFunc(m.timeseries))
	h("GET /api/v1/analytics/breakdown", Permission, http.HandlerFunc(m.breakdown))
	h("GET /api/v1/analytics/goals", Permission, http.HandlerFunc(m.goalsHandler))
	h("GET /api/v1/analytics/funnel", Permission, http.HandlerFunc(m.funnelHandler))
	h("GET /api/v1/analytics/funnels", Permission, http.HandlerFunc(m.funnelsHandler))
	h("GET /api/v1/analytics/retention", Permission, http.HandlerFunc(m.retention))
	h("GET /api/v1/analytics/realtime", Permission, http.HandlerFunc(m.realtime))
	h("GET /api/v1/analytics/values", Permission, http.HandlerFunc(m.values))
	h("GET /api/v1/analytics/status", Permission, http.HandlerFunc(m.statusHandler))
	h("GET /api/v1/analytics/shares", WritePermission, http.HandlerFunc(m.shares.list))
	h("POST /api/v1/analytics/shares", WritePermission, http.HandlerFunc(m.shares.create))
	h("DELETE /api/v1/analytics/shares/{id}", WritePermission, http.HandlerFunc(m.shares.remove))
	h("GET /api/v1/analytics/reports", WritePermission, http.HandlerFunc(m.reportsHandler))
	h("POST /api/v1/analytics/reports/{name}/send", WritePermission, http.HandlerFunc(m.sendNow))
	// A shared link reads the reports a dashboard draws; not the values
	// of a dimension (they span every site) nor the status.
	for name, f := range map[string]http.HandlerFunc{"aggregate": m.aggregate, "timeseries": m.timeseries, "breakdown": m.breakdown,
		"goals": m.goalsHandler, "funnel": m.funnelHandler, "funnels": m.funnelsHandler, "retention": m.retention, "realtime": m.realtime} {
		h("GET /share/{token}/api/"+name, identity.Public, m.sharedReport(f))
	}
}

// maxRangeDays bounds a report's range.
const maxRangeDays = 3 * 366

// paramError names the query parameter at fault.
type paramError struct{ field, msg string }

func (e *paramError) Error() string { return e.field + ": " + e.msg }

// Range is a report's period: [From, To), whole UTC days.
type Range struct {
	From, To time.Time
}

func (r Range) days() int { return int(r.To.Sub(r.From).Hours() / 24) }

// previous is the period of the same length just before r.
func (r Range) previous() Range { return Range{From: r.From.Add(-r.To.Sub(r.From)), To: r.From} }

// ParseRange reads period (day, 7d, 30d, 91d, month, 6mo, 12mo, year or
// custom), date (the last day, YYYY-MM-DD; today by default) and, for
// custom, from and to (inclusive days).
func ParseRange(q map[string][]string, now time.Time) (Range, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	date := today
	if s := get("date"); s != "" {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return Range{}, &paramError{"date", fmt.Sprintf("want YYYY-MM-DD, got %q", s)}
		}
		date = d
	}
	end := date.AddDate(0, 0, 1)
	var r Range
	switch p := get("period"); p {
	case "day":
		r = Range{date, end}
	case "", "30d":
		r = Range{end.AddDate(0, 0, -30), end}
	case "7d":
		r = Range{end.AddDate(0, 0, -7), end}
	case "91d":
		r = Range{end.AddDate(0, 0, -91), end}
	case "month":
		first := time.Date(date.Year(), date.Month(), 1, 0, 0, 0, 0, time.UTC)
		r = Range{first, first.AddDate(0, 1, 0)}
	case "6mo", "12mo":
		n := 6
		if p == "12mo" {
			n = 12
		}
		first := time.Date(date.Year(), date.Month(), 1, 0, 0, 0, 0, time.UTC)
		r = Range{first.AddDate(0, 1-n, 0), first.AddDate(0, 1, 0)}
	case "year":
		r = Range{time.Date(date.Year(), 1, 1, 0, 0, 0, 0, time.UTC), time.Date(date.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)}
	case "custom":
		from, err1 := time.Parse(time.DateOnly, get("from"))
		to, err2 := time.Parse(time.DateOnly, get("to"))
		switch {
		case err1 != nil:
			return r, &paramError{"from", fmt.Sprintf("want YYYY-MM-DD with period=custom, got %q", get("from"))}
		case err2 != nil:
			return r, &paramError{"to", fmt.Sprintf("want YYYY-MM-DD with period=custom, got %q", get("to"))}
		case to.Before(from):
			return r, &paramError{"to", "is before from"}
		}
		r = Range{from, to.AddDate(0, 0, 1)}
	default:
		return r, &paramError{"period", fmt.Sprintf("want day, 7d, 30d, 91d, month, 6mo, 12mo, year or custom, got %q", p)}
	}
	if r.days() > maxRangeDays {
		return r, &paramError{"period", fmt.Sprintf("a range is at most %d days", maxRangeDays)}
	}
	return r, nil
}

// request reads what every report takes: the range, the site and the
// filters.
func (m *Module) request(r *http.Request) (Range, []Filter, error) {
	q := r.URL.Query()
	rg, err := ParseRange(q, time.Now().UTC())
	if err != nil {
		return rg, nil, err
	}
	fs, err := ParseFilters(q.Get("filters"))
	if err != nil {
		var fe *FilterError
		if errors.As(err, &fe) {
			return rg, nil, &paramError{"filters", err.Error()}
		}
		return rg, nil, err
	}
	if site := q.Get("site"); site != "" {
		fs = append(fs, Filter{Dim: DimHostname, Op: OpIs, Values: []string{strings.ToLower(site)}})
	}
	return rg, fs, nil
}

func badRequest(w http.ResponseWriter, err error) {
	var pe *paramError
	if errors.As(err, &pe) {
		reply.Error(w, http.StatusBadRequest, pe.field, pe.msg)
		return
	}
	reply.Error(w, http.StatusBadRequest, "", err.Error())
}

func (rg Range) query(fs []Filter) Query {
	return Query{From: rg.From.UnixMilli(), To: rg.To.UnixMilli(), Filters: fs}
}

// rangeJSON is a range as the answers give it: inclusive dates.
func (rg Range) rangeJSON() map[string]string {
	return map[string]string{"from": rg.From.Format(time.DateOnly), "to": rg.To.AddDate(0, 0, -1).Format(time.DateOnly)}
}

func (m *Module) aggregate(w http.ResponseWriter, r *http.Request) {
	rg, fs, err := m.request(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	cur := m.store.Aggregate(rg.query(fs))
	out := map[string]any{"range": rg.rangeJSON(), "results": cur}
	var prev *Totals
	if c := r.URL.Query().Get("compare"); c == "previous_period" {
		p := rg.previous()
		t := m.store.Aggregate(p.query(fs))
		prev = &t
		out["comparison"] = map[string]any{"range": p.rangeJSON(), "results": t, "change": change(cur, t)}
	} else if c != "" {
		reply.Error(w, http.StatusBadRequest, "compare", fmt.Sprintf("want previous_period, got %q", c))
		return
	}
	if wantsCSV(r) {
		rows := [][]string{{"metric", "value", "previous"}}
		for _, mt := range metricsOf(cur) {
			row := []string{mt.name, num(mt.v), ""}
			if prev != nil {
				row[2] = num(metricsOf(*prev)[len(rows)-1].v)
			}
			rows = append(rows, row)
		}
		writeCSV(w, rows)
		return
	}
	reply.JSON(w, http.StatusOK, out)
}

type metric struct {
	name string
	v    float64
}

func metricsOf(t Totals) []metric {
	return []metric{{"visitors", float64(t.Visitors)}, {"visits", float64(t.Visits)}, {"pageviews", float64(t.Pageviews)},
		{"views_per_visit", t.ViewsPerVisit}, {"bounce_rate", t.BounceRate}, {"visit_duration", t.VisitDuration}, {"events", float64(t.Events)}}
}

// change is each metric's change from prev to cur, in percent (null when
// prev is 0).
func change(cur, prev Totals) map[string]*float64 {
	out := map[string]*float64{}
	p := metricsOf(prev)
	for i, mt := range metricsOf(cur) {
		if p[i].v == 0 {
			out[mt.name] = nil
			continue
		}
		c := round2(100 * (mt.v - p[i].v) / p[i].v)
		out[mt.name] = &c
	}
	return out
}

func (m *Module) timeseries(w http.ResponseWriter, r *http.Request) {
	rg, fs, err := m.request(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	iv := Interval(r.URL.Query().Get("interval"))
	switch iv {
	case "":
		iv = Day
		if rg.days() <= 1 {
			iv = Hour
		} else if rg.days() > 190 {
			iv = Month
		}
	case Hour, Day, Week, Month:
	default:
		reply.Error(w, http.StatusBadRequest, "interval", fmt.Sprintf("want hour, day, week or month, got %q", iv))
		return
	}
	if iv == Hour && rg.days() > maxPoints/24 {
		reply.Error(w, http.StatusBadRequest, "interval", fmt.Sprintf("hour is for ranges of at most %d days", maxPoints/24))
		return
	}
	pts := m.store.Timeseries(rg.query(fs), iv)
	if wantsCSV(r) {
		rows := [][]string{{"date", "visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events"}}
		for _, p := range pts {
			row := []string{p.Start.Format(time.RFC3339)}
			for _, mt := range metricsOf(p.Totals) {
				row = append(row, num(mt.v))
			}
			rows = append(rows, row)
		}
		writeCSV(w, rows)
		return
	}
	out := map[string]any{"range": rg.rangeJSON(), "interval": iv, "results": pts}
	switch c := r.URL.Query().Get("compare"); c {
	case "":
	case "previous_period":
		// The period before, bucket for bucket: the dashboard draws it
		// under the current line.
		p := rg.previous()
		out["comparison"] = map[string]any{"range": p.rangeJSON(), "results": m.store.Timeseries(p.query(fs), iv)}
	default:
		reply.Error(w, http.StatusBadRequest, "compare", fmt.Sprintf("want previous_period, got %q", c))
		return
	}
	reply.JSON(w, http.StatusOK, out)
}

func (m *Module) breakdown(w http.ResponseWriter, r *http.Request) {
	rg, fs, err := m.request(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	q := r.URL.Query()
	property := q.Get("property")
	var dim Dim
	prop, isProp := strings.CutPrefix(property, "prop:")
	if !isProp {
		prop = ""
	}
	switch {
	case property == "":
		reply.Error(w, http.StatusBadRequest, "property", "required: a dimension ("+strings.Join(dimNames[:], ", ")+") or prop:<name>")
		return
	case isProp && prop == "":
		reply.Error(w, http.StatusBadRequest, "property", "prop: needs a property name")
		return
	case !isProp:
		d, ok := DimByName(property)
		if !ok {
			reply.Error(w, http.StatusBadRequest, "property", fmt.Sprintf("unknown dimension %q (known: %s, or prop:<name>)", property, strings.Join(dimNames[:], ", ")))
			return
		}
		dim = d
	default:
		dim = DimEvent
	}
	limit, err := intParam(q.Get("limit"), 10, 1, 1000)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "limit", err.Error())
		return
	}
	page, err := intParam(q.Get("page"), 1, 1, 1_000_000)
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "page", err.Error())
		return
	}
	rows, total := m.store.Breakdown(rg.query(fs), dim, prop, limit, page)
	if wantsCSV(r) {
		out := [][]string{{property, "visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events"}}
		for _, row := range rows {
			rec := []string{row.Value}
			for _, mt := range metricsOf(row.Totals) {
				rec = append(rec, num(mt.v))
			}
			out = append(out, rec)
		}
		writeCSV(w, out)
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"range": rg.rangeJSON(), "property": property, "results": rows, "total": total, "page": page, "limit": limit})
}

// goalsHandler reports the goals asked for (goals=event==Signup;page==/thanks),
// or else the configured ones.
func (m *Module) goalsHandler(w http.ResponseWriter, r *http.Request) {
	rg, fs, err := m.request(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	goals := m.goals
	if g := r.URL.Query().Get("goals"); g != "" {
		if goals, err = ParseGoals(g, maxFilters); err != nil {
			reply.Error(w, http.StatusBadRequest, "goals", err.Error())
			return
		}
	}
	cur := m.store.Goals(rg.query(fs), goals)
	out := map[string]any{"range": rg.rangeJSON(), "results": cur}
	var prev []Conversion
	switch c := r.URL.Query().Get("compare"); c {
	case "":
	case "previous_period":
		p := rg.previous()
		prev = m.store.Goals(p.query(fs), goals)
		out["comparison"] = map[string]any{"range": p.rangeJSON(), "results": prev}
	default:
		reply.Error(w, http.StatusBadRequest, "compare", fmt.Sprintf("want previous_period, got %q", c))
		return
	}
	if wantsCSV(r) {
		rows := [][]string{{"goal", "visitors", "events", "conversion_rate"}}
		if prev != nil {
			rows[0] = append(rows[0], "previous_visitors", "previous_events", "previous_conversion_rate")
		}
		for i, c := range cur {
			row := []string{c.Goal, strconv.Itoa(c.Visitors), strconv.Itoa(c.Events), num(c.ConversionRate)}
			if prev != nil {
				row = append(row, strconv.Itoa(prev[i].Visitors), strconv.Itoa(prev[i].Events), num(prev[i].ConversionRate))
			}
			rows = append(rows, row)
		}
		writeCSV(w, rows)
		return
	}
	reply.JSON(w, http.StatusOK, out)
}

// funnelHandler reports a configured funnel (funnel=<name>) or the steps
// given (steps=page==/;event==Signup, window=2h).
func (m *Module) funnelHandler(w http.ResponseWriter, r *http.Request) {
	rg, fs, err := m.request(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	q := r.URL.Query()
	var fn funnel
	switch name, steps := q.Get("funnel"), q.Get("steps"); {
	case name != "" && steps != "":
		reply.Error(w, http.StatusBadRequest, "steps", "give funnel or steps, not both")
		return
	case name != "":
		var ok bool
		if fn, ok = m.funnels[name]; !ok {
			reply.Error(w, http.StatusNotFound, "funnel", fmt.Sprintf("no funnel %q is configured", name))
			return
		}
	case steps != "":
		if fn.steps, err = ParseGoals(steps, maxSteps); err != nil {
			reply.Error(w, http.StatusBadRequest, "steps", err.Error())
			return
		}
		if len(fn.steps) < 2 {
			reply.Error(w, http.StatusBadRequest, "steps", "a funnel has at least 2 steps")
			return
		}
		fn.window = defaultWindow
	default:
		reply.Error(w, http.StatusBadRequest, "steps", "required: steps=<goal>;<goal>... or funnel=<name>")
		return
	}
	if s := q.Get("window"); s != "" {
		d, err := config.ParseDuration(s)
		if err != nil || d <= 0 || d > maxWindow {
			reply.Error(w, http.StatusBadRequest, "window", fmt.Sprintf("want a duration up to %s (30m, 2h, 7d), got %q", maxWindow, s))
			return
		}
		fn.window = d
	}
	res := m.store.Funnel(rg.query(fs), fn.steps, fn.window)
	if wantsCSV(r) {
		rows := [][]string{{"step", "visitors", "conversion_rate", "dropoff", "dropoff_rate"}}
		for _, st := range res {
			rows = append(rows, []string{st.Step, strconv.Itoa(st.Visitors), num(st.ConversionRate), strconv.Itoa(st.DropOff), num(st.DropOffRate)})
		}
		writeCSV(w, rows)
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"range": rg.rangeJSON(), "window": config.Duration(fn.window).String(), "steps": res})
}

// funnelsHandler lists the configured funnels and goals.
func (m *Module) funnelsHandler(w http.ResponseWriter, r *http.Request) {
	type item struct {
		Name   string   `json:"name"`
		Steps  []string `json:"steps"`
		Window string   `json:"window"`
	}
	out := []item{}
	for _, f := range m.cfg.Funnels {
		fn := m.funnels[f.Name]
		it := item{Name: f.Name, Window: config.Duration(fn.window).String()}
		for _, g := range fn.steps {
			it.Steps = append(it.Steps, g.Name)
		}
		out = append(out, it)
	}
	goals := []string{}
	for _, g := range m.goals {
		goals = append(goals, g.Name)
	}
	reply.JSON(w, http.StatusOK, map[string]any{"funnels": out, "goals": goals})
}

// retention reports cohorts by first visit (interval=day or week).
func (m *Module) retention(w http.ResponseWriter, r *http.Request) {
	rg, fs, err := m.request(r)
	if err != nil {
		badRequest(w, err)
		return
	}
	iv := Interval(r.URL.Query().Get("interval"))
	switch iv {
	case "":
		iv = Day
		if rg.days() > 31 {
			iv = Week
		}
	case Day, Week:
	default:
		reply.Error(w, http.StatusBadRequest, "interval", fmt.Sprintf("want day or week, got %q", iv))
		return
	}
	if n := rg.days(); (iv == Day && n > maxPeriods) || (iv == Week && n > 7*maxPeriods) {
		reply.Error(w, http.StatusBadRequest, "period", fmt.Sprintf("a retention grid has at most %d %ss", maxPeriods, iv))
		return
	}
	cohorts := m.store.Retention(rg.query(fs), iv)
	if wantsCSV(r) {
		rows := [][]string{{"cohort", "visitors"}}
		for k := range cohorts {
			rows[0] = append(rows[0], fmt.Sprintf("%s_%d", iv, k))
		}
		for _, c := range cohorts {
			row := []string{c.Start.Format(time.DateOnly), strconv.Itoa(c.Visitors)}
			for _, n := range c.Returning {
				row = append(row, strconv.Itoa(n))
			}
			rows = append(rows, row)
		}
		writeCSV(w, rows)
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"range": rg.rangeJSON(), "interval": iv, "cohorts": cohorts})
}

func (m *Module) realtime(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fs, err := ParseFilters(q.Get("filters"))
	if err != nil {
		reply.Error(w, http.StatusBadRequest, "filters", err.Error())
		return
	}
	if site := q.Get("site"); site != "" {
		fs = append(fs, Filter{Dim: DimHostname, Op: OpIs, Values: []string{strings.ToLower(site)}})
	}
	reply.JSON(w, http.StatusOK, m.store.Realtime(time.Now(), fs))
}

func (m *Module) values(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d, ok := DimByName(q.Get("dimension"))
	if !ok {
		reply.Error(w, http.StatusBadRequest, "dimension", fmt.Sprintf("want one of %s", strings.Join(dimNames[:], ", ")))
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"values": m.store.Values(d, q.Get("q"), 100)})
}

func (m *Module) statusHandler(w http.ResponseWriter, r *http.Request) {
	reply.JSON(w, http.StatusOK, m.status())
}

func intParam(s string, def, lo, hi int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("want %d to %d, got %q", lo, hi, s)
	}
	return n, nil
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func wantsCSV(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "csv"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/csv")
}

func writeCSV(w http.ResponseWriter, rows [][]string) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	cw := csv.NewWriter(w)
	_ = cw.WriteAll(rows)
}
