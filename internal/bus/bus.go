package bus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsgraph/ops/internal/config"
)

// Stream and subject names; they are part of Ops's API.
const (
	EventsStream = "EVENTS"
	AggStream    = "AGG"
	EventsFilter = "ev.>"
	AggFilter    = "agg.>"
)

// ErrUnavailable wraps failures to reach the bus; the API answers 503.
var ErrUnavailable = errors.New("bus unavailable")

// Options configure Open.
type Options struct {
	Config  config.Bus
	DataDir string
	// MaxEventBytes is used to size batches under the server's max payload.
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Bus is an open connection to JetStream with Ops's streams in place.
type Bus struct {
	cfg     config.Bus
	log     *slog.Logger
	srv     *server.Server // nil with an external bus
	nc      *nats.Conn
	js      jetstream.JetStream
	dedup   *dedup
	metrics *metrics
	maxMsg  int
	space   *spaceGuard            // nil with an external bus
	jsCfg   server.JetStreamConfig // the embedded JetStream's, to turn it back on
	written atomic.Int64           // unix nanos of the last publish
}

// Open starts the embedded server (or connects to bus.url), ensures the
// streams and rebuilds the dedup window.
func Open(ctx context.Context, o Options) (*Bus, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Bus{cfg: o.Config, log: o.Logger, metrics: newMetrics(o.Registry)}
	var err error
	if o.Config.URL == "" {
		err = b.startEmbedded(o)
	} else {
		err = b.connectExternal(o)
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	b.js, err = jetstream.New(b.nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := b.ensureStreams(ctx); err != nil {
		b.Close()
		return nil, err
	}
	b.maxMsg = int(b.nc.MaxPayload()) - 4096 // room for headers
	raiseFetchBytes(int(b.nc.MaxPayload()))
	b.dedup = newDedup(o.Config.DedupWindow.D(), o.Config.DedupIDs)
	start := time.Now()
	n, err := b.rebuildDedup(ctx)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("rebuild dedup window: %w", err)
	}
	b.log.Debug("dedup window rebuilt", "ids", n, "took", time.Since(start))
	b.metrics.dedupIDs.Set(float64(b.dedup.size()))
	b.dedup.onSize = func(n int) { b.metrics.dedupIDs.Set(float64(n)) }
	return b, nil
}

func (b *Bus) startEmbedded(o Options) error {
	opts := &server.Options{
		ServerName: "ops",
		JetStream:  true,
		StoreDir:   filepath.Join(o.DataDir, "bus"),
		MaxPayload: int32(o.Config.MaxPayload),
		// What the server may queue for a client that reads slowly before
		// it drops it: the one in-process connection carries every
		// module's traffic, so a drop fails every publish for seconds.
		// Fetches are bounded in bytes (read.go); this is the margin.
		MaxPending:         256 << 20,
		NoSigs:             true,
		DontListen:         o.Config.Listen == "",
		JetStreamMaxMemory: 64 << 20,
		SyncAlways:         o.Config.Sync.Always,
		SyncInterval:       o.Config.Sync.Interval,
	}
	if o.Config.Sync.Always {
		opts.SyncInterval = 2 * time.Minute
	}
	if o.Config.Listen != "" {
		host, port, err := net.SplitHostPort(o.Config.Listen)
		if err != nil {
			return fmt.Errorf("bus.listen: %w", err)
		}
		opts.Host = host
		opts.Port, err = strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("bus.listen: port %q", port)
		}
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	if err := os.MkdirAll(opts.StoreDir, 0o750); err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	// The storage limit is the file system; the space guard keeps the last
	// bus.min_free of it (space.go).
	b.space = &spaceGuard{dir: opts.StoreDir, minFree: uint64(o.Config.MinFree)}
	if _, total, ok := diskSpace(opts.StoreDir); ok && total > 0 {
		opts.JetStreamMaxStore = int64(total)
	}
	b.jsCfg = server.JetStreamConfig{StoreDir: opts.StoreDir, SyncInterval: opts.SyncInterval, SyncAlways: opts.SyncAlways,
		MaxMemory: opts.JetStreamMaxMemory, MaxStore: opts.JetStreamMaxStore, Strict: true}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	srv.SetLoggerV2(natsLogger{log: b.log.With("component", "nats-server"), diskErr: func() { b.space.stuck.Store(true) }}, false, false, false)
	srv.Start()
	b.srv = srv
	if !srv.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("embedded nats: not ready after 10s")
	}
	b.nc, err = nats.Connect("", nats.InProcessServer(srv), nats.Name("ops"), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { b.log.Warn("bus disconnected", "err", err) }),
		nats.ReconnectHandler(func(*nats.Conn) { b.log.Info("bus reconnected") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			b.log.Warn("bus error", "subject", subj, "err", err)
		}))
	if err != nil {
		return fmt.Errorf("connect embedded nats: %w", err)
	}
	return nil
}

func (b *Bus) connectExternal(o Options) error {
	opts := []nats.Option{
		nats.Name("ops"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.Timeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.log.Warn("bus disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { b.log.Info("bus reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if o.Config.Credentials != "" {
		opts = append(opts, nats.UserCredentials(o.Config.Credentials))
	}
	if o.Config.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(o.Config.TLS.CA))
	}
	if o.Config.TLS.Cert != "" {
		opts = append(opts, nats.ClientCert(o.Config.TLS.Cert, o.Config.TLS.Key))
	}
	nc, err := nats.Connect(o.Config.URL, opts...)
	if err != nil {
		return fmt.Errorf("%w: connect %s: %v", ErrUnavailable, redact(o.Config.URL), err)
	}
	b.nc = nc
	b.log.Info("connected to external bus", "url", nc.ConnectedUrlRedacted(),
		"note", "fsync policy is the external server's (sync_interval / sync: always), not bus.sync")
	return nil
}

func redact(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}

func (b *Bus) ensureStreams(ctx context.Context) error {
	c := b.cfg
	streams := []jetstream.StreamConfig{{
		Name:        AggStream,
		Description: "aggregate events for CQRS; appends use Nats-Expected-Last-Subject-Sequence",
		Subjects:    []string{AggFilter},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  c.DedupWindow.D(),
		Replicas:    c.Replicas,
		AllowDirect: true,
	}, {
		Name:        EventsStream,
		Description: "every Ops event; one message holds one request's events for one subject",
		Subjects:    []string{EventsFilter},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.Retention.MaxAge.D(),
		MaxBytes:    orUnlimited(int64(c.Retention.MaxBytes)),
		Duplicates:  c.DedupWindow.D(),
		Replicas:    c.Replicas,
		AllowDirect: true,
		// Aggregate events flow into EVENTS as ev.agg.<type>.<id>, so views
		// and processors consume them like any other event.
		Sources: []*jetstream.StreamSource{{
			Name:              AggStream,
			SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: AggFilter, Destination: "ev.agg.>"}},
		}},
	}}
	for _, sc := range streams {
		if _, err := b.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("%w: ensure stream %s: %v", ErrUnavailable, sc.Name, err)
		}
	}
	return nil
}

func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// Close drains the connection (pending publishes complete) and stops the
// embedded server, waiting for it to flush its store.
func (b *Bus) Close() error {
	if b.nc != nil && !b.nc.IsClosed() {
		if err := b.nc.Drain(); err != nil {
			b.nc.Close()
		}
		for i := 0; i < 200 && !b.nc.IsClosed(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	return nil
}

// Conn is the NATS connection, for modules that subscribe directly.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream is the JetStream context, for consumers, KV and object stores.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// ClientURL is the embedded server's client URL when bus.listen is set.
func (b *Bus) ClientURL() string {
	if b.srv == nil || b.cfg.Listen == "" {
		return ""
	}
	return b.srv.ClientURL()
}

// restoreJetStream restarts the embedded JetStream once space is free
// again after a write found the disk full: its file store refuses every
// write after such an error until the stream is loaded anew, and JetStream
// may have turned itself off. Streams, consumers and buckets are reloaded
// from disk; modules reconnect their consumers as after any outage. It
// reports whether it restarted.
func (b *Bus) restoreJetStream() bool {
	if b.srv == nil || !b.space.stuck.Load() && b.srv.JetStreamEnabled() {
		return false
	}
	if free, total, ok := diskSpace(b.space.dir); ok && free < b.space.reserve(total) {
		return false
	}
	if b.srv.JetStreamEnabled() {
		if err := b.srv.DisableJetStream(); err != nil {
			b.log.Warn("cannot restart JetStream yet", "err", err)
			return false
		}
	}
	cfg := b.jsCfg
	if err := b.srv.EnableJetStream(&cfg); err != nil {
		b.log.Warn("cannot turn JetStream back on yet", "err", err)
		return false
	}
	b.space.stuck.Store(false)
	b.log.Warn("JetStream restarted: the disk had filled up and has space again")
	return true
}

// LastWrite is when something was last published (zero when nothing was).
func (b *Bus) LastWrite() time.Time {
	if n := b.written.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Embedded reports whether the bus runs in this process.
func (b *Bus) Embedded() bool { return b.srv != nil }

// Healthy reports whether the connection is up.
func (b *Bus) Healthy() error {
	if b.nc == nil || !b.nc.IsConnected() {
		return fmt.Errorf("%w: not connected", ErrUnavailable)
	}
	if b.srv != nil && !b.srv.JetStreamEnabled() {
		return fmt.Errorf("%w: the embedded JetStream turned itself off (a write found the disk full); it comes back on by itself once space is freed", ErrUnavailable)
	}
	return nil
}

// KeyValue opens or creates a KV bucket with cfg.
func (b *Bus) KeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = b.cfg.Replicas
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("kv %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// ObjectStore opens or creates an object store with cfg.
func (b *Bus) ObjectStore(ctx context.Context, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = b.cfg.Replicas
	}
	os, err := b.js.CreateOrUpdateObjectStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", cfg.Bucket, err)
	}
	return os, nil
}

// Durable creates a durable pull consumer on a stream, or updates an
// existing one keeping where it delivers from (JetStream refuses to change
// that on an existing consumer).
func (b *Bus) Durable(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if cfg.Durable == "" {
		return nil, errors.New("durable consumer needs a name")
	}
	if c, err := b.js.Consumer(ctx, stream, cfg.Durable); err == nil {
		old := c.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	c, err := b.js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	return c, nil
}

// Resume opens a durable consumer for a node that must see its input in
// stream order (views fold in order; a row skips positions it has passed).
// Messages a crashed run left unacknowledged would otherwise come back only
// after AckWait, behind newer ones; Resume recreates the consumer from its
// ack floor so they come first, at once. Only the single owner of a
// consumer may call it.
func (b *Bus) Resume(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := b.js.Consumer(ctx, stream, cfg.Durable)
	if err == nil {
		info := c.CachedInfo()
		if info.NumAckPending == 0 && info.NumRedelivered == 0 {
			return b.Durable(ctx, stream, cfg)
		}
		if err := b.js.DeleteConsumer(ctx, stream, cfg.Durable); err != nil {
			return nil, fmt.Errorf("reset consumer %s: %w", cfg.Durable, err)
		}
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, info.AckFloor.Stream+1, nil
		b.log.Info("consumer resumed from its ack floor", "consumer", cfg.Durable, "from_seq", cfg.OptStartSeq, "unacked", info.NumAckPending)
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	return b.Durable(ctx, stream, cfg)
}

// WatchKV calls fn for every change of kv (after the current values unless
// UpdatesOnly is given) in a goroutine that ends with ctx; fn gets the key
// and whether the key now holds a value (false for deletes and purges). The
// returned channel closes when the goroutine has ended, so fn runs no more.
func WatchKV(ctx context.Context, kv jetstream.KeyValue, fn func(key string, present bool), opts ...jetstream.WatchOpt) (<-chan struct{}, error) {
	w, err := kv.WatchAll(ctx, opts...)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil { // nil marks the end of the initial values
					fn(e.Key(), e.Operation() == jetstream.KeyValuePut)
				}
			}
		}
	}()
	return done, nil
}

// Secret returns the n random bytes stored under key in kv, creating them
// if no node has yet: the first writer wins and every node reads the same.
func Secret(ctx context.Context, kv jetstream.KeyValue, key string, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if _, err := kv.Create(ctx, key, b); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("create secret %s: %w", key, err)
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read secret %s: %w", key, err)
		}
		b = e.Value()
	}
	if len(b) != n {
		return nil, fmt.Errorf("secret %s is %d bytes, want %d", key, len(b), n)
	}
	return b, nil
}

// EachKV calls fn with every key of kv and its current value; a key
// deleted between the listing and the read is skipped.
func EachKV(ctx context.Context, kv jetstream.KeyValue, fn func(key string, value []byte)) error {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return err
	}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		fn(k, e.Value())
	}
	return nil
}

// CountKV is the number of keys in kv.
func CountKV(ctx context.Context, kv jetstream.KeyValue) (int, error) {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	return n, nil
}
