package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/reply"
)

// Follow opens the spec store, compiles the graph as it is now and starts
// watching API changes: what a module running graph nodes does first.
func Follow(ctx context.Context, b *bus.Bus, base *config.Config) (*Store, *Graph, <-chan Change, error) {
	store, err := OpenStore(ctx, b, base)
	if err != nil {
		return nil, nil, nil, err
	}
	g, err := store.Graph(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("graph: %w", err)
	}
	changes, err := store.Watch(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	return store, g, changes, nil
}

// PutHandler serves PUT /api/v1/<kind>s/{name}: the body is the node as in
// ops.yaml (YAML or JSON); put checks it against the whole graph and stores it.
// allow, when set, may refuse the node for the caller (a processor whose
// output is on a reserved event domain needs that domain's permission).
func PutHandler[T any](kind string, store func() *Store, name func(*T) *string,
	put func(s *Store, ctx context.Context, node T) (bool, error), allow func(r *http.Request, node *T) *reply.ErrorBody) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := store()
		if s == nil {
			reply.Error(w, http.StatusServiceUnavailable, "", "starting")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 256<<10))
		if err != nil {
			reply.Error(w, http.StatusRequestEntityTooLarge, "body", err.Error())
			return
		}
		var node T
		if err := config.DecodeYAML(body, &node, ""); err != nil {
			writeSpecErr(w, err)
			return
		}
		n := name(&node)
		if *n == "" {
			*n = r.PathValue("name")
		}
		if *n != r.PathValue("name") {
			reply.Error(w, http.StatusBadRequest, "name", "name in the body differs from the path")
			return
		}
		if allow != nil {
			if e := allow(r, &node); e != nil {
				reply.Error(w, http.StatusForbidden, e.Field, e.Error)
				return
			}
		}
		created, err := put(s, r.Context(), node)
		switch {
		case errors.Is(err, ErrReadOnly):
			reply.Error(w, http.StatusConflict, "name", err.Error())
		case errors.Is(err, bus.ErrUnavailable):
			reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		case err != nil:
			writeSpecErr(w, err)
		case created:
			reply.JSON(w, http.StatusCreated, map[string]any{kind: *n, "created": true})
		default:
			reply.JSON(w, http.StatusOK, map[string]any{kind: *n, "created": false})
		}
	}
}

// DeleteHandler serves DELETE /api/v1/<kind>s/{name}.
func DeleteHandler(kind string, store func() *Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := store()
		if s == nil {
			reply.Error(w, http.StatusServiceUnavailable, "", "starting")
			return
		}
		err := s.Delete(r.Context(), kind, r.PathValue("name"))
		switch {
		case errors.Is(err, ErrReadOnly):
			reply.Error(w, http.StatusConflict, "name", err.Error())
		case errors.Is(err, ErrNotFound):
			reply.Error(w, http.StatusNotFound, "name", fmt.Sprintf("no %s %s created through the API", kind, r.PathValue("name")))
		case err != nil:
			reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

// writeSpecErr answers 400 naming the first config error's path.
func writeSpecErr(w http.ResponseWriter, err error) {
	field := ""
	var errs config.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		field = errs[0].Path
	}
	reply.Error(w, http.StatusBadRequest, field, err.Error())
}
