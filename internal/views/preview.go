package views

import (
	"net/http"
	"slices"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/graph"
	"github.com/opsgraph/ops/internal/reply"
)

// preview serves POST /api/v1/views/preview: the view in the body, folded
// in memory over the latest ?limit= events of its from: subjects with the
// same key, window and measure code as the running views; nothing is
// stored. The answer has each event's key and measure inputs, and the rows
// the sample alone makes (lateness is not applied: a sample has no
// watermark worth the name).
func (m *Module) preview(w http.ResponseWriter, r *http.Request) {
	if !graph.CanPreview(w, r, m.deps.Allowed) {
		return
	}
	var spec config.View
	n, ok := graph.DecodePreview(w, r, &spec)
	if !ok {
		return
	}
	g, ok := graph.CompileOne(w, &config.Config{Views: []config.View{spec}})
	if !ok {
		return
	}
	v := g.Views[0]
	sample, err := graph.Sample(r.Context(), m.deps.Bus, v.Spec.From, n)
	if err != nil {
		m.deps.Bus.WriteError(w, err)
		return
	}
	rn := &runner{v: v}
	size := v.Spec.Window.D()
	rows := map[string]*row{}
	var order []string
	items := make([]graph.PreviewItem, 0, len(sample))
	for _, s := range sample {
		it := graph.NewItem(s)
		items = append(items, it)
		last := &items[len(items)-1]
		obj, err := graph.Object(&s.Event)
		if err != nil {
			last.Stage, last.Error = "decode", err.Error()
			continue
		}
		ok, err := graph.Bool(v.Where, obj)
		if err != nil {
			last.Stage, last.Error = "where", err.Error()
			continue
		}
		if !ok {
			last.Skipped = true
			continue
		}
		key := make([]any, len(v.Keys))
		failed := false
		for i, k := range v.Keys {
			val, err := k.Expr.Query(obj)
			if err != nil {
				last.Stage, last.Error, failed = "key", "key "+k.Name+": "+err.Error(), true
				break
			}
			key[i] = keyValue(val)
		}
		if failed {
			continue
		}
		last.Key = keyMap(v, key)
		var window int64
		if size > 0 {
			ws := graph.Window(s.Event.Time, size)
			window = ws.Unix()
			last.Window = ws.Format(time.RFC3339)
		}
		rk := rowKey(window, key)
		cur := rows[rk]
		in, err := compute(v, obj, cur)
		if err != nil {
			last.Stage, last.Error = "measures", err.Error()
			continue
		}
		last.Values = map[string]any{}
		for i, ms := range v.Measures {
			if ms.Kind != graph.Count {
				last.Values[ms.Name] = in[i]
			}
		}
		if cur == nil {
			cur = &row{Key: key, Window: window, M: map[string]*mstate{}}
			rows[rk] = cur
			order = append(order, rk)
		}
		del, err := apply(v, cur, in)
		if err != nil {
			last.Stage, last.Error = "measures", err.Error()
			continue
		}
		cur.Seq, cur.Idx, cur.Updated = s.Position.Seq, s.Position.Index, s.Event.Time
		if del {
			delete(rows, rk)
			order = slices.DeleteFunc(order, func(k string) bool { return k == rk })
		}
	}
	out := make([]Row, 0, len(order))
	for _, k := range order {
		out = append(out, rn.public(rows[k]))
	}
	reply.JSON(w, http.StatusOK, map[string]any{"from": v.Spec.From, "sample": len(items), "items": items, "rows": out})
}
