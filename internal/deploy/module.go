package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/cqrs"
	"github.com/opsgraph/ops/internal/event"
)

// Deps are what the deploy module needs.
type Deps struct {
	Bus      *bus.Bus
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Handle mounts the API routes with the permission they need.
	Handle func(pattern, perm string, h http.Handler)
	// Actor names who made a request (recorded_by).
	Actor func(*http.Request) string
}

// key is one service in one environment.
type key struct{ service, env string }

func (k key) String() string { return k.service + "/" + k.env }

// seen is the last heartbeat of one host.
type seen struct {
	Heartbeat
	at time.Time
}

// Module records deployments and heartbeats and answers from memory.
type Module struct {
	cfg   config.Deploy
	deps  Deps
	log   *slog.Logger
	store *cqrs.Store

	mu sync.RWMutex
	// changed is closed and replaced whenever the state moves, so a
	// request can wait until the state holds its own write.
	changed chan struct{}
	envs    map[key]*state
	folded  map[key]uint64 // aggregate events folded per service/env
	hosts   map[key]map[string]*seen
	hbSeq   uint64 // the last EVENTS sequence of heartbeats folded
	aggSeq  uint64 // the last AGG sequence folded

	blobsMu sync.Mutex
	blobs   jetstream.ObjectStore

	info     *prometheus.GaugeVec
	stamp    *prometheus.GaugeVec
	total    *prometheus.CounterVec
	infoSeen map[key][]string // the label values info and stamp hold now
}

// Subjects the module reads.
const (
	AggFilter        = "agg.deploy.>"
	HeartbeatSubject = "ev." + HeartbeatType
)

// New prepares the module.
func New(cfg config.Deploy, deps Deps) (*Module, error) {
	if deps.Bus == nil {
		return nil, errors.New("deploy needs the bus")
	}
	m := &Module{cfg: cfg, deps: deps, log: deps.Logger, store: cqrs.NewStore(deps.Bus),
		changed: make(chan struct{}), envs: map[key]*state{}, folded: map[key]uint64{}, hosts: map[key]map[string]*seen{},
		infoSeen: map[key][]string{}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ops_deploy_info",
		Help: "1 for the version that runs (the last succeeded deployment) per service and environment."}, []string{"service", "env", "version", "commit"})
	m.stamp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ops_deploy_timestamp_seconds",
		Help: "When the last deployment of a service and environment changed status (Grafana annotations read it)."}, []string{"service", "env", "version", "status"})
	m.total = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_deployments_total",
		Help: "Deployment status changes recorded, by service, environment and status."}, []string{"service", "env", "status"})
	if deps.Registry != nil {
		for _, c := range []prometheus.Collector{m.info, m.stamp, m.total, driftCollector{m}} {
			if err := deps.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("deploy metrics: %w", err)
			}
		}
	}
	if deps.Handle != nil {
		m.mount(deps.Handle)
	}
	return m, nil
}

// Run replays deployments (all of them) and heartbeats (those younger
// than forget_hosts_after), then follows both until ctx ends.
func (m *Module) Run(ctx context.Context, ready func()) error {
	ready()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); m.keep(ctx, "deployments", m.followAgg) }()
	go func() { defer wg.Done(); m.keep(ctx, "heartbeats", m.followHeartbeats) }()
	wg.Wait()
	return nil
}

// keep runs a follower again after it fails, with backoff, until ctx ends.
func (m *Module) keep(ctx context.Context, what string, follow func(context.Context) error) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := follow(ctx)
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("deploy consumer stopped; resuming", "what", what, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (m *Module) followAgg(ctx context.Context) error {
	m.mu.RLock()
	from := m.aggSeq + 1
	m.mu.RUnlock()
	cons, err := m.deps.Bus.JetStream().OrderedConsumer(ctx, bus.AggStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{AggFilter}, InactiveThreshold: 30 * time.Second,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return err
	}
	return m.consume(ctx, cons, func(subject string, seq uint64, evs []event.Event) {
		// agg.deploy.<service>.<env>
		parts := strings.Split(subject, ".")
		if len(parts) != 4 {
			return
		}
		k := key{parts[2], parts[3]}
		st := m.envs[k]
		if st == nil {
			st = &state{}
			m.envs[k] = st
		}
		for _, e := range evs {
			if err := st.fold(e); err != nil {
				m.log.Warn("deployment event skipped", "err", err, "seq", seq)
				continue
			}
			m.folded[k]++
			d := st.byID[mustID(e)]
			if d != nil {
				m.total.WithLabelValues(k.service, k.env, d.Status).Inc()
			}
		}
		m.aggSeq = seq
		m.setMetrics(k, st)
	})
}

// mustID is the deployment id an event names (the fold read it already).
func mustID(e event.Event) string {
	var d struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(e.Data, &d)
	return d.ID
}

func (m *Module) followHeartbeats(ctx context.Context) error {
	m.mu.RLock()
	from := m.hbSeq + 1
	m.mu.RUnlock()
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{HeartbeatSubject}, InactiveThreshold: 30 * time.Second}
	if from == 1 {
		start := time.Now().Add(-m.cfg.ForgetHostsAfter.D())
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	} else {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := m.deps.Bus.JetStream().OrderedConsumer(ctx, bus.EventsStream, cfg)
	if err != nil {
		return err
	}
	return m.consume(ctx, cons, func(_ string, seq uint64, evs []event.Event) {
		for _, e := range evs {
			var h Heartbeat
			if json.Unmarshal(e.Data, &h) != nil || h.check() != nil {
				continue
			}
			k := key{h.Service, h.Env}
			hs := m.hosts[k]
			if hs == nil {
				hs = map[string]*seen{}
				m.hosts[k] = hs
			}
			if old := hs[h.Host]; old == nil || !e.Time.Before(old.at) {
				hs[h.Host] = &seen{Heartbeat: h, at: e.Time}
			}
		}
		m.hbSeq = seq
	})
}

// consume fetches from cons and applies each message under the lock,
// waking requests that wait for the state to move.
func (m *Module) consume(ctx context.Context, cons jetstream.Consumer, apply func(subject string, seq uint64, evs []event.Event)) error {
	for ctx.Err() == nil {
		msgs, err := bus.FetchBatch(cons, 256, time.Second)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		m.mu.Lock()
		for _, msg := range msgs {
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			evs, err := event.Decode(msg.Data())
			if err != nil {
				m.log.Warn("undecodable message skipped", "subject", msg.Subject(), "seq", md.Sequence.Stream, "err", err)
				continue
			}
			apply(msg.Subject(), md.Sequence.Stream, evs)
		}
		close(m.changed)
		m.changed = make(chan struct{})
		m.mu.Unlock()
	}
	return ctx.Err()
}

// setMetrics points the info and timestamp series at k's latest state.
// Called with m.mu held.
func (m *Module) setMetrics(k key, st *state) {
	cur := st.current()
	last := st.latest()
	if old := m.infoSeen[k]; old != nil {
		m.info.DeleteLabelValues(old[0], old[1], old[2], old[3])
		m.stamp.DeleteLabelValues(old[0], old[1], old[4], old[5])
	}
	vals := []string{k.service, k.env, "", "", "", ""}
	if cur != nil {
		vals[2], vals[3] = cur.Version, cur.Commit
		m.info.WithLabelValues(vals[0], vals[1], vals[2], vals[3]).Set(1)
	}
	if last != nil {
		vals[4], vals[5] = last.Version, last.Status
		m.stamp.WithLabelValues(vals[0], vals[1], vals[4], vals[5]).Set(float64(last.Updated.UnixMilli()) / 1000)
	}
	if cur == nil {
		// Nothing live: drop the info series rather than keep a stale one.
		m.info.DeleteLabelValues(vals[0], vals[1], "", "")
	}
	m.infoSeen[k] = vals
}

// current is the deployment that runs: the last succeeded one recorded.
func (s *state) current() *Deployment {
	for i := len(s.order) - 1; i >= 0; i-- {
		if d := s.byID[s.order[i]]; d.Status == Succeeded {
			return d
		}
	}
	return nil
}

// desired is what hosts should run: the last deployment started or
// succeeded (a rollout in progress is already what is wanted).
func (s *state) desired() *Deployment {
	for i := len(s.order) - 1; i >= 0; i-- {
		if d := s.byID[s.order[i]]; d.live() {
			return d
		}
	}
	return nil
}

// latest is the deployment whose status changed last.
func (s *state) latest() *Deployment {
	var out *Deployment
	for _, id := range s.order {
		if d := s.byID[id]; out == nil || !d.Updated.Before(out.Updated) {
			out = d
		}
	}
	return out
}

// waitFolded waits until k has at least n events folded, or ctx ends.
func (m *Module) waitFolded(ctx context.Context, k key, n uint64) {
	for {
		m.mu.RLock()
		done, ch := m.folded[k] >= n, m.changed
		m.mu.RUnlock()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// waitHeartbeat waits until heartbeats are folded up to seq, or ctx ends.
func (m *Module) waitHeartbeat(ctx context.Context, seq uint64) {
	for {
		m.mu.RLock()
		done, ch := m.hbSeq >= seq, m.changed
		m.mu.RUnlock()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// keys lists the service/environments known, sorted, filtered.
func (m *Module) keys(service, env string) []key {
	var out []key
	for k := range m.envs {
		if (service == "" || k.service == service) && (env == "" || k.env == env) {
			out = append(out, k)
		}
	}
	for k := range m.hosts {
		if _, ok := m.envs[k]; !ok && (service == "" || k.service == service) && (env == "" || k.env == env) {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
