package proxy

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/config"
)

// table is an immutable set of compiled routes, swapped whole on reload.
type table struct {
	routes    []*route
	trusted   []netip.Prefix
	redact    map[string]bool
	idHeaders []string
	spoof     []string // names only the proxy sets, lower case with '-'
	keepSlash bool     // proxy.encoded_slashes: keep
	cfg       *config.Proxy
}

type route struct {
	cfg     config.Route
	hosts   []string // lower case; "*.x" wildcard
	pool    *pool
	acl     *acl
	ipRate  *limiter
	usrRate *limiter
	rp      *httputil.ReverseProxy
	tf      *transform
	h1      *h1Transport
	// fast: the route's requests may take the fast path (fast.go).
	fast bool
	// The route's series of the request metrics, looked up once.
	latency prometheus.Observer
	codes   [600]atomic.Pointer[prometheus.Counter]
}

// count records a finished request in the route's metrics.
func (rt *route) count(mt *metrics, code int, d time.Duration) {
	rt.latency.Observe(d.Seconds())
	if code < 100 || code >= len(rt.codes) {
		mt.requests.WithLabelValues(rt.cfg.Name, strconv.Itoa(code)).Inc()
		return
	}
	c := rt.codes[code].Load()
	if c == nil {
		cc := mt.requests.WithLabelValues(rt.cfg.Name, strconv.Itoa(code))
		c = &cc
		rt.codes[code].Store(c)
	}
	(*c).Inc()
}

// build compiles cfg; cfg has been validated (and route defaults filled).
func (m *Module) build(cfg config.Proxy) (*table, error) {
	tb := &table{trusted: clientip.ParsePrefixes(cfg.TrustedProxies), redact: map[string]bool{}, cfg: &cfg}
	for _, p := range cfg.Tracking.RedactParams {
		tb.redact[strings.ToLower(p)] = true
	}
	for _, h := range []string{cfg.IdentityHeaders.User, cfg.IdentityHeaders.Groups, cfg.IdentityHeaders.Email} {
		if h != "" {
			tb.idHeaders = append(tb.idHeaders, http.CanonicalHeaderKey(h))
		}
	}
	tb.spoof = spoofable(tb.idHeaders)
	tb.keepSlash = cfg.EncodedSlashes == "keep"
	for i := range cfg.Routes {
		rc := cfg.Routes[i]
		if len(rc.Upstreams) == 0 {
			return nil, fmt.Errorf("proxy.routes[%d]: no upstreams", i)
		}
		rt := &route{cfg: rc, acl: compileACL(rc.ACL), tf: newTransform(rc), latency: m.metrics.latency.WithLabelValues(rc.Name)}
		rt.tf.outbound = m.deps.OutboundLink
		for j, h := range rc.Hosts {
			ch, err := config.RouteHost(h)
			if err != nil {
				return nil, fmt.Errorf("proxy.routes[%d].hosts[%d]: %w", i, j, err)
			}
			rt.hosts = append(rt.hosts, ch)
		}
		p := &pool{least: rc.Balance == "least_conn", passive: rc.Passive}
		for _, u := range rc.Upstreams {
			p.ups = append(p.ups, newUpstream(mustURL(u)))
		}
		rt.pool = p
		rt.ipRate = newLimiter(rc.RateLimit.PerIP, rc.RateLimit)
		rt.usrRate = newLimiter(rc.RateLimit.PerUser, rc.RateLimit)
		rt.rp = m.reverseProxy(tb, rt)
		rt.h1 = newH1Transport(rt.rp.Transport, rc.Timeout.D())
		rt.rp.Transport = rt.h1
		rt.fast = fastRoute(rt)
		if rc.Cache {
			cs, err := m.cacheStore(cfg)
			if err != nil {
				return nil, fmt.Errorf("proxy.cache: %w", err)
			}
			rt.rp.Transport = &cacheRT{next: rt.rp.Transport, store: cs}
		}
		tb.routes = append(tb.routes, rt)
	}
	return tb, nil
}

// match finds the first route for a canonical host (no port) and path.
func (tb *table) match(host, path string) *route {
	for _, rt := range tb.routes {
		if !rt.matchHost(host) || !pathUnder(path, rt.cfg.Path) {
			continue
		}
		return rt
	}
	return nil
}

func (rt *route) matchHost(host string) bool {
	if len(rt.hosts) == 0 {
		return true
	}
	for _, h := range rt.hosts {
		if h == host {
			return true
		}
		// *.example.com matches exactly one more label.
		if rest, ok := strings.CutPrefix(h, "*"); ok && strings.HasSuffix(host, rest) {
			label := strings.TrimSuffix(host, rest)
			if label != "" && !strings.Contains(label, ".") {
				return true
			}
		}
	}
	return false
}

// pathUnder reports whether p is prefix or below it (segment-wise: /api
// matches /api and /api/x, not /apix).
func pathUnder(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	prefix = strings.TrimSuffix(prefix, "/")
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// upstreamTimeouts builds the transport a route's reverse proxy uses.
func upstreamTransport(rc config.Route) *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // never through an environment proxy
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: rc.Timeout.D(),
		// Bodies pass through as they are; compression to clients is the
		// proxy's own decision.
		DisableCompression: true,
	}
}

// fastRoute reports whether a route's requests can take the fast path:
// plain-http upstreams, and nothing that needs the request as net/http
// builds it (cache, sign-in, link rewriting, header ACL rules). Snippet
// injection is done on the fast path too.
func fastRoute(rt *route) bool {
	if rt.cfg.Cache || rt.cfg.Auth == "required" || rt.tf.rewrites() || len(rt.cfg.Moderate.Fields) > 0 {
		return false
	}
	for _, r := range rt.acl.rules {
		if r.hname != "" {
			return false
		}
	}
	for _, u := range rt.pool.ups {
		if u.url.Scheme != "http" || u.url.RawQuery != "" || u.url.User != nil {
			return false
		}
	}
	return true
}
