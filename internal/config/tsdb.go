package config

import (
	"net/url"
	"strconv"
	"time"
)

// TSDB configures the embedded time-series store and its Prometheus API.
type TSDB struct {
	Dir            string        `yaml:"dir" doc:"where blocks and the WAL live; empty is data_dir/tsdb"`
	Retention      Duration      `yaml:"retention" doc:"samples older than this are removed"`
	RetentionBytes ByteSize      `yaml:"retention_bytes" doc:"blocks are removed, oldest first, above this size; 0 is unlimited"`
	BlockDuration  Duration      `yaml:"block_duration" doc:"span of the head before it is cut into a block (Prometheus: 2h)"`
	OutOfOrder     Duration      `yaml:"out_of_order_window" doc:"samples up to this much older than the newest stored are still accepted (late events, view rebuilds, backfill)"`
	Query          TSDBQuery     `yaml:"query"`
	ScrapeInterval Duration      `yaml:"scrape_interval" doc:"how often Ops stores its own metrics (job=\"ops\"); 0 turns it off"`
	RemoteWrite    []RemoteWrite `yaml:"remote_write" doc:"Prometheus-compatible stores everything is also sent to"`
}

// TSDBQuery limits PromQL queries.
type TSDBQuery struct {
	Timeout        Duration `yaml:"timeout" doc:"a query running longer is cancelled (503, errorType timeout)"`
	MaxSamples     int      `yaml:"max_samples" doc:"most samples a query may hold in memory at once (422, errorType execution)"`
	MaxConcurrency int      `yaml:"max_concurrency" doc:"queries run at once; more wait"`
	MaxPoints      int      `yaml:"max_points" doc:"most points per series a range query may return (Prometheus: 11000)"`
	LookbackDelta  Duration `yaml:"lookback_delta" doc:"how far back an instant selector looks for a sample"`
}

// RemoteWrite is one remote-write 1.0 destination.
type RemoteWrite struct {
	URL       string            `yaml:"url" doc:"e.g. http://victoria:8428/api/v1/write"`
	Name      string            `yaml:"name" doc:"names the queue in metrics and on disk; defaults to its position"`
	Headers   map[string]string `yaml:"headers" doc:"extra request headers, e.g. X-Scope-OrgID"`
	BasicAuth BasicAuth         `yaml:"basic_auth"`
	Timeout   Duration          `yaml:"timeout" doc:"per request"`
	BatchSize int               `yaml:"batch_size" doc:"most samples per request"`
	MaxQueue  ByteSize          `yaml:"max_queue" doc:"most bytes waiting on disk; beyond it the oldest are dropped and counted"`
}

// BasicAuth is a user and password for an outgoing request; empty sends
// none.
type BasicAuth struct {
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file" doc:"read the password from this file instead"`
}

func defaultTSDB() TSDB {
	return TSDB{
		Retention:      Duration(30 * 24 * time.Hour),
		BlockDuration:  Duration(2 * time.Hour),
		OutOfOrder:     Duration(30 * 24 * time.Hour),
		ScrapeInterval: Duration(15 * time.Second),
		Query: TSDBQuery{
			Timeout: Duration(2 * time.Minute), MaxSamples: 50_000_000, MaxConcurrency: 20,
			MaxPoints: 11000, LookbackDelta: Duration(5 * time.Minute),
		},
	}
}

func (t *TSDB) validate(add func(path, format string, a ...any)) {
	if t.Retention < 0 {
		add("tsdb.retention", "must not be negative")
	}
	if t.BlockDuration != 0 && (t.BlockDuration.D() < time.Minute || t.BlockDuration.D()%time.Minute != 0) {
		add("tsdb.block_duration", "want whole minutes, at least 1m; got %s", t.BlockDuration)
	}
	if t.OutOfOrder < 0 {
		add("tsdb.out_of_order_window", "must not be negative")
	}
	if t.ScrapeInterval < 0 || (t.ScrapeInterval > 0 && t.ScrapeInterval.D() < time.Second) {
		add("tsdb.scrape_interval", "want 0 (off) or at least 1s; got %s", t.ScrapeInterval)
	}
	if t.Query.Timeout <= 0 {
		add("tsdb.query.timeout", "must be positive")
	}
	if t.Query.MaxSamples <= 0 {
		add("tsdb.query.max_samples", "must be positive")
	}
	if t.Query.MaxConcurrency <= 0 {
		add("tsdb.query.max_concurrency", "must be positive")
	}
	if t.Query.MaxPoints <= 0 {
		add("tsdb.query.max_points", "must be positive")
	}
	if t.Query.LookbackDelta <= 0 {
		add("tsdb.query.lookback_delta", "must be positive")
	}
	names := map[string]bool{}
	for i, rw := range t.RemoteWrite {
		p := "tsdb.remote_write[" + strconv.Itoa(i) + "]"
		u, err := url.Parse(rw.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(p+".url", "want an http or https URL, got %q", rw.URL)
		}
		n := rw.QueueName(i)
		if names[n] {
			add(p+".name", "%q is used twice", n)
		}
		names[n] = true
		if rw.BatchSize < 0 {
			add(p+".batch_size", "must not be negative")
		}
		if rw.BasicAuth.Password != "" && rw.BasicAuth.PasswordFile != "" {
			add(p+".basic_auth", "set password or password_file, not both")
		}
	}
}

// QueueName is the destination's name, or its position when unnamed.
func (rw RemoteWrite) QueueName(i int) string {
	if rw.Name != "" {
		return rw.Name
	}
	return "rw" + strconv.Itoa(i)
}
