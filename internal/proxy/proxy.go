package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/evqueue"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/reply"
)

// Authenticator is the identity module as the proxy sees it.
type Authenticator interface {
	Identify(w http.ResponseWriter, r *http.Request) (*identity.Identity, error)
	Unauthenticated(w http.ResponseWriter, r *http.Request, prefix string, err error)
}

// Deps are what the proxy needs from the app.
type Deps struct {
	Bus      *bus.Bus
	Logger   *slog.Logger
	Registry prometheus.Registerer
	DataDir  string
	Auth     Authenticator
	// Local serves /_ops/ paths (the API module's handler, in process).
	Local http.Handler
	// OutboundLink signs a redirect to target (for rewrite_links); it
	// returns a path that Local serves.
	OutboundLink func(ctx context.Context, target, from string) (string, error)
	// Handle mounts the proxy's API routes (reload, purge); may be nil.
	Handle func(pattern, perm string, h http.Handler)
	// Reload re-reads the config and applies it (the app's reload, which
	// calls Module.Reload with the new proxy section).
	Reload func() error
	// DoH is the resolver's DNS over HTTPS handler once it runs (nil
	// before, or without one): /_ops/dns-query goes to it directly, not
	// through Local's router and middleware (a DoH client asks a query
	// per request, and the router cost a tenth of one).
	DoH func() http.Handler
	// Moderator checks posts on routes with moderate set (nil: the
	// moderation module is off, and such posts pass unchecked).
	Moderator Moderator
}

// Module is the edge proxy.
type Module struct {
	deps    Deps
	log     *slog.Logger
	cfg     atomic.Pointer[config.Proxy]
	table   atomic.Pointer[table]
	track   *evqueue.Queue
	policy  *policyCache
	metrics *metrics
	// handoffN counts the fast path's hand-offs (ops_proxy_fast_handoffs_total).
	handoffN atomic.Int64
	// policyRate enforces POLICY rate entries per (anonymised) address.
	policyRate *limiter

	cacheMu sync.Mutex
	cache   *cacheStore // opened by the first route with cache: true

	// paths are the most requested paths (toppaths.go).
	paths topPaths

	mu      sync.Mutex
	addrs   []net.Addr
	stopOld context.CancelFunc // ends the current table's health checks
	runCtx  context.Context
	servers []*http.Server // TLS listeners
	fast    []fastListener // plain listeners
}

type fastListener struct {
	s  *fastServer
	ln net.Listener
}

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	aclHits  *prometheus.CounterVec
	limited  *prometheus.CounterVec
	upstream *prometheus.GaugeVec
	handoffs prometheus.CounterFunc
	cache    *prometheus.CounterVec
}

// newMetrics makes the proxy's metrics; handoffs reads the fast path's
// hand-off count.
func newMetrics(handoffs func() float64) *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_proxy_requests_total", Help: "Proxied requests by route and status code."}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ops_proxy_request_seconds", Help: "Time from request to the end of the response, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10)}, []string{"route"}),
		aclHits:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_proxy_acl_hits_total", Help: "ACL decisions by route, rule index (default for none) and action."}, []string{"route", "rule", "action"}),
		limited:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_proxy_rate_limited_total", Help: "Requests refused with 429 by route and key kind."}, []string{"route", "by"}),
		upstream: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ops_proxy_upstream_up", Help: "1 when an upstream passes health checks."}, []string{"route", "upstream"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_proxy_cache_lookups_total",
			Help: "Requests on cached routes by route and cache result (hit, stale, revalidated, miss, expired, bypass, ...)."}, []string{"route", "result"}),
		handoffs: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ops_proxy_fast_handoffs_total",
			Help: "Client connections the fast path handed to the standard HTTP server (a request it does not serve itself)."}, handoffs),
	}
}

// New builds the proxy from cfg.
func New(cfg config.Proxy, deps Deps) (*Module, error) {
	if deps.Bus == nil || deps.Auth == nil || deps.Local == nil {
		return nil, errors.New("proxy needs the bus, identity and the API handler")
	}
	m := &Module{deps: deps, log: deps.Logger, policyRate: newLimiter(1, config.RateLimit{Burst: 1})}
	m.metrics = newMetrics(func() float64 { return float64(m.handoffN.Load()) })
	if deps.Registry != nil {
		deps.Registry.MustRegister(m.metrics.requests, m.metrics.latency, m.metrics.aclHits, m.metrics.limited, m.metrics.upstream, m.metrics.handoffs, m.metrics.cache)
	}
	t, err := evqueue.Open(evqueue.Options{Bus: deps.Bus, Log: deps.Logger.With("part", "tracking"), Dir: filepath.Join(deps.DataDir, "proxy-spool"),
		Queue: cfg.Tracking.Queue, Batch: cfg.Tracking.Batch, Flush: cfg.Tracking.Flush.D(), SpoolMax: int64(cfg.Tracking.SpoolMax),
		Name: "proxy", What: "request events", Registry: deps.Registry})
	if err != nil {
		return nil, fmt.Errorf("proxy spool: %w", err)
	}
	m.track = t
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m.policy, err = openPolicy(ctx, deps.Bus, deps.Logger); err != nil {
		return nil, err
	}
	tb, err := m.build(cfg)
	if err != nil {
		return nil, err
	}
	m.cfg.Store(&cfg)
	m.table.Store(tb)
	if deps.Handle != nil {
		if deps.Reload != nil {
			deps.Handle("POST /api/v1/proxy/reload", "system:write", http.HandlerFunc(m.reloadHandler))
		}
		deps.Handle("POST /api/v1/proxy/purge", "cache:write", http.HandlerFunc(m.purgeHandler))
		deps.Handle("GET /api/v1/proxy/paths", "series:read", http.HandlerFunc(m.pathsHandler))
	}
	return m, nil
}

func (m *Module) reloadHandler(w http.ResponseWriter, r *http.Request) {
	if err := m.deps.Reload(); err != nil {
		reply.Error(w, http.StatusBadRequest, "config", err.Error())
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"reloaded": true})
}

// purgeHandler serves POST /api/v1/proxy/purge {"url": ...} or {"prefix": ...}.
func (m *Module) purgeHandler(w http.ResponseWriter, r *http.Request) {
	var req struct {
		URL    string `json:"url"`
		Prefix string `json:"prefix"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10)).Decode(&req); err != nil {
		reply.Error(w, http.StatusBadRequest, "body", "want JSON {\"url\": ...} or {\"prefix\": ...}: "+err.Error())
		return
	}
	u, prefix := req.URL, false
	if req.Prefix != "" {
		u, prefix = req.Prefix, true
	}
	if req.URL != "" && req.Prefix != "" || !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		reply.Error(w, http.StatusBadRequest, "url", "set url or prefix (not both) to an absolute http(s) URL as clients request it, e.g. https://example.com/img/")
		return
	}
	reply.JSON(w, http.StatusOK, map[string]any{"purged": m.Purge(u, prefix)})
}

// Run listens on proxy.listen and proxy.tls_listen until ctx ends, then
// drains in-flight requests and publishes the queued events.
func (m *Module) Run(ctx context.Context, ready func()) error {
	cfg := m.cfg.Load()
	tctx, tcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer tcancel()
	trackDone := make(chan struct{})
	go func() { defer close(trackDone); m.track.Run(tctx) }()
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go m.policy.watch(pctx)

	m.mu.Lock()
	m.runCtx = ctx
	m.startChecks(m.table.Load())
	m.mu.Unlock()

	errc := make(chan error, 2)
	var lns []net.Listener
	listen := func(addr string, tlsCfg *tls.Config) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("proxy listen %s: %w", addr, err)
		}
		if tlsCfg != nil {
			ln = tls.NewListener(ln, tlsCfg)
		}
		srv := &http.Server{
			Handler: m, ReadHeaderTimeout: cfg.ReadHeaderTimeout.D(), IdleTimeout: cfg.IdleTimeout.D(),
			MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn), TLSConfig: tlsCfg,
		}
		lns = append(lns, ln)
		m.mu.Lock()
		m.addrs = append(m.addrs, ln.Addr())
		if tlsCfg == nil {
			// Plain HTTP: the fast path takes connections first and hands
			// the standard server those it does not serve.
			fs := newFastServer(m, ln, srv, cfg.ReadHeaderTimeout.D(), cfg.IdleTimeout.D())
			m.fast = append(m.fast, fastListener{fs, ln})
			m.mu.Unlock()
			go func() { errc <- fs.serve(ln) }()
		} else {
			m.servers = append(m.servers, srv)
			m.mu.Unlock()
			go func() { errc <- srv.Serve(ln) }()
		}
		m.log.Info("proxy listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil)
		return nil
	}
	if cfg.Listen != "" {
		if err := listen(cfg.Listen, nil); err != nil {
			return err
		}
	}
	if cfg.TLSListen != "" {
		tc, err := tlsConfig(cfg.Certificates)
		if err != nil {
			return err
		}
		if err := listen(cfg.TLSListen, tc); err != nil {
			return err
		}
	}
	ready()
	var runErr error
	select {
	case err := <-errc:
		runErr = fmt.Errorf("proxy server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m.mu.Lock()
	servers, fast := m.servers, m.fast
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, f := range fast {
		wg.Go(func() { _ = f.s.shutdown(sctx, f.ln) })
	}
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			s.Close()
		}
	}
	wg.Wait()
	tcancel()
	<-trackDone
	return runErr
}

// cacheStore opens the shared cache on first use; its size settings are
// read once (changing them needs a restart).
func (m *Module) cacheStore(cfg config.Proxy) (*cacheStore, error) {
	m.cacheMu.Lock()
	defer m.cacheMu.Unlock()
	if m.cache != nil {
		return m.cache, nil
	}
	dir := cfg.Cache.Dir
	if dir == "" {
		dir = filepath.Join(m.deps.DataDir, "proxy-cache")
	}
	cs, err := openCache(dir, int64(cfg.Cache.Disk), int64(cfg.Cache.Memory), int64(cfg.Cache.MaxObject), m.log.With("part", "cache"))
	if err != nil {
		return nil, err
	}
	m.cache = cs
	if m.deps.Registry != nil {
		entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ops_proxy_cache_entries", Help: "Responses in the proxy cache."},
			func() float64 { n, _, _ := cs.stats(); return float64(n) })
		disk := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ops_proxy_cache_disk_bytes", Help: "Bytes of distinct bodies on disk."},
			func() float64 { _, d, _ := cs.stats(); return float64(d) })
		mem := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ops_proxy_cache_memory_bytes", Help: "Bytes of bodies held in memory."},
			func() float64 { _, _, mm := cs.stats(); return float64(mm) })
		m.deps.Registry.MustRegister(entries, disk, mem)
	}
	return cs, nil
}

// Purge removes cached responses for url (scheme://host/path?query), or
// every URL starting with it when prefix; it returns how many went.
func (m *Module) Purge(url string, prefix bool) int {
	m.cacheMu.Lock()
	cs := m.cache
	m.cacheMu.Unlock()
	if cs == nil {
		return 0
	}
	return cs.purge(url, prefix)
}

// Addrs are the bound listen addresses, once running.
func (m *Module) Addrs() []net.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]net.Addr(nil), m.addrs...)
}

// Reload swaps in the routes of cfg; listeners stay as they are (changing
// them needs a restart). In-flight requests finish on the table they
// started with.
func (m *Module) Reload(cfg config.Proxy) error {
	tb, err := m.build(cfg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.cfg.Load()
	cfg.Listen, cfg.TLSListen, cfg.Certificates = old.Listen, old.TLSListen, old.Certificates
	m.cfg.Store(&cfg)
	m.table.Store(tb)
	if m.runCtx != nil {
		m.startChecks(tb)
	}
	m.log.Info("proxy routes reloaded", "routes", len(tb.routes))
	return nil
}

// startChecks runs the active health checks of tb, ending the previous
// table's. Call with m.mu held.
func (m *Module) startChecks(tb *table) {
	if m.stopOld != nil {
		m.stopOld()
	}
	ctx, cancel := context.WithCancel(m.runCtx)
	m.stopOld = cancel
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, rt := range tb.routes {
		for _, u := range rt.pool.ups {
			m.metrics.upstream.WithLabelValues(rt.cfg.Name, u.url.String()).Set(1)
		}
		go rt.pool.check(ctx, rt.cfg.Health, client, func(u *upstream, healthy bool) {
			v := 0.0
			if healthy {
				v = 1
			}
			m.metrics.upstream.WithLabelValues(rt.cfg.Name, u.url.String()).Set(v)
			m.log.Warn("upstream health changed", "route", rt.cfg.Name, "upstream", u.url.String(), "healthy", healthy)
		})
	}
}

func tlsConfig(pairs []config.CertPair) (*tls.Config, error) {
	var certs []tls.Certificate
	for i, p := range pairs {
		c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			return nil, fmt.Errorf("proxy.certificates[%d]: %w", i, err)
		}
		certs = append(certs, c)
	}
	// With several certificates, crypto/tls picks by SNI from each
	// certificate's names; the first is the fallback.
	return &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}, nil
}

func mustURL(s string) *url.URL {
	u, _ := url.Parse(strings.TrimRight(s, "/"))
	return u
}
