// Package forward is the office's explicit forward proxy
// (proxy.forward): browsers and tools set it as their HTTP proxy; it
// asks who they are (Proxy-Authorization against Ops's users, LDAP or
// API tokens), decides per host by rules of users, groups and networks,
// tunnels HTTPS with CONNECT (by host and port, without interception),
// forwards plain HTTP, and records every decision as an ev.proxy.browse
// event. It never connects to the addresses in deny_networks (checked on
// the resolved address, at dial time, so a name that later resolves to
// one is refused too), nor to ports other than allow_ports for CONNECT.
// A PAC file for browsers is at /proxy.pac (and /wpad.dat) on the main
// listener and /_ops/proxy.pac on the reverse proxy.
package forward

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/idna"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/canon"
	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/evqueue"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/phish"
	"github.com/opsgraph/ops/internal/policy"
	"github.com/opsgraph/ops/internal/reply"
	"github.com/opsgraph/ops/internal/webfilter"
)

// Authenticator checks credentials (identity.Module): API tokens by
// Identify, passwords by CheckPassword (throttled and audited as the
// sign-in form's), and POLICY locks for cached sign-ins.
type Authenticator interface {
	Identify(w http.ResponseWriter, r *http.Request) (*identity.Identity, error)
	CheckPassword(ctx context.Context, user, password string, ip netip.Addr, via string) (*identity.Identity, error)
	Locked(ctx context.Context, user string) (string, error)
	Negotiates() bool
}

// credTTL is how long a checked user name and password are believed
// without asking the providers again (browsers send them with every
// request; a bcrypt or LDAP bind each would be the proxy's whole cost).
// POLICY locks still apply at once: they are checked on every request.
const (
	credTTL     = 5 * time.Minute
	credEntries = 10_000
)

type credEntry struct {
	id      *identity.Identity
	expires time.Time
}

// Deps are what the forward proxy needs from the app.
type Deps struct {
	Bus      *bus.Bus
	Logger   *slog.Logger
	Registry prometheus.Registerer
	DataDir  string
	Auth     Authenticator
	// Handle mounts the PAC routes on the main listener; may be nil.
	Handle func(pattern, perm string, h http.Handler)
	// Phish judges hosts, URLs and pages for phishing; nil: off.
	Phish *phish.Checker
}

// Proxy is the forward proxy module.
type Proxy struct {
	cfg    config.ProxyForward
	deps   Deps
	log    *slog.Logger
	rules  []rule
	deny   []netip.Prefix
	ports  map[int]bool
	hosts  map[string]netip.Addr
	dialer *net.Dialer
	http   *httputil.ReverseProxy
	events *evqueue.Queue
	n      *prometheus.CounterVec
	// filter is the content filter (nil when off); policy mirrors the
	// POLICY bucket's browse entries.
	filter  *filter
	icpt    *interceptor // TLS interception; nil when off
	policy  *browsePolicy
	reviews *prometheus.CounterVec

	mu    sync.Mutex
	addr  net.Addr
	creds map[[32]byte]credEntry // sha256 of user NUL password -> who
	// own: this machine's interface addresses (deny_own_addresses),
	// read again when older than a minute.
	own   map[netip.Addr]bool
	ownAt time.Time
}

type rule struct {
	cfg      config.ForwardRule
	networks []netip.Prefix
	times    []config.TimeWindow
}

// New builds the proxy; it listens in Run.
func New(cfg config.ProxyForward, deps Deps) (*Proxy, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: cfg, deps: deps, log: deps.Logger, ports: map[int]bool{}, creds: map[[32]byte]credEntry{},
		dialer: &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}
	for _, r := range cfg.Rules {
		x := rule{cfg: r}
		for _, n := range r.Networks {
			pfx, err := parsePrefix(n)
			if err != nil {
				return nil, fmt.Errorf("proxy.forward.rules: %w", err)
			}
			x.networks = append(x.networks, pfx)
		}
		for _, t := range r.Times {
			tw, err := config.ParseTimeWindow(t)
			if err != nil {
				return nil, fmt.Errorf("proxy.forward.rules: %w", err)
			}
			x.times = append(x.times, tw)
		}
		p.rules = append(p.rules, x)
	}
	for _, n := range cfg.DenyNetworks {
		pfx, err := parsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("proxy.forward.deny_networks: %w", err)
		}
		p.deny = append(p.deny, pfx)
	}
	for _, port := range cfg.AllowPorts {
		p.ports[port] = true
	}
	p.hosts = map[string]netip.Addr{}
	for name, addr := range cfg.Hosts {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return nil, fmt.Errorf("proxy.forward.hosts.%s: %w", name, err)
		}
		h, err := webfilter.CanonHost(name)
		if err != nil {
			return nil, fmt.Errorf("proxy.forward.hosts.%s: %w", name, err)
		}
		p.hosts[h] = a.Unmap()
	}
	tr := &http.Transport{DialContext: p.dial, MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 60 * time.Second, ForceAttemptHTTP2: false,
		// What the client asked for goes upstream as it is: the transport
		// adds no Accept-Encoding and decodes nothing behind its back.
		DisableCompression: true}
	p.http = &httputil.ReverseProxy{Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = pr.In.URL
			pr.Out.Host = pr.In.URL.Host
			pr.Out.RequestURI = ""
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code := http.StatusBadGateway
			if errors.Is(err, errDenied) {
				code = http.StatusForbidden
			}
			page(w, code, "Cannot reach "+r.URL.Host, err.Error())
		},
		ModifyResponse: p.scanResponse}
	if cfg.Intercept.Enabled {
		var err error
		if p.icpt, err = newInterceptor(cfg.Intercept, deps.DataDir); err != nil {
			return nil, err
		}
		if cfg.Intercept.UpstreamCA != "" {
			pemBytes, err := os.ReadFile(cfg.Intercept.UpstreamCA)
			if err != nil {
				return nil, fmt.Errorf("proxy.forward.intercept.upstream_ca: %w", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pemBytes) {
				return nil, fmt.Errorf("proxy.forward.intercept.upstream_ca: no PEM certificate in %s", cfg.Intercept.UpstreamCA)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		}
	}
	// The pages (block, warn, review) are always there: rules may warn
	// without the content filter; categories load only when it is on.
	var err error
	if p.filter, err = newFilter(cfg.Filter, p.log.With("part", "filter")); err != nil {
		return nil, err
	}
	if deps.Bus != nil {
		p.policy = &browsePolicy{m: map[string]policy.Entry{}}
	}
	p.n = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_forward_requests_total",
		Help: "Requests to the forward proxy, by method class (connect or http) and action (allow, block, auth, error)."}, []string{"kind", "action"})
	p.reviews = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_forward_review_requests_total",
		Help: "Reviews people asked for from the forward proxy's block page, by category (alert on increase())."}, []string{"category"})
	if deps.Registry != nil {
		deps.Registry.MustRegister(p.n, p.reviews)
	}
	// The review counter's series exist from the start, at 0, so an
	// alert on increase() sees the first review too.
	if set := p.filter.set.Load(); set != nil {
		for _, c := range set.Categories {
			p.reviews.WithLabelValues(c.Name)
		}
	}
	p.reviews.WithLabelValues("phishing")
	if deps.Bus != nil {
		var err error
		if p.events, err = evqueue.Open(evqueue.Options{Bus: deps.Bus, Log: p.log.With("part", "events"), Dir: filepath.Join(deps.DataDir, "forward-spool"),
			Queue: 20_000, Batch: 500, Flush: 200 * time.Millisecond, SpoolMax: 256 << 20, Name: "forward", What: "browse events", Registry: deps.Registry}); err != nil {
			return nil, fmt.Errorf("forward spool: %w", err)
		}
	}
	if deps.Handle != nil {
		pac := http.HandlerFunc(p.servePAC)
		deps.Handle("GET /proxy.pac", "public", pac)
		deps.Handle("GET /wpad.dat", "public", pac)
		if cfg.Intercept.Enabled {
			deps.Handle("GET /api/v1/forward/ca.pem", "public", http.HandlerFunc(p.serveCA))
		}
	}
	return p, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: want an address or a CIDR", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Run listens until ctx ends.
func (p *Proxy) Run(ctx context.Context, ready func()) error {
	l, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("proxy.forward.listen %s: %w", p.cfg.Listen, err)
	}
	p.mu.Lock()
	p.addr = l.Addr()
	p.mu.Unlock()
	p.log.Info("listening", "forward_proxy", l.Addr().String())
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)}
	go func() { _ = srv.Serve(l) }()
	evDone := make(chan struct{})
	ectx, ecancel := context.WithCancel(context.WithoutCancel(ctx))
	if p.events != nil {
		go func() { defer close(evDone); p.events.Run(ectx) }()
	} else {
		close(evDone)
	}
	if p.filter.cfg.Enabled {
		go p.filter.run(ctx)
	}
	if p.policy != nil {
		go p.policy.watch(ctx, p)
	}
	ready()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	ecancel()
	<-evDone
	return nil
}

// Addr is the bound address, once running.
func (p *Proxy) Addr() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// browse is the data of an ev.proxy.browse event.
type browse struct {
	User   string `json:"user,omitempty"`
	Client string `json:"client,omitempty"` // anonymised
	Method string `json:"method"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
	Path   string `json:"path,omitempty"` // plain HTTP only
	SNI    string `json:"sni,omitempty"`  // tunnels: the TLS server name the client asked for
	// Intercepted: a tunnel opened with Ops's CA, or a request inside one.
	Intercepted bool   `json:"intercepted,omitempty"`
	Action      string `json:"action"` // allow, block, warn, continue (through a warning), log, error
	Rule        string `json:"rule,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// The content filter's verdict: the top category over the threshold,
	// its score, the top scores, and how much of the page was scanned.
	Category   string            `json:"category,omitempty"`
	Score      int               `json:"score,omitempty"`
	Scores     []webfilter.Score `json:"scores,omitempty"`
	Scanned    int               `json:"scanned,omitempty"`
	SafeSearch bool              `json:"safe_search,omitempty"`
	RequestID  string            `json:"request_id,omitempty"` // on block and warn pages
	Phish      *phishInfo        `json:"phish,omitempty"`      // when phishing protection found anything
	Status     int               `json:"status,omitempty"`
	BytesIn    int64             `json:"bytes_in,omitempty"`
	BytesOut   int64             `json:"bytes_out,omitempty"`
	Duration   float64           `json:"duration_ms"`
}

func (p *Proxy) record(b *browse, start time.Time) {
	b.Duration = float64(time.Since(start).Microseconds()) / 1000
	if p.events == nil {
		return
	}
	data, _ := json.Marshal(b)
	ev := event.NewJSON("ops/forward", "proxy.browse", data)
	ev.Time = start.UTC()
	p.events.Add(ev)
}

// ServeHTTP answers proxy requests: CONNECT (authority form) and
// absolute-form HTTP; anything else is not a proxy request (a PAC file
// for GET /proxy.pac, else 400).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	kind := "http"
	if r.Method == http.MethodConnect {
		kind = "connect"
	} else if !r.URL.IsAbs() {
		if r.Method == http.MethodGet && (r.URL.Path == "/proxy.pac" || r.URL.Path == "/wpad.dat") {
			p.servePAC(w, r)
			return
		}
		if r.Method == http.MethodGet && r.URL.Path == "/ca.pem" {
			p.serveCA(w, r)
			return
		}
		page(w, http.StatusBadRequest, "Not a proxy request", "This is Ops's forward proxy: set it as your browser's HTTP proxy, or use /proxy.pac.")
		return
	}
	b := &browse{Method: r.Method}
	client := netip.Addr{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr().Unmap()
		b.Client = clientip.Anonymize(client).String()
	}
	host, port, err := target(r)
	if err != nil {
		p.n.WithLabelValues(kind, "error").Inc()
		page(w, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	b.Host, b.Port = host, port
	var id *identity.Identity
	if p.cfg.Auth == "basic" {
		if id, err = p.identify(r, client); err != nil {
			p.n.WithLabelValues(kind, "auth").Inc()
			if p.deps.Auth != nil && p.deps.Auth.Negotiates() {
				w.Header().Add("Proxy-Authenticate", "Negotiate")
			}
			w.Header().Add("Proxy-Authenticate", `Basic realm="Ops proxy", charset="UTF-8"`)
			code := http.StatusProxyAuthRequired
			if errors.Is(err, identity.ErrUnavailable) {
				code = http.StatusServiceUnavailable
				w.Header().Set("Retry-After", "5")
			}
			page(w, code, "Sign in to the proxy", "Your browser or tool must give the proxy your Ops user name and password (or an API token).")
			return
		}
		b.User = id.User
	}
	st := &reqState{b: b, id: id, client: client, host: host, who: whoKey(id, client), start: start}
	p.handle(w, r, st, kind)
}

// handle decides and serves one request: a CONNECT, an absolute-form
// HTTP request, or a request inside an intercepted tunnel (st.inner).
func (p *Proxy) handle(w http.ResponseWriter, r *http.Request, st *reqState, kind string) {
	b, host, port, start := st.b, st.host, st.b.Port, st.start
	var err error
	if kind == "http" {
		if r.URL.Scheme != "http" && !(st.inner && r.URL.Scheme == "https") {
			b.Action, b.Status, b.Reason = "error", http.StatusBadRequest, "scheme "+r.URL.Scheme
			p.record(b, start)
			page(w, http.StatusBadRequest, "Bad request", "url: only http:// is forwarded; https goes through CONNECT")
			return
		}
		b.Path = r.URL.Path
		st.path, err = canon.Path(r.URL.EscapedPath(), canon.Options{KeepEncodedSlash: true})
		if err != nil {
			b.Action, b.Status, b.Reason = "error", http.StatusBadRequest, err.Error()
			p.record(b, start)
			page(w, http.StatusBadRequest, "Bad request", "path: "+err.Error())
			return
		}
		switch st.path {
		case continuePath:
			p.serveContinue(w, r, st)
			return
		case reviewPath:
			p.serveReview(w, r, st)
			return
		}
	}
	if p.deps.Phish != nil {
		t := host
		if kind == "http" {
			t = r.URL.String()
		}
		if v, err := p.deps.Phish.Check(t, true); err == nil {
			st.phish = &v
		}
	}
	if p.filter.cfg.Enabled {
		st.set = p.filter.set.Load()
		st.sc = st.set.NewScores()
		u := r.URL
		if kind == "connect" {
			u = &url.URL{Scheme: "https", Host: host}
		}
		st.sc.URL(u)
	}
	action, ruleName := p.decideFor(st)
	if action == "allow" && kind == "connect" && !p.ports[port] {
		action, b.Reason = "block", fmt.Sprintf("port %d is not in proxy.forward.allow_ports", port)
	}
	switch {
	case action == "block", action == "warn" && (kind == "connect" || !p.filter.passed(st.who, host, b.Category)):
		b.Action, b.Status = action, http.StatusForbidden
		if b.Reason == "" {
			b.Reason = "rule " + ruleName
		}
		p.n.WithLabelValues(kind, action).Inc()
		p.refuse(w, r, st, action)
		p.record(b, start)
		return
	}
	b.Action = action
	if action == "warn" {
		b.Action = "continue"
	}
	p.n.WithLabelValues(kind, "allow").Inc()
	if kind == "connect" {
		p.tunnel(w, r, st)
		return
	}
	if p.filter.cfg.SafeSearch && webfilter.SafeSearchRequest(r) {
		b.SafeSearch = true
	}
	rec := &reply.Recorder{ResponseWriter: w}
	r.Header.Del("Proxy-Authorization")
	p.http.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	b.Status, b.BytesIn = rec.Code, rec.N
	if rec.Code == 0 {
		b.Status = http.StatusOK
	}
	if st.denied == "" && (b.Status == http.StatusBadGateway || b.Status == http.StatusForbidden) {
		b.Action = "error"
	}
	p.record(b, start)
}

// target is the host (lower case, IDNA A-labels, no trailing dot) and
// port a request is for.
func target(r *http.Request) (string, int, error) {
	var authority string
	defPort := 80
	if r.Method == http.MethodConnect {
		authority = r.RequestURI
		if strings.ContainsAny(authority, "/?#@") || authority == "" {
			return "", 0, fmt.Errorf("CONNECT target: want host:port, got %q", truncate(authority))
		}
		defPort = 0
	} else {
		if r.URL.User != nil {
			return "", 0, errors.New("url: user info in a proxied URL is refused")
		}
		authority = r.URL.Host
		if r.URL.Scheme == "https" {
			defPort = 443
		}
	}
	return parseAuthority(authority, defPort)
}

// parseAuthority splits host[:port] and canonicalises the host; defPort
// 0 means the port is required.
func parseAuthority(a string, defPort int) (string, int, error) {
	if len(a) > 300 {
		return "", 0, fmt.Errorf("host: longer than 300 bytes")
	}
	host, portStr, err := net.SplitHostPort(a)
	if err != nil {
		if defPort == 0 {
			return "", 0, fmt.Errorf("CONNECT target: want host:port, got %q", truncate(a))
		}
		host, portStr = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), strconv.Itoa(defPort)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 || strings.HasPrefix(portStr, "+") || strings.HasPrefix(portStr, "0") {
		return "", 0, fmt.Errorf("port: %q is not a port (1-65535)", truncate(portStr))
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", 0, fmt.Errorf("host: %q has a zone", truncate(host))
		}
		return ip.Unmap().String(), port, nil
	}
	h, err := idna.Lookup.ToASCII(strings.TrimSuffix(host, "."))
	if err != nil || h == "" || strings.ContainsAny(h, " \t\r\n%\\") {
		return "", 0, fmt.Errorf("host: %q is not a host name", truncate(host))
	}
	return strings.ToLower(h), port, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// identify checks Proxy-Authorization: Basic with an API token as the
// password (identity's token check), or a user name and password
// (identity's providers, throttled and audited; then believed for
// credTTL, with POLICY locks checked on every request).
func (p *Proxy) identify(r *http.Request, client netip.Addr) (*identity.Identity, error) {
	auth := r.Header.Get("Proxy-Authorization")
	if auth == "" || p.deps.Auth == nil {
		return nil, identity.ErrInvalid
	}
	scheme, cred, _ := strings.Cut(auth, " ")
	if strings.EqualFold(scheme, "Negotiate") {
		// Kerberos (SPNEGO) for domain-joined machines: identity checks
		// the ticket as it does for the reverse proxy's auth: required.
		q, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "/", nil)
		q.RemoteAddr = r.RemoteAddr
		q.Header.Set("Authorization", "Negotiate "+strings.TrimSpace(cred))
		return p.deps.Auth.Identify(discard{}, q)
	}
	if !strings.EqualFold(scheme, "Basic") {
		return nil, identity.ErrInvalid
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return nil, identity.ErrInvalid
	}
	user, pw, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" || pw == "" {
		return nil, identity.ErrInvalid
	}
	if strings.HasPrefix(pw, "ops_") {
		q, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "/", nil)
		q.RemoteAddr = r.RemoteAddr
		q.Header.Set("Authorization", "Bearer "+pw)
		return p.deps.Auth.Identify(discard{}, q)
	}
	key := sha256.Sum256([]byte(user + "\x00" + pw))
	now := time.Now()
	p.mu.Lock()
	e, hit := p.creds[key]
	p.mu.Unlock()
	if hit && now.Before(e.expires) {
		why, err := p.deps.Auth.Locked(r.Context(), e.id.User)
		if err != nil {
			return nil, err
		}
		if why != "" {
			p.mu.Lock()
			delete(p.creds, key)
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: %s", identity.ErrLocked, why)
		}
		return e.id, nil
	}
	id, err := p.deps.Auth.CheckPassword(r.Context(), user, pw, client, "forward_proxy")
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.creds) >= credEntries {
		clear(p.creds)
	}
	p.creds[key] = credEntry{id: id, expires: now.Add(credTTL)}
	p.mu.Unlock()
	return id, nil
}

// decide applies the rules in order; the first that matches the host,
// the category, the user (or one of their groups), the client's network
// and the time decides.
func (p *Proxy) decide(host, category string, id *identity.Identity, client netip.Addr, now time.Time) (action, name string) {
	for i, r := range p.rules {
		if len(r.cfg.Hosts) > 0 && !hostMatches(r.cfg.Hosts, host) {
			continue
		}
		if len(r.cfg.Categories) > 0 && (category == "" || !slices.Contains(r.cfg.Categories, category)) {
			continue
		}
		if len(r.times) > 0 && !slices.ContainsFunc(r.times, func(w config.TimeWindow) bool { return w.Contains(now) }) {
			continue
		}
		if len(r.cfg.Users) > 0 || len(r.cfg.Groups) > 0 {
			if id == nil || !who(r.cfg, id) {
				continue
			}
		}
		if len(r.networks) > 0 && !inAny(r.networks, client) {
			continue
		}
		name = r.cfg.Name
		if name == "" {
			name = "#" + strconv.Itoa(i+1)
		}
		return r.cfg.Action, name
	}
	return p.cfg.Default, "default"
}

func who(r config.ForwardRule, id *identity.Identity) bool {
	for _, u := range r.Users {
		if strings.EqualFold(u, id.User) {
			return true
		}
	}
	for _, g := range r.Groups {
		for _, mine := range id.Groups {
			if strings.EqualFold(g, mine) {
				return true
			}
		}
	}
	return false
}

// hostMatches: "*" any host; "*.example.com" its subdomains;
// "example.com" it and its subdomains; an address or CIDR the addresses
// in it (for hosts given as addresses).
func hostMatches(patterns []string, host string) bool {
	ip, ipErr := netip.ParseAddr(host)
	for _, pat := range patterns {
		pat = strings.ToLower(strings.TrimSuffix(pat, "."))
		switch {
		case pat == "*":
			return true
		case ipErr == nil:
			if pfx, err := parsePrefix(pat); err == nil && pfx.Contains(ip) {
				return true
			}
		case strings.HasPrefix(pat, "*."):
			if strings.HasSuffix(host, pat[1:]) {
				return true
			}
		case host == pat || strings.HasSuffix(host, "."+pat):
			return true
		}
	}
	return false
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// servePAC writes the proxy auto-config file browsers load.
func (p *Proxy) servePAC(w http.ResponseWriter, r *http.Request) {
	addr := p.cfg.PACProxy
	if addr == "" {
		if a := p.Addr(); a != nil {
			addr = a.String()
		}
	}
	var b strings.Builder
	b.WriteString("function FindProxyForURL(url, host) {\n  if (isPlainHostName(host)")
	for _, d := range p.cfg.PACDirect {
		fmt.Fprintf(&b, " ||\n      shExpMatch(host, %s)", strconv.Quote(d))
	}
	fmt.Fprintf(&b, ")\n    return \"DIRECT\";\n  return %s;\n}\n", strconv.Quote("PROXY "+addr))
	w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = io.WriteString(w, b.String())
}

// page writes a small HTML page (the block page, errors).
func page(w http.ResponseWriter, code int, title, msg string) { reply.Page(w, code, title, msg) }

// discard is a ResponseWriter for identity checks that write nothing.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
