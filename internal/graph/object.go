package graph

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/redpanda-data/benthos/v4/public/bloblang"

	"github.com/opsgraph/ops/internal/event"
)

// Object is the value Bloblang sees as `this`: the event in its CloudEvents
// JSON shape, with data decoded (numbers are float64).
func Object(e *event.Event) (map[string]any, error) {
	m := make(map[string]any, 8+len(e.Extensions))
	for k, v := range e.Extensions {
		m[k] = v
	}
	m["specversion"], m["id"], m["source"], m["type"] = e.SpecVersion, e.ID, e.Source, e.Type
	if e.Subject != "" {
		m["subject"] = e.Subject
	}
	if !e.Time.IsZero() {
		m["time"] = e.Time.Format(time.RFC3339Nano)
	}
	if e.DataContentType != "" {
		m["datacontenttype"] = e.DataContentType
	}
	if len(e.Data) > 0 {
		var d any
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		m["data"] = d
	} else if e.DataBase64 != "" {
		m["data_base64"] = e.DataBase64
	}
	return m, nil
}

// Bool runs a where expression; a nil expression passes everything.
func Bool(exe *bloblang.Executor, obj any) (bool, error) {
	if exe == nil {
		return true, nil
	}
	v, err := exe.Query(obj)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("where must give true or false, got %T", v)
	}
	return b, nil
}

// Merge is the default fold of entity state: the new value's top-level
// fields over the old ones when both are objects; otherwise the new value.
func Merge(old, nu any) any {
	o, ok1 := old.(map[string]any)
	n, ok2 := nu.(map[string]any)
	if !ok1 || !ok2 {
		return nu
	}
	out := make(map[string]any, len(o)+len(n))
	for k, v := range o {
		out[k] = v
	}
	for k, v := range n {
		out[k] = v
	}
	return out
}
