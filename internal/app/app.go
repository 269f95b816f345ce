package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/opsgraph/ops/internal/analytics"
	"github.com/opsgraph/ops/internal/api"
	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/collector"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/cqrs"
	"github.com/opsgraph/ops/internal/deploy"
	"github.com/opsgraph/ops/internal/dnsd"
	"github.com/opsgraph/ops/internal/forward"
	"github.com/opsgraph/ops/internal/graph"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/logging"
	"github.com/opsgraph/ops/internal/moderate"
	"github.com/opsgraph/ops/internal/phish"
	"github.com/opsgraph/ops/internal/pipeline"
	"github.com/opsgraph/ops/internal/policy"
	"github.com/opsgraph/ops/internal/proxy"
	"github.com/opsgraph/ops/internal/ui"
	"github.com/opsgraph/ops/internal/views"
)

// Build information, set by main from -ldflags.
var (
	Version = "dev"
	Commit  = ""
)

// CommitOrVCS returns Commit, or the VCS revision Go embedded in the binary.
func CommitOrVCS() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// App is one Ops process: its config, loggers, metrics and modules.
type App struct {
	cfg     *config.Config
	logs    *logging.Levels
	log     *slog.Logger
	reg     *prometheus.Registry
	mgr     *Manager
	graph   *graph.Graph
	started time.Time

	bus      *bus.Module
	identity *identity.Module
	tsdbHolder
	proxy     *proxy.Module
	deploy    atomic.Pointer[deploy.Module] // for the chat's /deploys
	collector *collector.Module

	reloadMu sync.Mutex
	reloader func() (*config.Config, error)
	api      *api.Module
	// analytics is set when the analytics module is built (the UI checks
	// shared links with it).
	analytics atomic.Pointer[analytics.Module]
	dns       atomic.Pointer[dnsd.Server] // for tests: its listeners' addresses
	forward   atomic.Pointer[forward.Proxy]
	phish     atomic.Pointer[phish.Module]
	moderate  atomic.Pointer[moderate.Module]
	// apiReady is closed when the api module is constructed, for Addr.
	apiReady chan struct{}
}

// New prepares an app; nothing starts until Run.
func New(cfg *config.Config, logs *logging.Levels) (*App, error) {
	g, err := graph.Compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("graph:\n%w", err)
	}
	a := &App{cfg: cfg, logs: logs, log: logs.Logger("app"), reg: prometheus.NewRegistry(), apiReady: make(chan struct{}), graph: g}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mgr, err := NewManager(a.log, a.defs())
	if err != nil {
		return nil, err
	}
	a.mgr = mgr
	return a, nil
}

// defs is the one place modules are listed with their dependencies.
func (a *App) defs() []Def {
	return []Def{
		{Name: "bus", Requires: func(targets []string) error {
			// Alone, a bus serves only whoever can connect to it.
			if len(targets) == 1 && a.cfg.Bus.Listen == "" {
				return errors.New("a bus on its own needs bus.listen (OPS_BUS_LISTEN), or nothing can reach it; run it with the modules that use it, or point those at bus.url")
			}
			return nil
		}, New: func() (Module, error) {
			m, err := bus.New(a.cfg.Bus, bus.Deps{DataDir: a.cfg.DataDir, Logger: a.logs.Logger("bus"), Registry: a.reg})
			a.bus = m
			return m, err
		}},
		{Name: "identity", Deps: []string{"bus"}, New: func() (Module, error) {
			s := &settler{a: a}
			m, err := identity.New(a.cfg.Identity, identity.Deps{
				Bus: a.bus.Bus(), Logger: a.logs.Logger("identity"), Registry: a.reg, DataDir: a.cfg.DataDir, Trusted: a.cfg.Collector.TrustedProxies,
				Settle: s.settle,
			})
			a.identity = m
			return m, err
		}},
		{Name: "api", Deps: []string{"bus", "identity"}, New: func() (Module, error) {
			m, err := api.New(a.cfg.HTTP, api.Deps{
				Bus: a.bus.Bus(), Logger: a.logs.Logger("api"), Logs: a.logs, Registry: a.reg,
				Status: a.status, Ready: a.ready, MaxEventSz: int(a.cfg.Events.MaxBytes), Graph: a.graphJSON,
				Auth:   a.identity,
				Mounts: []func(func(string, string, http.Handler)){func(h func(string, string, http.Handler)) { a.identity.Mount(h) }},
			})
			if err == nil {
				a.api = m
				close(a.apiReady)
			}
			return m, err
		}},
		// policy applies ev.policy.* to the POLICY bucket that logins (and
		// the proxy) consult.
		{Name: "policy", Deps: []string{"bus", "api"}, New: func() (Module, error) {
			return policy.New(policy.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("policy"), Handle: a.api.Handle, Cleared: a.identity.ClearThrottle,
				Actor: actor})
		}},
		// pipeline and views always run: nodes can be created through the
		// API at any time. Idle, each is one KV watch.
		{Name: "pipeline", Deps: []string{"bus", "api"},
			New: func() (Module, error) {
				return pipeline.New(pipeline.Deps{Bus: a.bus.Bus(), Config: a.cfg, Logger: a.logs.Logger("pipeline"), Registry: a.reg, Handle: a.api.Handle,
					Allowed: a.identity.Allowed})
			}},
		{Name: "views", Deps: []string{"bus", "api"},
			New: func() (Module, error) {
				return views.New(views.Deps{Bus: a.bus.Bus(), Config: a.cfg, Logger: a.logs.Logger("views"), Registry: a.reg, Handle: a.api.Handle,
					Allowed: a.identity.Allowed})
			}},
		{Name: "cqrs", Deps: []string{"bus", "api"}, New: func() (Module, error) {
			return cqrs.New(a.graph, cqrs.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("cqrs"), Handle: a.api.Handle})
		}},
		// The collector always runs: write keys may come from the API.
		{Name: "collector", Deps: []string{"bus", "api"},
			New: func() (Module, error) {
				m, err := collector.New(a.cfg.Collector, collector.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("collector"), Handle: a.api.Handle})
				a.collector = m
				return m, err
			}},
		{Name: "coap", Deps: []string{"bus"}, Enabled: func() bool { return a.cfg.CoAP.Listen != "" },
			Requires: func([]string) error {
				if a.cfg.CoAP.Listen == "" {
					return errors.New("coap needs coap.listen (OPS_COAP_LISTEN), e.g. 127.0.0.1:5683")
				}
				return nil
			},
			New: func() (Module, error) {
				return collector.NewCoAP(a.cfg.CoAP.Listen, a.cfg.Collector, a.bus.Bus(), a.logs.Logger("coap")), nil
			}},
		// moderate is forum moderation: POST /api/v1/moderate and the
		// routes with moderate set.
		{Name: "moderate", Deps: []string{"bus", "api"}, Enabled: func() bool { return a.cfg.ModerationEnabled() },
			New: func() (Module, error) {
				m, err := moderate.New(a.cfg.Moderation, moderate.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("moderate"), Registry: a.reg,
					DataDir: a.cfg.DataDir, Handle: a.api.Handle, Actor: actor})
				if err == nil {
					a.moderate.Store(m)
				}
				return m, err
			}},
		{Name: "proxy", Deps: []string{"bus", "identity", "api", "collector", "moderate"}, Enabled: func() bool { return len(a.cfg.Proxy.Routes) > 0 },
			Requires: func([]string) error {
				if len(a.cfg.Proxy.Routes) == 0 {
					return errors.New("proxy needs proxy.routes in the config file (docs/proxy.md)")
				}
				return nil
			},
			New: func() (Module, error) {
				m, err := proxy.New(a.cfg.Proxy, proxy.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("proxy"), Registry: a.reg,
					DataDir: a.cfg.DataDir, Auth: a.identity, Local: a.api.Handler(), OutboundLink: a.collector.OutboundLink,
					Handle: a.api.Handle, Reload: a.Reload, Moderator: a.moderator(), DoH: func() http.Handler {
						if d := a.dns.Load(); d != nil {
							return d.DoHHandler()
						}
						return nil
					}})
				if err == nil {
					a.proxy = m
				}
				return m, err
			}},
		// analytics folds ev.track.* into the web and product analytics
		// reports.
		{Name: "analytics", Deps: []string{"bus", "api"}, Enabled: func() bool { return a.cfg.Analytics.Enabled },
			New: func() (Module, error) {
				m, err := analytics.New(a.cfg.Analytics, analytics.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("analytics"), Handle: a.api.Handle, SMTP: a.cfg.SMTP})
				a.analytics.Store(m)
				return m, err
			}},
		// deploy records deployments and hosts' heartbeats.
		{Name: "deploy", Deps: []string{"bus", "api"}, Enabled: func() bool { return a.cfg.Deploy.Enabled },
			New: func() (Module, error) {
				m, err := deploy.New(a.cfg.Deploy, deploy.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("deploy"), Registry: a.reg, Handle: a.api.Handle,
					Actor: actor})
				if err == nil {
					a.deploy.Store(m)
				}
				return m, err
			}},
		// dns is the resolver; it runs when dns.upstreams are set.
		{Name: "dns", Deps: []string{"bus", "api", "identity", "phish"}, Enabled: func() bool { return len(a.cfg.DNS.Upstreams) > 0 },
			New: func() (Module, error) {
				m, err := dnsd.New(a.cfg.DNS, dnsd.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("dns"), Registry: a.reg, DataDir: a.cfg.DataDir,
					Handle: a.api.Handle, ClientIP: a.identity.ClientIP, Phish: a.phishChecker()})
				if err == nil {
					a.dns.Store(m)
				}
				return m, err
			}},
		// phish is phishing protection (phishing.protect, phishing.feeds),
		// asked by the forward proxy.
		{Name: "phish", Deps: []string{"api"}, Enabled: func() bool { return a.cfg.Phishing.Enabled() },
			New: func() (Module, error) {
				m, err := phish.NewModule(a.cfg.Phishing, phish.Deps{Logger: a.logs.Logger("phish"), DataDir: a.cfg.DataDir, Handle: a.api.Handle})
				if err == nil {
					a.phish.Store(m)
				}
				return m, err
			}},
		// forward is the office's explicit forward proxy (proxy.forward).
		{Name: "forward", Deps: []string{"bus", "api", "identity", "phish"}, Enabled: func() bool { return a.cfg.Proxy.Forward.Listen != "" },
			New: func() (Module, error) {
				pc := a.phishChecker()
				m, err := forward.New(a.cfg.Proxy.Forward, forward.Deps{Bus: a.bus.Bus(), Logger: a.logs.Logger("forward"), Registry: a.reg,
					DataDir: a.cfg.DataDir, Auth: a.identity, Handle: a.api.Handle, Phish: pc})
				if err == nil {
					a.forward.Store(m)
				}
				return m, err
			}},
		a.tsdbDef(),  // tsdb.go, or notsdb.go in a build with -tags notsdb
		a.alertDef(), // the same
		// ui is the web UI: pages and embedded assets, nothing running.
		{Name: "ui", Deps: []string{"api", "identity"}, New: func() (Module, error) {
			return ui.New(ui.Deps{Logger: a.logs.Logger("ui"), Handle: a.api.Handle, Allowed: a.identity.Allowed,
				SetupCode: a.identity.SetupCode, Addr: a.APIAddr, Running: a.running, Shared: a.shared}), nil
		}},
		{Name: "all", Deps: []string{"bus", "identity", "api", "policy", "proxy", "pipeline", "views", "cqrs", "collector", "coap", "tsdb", "alert", "analytics", "deploy", "dns", "phish", "forward", "moderate", "ui"}},
	}
}

// phishChecker is phishing protection's checker, or nil when it is off.
func (a *App) phishChecker() *phish.Checker {
	if m := a.phish.Load(); m != nil {
		return m.Checker()
	}
	return nil
}

// moderator is the moderation module for the proxy, or nil when it is
// off (a nil *moderate.Module must not become a non-nil interface).
func (a *App) moderator() proxy.Moderator {
	if m := a.moderate.Load(); m != nil {
		return m
	}
	return nil
}

// actor names who made a request, for the records modules keep.
func actor(r *http.Request) string {
	if id := identity.FromContext(r.Context()); id != nil {
		return id.User
	}
	return ""
}

// shared checks a shared dashboard link (analytics.Module.Shared).
func (a *App) shared(ctx context.Context, token string) (name, site string, err error) {
	m := a.analytics.Load()
	if m == nil {
		return "", "", analytics.ErrNoShare
	}
	sh, err := m.Shared(ctx, token)
	if err != nil {
		return "", "", err
	}
	return sh.Name, sh.Site, nil
}

// running reports whether the module called name was started and has not
// stopped or failed.
func (a *App) running(name string) bool {
	for _, s := range a.mgr.Statuses() {
		if s.Name == name {
			return s.State != StateFailed && s.State != StateStopped
		}
	}
	return false
}

// Targets lists the module names that --target accepts.
func (a *App) Targets() []string { return a.mgr.Names() }

// TargetNames lists the module names --target accepts, without an app
// (for help texts): the names of defs, which construct nothing until run.
func TargetNames() []string {
	var names []string
	for _, d := range (&App{}).defs() {
		names = append(names, d.Name)
	}
	slices.Sort(names)
	return names
}

// Run starts targets and blocks until ctx ends or a module fails.
func (a *App) Run(ctx context.Context, targets []string) error {
	a.started = time.Now()
	if a.cfg.DataDir != "" {
		if err := os.MkdirAll(a.cfg.DataDir, 0o750); err != nil {
			return err
		}
		release, err := lockDataDir(a.cfg.DataDir)
		if err != nil {
			a.log.Error("not starting", "err", err)
			return err
		}
		defer release()
	}
	a.log.Info("starting", "version", Version, "targets", targets, "data_dir", a.cfg.DataDir, "config_hash", a.cfg.Hash())
	tctx, tcancel := context.WithCancel(ctx)
	defer tcancel()
	go a.trimWhenIdle(tctx)
	err := a.mgr.Run(ctx, targets)
	if err != nil && !errors.Is(err, context.Canceled) {
		a.log.Error("stopped with error", "err", err)
		return err
	}
	a.log.Info("stopped")
	return nil
}

// trimWhenIdle gives the memory a burst of work left behind back to the
// system once the bus has been quiet for idleTrim: Go's runtime keeps
// freed heap for reuse and returns it only slowly, so after a burst Ops
// would otherwise sit far above its idle footprint for many minutes.
func (a *App) trimWhenIdle(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	var trimmed time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.bus == nil {
			continue
		}
		b := a.bus.Bus()
		if b == nil {
			continue
		}
		last := b.LastWrite()
		if last.IsZero() || time.Since(last) < idleTrim || !trimmed.Before(last) {
			continue
		}
		debug.FreeOSMemory()
		trimmed = time.Now()
		a.log.Debug("idle: returned freed memory to the system")
	}
}

// idleTrim is how long the bus must be quiet before freed memory is
// returned.
const idleTrim = 30 * time.Second

// APIAddr waits for the api module and returns its bound address.
func (a *App) APIAddr(ctx context.Context) (net.Addr, error) {
	select {
	case <-a.apiReady:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		if addr := a.api.Addr(); addr != nil {
			return addr, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// Statuses is each module's state.
func (a *App) Statuses() []Status { return a.mgr.Statuses() }

func (a *App) ready() (bool, any) { return a.mgr.Ready(), a.mgr.Statuses() }

func (a *App) status() api.Status {
	s := api.Status{
		Version: Version, Commit: CommitOrVCS(), Modules: a.mgr.Statuses(),
		StartedAt: a.started.UTC(), Uptime: time.Since(a.started).Seconds(), ConfigHash: a.cfg.Hash(),
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.Process = api.Process{RSS: rss(), Heap: ms.HeapInuse, Sys: ms.Sys, Goroutines: runtime.NumGoroutine()}
	if b := a.bus.Bus(); b != nil {
		if dir, free, total, ok := b.Disk(); ok {
			s.Disk = &api.Disk{Dir: dir, Free: free, Total: total}
		}
		s.Bus = api.BusInfo{Embedded: b.Embedded(), ClientURL: b.ClientURL(), Sync: a.cfg.Bus.Sync.String()}
		if !b.Embedded() {
			s.Bus.Sync = "set by the external server"
		}
	}
	return s
}

// statusText is the status in a few lines (the chat bot's /status).
func (a *App) statusText() string {
	s := a.status()
	var b strings.Builder
	fmt.Fprintf(&b, "Ops %s, up %s\n", s.Version, (time.Duration(s.Uptime) * time.Second).Round(time.Second))
	for _, m := range a.mgr.Statuses() {
		fmt.Fprintf(&b, "%s: %s", m.Name, m.State)
		if m.Error != "" {
			fmt.Fprintf(&b, " (%s)", m.Error)
		}
		b.WriteString("\n")
	}
	if s.Disk != nil {
		fmt.Fprintf(&b, "disk: %.1f of %.1f GiB free\n", float64(s.Disk.Free)/(1<<30), float64(s.Disk.Total)/(1<<30))
	}
	fmt.Fprintf(&b, "memory: %.0f MiB RSS\n", float64(s.Process.RSS)/(1<<20))
	return b.String()
}

// rss is the resident set size from /proc/self/statm (0 where there is
// none).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(f[1], 10, 64)
	return n * uint64(os.Getpagesize())
}

// Bus is the open bus, nil before the bus module runs.
func (a *App) Bus() *bus.Bus {
	if a.bus == nil {
		return nil
	}
	return a.bus.Bus()
}

// graphJSON is the graph as ops.yaml and the API define it now.
func (a *App) graphJSON() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := a.Bus()
	if b == nil {
		return a.graph.JSON()
	}
	store, err := graph.OpenStore(ctx, b, a.cfg)
	if err != nil {
		return nil, err
	}
	g, err := store.Graph(ctx)
	if err != nil {
		return nil, err
	}
	return g.JSON()
}

// SetReloader sets how Reload re-reads the config (the CLI's file, env
// and flags).
func (a *App) SetReloader(f func() (*config.Config, error)) {
	a.reloadMu.Lock()
	a.reloader = f
	a.reloadMu.Unlock()
}

// Reload re-reads the config and applies what can change while running:
// the proxy's routes and the alert rule files. Everything else needs a restart; a config that does
// not validate changes nothing.
func (a *App) Reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.reloader == nil {
		return errors.New("no config source to reload from")
	}
	cfg, err := a.reloader()
	if err != nil {
		return err
	}
	if err := a.reloadAlerts(cfg.Alert); err != nil {
		return err
	}
	if a.proxy != nil {
		if err := a.proxy.Reload(cfg.Proxy); err != nil {
			return err
		}
	}
	a.log.Info("reloaded", "config_hash", cfg.Hash())
	return nil
}

// Routes lists the API's routes and their permissions (nil before the api
// module is constructed).
func (a *App) Routes() []api.Route {
	if a.api == nil {
		return nil
	}
	return a.api.Routes()
}

// Proxy returns the proxy module once constructed (nil when not running).
func (a *App) Proxy() *proxy.Module { return a.proxy }

// DNS is the dns module once built (nil when it is off), for tests.
func (a *App) DNS() *dnsd.Server { return a.dns.Load() }

// Forward is the forward proxy, once built (nil when not configured).
func (a *App) Forward() *forward.Proxy { return a.forward.Load() }
