package app

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/graph"
	"github.com/opsgraph/ops/internal/pipeline"
	"github.com/opsgraph/ops/internal/views"
)

// settler lets a refused login's consequences land before the next
// attempt is checked (identity.Deps.Settle): it waits until every
// consumer on the graph's way from ev.auth.failed to ev.policy.* (and the
// policy module's own) has processed the event, then what those wrote,
// round by round. Each node publishes its outputs before it acks its
// input and the policy module writes POLICY before it acks, so when a
// round finds nothing new the lock, if any, is in the bucket.
type settler struct {
	a *App

	mu   sync.Mutex
	at   time.Time
	cons []string
}

// settleFrom and settleTo are what the chain runs between.
const (
	settleFrom = "ev.auth.failed"
	settleTo   = "ev.policy.>"
)

// consumers are the durable consumers of the chain, from a graph read at
// most every few seconds (nodes come and go through the API).
func (s *settler) consumers(ctx context.Context, b *bus.Bus) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.at) < 3*time.Second {
		return s.cons
	}
	s.at, s.cons = time.Now(), nil
	store, err := graph.OpenStore(ctx, b, s.a.cfg)
	if err != nil {
		return nil
	}
	g, err := store.Graph(ctx)
	if err != nil {
		return nil
	}
	chain := g.Chain(settleFrom, settleTo)
	for _, n := range chain {
		switch n.Kind {
		case "processor":
			s.cons = append(s.cons, pipeline.ConsumerName(n.Name))
		case "view":
			s.cons = append(s.cons, views.LiveConsumer(ctx, b, n.Name))
		}
	}
	if len(s.cons) > 0 {
		s.cons = append(s.cons, "policy")
	}
	return s.cons
}

func (s *settler) settle(ctx context.Context, seq uint64) {
	b := s.a.Bus()
	if b == nil {
		return
	}
	cons := s.consumers(ctx, b)
	if len(cons) == 0 {
		return
	}
	js := b.JetStream()
	target := seq
	for round := 0; round <= len(cons); round++ {
		for _, name := range cons {
			if !waitConsumer(ctx, js, name, target) {
				return
			}
		}
		st, err := js.Stream(ctx, bus.EventsStream) // fetches the stream's info
		if err != nil {
			return
		}
		last := st.CachedInfo().State.LastSeq
		if last <= target {
			return // nothing new since: settled
		}
		target = last
	}
}

// waitConsumer polls consumer name until every message matching its
// filter up to stream sequence target is acknowledged; false when ctx
// ended first. A consumer that does not exist has nothing to wait for.
func waitConsumer(ctx context.Context, js jetstream.JetStream, name string, target uint64) bool {
	delay := 500 * time.Microsecond
	for {
		c, err := js.Consumer(ctx, bus.EventsStream, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return true
		}
		if err == nil {
			if info, err := c.Info(ctx); err == nil && consumed(info, target) {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// consumed reports whether a consumer has acknowledged every message its
// filter matches up to stream sequence target: its ack floor is past it,
// or nothing is outstanding and delivery (in stream order) is past it or
// has nothing left.
func consumed(info *jetstream.ConsumerInfo, target uint64) bool {
	if info.AckFloor.Stream >= target {
		return true
	}
	return info.NumAckPending == 0 && (info.NumPending == 0 || info.Delivered.Stream >= target)
}
