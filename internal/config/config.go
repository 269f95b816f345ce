package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Config is the whole of ops.yaml. Field tags are the YAML keys; the
// environment name of a key is OPS_ plus its path in upper case with dots
// turned into underscores (http.listen -> OPS_HTTP_LISTEN).
type Config struct {
	DataDir string `yaml:"data_dir" doc:"directory for the bus store and other state"`
	HTTP    HTTP   `yaml:"http"`
	Bus     Bus    `yaml:"bus"`
	Events  Events `yaml:"events"`
	Log     Log    `yaml:"log"`

	Collector  Collector  `yaml:"collector"`
	CoAP       CoAP       `yaml:"coap"`
	Identity   Identity   `yaml:"identity"`
	Proxy      Proxy      `yaml:"proxy"`
	TSDB       TSDB       `yaml:"tsdb"`
	Analytics  Analytics  `yaml:"analytics"`
	SMTP       SMTP       `yaml:"smtp"`
	Deploy     Deploy     `yaml:"deploy"`
	Alert      Alert      `yaml:"alert"`
	DNS        DNS        `yaml:"dns" doc:"an encrypted resolver with a cache and block lists (docs/dns.md)"`
	Moderation Moderation `yaml:"moderation" doc:"forum moderation: profanity and sentiment of posted text (docs/moderation.md)"`
	Phishing   Phishing   `yaml:"phishing" doc:"phishing protection for the forward proxy and the resolver: feeds and lookalikes of protected domains (docs/forward.md)"`

	Processors []Processor `yaml:"processors" doc:"event processors; see docs/graph.md"`
	Views      []View      `yaml:"views" doc:"materialized views; see docs/graph.md"`
	Aggregates []Aggregate `yaml:"aggregates" doc:"CQRS aggregate types and their commands; see docs/cqrs.md"`
}

// HTTP configures the main listener.
type HTTP struct {
	Listen            string   `yaml:"listen" doc:"address of the API, UI and collector"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout" doc:"time to read request headers"`
	ReadTimeout       Duration `yaml:"read_timeout" doc:"time to read a whole request"`
	WriteTimeout      Duration `yaml:"write_timeout" doc:"streaming responses (SSE) extend it per write"`
	IdleTimeout       Duration `yaml:"idle_timeout" doc:"keep-alive connections close after this idle time"`
	MaxBodyBytes      ByteSize `yaml:"max_body_bytes" doc:"largest request body"`
	ShutdownTimeout   Duration `yaml:"shutdown_timeout" doc:"how long shutdown waits for in-flight requests"`
}

// Bus configures the embedded NATS server or the connection to an external one.
type Bus struct {
	URL            string    `yaml:"url" doc:"external NATS servers (comma-separated); empty runs the embedded server"`
	Credentials    string    `yaml:"credentials" doc:"NATS credentials file for bus.url"`
	TLS            TLS       `yaml:"tls"`
	Listen         string    `yaml:"listen" doc:"client port for the embedded server; empty means in-process only"`
	Sync           Sync      `yaml:"sync" doc:"always (fsync before ack) or an fsync interval such as 1s"`
	Retention      Retention `yaml:"retention"`
	DedupWindow    Duration  `yaml:"dedup_window" doc:"a re-sent event id within this window is stored once"`
	DedupIDs       int       `yaml:"dedup_ids" doc:"most event ids the dedup window holds in memory (about 55 bytes each; 500000 is about 28 MB when full)"`
	Replicas       int       `yaml:"replicas" doc:"stream replicas on a clustered bus"`
	MaxPayload     ByteSize  `yaml:"max_payload" doc:"largest bus message of the embedded server"`
	PublishTimeout Duration  `yaml:"publish_timeout" doc:"how long a publish waits for the bus before failing with 503"`
	MinFree        ByteSize  `yaml:"min_free" doc:"new events are refused (507) while the embedded bus's disk has less than this free (or a tenth of the disk, when smaller), so what was accepted can be processed; they are accepted again once space is freed"`
}

// TLS configures the client side of a TLS connection.
type TLS struct {
	CA   string `yaml:"ca" doc:"CA file to verify the external bus"`
	Cert string `yaml:"cert" doc:"client certificate file for the external bus"`
	Key  string `yaml:"key" doc:"client key file for the external bus"`
}

// Retention bounds the EVENTS stream; zero means unlimited.
type Retention struct {
	MaxAge   Duration `yaml:"max_age" doc:"EVENTS older than this are removed; 0 keeps them"`
	MaxBytes ByteSize `yaml:"max_bytes" doc:"EVENTS is trimmed, oldest first, above this size; 0 is unlimited"`
}

// Collector configures the tracking API (Segment/RudderStack compatible).
// Write keys come from here and from the API (ops keys create).
type Collector struct {
	WriteKeys      Strings  `yaml:"write_keys" doc:"write keys clients authenticate with; held hashed in memory (env: comma-separated)"`
	CORSOrigins    Strings  `yaml:"cors_origins" doc:"browser origins allowed to call the tracking API; * for any"`
	MaxEventBytes  ByteSize `yaml:"max_event_bytes" doc:"largest tracking message (Segment's limit is 32KB)"`
	MaxBatchBytes  ByteSize `yaml:"max_batch_bytes" doc:"largest /v1/batch body after decompression (Segment's limit is 500KB)"`
	TrustedProxies Strings  `yaml:"trusted_proxies" doc:"CIDRs of proxies whose X-Forwarded-For names the client, e.g. 127.0.0.1/32"`
	StoreIP        bool     `yaml:"store_ip" doc:"also store the browser client's full address as context.ip (off: only a salted hash of its /24 or /48 is used)"`
	GeoIP          string   `yaml:"geoip" doc:"a MaxMind-format country database (.mmdb: GeoLite2/GeoIP2 Country or City, DB-IP Lite Country); messages get context.location.country from the browser's address or the message's context.ip (see docs/analytics.md)"`
}

// CoAP configures the CoAP (RFC 7252) collector for devices.
type CoAP struct {
	Listen string `yaml:"listen" doc:"UDP address, e.g. :5683; empty (the default) keeps CoAP off; clients authenticate with write keys"`
}

// Events holds limits on incoming events.
type Events struct {
	MaxBytes ByteSize `yaml:"max_bytes" doc:"largest encoded event"`
}

// Analytics configures the web and product analytics reports.
type Analytics struct {
	Enabled        bool     `yaml:"enabled" doc:"fold page views and custom events (ev.track.*) into the reports under /api/v1/analytics"`
	SessionTimeout Duration `yaml:"session_timeout" doc:"a visit ends after this long without events from its visitor"`
	ProxyPageviews bool     `yaml:"proxy_pageviews" doc:"also count the HTML pages the proxy serves (ev.proxy.request) as page views, with a cookieless visitor; leave off when those pages load ops.js, or each view counts twice"`
	Goals          Strings  `yaml:"goals" doc:"conversions GET /api/v1/analytics/goals reports: page==<glob> or event==<name>, e.g. [event==Signup, page==/thanks]"`
	Funnels        []Funnel `yaml:"funnels" doc:"named funnels for GET /api/v1/analytics/funnel?funnel=<name>; see docs/analytics.md"`
	Reports        []Report `yaml:"reports" doc:"scheduled e-mail reports (needs smtp); see docs/analytics.md"`
}

// Deploy configures deployment tracking (docs/deploy.md).
type Deploy struct {
	Enabled           bool     `yaml:"enabled" doc:"record deployments (POST /api/v1/deployments) and hosts' heartbeats, and serve versions, drift, diffs and DORA figures"`
	HeartbeatInterval Duration `yaml:"heartbeat_interval" doc:"how often hosts report what they run (ops deploy report --every)"`
	SilentAfter       int      `yaml:"silent_after" doc:"a host that missed this many heartbeats is drifted (silent)"`
	ForgetHostsAfter  Duration `yaml:"forget_hosts_after" doc:"a host silent this long is no longer listed; heartbeats older than this are not read at start"`
	MaxConfigBytes    ByteSize `yaml:"max_config_bytes" doc:"the largest config snapshot a deployment may carry"`
}

// Alert configures alerting and recording rules (docs/alerts.md).
type Alert struct {
	Enabled            bool     `yaml:"enabled" doc:"evaluate rules over the time series (needs tsdb) and record alert state changes as ev.alert.* events"`
	EvaluationInterval Duration `yaml:"evaluation_interval" doc:"how often rule groups are evaluated unless a group sets its own interval"`
	RuleFiles          Strings  `yaml:"rule_files" doc:"Prometheus rule files (globs), loaded unchanged, e.g. [/etc/ops/rules/*.yml]"`
	AlertmanagerConfig string   `yaml:"alertmanager_config" doc:"an alertmanager.yml (unchanged): routes, grouping, inhibition and receivers (webhook, email, telegram, slack, ...) for firing alerts; empty: alerts are only events"`
	Telegram           Telegram `yaml:"telegram" doc:"chat commands over a Telegram bot (docs/alerts.md)"`
	ReceiverRate       int      `yaml:"receiver_rate" doc:"most notifications a receiver is sent per minute (a burst of as many, then evenly spread); over it a notification waits in Alertmanager's retries and, if the flush's time runs out, becomes ev.alert.undelivered; 0: no limit"`
}

// Telegram is the chat-operations bot: commands from allowed chats only.
type Telegram struct {
	TokenFile string     `yaml:"token_file" doc:"file holding the bot's token (from @BotFather); empty: no bot"`
	APIURL    string     `yaml:"api_url" doc:"the Bot API's address"`
	Chats     []ChatUser `yaml:"chats" doc:"the chats allowed to command Ops, each acting as an Ops user with a role; any other chat is refused and logged"`
}

// ChatUser maps a Telegram chat to who it acts as.
type ChatUser struct {
	ID   int64  `yaml:"id" doc:"the chat's id (a user's id for a private chat; negative for groups)"`
	User string `yaml:"user" doc:"the Ops user its commands are recorded as"`
	Role string `yaml:"role" doc:"the role whose permissions its commands have (viewer, editor, admin or a custom one)"`
}

// Report is a scheduled e-mail summary of the analytics.
type Report struct {
	Name  string   `yaml:"name" doc:"what the API calls it"`
	To    []string `yaml:"to" doc:"recipients' addresses"`
	Every string   `yaml:"every" doc:"day (yesterday's figures, sent after midnight UTC) or week (Monday to Sunday, sent on Monday)"`
	Site  string   `yaml:"site" doc:"one site's traffic; empty for all"`
}

// SMTP is the mail server Ops sends e-mail through.
type SMTP struct {
	Host         string `yaml:"host" doc:"mail server; empty turns e-mail off"`
	Port         int    `yaml:"port" doc:"587 (STARTTLS), 465 (TLS) or 25"`
	From         string `yaml:"from" doc:"sender address, e.g. Ops <ops@example.com>"`
	Username     string `yaml:"username" doc:"for SMTP AUTH PLAIN (only over TLS, or to localhost)"`
	PasswordFile string `yaml:"password_file" doc:"file holding the password"`
	TLS          string `yaml:"tls" doc:"starttls (when the server offers it; required with a username), tls (implicit, port 465) or none"`
}

// Funnel is a named sequence of steps (goals) visitors go through in order.
type Funnel struct {
	Name   string   `yaml:"name" doc:"what the API and UI call it"`
	Steps  []string `yaml:"steps" doc:"goals in order, e.g. [page==/, page==/pricing, event==Signup]"`
	Window Duration `yaml:"window" doc:"every step within this long of the first (default 7 days)"`
}

// Log configures log/slog output.
type Log struct {
	Level   string            `yaml:"level" doc:"debug, info, warn or error"`
	Format  string            `yaml:"format" doc:"text or json"`
	Modules map[string]string `yaml:"modules" doc:"per-module levels, e.g. {bus: debug}"`
}

// Default returns the built-in defaults: Ops starts with no file at all.
func Default() Config {
	return Config{
		DataDir: "./data",
		HTTP: HTTP{
			Listen:            "127.0.0.1:7070",
			ReadHeaderTimeout: Duration(10 * time.Second),
			ReadTimeout:       Duration(60 * time.Second),
			WriteTimeout:      Duration(60 * time.Second),
			IdleTimeout:       Duration(120 * time.Second),
			MaxBodyBytes:      8 << 20,
			ShutdownTimeout:   Duration(20 * time.Second),
		},
		Bus: Bus{
			Sync:           Sync{Always: true},
			Retention:      Retention{MaxAge: Duration(30 * 24 * time.Hour)},
			DedupWindow:    Duration(2 * time.Minute),
			DedupIDs:       500_000,
			Replicas:       1,
			MaxPayload:     8 << 20,
			PublishTimeout: Duration(10 * time.Second), MinFree: 64 << 20,
		},
		Events:    Events{MaxBytes: 64 << 10},
		Collector: Collector{MaxEventBytes: 32 << 10, MaxBatchBytes: 500 << 10},
		Log:       Log{Level: "info", Format: "text"},
		Identity:  defaultIdentity(),
		Proxy:     defaultProxy(),
		TSDB:      defaultTSDB(),
		Analytics: Analytics{Enabled: true, SessionTimeout: Duration(30 * time.Minute)},
		SMTP:      SMTP{Port: 587, TLS: "starttls"},
		Alert:     Alert{Enabled: true, EvaluationInterval: Duration(15 * time.Second), Telegram: Telegram{APIURL: "https://api.telegram.org"}},
		Deploy: Deploy{Enabled: true, HeartbeatInterval: Duration(30 * time.Second), SilentAfter: 3,
			ForgetHostsAfter: Duration(7 * 24 * time.Hour), MaxConfigBytes: 1 << 20},
		DNS:        defaultDNS(),
		Moderation: defaultModeration(),
		Phishing:   Phishing{Refresh: Duration(time.Hour), NewDomainDays: 7, BlockScore: 100, WarnScore: 50},
	}
}

// Validate checks values that parse but make no sense. It returns every
// problem found.
func (c *Config) Validate() Errors {
	var errs Errors
	add := func(path, format string, a ...any) {
		errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, a...)})
	}
	if c.DataDir == "" {
		add("data_dir", "must not be empty")
	}
	if err := checkListen(c.HTTP.Listen); err != nil {
		add("http.listen", "%v", err)
	}
	if c.Bus.Listen != "" {
		if err := checkListen(c.Bus.Listen); err != nil {
			add("bus.listen", "%v", err)
		}
		if c.Bus.URL != "" {
			add("bus.listen", "is for the embedded server; it cannot be set together with bus.url")
		}
	}
	if c.Bus.URL != "" {
		for _, u := range strings.Split(c.Bus.URL, ",") {
			p, err := url.Parse(strings.TrimSpace(u))
			if err != nil || p.Host == "" {
				add("bus.url", "invalid URL %q (example: nats://127.0.0.1:4222)", u)
				continue
			}
			switch p.Scheme {
			case "nats", "tls", "ws", "wss":
			default:
				add("bus.url", "scheme %q is not nats, tls, ws or wss", p.Scheme)
			}
		}
	} else if c.Bus.Credentials != "" {
		add("bus.credentials", "is only used with bus.url")
	}
	if (c.Bus.TLS.Cert == "") != (c.Bus.TLS.Key == "") {
		add("bus.tls", "cert and key must be set together")
	}
	if c.Bus.Replicas < 1 || c.Bus.Replicas > 5 {
		add("bus.replicas", "must be between 1 and 5, got %d", c.Bus.Replicas)
	}
	if c.Bus.DedupWindow.D() < time.Second {
		add("bus.dedup_window", "must be at least 1s")
	}
	if c.Bus.DedupIDs < 0 {
		add("bus.dedup_ids", "must not be negative")
	}
	if c.Bus.MaxPayload < 64<<10 || c.Bus.MaxPayload > 64<<20 {
		add("bus.max_payload", "must be between 64KiB and 64MiB")
	}
	if c.Bus.PublishTimeout.D() <= 0 {
		add("bus.publish_timeout", "must be positive")
	}
	if c.Events.MaxBytes < 1024 {
		add("events.max_bytes", "must be at least 1KiB")
	}
	if int64(c.Events.MaxBytes) > int64(c.Bus.MaxPayload)-8<<10 {
		add("events.max_bytes", "must be at least 8KiB below bus.max_payload (%s), which leaves room for headers", c.Bus.MaxPayload)
	}
	if c.HTTP.MaxBodyBytes < c.Events.MaxBytes {
		add("http.max_body_bytes", "must be at least events.max_bytes (%s)", c.Events.MaxBytes)
	}
	if c.HTTP.ReadHeaderTimeout <= 0 {
		add("http.read_header_timeout", "must be positive")
	}
	if !validLevel(c.Log.Level) {
		add("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	for m, l := range c.Log.Modules {
		if !validLevel(l) {
			add("log.modules."+m, "want debug, info, warn or error, got %q", l)
		}
	}
	c.validateGraph(add)
	c.validateDNS(add)
	c.validateForward(add)
	c.validatePhishing(add)
	c.validateModeration(add)
	for i, k := range c.Collector.WriteKeys {
		if len(k) < 8 {
			add(fmt.Sprintf("collector.write_keys[%d]", i), "write keys need at least 8 characters")
		}
	}
	if c.Alert.EvaluationInterval < Duration(time.Second) || c.Alert.EvaluationInterval > Duration(time.Hour) {
		add("alert.evaluation_interval", "want 1s to 1h, got %s", c.Alert.EvaluationInterval)
	}
	if c.Alert.ReceiverRate < 0 || c.Alert.ReceiverRate > 100000 {
		add("alert.receiver_rate", "want 0 (no limit) to 100000 per minute, got %d", c.Alert.ReceiverRate)
	}
	for i, ch := range c.Alert.Telegram.Chats {
		if ch.ID == 0 {
			add(fmt.Sprintf("alert.telegram.chats[%d].id", i), "want the chat's id")
		}
		if ch.User == "" {
			add(fmt.Sprintf("alert.telegram.chats[%d].user", i), "want the Ops user its commands are recorded as")
		}
		if ch.Role == "" {
			add(fmt.Sprintf("alert.telegram.chats[%d].role", i), "want a role")
		}
	}
	if tg := c.Alert.Telegram; tg.TokenFile != "" {
		if u, err := url.Parse(tg.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add("alert.telegram.api_url", "want an http(s) URL, got %q", tg.APIURL)
		}
	}
	if d := c.Deploy; d.HeartbeatInterval < Duration(time.Second) || d.HeartbeatInterval > Duration(24*time.Hour) {
		add("deploy.heartbeat_interval", "want 1s to 24h, got %s", d.HeartbeatInterval)
	}
	if d := c.Deploy; d.SilentAfter < 1 || d.SilentAfter > 1000 {
		add("deploy.silent_after", "want 1 to 1000 heartbeats, got %d", d.SilentAfter)
	}
	if d := c.Deploy; d.ForgetHostsAfter < Duration(time.Hour) {
		add("deploy.forget_hosts_after", "want at least 1h, got %s", d.ForgetHostsAfter)
	}
	if d := c.Deploy; d.MaxConfigBytes < 1<<10 || d.MaxConfigBytes > 16<<20 {
		add("deploy.max_config_bytes", "want 1KiB to 16MiB, got %d", d.MaxConfigBytes)
	}
	if c.Analytics.SessionTimeout < Duration(time.Minute) || c.Analytics.SessionTimeout > Duration(24*time.Hour) {
		add("analytics.session_timeout", "want 1m to 24h, got %s", c.Analytics.SessionTimeout)
	}
	c.validateMail(add)
	if c.CoAP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.CoAP.Listen); err != nil {
			add("coap.listen", "want host:port or :port, got %q", c.CoAP.Listen)
		}
	}
	for i, p := range c.Collector.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			add(fmt.Sprintf("collector.trusted_proxies[%d]", i), "want a CIDR such as 10.0.0.0/8, got %q", p)
		}
	}
	if c.Collector.MaxEventBytes < 1024 || c.Collector.MaxEventBytes > c.Events.MaxBytes {
		add("collector.max_event_bytes", "must be between 1KiB and events.max_bytes (%s)", c.Events.MaxBytes)
	}
	if c.Collector.MaxBatchBytes < c.Collector.MaxEventBytes || c.Collector.MaxBatchBytes > c.HTTP.MaxBodyBytes {
		add("collector.max_batch_bytes", "must be between collector.max_event_bytes and http.max_body_bytes")
	}
	c.Identity.validate(add)
	c.Proxy.validate(add)
	c.TSDB.validate(add)
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add("log.format", "want text or json, got %q", c.Log.Format)
	}
	return errs
}

func validLevel(s string) bool {
	switch s {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("host %q is not an IP address or localhost", host)
	}
	if port == "" {
		return fmt.Errorf("missing port in %q", addr)
	}
	return nil
}

// Hash is a short hash of the effective config, to tell nodes' configs apart.
func (c *Config) Hash() string {
	b, err := json.Marshal(c)
	if err != nil {
		return "unknown"
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// validateMail checks smtp and the reports that need it.
func (c *Config) validateMail(add func(path, format string, a ...any)) {
	m := c.SMTP
	if m.Host != "" {
		if m.Port < 1 || m.Port > 65535 {
			add("smtp.port", "want 1 to 65535, got %d", m.Port)
		}
		if _, err := mail.ParseAddress(m.From); err != nil {
			add("smtp.from", "want an address such as Ops <ops@example.com>: %v", err)
		}
		switch m.TLS {
		case "starttls", "tls", "none":
		default:
			add("smtp.tls", "want starttls, tls or none, got %q", m.TLS)
		}
		if m.Username != "" && m.TLS == "none" {
			add("smtp.username", "a password is not sent without TLS: set smtp.tls to starttls or tls")
		}
	}
	names := map[string]bool{}
	for i, r := range c.Analytics.Reports {
		at := fmt.Sprintf("analytics.reports[%d]", i)
		if m.Host == "" {
			add(at, "e-mail reports need smtp.host")
		}
		if r.Name == "" || names[r.Name] {
			add(at+".name", "want a name of its own")
		}
		names[r.Name] = true
		if r.Every != "day" && r.Every != "week" {
			add(at+".every", "want day or week, got %q", r.Every)
		}
		if len(r.To) == 0 {
			add(at+".to", "want at least one address")
		}
		for j, to := range r.To {
			if _, err := mail.ParseAddress(to); err != nil {
				add(fmt.Sprintf("%s.to[%d]", at, j), "%v", err)
			}
		}
	}
}
