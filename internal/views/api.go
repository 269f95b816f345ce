package views

import (
	"errors"
	"io"
	"net/http"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/graph"
)

// put creates or replaces a view defined through the API. The body is the
// view as in ops.yaml, in YAML or JSON.
func (m *Module) put(w http.ResponseWriter, r *http.Request) {
	store := m.store.Load()
	if store == nil {
		writeJSON(w, http.StatusServiceUnavailable, errBody{Error: "starting"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 256<<10))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, errBody{Error: err.Error(), Field: "body"})
		return
	}
	var v config.View
	if err := config.DecodeYAML(body, &v, ""); err != nil {
		writeConfigErr(w, err)
		return
	}
	if v.Name == "" {
		v.Name = r.PathValue("name")
	}
	if v.Name != r.PathValue("name") {
		writeJSON(w, http.StatusBadRequest, errBody{Error: "name in the body differs from the path", Field: "name"})
		return
	}
	created, err := store.PutView(r.Context(), v)
	switch {
	case errors.Is(err, graph.ErrReadOnly):
		writeJSON(w, http.StatusConflict, errBody{Error: err.Error(), Field: "name"})
	case errors.Is(err, bus.ErrUnavailable):
		writeJSON(w, http.StatusServiceUnavailable, errBody{Error: err.Error()})
	case err != nil:
		writeConfigErr(w, err)
	case created:
		writeJSON(w, http.StatusCreated, map[string]any{"view": v.Name, "created": true})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"view": v.Name, "created": false})
	}
}

func (m *Module) delete(w http.ResponseWriter, r *http.Request) {
	store := m.store.Load()
	if store == nil {
		writeJSON(w, http.StatusServiceUnavailable, errBody{Error: "starting"})
		return
	}
	err := store.Delete(r.Context(), "view", r.PathValue("name"))
	switch {
	case errors.Is(err, graph.ErrReadOnly):
		writeJSON(w, http.StatusConflict, errBody{Error: err.Error(), Field: "name"})
	case errors.Is(err, graph.ErrNotFound):
		writeJSON(w, http.StatusNotFound, errBody{Error: "no view " + r.PathValue("name") + " created through the API", Field: "name"})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, errBody{Error: err.Error()})
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func writeConfigErr(w http.ResponseWriter, err error) {
	field := ""
	var errs config.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		field = errs[0].Path
	}
	writeJSON(w, http.StatusBadRequest, errBody{Error: err.Error(), Field: field})
}
