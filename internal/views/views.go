package views

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/graph"
)

// Deps are what the views module needs.
type Deps struct {
	Bus      *bus.Bus
	Config   *config.Config // the file's views are read-only through the API
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Handle   func(pattern, perm string, h http.Handler)
	// Allowed reports whether a request's caller holds a permission (the
	// preview also needs events:read); nil allows nothing more.
	Allowed func(r *http.Request, perm string) bool
}

// Module folds every view of the graph (ops.yaml's and the API's) and
// serves queries.
type Module struct {
	deps    Deps
	metrics *metrics
	store   atomic.Pointer[graph.Store]

	mu     sync.RWMutex
	byName map[string]*vrun
}

type vrun struct {
	r      *runner
	cancel context.CancelFunc
	done   chan struct{}
}

// BatchSize is how many bus messages a view folds at once.
const BatchSize = 512

// cacheRows bounds the rows a view keeps in memory between batches.
const cacheRows = 100_000

const metaKey = "_meta"

// New prepares the module; views open when it runs.
func New(deps Deps) (*Module, error) {
	m := &Module{deps: deps, byName: map[string]*vrun{}, metrics: newMetrics(deps.Registry)}
	if deps.Handle != nil {
		deps.Handle("GET /api/v1/views", "views:read", http.HandlerFunc(m.list))
		deps.Handle("GET /api/v1/views/{name}", "views:read", http.HandlerFunc(m.query))
		deps.Handle("PUT /api/v1/views/{name}", "graph:write", graph.PutHandler("view", m.store.Load,
			func(v *config.View) *string { return &v.Name }, (*graph.Store).PutView, nil))
		deps.Handle("DELETE /api/v1/views/{name}", "graph:write", graph.DeleteHandler("view", m.store.Load))
		deps.Handle("POST /api/v1/views/preview", "graph:write", http.HandlerFunc(m.preview))
		deps.Handle("POST /api/v1/views/{name}/rebuild", "views:write", http.HandlerFunc(m.rebuild))
		deps.Handle("GET /api/v1/views/{name}/rebuild", "views:read", http.HandlerFunc(m.rebuildStatus))
	}
	return m, nil
}

// view returns the running view of that name, or nil.
func (m *Module) view(name string) *runner {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if v := m.byName[name]; v != nil {
		return v.r
	}
	return nil
}

func (m *Module) all() []*runner {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*runner, 0, len(m.byName))
	for _, v := range m.byName {
		out = append(out, v.r)
	}
	slices.SortFunc(out, func(a, b *runner) int { return strings.Compare(a.v.Spec.Name, b.v.Spec.Name) })
	return out
}

// Run opens every view, folds until ctx ends (the batch in hand is finished
// first) and follows views created, replaced and deleted through the API.
func (m *Module) Run(ctx context.Context, ready func()) error {
	store, g, changes, err := graph.Follow(ctx, m.deps.Bus, m.deps.Config)
	if err != nil {
		return err
	}
	m.store.Store(store)
	for _, v := range g.Views {
		if err := m.start(ctx, v); err != nil {
			return err
		}
	}
	ready()
	for c := range changes {
		m.deps.Logger.Debug("graph change", "kind", c.Kind, "name", c.Name, "deleted", c.Deleted)
		if c.Kind == "view" {
			m.apply(ctx, store, c)
		}
	}
	for _, r := range m.all() {
		m.stop(r.v.Spec.Name)
	}
	return nil
}

func (m *Module) start(ctx context.Context, v *graph.View) error {
	r := newRunner(v, m.deps.Bus, m.deps.Logger.With("view", v.Spec.Name), m.metrics, 0, false)
	if err := r.open(ctx); err != nil {
		return fmt.Errorf("view %s: %w", v.Spec.Name, err)
	}
	rctx, cancel := context.WithCancel(ctx)
	vr := &vrun{r: r, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.run.Run(rctx) }()
	if v.Spec.Keep > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); r.expireLoop(rctx) }()
	}
	go func() { wg.Wait(); close(vr.done) }()
	m.mu.Lock()
	m.byName[v.Spec.Name] = vr
	m.mu.Unlock()
	return nil
}

func (m *Module) stop(name string) *runner {
	m.mu.Lock()
	v := m.byName[name]
	delete(m.byName, name)
	m.mu.Unlock()
	if v == nil {
		return nil
	}
	v.cancel()
	<-v.done
	return v.r
}

// apply follows one API change. A replaced view starts over from the first
// event with its new definition: its old state is deleted, since rows
// folded by another definition would be wrong.
func (m *Module) apply(ctx context.Context, store *graph.Store, c graph.Change) {
	if old := m.stop(c.Name); old != nil {
		old.drop(ctx)
	}
	if c.Deleted {
		m.deps.Logger.Info("view deleted", "view", c.Name)
		return
	}
	g, err := store.Graph(ctx)
	if err != nil {
		m.deps.Logger.Error("graph no longer compiles; view not started", "view", c.Name, "err", err)
		return
	}
	for _, v := range g.Views {
		if v.Spec.Name == c.Name {
			if err := m.start(ctx, v); err != nil {
				m.deps.Logger.Error("start view", "view", c.Name, "err", err)
			} else {
				m.deps.Logger.Info("view started", "view", c.Name)
			}
		}
	}
}

// drop deletes a view's state: its consumer, its bucket and its generation.
func (r *runner) drop(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	name := r.v.Spec.Name
	js := r.bus.JetStream()
	_ = js.DeleteConsumer(ctx, bus.EventsStream, genConsumer(name, r.gen))
	_ = js.DeleteKeyValue(ctx, genBucket(name, r.gen))
	if act, err := js.KeyValue(ctx, activeBucket); err == nil {
		_ = act.Delete(ctx, name)
	}
}

// Bucket is the KV bucket of a view's first generation; a rebuild writes
// generation n to VIEW_<name>_g<n> and switches to it when it caught up.
func Bucket(name string) string { return "VIEW_" + name }

// ConsumerName is the durable consumer of a view's first generation.
func ConsumerName(name string) string { return "view_" + name }

// LiveConsumer is the durable consumer of the generation of view name
// that queries read and that publishes its change events.
func LiveConsumer(ctx context.Context, b *bus.Bus, name string) string {
	gen := 0
	if act, err := b.JetStream().KeyValue(ctx, activeBucket); err == nil {
		if e, err := act.Get(ctx, name); err == nil {
			gen, _ = strconv.Atoi(string(e.Value()))
		}
	}
	return genConsumer(name, gen)
}

func genBucket(name string, gen int) string {
	if gen == 0 {
		return Bucket(name)
	}
	return fmt.Sprintf("%s_g%d", Bucket(name), gen)
}

func genConsumer(name string, gen int) string {
	if gen == 0 {
		return ConsumerName(name)
	}
	return fmt.Sprintf("%s_g%d", ConsumerName(name), gen)
}

// activeBucket records which generation of each view queries read.
const activeBucket = "OPS_VIEWS"

type runner struct {
	v    *graph.View
	bus  *bus.Bus
	log  *slog.Logger
	m    *metrics
	kv   jetstream.KeyValue // guarded by foldMu for writes; read it with bucket()
	cons jetstream.Consumer
	gen  int
	// silent is set on a rebuild's shadow: it folds without publishing
	// change events or dead letters (they went out the first time).
	silent bool
	rb     *RebuildStatus
	run    *graph.Runner

	// fold owns cache and watermark; mu guards the status fields and
	// serializes fold with expiry.
	foldMu    sync.Mutex
	cache     map[string]*row
	watermark time.Time

	mu                      sync.Mutex
	in, applied, late, errs uint64
}

// newRunner makes a view's runner; a silent one (a rebuild's shadow) of
// generation gen publishes no change events and no dead letters.
func newRunner(v *graph.View, b *bus.Bus, log *slog.Logger, m *metrics, gen int, silent bool) *runner {
	r := &runner{v: v, bus: b, log: log, m: m, cache: map[string]*row{}, gen: gen, silent: silent}
	r.run = &graph.Runner{Name: v.Spec.Name, Bus: b, Log: log, Size: BatchSize, Silent: silent,
		Consumer: func() jetstream.Consumer {
			r.foldMu.Lock()
			defer r.foldMu.Unlock()
			return r.cons
		},
		// Not acked: the batch comes back first and in order; rows reload
		// from the bucket, where their positions make the replay skip what
		// was already applied.
		Reopen: func(ctx context.Context) error {
			r.foldMu.Lock()
			clear(r.cache)
			r.foldMu.Unlock()
			return r.open(ctx)
		},
		Handle: r.fold,
	}
	return r
}

type meta struct {
	Watermark time.Time `json:"watermark"`
}

// bucket is the KV bucket queries read.
func (r *runner) bucket() jetstream.KeyValue {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kv
}

func (r *runner) open(ctx context.Context) error {
	name := r.v.Spec.Name
	if !r.silent {
		act, err := r.bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: activeBucket, Description: "active generation of each view", History: 1})
		if err != nil {
			return err
		}
		if e, err := act.Get(ctx, name); err == nil {
			if n, err := strconv.Atoi(string(e.Value())); err == nil {
				r.gen = n
			}
		}
	}
	kv, err := r.bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: genBucket(name, r.gen), Description: "ops view " + name, History: 1})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.kv = kv
	r.mu.Unlock()
	if e, err := kv.Get(ctx, metaKey); err == nil {
		var mt meta
		if json.Unmarshal(e.Value(), &mt) == nil {
			r.watermark = mt.Watermark
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	dp := jetstream.DeliverAllPolicy
	if r.v.Spec.Start == "new" && !r.silent {
		dp = jetstream.DeliverNewPolicy
	}
	cons, err := r.bus.Resume(ctx, bus.EventsStream, jetstream.ConsumerConfig{
		Durable: genConsumer(name, r.gen), Description: "ops view " + name, FilterSubjects: r.v.Spec.From,
		DeliverPolicy: dp, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: BatchSize * 4,
	})
	if err != nil {
		return err
	}
	r.foldMu.Lock()
	r.cons = cons
	r.foldMu.Unlock()
	return nil
}

func (r *runner) fail(err error) { r.run.Fail(err) }

type touched struct {
	key     string
	old     *row // as stored before this batch; nil for a new row
	cur     *row
	deleted bool
}

// load returns a row from the cache or the bucket; nil if it does not exist.
func (r *runner) load(ctx context.Context, key string) (*row, error) {
	if c, ok := r.cache[key]; ok {
		return c, nil
	}
	e, err := r.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rw row
	if err := json.Unmarshal(e.Value(), &rw); err != nil {
		return nil, fmt.Errorf("row %s: %w", key, err)
	}
	return &rw, nil
}

// fold applies a batch of bus messages, publishes the changes, writes the
// touched rows and acks the batch (messages that did not decode went to
// the view's dead letters in graph.Runner).
func (r *runner) fold(ctx context.Context, b *graph.Batch) error {
	r.foldMu.Lock()
	defer r.foldMu.Unlock()
	if b.Cons != r.cons {
		// A rebuild switched generations while this batch was fetched from
		// the old consumer: drop it (it is deleted with its generation).
		return nil
	}
	v := r.v
	name := v.Spec.Name
	size := v.Spec.Window.D()
	late := v.Spec.Lateness.D()
	rows := map[string]*touched{}
	var order []string
	var dead []event.Event
	var in, appliedN, lateN uint64
	errN := uint64(b.Undecodable)
	wm := r.watermark
	for _, item := range b.Items {
		evs := item.Events
		for i := range evs {
			in++
			e := &evs[i]
			pos := bus.Position{Seq: item.Seq, Index: i}
			reason, stage, err := r.foldOne(ctx, e, pos, size, late, &wm, rows, &order)
			switch {
			case err != nil && stage == "bus":
				return err
			case err != nil:
				errN++
				dead = append(dead, graph.DeadLetter(name, stage, err, *e))
			case reason == "late":
				lateN++
				dead = append(dead, graph.DeadLetter(name, "late", fmt.Errorf("event time %s is before window end + lateness, watermark %s",
					e.Time.Format(time.RFC3339), wm.Format(time.RFC3339)), *e))
			case reason == "applied":
				appliedN++
			}
		}
	}
	// 1. Change events (and dead letters): deterministic ids, deduplicated
	// by the bus if this batch is redelivered.
	var changes []event.Event
	for _, k := range order {
		t := rows[k]
		if ev, ok := r.change(t); ok {
			changes = append(changes, ev)
		}
	}
	if len(changes)+len(dead) > 0 && !r.silent {
		if _, err := r.bus.PublishDerived(ctx, append(changes, dead...)); err != nil {
			return err
		}
	}
	// 2. Rows.
	if err := r.write(ctx, rows, order); err != nil {
		return err
	}
	if !wm.Equal(r.watermark) && size > 0 {
		b, _ := json.Marshal(meta{Watermark: wm})
		if _, err := r.kv.Put(ctx, metaKey, b); err != nil {
			return err
		}
		r.watermark = wm
	}
	// 3. Ack the batch (in order) and wait for the server to record it.
	if err := b.Ack(ctx); err != nil {
		return err
	}
	if len(r.cache) > cacheRows {
		clear(r.cache)
	}
	for _, k := range order {
		if t := rows[k]; t.deleted {
			delete(r.cache, k)
		} else {
			r.cache[k] = t.cur
		}
	}
	r.mu.Lock()
	r.in += in
	r.applied += appliedN
	r.late += lateN
	r.errs += errN
	r.mu.Unlock()
	r.m.in.WithLabelValues(name).Add(float64(in))
	r.m.late.WithLabelValues(name).Add(float64(lateN))
	r.m.errors.WithLabelValues(name).Add(float64(errN))
	r.m.changes.WithLabelValues(name).Add(float64(len(changes)))
	r.m.lag.WithLabelValues(name).Set(float64(b.Pending))
	return nil
}

// foldOne applies one event. It returns "applied", "skipped" (filtered or
// already applied) or "late"; stage names where an error came from.
func (r *runner) foldOne(ctx context.Context, e *event.Event, pos bus.Position, size, late time.Duration,
	wm *time.Time, rows map[string]*touched, order *[]string) (string, string, error) {
	v := r.v
	obj, err := graph.Object(e)
	if err != nil {
		return "", "decode", err
	}
	ok, err := graph.Bool(v.Where, obj)
	if err != nil {
		return "", "where", err
	}
	if !ok {
		return "skipped", "", nil
	}
	key := make([]any, len(v.Keys))
	for i, k := range v.Keys {
		val, err := k.Expr.Query(obj)
		if err != nil {
			return "", "key", fmt.Errorf("key %s: %w", k.Name, err)
		}
		key[i] = keyValue(val)
	}
	var window int64
	if size > 0 {
		ws := graph.Window(e.Time, size)
		if late > 0 && !ws.Add(size+late).After(*wm) {
			return "late", "", nil
		}
		if e.Time.After(*wm) {
			*wm = e.Time
		}
		window = ws.Unix()
	}
	rk := rowKey(window, key)
	t := rows[rk]
	if t == nil {
		old, err := r.load(ctx, rk)
		if err != nil {
			return "", "bus", err
		}
		t = &touched{key: rk, old: old, cur: old.clone()}
		rows[rk] = t
		*order = append(*order, rk)
	}
	if t.deleted {
		// Deleted earlier in this batch; a later event starts it afresh.
		t.cur, t.deleted = nil, false
	}
	if t.cur != nil && t.cur.applied(pos.Seq, pos.Index) {
		return "skipped", "", nil
	}
	in, err := compute(v, obj, t.cur)
	if err != nil {
		return "", "measure", err
	}
	cur := t.cur // a copy of the stored row, owned by this batch
	if cur == nil {
		cur = &row{Key: key, Window: window, M: map[string]*mstate{}}
	}
	del, err := apply(v, cur, in)
	if err != nil {
		return "", "measure", err
	}
	cur.Seq, cur.Idx, cur.Updated = pos.Seq, pos.Index, e.Time
	t.cur = cur
	t.deleted = del
	return "applied", "", nil
}

// ChangeData is the data of an ev.view.<name>.* event (graph.ChangeData).
type ChangeData = graph.ChangeData

func (r *runner) change(t *touched) (event.Event, bool) {
	v := r.v
	var typ string
	var base *row
	switch {
	case t.deleted && t.old == nil:
		return event.Event{}, false // created and deleted inside one batch
	case t.deleted:
		typ, base = "deleted", t.old
	case t.old == nil:
		typ, base = "created", t.cur
	case t.cur.Seq == t.old.Seq && t.cur.Idx == t.old.Idx:
		return event.Event{}, false // every event was already applied
	default:
		typ, base = "updated", t.cur
	}
	d := ChangeData{View: v.Spec.Name, Key: keyMap(v, base.Key)}
	if base.Window != 0 {
		w := time.Unix(base.Window, 0).UTC()
		d.Window = &w
		d.WindowSeconds = int64(v.Spec.Window.D() / time.Second)
	}
	if t.old != nil {
		d.Old = values(v, t.old)
	}
	if !t.deleted {
		d.New = values(v, t.cur)
	}
	data, _ := json.Marshal(d)
	// The id is fixed by the row and the last position applied to it, so a
	// redelivered batch produces the same change event.
	at := t.cur
	if t.deleted || at == nil {
		at = t.old
	}
	return event.Event{
		SpecVersion: event.SpecVersion, ID: graph.DerivedID("view/"+v.Spec.Name, fmt.Sprintf("%s@%d:%d:%s", t.key, at.Seq, at.Idx, typ)),
		Source: "/ops/view/" + v.Spec.Name, Type: "view." + v.Spec.Name + "." + typ, Subject: t.key,
		Time: at.Updated.UTC(), DataContentType: "application/json", Data: data,
	}, true
}

func keyMap(v *graph.View, key []any) map[string]any {
	m := make(map[string]any, len(v.Keys))
	for i, k := range v.Keys {
		if i < len(key) {
			m[k.Name] = key[i]
		}
	}
	return m
}

// write stores the touched rows: puts and deletes pipelined, then waited for.
func (r *runner) write(ctx context.Context, rows map[string]*touched, order []string) error {
	js := r.bus.JetStream()
	var futs []jetstream.PubAckFuture
	for _, k := range order {
		t := rows[k]
		if t.deleted {
			if t.old != nil {
				if err := r.kv.Delete(ctx, k); err != nil {
					return err
				}
			}
			continue
		}
		if t.old != nil && t.cur.Seq == t.old.Seq && t.cur.Idx == t.old.Idx {
			continue
		}
		if err := t.cur.encode(); err != nil {
			return err
		}
		b, err := json.Marshal(t.cur)
		if err != nil {
			return err
		}
		f, err := js.PublishAsync("$KV."+r.kv.Bucket()+"."+k, b)
		if err != nil {
			return err
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("write row: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// expireLoop deletes windowed rows older than keep, once a minute.
func (r *runner) expireLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if err := r.expire(ctx, time.Now()); err != nil && ctx.Err() == nil {
			r.fail(fmt.Errorf("expire: %w", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *runner) expire(ctx context.Context, now time.Time) error {
	cut := now.Add(-r.v.Spec.Keep.D()).Add(-r.v.Spec.Window.D()).Unix()
	lister, err := r.bucket().ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return err
	}
	var old []string
	for k := range lister.Keys() {
		if w, ok := windowOf(k); ok && w < cut {
			old = append(old, k)
		}
	}
	if len(old) == 0 {
		return nil
	}
	r.foldMu.Lock()
	defer r.foldMu.Unlock()
	rows := map[string]*touched{}
	for _, k := range old {
		rw, err := r.load(ctx, k)
		if err != nil || rw == nil {
			continue
		}
		rows[k] = &touched{key: k, old: rw, cur: rw, deleted: true}
	}
	var changes []event.Event
	for _, k := range old {
		if t := rows[k]; t != nil {
			if ev, ok := r.change(t); ok {
				changes = append(changes, ev)
			}
		}
	}
	if len(changes) > 0 {
		if _, err := r.bus.PublishDerived(ctx, changes); err != nil {
			return err
		}
	}
	for k := range rows {
		if err := r.kv.Delete(ctx, k); err != nil {
			return err
		}
		delete(r.cache, k)
	}
	r.log.Info("expired rows", "rows", len(rows))
	return nil
}

type metrics struct {
	in, late, errors, changes *prometheus.CounterVec
	lag                       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	cv := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"view"})
	}
	m := &metrics{
		in:      cv("ops_views_events_in_total", "Events a view consumed."),
		late:    cv("ops_views_late_events_total", "Events that arrived after their window closed (sent to dead letters)."),
		errors:  cv("ops_views_errors_total", "Events a view could not fold (sent to dead letters)."),
		changes: cv("ops_views_changes_total", "Row changes a view published."),
		lag:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ops_views_lag", Help: "Bus messages waiting for a view."}, []string{"view"}),
	}
	if reg != nil {
		reg.MustRegister(m.in, m.late, m.errors, m.changes, m.lag)
	}
	return m
}
