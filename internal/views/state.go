package views

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/axiomhq/hyperloglog"
	"github.com/redpanda-data/benthos/v4/public/bloblang"

	"github.com/opsgraph/ops/internal/graph"
)

// row is the stored state of one view row.
type row struct {
	Key     []any              `json:"k"`           // key values, in the view's key order
	Window  int64              `json:"w,omitempty"` // window start, Unix seconds
	M       map[string]*mstate `json:"m"`
	Seq     uint64             `json:"seq"` // position of the last applied event
	Idx     int                `json:"idx"`
	Updated time.Time          `json:"t"`
}

// mstate is the running state of one measure.
type mstate struct {
	N   float64 `json:"n,omitempty"` // count, sum, or avg's count
	S   float64 `json:"s,omitempty"` // avg's sum
	V   any     `json:"v,omitempty"` // min, max, last, latest
	Set bool    `json:"set,omitempty"`
	H   []byte  `json:"h,omitempty"` // uniq: HyperLogLog sketch, as stored

	sk *hyperloglog.Sketch // uniq: the decoded sketch while the row is in memory
}

// sketch returns the decoded HyperLogLog sketch, decoding H once.
func (ms *mstate) sketch() (*hyperloglog.Sketch, error) {
	if ms.sk != nil {
		return ms.sk, nil
	}
	sk := hyperloglog.New14()
	if len(ms.H) > 0 {
		if err := sk.UnmarshalBinary(ms.H); err != nil {
			return nil, fmt.Errorf("stored sketch: %w", err)
		}
	}
	ms.sk = sk
	return sk, nil
}

// encode brings H up to date with the in-memory sketches before storing.
func (r *row) encode() error {
	for _, ms := range r.M {
		if ms.sk != nil {
			b, err := ms.sk.MarshalBinary()
			if err != nil {
				return err
			}
			ms.H = b
		}
	}
	return nil
}

func (r *row) applied(seq uint64, idx int) bool {
	return seq < r.Seq || seq == r.Seq && idx <= r.Idx
}

func (r *row) clone() *row {
	if r == nil {
		return nil
	}
	c := *r
	c.M = make(map[string]*mstate, len(r.M))
	for k, v := range r.M {
		mv := *v
		if v.sk != nil {
			mv.sk = v.sk.Clone()
		}
		c.M[k] = &mv
	}
	return &c
}

// rowKey is the KV key of a row: the window start and the key values. Keys
// must be NATS subject tokens, so values are base64url; very long keys are
// hashed (the row keeps the values).
func rowKey(window int64, key []any) string {
	b, _ := json.Marshal(key)
	enc := base64.RawURLEncoding.EncodeToString(b)
	if len(enc) > 200 {
		h := sha256.Sum256(b)
		enc = "h" + hex.EncodeToString(h[:])
	}
	if window != 0 {
		return "w" + strconv.FormatInt(window, 10) + "." + enc
	}
	return "k." + enc
}

// keyValue keeps key values to what JSON and CSV render plainly.
func keyValue(v any) any {
	switch x := v.(type) {
	case nil, string, bool, float64:
		return x
	case int64:
		return float64(x)
	case int:
		return float64(x)
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return bloblang.ValueToString(v)
}

func number(v any) (float64, error) {
	f, err := bloblang.ValueAsFloat64(v)
	if err != nil {
		return 0, fmt.Errorf("want a number, got %T", v)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("want a finite number")
	}
	return f, nil
}

// less orders two min/max values: numbers numerically, strings (timestamps
// in RFC 3339 sort right) lexically; mixed kinds are an error.
func less(a, b any) (bool, error) {
	switch x := a.(type) {
	case float64:
		if y, ok := b.(float64); ok {
			return x < y, nil
		}
	case string:
		if y, ok := b.(string); ok {
			return x < y, nil
		}
	}
	return false, fmt.Errorf("cannot compare %T with %T", a, b)
}

// inputs are the values one event contributes, computed before anything is
// applied so a failing measure leaves the row untouched.
type inputs []any

func compute(v *graph.View, obj map[string]any, old *row) (inputs, error) {
	in := make(inputs, len(v.Measures))
	for i, m := range v.Measures {
		switch {
		case m.Kind == graph.Count:
		case m.Kind == graph.Latest && m.Expr == nil:
			in[i] = obj["data"]
		case m.Kind == graph.Latest:
			var st any
			if old != nil {
				if ms := old.M[m.Name]; ms != nil {
					st = ms.V
				}
			}
			res, err := m.Expr.Query(map[string]any{"state": st, "event": obj})
			if err != nil {
				if err == bloblang.ErrRootDeleted {
					in[i] = deleteRow{}
					continue
				}
				return nil, fmt.Errorf("measure %s: %w", m.Name, err)
			}
			in[i] = res
		default:
			val, err := m.Expr.Query(obj)
			if err != nil {
				return nil, fmt.Errorf("measure %s: %w", m.Name, err)
			}
			switch m.Kind {
			case graph.Sum, graph.Avg:
				f, err := number(val)
				if err != nil {
					return nil, fmt.Errorf("measure %s: %w", m.Name, err)
				}
				in[i] = f
			case graph.Min, graph.Max:
				if f, err := number(val); err == nil {
					in[i] = f
				} else if s, ok := val.(string); ok {
					in[i] = s
				} else {
					return nil, fmt.Errorf("measure %s: want a number or a string, got %T", m.Name, val)
				}
			case graph.Uniq:
				in[i] = bloblang.ValueToString(val)
			default:
				in[i] = keyValue(val)
			}
		}
	}
	return in, nil
}

// deleteRow is what a latest reducer returns with deleted(): the row goes.
type deleteRow struct{}

// apply folds one event's inputs into r; it reports whether the row is to
// be deleted. It checks everything that can fail before changing anything,
// so a failing event leaves the row as it was.
func apply(v *graph.View, r *row, in inputs) (bool, error) {
	for i, m := range v.Measures {
		ms := r.M[m.Name]
		switch {
		case ms == nil:
		case (m.Kind == graph.Min || m.Kind == graph.Max) && ms.Set:
			if _, err := less(in[i], ms.V); err != nil {
				return false, fmt.Errorf("measure %s: %w", m.Name, err)
			}
		case m.Kind == graph.Uniq:
			if _, err := ms.sketch(); err != nil {
				return false, fmt.Errorf("measure %s: %w", m.Name, err)
			}
		}
	}
	for i, m := range v.Measures {
		ms := r.M[m.Name]
		if ms == nil {
			ms = &mstate{}
			r.M[m.Name] = ms
		}
		switch m.Kind {
		case graph.Count:
			ms.N++
		case graph.Sum:
			ms.N += in[i].(float64)
		case graph.Avg:
			ms.N++
			ms.S += in[i].(float64)
		case graph.Min, graph.Max:
			if !ms.Set {
				ms.V, ms.Set = in[i], true
				continue
			}
			var lt bool
			var err error
			if m.Kind == graph.Min {
				lt, err = less(in[i], ms.V)
			} else {
				lt, err = less(ms.V, in[i])
			}
			if err != nil {
				return false, fmt.Errorf("measure %s: %w", m.Name, err)
			}
			if lt {
				ms.V = in[i]
			}
		case graph.Last:
			ms.V = in[i]
		case graph.Uniq:
			sk, err := ms.sketch()
			if err != nil {
				return false, fmt.Errorf("measure %s: %w", m.Name, err)
			}
			sk.Insert([]byte(in[i].(string)))
		case graph.Latest:
			if _, del := in[i].(deleteRow); del {
				return true, nil
			}
			if m.Expr == nil {
				ms.V = graph.Merge(ms.V, in[i])
			} else {
				ms.V = in[i]
			}
		}
	}
	return false, nil
}

// values renders a row's measures as users see them.
func values(v *graph.View, r *row) map[string]any {
	out := make(map[string]any, len(v.Measures))
	for _, m := range v.Measures {
		ms := r.M[m.Name]
		if ms == nil {
			out[m.Name] = nil
			continue
		}
		switch m.Kind {
		case graph.Count, graph.Sum:
			out[m.Name] = ms.N
		case graph.Avg:
			if ms.N == 0 {
				out[m.Name] = nil
			} else {
				out[m.Name] = ms.S / ms.N
			}
		case graph.Uniq:
			if sk, err := ms.sketch(); err != nil {
				out[m.Name] = nil
			} else {
				out[m.Name] = float64(sk.Estimate())
			}
		default:
			out[m.Name] = ms.V
		}
	}
	return out
}

// windowOf reads the window start out of a row's KV key.
func windowOf(key string) (int64, bool) {
	if len(key) < 2 || key[0] != 'w' {
		return 0, false
	}
	dot := strings.IndexByte(key, '.')
	if dot < 0 {
		return 0, false
	}
	w, err := strconv.ParseInt(key[1:dot], 10, 64)
	return w, err == nil
}
