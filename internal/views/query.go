package views

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/graph"
	"github.com/opsgraph/ops/internal/reply"
)

// Info is one view in GET /api/v1/views.
type Info struct {
	Name      string   `json:"name"`
	Origin    string   `json:"origin"` // config or api
	From      []string `json:"from"`
	Key       []string `json:"key"`
	Measures  []string `json:"measures"`
	Window    string   `json:"window,omitempty"`
	Rows      uint64   `json:"rows"`
	Lag       uint64   `json:"lag"`
	In        uint64   `json:"in"`
	Late      uint64   `json:"late"`
	Errors    uint64   `json:"errors"`
	LastError string   `json:"last_error,omitempty"`
}

func (m *Module) list(w http.ResponseWriter, r *http.Request) {
	runners := m.all()
	out := make([]Info, 0, len(runners))
	for _, rn := range runners {
		i := rn.info(r.Context())
		i.Origin = "api"
		if s := m.store.Load(); s != nil {
			i.Origin = s.Origin("view", i.Name)
		}
		out = append(out, i)
	}
	writeJSON(w, http.StatusOK, map[string]any{"views": out})
}

func (r *runner) info(ctx context.Context) Info {
	v := r.v
	i := Info{Name: v.Spec.Name, From: v.Spec.From}
	for _, k := range v.Keys {
		i.Key = append(i.Key, k.Name)
	}
	for _, ms := range v.Measures {
		i.Measures = append(i.Measures, ms.Name+"="+ms.Src)
	}
	if v.Spec.Window > 0 {
		i.Window = v.Spec.Window.String()
	}
	if kv := r.bucket(); kv != nil {
		if st, err := r.bus.JetStream().Stream(ctx, "KV_"+kv.Bucket()); err == nil {
			// Subjects with a live value is what the stream tracks per
			// subject; delete markers are subjects too, so this counts rows
			// plus deleted rows not yet purged.
			i.Rows = st.CachedInfo().State.NumSubjects
			if _, err := kv.Get(ctx, metaKey); err == nil && i.Rows > 0 {
				i.Rows--
			}
		}
	}
	i.Lag, i.LastError = r.run.Lag(ctx), r.run.LastError()
	r.mu.Lock()
	i.In, i.Late, i.Errors = r.in, r.late, r.errs
	r.mu.Unlock()
	return i
}

// Row is one row as the query API returns it.
type Row struct {
	Key     map[string]any `json:"key"`
	Window  *time.Time     `json:"window,omitempty"`
	Values  map[string]any `json:"values"`
	Updated time.Time      `json:"updated"`
}

// Query is a parsed row query.
type Query struct {
	Keys     map[string]string // key.<field>=value: equality on the rendered value
	From, To time.Time         // window start in [From, To)
	Sort     string            // measure or key field, "-" prefix for descending
	Limit    int
	Offset   int
	CSV      bool
}

const maxLimit = 10000

// ParseQuery reads the query parameters of GET /api/v1/views/<name>. Errors
// name the parameter.
func ParseQuery(v *graph.View, q url.Values, accept string) (Query, *FieldError) {
	out := Query{Keys: map[string]string{}, Limit: 100}
	known := map[string]bool{}
	for _, k := range v.Keys {
		known[k.Name] = true
	}
	measures := map[string]bool{}
	for _, m := range v.Measures {
		measures[m.Name] = true
	}
	for p, vals := range q {
		val := vals[0]
		switch {
		case p == "":
			return out, &FieldError{"query", "a parameter without a name"}
		case strings.HasPrefix(p, "key."):
			f := strings.TrimPrefix(p, "key.")
			if !known[f] {
				return out, &FieldError{p, fmt.Sprintf("the view has no key field %q", f)}
			}
			out.Keys[f] = val
		case p == "from" || p == "to":
			t, err := time.Parse(time.RFC3339, val)
			if err != nil {
				return out, &FieldError{p, fmt.Sprintf("want an RFC 3339 time, got %q", val)}
			}
			if p == "from" {
				out.From = t
			} else {
				out.To = t
			}
		case p == "sort":
			f := strings.TrimPrefix(val, "-")
			if !known[f] && !measures[f] && f != "window" {
				return out, &FieldError{p, fmt.Sprintf("sort by a key field, a measure or window, got %q", val)}
			}
			out.Sort = val
		case p == "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > maxLimit {
				return out, &FieldError{p, fmt.Sprintf("want 1 to %d, got %q", maxLimit, val)}
			}
			out.Limit = n
		case p == "cursor":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return out, &FieldError{p, fmt.Sprintf("want a cursor from a previous page, got %q", val)}
			}
			out.Offset = n
		case p == "format":
			if val != "csv" && val != "json" {
				return out, &FieldError{p, fmt.Sprintf("want csv or json, got %q", val)}
			}
			out.CSV = val == "csv"
		default:
			return out, &FieldError{p, "unknown parameter (key.<field>, from, to, sort, limit, cursor, format)"}
		}
	}
	if q.Get("format") == "" && strings.Contains(accept, "text/csv") {
		out.CSV = true
	}
	if (!out.From.IsZero() || !out.To.IsZero()) && v.Spec.Window == 0 {
		return out, &FieldError{"from", "from and to select windows; this view has none"}
	}
	return out, nil
}

// FieldError names the query parameter at fault.
type FieldError struct {
	Field string
	Msg   string
}

func (q Query) match(v *graph.View, rw *row) bool {
	for i, k := range v.Keys {
		if want, ok := q.Keys[k.Name]; ok && Render(rw.Key[i]) != want {
			return false
		}
	}
	if rw.Window != 0 {
		w := time.Unix(rw.Window, 0)
		if !q.From.IsZero() && w.Before(q.From) || !q.To.IsZero() && !w.Before(q.To) {
			return false
		}
	}
	return true
}

// Render formats a value as text (graph.Render).
func Render(v any) string { return graph.Render(v) }

// scan calls fn with every row that matches q, in storage order. It pulls
// the bucket's current values in batches of 256 from an ordered consumer
// (last value per key), so memory stays flat however many rows there are;
// a push watcher would buffer as fast as the server sends.
func (r *runner) scan(ctx context.Context, q Query, fn func(*row) error) error {
	kv := r.bucket()
	st, err := r.bus.JetStream().Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return err
	}
	if st.CachedInfo().State.Msgs == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$KV." + kv.Bucket() + ".>"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	prefix := len("$KV." + kv.Bucket() + ".")
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		op := m.Headers().Get("KV-Operation")
		key := m.Subject()[prefix:]
		if op == "" && key != metaKey {
			var rw row
			if err := json.Unmarshal(m.Data(), &rw); err != nil {
				return fmt.Errorf("row %s: %w", key, err)
			}
			if q.match(r.v, &rw) {
				if err := fn(&rw); err != nil {
					return err
				}
			}
		}
		if md.NumPending == 0 {
			return nil
		}
	}
}

func (m *Module) query(w http.ResponseWriter, req *http.Request) {
	rn := m.view(req.PathValue("name"))
	if rn == nil {
		writeJSON(w, http.StatusNotFound, errBody{Error: fmt.Sprintf("no view %q", req.PathValue("name")), Field: "name"})
		return
	}
	q, fe := ParseQuery(rn.v, req.URL.Query(), req.Header.Get("Accept"))
	if fe != nil {
		writeJSON(w, http.StatusBadRequest, errBody{Error: fe.Msg, Field: fe.Field})
		return
	}
	if rn.bucket() == nil {
		writeJSON(w, http.StatusServiceUnavailable, errBody{Error: "view is starting"})
		return
	}
	if q.CSV && q.Sort == "" {
		rn.streamCSV(w, req, q)
		return
	}
	var rows []*row
	err := rn.scan(req.Context(), q, func(rw *row) error {
		rows = append(rows, rw)
		if len(rows) > 1_000_000 {
			return errors.New("more than 1,000,000 rows match; narrow the query or export CSV without sort")
		}
		return nil
	})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, errBody{Error: err.Error()})
		return
	}
	rn.sortRows(rows, q.Sort)
	if q.CSV {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		_ = cw.Write(rn.header())
		for _, rw := range rows {
			_ = cw.Write(rn.record(rw))
		}
		cw.Flush()
		return
	}
	total := len(rows)
	start := min(q.Offset, total)
	end := min(start+q.Limit, total)
	out := make([]Row, 0, end-start)
	for _, rw := range rows[start:end] {
		out = append(out, rn.public(rw))
	}
	res := map[string]any{"view": rn.v.Spec.Name, "rows": out, "total": total}
	if end < total {
		res["cursor"] = strconv.Itoa(end)
	}
	writeJSON(w, http.StatusOK, res)
}

func (r *runner) public(rw *row) Row {
	out := Row{Key: keyMap(r.v, rw.Key), Values: values(r.v, rw), Updated: rw.Updated}
	if rw.Window != 0 {
		t := time.Unix(rw.Window, 0).UTC()
		out.Window = &t
	}
	return out
}

// sortRows orders rows by the sort field; without one, by window then key.
func (r *runner) sortRows(rows []*row, sortBy string) {
	desc := strings.HasPrefix(sortBy, "-")
	field := strings.TrimPrefix(sortBy, "-")
	keyIdx := -1
	for i, k := range r.v.Keys {
		if k.Name == field {
			keyIdx = i
		}
	}
	vals := make(map[*row]map[string]any, len(rows))
	if field != "" && keyIdx < 0 && field != "window" {
		for _, rw := range rows {
			vals[rw] = values(r.v, rw)
		}
	}
	slices.SortStableFunc(rows, func(a, b *row) int {
		var c int
		switch {
		case field == "" || field == "window":
			c = cmp.Compare(a.Window, b.Window)
			if c == 0 {
				c = strings.Compare(fmt.Sprint(a.Key), fmt.Sprint(b.Key))
			}
		case keyIdx >= 0:
			c = compareAny(a.Key[keyIdx], b.Key[keyIdx])
		default:
			c = compareAny(vals[a][field], vals[b][field])
		}
		if desc {
			return -c
		}
		return c
	})
}

func compareAny(a, b any) int {
	fa, oka := a.(float64)
	fb, okb := b.(float64)
	if oka && okb {
		return cmp.Compare(fa, fb)
	}
	return strings.Compare(Render(a), Render(b))
}

func (r *runner) header() []string {
	var h []string
	if r.v.Spec.Window > 0 {
		h = append(h, "window")
	}
	for _, k := range r.v.Keys {
		h = append(h, k.Name)
	}
	for _, m := range r.v.Measures {
		h = append(h, m.Name)
	}
	return h
}

func (r *runner) record(rw *row) []string {
	var rec []string
	if r.v.Spec.Window > 0 {
		rec = append(rec, time.Unix(rw.Window, 0).UTC().Format(time.RFC3339))
	}
	for i := range r.v.Keys {
		rec = append(rec, Render(rw.Key[i]))
	}
	vals := values(r.v, rw)
	for _, m := range r.v.Measures {
		rec = append(rec, Render(vals[m.Name]))
	}
	return rec
}

// streamCSV writes matching rows as they are read, flushing every 1000 rows,
// so an export of millions of rows never sits in memory.
func (r *runner) streamCSV(w http.ResponseWriter, req *http.Request, q Query) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", r.v.Spec.Name+".csv"))
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	cw := csv.NewWriter(w)
	_ = cw.Write(r.header())
	n := 0
	err := r.scan(req.Context(), q, func(rw *row) error {
		if err := cw.Write(r.record(rw)); err != nil {
			return err
		}
		if n++; n%1000 == 0 {
			cw.Flush()
			_ = rc.Flush()
		}
		return cw.Error()
	})
	cw.Flush()
	if err != nil {
		// Headers are gone; the truncated body is the only signal left, so
		// say it in a trailer-like last line a reader will not parse as data.
		r.log.Warn("csv export cut short", "err", err, "rows", n)
	}
}

type errBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) { reply.JSON(w, code, v) }
