package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/graph"
	"github.com/opsgraph/ops/internal/testutil"
)

func openBus(t *testing.T) *bus.Bus {
	t.Helper()
	c := config.Default().Bus
	b, err := bus.Open(context.Background(), bus.Options{Config: c, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestRunnerDeadLettersAndLag: a message that is not an Ops event goes to
// the node's dead letters (not acked away silently) and the rest is
// handled; the lag counts a batch in hand until it is acked.
func TestRunnerDeadLettersAndLag(t *testing.T) {
	b := openBus(t)
	ctx := context.Background()
	cons, err := b.Durable(ctx, bus.EventsStream, jetstream.ConsumerConfig{Durable: "proc_t", FilterSubjects: []string{"ev.t.>"},
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// Not JSON at all, straight onto the stream.
	if _, err := b.JetStream().PublishMsg(ctx, &nats.Msg{Subject: "ev.t.bad", Data: []byte("\x00 not an event")}); err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	for range 20 {
		e, _ := event.New("/t", "t.ok", map[string]int{"n": 1})
		evs = append(evs, e)
	}
	if _, err := b.Publish(ctx, evs); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var handled, undecodable atomic.Int64
	r := &graph.Runner{Name: "t", Bus: b, Log: slog.New(slog.DiscardHandler), Size: 1,
		Consumer: func() jetstream.Consumer { return cons },
		Reopen:   func(context.Context) error { return nil },
		Handle: func(ctx context.Context, batch *graph.Batch) error {
			for _, it := range batch.Items {
				handled.Add(int64(len(it.Events)))
			}
			undecodable.Add(int64(batch.Undecodable))
			<-release
			return batch.Ack(ctx)
		},
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.Run(rctx)
	// The first batch (the bad message) is in hand and not acked: it counts.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if undecodable.Load() != 1 {
			return errorf("undecodable %d", undecodable.Load())
		}
		if lag := r.Lag(ctx); lag != 2 { // the batch in hand, and the message with the 20 events
			return errorf("lag %d while a batch is in hand, want 2", lag)
		}
		return nil
	})
	close(release)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if handled.Load() != 20 || r.Lag(ctx) != 0 {
			return errorf("handled %d lag %d", handled.Load(), r.Lag(ctx))
		}
		return nil
	})
	// The dead letter says which message and why.
	got, _, err := b.Read(ctx, bus.ReadOptions{Filter: "ev.deadletter.t", Limit: 10})
	if err != nil || len(got) != 1 {
		t.Fatalf("dead letters: %v %d", err, len(got))
	}
	var d struct{ Node, Stage, Error string }
	_ = json.Unmarshal(got[0].Event.Data, &d)
	if d.Node != "t" || d.Stage != "decode" || d.Error == "" {
		t.Fatalf("dead letter %+v", d)
	}
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }
