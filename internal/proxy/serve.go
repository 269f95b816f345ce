package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/policy"
	"github.com/opsgraph/ops/internal/reply"
)

// OpsPrefix is where the proxy serves Ops's first-party endpoints on every
// host it fronts.
const OpsPrefix = "/_ops"

// firstParty are the paths under /_ops/ that reach Ops: the tracker, the
// collector, links, sign-in, DNS over HTTPS and the DNS client check (when
// the dns module runs);
// never the rest of the API.
var firstParty = []string{"/ops.js", "/v1/", "/beacon/", "/pixel/", "/c/", "/o/", "/out/", "/cluster-info", "/login", "/api/v1/login", "/api/v1/logout", "/api/v1/me", "/dns-query", "/dns-check", "/proxy.pac"}

// pass is what one request carries from ServeHTTP to the reverse proxy.
type pass struct {
	cacheKey  string // set on caching routes
	cache     string // hit, miss, stale, revalidated, ...
	collapsed bool
	up        *upstream
	id        *identity.Identity
	trusted   bool // the client is a trusted proxy: keep its X-Forwarded-For
	ip        netip.Addr
	// failed: the upstream was at fault (connect error, reset, timeout,
	// broken response); a client's own fault never sets it.
	failed   bool
	upStatus int          // the upstream's status code, 0 when none came
	ctype    string       // the response's media type, for the request event
	in       *countReader // the request body as read from the client
}

type passKey struct{}

// ServeHTTP is the proxy's request path.
func (m *Module) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// DoH first, without entering serve's large frame (a new HTTP/2
	// stream's goroutine grew its stack for it).
	if m.deps.DoH != nil && strings.HasPrefix(r.URL.Path, dohPath) && m.serveDoH(w, r) {
		return
	}
	m.serve(w, r)
}

func (m *Module) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	tb := m.table.Load()
	// One form of the path and host for every decision below and for the
	// upstream (request.go); a request that has none is refused.
	alt, cerr := tb.canonRequest(r)
	if cerr == nil && (r.URL.Path == OpsPrefix || strings.HasPrefix(r.URL.Path, OpsPrefix+"/")) {
		m.serveOps(w, r)
		return
	}
	tb.scrub(r.Header)
	rec := &recorder{ResponseWriter: w}
	in := &countReader{rc: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = in
	}
	ip, via := clientip.FromVia(r, tb.trusted)
	p := &pass{ip: ip, trusted: via, in: in}
	var rt *route
	defer func() { m.finish(tb, rt, r, rec, in.n, p, start) }()
	if cerr != nil {
		page(rec, http.StatusBadRequest, "Bad request", cerr.Error())
		return
	}
	host := hostOnly(r.Host)
	path := r.URL.EscapedPath()
	rt = tb.match(host, path)
	if rt == nil {
		page(rec, http.StatusNotFound, "No route", "Ops has no route for this host and path.")
		return
	}
	if alt != "" && tb.match(host, alt) != rt {
		page(rec, http.StatusBadRequest, "Bad request", "path: its ;parameters or encoded slashes would change which route applies")
		return
	}
	now := time.Now()
	for _, name := range []string{rt.cfg.Name, "*"} {
		if e, ok := m.policy.active(policy.Maintenance, name); ok {
			rec.Header().Set("Retry-After", "120")
			page(rec, http.StatusServiceUnavailable, "Down for maintenance", e.Reason)
			return
		}
	}
	if ip.IsValid() {
		anon := clientip.Anonymize(ip).String()
		if e, ok := m.policy.active(policy.IP, anon); ok {
			if e.Action == "rate" {
				if ok, wait := m.policyRate.allow(anon, ip, e.Rate, now); !ok {
					m.metrics.limited.WithLabelValues(rt.cfg.Name, "policy").Inc()
					tooMany(rec, wait)
					return
				}
			} else {
				page(rec, http.StatusForbidden, "Forbidden", "Your address is blocked: "+e.Reason)
				return
			}
		}
	}
	for _, pp := range []string{path, alt} {
		if e, ok := m.policy.blockedPath(pp); ok && pp != "" {
			page(rec, http.StatusForbidden, "Forbidden", "This path is blocked: "+e.Reason)
			return
		}
	}
	if rt.ipRate != nil && ip.IsValid() {
		if ok, wait := rt.ipRate.allow(ip.String(), ip, 0, now); !ok {
			m.metrics.limited.WithLabelValues(rt.cfg.Name, "ip").Inc()
			tooMany(rec, wait)
			return
		}
	}
	if rt.cfg.Auth == "required" {
		id, err := m.deps.Auth.Identify(rec, r)
		if err != nil {
			m.deps.Auth.Unauthenticated(rec, r.WithContext(identity.WithPrefix(r.Context(), OpsPrefix)), OpsPrefix, err)
			return
		}
		if e, ok := m.policy.active(policy.User, id.User); ok {
			page(rec, http.StatusForbidden, "Forbidden", "Your account is locked: "+e.Reason)
			return
		}
		p.id = id
		// Whatever Authorization header there was, Ops read it (a token,
		// Basic with a token, Negotiate): it was for Ops, not the upstream.
		r.Header.Del("Authorization")
	}
	s := subject{method: r.Method, path: path, alt: alt, ip: ip, header: r.Header, now: now}
	if p.id != nil {
		s.user, s.groups = p.id.User, p.id.Groups
	}
	allowed, rule := rt.acl.decide(s)
	ruleName := "default"
	if rule >= 0 {
		ruleName = strconv.Itoa(rule)
	}
	if !allowed {
		m.metrics.aclHits.WithLabelValues(rt.cfg.Name, ruleName, "deny").Inc()
		page(rec, http.StatusForbidden, "Forbidden", "You may not access this page.")
		return
	}
	if rule >= 0 {
		m.metrics.aclHits.WithLabelValues(rt.cfg.Name, ruleName, "allow").Inc()
	}
	if rt.usrRate != nil && p.id != nil {
		if ok, wait := rt.usrRate.allow(p.id.User, ip, 0, now); !ok {
			m.metrics.limited.WithLabelValues(rt.cfg.Name, "user").Inc()
			tooMany(rec, wait)
			return
		}
	}
	if max := int64(rt.cfg.MaxBody); max > 0 {
		if r.ContentLength > max {
			page(rec, http.StatusRequestEntityTooLarge, "Too large", fmt.Sprintf("The request body is over %d bytes.", max))
			return
		}
		in.rc = http.MaxBytesReader(rec, in.rc, max)
	}
	if len(rt.cfg.Moderate.Fields) > 0 && !m.moderatePost(rec, r, rt, p, in) {
		return
	}
	up := rt.pool.pick()
	if up == nil {
		page(rec, http.StatusServiceUnavailable, "Unavailable", "No healthy upstream for this route.")
		return
	}
	p.up = up
	if rt.cfg.Cache {
		p.cacheKey = cacheKey(r)
	}
	dropCredentials(r.Header)
	up.active.Add(1)
	defer up.active.Add(-1)
	rt.rp.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), passKey{}, p)))
	rt.pool.result(up, p.failed || rt.pool.failedStatus(p.upStatus))
}

func (m *Module) reverseProxy(tb *table, rt *route) *httputil.ReverseProxy {
	idh := tb.cfg.IdentityHeaders
	bufs := &sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p := pr.In.Context().Value(passKey{}).(*pass)
			if rt.cfg.StripPath && rt.cfg.Path != "/" {
				setPath(pr.Out.URL, stripPrefix(pr.Out.URL.EscapedPath(), rt.cfg.Path))
			}
			if p.trusted {
				pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			}
			pr.SetURL(p.up.url)
			// The upstream sees the host the client asked for, as behind
			// Caddy; X-Forwarded-Host says the same.
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			proto := "http"
			if pr.In.TLS != nil {
				proto = "https"
			}
			fwd := fmt.Sprintf("for=%s;host=%s;proto=%s", forwardedFor(pr.In.RemoteAddr), quoteForwarded(pr.In.Host), proto)
			if prev := pr.In.Header.Get("Forwarded"); prev != "" && p.trusted {
				fwd = prev + ", " + fwd
			}
			pr.Out.Header.Set("Forwarded", fwd)
			if p.ip.IsValid() {
				pr.Out.Header.Set("X-Real-Ip", p.ip.String())
			}
			if p.id != nil {
				if idh.User != "" {
					pr.Out.Header.Set(idh.User, p.id.User)
				}
				if idh.Groups != "" && len(p.id.Groups) > 0 {
					pr.Out.Header.Set(idh.Groups, strings.Join(p.id.Groups, ","))
				}
				if idh.Email != "" && p.id.Email != "" {
					pr.Out.Header.Set(idh.Email, p.id.Email)
				}
			}
		},
		Transport:  upstreamTransport(rt.cfg),
		BufferPool: bufferPool{bufs},
		// What the reverse proxy logs itself goes through the module's
		// logger, at its level.
		ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ModifyResponse: func(resp *http.Response) error {
			if p, _ := resp.Request.Context().Value(passKey{}).(*pass); p != nil {
				if p.cache != "" {
					resp.Header.Set("Cache-Status", cacheStatus(p.cache))
				}
				if p.cache == "" || p.cache == "miss" || p.cache == "revalidated" || p.cache == "expired" || p.cache == "bypass" {
					p.upStatus = resp.StatusCode
				}
			}
			rt.tf.apply(resp.Request, resp)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p := r.Context().Value(passKey{}).(*pass)
			// The client's faults first: its body could not be read (too
			// large, malformed, cut off) or it went away. Those are
			// answered as such and never count against the upstream.
			if code, msg := clientFault(p.in, err); code != 0 {
				m.log.Debug("client error", "route", rt.cfg.Name, "code", code, "err", err)
				page(w, code, statusText(code), msg)
				return
			}
			p.failed = true
			code := http.StatusBadGateway
			if isTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
				code = http.StatusGatewayTimeout
			}
			m.log.Debug("upstream error", "route", rt.cfg.Name, "upstream", p.up.url.String(), "err", err)
			page(w, code, http.StatusText(code), "The upstream server did not answer properly.")
		},
	}
}

type bufferPool struct{ p *sync.Pool }

func (b bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b bufferPool) Put(x []byte) { b.p.Put(&x) }

// cacheKey is the URL a response is stored under: scheme, host and the
// request URI as the client sent them.
func cacheKey(r *http.Request) string {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return scheme + r.Host + r.URL.RequestURI()
}

// stripPrefix removes a route's path prefix from the escaped path p.
func stripPrefix(p, prefix string) string {
	return "/" + strings.TrimPrefix(strings.TrimPrefix(p, strings.TrimSuffix(prefix, "/")), "/")
}

// cacheStatus is the RFC 9211 Cache-Status value for a result.
func cacheStatus(result string) string {
	switch result {
	case "hit":
		return "ops; hit"
	case "stale":
		return "ops; hit; detail=stale-while-revalidate"
	case "stale-if-error":
		return "ops; hit; detail=stale-if-error"
	case "revalidated":
		return "ops; fwd=stale; fwd-status=304"
	case "expired":
		return "ops; fwd=stale"
	case "bypass":
		return "ops; fwd=bypass"
	}
	return "ops; fwd=uri-miss"
}

// forwardedFor formats a node for RFC 7239: IPv6 in quotes and brackets.
func forwardedFor(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if strings.Contains(host, ":") {
		return `"[` + host + `]"`
	}
	return host
}

func quoteForwarded(s string) string {
	if strings.ContainsAny(s, ":;,\" ") {
		return strconv.Quote(s)
	}
	return s
}

// serveOps hands the first-party paths to Ops's own handlers.
func (m *Module) serveOps(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, OpsPrefix)
	ok := false
	for _, p := range firstParty {
		if rest == p || strings.HasPrefix(rest, p) && (strings.HasSuffix(p, "/") || strings.HasPrefix(rest[len(p):], "/")) {
			ok = true
			break
		}
	}
	if !ok {
		page(w, http.StatusNotFound, "Not found", "No such Ops endpoint.")
		return
	}
	r2 := r.WithContext(identity.WithPrefix(r.Context(), OpsPrefix))
	u := *r.URL
	u.Path = rest
	u.RawPath = ""
	r2.URL = &u
	m.deps.Local.ServeHTTP(w, r2)
}

// dohPath is where the resolver's DoH answers on the proxy.
const dohPath = OpsPrefix + "/dns-query"

// serveDoH hands GET and POST /_ops/dns-query[/<client>] to the resolver,
// as the API's routes /dns-query and /dns-query/{client} would (the same
// handler); false: not a DoH request, or no resolver. Only a path already
// in canonical form with a token of doh_token's characters is taken
// here; any other spelling goes the general way (canonicalised, then
// routed), which ends at the same handler or a 404.
func (m *Module) serveDoH(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodPost || r.URL.RawPath != "" {
		return false
	}
	rest := r.URL.Path[len(dohPath):]
	if rest != "" && (rest[0] != '/' || !config.ValidDoHToken(rest[1:])) {
		return false
	}
	h := m.deps.DoH()
	if h == nil {
		return false
	}
	if rest != "" {
		r.SetPathValue("client", rest[1:])
	}
	h.ServeHTTP(w, r)
	return true
}

func tooMany(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
	page(w, http.StatusTooManyRequests, "Too many requests", "Slow down and try again shortly.")
}

// page writes a small HTML error page.
func page(w http.ResponseWriter, code int, title, msg string) { reply.Page(w, code, title, msg) }

func pageBody(code int, title, msg string) string { return reply.PageBody(code, title, msg) }

// recorder counts the status and bytes of a response.
type recorder = reply.Recorder

type countReader struct {
	rc  io.ReadCloser
	n   int64
	err error // the first read error other than io.EOF
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// statusClientClosed is nginx's 499: the client went away before the
// answer (recorded in metrics and events; the client sees nothing).
const statusClientClosed = 499

func statusText(code int) string {
	if code == statusClientClosed {
		return "Client Closed Request"
	}
	return http.StatusText(code)
}

// clientFault classifies a failed proxying whose cause was the client:
// its request body over max_body (413), cut off or the client gone (499),
// or malformed, such as broken chunked framing (400). It returns 0 when
// the client was not at fault.
func clientFault(in *countReader, err error) (int, string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || in != nil && errors.As(in.err, &mbe):
		return http.StatusRequestEntityTooLarge, "The request body is too large."
	case errors.Is(err, context.Canceled):
		return statusClientClosed, "The client went away."
	case in == nil || in.err == nil:
		return 0, ""
	case errors.Is(in.err, io.ErrUnexpectedEOF) || isNetErr(in.err):
		return statusClientClosed, "The request body ended before its length."
	}
	return http.StatusBadRequest, "The request body is malformed: " + in.err.Error()
}

func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, net.ErrClosed)
}

func (c *countReader) Close() error { return c.rc.Close() }

// requestData is the data of an ev.proxy.request event.
type requestData struct {
	Route      string            `json:"route"`
	Method     string            `json:"method"`
	Host       string            `json:"host"`
	Path       string            `json:"path"`
	Query      string            `json:"query,omitempty"`
	Status     int               `json:"status"`
	Type       string            `json:"content_type,omitempty"` // the response's media type
	BytesIn    int64             `json:"bytes_in"`
	BytesOut   int64             `json:"bytes_out"`
	DurationMS float64           `json:"duration_ms"`
	Upstream   string            `json:"upstream,omitempty"`
	Cache      string            `json:"cache"`
	User       string            `json:"user,omitempty"`
	IP         string            `json:"ip,omitempty"`
	UserAgent  string            `json:"user_agent,omitempty"`
	Referrer   string            `json:"referrer,omitempty"`
	RefHost    string            `json:"referrer_host,omitempty"`
	UTM        map[string]string `json:"utm,omitempty"`
	Proto      string            `json:"proto"`
}

func (m *Module) finish(tb *table, rt *route, r *http.Request, rec *recorder, in int64, p *pass, start time.Time) {
	q := reqInfo{method: r.Method, host: r.Host, path: r.URL.EscapedPath(), query: r.URL.RawQuery, ua: r.UserAgent(), referrer: r.Referer(), proto: r.Proto}
	if ct := rec.Header()["Content-Type"]; len(ct) > 0 {
		p.ctype = eventType([]byte(ct[0]))
	}
	m.record(tb, rt, &q, rec.Code, in, rec.N, p, start)
}

// reqInfo is what a request event says of the request.
type reqInfo struct {
	method, host, path, query, ua, referrer, proto string
	acceptEnc                                      string // (not in the event)
}

// record counts a finished request in the metrics and, with tracking on,
// queues its ev.proxy.request event.
func (m *Module) record(tb *table, rt *route, q *reqInfo, code int, in, out int64, p *pass, start time.Time) {
	d := time.Since(start)
	name := ""
	if rt != nil {
		name = rt.cfg.Name
	}
	if code == 0 {
		code = http.StatusOK
	}
	if rt != nil {
		rt.count(m.metrics, code, d)
	} else {
		m.metrics.requests.WithLabelValues(name, strconv.Itoa(code)).Inc()
		m.metrics.latency.WithLabelValues(name).Observe(d.Seconds())
	}
	if p.cache != "" {
		m.metrics.cache.WithLabelValues(name, p.cache).Inc()
	}
	m.paths.add(start, name, q.path, code, out, d)
	if !tb.cfg.Tracking.Enabled {
		return
	}
	data := requestData{
		Route: name, Method: q.method, Host: q.host, Path: q.path, Status: code, BytesIn: in, BytesOut: out,
		DurationMS: float64(d.Microseconds()) / 1000, Cache: "none", UserAgent: q.ua, Proto: q.proto, Type: p.ctype,
	}
	if p.cache != "" {
		data.Cache = p.cache
	}
	if q.query != "" {
		data.Query, data.UTM = redactQuery(q.query, tb.redact)
	}
	if p.up != nil {
		data.Upstream = p.up.url.Host
	}
	if p.id != nil {
		data.User = p.id.User
	}
	if p.ip.IsValid() {
		data.IP = clientip.Anonymize(p.ip).String()
	}
	if ref := q.referrer; ref != "" {
		data.Referrer = ref
		if u, err := url.Parse(ref); err == nil {
			data.RefHost = u.Hostname()
		}
	}
	ev := event.NewJSON("ops/proxy", "proxy.request", data.appendJSON(make([]byte, 0, 384)))
	ev.Time = start.UTC()
	m.track.Add(ev)
}

// appendJSON encodes d as encoding/json would (TestRequestDataJSON holds
// it to that), without reflection: a request event is made per request.
func (d *requestData) appendJSON(b []byte) []byte {
	str := func(k, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		b = append(b, ',', '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		b = event.AppendString(b, v)
	}
	num := func(k string, v int64) {
		b = append(b, ',', '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		b = strconv.AppendInt(b, v, 10)
	}
	b = append(b, `{"route":`...)
	b = event.AppendString(b, d.Route)
	str("method", d.Method, false)
	str("host", d.Host, false)
	str("path", d.Path, false)
	str("query", d.Query, true)
	num("status", int64(d.Status))
	str("content_type", d.Type, true)
	num("bytes_in", d.BytesIn)
	num("bytes_out", d.BytesOut)
	b = append(b, `,"duration_ms":`...)
	b = appendJSONFloat(b, d.DurationMS)
	str("upstream", d.Upstream, true)
	str("cache", d.Cache, false)
	str("user", d.User, true)
	str("ip", d.IP, true)
	str("user_agent", d.UserAgent, true)
	str("referrer", d.Referrer, true)
	str("referrer_host", d.RefHost, true)
	if len(d.UTM) > 0 {
		keys := make([]string, 0, len(d.UTM))
		for k := range d.UTM {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"utm":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = event.AppendString(b, k)
			b = append(b, ':')
			b = event.AppendString(b, d.UTM[k])
		}
		b = append(b, '}')
	}
	str("proto", d.Proto, false)
	return append(b, '}')
}

// eventType is a Content-Type's media type, lower case, without
// parameters, as the request event carries it; the common ones without an
// allocation.
func eventType(v []byte) string {
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	v = bytes.TrimSpace(v)
	for _, t := range commonTypes {
		if len(v) == len(t) && eqFold(v, t) {
			return t
		}
	}
	if len(v) > 100 {
		v = v[:100]
	}
	return strings.ToLower(string(v))
}

var commonTypes = []string{"text/html", "application/json", "text/css", "text/javascript", "application/javascript",
	"image/png", "image/jpeg", "image/webp", "image/svg+xml", "image/gif", "font/woff2", "text/plain", "text/event-stream",
	"application/xhtml+xml", "image/x-icon", "image/avif", "application/octet-stream", "text/xml", "application/xml"}

// appendJSONFloat formats f as encoding/json does (finite values only;
// durations are).
func appendJSONFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// redactQuery replaces the values of secret parameters and picks out UTM
// parameters.
func redactQuery(raw string, redact map[string]bool) (string, map[string]string) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return "", nil // unparseable: leave it out rather than leak it
	}
	var utm map[string]string
	for k, vs := range vals {
		lk := strings.ToLower(k)
		if redact[lk] {
			for i := range vs {
				vs[i] = "REDACTED"
			}
		}
		if name, ok := strings.CutPrefix(lk, "utm_"); ok && len(vs) > 0 {
			if utm == nil {
				utm = map[string]string{}
			}
			utm[name] = vs[0]
		}
	}
	return vals.Encode(), utm
}
