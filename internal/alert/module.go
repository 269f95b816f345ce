package alert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/deploy"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/logging"
	"github.com/opsgraph/ops/internal/policy"
)

// Storage is what rules read and write: the embedded TSDB.
type Storage interface {
	storage.Queryable
	storage.AppendableV2
}

// Deps are what the alert module needs.
type Deps struct {
	Bus      *bus.Bus
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Handle   func(pattern, perm string, h http.Handler)
	Storage  Storage
	Engine   promql.QueryEngine
	// ExternalURL is Ops's address, for generator URLs.
	ExternalURL string
	// DataDir holds the silences and the notification log (under alert/).
	DataDir string
	// Allows reports whether a role has a permission (chat commands).
	Allows func(role, perm string) bool
	// Status is a short text of Ops's state (the chat's /status).
	Status func() string
	// Services is what the deploy module knows (the chat's /deploys and
	// /drift); ok is false when it does not run.
	Services func(service string) (ss []deploy.Service, ok bool)
	// Policy is the POLICY bucket (the chat's /block and /unblock); nil
	// leaves them out. PolicyCleared hears of a cleared entry (identity
	// lifts its login throttle).
	Policy        *policy.Store
	PolicyCleared func(kind, subject string)
	// Logs are the run-time log levels (the chat's /loglevel).
	Logs *logging.Levels
}

// RulesBucket keeps the rule groups created through the API.
const RulesBucket = "ALERT_RULES"

// Module evaluates rules and records alert state changes.
type Module struct {
	cfg    config.Alert
	deps   Deps
	log    *slog.Logger
	parser parser.Parser
	mgr    *rules.Manager

	mu sync.Mutex
	// api holds the groups created through the API, by name, as YAML of
	// one rule file; files the expanded alert.rule_files.
	api   map[string][]byte
	files []string
	kv    jetstream.KeyValue
	// states are the alerts recorded for each rule (by rule key, then
	// by the hash of the alert's labels), as kept in STATES.
	states map[string]map[uint64]*record
	st     jetstream.KeyValue
	runCtx context.Context // set once the rule manager runs
	// router routes firing alerts to receivers (alert.alertmanager_config);
	// nil without one.
	router *router
	// chat is the Telegram bot while it runs (alert.telegram).
	chat atomic.Pointer[chat]
}

// StatesBucket keeps the last recorded state of every pending or firing
// alert, so a restart, however long, neither records a state change
// twice nor misses the resolution of an alert that ended while Ops was
// down.
const StatesBucket = "ALERT_STATE"

// record is an alert as last recorded.
type record struct {
	Rule     string            `json:"rule"` // rules.GroupKey + NUL + alert name
	Alert    string            `json:"alert"`
	Group    string            `json:"group"`
	File     string            `json:"file"`
	Expr     string            `json:"expr"`
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt int64             `json:"active_at"` // Unix seconds, as ALERTS_FOR_STATE keeps it
}

func (r *record) kvKey() string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d", r.Rule, labels.FromMap(r.Labels).Hash()))
	return hex.EncodeToString(h[:20])
}

// New prepares the module; rules are loaded and evaluated when it runs.
func New(cfg config.Alert, deps Deps) (*Module, error) {
	if deps.Bus == nil || deps.Storage == nil || deps.Engine == nil {
		return nil, errors.New("alert needs the bus and the time series")
	}
	m := &Module{cfg: cfg, deps: deps, log: deps.Logger, parser: parser.NewParser(parser.Options{}),
		api: map[string][]byte{}, states: map[string]map[uint64]*record{}}
	files, err := m.checkFiles(cfg.RuleFiles)
	if err != nil {
		return nil, err
	}
	m.files = files
	if cfg.AlertmanagerConfig != "" {
		if err := checkAlertmanagerConfig(cfg.AlertmanagerConfig); err != nil {
			return nil, err
		}
	}
	if deps.Handle != nil {
		m.mount(deps.Handle)
	}
	return m, nil
}

// CheckRuleFiles reads and checks the rule files of cfg as a start or a
// reload would (ops check-config).
func CheckRuleFiles(cfg config.Alert) error {
	m := &Module{parser: parser.NewParser(parser.Options{}), log: slog.New(slog.DiscardHandler)}
	if _, err := m.checkFiles(cfg.RuleFiles); err != nil {
		return err
	}
	if cfg.AlertmanagerConfig != "" {
		return checkAlertmanagerConfig(cfg.AlertmanagerConfig)
	}
	return nil
}

func (m *Module) checkFiles(globs []string) ([]string, error) {
	files, err := expand(globs)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if _, errs := m.loadFile(f); len(errs) > 0 {
			return nil, fmt.Errorf("alert.rule_files: %s: %w", f, errors.Join(errs...))
		}
	}
	return files, nil
}

// Reload re-reads the rule files (SIGHUP): all of them are checked first,
// and a file with an error changes nothing.
func (m *Module) Reload(cfg config.Alert) error {
	files, err := m.checkFiles(cfg.RuleFiles)
	if err != nil {
		return err
	}
	m.mu.Lock()
	rt := m.router
	m.mu.Unlock()
	if rt != nil {
		if err := rt.reload(); err != nil {
			return err
		}
	}
	m.mu.Lock()
	m.files = files
	m.cfg.EvaluationInterval = cfg.EvaluationInterval
	ctx := m.runCtx
	m.mu.Unlock()
	if ctx == nil { // not running yet: Run loads them
		return nil
	}
	return m.update(ctx)
}

// expand resolves rule file globs, as Prometheus's rule_files does.
func expand(globs []string) ([]string, error) {
	var out []string
	for _, g := range globs {
		ms, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("alert.rule_files: %q: %w", g, err)
		}
		if len(ms) == 0 && !strings.ContainsAny(g, "*?[") {
			return nil, fmt.Errorf("alert.rule_files: %s: no such file", g)
		}
		out = append(out, ms...)
	}
	sort.Strings(out)
	return out, nil
}

// loader gives the rule manager the groups from files and from the API
// (identifiers "api:<name>").
type loader struct{ m *Module }

func (l loader) Load(id string, ignoreUnknown bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	if name, ok := strings.CutPrefix(id, "api:"); ok {
		l.m.mu.Lock()
		b := l.m.api[name]
		l.m.mu.Unlock()
		return rulefmt.Parse(b, ignoreUnknown, scheme, l.m.parser, l.m.log)
	}
	return l.m.loadFile(id)
}

func (l loader) Parse(q string) (parser.Expr, error) { return l.m.parser.ParseExpr(q) }

func (m *Module) loadFile(path string) (*rulefmt.RuleGroups, []error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, []error{err}
	}
	return rulefmt.Parse(b, false, model.UTF8Validation, m.parser, m.log)
}

// Run loads the API's groups, starts the rule manager and keeps it in
// step with the groups until ctx ends.
func (m *Module) Run(ctx context.Context, ready func()) error {
	kv, err := m.deps.Bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: RulesBucket, Description: "alerting and recording rule groups created through the API", History: 5})
	if err != nil {
		return err
	}
	m.kv = kv
	if m.st, err = m.deps.Bus.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: StatesBucket, Description: "the last recorded state of each pending or firing alert"}); err != nil {
		return err
	}
	if err := m.loadStates(ctx); err != nil {
		return err
	}
	ext, _ := url.Parse(m.deps.ExternalURL)
	if ext == nil {
		ext = &url.URL{}
	}
	notifyFn := func(context.Context, string, ...*rules.Alert) {}
	if m.cfg.AlertmanagerConfig != "" {
		publish := func(ctx context.Context, evs []event.Event) error {
			_, err := m.deps.Bus.PublishDerived(ctx, evs)
			return err
		}
		rt, err := newRouter(m.cfg.AlertmanagerConfig, filepath.Join(m.deps.DataDir, "alert"), ext, m.log, m.deps.Registry, publish, m.cfg.ReceiverRate, m.chat.Load)
		if err != nil {
			return err
		}
		defer rt.stop()
		m.mu.Lock()
		m.router = rt
		m.mu.Unlock()
		notifyFn = rt.notify
	}
	if m.cfg.Telegram.TokenFile != "" {
		token, err := readToken(m.cfg.Telegram)
		if err != nil {
			return err
		}
		if m.deps.Policy == nil {
			if m.deps.Policy, err = policy.Open(ctx, m.deps.Bus); err != nil {
				return err
			}
		}
		cctx, stopChat := context.WithCancel(ctx)
		chatDone := make(chan struct{})
		go func() { defer close(chatDone); m.runChat(cctx, m.cfg.Telegram, token) }()
		defer func() { stopChat(); <-chatDone }()
	}
	m.mgr = rules.NewManager(&rules.ManagerOptions{
		ExternalURL: ext, QueryFunc: rules.EngineQueryFunc(m.deps.Engine, m.deps.Storage),
		NotifyFunc: notifyFn,
		Context:    ctx, AppendableV2: m.deps.Storage, Queryable: m.deps.Storage, Logger: m.log,
		Registerer: m.deps.Registry, OutageTolerance: time.Hour, ForGracePeriod: 10 * time.Minute,
		ResendDelay: time.Minute, GroupLoader: loader{m},
	})
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	// The watch first replays every group, then nil, then changes.
	for up := range w.Updates() {
		if up == nil {
			break
		}
		m.applyKV(up)
	}
	if err := m.update(ctx); err != nil {
		m.log.Error("rules", "err", err)
	}
	go m.mgr.Run()
	defer m.mgr.Stop()
	m.mu.Lock()
	m.runCtx = ctx
	m.mu.Unlock()
	ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case up, ok := <-w.Updates():
			if !ok {
				return errors.New("rules watch ended")
			}
			if up != nil {
				m.applyKV(up)
				if err := m.update(ctx); err != nil {
					m.log.Error("rules", "err", err)
				}
			}
		}
	}
}

func (m *Module) applyKV(e jetstream.KeyValueEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		m.api[e.Key()] = e.Value()
	} else {
		delete(m.api, e.Key())
	}
}

// update hands the rule manager every group source, then resolves the
// recorded alerts of rules that are gone.
func (m *Module) update(ctx context.Context) error {
	m.mu.Lock()
	interval := m.cfg.EvaluationInterval.D()
	ids := append([]string(nil), m.files...)
	for name := range m.api {
		ids = append(ids, "api:"+name)
	}
	m.mu.Unlock()
	sort.Strings(ids)
	if err := m.mgr.Update(interval, ids, labels.EmptyLabels(), m.deps.ExternalURL, m.iteration); err != nil {
		return err
	}
	live := map[string]bool{}
	for _, g := range m.mgr.RuleGroups() {
		for _, r := range g.Rules() {
			live[rules.GroupKey(g.File(), g.Name())+"\x00"+r.Name()] = true
		}
	}
	m.mu.Lock()
	var gone []*record
	for key, recs := range m.states {
		if live[key] {
			continue
		}
		for _, r := range recs {
			gone = append(gone, r)
		}
		delete(m.states, key)
	}
	m.mu.Unlock()
	now := time.Now()
	var evs []event.Event
	for _, r := range gone {
		if r.State == rules.StateFiring.String() {
			evs = append(evs, stateEvent(r, "resolved", nil, 0, now))
		}
	}
	m.commit(ctx, evs, nil, gone)
	return nil
}

// loadStates reads the recorded alerts into m.states (held by the
// caller, or not yet shared).
func (m *Module) loadStates(ctx context.Context) error {
	lister, err := m.st.ListKeys(ctx)
	if err != nil {
		return err
	}
	for k := range lister.Keys() {
		e, err := m.st.Get(ctx, k)
		if err != nil {
			continue
		}
		var r record
		if json.Unmarshal(e.Value(), &r) != nil || r.Rule == "" {
			continue
		}
		if m.states[r.Rule] == nil {
			m.states[r.Rule] = map[uint64]*record{}
		}
		m.states[r.Rule][labels.FromMap(r.Labels).Hash()] = &r
	}
	return nil
}

// iteration evaluates a group as Prometheus does, then records the state
// changes of its alerts as events. A rule whose `for` state is not yet
// restored from ALERTS_FOR_STATE (the first two rounds after a start) is
// not looked at: its alerts' start times are not yet the real ones.
func (m *Module) iteration(ctx context.Context, g *rules.Group, ts time.Time) {
	rules.DefaultEvalIterationFunc(ctx, g, ts)
	var evs []event.Event
	var put, del []*record
	for _, r := range g.Rules() {
		ar, ok := r.(*rules.AlertingRule)
		if !ok || !ar.Restored() {
			continue
		}
		key := rules.GroupKey(g.File(), g.Name()) + "\x00" + ar.Name()
		m.mu.Lock()
		prev := m.states[key]
		now := map[uint64]*record{}
		for _, a := range ar.ActiveAlerts() {
			fp := a.Labels.Hash()
			rec := &record{Rule: key, Alert: ar.Name(), Group: g.Name(), File: g.File(), Expr: ar.Query().String(),
				Labels: a.Labels.Map(), State: a.State.String(), ActiveAt: a.ActiveAt.Unix()}
			now[fp] = rec
			if p := prev[fp]; p == nil || p.State != rec.State || p.ActiveAt != rec.ActiveAt {
				if a.State == rules.StateFiring && ar.HoldDuration() > 0 && (p == nil || p.ActiveAt != rec.ActiveAt) {
					// First seen firing (it became active while the
					// rule's state was being restored): it was pending
					// from ActiveAt, and the record says so.
					evs = append(evs, stateEvent(rec, "pending", a.Annotations.Map(), a.Value, ts))
				}
				evs = append(evs, stateEvent(rec, rec.State, a.Annotations.Map(), a.Value, ts))
				put = append(put, rec)
			}
		}
		for fp, p := range prev {
			if _, still := now[fp]; still {
				continue
			}
			if p.State == rules.StateFiring.String() {
				evs = append(evs, stateEvent(p, "resolved", nil, 0, ts))
			}
			del = append(del, p)
		}
		m.states[key] = now
		m.mu.Unlock()
	}
	m.commit(ctx, evs, put, del)
}

// commit stores the state change events, then the states they lead to:
// a crash between the two re-sends the same events (same ids) at the
// next round, which the bus stores once.
func (m *Module) commit(ctx context.Context, evs []event.Event, put, del []*record) {
	if len(evs) == 0 && len(put) == 0 && len(del) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if len(evs) > 0 {
		if _, err := m.deps.Bus.PublishDerived(pctx, evs); err != nil {
			m.log.Warn("alert events not stored; the next round tries again", "n", len(evs), "err", err)
			m.mu.Lock()
			m.states = map[string]map[uint64]*record{}
			if err := m.loadStates(pctx); err != nil {
				m.log.Warn("alert states not read", "err", err)
			}
			m.mu.Unlock()
			return
		}
	}
	for _, r := range put {
		b, _ := json.Marshal(r)
		if _, err := m.st.Put(pctx, r.kvKey(), b); err != nil {
			m.log.Warn("alert state not stored", "alert", r.Alert, "err", err)
		}
	}
	for _, r := range del {
		if err := m.st.Delete(pctx, r.kvKey()); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			m.log.Warn("alert state not removed", "alert", r.Alert, "err", err)
		}
	}
}

// StateChange is the data of an ev.alert.<state> event.
type StateChange struct {
	Alert       string            `json:"alert"`
	State       string            `json:"state"`
	Group       string            `json:"group"`
	File        string            `json:"file"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Value       float64           `json:"value"`
	ActiveAt    time.Time         `json:"active_at"`
	Expr        string            `json:"expr"`
}

func stateEvent(r *record, state string, ann map[string]string, v float64, ts time.Time) event.Event {
	activeAt := time.Unix(r.ActiveAt, 0).UTC()
	sc := StateChange{Alert: r.Alert, State: state, Group: r.Group, File: r.File, Labels: r.Labels, Value: v,
		ActiveAt: activeAt, Expr: r.Expr}
	if len(ann) > 0 {
		sc.Annotations = ann
	}
	b, _ := json.Marshal(sc)
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d\x00%s", r.Rule, labels.FromMap(r.Labels).Hash(), r.ActiveAt, state))
	e := event.NewJSON("/ops/alert", "alert."+state, b)
	e.ID = "alert-" + hex.EncodeToString(h[:16])
	e.Subject = r.Alert
	e.Time = ts.UTC()
	return e
}
