package graph

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/reply"
)

// The editor's preview: a processor or view as the API would take it,
// run over a sample of recent events from its from: subjects, with
// nothing stored and nothing published.

// PreviewLimit is the largest sample a preview takes.
const PreviewLimit = 200

// PreviewItem is what one sample event became.
type PreviewItem struct {
	Seq     uint64         `json:"seq"`
	Subject string         `json:"subject"`
	Input   any            `json:"input"`             // the event's data
	Skipped bool           `json:"skipped,omitempty"` // where: was false, or the mapping deleted the root
	Output  any            `json:"output,omitempty"`  // processor: the output data
	To      string         `json:"to,omitempty"`      // processor: the output subject
	Key     map[string]any `json:"key,omitempty"`     // view: the key
	Window  string         `json:"window,omitempty"`  // view: the window start
	Values  map[string]any `json:"values,omitempty"`  // view: each measure's input
	Stage   string         `json:"stage,omitempty"`   // where it failed: decode, where, use, map, to, key, measures
	Error   string         `json:"error,omitempty"`
}

// CanPreview refuses a preview to a caller who may not read events (a
// preview shows stored ones); allowed nil refuses everyone.
func CanPreview(w http.ResponseWriter, r *http.Request, allowed func(*http.Request, string) bool) bool {
	if allowed == nil || !allowed(r, "events:read") {
		reply.Error(w, http.StatusForbidden, "role", "a preview shows stored events: it needs events:read too")
		return false
	}
	return true
}

// DecodePreview reads a node from a preview request's body (YAML or JSON,
// as ops.yaml and PUT take it) and the sample size (?limit=, default 20);
// it writes the error itself.
func DecodePreview[T any](w http.ResponseWriter, r *http.Request, node *T) (int, bool) {
	n := 20
	if s := r.URL.Query().Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > PreviewLimit {
			reply.Error(w, http.StatusBadRequest, "limit", fmt.Sprintf("want 1 to %d, got %q", PreviewLimit, s))
			return 0, false
		}
		n = v
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 256<<10))
	if err != nil {
		reply.Error(w, http.StatusRequestEntityTooLarge, "body", err.Error())
		return 0, false
	}
	if err := config.DecodeYAML(body, node, ""); err != nil {
		writeSpecErr(w, err)
		return 0, false
	}
	return n, true
}

// CompileOne checks a node alone, as the graph check would (its name may
// be left out: the preview needs none).
func CompileOne(w http.ResponseWriter, c *config.Config) (*Graph, bool) {
	for i := range c.Processors {
		if c.Processors[i].Name == "" {
			c.Processors[i].Name = "preview"
		}
	}
	for i := range c.Views {
		if c.Views[i].Name == "" {
			c.Views[i].Name = "preview"
		}
	}
	g, err := Compile(c)
	if err != nil {
		// The body is one node: name its fields as the body does
		// (map, not processors[0].map).
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				for _, p := range []string{"processors[0].", "views[0]."} {
					e.Path = strings.TrimPrefix(e.Path, p)
				}
			}
		}
		writeSpecErr(w, err)
		return nil, false
	}
	return g, true
}

// Sample is up to n of the latest events on any of from, oldest first.
func Sample(ctx context.Context, b *bus.Bus, from []string, n int) ([]bus.Stored, error) {
	var all []bus.Stored
	for _, f := range from {
		got, err := b.Recent(ctx, f, n)
		if err != nil {
			return nil, err
		}
		all = append(all, got...)
	}
	slices.SortFunc(all, func(a, b bus.Stored) int {
		if c := cmp.Compare(a.Position.Seq, b.Position.Seq); c != 0 {
			return c
		}
		return cmp.Compare(a.Position.Index, b.Position.Index)
	})
	all = slices.CompactFunc(all, func(a, b bus.Stored) bool { return a.Position == b.Position })
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all, nil
}

// NewItem starts a preview item for a sample event.
func NewItem(s bus.Stored) PreviewItem {
	return PreviewItem{Seq: s.Position.Seq, Subject: s.Subject, Input: dataOf(&s.Event)}
}

func dataOf(e *event.Event) any {
	obj, err := Object(e)
	if err != nil {
		return string(e.Data)
	}
	return obj["data"]
}
