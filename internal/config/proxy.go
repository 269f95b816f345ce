package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/opsgraph/ops/internal/canon"
)

// Proxy configures the edge reverse proxy. It runs when routes are set.
type Proxy struct {
	Listen            string          `yaml:"listen" doc:"address of the proxy (plain HTTP)"`
	TLSListen         string          `yaml:"tls_listen" doc:"address of the proxy with TLS (HTTP/2); needs certificates"`
	Certificates      []CertPair      `yaml:"certificates" doc:"certificate and key files; chosen by SNI"`
	TrustedProxies    Strings         `yaml:"trusted_proxies" doc:"CIDRs of load balancers in front whose X-Forwarded-For is believed"`
	Routes            []Route         `yaml:"routes" doc:"matched in order: first host and path match wins"`
	Tracking          ProxyTrack      `yaml:"tracking"`
	IdentityHeaders   IdentityHeaders `yaml:"identity_headers" doc:"headers that carry the signed-in user upstream (stripped from client requests)"`
	Cache             ProxyCache      `yaml:"cache" doc:"storage of the shared cache that routes with cache: true use"`
	ReadHeaderTimeout Duration        `yaml:"read_header_timeout" doc:"time for a client to send request headers"`
	IdleTimeout       Duration        `yaml:"idle_timeout" doc:"keep-alive connections from clients close after this idle time"`
	EncodedSlashes    string          `yaml:"encoded_slashes" doc:"reject: a path holding %2F or %5C gets 400; keep: they go upstream escaped, and routes, ACLs and path blocks must agree on the path read both ways (docs/proxy.md)"`
	FastPath          bool            `yaml:"fast_path" doc:"serve plain HTTP/1.1 requests that need no cache, injection, compression or sign-in on Ops's own lighter path (docs/proxy.md); false sends every request through Go's net/http server"`
	Forward           ProxyForward    `yaml:"forward"`
}

// ProxyCache sizes the RFC 9111 shared cache.
type ProxyCache struct {
	Dir       string   `yaml:"dir" doc:"where bodies and their metadata live; empty is data_dir/proxy-cache"`
	Memory    ByteSize `yaml:"memory" doc:"hot bodies kept in memory as well"`
	Disk      ByteSize `yaml:"disk" doc:"most bytes of bodies on disk; least recently used entries go first"`
	MaxObject ByteSize `yaml:"max_object" doc:"larger responses are not stored"`
}

// CertPair is a certificate chain and its key, PEM files.
type CertPair struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// IdentityHeaders name the headers the proxy sets for authenticated requests.
type IdentityHeaders struct {
	User   string `yaml:"user"`
	Groups string `yaml:"groups"`
	Email  string `yaml:"email"`
}

// ProxyTrack configures ev.proxy.request events.
type ProxyTrack struct {
	Enabled      bool     `yaml:"enabled" doc:"publish an ev.proxy.request event per request"`
	RedactParams Strings  `yaml:"redact_params" doc:"query parameters whose values are replaced by REDACTED in events"`
	Queue        int      `yaml:"queue" doc:"events held in memory for publishing; beyond it they spool to disk"`
	Batch        int      `yaml:"batch" doc:"events per bus publish"`
	Flush        Duration `yaml:"flush" doc:"a partial batch is published after this long"`
	SpoolMax     ByteSize `yaml:"spool_max" doc:"largest spool file (data_dir/proxy-spool) while the bus is away; beyond it events are dropped and counted"`
}

// Route sends matching requests to upstreams.
type Route struct {
	Name      string    `yaml:"name" doc:"names the route in events and metrics"`
	Hosts     Strings   `yaml:"hosts" doc:"host names; *.example.com matches one label; empty matches any"`
	Path      string    `yaml:"path" doc:"path prefix, default /"`
	Upstreams Strings   `yaml:"upstreams" doc:"http://host:port base URLs"`
	Balance   string    `yaml:"balance" doc:"round_robin or least_conn"`
	Health    Health    `yaml:"health" doc:"active health checks"`
	Passive   Passive   `yaml:"passive" doc:"take an upstream out after failures"`
	Timeout   Duration  `yaml:"timeout" doc:"how long to wait for the upstream's response headers"`
	MaxBody   ByteSize  `yaml:"max_body" doc:"largest request body; 0 is unlimited"`
	Auth      string    `yaml:"auth" doc:"none, or required: unauthenticated browsers go to /_ops/login, others get 401"`
	StripPath bool      `yaml:"strip_path" doc:"remove the route's path prefix before proxying"`
	ACL       ACL       `yaml:"acl"`
	RateLimit RateLimit `yaml:"rate_limit"`
	Inject    Inject    `yaml:"inject"`
	Compress  string    `yaml:"compress" doc:"auto (brotli, zstd or gzip by Accept-Encoding for compressible types of 1 KiB or more) or off"`
	Cache     bool      `yaml:"cache" doc:"keep responses in the shared cache as RFC 9111 allows"`
	Moderate  Moderate  `yaml:"moderate" doc:"check posted text (forums, comments) before it reaches the upstream (docs/moderation.md)"`
}

// Inject adds the tracker and snippets to HTML pages on their way through.
type Inject struct {
	Tracker      bool   `yaml:"tracker" doc:"insert the first-party tracker <script src=/_ops/ops.js> before </head>"`
	WriteKey     string `yaml:"write_key" doc:"the write key the injected tracker sends with"`
	Head         string `yaml:"head" doc:"HTML inserted before </head> (JS or CSS snippets)"`
	Body         string `yaml:"body" doc:"HTML inserted before </body>"`
	CSPNonce     bool   `yaml:"csp_nonce" doc:"give inserted <script> and <style> tags the nonce of the page's Content-Security-Policy"`
	RewriteLinks bool   `yaml:"rewrite_links" doc:"point links to other hosts at signed /_ops/out/ redirects that record the click (ev.proxy.outbound)"`
}

// Health configures active health checks of a route's upstreams.
type Health struct {
	Path     string   `yaml:"path" doc:"GET this path; empty turns active checks off"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	Fails    int      `yaml:"fails" doc:"consecutive failures that mark an upstream down"`
	Passes   int      `yaml:"passes" doc:"consecutive successes that bring it back"`
}

// Passive ejects an upstream after errors on live traffic.
type Passive struct {
	MaxFails     int      `yaml:"max_fails" doc:"upstream failures in a row (connection refused or reset, timeouts, broken responses, fail_statuses) that take it out; client errors never count; 0 turns it off"`
	EjectFor     Duration `yaml:"eject_for" doc:"how long an ejected upstream rests"`
	FailStatuses []int    `yaml:"fail_statuses" doc:"upstream status codes that count as failures too, e.g. [502, 503, 504]; empty: none"`
}

// ACL is an ordered rule list; the first matching rule decides.
type ACL struct {
	Default string    `yaml:"default" doc:"allow or deny when no rule matches"`
	Rules   []ACLRule `yaml:"rules"`
}

// ACLRule matches when every condition it sets holds.
type ACLRule struct {
	Action  string  `yaml:"action" doc:"allow or deny"`
	Paths   Strings `yaml:"paths" doc:"path globs: * within a segment, ** across segments"`
	Methods Strings `yaml:"methods"`
	CIDRs   Strings `yaml:"cidrs" doc:"client address ranges"`
	Users   Strings `yaml:"users" doc:"signed-in users (route auth: required)"`
	Groups  Strings `yaml:"groups" doc:"signed-in users' groups"`
	Time    string  `yaml:"time" doc:"daily window HH:MM-HH:MM in UTC, e.g. 09:00-17:00"`
	Header  string  `yaml:"header" doc:"Name: value that must be present (value * for any)"`
}

// RateLimit is a token bucket per client address and per user.
type RateLimit struct {
	PerIP     float64            `yaml:"per_ip" doc:"requests per second per client address; 0 is unlimited"`
	PerUser   float64            `yaml:"per_user" doc:"requests per second per signed-in user; 0 is unlimited"`
	Burst     int                `yaml:"burst" doc:"requests allowed at once above the rate"`
	Overrides map[string]float64 `yaml:"overrides" doc:"per-second rates for specific users or CIDRs"`
}

func defaultProxy() Proxy {
	return Proxy{
		Listen:            ":8080",
		ReadHeaderTimeout: Duration(10 * time.Second),
		IdleTimeout:       Duration(120 * time.Second),
		FastPath:          true,
		EncodedSlashes:    "reject",
		Tracking: ProxyTrack{
			Enabled: true, Queue: 10000, Batch: 500, Flush: Duration(200 * time.Millisecond), SpoolMax: 1 << 30,
			RedactParams: Strings{"token", "access_token", "password", "secret", "key", "api_key", "code", "signature"},
		},
		IdentityHeaders: IdentityHeaders{User: "X-Forwarded-User", Groups: "X-Forwarded-Groups", Email: "X-Forwarded-Email"},
		Cache:           ProxyCache{Memory: 64 << 20, Disk: 1 << 30, MaxObject: 64 << 20},
		Forward:         defaultForward(),
	}
}

// routeDefaults fills what a route leaves out.
func (r *Route) defaults() {
	if r.Path == "" {
		r.Path = "/"
	}
	if r.Balance == "" {
		r.Balance = "round_robin"
	}
	if r.Auth == "" {
		r.Auth = "none"
	}
	if r.Timeout == 0 {
		r.Timeout = Duration(60 * time.Second)
	}
	if r.Health.Path != "" {
		if r.Health.Interval == 0 {
			r.Health.Interval = Duration(5 * time.Second)
		}
		if r.Health.Timeout == 0 {
			r.Health.Timeout = Duration(2 * time.Second)
		}
		if r.Health.Fails == 0 {
			r.Health.Fails = 2
		}
		if r.Health.Passes == 0 {
			r.Health.Passes = 1
		}
	}
	if r.Passive.MaxFails > 0 && r.Passive.EjectFor == 0 {
		r.Passive.EjectFor = Duration(30 * time.Second)
	}
	if r.ACL.Default == "" {
		r.ACL.Default = "allow"
	}
	if r.Compress == "" {
		r.Compress = "auto"
	}
	if len(r.Moderate.Fields) > 0 {
		if r.Moderate.Action == "" {
			r.Moderate.Action = "log"
		}
		if r.Moderate.MaxBody == 0 {
			r.Moderate.MaxBody = 64 << 10
		}
	}
}

var (
	routeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	timeWinRE   = regexp.MustCompile(`^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$`)
)

// RouteHost is a route's host in the form requests are matched in
// (canon.Host: lower-case ASCII, no trailing dot), keeping a leading "*."
// wildcard.
func RouteHost(h string) (string, error) {
	rest, wild := strings.CutPrefix(h, "*.")
	c, port, err := canon.Host(rest)
	if err != nil || port != "" || strings.ContainsAny(c, ":*") {
		return "", fmt.Errorf("host %q: %w", h, canon.ErrHost)
	}
	if wild {
		c = "*." + c
	}
	return c, nil
}

func (p *Proxy) validate(add func(path, format string, a ...any)) {
	if len(p.Routes) == 0 {
		return
	}
	if p.Listen != "" {
		if err := checkListen(p.Listen); err != nil {
			add("proxy.listen", "%v", err)
		}
	}
	if p.TLSListen != "" {
		if err := checkListen(p.TLSListen); err != nil {
			add("proxy.tls_listen", "%v", err)
		}
		if len(p.Certificates) == 0 {
			add("proxy.certificates", "proxy.tls_listen needs at least one certificate")
		}
	}
	if p.EncodedSlashes != "reject" && p.EncodedSlashes != "keep" {
		add("proxy.encoded_slashes", "want reject or keep, got %q", p.EncodedSlashes)
	}
	if p.Listen == "" && p.TLSListen == "" {
		add("proxy.listen", "set listen or tls_listen")
	}
	for i, c := range p.Certificates {
		if c.Cert == "" || c.Key == "" {
			add(fmt.Sprintf("proxy.certificates[%d]", i), "cert and key are both required")
		}
	}
	for i, c := range p.TrustedProxies {
		if _, err := netip.ParsePrefix(c); err != nil {
			add(fmt.Sprintf("proxy.trusted_proxies[%d]", i), "want a CIDR such as 10.0.0.0/8, got %q", c)
		}
	}
	if p.Cache.Memory < 0 || p.Cache.Disk < 1<<20 || p.Cache.MaxObject < 1 || p.Cache.MaxObject > p.Cache.Disk {
		add("proxy.cache", "want memory >= 0, disk >= 1MiB and 0 < max_object <= disk")
	}
	if p.Tracking.Queue < 1 || p.Tracking.Batch < 1 || p.Tracking.Batch > p.Tracking.Queue {
		add("proxy.tracking.batch", "want 1 <= batch <= queue")
	}
	names := map[string]bool{}
	for i := range p.Routes {
		r := &p.Routes[i]
		r.defaults()
		at := func(f string) string { return fmt.Sprintf("proxy.routes[%d].%s", i, f) }
		if !routeNameRE.MatchString(r.Name) {
			add(at("name"), "want a lower-case name of letters, digits, _ and -, got %q", r.Name)
		} else if names[r.Name] {
			add(at("name"), "route %q defined twice", r.Name)
		}
		names[r.Name] = true
		for j, h := range r.Hosts {
			if _, err := RouteHost(h); err != nil {
				add(fmt.Sprintf("proxy.routes[%d].hosts[%d]", i, j), "want a host name such as example.com, bücher.example or *.example.com, got %q", h)
			}
		}
		if cp, err := canon.Path(r.Path, canon.Options{}); err != nil || strings.TrimSuffix(cp, "/") != strings.TrimSuffix(r.Path, "/") {
			add(at("path"), "want a canonical absolute path prefix such as /api (no //, . or .. segments, escapes only where needed), got %q", r.Path)
		}
		if strings.HasPrefix(r.Path, "/_ops") {
			add(at("path"), "/_ops/ is reserved for Ops's first-party endpoints")
		}
		if len(r.Upstreams) == 0 {
			add(at("upstreams"), "at least one upstream is required")
		}
		for j, u := range r.Upstreams {
			pu, err := url.Parse(u)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.RawQuery != "" {
				add(fmt.Sprintf("proxy.routes[%d].upstreams[%d]", i, j), "want http://host:port or https://host:port, got %q", u)
			}
		}
		if r.Balance != "round_robin" && r.Balance != "least_conn" {
			add(at("balance"), "want round_robin or least_conn, got %q", r.Balance)
		}
		if r.Auth != "none" && r.Auth != "required" {
			add(at("auth"), "want none or required, got %q", r.Auth)
		}
		if r.Health.Path != "" && !strings.HasPrefix(r.Health.Path, "/") {
			add(at("health.path"), "want an absolute path such as /healthz")
		}
		if r.Compress != "auto" && r.Compress != "off" {
			add(at("compress"), "want auto or off, got %q", r.Compress)
		}
		if r.Inject.Tracker && r.Inject.WriteKey == "" {
			add(at("inject.write_key"), "the injected tracker needs a write key (ops keys create)")
		}
		if r.ACL.Default != "allow" && r.ACL.Default != "deny" {
			add(at("acl.default"), "want allow or deny, got %q", r.ACL.Default)
		}
		for j, rule := range r.ACL.Rules {
			rat := func(f string) string { return fmt.Sprintf("proxy.routes[%d].acl.rules[%d].%s", i, j, f) }
			if rule.Action != "allow" && rule.Action != "deny" {
				add(rat("action"), "want allow or deny, got %q", rule.Action)
			}
			for k, c := range rule.CIDRs {
				if _, err := netip.ParsePrefix(c); err != nil {
					if _, err := netip.ParseAddr(c); err != nil {
						add(fmt.Sprintf("proxy.routes[%d].acl.rules[%d].cidrs[%d]", i, j, k), "want a CIDR or address, got %q", c)
					}
				}
			}
			for k, pth := range rule.Paths {
				if _, err := canon.Path(pth, canon.Options{}); err != nil {
					add(fmt.Sprintf("proxy.routes[%d].acl.rules[%d].paths[%d]", i, j, k), "want a glob starting with / (matched against canonical paths: %v), got %q", err, pth)
				}
			}
			if rule.Time != "" && !timeWinRE.MatchString(rule.Time) {
				add(rat("time"), "want HH:MM-HH:MM (UTC), got %q", rule.Time)
			}
			if rule.Header != "" && !strings.Contains(rule.Header, ":") {
				add(rat("header"), "want \"Name: value\", got %q", rule.Header)
			}
			if (len(rule.Users) > 0 || len(rule.Groups) > 0) && r.Auth != "required" {
				add(rat("users"), "user and group rules need auth: required on the route")
			}
		}
		for k, code := range r.Passive.FailStatuses {
			if code < 100 || code > 599 {
				add(fmt.Sprintf("proxy.routes[%d].passive.fail_statuses[%d]", i, k), "want an HTTP status code such as 503, got %d", code)
			}
		}
		if r.RateLimit.PerIP < 0 || r.RateLimit.PerUser < 0 || r.RateLimit.Burst < 0 {
			add(at("rate_limit"), "rates and burst must not be negative")
		}
		for k := range r.RateLimit.Overrides {
			if strings.Contains(k, "/") {
				if _, err := netip.ParsePrefix(k); err != nil {
					add(at("rate_limit.overrides"), "key %q: want a user name or a CIDR", k)
				}
			}
		}
	}
}
