package dnsd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ameshkov/dnscrypt/v2"
	"github.com/ameshkov/dnsstamps"
	"github.com/miekg/dns"

	"github.com/opsgraph/ops/internal/config"
)

// upstream answers queries: DoH, DoT, DoQ, DNSCrypt, or plain UDP/TCP.
type upstream interface {
	exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error)
	String() string
}

// dialer connects to upstream hosts by the addresses in dns.bootstrap,
// so that an upstream's own name is never looked up in plain DNS.
type dialer struct {
	boot map[string]string // host -> ip
	d    net.Dialer
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip, ok := d.boot[strings.ToLower(host)]; ok {
		addr = net.JoinHostPort(ip, port)
	} else if net.ParseIP(host) == nil {
		return nil, fmt.Errorf("upstream host %s has no address in dns.bootstrap", host)
	}
	return d.d.DialContext(ctx, network, addr)
}

// upstreamOptions are what every upstream shares.
type upstreamOptions struct {
	dial    *dialer
	timeout time.Duration
	// roots verifies upstream certificates; nil: the system's.
	roots *x509.CertPool
}

func newUpstream(raw string, o upstreamOptions) (upstream, error) {
	if strings.HasPrefix(raw, "sdns://") {
		return newDNSCrypt(raw, o.timeout)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	hostPort := func(port string) string {
		if u.Port() != "" {
			return u.Host
		}
		return net.JoinHostPort(u.Hostname(), port)
	}
	switch u.Scheme {
	case "udp", "tcp":
		return &plainUp{addr: hostPort("53"), net: u.Scheme, timeout: o.timeout, dial: o.dial, idle: make(chan *udpConn, 64)}, nil
	case "quic":
		return &doqUp{addr: hostPort("853"), host: u.Hostname(), timeout: o.timeout, dial: o.dial,
			tls: &tls.Config{ServerName: u.Hostname(), RootCAs: o.roots, MinVersion: tls.VersionTLS13, NextProtos: []string{doqALPN}}}, nil
	case "tls":
		return &dotUp{addr: hostPort("853"), tls: &tls.Config{ServerName: u.Hostname(), RootCAs: o.roots, MinVersion: tls.VersionTLS12},
			timeout: o.timeout, dial: o.dial, idle: make(chan *dns.Conn, dotConns), slots: make(chan struct{}, dotConns)}, nil
	case "https":
		tr := &http.Transport{DialContext: o.dial.DialContext, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 8,
			TLSClientConfig: &tls.Config{RootCAs: o.roots, MinVersion: tls.VersionTLS12}, IdleConnTimeout: 90 * time.Second,
			TLSHandshakeTimeout: o.timeout}
		return &dohUp{url: u.String(), client: &http.Client{Transport: tr, Timeout: o.timeout}}, nil
	}
	return nil, fmt.Errorf("upstream %s: unknown scheme", raw)
}

// plainUp is DNS over UDP (falling back to TCP when truncated) or TCP.
// UDP sockets are kept for reuse (a socket a query costs more than the
// query), each for at most udpReuse queries, so source ports keep
// changing (RFC 5452: an off-path forger must guess port and id).
type plainUp struct {
	addr, net string
	timeout   time.Duration
	dial      *dialer
	idle      chan *udpConn
}

type udpConn struct {
	*dns.Conn
	used int
}

const udpReuse = 100

func (p *plainUp) String() string { return p.net + "://" + p.addr }

func (p *plainUp) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	if p.net == "udp" {
		r, err := p.udp(ctx, m)
		if err != nil || !r.Truncated {
			return r, err
		}
	}
	c := &dns.Client{Net: "tcp", Timeout: p.timeout, Dialer: &net.Dialer{Timeout: p.timeout}}
	r, _, err := c.ExchangeContext(ctx, m, p.addr)
	return r, err
}

func (p *plainUp) udp(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	var c *udpConn
	select {
	case c = <-p.idle:
	default:
		raw, err := p.dial.DialContext(ctx, "udp", p.addr)
		if err != nil {
			return nil, err
		}
		c = &udpConn{Conn: &dns.Conn{Conn: raw, UDPSize: dns.MaxMsgSize}}
	}
	deadline := time.Now().Add(p.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	r, err := roundTrip(c.Conn, m)
	c.used++
	if err != nil || c.used >= udpReuse {
		c.Close()
		return r, err
	}
	select {
	case p.idle <- c:
	default:
		c.Close()
	}
	return r, nil
}

// dotUp is DNS over TLS (RFC 7858), reusing connections: at most
// dotConns at once, a query each; more queries wait for one (a burst of
// new names must not open hundreds of TLS connections to a resolver,
// which would refuse or rate-limit them).
type dotUp struct {
	addr    string
	tls     *tls.Config
	timeout time.Duration
	dial    *dialer
	idle    chan *dns.Conn
	slots   chan struct{}
}

const dotConns = 16

func (d *dotUp) String() string { return "tls://" + d.addr }

func (d *dotUp) conn(ctx context.Context) (*dns.Conn, bool, error) {
	select {
	case c := <-d.idle:
		return c, true, nil
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	raw, err := d.dial.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, false, err
	}
	tc := tls.Client(raw, d.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, false, err
	}
	return &dns.Conn{Conn: tc}, false, nil
}

func (d *dotUp) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	wait := time.NewTimer(d.timeout)
	defer wait.Stop()
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-wait.C:
		return nil, fmt.Errorf("%s: all %d connections busy for %v", d, dotConns, d.timeout)
	}
	defer func() { <-d.slots }()
	for attempt := 0; ; attempt++ {
		c, reused, err := d.conn(ctx)
		if err != nil {
			return nil, err
		}
		deadline := time.Now().Add(d.timeout)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		_ = c.SetDeadline(deadline)
		r, err := roundTrip(c, m)
		if err == nil {
			select {
			case d.idle <- c:
			default:
				c.Close()
			}
			return r, nil
		}
		c.Close()
		// A reused connection the server closed while idle: once more on
		// a new one.
		if !reused || attempt > 0 {
			return nil, err
		}
	}
}

func roundTrip(c *dns.Conn, m *dns.Msg) (*dns.Msg, error) {
	if err := c.WriteMsg(m); err != nil {
		return nil, err
	}
	for {
		r, err := c.ReadMsg()
		if err != nil {
			return nil, err
		}
		if r.Id == m.Id {
			return r, nil
		}
	}
}

// dnscryptUp is a DNSCrypt upstream, given by its stamp (sdns://): the
// resolver's certificate is fetched and checked against the provider's
// public key in the stamp, then each query is encrypted to it
// (github.com/ameshkov/dnscrypt/v2). The certificate is fetched again
// when it expires or a query fails; a truncated answer is asked again
// over TCP.
type dnscryptUp struct {
	stamp, name string
	udp, tcp    *dnscrypt.Client
	mu          sync.Mutex
	info        *dnscrypt.ResolverInfo
}

func newDNSCrypt(stamp string, timeout time.Duration) (*dnscryptUp, error) {
	st, err := dnsstamps.NewServerStampFromString(stamp)
	if err != nil {
		return nil, fmt.Errorf("dns.upstreams: %s: %w", stamp, err)
	}
	if st.Proto != dnsstamps.StampProtoTypeDNSCrypt {
		return nil, fmt.Errorf("dns.upstreams: %s is a %s stamp; give its https:// or tls:// URL", stamp, st.Proto.String())
	}
	quiet := slog.New(slog.DiscardHandler)
	return &dnscryptUp{stamp: stamp, name: "sdns://" + st.ProviderName + "@" + st.ServerAddrStr,
		udp: &dnscrypt.Client{Net: "udp", Timeout: timeout, UDPSize: ednsSize, Logger: quiet},
		tcp: &dnscrypt.Client{Net: "tcp", Timeout: timeout, Logger: quiet}}, nil
}

func (d *dnscryptUp) String() string { return d.name }

func (d *dnscryptUp) resolver() (*dnscrypt.ResolverInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.info != nil && time.Now().Before(time.Unix(int64(d.info.ResolverCert.NotAfter), 0)) {
		return d.info, nil
	}
	info, err := d.udp.Dial(d.stamp)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	d.info = info
	return info, nil
}

func (d *dnscryptUp) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	info, err := d.resolver()
	if err != nil {
		return nil, err
	}
	r, err := d.udp.Exchange(m, info)
	if err == nil && r.Truncated {
		r, err = d.tcp.Exchange(m, info)
	}
	if err != nil {
		d.mu.Lock()
		d.info = nil // fetch the certificate again next time
		d.mu.Unlock()
		return nil, err
	}
	return r, nil
}

// dohUp is DNS over HTTPS (RFC 8484), POST, HTTP/2 when the server has it.
type dohUp struct {
	url    string
	client *http.Client
}

func (d *dohUp) String() string { return d.url }

func (d *dohUp) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	q := m.Copy()
	q.Id = 0 // RFC 8484 4.1: cache friendly
	wire, err := q.Pack()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", d.url, bytes.NewReader(wire))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/dns-message")
	req.Header.Set("Accept", "application/dns-message")
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, dns.MaxMsgSize+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %s", d.url, resp.Status)
	}
	r := new(dns.Msg)
	if err := r.Unpack(body); err != nil {
		return nil, fmt.Errorf("%s: %w", d.url, err)
	}
	r.Id = m.Id
	return r, nil
}

// group is a set of upstreams asked by a strategy.
type group struct {
	ups      []upstream
	strategy string
	next     atomic.Uint64
}

var errAllFailed = errors.New("every upstream failed")

// ask asks one upstream and refuses an answer to another question (a
// confused or hostile upstream must not fill the cache under this one).
func ask(ctx context.Context, u upstream, m *dns.Msg) (*dns.Msg, error) {
	r, err := u.exchange(ctx, m)
	if err != nil {
		return nil, err
	}
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, m.Question[0].Name) ||
		r.Question[0].Qtype != m.Question[0].Qtype || r.Question[0].Qclass != m.Question[0].Qclass {
		return nil, fmt.Errorf("answer for another question: %v", r.Question)
	}
	return r, nil
}

// usable: an answer worth giving (SERVFAIL and REFUSED send the query to
// the next upstream).
func usable(r *dns.Msg) bool {
	return r.Rcode != dns.RcodeServerFailure && r.Rcode != dns.RcodeRefused
}

// exchange asks the group; it returns the answer and who gave it.
func (g *group) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, upstream, error) {
	if g.strategy == "parallel" && len(g.ups) > 1 {
		return g.parallel(ctx, m)
	}
	start := 0
	if g.strategy == "round_robin" {
		start = int(g.next.Add(1) % uint64(len(g.ups)))
	}
	var errs []error
	var last *dns.Msg
	var lastUp upstream
	for i := range g.ups {
		u := g.ups[(start+i)%len(g.ups)]
		r, err := ask(ctx, u, m)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		if usable(r) {
			return r, u, nil
		}
		last, lastUp = r, u
	}
	if last != nil {
		return last, lastUp, nil
	}
	return nil, nil, fmt.Errorf("%w: %w", errAllFailed, errors.Join(errs...))
}

func (g *group) parallel(ctx context.Context, m *dns.Msg) (*dns.Msg, upstream, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type res struct {
		r   *dns.Msg
		u   upstream
		err error
	}
	out := make(chan res, len(g.ups))
	for _, u := range g.ups {
		go func() {
			r, err := ask(ctx, u, m.Copy())
			out <- res{r, u, err}
		}()
	}
	var errs []error
	var fallback *res
	for range g.ups {
		x := <-out
		switch {
		case x.err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", x.u, x.err))
		case usable(x.r):
			return x.r, x.u, nil
		default:
			fallback = &x
		}
	}
	if fallback != nil {
		return fallback.r, fallback.u, nil
	}
	return nil, nil, fmt.Errorf("%w: %w", errAllFailed, errors.Join(errs...))
}

// router picks the group for a name: the longest dns.forward domain that
// holds it, else the default upstreams.
type router struct {
	def     *group
	domains []string // longest first
	groups  map[string]*group
}

func newRouter(cfg config.DNS, o upstreamOptions) (*router, error) {
	mk := func(list []string) (*group, error) {
		g := &group{strategy: cfg.Strategy}
		for _, raw := range list {
			u, err := newUpstream(raw, o)
			if err != nil {
				return nil, err
			}
			g.ups = append(g.ups, u)
		}
		return g, nil
	}
	def, err := mk(cfg.Upstreams)
	if err != nil {
		return nil, err
	}
	r := &router{def: def, groups: map[string]*group{}}
	for _, f := range cfg.Forward {
		g, err := mk(f.Upstreams)
		if err != nil {
			return nil, err
		}
		d := canonName(f.Domain)
		r.groups[d] = g
		r.domains = append(r.domains, d)
	}
	sort.Slice(r.domains, func(i, j int) bool { return len(r.domains[i]) > len(r.domains[j]) })
	return r, nil
}

func (r *router) pick(name string) *group {
	for _, d := range r.domains {
		if name == d || strings.HasSuffix(name, "."+d) {
			return r.groups[d]
		}
	}
	return r.def
}
