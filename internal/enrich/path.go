package enrich

import (
	"errors"
	"fmt"
	"strings"
)

// path is a dot path inside an event object, split once at construction so
// Enrich does not re-split it per event. Keys that contain a dot cannot be
// addressed; no field of the tracking spec has one.
type path []string

func parsePath(s string) (path, error) {
	if s == "" {
		return nil, errors.New("want a dot path such as data.context.ip, got \"\"")
	}
	p := strings.Split(s, ".")
	for _, seg := range p {
		if seg == "" {
			return nil, fmt.Errorf("want a dot path without empty parts, got %q", s)
		}
	}
	return p, nil
}

func (p path) String() string { return strings.Join(p, ".") }

// get returns the value at p; false when any step is missing or not an object.
func (p path) get(obj map[string]any) (any, bool) {
	m := obj
	for _, k := range p[:len(p)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil, false
		}
		m = next
	}
	v, ok := m[p[len(p)-1]]
	return v, ok
}

// getString returns the value at p if it is a string.
func (p path) getString(obj map[string]any) (string, bool) {
	v, ok := p.get(obj)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// set writes v at p, creating missing intermediate objects. A JSON null in
// the way is replaced, as it holds nothing; any other non-object in the way
// is an error, because overwriting it would destroy client data.
func (p path) set(obj map[string]any, v any) error {
	m := obj
	for i, k := range p[:len(p)-1] {
		switch next := m[k].(type) {
		case map[string]any:
			m = next
		case nil:
			n := make(map[string]any, 1)
			m[k] = n
			m = n
		default:
			return &FieldError{Field: p[:i+1].String(),
				Problem: fmt.Sprintf("want an object to write %s into, got %s", p, jsonType(next))}
		}
	}
	m[p[len(p)-1]] = v
	return nil
}

// del removes the value at p if it is there.
func (p path) del(obj map[string]any) {
	m := obj
	for _, k := range p[:len(p)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return
		}
		m = next
	}
	delete(m, p[len(p)-1])
}

// jsonType names a decoded JSON value's type for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64, int, int64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
