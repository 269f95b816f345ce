package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redpanda-data/benthos/v4/public/bloblang"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/enrich"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/graph"
	"github.com/opsgraph/ops/internal/reply"
)

// Deps are what the pipeline module needs.
type Deps struct {
	Bus      *bus.Bus
	Config   *config.Config // the file's processors are read-only through the API
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Handle mounts HTTP handlers on the main listener; may be nil.
	Handle func(pattern, perm string, h http.Handler)
	// Allowed reports whether a request's caller holds a permission; nil
	// allows nothing beyond the route's own.
	Allowed func(r *http.Request, perm string) bool
}

// Module runs every processor of the graph: those of ops.yaml and those
// created through the API (kept in the OPS_GRAPH bucket), starting,
// replacing and stopping them as the API changes them.
type Module struct {
	deps    Deps
	metrics *metrics
	store   atomic.Pointer[graph.Store]

	mu      sync.Mutex
	running map[string]*proc
}

type proc struct {
	r      *runner
	cancel context.CancelFunc
	done   chan struct{}
}

// BatchSize is how many bus messages a processor fetches at once.
const BatchSize = 256

// New prepares the module; processors start when it runs.
func New(deps Deps) (*Module, error) {
	m := &Module{deps: deps, metrics: newMetrics(deps.Registry), running: map[string]*proc{}}
	if deps.Handle != nil {
		deps.Handle("GET /api/v1/processors", "graph:read", http.HandlerFunc(m.list))
		deps.Handle("PUT /api/v1/processors/{name}", "graph:write", graph.PutHandler("processor", m.store.Load,
			func(p *config.Processor) *string { return &p.Name }, (*graph.Store).PutProcessor, m.allowOutput))
		deps.Handle("DELETE /api/v1/processors/{name}", "graph:write", graph.DeleteHandler("processor", m.store.Load))
		deps.Handle("POST /api/v1/processors/preview", "graph:write", http.HandlerFunc(m.preview))
	}
	return m, nil
}

// allowOutput refuses a processor whose to: names a reserved event domain
// unless the caller holds that domain's permission: a processor the
// caller may create must not publish what the caller may not.
func (m *Module) allowOutput(r *http.Request, p *config.Processor) *reply.ErrorBody {
	t, err := graph.ParseTemplate(p.To)
	if err != nil {
		return nil // the graph check reports it
	}
	d := t.Domain()
	if d == "" {
		return nil
	}
	if perm, ok := event.Reserved(d); ok && (m.deps.Allowed == nil || !m.deps.Allowed(r, perm)) {
		return &reply.ErrorBody{Field: "to", Error: fmt.Sprintf("%q is on the reserved domain %s: a processor publishing there needs %s (docs/security.md)", p.To, d, perm)}
	}
	return nil
}

// Run starts every processor, follows API changes, and on cancellation
// lets each finish the batch in hand before returning.
func (m *Module) Run(ctx context.Context, ready func()) error {
	store, g, changes, err := graph.Follow(ctx, m.deps.Bus, m.deps.Config)
	if err != nil {
		return err
	}
	m.store.Store(store)
	for _, p := range g.Processors {
		if err := m.start(ctx, p); err != nil {
			return err
		}
	}
	ready()
	for c := range changes {
		if c.Kind != "processor" {
			continue
		}
		m.apply(ctx, store, c)
	}
	m.mu.Lock()
	procs := make([]*proc, 0, len(m.running))
	for _, p := range m.running {
		procs = append(procs, p)
	}
	m.mu.Unlock()
	for _, p := range procs {
		p.cancel()
		<-p.done
	}
	return nil
}

// apply brings the running processors in line with one API change.
func (m *Module) apply(ctx context.Context, store *graph.Store, c graph.Change) {
	m.stop(c.Name)
	if c.Deleted {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.deps.Bus.JetStream().DeleteConsumer(dctx, bus.EventsStream, ConsumerName(c.Name))
		m.deps.Logger.Info("processor deleted", "processor", c.Name)
		return
	}
	g, err := store.Graph(ctx)
	if err != nil {
		m.deps.Logger.Error("graph no longer compiles; processor not restarted", "processor", c.Name, "err", err)
		return
	}
	for _, p := range g.Processors {
		if p.Spec.Name == c.Name {
			if err := m.start(ctx, p); err != nil {
				m.deps.Logger.Error("start processor", "processor", c.Name, "err", err)
			} else {
				m.deps.Logger.Info("processor started", "processor", c.Name)
			}
		}
	}
}

func (m *Module) start(ctx context.Context, p *graph.Processor) error {
	r := &runner{p: p, bus: m.deps.Bus, log: m.deps.Logger.With("processor", p.Spec.Name), m: m.metrics}
	r.run = &graph.Runner{Name: p.Spec.Name, Bus: m.deps.Bus, Log: r.log, Size: BatchSize,
		Consumer: func() jetstream.Consumer { r.mu.Lock(); defer r.mu.Unlock(); return r.cons },
		Reopen:   r.open, Handle: r.handle}
	if s, ok := p.Enricher.(*enrich.Session); ok {
		store, err := openSessions(ctx, m.deps.Bus, p.Spec.Name, s.Timeout())
		if err != nil {
			return fmt.Errorf("processor %s: %w", p.Spec.Name, err)
		}
		s.UseStore(store)
		r.flush = store.flush
	}
	if err := r.open(ctx); err != nil {
		return fmt.Errorf("processor %s: %w", p.Spec.Name, err)
	}
	rctx, cancel := context.WithCancel(ctx)
	pr := &proc{r: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(pr.done)
		r.run.Run(rctx)
	}()
	m.mu.Lock()
	m.running[p.Spec.Name] = pr
	m.mu.Unlock()
	return nil
}

func (m *Module) stop(name string) {
	m.mu.Lock()
	p := m.running[name]
	delete(m.running, name)
	m.mu.Unlock()
	if p != nil {
		p.cancel()
		<-p.done
	}
}

// Status is one processor in GET /api/v1/processors.
type Status struct {
	Name      string   `json:"name"`
	Origin    string   `json:"origin"` // config or api
	From      []string `json:"from"`
	To        string   `json:"to"`
	In        uint64   `json:"in"`
	Out       uint64   `json:"out"`
	Filtered  uint64   `json:"filtered"`
	Errors    uint64   `json:"errors"`
	Lag       uint64   `json:"lag"`
	LastError string   `json:"last_error,omitempty"`
}

func (m *Module) list(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	out := make([]Status, 0, len(m.running))
	for _, p := range m.running {
		st := p.r.status(r.Context())
		st.Origin = "api"
		if s := m.store.Load(); s != nil {
			st.Origin = s.Origin("processor", st.Name)
		}
		out = append(out, st)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"processors": out})
}

type runner struct {
	p   *graph.Processor
	bus *bus.Bus
	log *slog.Logger
	m   *metrics
	run *graph.Runner
	// flush stores enricher state (sessions) before a batch is acked.
	flush func(context.Context) error

	mu                          sync.Mutex
	cons                        jetstream.Consumer
	in, out, filtered, errCount uint64
}

func (r *runner) status(ctx context.Context) Status {
	lag := r.run.Lag(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	return Status{Name: r.p.Spec.Name, From: r.p.Spec.From, To: r.p.To.String(), In: r.in, Out: r.out,
		Filtered: r.filtered, Errors: r.errCount, Lag: lag, LastError: r.run.LastError()}
}

// ConsumerName is the durable consumer of a processor.
func ConsumerName(name string) string { return "proc_" + name }

func (r *runner) open(ctx context.Context) error {
	dp := jetstream.DeliverAllPolicy
	if r.p.Spec.Start == "new" {
		dp = jetstream.DeliverNewPolicy
	}
	cons, err := r.bus.Resume(ctx, bus.EventsStream, jetstream.ConsumerConfig{
		Durable:        ConsumerName(r.p.Spec.Name),
		Description:    "ops processor " + r.p.Spec.Name,
		FilterSubjects: r.p.Spec.From,
		DeliverPolicy:  dp,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        time.Minute,
		MaxAckPending:  BatchSize * 4,
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cons = cons
	r.mu.Unlock()
	return nil
}

// handle processes one batch (graph.Runner decoded it and dead-lettered
// what does not decode) and acks it. After a failure the runner reopens
// the consumer from its ack floor; outputs already stored are dropped as
// duplicates by their message ids.
func (r *runner) handle(ctx context.Context, b *graph.Batch) error {
	name := r.p.Spec.Name
	var groups []bus.Group
	var in, out, filtered uint64
	failed := uint64(b.Undecodable)
	for _, item := range b.Items {
		evs := item.Events
		bySubject := map[string][]event.Event{}
		var order []string
		var dead []event.Event
		for i := range evs {
			in++
			o, subj, stage, err := r.process(&evs[i])
			switch {
			case err != nil:
				failed++
				dead = append(dead, graph.DeadLetter(name, stage, err, evs[i]))
			case o == nil:
				filtered++
			default:
				if _, ok := bySubject[subj]; !ok {
					order = append(order, subj)
				}
				bySubject[subj] = append(bySubject[subj], *o)
				out++
			}
		}
		for _, s := range order {
			groups = append(groups, bus.Group{Subject: s, MsgID: fmt.Sprintf("p:%s:%d:%s", name, item.Seq, s), Events: bySubject[s]})
		}
		if len(dead) > 0 {
			groups = append(groups, bus.Group{Subject: "ev.deadletter." + name, MsgID: fmt.Sprintf("d:%s:%d", name, item.Seq), Events: dead})
		}
	}
	if err := r.bus.PublishGroups(ctx, groups); err != nil {
		return err
	}
	if r.flush != nil {
		if err := r.flush(ctx); err != nil {
			return err
		}
	}
	if err := b.Ack(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.in += in
	r.out += out
	r.filtered += filtered
	r.errCount += failed
	r.mu.Unlock()
	r.m.in.WithLabelValues(name).Add(float64(in))
	r.m.out.WithLabelValues(name).Add(float64(out))
	r.m.filtered.WithLabelValues(name).Add(float64(filtered))
	r.m.errors.WithLabelValues(name).Add(float64(failed))
	r.m.lag.WithLabelValues(name).Set(float64(b.Pending))
	return nil
}

// process runs where, map and to over one event. A nil output with no
// error means the event was filtered out.
func (r *runner) process(e *event.Event) (*event.Event, string, string, error) {
	return Process(r.p, e)
}

// Process runs a processor's where, use, map and to over one event: the
// output event and its subject, nil when filtered out, or the stage that
// failed (decode, where, use, map, to) and why. The editor's preview runs
// the same function.
func Process(p *graph.Processor, e *event.Event) (*event.Event, string, string, error) {
	r := struct{ p *graph.Processor }{p}
	obj, err := graph.Object(e)
	if err != nil {
		return nil, "", "decode", err
	}
	ok, err := graph.Bool(r.p.Where, obj)
	if err != nil {
		return nil, "", "where", err
	}
	if !ok {
		return nil, "", "", nil
	}
	data := e.Data
	if r.p.Enricher != nil {
		if err := r.p.Enricher.Enrich(obj); err != nil {
			return nil, "", "use", err
		}
		var err error
		if data, err = json.Marshal(obj["data"]); err != nil {
			return nil, "", "use", err
		}
	}
	if r.p.Map != nil {
		v, err := r.p.Map.Query(obj)
		if errors.Is(err, bloblang.ErrRootDeleted) {
			return nil, "", "", nil
		}
		if err != nil {
			return nil, "", "map", err
		}
		if data, err = json.Marshal(v); err != nil {
			return nil, "", "map", err
		}
	}
	subj, err := r.p.To.Render(obj)
	if err != nil {
		return nil, "", "to", err
	}
	o := event.Event{
		SpecVersion: event.SpecVersion, ID: graph.DerivedID(r.p.Spec.Name, e.ID), Source: "/ops/processor/" + r.p.Spec.Name,
		Type: subj[len("ev."):], Subject: e.Subject, Time: e.Time, Extensions: e.Extensions, Data: data,
	}
	if len(data) > 0 {
		o.DataContentType = "application/json"
	}
	return &o, subj, "", nil
}

type metrics struct {
	in, out, filtered, errors *prometheus.CounterVec
	lag                       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	cv := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"processor"})
	}
	m := &metrics{
		in:       cv("ops_processor_events_in_total", "Events a processor consumed."),
		out:      cv("ops_processor_events_out_total", "Events a processor published."),
		filtered: cv("ops_processor_events_filtered_total", "Events a processor's where or map dropped on purpose."),
		errors:   cv("ops_processor_errors_total", "Events a processor sent to its dead letters."),
		lag:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ops_processor_lag", Help: "Bus messages waiting for a processor."}, []string{"processor"}),
	}
	if reg != nil {
		reg.MustRegister(m.in, m.out, m.filtered, m.errors, m.lag)
	}
	return m
}
