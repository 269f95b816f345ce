package cqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redpanda-data/benthos/v4/public/bloblang"

	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/graph"
)

// Decider is an aggregate's logic for Handle: Evolve folds an event into the
// state, Decide turns a command and the current state into new events (or
// refuses with an error).
type Decider[S, C any] struct {
	Initial S
	Evolve  func(state S, e event.Event) (S, error)
	Decide  func(state S, cmd C) ([]event.Event, error)
}

// Result is what a handled command produced.
type Result[S any] struct {
	Version uint64
	State   S
	Events  []event.Event
}

// Handle runs a command against an aggregate: it reads the history, folds it
// with Evolve, asks Decide for events and appends them at the version it
// read. A concurrent writer makes it fail with *ConflictError; the caller
// decides whether to retry. A Go service can embed the same thing as Ops's
// HTTP API does:
//
//	res, err := cqrs.Handle(ctx, store, "order", "o-1", PlaceOrder{...}, orderDecider)
func Handle[S, C any](ctx context.Context, s *Store, typ, id string, cmd C, d Decider[S, C]) (Result[S], error) {
	hist, err := s.History(ctx, typ, id)
	if err != nil {
		return Result[S]{}, err
	}
	state := d.Initial
	for _, e := range hist {
		if state, err = d.Evolve(state, e); err != nil {
			return Result[S]{}, fmt.Errorf("evolve %s: %w", e.ID, err)
		}
	}
	evs, err := d.Decide(state, cmd)
	if err != nil {
		return Result[S]{}, err
	}
	if len(evs) == 0 {
		return Result[S]{Version: uint64(len(hist)), State: state}, nil
	}
	v, err := s.Append(ctx, typ, id, uint64(len(hist)), evs)
	if err != nil {
		return Result[S]{}, err
	}
	for _, e := range evs {
		if state, err = d.Evolve(state, e); err != nil {
			return Result[S]{}, err
		}
	}
	return Result[S]{Version: v, State: state, Events: evs}, nil
}

// RejectedError is a command its check refused; the API answers 422.
type RejectedError struct{ Msg string }

func (e *RejectedError) Error() string { return e.Msg }

// bloblangDecider is the Decider of a configured aggregate type: state by
// its reducer (or merged data), checks and emits in Bloblang.
func bloblangDecider(ag *graph.Aggregate, typ, id string, cmdName string) Decider[any, any] {
	var cmd *graph.Command
	if ag != nil {
		cmd = ag.Commands[cmdName]
	}
	version := 0
	return Decider[any, any]{
		Evolve: func(state any, e event.Event) (any, error) {
			version++
			obj, err := graph.Object(&e)
			if err != nil {
				return nil, err
			}
			if ag == nil || ag.State == nil {
				return graph.Merge(state, obj["data"]), nil
			}
			return ag.State.Query(map[string]any{"state": state, "event": obj})
		},
		Decide: func(state any, c any) ([]event.Event, error) {
			if cmd == nil {
				return nil, fmt.Errorf("%w: no command %q on aggregate type %q", ErrInvalid, cmdName, typ)
			}
			in := map[string]any{"state": state, "command": c, "id": id, "version": version}
			if cmd.Check != nil {
				ok, err := cmd.Check.Query(in)
				if err != nil {
					return nil, &RejectedError{Msg: checkMessage(err)}
				}
				if b, isBool := ok.(bool); !isBool || !b {
					return nil, &RejectedError{Msg: fmt.Sprintf("command %s refused by its check", cmdName)}
				}
			}
			out, err := cmd.Emit.Query(in)
			if errors.Is(err, bloblang.ErrRootDeleted) {
				return nil, nil
			}
			if err != nil {
				return nil, &RejectedError{Msg: checkMessage(err)}
			}
			return emitted(out)
		},
	}
}

// checkMessage keeps the user's throw() text and drops Bloblang's prefix.
func checkMessage(err error) string {
	msg := err.Error()
	for _, p := range []string{"failed assignment (line 1): "} {
		if len(msg) > len(p) && msg[:len(p)] == p {
			return msg[len(p):]
		}
	}
	return msg
}

// emitted reads emit's result: {type, data} or a list of them.
func emitted(v any) ([]event.Event, error) {
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case map[string]any:
		items = []any{x}
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("emit must give {type, data} or a list of them, got %T", v)
	}
	out := make([]event.Event, 0, len(items))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("emit[%d]: want {type, data}", i)
		}
		typ, _ := m["type"].(string)
		if typ == "" {
			return nil, fmt.Errorf("emit[%d].type: required", i)
		}
		e := event.Event{Type: typ}
		if d, ok := m["data"]; ok {
			b, err := json.Marshal(d)
			if err != nil {
				return nil, fmt.Errorf("emit[%d].data: %w", i, err)
			}
			e.Data, e.DataContentType = b, "application/json"
		}
		out = append(out, e)
	}
	return out, nil
}
