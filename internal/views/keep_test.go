package views

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/graph"
)

// keep deletes windowed rows whose window ended longer ago than keep, and
// says so with ev.view.<name>.deleted events.
func TestKeepDeletesOldWindows(t *testing.T) {
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Options{Config: config.Default().Bus, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := config.Parse([]byte("views:\n  - name: v\n    from: ev.k.>\n    key: '\"all\"'\n    window: 1h\n    keep: 2h\n    measures: {n: count}\n"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := graph.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(g.Views[0], b, slog.New(slog.DiscardHandler), newMetrics(nil), 0, false)
	if err := r.open(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var evs []event.Event
	for _, at := range []time.Time{now.Add(-5 * time.Hour), now.Add(-4 * time.Hour), now.Add(-30 * time.Minute), now} {
		e, _ := event.New("/t", "k.x", nil)
		e.Time = at
		evs = append(evs, e)
	}
	if _, err := b.Publish(ctx, evs); err != nil {
		t.Fatal(err)
	}
	msgs, err := bus.FetchBatch(r.cons, BatchSize, time.Second)
	if err != nil || len(msgs) == 0 {
		t.Fatalf("fetch: %v", err)
	}
	if err := r.run.Batch(ctx, r.cons, msgs); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		_ = r.scan(ctx, Query{}, func(*row) error { n++; return nil })
		return n
	}
	before := count()
	if err := r.expire(ctx, now); err != nil {
		t.Fatal(err)
	}
	after := count()
	if before < 3 || after > 2 || before-after != 2 {
		t.Fatalf("rows %d -> %d", before, after)
	}
	got, _, err := b.Read(ctx, bus.ReadOptions{Filter: "ev.view.v.deleted", Limit: 10})
	if err != nil || len(got) != 2 {
		t.Fatalf("deleted events: %d %v", len(got), err)
	}
	var d ChangeData
	_ = json.Unmarshal(got[0].Event.Data, &d)
	if d.New != nil || d.Old["n"] != 1.0 || d.Window == nil {
		t.Fatalf("deleted event %+v", d)
	}
}
