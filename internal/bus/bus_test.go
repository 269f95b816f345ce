package bus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/testutil"
)

func openBus(t *testing.T, dir string, mod func(*config.Bus)) *bus.Bus {
	t.Helper()
	c := config.Default().Bus
	if mod != nil {
		mod(&c)
	}
	b, err := bus.Open(context.Background(), bus.Options{Config: c, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mkEvents(n int, typ string) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		e, _ := event.New("/test", typ, map[string]int{"i": i})
		out[i] = e
	}
	return out
}

func readAll(t *testing.T, b *bus.Bus, filter string) []bus.Stored {
	t.Helper()
	var all []bus.Stored
	pos := bus.Position{}
	for {
		evs, next, err := b.Read(context.Background(), bus.ReadOptions{Filter: filter, Start: pos, Limit: 333})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
		if len(evs) == 0 {
			return all
		}
		pos = next
	}
}

func modes(t *testing.T) map[string]func(*config.Bus) {
	url := testutil.NATSServer(t)
	return map[string]func(*config.Bus){
		"embedded": nil,
		"external": func(c *config.Bus) { c.URL = url },
	}
}

func TestPublishReadDedup(t *testing.T) {
	for name, mod := range modes(t) {
		t.Run(name, func(t *testing.T) {
			b := openBus(t, t.TempDir(), mod)
			defer b.Close()
			ctx := context.Background()
			evs := append(mkEvents(150, "track.page"), mkEvents(50, "track.click")...)
			acks, err := b.Publish(ctx, evs)
			if err != nil {
				t.Fatal(err)
			}
			for i, a := range acks {
				if a.Duplicate || a.Position.Seq == 0 || a.ID != evs[i].ID {
					t.Fatalf("ack %d: %+v", i, a)
				}
			}
			// Two subjects, so two messages: one fsync round per subject.
			if acks[0].Position.Seq == acks[199].Position.Seq {
				t.Fatal("different subjects share a message")
			}
			// The same ids again, re-batched with a new event: only the new one is stored.
			again := append([]event.Event{mkEvents(1, "track.page")[0]}, evs[10], evs[160], evs[10])
			acks2, err := b.Publish(ctx, again)
			if err != nil {
				t.Fatal(err)
			}
			if acks2[0].Duplicate || !acks2[1].Duplicate || !acks2[2].Duplicate || !acks2[3].Duplicate {
				t.Fatalf("dup flags: %+v", acks2)
			}
			if acks2[1].Position != acks[10].Position || acks2[2].Position != acks[160].Position {
				t.Fatalf("duplicate positions %v %v, want %v %v", acks2[1].Position, acks2[2].Position, acks[10].Position, acks[160].Position)
			}
			all := readAll(t, b, bus.EventsFilter)
			if len(all) != 201 {
				t.Fatalf("read %d events, want 201", len(all))
			}
			seen := map[string]bool{}
			for _, s := range all {
				if seen[s.Event.ID] {
					t.Fatalf("duplicate %s", s.Event.ID)
				}
				seen[s.Event.ID] = true
			}
			clicks := readAll(t, b, "ev.track.click")
			if len(clicks) != 50 || clicks[0].Event.ID != evs[150].ID {
				t.Fatalf("filter: %d events", len(clicks))
			}
		})
	}
}

func TestReadPaging(t *testing.T) {
	b := openBus(t, t.TempDir(), nil)
	defer b.Close()
	evs := mkEvents(10, "a.b")
	if _, err := b.Publish(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	got, next, err := b.Read(context.Background(), bus.ReadOptions{Filter: "ev.>", Limit: 4})
	if err != nil || len(got) != 4 || next.String() != "1:4" {
		t.Fatalf("page 1: %d %v %v", len(got), next, err)
	}
	got, next, err = b.Read(context.Background(), bus.ReadOptions{Filter: "ev.>", Start: next, Limit: 100})
	if err != nil || len(got) != 6 || got[0].Event.ID != evs[4].ID || next.String() != "2" {
		t.Fatalf("page 2: %d %v %v", len(got), next, err)
	}
	got, _, err = b.Read(context.Background(), bus.ReadOptions{Filter: "ev.>", Start: next, Limit: 100})
	if err != nil || len(got) != 0 {
		t.Fatalf("page 3: %d %v", len(got), err)
	}
}

func TestDedupSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b := openBus(t, dir, nil)
	evs := mkEvents(20, "a.b")
	acks, err := b.Publish(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = openBus(t, dir, nil)
	defer b.Close()
	// A different batch shape, so JetStream's message id does not match:
	// only the rebuilt in-memory window can catch these.
	acks2, err := b.Publish(context.Background(), []event.Event{evs[3], evs[7]})
	if err != nil {
		t.Fatal(err)
	}
	if !acks2[0].Duplicate || acks2[0].Position != acks[3].Position || !acks2[1].Duplicate {
		t.Fatalf("after restart: %+v", acks2)
	}
	if n := len(readAll(t, b, "ev.>")); n != 20 {
		t.Fatalf("%d events", n)
	}
}

func TestConcurrentSameIDs(t *testing.T) {
	b := openBus(t, t.TempDir(), nil)
	defer b.Close()
	evs := mkEvents(100, "a.b")
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			// Each goroutine sends an overlapping, differently ordered slice.
			part := append([]event.Event{}, evs[g*10:]...)
			part = append(part, evs[:g*10]...)
			_, err := b.Publish(context.Background(), part)
			errs <- err
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(readAll(t, b, "ev.>")); n != 100 {
		t.Fatalf("stored %d, want 100", n)
	}
}

func TestTail(t *testing.T) {
	b := openBus(t, t.TempDir(), nil)
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan bus.Stored, 100)
	go func() {
		_ = b.Tail(ctx, bus.ReadOptions{Filter: "ev.x.>"}, func(s bus.Stored) error { got <- s; return nil })
	}()
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if _, err := b.Publish(ctx, mkEvents(1, "x.y")); err != nil {
			return err
		}
		select {
		case <-got:
			return nil
		default:
			return fmt.Errorf("nothing tailed yet")
		}
	})
	if _, err := b.Publish(ctx, mkEvents(1, "other.y")); err != nil {
		t.Fatal(err)
	}
	evs := mkEvents(3, "x.z")
	if _, err := b.Publish(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; {
		s := <-got
		if s.Subject != "ev.x.z" {
			continue // leftovers from the probe above
		}
		if s.Event.ID != evs[i].ID {
			t.Fatalf("tail order: got %s want %s", s.Event.ID, evs[i].ID)
		}
		i++
	}
	// The tail's consumer goes away with it.
	cancel()
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		st, err := b.Streams(context.Background())
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Name == bus.EventsStream && s.Consumers != 0 {
				return fmt.Errorf("%d consumers left", s.Consumers)
			}
		}
		return nil
	})
}

// A publish larger than one bus message is split into several, in order.
func TestPublishSplitsLargeRequests(t *testing.T) {
	b := openBus(t, t.TempDir(), func(c *config.Bus) { c.MaxPayload = 128 << 10 })
	defer b.Close()
	evs := make([]event.Event, 200)
	for i := range evs {
		e, _ := event.New("/big", "big.x", map[string]string{"pad": strings.Repeat("x", 2000), "i": fmt.Sprint(i)})
		evs[i] = e
	}
	acks, err := b.Publish(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	msgs := map[uint64]bool{}
	for _, a := range acks {
		msgs[a.Position.Seq] = true
	}
	if len(msgs) < 3 {
		t.Fatalf("400 KB went into %d messages", len(msgs))
	}
	all := readAll(t, b, "ev.big.>")
	if len(all) != 200 {
		t.Fatalf("read %d", len(all))
	}
	for i, s := range all {
		if s.Event.ID != evs[i].ID || s.Position != acks[i].Position {
			t.Fatalf("event %d out of place: %v vs %v", i, s.Position, acks[i].Position)
		}
	}
}

// bus.listen opens a client port: an ordinary NATS client (as the nats CLI or
// another Ops node would) can read the same streams.
func TestListenAndHandles(t *testing.T) {
	b := openBus(t, t.TempDir(), func(c *config.Bus) { c.Listen = "127.0.0.1:0" })
	defer b.Close()
	url := b.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("client url %q", url)
	}
	ctx := context.Background()
	if _, err := b.Publish(ctx, mkEvents(3, "net.x")); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, bus.EventsStream)
	if err != nil || st.CachedInfo().State.Msgs != 1 {
		t.Fatalf("stream over the socket: %v", err)
	}

	kv, err := b.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "VIEW_test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// Opening again is idempotent and keeps the data.
	kv, err = b.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "VIEW_test"})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("kv get: %v", err)
	}
	obj, err := b.ObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "BLOBS"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutBytes(ctx, "x", []byte("blob")); err != nil {
		t.Fatal(err)
	}
	c, err := b.Durable(ctx, bus.EventsStream, jetstream.ConsumerConfig{Durable: "test-proc", FilterSubject: "ev.net.>", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		evs, err := event.Decode(m.Data())
		if err != nil || len(evs) != 3 {
			t.Fatalf("durable consumer got %d events: %v", len(evs), err)
		}
		_ = m.Ack()
	}
	if _, err := b.Durable(ctx, bus.EventsStream, jetstream.ConsumerConfig{}); err == nil {
		t.Fatal("durable without a name accepted")
	}
}
