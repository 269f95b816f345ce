package analytics

import (
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/reply"
)

// Permission is what reading the reports needs (viewer).
const Permission = "analytics:read"

func (m *Module) mount(h func(pattern, perm string, h http.Handler)) {
	h("GET /api/v1/analytics/aggregate", Permission, http.HandlerFunc(m.aggregate))
	h("GET /api/v1/analytics/timeseries", Permission, http.HandlerFunc(m.timeseries))
	h("GET /api/v1/analytics/breakdown", Permission, http.HandlerFunc(m.breakdown))
	h("GET /api/v1/analytics/realtime", Permission, http.HandlerFunc(m.realtime))
	h("GET /api/v1/analytics/values", Permission, http.HandlerFunc(m.values))
	h("GET /api/v1/analytics/status", Permission, http.HandlerFunc(m.statusHandler))
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
	reply.JSON(w, http.StatusOK, map[string]any{"range": rg.rangeJSON(), "interval": iv, "results": pts})
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
