package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/logging"
	"github.com/opsgraph/ops/internal/reply"
)

// Deps are what the API module needs from the app.
type Deps struct {
	Bus      *bus.Bus
	Logger   *slog.Logger
	Logs     *logging.Levels
	Registry *prometheus.Registry
	// Status and Ready come from the module manager.
	Status     func() Status
	Ready      func() (bool, any)
	MaxEventSz int
	// Graph returns the event graph as JSON.
	Graph func() ([]byte, error)
	// Auth guards every route with the permission it declares.
	Auth Authorizer
	// Mounts add the routes of modules the API depends on (identity's
	// sign-in and users), when the API is built.
	Mounts []func(handle func(pattern, perm string, h http.Handler))
}

// Authorizer wraps a handler so that it runs only for callers holding perm
// ("public" lets anyone through). The identity module implements it.
type Authorizer interface {
	Require(perm string, h http.Handler) http.Handler
	// Allowed reports whether the caller Require let through also holds
	// perm (for what a route's body decides, such as reserved events).
	Allowed(r *http.Request, perm string) bool
}

// Status is the body of GET /api/v1/status.
type Status struct {
	Version    string    `json:"version"`
	Commit     string    `json:"commit"`
	Modules    any       `json:"modules"`
	StartedAt  time.Time `json:"started_at"`
	Uptime     float64   `json:"uptime_seconds"`
	ConfigHash string    `json:"config_hash"`
	Bus        BusInfo   `json:"bus"`
	Process    Process   `json:"process"`
	Disk       *Disk     `json:"disk,omitempty"`
}

// Process is this process's memory and goroutines.
type Process struct {
	RSS        uint64 `json:"rss_bytes,omitempty"` // resident set (Linux)
	Heap       uint64 `json:"heap_bytes"`          // Go heap in use
	Sys        uint64 `json:"sys_bytes"`           // memory the Go runtime holds from the OS
	Goroutines int    `json:"goroutines"`
}

// Disk is the file system of the embedded bus's store.
type Disk struct {
	Dir   string `json:"dir"`
	Free  uint64 `json:"free_bytes"`
	Total uint64 `json:"total_bytes"`
}

// BusInfo says which bus the node uses.
type BusInfo struct {
	Embedded  bool   `json:"embedded"`
	ClientURL string `json:"client_url,omitempty"`
	Sync      string `json:"sync"`
}

// Module is the HTTP server.
type Module struct {
	cfg     config.HTTP
	deps    Deps
	log     *slog.Logger
	mux     *http.ServeMux
	srv     *http.Server
	streams chan struct{} // closed at shutdown to end SSE streams

	mu      sync.Mutex
	addr    net.Addr
	mounted []Route

	reqs        *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	slowReaders prometheus.Counter
}

// New builds the API module and its routes.
func New(cfg config.HTTP, deps Deps) (*Module, error) {
	if deps.Bus == nil {
		return nil, errors.New("api needs the bus")
	}
	if deps.Auth == nil {
		return nil, errors.New("api needs an authorizer (the identity module)")
	}
	m := &Module{cfg: cfg, deps: deps, log: deps.Logger, mux: http.NewServeMux(), streams: make(chan struct{})}
	m.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ops_http_requests_total", Help: "HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ops_http_request_seconds", Help: "HTTP request latency by route pattern.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10),
	}, []string{"route"})
	m.slowReaders = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ops_http_slow_readers_dropped_total", Help: "Event-stream (SSE) readers dropped because nothing could be written to them for 30 s.",
	})
	if deps.Registry != nil {
		deps.Registry.MustRegister(m.reqs, m.latency, m.slowReaders)
	}
	m.routes()
	for _, mount := range deps.Mounts {
		mount(m.Handle)
	}
	m.srv = &http.Server{
		Handler:           m.instrument(m.mux),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout.D(),
		ReadTimeout:       cfg.ReadTimeout.D(),
		WriteTimeout:      cfg.WriteTimeout.D(),
		IdleTimeout:       cfg.IdleTimeout.D(),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(deps.Logger.Handler(), slog.LevelWarn),
	}
	return m, nil
}

func (m *Module) routes() {
	hf := func(pattern, perm string, f http.HandlerFunc) { m.Handle(pattern, perm, f) }
	hf("GET /healthz", "public", m.healthz)
	hf("GET /readyz", "public", m.readyz)
	var reg prometheus.Gatherer = prometheus.DefaultGatherer
	if m.deps.Registry != nil {
		reg = m.deps.Registry
	}
	m.Handle("GET /metrics", "metrics:read", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hf("POST /api/v1/events", "events:write", m.postEvents)
	hf("GET /api/v1/events", "events:read", m.getEvents)
	hf("GET /api/v1/events/stream", "events:read", m.streamEvents)
	hf("GET /api/v1/streams", "events:read", m.getStreams)
	hf("GET /api/v1/status", "system:read", m.getStatus)
	hf("GET /api/v1/graph", "graph:read", m.getGraph)
	hf("GET /api/v1/log-level", "system:read", m.getLogLevels)
	hf("PUT /api/v1/log-level", "system:write", m.putLogLevel)
	// Go's profiler, for admins (it shows the program's internals).
	hf("GET /debug/pprof/", "system:write", pprof.Index)
	hf("GET /debug/pprof/profile", "system:write", pprof.Profile)
	hf("GET /debug/pprof/trace", "system:write", pprof.Trace)
	hf("GET /debug/pprof/symbol", "system:write", pprof.Symbol)
	hf("/api/", "public", m.noRoute)
	hf("/", "public", m.noRoute)
}

// noRoute answers a path no module serves. While modules are still
// starting the route may simply not be mounted yet (the collector's
// /v1/batch mounts after the API listens): that is a 503 with Retry-After,
// which SDKs retry, not a 404, which they drop with the events in it.
func (m *Module) noRoute(w http.ResponseWriter, r *http.Request) {
	if m.deps.Ready != nil {
		if ready, _ := m.deps.Ready(); !ready {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "", "starting: not every module is running yet; retry")
			return
		}
	}
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		http.NotFound(w, r)
		return
	}
	writeError(w, http.StatusNotFound, "path", fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path))
}

// Handle mounts a handler on the main listener behind the permission it
// needs (see docs/identity.md for the table). It is safe to call while the
// server runs.
func (m *Module) Handle(pattern, perm string, h http.Handler) {
	m.mux.Handle(pattern, m.deps.Auth.Require(perm, h))
	m.mu.Lock()
	m.mounted = append(m.mounted, Route{Pattern: pattern, Perm: perm})
	m.mu.Unlock()
}

// Route is a mounted route and the permission it needs.
type Route struct {
	Pattern string
	Perm    string
}

// Routes lists every route mounted so far, in the order mounted (the
// permission table of docs/identity.md is made from it).
func (m *Module) Routes() []Route {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Route(nil), m.mounted...)
}

// Handler serves every mounted route (with auth and metrics), for the
// proxy's first-party /_ops/ paths.
func (m *Module) Handler() http.Handler { return m.srv.Handler }

// Addr is the bound listen address, once running.
func (m *Module) Addr() net.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr
}

// Run listens, reports ready, and on cancellation ends live streams and
// drains in-flight requests before returning.
func (m *Module) Run(ctx context.Context, ready func()) error {
	ln, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", m.cfg.Listen, err)
	}
	m.mu.Lock()
	m.addr = ln.Addr()
	m.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- m.srv.Serve(ln) }()
	m.log.Info("listening", "addr", ln.Addr().String())
	ready()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	close(m.streams)
	sctx, cancel := context.WithTimeout(context.Background(), m.cfg.ShutdownTimeout.D())
	defer cancel()
	if err := m.srv.Shutdown(sctx); err != nil {
		m.log.Warn("shutdown did not drain in time; closing", "err", err)
		m.srv.Close()
	}
	return nil
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(c int) {
	if w.code == 0 {
		w.code = c
	}
	w.ResponseWriter.WriteHeader(c)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (m *Module) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		m.reqs.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		m.latency.WithLabelValues(route).Observe(time.Since(t0).Seconds())
	})
}

// ErrorBody is the JSON shape of every API error.
type ErrorBody = reply.ErrorBody

func writeError(w http.ResponseWriter, code int, field, msg string) { reply.Error(w, code, field, msg) }

func writeJSON(w http.ResponseWriter, code int, v any) { reply.JSON(w, code, v) }
