package cqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/graph"
	"github.com/opsgraph/ops/internal/reply"
)

// Deps are what the cqrs module needs.
type Deps struct {
	Bus    *bus.Bus
	Logger *slog.Logger
	Handle func(pattern, perm string, h http.Handler)
}

// Module serves the aggregate API.
type Module struct {
	store *Store
	log   *slog.Logger
	types map[string]*graph.Aggregate
}

// New mounts the aggregate routes.
func New(g *graph.Graph, deps Deps) (*Module, error) {
	m := &Module{store: NewStore(deps.Bus), log: deps.Logger, types: map[string]*graph.Aggregate{}}
	for _, a := range g.Aggregates {
		m.types[a.Type] = a
	}
	if deps.Handle != nil {
		deps.Handle("POST /api/v1/aggregates/{type}/{id}/events", "aggregates:write", http.HandlerFunc(m.append))
		deps.Handle("POST /api/v1/aggregates/{type}/{id}/commands/{name}", "aggregates:write", http.HandlerFunc(m.command))
		deps.Handle("GET /api/v1/aggregates/{type}/{id}", "aggregates:read", http.HandlerFunc(m.get))
	}
	return m, nil
}

// Run has nothing to do in the background: requests do the work.
func (m *Module) Run(ctx context.Context, ready func()) error {
	ready()
	<-ctx.Done()
	return nil
}

var typeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

type errBody struct {
	Error   string  `json:"error"`
	Field   string  `json:"field,omitempty"`
	Current *uint64 `json:"current,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) { reply.JSON(w, code, v) }

func (m *Module) path(w http.ResponseWriter, r *http.Request) (string, string, bool) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	if !typeRE.MatchString(typ) {
		writeJSON(w, http.StatusBadRequest, errBody{Error: fmt.Sprintf("aggregate types are lower-case letters, digits and _, got %q", typ), Field: "type"})
		return "", "", false
	}
	if err := ValidID(id); err != nil {
		writeJSON(w, http.StatusBadRequest, errBody{Error: err.Error(), Field: "id"})
		return "", "", false
	}
	return typ, id, true
}

// writeErr maps store and command errors to statuses.
func (m *Module) writeErr(w http.ResponseWriter, err error) {
	var ce *ConflictError
	var re *RejectedError
	switch {
	case errors.As(err, &ce):
		cur := ce.Current
		writeJSON(w, http.StatusConflict, errBody{Error: err.Error(), Field: "expectedVersion", Current: &cur})
	case errors.As(err, &re):
		writeJSON(w, http.StatusUnprocessableEntity, errBody{Error: re.Msg})
	case errors.Is(err, ErrInvalid):
		writeJSON(w, http.StatusBadRequest, errBody{Error: err.Error()})
	case errors.Is(err, bus.ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errBody{Error: err.Error()})
	default:
		m.log.Warn("aggregate request failed", "err", err)
		writeJSON(w, http.StatusInternalServerError, errBody{Error: err.Error()})
	}
}

// AppendRequest is the body of POST .../events.
type AppendRequest struct {
	ExpectedVersion *uint64      `json:"expectedVersion"`
	Events          []AppendItem `json:"events"`
}

// AppendItem is one event to append.
type AppendItem struct {
	ID   string          `json:"id,omitempty"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data,omitempty"`
}

func (m *Module) append(w http.ResponseWriter, r *http.Request) {
	typ, id, ok := m.path(w, r)
	if !ok {
		return
	}
	var req AppendRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errBody{Error: "want {\"expectedVersion\": N, \"events\": [{\"type\": ..., \"data\": ...}]}: " + err.Error(), Field: "body"})
		return
	}
	if req.ExpectedVersion == nil {
		writeJSON(w, http.StatusBadRequest, errBody{Error: "required: the version you read (0 for a new aggregate)", Field: "expectedVersion"})
		return
	}
	if len(req.Events) == 0 {
		writeJSON(w, http.StatusBadRequest, errBody{Error: "required: at least one event", Field: "events"})
		return
	}
	evs := make([]event.Event, len(req.Events))
	for i, it := range req.Events {
		if it.Type == "" {
			writeJSON(w, http.StatusBadRequest, errBody{Error: "required", Field: fmt.Sprintf("events[%d].type", i)})
			return
		}
		if err := event.ValidateTypeTokens(it.Type); err != nil {
			writeJSON(w, http.StatusBadRequest, errBody{Error: err.Error(), Field: fmt.Sprintf("events[%d].type", i)})
			return
		}
		evs[i] = event.Event{ID: it.ID, Type: it.Type}
		if len(it.Data) > 0 {
			evs[i].Data, evs[i].DataContentType = it.Data, "application/json"
		}
	}
	v, err := m.store.Append(r.Context(), typ, id, *req.ExpectedVersion, evs)
	if err != nil {
		m.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"type": typ, "id": id, "version": v})
}

func (m *Module) command(w http.ResponseWriter, r *http.Request) {
	typ, id, ok := m.path(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	ag := m.types[typ]
	if ag == nil || ag.Commands[name] == nil {
		writeJSON(w, http.StatusNotFound, errBody{Error: fmt.Sprintf("no command %q on aggregate type %q", name, typ), Field: "name"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errBody{Error: err.Error(), Field: "body"})
		return
	}
	var cmd any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &cmd); err != nil {
			writeJSON(w, http.StatusBadRequest, errBody{Error: "command body is not JSON: " + err.Error(), Field: "body"})
			return
		}
	}
	d := bloblangDecider(ag, typ, id, name)
	if ev := r.URL.Query().Get("expectedVersion"); ev != "" {
		want, err := strconv.ParseUint(ev, 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errBody{Error: "want a version number", Field: "expectedVersion"})
			return
		}
		decide := d.Decide
		count := uint64(0)
		evolve := d.Evolve
		d.Evolve = func(s any, e event.Event) (any, error) { count++; return evolve(s, e) }
		d.Decide = func(s any, c any) ([]event.Event, error) {
			if count != want {
				return nil, &ConflictError{Expected: want, Current: count}
			}
			return decide(s, c)
		}
	}
	res, err := Handle(r.Context(), m.store, typ, id, cmd, d)
	if err != nil {
		m.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"type": typ, "id": id, "version": res.Version, "state": res.State, "events": res.Events})
}

func (m *Module) get(w http.ResponseWriter, r *http.Request) {
	typ, id, ok := m.path(w, r)
	if !ok {
		return
	}
	hist, err := m.store.History(r.Context(), typ, id)
	if err != nil {
		m.writeErr(w, err)
		return
	}
	if len(hist) == 0 {
		writeJSON(w, http.StatusNotFound, errBody{Error: fmt.Sprintf("aggregate %s/%s has no events", typ, id), Field: "id"})
		return
	}
	d := bloblangDecider(m.types[typ], typ, id, "")
	var state any
	for _, e := range hist {
		if state, err = d.Evolve(state, e); err != nil {
			m.writeErr(w, err)
			return
		}
	}
	out := map[string]any{"type": typ, "id": id, "version": len(hist), "state": state}
	if r.URL.Query().Get("events") == "1" {
		out["events"] = hist
	}
	writeJSON(w, http.StatusOK, out)
}
