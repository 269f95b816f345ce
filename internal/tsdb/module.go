// Package tsdb is the time-series module: an embedded Prometheus TSDB with
// the PromQL engine, a Prometheus-compatible HTTP API under
// /prometheus/api/v1/, and what lands in it: windowed view rows, OTLP
// metric points, Ops's own metrics and Prometheus remote write.
package tsdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/compression"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
)

// Deps are what the module needs.
type Deps struct {
	Bus      *bus.Bus
	Logger   *slog.Logger
	Registry *prometheus.Registry
	DataDir  string
	// Handle mounts a route with the permission it needs.
	Handle func(pattern, perm string, h http.Handler)
	// Instance labels Ops's own metrics (instance="...").
	Instance string
}

// Module owns the open TSDB and the query engine.
type Module struct {
	cfg    config.TSDB
	deps   Deps
	log    *slog.Logger
	dir    string
	db     *promtsdb.DB
	engine *promql.Engine
	parser parser.Parser
	meta   *metaStore

	viewsMu sync.Mutex
	// selfLast are the series of the last self scrape (only the scrape
	// loop uses it), to end the ones that went away.
	selfLast map[uint64]labels.Labels
	views    map[viewSlot]lastSample // newest sample per view series and window
	deltas   map[uint64]lastSample   // OTLP delta sums made cumulative

	remote *remoteWriters

	appended  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	queryDur  *prometheus.HistogramVec
	writeReqs *prometheus.CounterVec
}

// New opens the TSDB under cfg.Dir (data_dir/tsdb) and mounts the API.
func New(cfg config.TSDB, deps Deps) (*Module, error) {
	dir := cfg.Dir
	if dir == "" {
		dir = filepath.Join(deps.DataDir, "tsdb")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	m := &Module{cfg: cfg, deps: deps, log: deps.Logger, dir: dir,
		parser: parser.NewParser(parser.Options{}),
		views:  map[viewSlot]lastSample{}, deltas: map[uint64]lastSample{}}
	opts := promtsdb.DefaultOptions()
	opts.RetentionDuration = cfg.Retention.D().Milliseconds()
	opts.MaxBytes = int64(cfg.RetentionBytes)
	if bd := cfg.BlockDuration.D(); bd > 0 {
		opts.MinBlockDuration = bd.Milliseconds()
		// Prometheus: compacted blocks span up to 10% of the retention,
		// at most 31 days.
		opts.MaxBlockDuration = max(opts.MinBlockDuration, min(opts.RetentionDuration/10, (31*24*time.Hour).Milliseconds()))
	}
	opts.OutOfOrderTimeWindow = cfg.OutOfOrder.D().Milliseconds()
	opts.WALCompression = compression.Snappy
	// The head's chunk write buffer is 4 MiB by default; Ops runs on small
	// machines and writes little per second, so the minimum does.
	opts.HeadChunksWriteBufferSize = chunks.MinWriteBufferSize
	opts.EnableMetadataWALRecords = false
	// The head's series map is split into StripeSize locked stripes
	// (16384 by default, 2.3 MiB before the first series, sized for
	// servers with millions of series); 1024 serves Ops's scale.
	opts.StripeSize = 1024
	reg := prometheus.WrapRegistererWith(nil, deps.Registry)
	db, err := promtsdb.Open(filepath.Join(dir, "data"), deps.Logger.With("component", "prometheus-tsdb"), reg, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	m.db = db
	tracker, err := promql.NewActiveQueryTracker(dir, cfg.Query.MaxConcurrency, deps.Logger.With("component", "query-tracker"))
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	m.engine = promql.NewEngine(promql.EngineOpts{
		Logger: deps.Logger.With("component", "promql"), Reg: deps.Registry,
		MaxSamples: cfg.Query.MaxSamples, Timeout: cfg.Query.Timeout.D(),
		ActiveQueryTracker: tracker, LookbackDelta: cfg.Query.LookbackDelta.D(),
		EnableAtModifier: true, EnableNegativeOffset: true,
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
		Parser:                   m.parser,
	})
	if m.meta, err = openMeta(filepath.Join(dir, "metadata.json")); err != nil {
		_ = db.Close()
		return nil, err
	}
	m.appended = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_tsdb_samples_appended_total",
		Help: "Samples stored, by source (view, otlp, self, remote_write)."}, []string{"source"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_tsdb_samples_rejected_total",
		Help: "Samples refused by the TSDB, by source and reason (out_of_order, out_of_bounds, duplicate, too_old, other)."}, []string{"source", "reason"})
	m.queryDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ops_tsdb_query_duration_seconds",
		Help: "Prometheus API request time, by endpoint.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}, []string{"endpoint"})
	m.writeReqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_tsdb_remote_write_requests_total",
		Help: "Remote-write requests received, by HTTP status."}, []string{"code"})
	for _, c := range []prometheus.Collector{m.appended, m.rejected, m.queryDur, m.writeReqs} {
		if err := deps.Registry.Register(c); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	if m.remote, err = newRemoteWriters(cfg.RemoteWrite, dir, deps.Logger, deps.Registry); err != nil {
		_ = db.Close()
		return nil, err
	}
	m.mount()
	return m, nil
}

// Run consumes view changes and OTLP metrics, scrapes Ops's own metrics
// and ships to remote-write destinations until ctx ends; then it closes
// the DB.
func (m *Module) Run(ctx context.Context, ready func()) error {
	defer func() {
		if err := m.db.Close(); err != nil {
			m.log.Warn("tsdb close", "err", err)
		}
	}()
	cfg := jetstream.ConsumerConfig{
		Durable: "tsdb", Description: "ops tsdb: windowed view changes and OTLP metrics -> time series",
		FilterSubjects: []string{"ev.view.>", "ev.otel.metric"},
		AckPolicy:      jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 10000,
	}
	cons, err := m.deps.Bus.Resume(ctx, bus.EventsStream, cfg)
	if err != nil {
		return fmt.Errorf("tsdb consumer: %w", err)
	}
	var wg sync.WaitGroup
	if m.cfg.ScrapeInterval > 0 {
		wg.Go(func() { m.scrapeLoop(ctx) })
	}
	wg.Go(func() { m.remote.run(ctx) })
	ready()
	bus.Batches{
		Size:     1000,
		Consumer: func() jetstream.Consumer { return cons },
		Handle:   m.handleBatch,
		Fail:     func(err error) { m.log.Warn("tsdb ingest failed", "err", err) },
		Recover: func(ctx context.Context) {
			if c, err := m.deps.Bus.Resume(ctx, bus.EventsStream, cfg); err == nil {
				cons = c
			}
		},
	}.Run(ctx)
	wg.Wait()
	return nil
}

// DB is the open TSDB (for tests and the CLI's local tools).
func (m *Module) DB() *promtsdb.DB { return m.db }

// Engine is the PromQL engine the API queries with (rules use it too).
func (m *Module) Engine() *promql.Engine { return m.engine }

// sample is one value to store: a float, or a native histogram.
type sample struct {
	l  labels.Labels
	t  int64 // ms
	v  float64
	h  *histogram.Histogram
	fh *histogram.FloatHistogram
}

// appendAll stores samples in one transaction. Samples the TSDB refuses
// (too old, out of order, a different value for a stored timestamp) are
// counted by reason and skipped; an error means nothing was committed.
func (m *Module) appendAll(ctx context.Context, source string, ss []sample) (int, error) {
	if len(ss) == 0 {
		return 0, nil
	}
	app := m.db.Appender(ctx)
	n := 0
	for _, s := range ss {
		var err error
		switch {
		case s.h != nil || s.fh != nil:
			_, err = app.AppendHistogram(0, s.l, s.t, s.h, s.fh)
		default:
			_, err = app.Append(0, s.l, s.t, s.v)
		}
		if err != nil {
			m.rejected.WithLabelValues(source, rejectReason(err)).Inc()
			continue
		}
		n++
	}
	if err := app.Commit(); err != nil {
		return 0, err
	}
	m.appended.WithLabelValues(source).Add(float64(n))
	m.remote.enqueue(ss)
	return n, nil
}

// rejectReason names why the TSDB refused one sample.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return "out_of_order"
	case errors.Is(err, storage.ErrTooOldSample):
		return "too_old"
	case errors.Is(err, storage.ErrOutOfBounds):
		return "out_of_bounds"
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return "duplicate"
	}
	return "invalid"
}

// scrapeLoop stores Ops's own metrics every scrape interval.
func (m *Module) scrapeLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.ScrapeInterval.D())
	defer t.Stop()
	for {
		if err := m.scrapeSelf(ctx, time.Now()); err != nil && ctx.Err() == nil {
			m.log.Warn("self scrape", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
