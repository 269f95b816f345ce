package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
)

// Deps are what the analytics module needs.
type Deps struct {
	Bus    *bus.Bus
	Logger *slog.Logger
	// Handle mounts the report routes with the permission they need.
	Handle func(pattern, perm string, h http.Handler)
	// SMTP sends the e-mail reports.
	SMTP config.SMTP
}

// Module folds tracking events into the store and serves the reports.
type Module struct {
	cfg   config.Analytics
	deps  Deps
	log   *slog.Logger
	store *Store
	// last is the stream's last sequence when the module started, for the
	// progress of the replay.
	last     atomic.Uint64
	caughtUp atomic.Bool
	skipped  atomic.Uint64 // events that could not be read
	goals    []Goal
	funnels  map[string]funnel
	shares   *shares
}

// funnel is a configured funnel, parsed.
type funnel struct {
	steps  []Goal
	window time.Duration
}

// defaultWindow is a funnel's when none is given.
const defaultWindow = 7 * 24 * time.Hour

// maxWindow bounds a funnel's window.
const maxWindow = 90 * 24 * time.Hour

// Subject is what the module reads; ProxySubject too with
// analytics.proxy_pageviews.
const (
	Subject      = "ev.track.>"
	ProxySubject = "ev.proxy.request"
)

// New prepares the module; the store fills when it runs.
func New(cfg config.Analytics, deps Deps) (*Module, error) {
	if deps.Bus == nil {
		return nil, errors.New("analytics needs the bus")
	}
	m := &Module{cfg: cfg, deps: deps, log: deps.Logger, store: NewStore(cfg.SessionTimeout.D()), funnels: map[string]funnel{}}
	m.shares = &shares{m: m}
	for i, g := range cfg.Goals {
		goal, err := ParseGoal(g)
		if err != nil {
			return nil, fmt.Errorf("analytics.goals[%d]: %w", i, err)
		}
		m.goals = append(m.goals, goal)
	}
	for i, f := range cfg.Funnels {
		at := fmt.Sprintf("analytics.funnels[%d]", i)
		switch {
		case f.Name == "":
			return nil, fmt.Errorf("%s.name: required", at)
		case len(f.Steps) < 2 || len(f.Steps) > maxSteps:
			return nil, fmt.Errorf("%s.steps: want 2 to %d steps, got %d", at, maxSteps, len(f.Steps))
		case f.Window.D() < 0 || f.Window.D() > maxWindow:
			return nil, fmt.Errorf("%s.window: want up to %s", at, maxWindow)
		}
		if _, dup := m.funnels[f.Name]; dup {
			return nil, fmt.Errorf("%s.name: %q is taken", at, f.Name)
		}
		fn := funnel{window: f.Window.D()}
		if fn.window == 0 {
			fn.window = defaultWindow
		}
		for j, st := range f.Steps {
			g, err := ParseGoal(st)
			if err != nil {
				return nil, fmt.Errorf("%s.steps[%d]: %w", at, j, err)
			}
			fn.steps = append(fn.steps, g)
		}
		m.funnels[f.Name] = fn
	}
	if deps.Handle != nil {
		m.mount(deps.Handle)
	}
	return m, nil
}

// Store is the module's store (for tests and benchmarks).
func (m *Module) Store() *Store { return m.store }

// Run replays every tracking event into the store, then follows new ones,
// until ctx ends. It is ready at once: reports say how far the replay is
// (GET /api/v1/analytics/status).
func (m *Module) Run(ctx context.Context, ready func()) error {
	js := m.deps.Bus.JetStream()
	if st, err := js.Stream(ctx, bus.EventsStream); err == nil {
		m.last.Store(st.CachedInfo().State.LastSeq)
	}
	ready()
	go m.schedule(ctx)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := m.follow(ctx, js)
		if ctx.Err() != nil {
			return nil
		}
		m.log.Warn("analytics consumer stopped; resuming", "err", err, "from_seq", m.store.seq+1)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

// follow reads from the position after the last folded event until ctx
// ends or the consumer fails.
func (m *Module) follow(ctx context.Context, js jetstream.JetStream) error {
	subjects := []string{Subject}
	if m.cfg.ProxyPageviews {
		subjects = append(subjects, ProxySubject)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, InactiveThreshold: 30 * time.Second,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: m.store.seq + 1}
	cons, err := js.OrderedConsumer(ctx, bus.EventsStream, cfg)
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if info := cons.CachedInfo(); info != nil {
			_ = js.DeleteConsumer(dctx, bus.EventsStream, info.Name)
		}
	}()
	pruned := time.Now()
	for ctx.Err() == nil {
		// What is pending now at once; when nothing is, the next message
		// as soon as it comes (a plain Fetch would hold it until the batch
		// filled or the wait ended).
		msgs, err := bus.FetchBatch(cons, 512, time.Second)
		if err != nil {
			return err
		}
		var hits []*hit
		var seq, pending uint64
		n := len(msgs)
		for _, msg := range msgs {
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			seq, pending = md.Sequence.Stream, md.NumPending
			evs, err := event.Decode(msg.Data())
			if err != nil {
				m.skipped.Add(1)
				continue
			}
			for i := range evs {
				parse := parseHit
				if evs[i].Type == "proxy.request" {
					parse = parseProxyHit
				}
				h, err := parse(&evs[i])
				if errors.Is(err, errSkip) {
					continue
				}
				if err != nil {
					m.skipped.Add(1)
					continue
				}
				hits = append(hits, h)
			}
		}
		if n > 0 {
			m.store.mu.Lock()
			for _, h := range hits {
				m.store.add(h)
			}
			if seq > 0 {
				m.store.seq = seq
			}
			if time.Since(pruned) > time.Minute {
				m.store.prune()
				pruned = time.Now()
			}
			m.store.mu.Unlock()
		}
		if pending == 0 && !m.caughtUp.Load() && (n == 0 || seq >= m.last.Load()) {
			m.caughtUp.Store(true)
			st := m.store.Stats()
			m.log.Info("analytics caught up", "events", st.Events, "visits", st.Visits, "seq", st.Seq)
		}
	}
	return ctx.Err()
}

// Status is GET /api/v1/analytics/status.
type Status struct {
	Events   int     `json:"events"`
	Visits   int     `json:"visits"`
	Days     int     `json:"days"`
	Seq      uint64  `json:"seq"`
	CaughtUp bool    `json:"caught_up"`
	Progress float64 `json:"progress"` // of the replay at start, 0 to 1
	Skipped  uint64  `json:"skipped"`  // events that could not be read
}

func (m *Module) status() Status {
	st := m.store.Stats()
	s := Status{Events: st.Events, Visits: st.Visits, Days: st.Days, Seq: st.Seq, CaughtUp: m.caughtUp.Load(), Skipped: m.skipped.Load(), Progress: 1}
	if last := m.last.Load(); !s.CaughtUp && last > 0 {
		s.Progress = min(1, float64(st.Seq)/float64(last))
	}
	return s
}

func (s Status) String() string { return fmt.Sprintf("%d events, %d visits", s.Events, s.Visits) }
