// Package dnsd is the dns module: a resolver that answers over DNS over
// HTTPS (RFC 8484 and Google-style JSON) on the main listener, DNS over
// TLS (RFC 7858) and plain UDP/TCP when configured; forwards to DoH, DoT
// or (when allowed) plain upstreams by a strategy, with conditional
// forwarding; caches answers (negative ones too, stale ones during
// outages); applies block lists; and records every query as an
// ev.dns.query event. Built on github.com/miekg/dns. See docs/dns.md.
package dnsd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"golang.org/x/sync/singleflight"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/evqueue"
	"github.com/opsgraph/ops/internal/phish"
	"github.com/opsgraph/ops/internal/policy"
)

// Deps are what the dns module needs.
type Deps struct {
	Bus      *bus.Bus
	Logger   *slog.Logger
	Registry prometheus.Registerer
	DataDir  string
	// Handle mounts the DoH routes on the main listener.
	Handle func(pattern, perm string, h http.Handler)
	// ClientIP is a request's client, believing X-Forwarded-For only from
	// trusted proxies.
	ClientIP func(*http.Request) netip.Addr
	// Phish blocks names phishing protection would block; nil: off.
	Phish *phish.Checker
}

// Server is the dns module.
type Server struct {
	cfg    config.DNS
	deps   Deps
	log    *slog.Logger
	router *router
	cache  *cache
	// valid checks answers with DNSSEC (dns.dnssec.validate); nil: off.
	valid  *validator
	doh    http.Handler // serveDoH, made once
	flight singleflight.Group
	filt   atomic.Pointer[filter]
	live   *livePolicy // domain blocks from the POLICY bucket
	// The client check: names under checkDomain answer checkAddr.
	checkDomain string
	checkAddr   netip.Addr
	checks      checkSeen
	lists       *lists
	// clients: dns.clients, and the same by DoH token and DoT label.
	clients        []*dnsClient
	byToken, byDoT map[string]*dnsClient
	events         *evqueue.Queue
	stats          stats
	metrics        metrics

	mu    sync.Mutex
	addrs map[string]net.Addr // "udp", "tcp", "dot", "doq": bound addresses
}

type metrics struct {
	queries *prometheus.CounterVec
	cache   *prometheus.CounterVec
	blocked prometheus.Counter
	latency *prometheus.HistogramVec
	// Resolved once: a query touches them without hashing labels.
	hit, miss, stale prometheus.Counter
	prefetch         prometheus.Counter
	dnssec           *prometheus.CounterVec
	latencyOf        map[string]prometheus.Observer
	byRcode          map[string]*[6]prometheus.Counter // transport -> rcode
}

// query is the counter of a transport and response code.
func (m *metrics) query(via string, rcode int, name string) prometheus.Counter {
	if t := m.byRcode[via]; t != nil && rcode >= 0 && rcode < len(t) {
		return t[rcode]
	}
	return m.queries.WithLabelValues(via, name)
}

func (m *metrics) resolve() {
	m.hit, m.miss, m.stale = m.cache.WithLabelValues("hit"), m.cache.WithLabelValues("miss"), m.cache.WithLabelValues("stale")
	m.prefetch = m.cache.WithLabelValues("prefetch")
	m.latencyOf, m.byRcode = map[string]prometheus.Observer{}, map[string]*[6]prometheus.Counter{}
	for _, via := range []string{viaUDP, viaTCP, viaDoT, viaDoH, viaDoQ} {
		m.latencyOf[via] = m.latency.WithLabelValues(via)
		t := &[6]prometheus.Counter{} // NOERROR to REFUSED; the rarer codes are resolved when seen
		for rc := range t {
			name, ok := dns.RcodeToString[rc]
			if !ok {
				name = strconv.Itoa(rc)
			}
			t[rc] = m.queries.WithLabelValues(via, name)
		}
		m.byRcode[via] = t
	}
}

// New builds the resolver: upstreams, cache, block lists and the DoH
// routes. Listeners open in Run.
func New(cfg config.DNS, deps Deps) (*Server, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger, cache: newCache(cfg.Cache), addrs: map[string]net.Addr{},
		live: newLivePolicy()}
	boot := map[string]string{}
	for _, b := range cfg.Bootstrap {
		h, ip, _ := strings.Cut(b, "=")
		boot[strings.ToLower(h)] = ip
	}
	var roots *x509.CertPool
	if cfg.UpstreamCA != "" {
		pem, err := os.ReadFile(cfg.UpstreamCA)
		if err != nil {
			return nil, fmt.Errorf("dns.upstream_ca: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("dns.upstream_ca: no PEM certificate in %s", cfg.UpstreamCA)
		}
	}
	var err error
	if s.router, err = newRouter(cfg, upstreamOptions{dial: &dialer{boot: boot}, timeout: cfg.Timeout.D(), roots: roots}); err != nil {
		return nil, err
	}
	if cfg.DNSSEC.Validate {
		if s.valid, err = newValidator(cfg.DNSSEC.TrustAnchors, cfg.DNSSEC.Insecure, s.askSigned); err != nil {
			return nil, err
		}
		// Conditionally forwarded domains (a corporate zone, often unsigned
		// under a signed parent, or not in the public tree at all) are not
		// validated unless a trust anchor is given at or below them.
		for _, f := range cfg.Forward {
			d := dns.CanonicalName(f.Domain)
			if a := s.valid.anchorFor(d); a == "" || a != d && len(a) < len(d) {
				s.valid.negative = append(s.valid.negative, d)
			}
		}
	}
	s.lists = newLists(cfg.Block, deps.DataDir, s.log)
	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer lcancel()
	if err := s.lists.load(lctx); err != nil {
		return nil, err
	}
	s.setFilter(s.lists.build())
	if s.clients, err = newClients(cfg.Clients, deps.DataDir, s); err != nil {
		return nil, fmt.Errorf("dns.clients: %w", err)
	}
	s.byToken, s.byDoT = map[string]*dnsClient{}, map[string]*dnsClient{}
	for _, c := range s.clients {
		if c.cfg.DoHToken != "" {
			s.byToken[c.cfg.DoHToken] = c
		}
		if c.cfg.DoTName != "" {
			s.byDoT[strings.ToLower(c.cfg.DoTName)] = c
		}
	}
	s.metrics = metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_dns_queries_total", Help: "DNS queries answered, by transport and response code."}, []string{"transport", "rcode"}),
		cache:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_dns_cache_total", Help: "Cache lookups: hit, miss, or stale (served during an upstream outage); prefetch counts hits that fetched a popular name anew before it expired."}, []string{"result"}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{Name: "ops_dns_blocked_total", Help: "Queries answered as blocked."}),
		dnssec:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_dns_dnssec_total", Help: "Upstream answers validated with DNSSEC (dns.dnssec.validate), by result: secure, insecure or bogus."}, []string{"result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ops_dns_query_seconds", Help: "Time to answer a query, by transport.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}, []string{"transport"}),
	}
	s.metrics.resolve()
	cached := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ops_dns_cache_entries", Help: "Answers in the cache."}, func() float64 { return float64(s.cache.len()) })
	if deps.Registry != nil {
		deps.Registry.MustRegister(s.metrics.queries, s.metrics.cache, s.metrics.blocked, s.metrics.latency, cached)
		if s.valid != nil {
			deps.Registry.MustRegister(s.metrics.dnssec)
		}
	}
	if cfg.Events && deps.Bus != nil {
		if s.events, err = evqueue.Open(evqueue.Options{Bus: deps.Bus, Log: s.log.With("part", "events"), Dir: filepath.Join(deps.DataDir, "dns-spool"),
			Queue: 50_000, Batch: 500, Flush: 200 * time.Millisecond, SpoolMax: 256 << 20, Name: "dns", What: "query events", Registry: deps.Registry}); err != nil {
			return nil, fmt.Errorf("dns spool: %w", err)
		}
	}
	s.doh = http.HandlerFunc(s.serveDoH)
	if cfg.DoH && deps.Handle != nil {
		deps.Handle("GET /dns-query", "public", http.HandlerFunc(s.serveDoH))
		deps.Handle("POST /dns-query", "public", http.HandlerFunc(s.serveDoH))
		if len(cfg.Clients) > 0 {
			deps.Handle("GET /dns-query/{client}", "public", http.HandlerFunc(s.serveDoH))
			deps.Handle("POST /dns-query/{client}", "public", http.HandlerFunc(s.serveDoH))
		}
	}
	if deps.Handle != nil {
		deps.Handle("GET /api/v1/dns/stats", "dns:read", http.HandlerFunc(s.statsHandler))
	}
	if cfg.CheckDomain != "" {
		s.checkDomain, s.checkAddr = canonName(cfg.CheckDomain), netip.MustParseAddr(cfg.CheckAddress)
		s.checks.seen = map[string]seenQuery{}
		if deps.Handle != nil {
			deps.Handle("GET /dns-check", "public", http.HandlerFunc(s.checkPage))
			deps.Handle("GET /dns-check/result", "public", http.HandlerFunc(s.checkResult))
			deps.Handle("GET /dns-check/ping", "public", http.HandlerFunc(s.checkPing))
		}
	}
	return s, nil
}

// DoHHandler answers DNS over HTTPS (the handler of /dns-query and
// /dns-query/{client}); nil when dns.doh is off.
func (s *Server) DoHHandler() http.Handler {
	if !s.cfg.DoH {
		return nil
	}
	return s.doh
}

// setFilter swaps in a filter built from the lists.
func (s *Server) setFilter(f *filter) {
	s.filt.Store(f)
	s.log.Info("block lists loaded", "rules", f.n, "regexes", len(f.regexes), "skipped_lines", f.skipped)
}

// refreshLists fetches lists given by URL every dns.block.refresh.
func (s *Server) refreshLists(ctx context.Context) {
	t := time.NewTicker(s.cfg.Block.Refresh.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.lists.refresh(ctx) {
				s.setFilter(s.lists.build())
			}
			for _, c := range s.clients {
				if c.lists.refresh(ctx) {
					c.rebuild()
				}
			}
		}
	}
}

func (s *Server) filter() *filter { return s.filt.Load() }

// Run opens the configured listeners and serves until ctx ends.
func (s *Server) Run(ctx context.Context, ready func()) error {
	var servers []*dns.Server
	fail := func(err error) error {
		for _, srv := range servers {
			_ = srv.Shutdown()
		}
		return err
	}
	// start serves on a socket already bound (pc or ln), or binds addr.
	start := func(name, network, addr string, tc *tls.Config, pc net.PacketConn, ln net.Listener) error {
		via := map[string]string{"udp": viaUDP, "tcp": viaTCP, "tcp-tls": viaDoT}[network]
		srv := &dns.Server{Net: network, TLSConfig: tc, Handler: s.wireHandler(via), ReusePort: false,
			ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, PacketConn: pc, Listener: ln}
		var err error
		switch {
		case pc != nil || ln != nil:
		case network == "udp":
			srv.PacketConn, err = net.ListenPacket("udp", addr)
		case network == "tcp":
			srv.Listener, err = net.Listen("tcp", addr)
		case network == "tcp-tls":
			srv.Listener, err = tls.Listen("tcp", addr, tc)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", name, addr, err)
		}
		up := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(up) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
				s.log.Error("dns listener stopped", "listener", name, "err", err)
			}
		}()
		<-up
		if srv.PacketConn != nil {
			s.bound(name, srv.PacketConn.LocalAddr())
		} else {
			s.bound(name, srv.Listener.Addr())
		}
		servers = append(servers, srv)
		return nil
	}
	if l := s.cfg.Listen; l != "" {
		pc, ln, err := bindUDPTCP(l)
		if err != nil {
			return fail(err)
		}
		if err := start("udp", "udp", l, nil, pc, nil); err != nil {
			ln.Close()
			return fail(err)
		}
		if err := start("tcp", "tcp", l, nil, nil, ln); err != nil {
			return fail(err)
		}
	}
	var cert tls.Certificate
	if s.cfg.DoTListen != "" || s.cfg.DoQListen != "" || s.cfg.DoHListen != "" {
		var err error
		if cert, err = tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey); err != nil {
			return fail(fmt.Errorf("dns.tls_cert/tls_key: %w", err))
		}
	}
	if l := s.cfg.DoTListen; l != "" {
		if err := start("dot", "tcp-tls", l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"dot"}}, nil, nil); err != nil {
			return fail(err)
		}
	}
	if l := s.cfg.DoHListen; l != "" {
		tl, err := tls.Listen("tcp", l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}})
		if err != nil {
			return fail(fmt.Errorf("doh %s: %w", l, err))
		}
		s.bound("doh", tl.Addr())
		go s.serveH2(ctx, tl)
	}
	var doq *quic.Listener
	if l := s.cfg.DoQListen; l != "" {
		var err error
		if doq, err = s.listenDoQ(l, cert); err != nil {
			return fail(fmt.Errorf("doq %s: %w", l, err))
		}
		s.bound("doq", doq.Addr())
		go s.serveDoQ(ctx, doq)
	}
	if s.deps.Bus != nil {
		store, err := policy.Open(ctx, s.deps.Bus)
		if err != nil {
			return fail(fmt.Errorf("dns: POLICY bucket: %w", err))
		}
		go store.Watch(ctx, s.log, s.live.apply)
	}
	if len(s.cfg.Block.Lists) > 0 || len(s.clients) > 0 {
		go s.refreshLists(ctx)
	}
	evDone := make(chan struct{})
	ectx, ecancel := context.WithCancel(context.WithoutCancel(ctx))
	if s.events != nil {
		go func() { defer close(evDone); s.events.Run(ectx) }()
	} else {
		close(evDone)
	}
	ready()
	<-ctx.Done()
	for _, srv := range servers {
		_ = srv.ShutdownContext(context.Background())
	}
	if doq != nil {
		_ = doq.Close()
	}
	ecancel()
	<-evDone
	return nil
}

// bindUDPTCP binds UDP and TCP on the same port of addr. With port 0 the
// port UDP gets may be taken for TCP (by anything else on the machine):
// then another is tried, up to 20 times.
func bindUDPTCP(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("udp %s: %w", addr, err)
	}
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("udp %s: %w", addr, err)
		}
		_, got, _ := net.SplitHostPort(pc.LocalAddr().String())
		ln, err := net.Listen("tcp", net.JoinHostPort(host, got))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || try == 19 {
			return nil, nil, fmt.Errorf("tcp %s: %w", net.JoinHostPort(host, got), err)
		}
	}
}

// bound notes a listener's address (for Addr) and logs it.
func (s *Server) bound(name string, a net.Addr) {
	s.mu.Lock()
	s.addrs[name] = a
	s.mu.Unlock()
	s.log.Info("listening", "dns", name, "addr", a.String())
}

// Addr is a listener's bound address ("udp", "tcp", "dot", "doq",
// "doh"), once running.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[name]
}

// wireHandler serves DNS over UDP, TCP and TLS.
func (s *Server) wireHandler(via string) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		var client netip.Addr
		if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
			client = ap.Addr().Unmap()
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout.D()+time.Second)
		defer cancel()
		c := caller{addr: client, via: via, encrypted: via == viaDoT}
		if cs, ok := w.(dns.ConnectionStater); ok {
			if st := cs.ConnectionState(); st != nil {
				c.sni = st.ServerName
			}
		}
		resp := s.resolve(ctx, req, c)
		if via == viaUDP {
			size := dns.MinMsgSize
			if o := req.IsEdns0(); o != nil {
				size = int(max(min(o.UDPSize(), ednsSize), dns.MinMsgSize))
			}
			resp.Truncate(size)
		}
		if err := w.WriteMsg(resp); err != nil {
			s.log.Debug("dns write", "err", err)
		}
	})
}
