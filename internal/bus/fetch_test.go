package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/event"
)

// TestBigBacklogKeepsTheConnection: a consumer far behind a stream of big
// messages (500 events of 1 KB each, as a busy collector's batches) reads
// them all in bounded fetches, and the shared in-process connection is
// never dropped as a slow consumer. Fetches of 512 messages asked the
// server for ~250 MB at once, past its 64 MB pending limit, and every
// publish failed while the connection came back.
func TestBigBacklogKeepsTheConnection(t *testing.T) {
	b := openBus(t, t.TempDir(), nil)
	defer b.Close()
	ctx := context.Background()
	data := map[string]string{"p": strings.Repeat("x", 1000)}
	const msgs, per = 240, 500
	for i := range msgs {
		evs := make([]event.Event, per)
		for j := range evs {
			evs[j], _ = event.New("/test", "big.page", data)
		}
		if _, err := b.Publish(ctx, evs); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	st, err := b.JetStream().Stream(ctx, bus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{FilterSubject: "ev.big.>", AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		t.Fatal(err)
	}
	got, fetches, biggest := 0, 0, 0
	deadline := time.Now().Add(2 * time.Minute)
	for got < msgs && time.Now().Before(deadline) {
		batch, err := bus.FetchBatch(cons, 512, time.Second)
		if err != nil {
			t.Fatalf("fetch after %d messages: %v", got, err)
		}
		size := 0
		for _, m := range batch {
			size += len(m.Data())
		}
		biggest = max(biggest, size)
		got += len(batch)
		fetches++
	}
	if got != msgs {
		t.Fatalf("read %d of %d messages", got, msgs)
	}
	if r := b.Conn().Stats().Reconnects; r != 0 {
		t.Fatalf("the connection was dropped %d times", r)
	}
	if biggest > 24<<20 {
		t.Fatalf("one fetch brought %d MB", biggest>>20)
	}
	t.Logf("%d messages (%d MB) in %d fetches, the biggest %d MB", got, got*per*1100>>20, fetches, biggest>>20)
}
