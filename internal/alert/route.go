package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	amalert "github.com/prometheus/alertmanager/alert"
	amconfig "github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/alertmanager/eventrecorder"
	"github.com/prometheus/alertmanager/featurecontrol"
	"github.com/prometheus/alertmanager/inhibit"
	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/alertmanager/provider/mem"
	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/timeinterval"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/util/strutil"
	"golang.org/x/time/rate"

	"github.com/opsgraph/ops/internal/event"
)

// router is Alertmanager's notification side, run in-process from its
// own packages: the routing tree (grouping, group_wait, group_interval,
// repeat_interval), inhibition, silences, the notification log and every
// receiver Alertmanager has (webhook, e-mail, Telegram, Slack, ...), with
// its retries. The config is an alertmanager.yml, unchanged.
type router struct {
	log      *slog.Logger
	file     string
	ext      *url.URL
	alerts   *mem.Alerts
	silences *silence.Silences
	silencer *silence.Silencer
	nflog    *nflog.Log
	pipeline *notify.PipelineBuilder
	dm       *dispatch.DispatcherMetrics
	rec      eventrecorder.Recorder
	silFile  string
	// bot is Ops's Telegram bot while it runs, which sends with buttons.
	bot func() *chat
	// publish stores events (the dead letter of notifications).
	publish func(context.Context, []event.Event) error
	stopc   chan struct{}
	wg      sync.WaitGroup

	// perMinute is alert.receiver_rate; limits are each receiver's
	// bucket, kept across reloads.
	perMinute int
	limits    map[string]*rate.Limiter

	mu         sync.Mutex // the dispatcher and inhibitor, swapped on reload
	dispatcher *dispatch.Dispatcher
	inhibitor  *inhibit.Inhibitor
	start      time.Time
}

// maintenance is how often silences and the notification log are
// written to disk by Alertmanager's own loop (silences are also written
// at once after every change made through Ops).
const maintenance = time.Minute

func newRouter(file, dir string, ext *url.URL, log *slog.Logger, reg prometheus.Registerer, publish func(context.Context, []event.Event) error, perMinute int, bot func() *chat) (*router, error) {
	conf, err := amconfig.LoadFile(file)
	if err != nil {
		return nil, fmt.Errorf("alert.alertmanager_config: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ff, err := featurecontrol.NewFlags(log, "")
	if err != nil {
		return nil, err
	}
	r := &router{log: log, file: file, ext: ext, rec: eventrecorder.NopRecorder(), silFile: filepath.Join(dir, "silences"),
		stopc: make(chan struct{}), start: time.Now(), publish: publish, perMinute: perMinute, limits: map[string]*rate.Limiter{}, bot: bot}
	r.nflog, err = nflog.New(nflog.Options{SnapshotFile: filepath.Join(dir, "nflog"), Retention: 120 * time.Hour, Logger: log.With("component", "nflog"), Metrics: reg})
	if err != nil {
		return nil, err
	}
	r.silences, err = silence.New(silence.Options{SnapshotFile: r.silFile, Retention: 120 * time.Hour, Logger: log.With("component", "silences"),
		Metrics: reg, EventRecorder: r.rec})
	if err != nil {
		return nil, err
	}
	r.silencer = silence.NewSilencer(r.silences, log, r.rec)
	r.alerts, err = mem.NewAlerts(context.Background(), 30*time.Minute, 0, r.silencer, log, r.rec, reg, ff)
	if err != nil {
		return nil, err
	}
	r.pipeline = notify.NewPipelineBuilder(reg, ff, r.rec)
	r.dm = dispatch.NewDispatcherMetrics(false, reg, ff)
	r.wg.Go(func() { r.nflog.Maintenance(maintenance, filepath.Join(dir, "nflog"), r.stopc, nil) })
	r.wg.Go(func() { r.silences.Maintenance(maintenance, r.silFile, r.stopc, nil) })
	if err := r.apply(conf); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

// checkAlertmanagerConfig reads an alertmanager.yml as a start would.
func checkAlertmanagerConfig(file string) error {
	conf, err := amconfig.LoadFile(file)
	if err != nil {
		return fmt.Errorf("alert.alertmanager_config: %w", err)
	}
	tmpl, err := template.FromGlobs(conf.Templates)
	if err != nil {
		return fmt.Errorf("alert.alertmanager_config: templates: %w", err)
	}
	for _, rc := range conf.Receivers {
		if _, err := buildReceiver(rc, tmpl, slog.New(slog.DiscardHandler), nil, nil); err != nil {
			return fmt.Errorf("alert.alertmanager_config: %w", err)
		}
	}
	return nil
}

// apply builds the routing tree, receivers, inhibitor and dispatcher of
// conf and swaps them in (as Alertmanager's reload does); an error leaves
// the running ones in place.
func (r *router) apply(conf *amconfig.Config) error {
	tmpl, err := template.FromGlobs(conf.Templates)
	if err != nil {
		return fmt.Errorf("alert.alertmanager_config: templates: %w", err)
	}
	tmpl.ExternalURL = r.ext
	routes := dispatch.NewRoute(conf.Route, nil)
	active := map[string]bool{}
	routes.Walk(func(rt *dispatch.Route) { active[rt.RouteOpts.Receiver] = true })
	receivers := map[string][]notify.Integration{}
	for _, rcv := range conf.Receivers {
		if !active[rcv.Name] {
			continue
		}
		ints, err := buildReceiver(rcv, tmpl, r.log, r.limiter(rcv.Name), r.bot)
		if err != nil {
			return fmt.Errorf("alert.alertmanager_config: receiver %s: %w", rcv.Name, err)
		}
		receivers[rcv.Name] = ints
	}
	intervals := map[string][]timeinterval.TimeInterval{}
	for _, ti := range conf.MuteTimeIntervals {
		intervals[ti.Name] = ti.TimeIntervals
	}
	for _, ti := range conf.TimeIntervals {
		intervals[ti.Name] = ti.TimeIntervals
	}
	intervener := timeinterval.NewIntervener(intervals)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inhibitor != nil {
		r.inhibitor.Stop()
	}
	if r.dispatcher != nil {
		r.dispatcher.Stop()
	}
	inh := inhibit.NewInhibitor(r.alerts, conf.InhibitRules, r.log, r.rec)
	wait := func() time.Duration { return 0 }
	pipeline := undelivered{Stage: r.pipeline.New(receivers, wait, inh, r.silencer, intervener, r.nflog, nil), r: r}
	timeout := func(d time.Duration) time.Duration { return max(d, notify.MinTimeout) }
	d := dispatch.NewDispatcher(r.alerts, routes, pipeline, intervener, timeout, 30*time.Second, nil, r.log, r.rec, r.dm, tmpl)
	go inh.Run()
	inh.WaitForLoading()
	go d.Run(r.start)
	d.WaitForLoading()
	r.inhibitor, r.dispatcher = inh, d
	return nil
}

// reload re-reads the config file.
func (r *router) reload() error {
	conf, err := amconfig.LoadFile(r.file)
	if err != nil {
		return fmt.Errorf("alert.alertmanager_config: %w", err)
	}
	return r.apply(conf)
}

func (r *router) stop() {
	r.mu.Lock()
	if r.inhibitor != nil {
		r.inhibitor.Stop()
	}
	if r.dispatcher != nil {
		r.dispatcher.Stop()
	}
	r.mu.Unlock()
	close(r.stopc)
	r.wg.Wait()
	r.alerts.Close()
	if err := r.saveSilences(); err != nil {
		r.log.Warn("silences not saved", "err", err)
	}
}

// notify is the rule manager's NotifyFunc: alerts as Prometheus sends
// them to an Alertmanager (cmd/prometheus sendAlerts), put straight into
// the alert store.
func (r *router) notify(ctx context.Context, expr string, alerts ...*rules.Alert) {
	now := time.Now()
	out := make([]*amalert.Alert, 0, len(alerts))
	gen := r.ext.String() + strutil.TableLinkForExpression(expr)
	for _, a := range alerts {
		ma := model.Alert{Labels: model.LabelSet{}, Annotations: model.LabelSet{}, StartsAt: a.FiredAt, GeneratorURL: gen}
		a.Labels.Range(func(l labels.Label) { ma.Labels[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
		a.Annotations.Range(func(l labels.Label) { ma.Annotations[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
		if !a.ResolvedAt.IsZero() {
			ma.EndsAt = a.ResolvedAt
		} else {
			ma.EndsAt = a.ValidUntil
		}
		if err := ma.Validate(); err != nil {
			r.log.Warn("alert not routed", "alert", ma.Name(), "err", err)
			continue
		}
		out = append(out, amalert.New(ma, now, false))
	}
	if len(out) == 0 {
		return
	}
	if err := r.alerts.Put(ctx, out...); err != nil {
		r.log.Warn("alerts not routed", "n", len(out), "err", err)
	}
}

// saveSilences writes the silences' snapshot (fsynced, then renamed over
// the old one), so a silence acknowledged through Ops survives kill -9.
func (r *router) saveSilences() error {
	tmp := r.silFile + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := r.silences.Snapshot(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, r.silFile)
}

var errNoRouting = errors.New("no alert routing: set alert.alertmanager_config to an alertmanager.yml")

// undelivered wraps the notification pipeline: a notification that a
// receiver never took, after Alertmanager's retries for that flush, is
// recorded as an event ev.alert.undelivered (the dead letter), so it is
// seen, kept and can be acted on; Alertmanager tries again at the next
// group_interval as it always does.
type undelivered struct {
	notify.Stage
	r *router
}

// Undelivered is the data of an ev.alert.undelivered event.
type Undelivered struct {
	Receiver string            `json:"receiver"`
	GroupKey string            `json:"group_key"`
	Error    string            `json:"error"`
	Alerts   []UndeliveredItem `json:"alerts"`
}

// UndeliveredItem is one alert of an undelivered notification.
type UndeliveredItem struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Status      string            `json:"status"`
	StartsAt    time.Time         `json:"starts_at"`
	Fingerprint string            `json:"fingerprint"`
}

func (u undelivered) Exec(ctx context.Context, l *slog.Logger, alerts ...*amalert.Alert) (context.Context, []*amalert.Alert, error) {
	ctx2, out, err := u.Stage.Exec(ctx, l, alerts...)
	if err == nil || errors.Is(err, context.Canceled) || u.r.publish == nil {
		return ctx2, out, err
	}
	d := Undelivered{Error: err.Error()}
	d.Receiver, _ = notify.ReceiverName(ctx)
	d.GroupKey, _ = notify.GroupKey(ctx)
	for _, a := range alerts {
		it := UndeliveredItem{Labels: map[string]string{}, Status: string(a.Status()), StartsAt: a.StartsAt, Fingerprint: a.Fingerprint().String()}
		for k, v := range a.Labels {
			it.Labels[string(k)] = string(v)
		}
		if len(a.Annotations) > 0 {
			it.Annotations = map[string]string{}
			for k, v := range a.Annotations {
				it.Annotations[string(k)] = string(v)
			}
		}
		d.Alerts = append(d.Alerts, it)
	}
	b, _ := json.Marshal(d)
	e := event.NewJSON("/ops/alert", "alert.undelivered", b)
	e.Subject = d.Receiver
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if perr := u.r.publish(pctx, []event.Event{e}); perr != nil {
		u.r.log.Warn("undelivered notification not recorded", "receiver", d.Receiver, "err", perr)
	}
	return ctx2, out, err
}

// limiter is the receiver's rate limit (nil without alert.receiver_rate).
// Called with r.mu held or before the router is shared.
func (r *router) limiter(name string) *rate.Limiter {
	if r.perMinute <= 0 {
		return nil
	}
	if l := r.limits[name]; l != nil {
		return l
	}
	l := rate.NewLimiter(rate.Limit(float64(r.perMinute)/60), r.perMinute)
	r.limits[name] = l
	return l
}
