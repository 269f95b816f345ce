package pipeline

import (
	"encoding/json"
	"net/http"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/graph"
	"github.com/opsgraph/ops/internal/reply"
)

// preview serves POST /api/v1/processors/preview: the processor in the
// body, run over the latest ?limit= events of its from: subjects; nothing
// is stored or published. Seeing the sample's data needs events:read too.
func (m *Module) preview(w http.ResponseWriter, r *http.Request) {
	if !graph.CanPreview(w, r, m.deps.Allowed) {
		return
	}
	var p config.Processor
	n, ok := graph.DecodePreview(w, r, &p)
	if !ok {
		return
	}
	if e := m.allowOutput(r, &p); e != nil {
		reply.Error(w, http.StatusForbidden, e.Field, e.Error)
		return
	}
	g, ok := graph.CompileOne(w, &config.Config{Processors: []config.Processor{p}})
	if !ok {
		return
	}
	proc := g.Processors[0]
	sample, err := graph.Sample(r.Context(), m.deps.Bus, proc.Spec.From, n)
	if err != nil {
		m.deps.Bus.WriteError(w, err)
		return
	}
	items := make([]graph.PreviewItem, 0, len(sample))
	for _, s := range sample {
		it := graph.NewItem(s)
		o, subj, stage, err := Process(proc, &s.Event)
		switch {
		case err != nil:
			it.Stage, it.Error = stage, err.Error()
		case o == nil:
			it.Skipped = true
		default:
			it.To = subj
			var v any
			if json.Unmarshal(o.Data, &v) == nil {
				it.Output = v
			} else {
				it.Output = string(o.Data)
			}
		}
		items = append(items, it)
	}
	reply.JSON(w, http.StatusOK, map[string]any{"from": proc.Spec.From, "sample": len(items), "items": items})
}
