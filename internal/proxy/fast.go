package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsgraph/ops/internal/canon"
	"github.com/opsgraph/ops/internal/clientip"
	"github.com/opsgraph/ops/internal/policy"
)

// The fast path serves plain HTTP/1.1 connections on proxy.listen with a
// loop of its own: the request head is parsed in place, written to a
// pooled upstream connection as bytes, and the response head and body
// are copied back the same way, on the connection's goroutine. Go's
// net/http server and ReverseProxy allocate a Request, a Response and
// their header maps, start a background read per request and hand the
// body through several layers; on a 2-core machine that was most of a
// proxied request's cost (docs/benchmarks.md).
//
// The fast path only does what needs none of that: routes without cache,
// sign-in or link rewriting, requests with a small body of known length
// that nothing refuses; snippet injection and compression it does by the
// standard path's rules (transform.plan). For anything else (or anything
// it does not parse) the connection goes, with the bytes read so far, to
// the standard net/http server, which serves it from then on; the
// standard path also renders every refusal (ACL, policy, rate limits), so
// both paths answer alike.

const (
	fastReadBuf  = 8 << 10  // a request head must fit
	fastWriteBuf = 16 << 10 // response head and small bodies go out in one write
	fastMaxBody  = 64 << 10 // request bodies up to this are read whole, then sent
)

type fastServer struct {
	m             *Module
	slow          *http.Server
	handoff       *chanListener
	headerTimeout time.Duration
	idleTimeout   time.Duration
	log           *slog.Logger

	mu      sync.Mutex
	conns   map[*fastConn]struct{}
	closing atomic.Bool
	wg      sync.WaitGroup
}

func newFastServer(m *Module, ln net.Listener, slow *http.Server, headerTimeout, idleTimeout time.Duration) *fastServer {
	return &fastServer{
		m: m, slow: slow, handoff: &chanListener{addr: ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})},
		headerTimeout: headerTimeout, idleTimeout: idleTimeout, log: m.log, conns: map[*fastConn]struct{}{},
	}
}

// serve accepts on ln until it is closed; the standard server runs on the
// hand-off listener meanwhile.
func (s *fastServer) serve(ln net.Listener) error {
	go func() { _ = s.slow.Serve(s.handoff) }() // ends when shutdown closes the hand-off listener
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors and the like: wait and try again, as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("proxy accept failed; retrying", "err", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		fc := &fastConn{s: s, c: c}
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[fc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go fc.run()
	}
}

// shutdown stops taking connections, closes idle ones, lets active ones
// finish their request and waits for them (and the standard server's)
// until ctx ends, then closes what is left.
func (s *fastServer) shutdown(ctx context.Context, ln net.Listener) error {
	s.closing.Store(true)
	ln.Close()
	s.closeIdle()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return s.slow.Shutdown(ctx)
		case <-tick.C:
			s.closeIdle()
		case <-ctx.Done():
			s.mu.Lock()
			for fc := range s.conns {
				fc.c.Close()
			}
			s.mu.Unlock()
			s.slow.Close()
			return ctx.Err()
		}
	}
}

func (s *fastServer) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for fc := range s.conns {
		if fc.idle.Load() {
			fc.c.Close()
		}
	}
}

func (s *fastServer) done(fc *fastConn) {
	s.mu.Lock()
	delete(s.conns, fc)
	s.mu.Unlock()
	s.wg.Done()
}

// Handoffs is how many client connections the fast path has handed to
// the standard server so far.
func (m *Module) Handoffs() int {
	return int(m.handoffN.Load())
}

// chanListener hands connections to the standard server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

func (l *chanListener) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

// replayConn is a connection whose first bytes were already read.
type replayConn struct {
	net.Conn
	buf []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, fastReadBuf) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, fastWriteBuf) }}
)

// fastConn is one client connection on the fast path.
type fastConn struct {
	s      *fastServer
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	peer   netip.Addr
	remote string // the peer's address as net/http's RemoteAddr has it
	// The peer as X-Forwarded-For and Forwarded name it, made once.
	peerHost, fwdFor string
	peerIP           string    // peer as X-Real-IP names it
	rdl              time.Time // the read deadline in force

	idle atomic.Bool // waiting for a request, none of it read yet: shutdown may close it

	head  []byte // the current request head, copied out of br
	body  []byte
	chunk []byte // injected pages are sent from here
	req   reqHead
	resp  respHead
}

func (fc *fastConn) run() {
	handedOff := false
	defer func() {
		if fc.br != nil {
			fc.br.Reset(nil)
			readerPool.Put(fc.br)
		}
		if fc.bw != nil {
			fc.bw.Reset(nil)
			writerPool.Put(fc.bw)
		}
		if !handedOff {
			fc.c.Close()
		}
		fc.s.done(fc)
	}()
	fc.remote = fc.c.RemoteAddr().String()
	fc.peerHost, fc.fwdFor = fc.remote, forwardedFor(fc.remote)
	if host, _, err := net.SplitHostPort(fc.remote); err == nil {
		fc.peerHost = host
	}
	if ap, err := netip.ParseAddrPort(fc.remote); err == nil {
		fc.peer = ap.Addr().Unmap()
		fc.peerIP = fc.peer.String()
	}
	fc.br = readerPool.Get().(*bufio.Reader)
	fc.br.Reset(fc.c)
	fc.bw = writerPool.Get().(*bufio.Writer)
	fc.bw.Reset(fc.c)
	for {
		fc.idle.Store(true)
		if fc.s.closing.Load() {
			return
		}
		if idle := fc.s.idleTimeout; idle > 0 {
			// Re-armed only when the one in force ends noticeably sooner than
			// a full idle timeout from now (a timer change per request is
			// measurable here).
			if now := time.Now(); fc.rdl.Sub(now) < idle-idle/16 {
				fc.setReadDeadline(now.Add(idle))
			}
		}
		fc.head = fc.head[:0] // a hand-off must not replay the previous request
		n, err := peekHead(fc.br, fc.started)
		fc.idle.Store(false)
		if err != nil {
			if errors.Is(err, errHeadTooBig) || errors.Is(err, errBareLF) {
				handedOff = true
				fc.handoff()
			}
			return
		}
		head, _ := fc.br.Peek(n)
		fc.head = append(fc.head[:0], head...)
		_, _ = fc.br.Discard(n)
		keep, handoff := fc.serve()
		if handoff {
			handedOff = true
			fc.handoff()
			return
		}
		if !keep {
			return
		}
	}
}

// started puts the header timeout on a head that has begun to arrive.
func (fc *fastConn) started() {
	fc.idle.Store(false)
	if fc.s.headerTimeout > 0 {
		fc.setReadDeadline(time.Now().Add(fc.s.headerTimeout))
	}
}

func (fc *fastConn) setReadDeadline(t time.Time) {
	fc.rdl = t
	_ = fc.c.SetReadDeadline(t)
}

// handoff gives the connection, with what was read of it, to the
// standard server.
func (fc *fastConn) handoff() {
	fc.s.m.handoffN.Add(1)
	buf := append([]byte(nil), fc.head...)
	if b, _ := fc.br.Peek(fc.br.Buffered()); len(b) > 0 {
		buf = append(buf, b...)
	}
	_ = fc.c.SetReadDeadline(time.Time{})
	fc.s.handoff.give(&replayConn{Conn: fc.c, buf: buf})
}

// serve handles the request in fc.head: keep says whether the connection
// may serve another, handoff that the standard server must take it (fc.head
// not consumed yet).
func (fc *fastConn) serve() (keep, handoff bool) {
	m := fc.s.m
	tb := m.table.Load()
	if !m.cfg.Load().FastPath || !parseRequestHead(fc.head, &fc.req, tb.spoof) {
		return false, true
	}
	h := &fc.req
	start := time.Now()
	if len(h.path) >= len(OpsPrefix) && string(h.path[:len(OpsPrefix)]) == OpsPrefix {
		return false, true
	}
	// Only a path and host already in canonical form (request.go) are
	// served here; the standard path puts the others in it, or refuses
	// them.
	host, port := h.host, []byte(nil)
	if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		host, port = host[:i], host[i+1:]
	}
	if !canon.IsCanonical(h.path) || bytes.IndexByte(h.path, ';') >= 0 || !canon.IsCanonicalHost(host) || !digits(port) {
		return false, true
	}
	// The strings the rest needs, made once.
	q := reqInfo{method: string(h.method), host: string(h.host), path: string(h.path), query: string(h.query),
		ua: string(h.ua), referrer: string(h.referrer), proto: "HTTP/1.1", acceptEnc: string(h.acceptEnc)}
	rt := tb.match(q.host[:len(host)], q.path)
	if rt == nil || !rt.fast {
		return false, true
	}
	ip, trusted := clientip.Resolve(fc.peer, string(bytes.Join(h.xff, []byte(","))), tb.trusted)
	up, ok := m.fastAllowed(rt, h, &q, ip, start)
	if !ok {
		return false, true
	}
	// The body is read whole before the upstream is asked, so a slow
	// client never holds an upstream connection (nginx buffers the same
	// way by default).
	var body []byte
	if h.contentLength > 0 {
		if cap(fc.body) < int(h.contentLength) {
			fc.body = make([]byte, h.contentLength)
		}
		body = fc.body[:h.contentLength]
		if fc.s.headerTimeout > 0 {
			fc.setReadDeadline(time.Now().Add(fc.s.headerTimeout))
		}
		if _, err := io.ReadFull(fc.br, body); err != nil {
			return false, false
		}
	}
	p := &pass{ip: ip, trusted: trusted, up: up}
	up.active.Add(1)
	code, out, keep := fc.proxy(rt, p, &q, body)
	up.active.Add(-1)
	rt.pool.result(up, p.failed || rt.pool.failedStatus(code))
	m.record(tb, rt, &q, code, int64(len(body)), out, p, start)
	return keep && !h.close && !fc.s.closing.Load(), false
}

func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) <= 5
}

// fastAllowed reports whether the standard path would simply proxy this
// request (no policy, ACL, rate-limit or size refusal), and picks its
// upstream. The per-address rate limit is consulted last:
// it spends a token only when the request is served here.
func (m *Module) fastAllowed(rt *route, h *reqHead, q *reqInfo, ip netip.Addr, now time.Time) (*upstream, bool) {
	path := q.path
	if !m.policy.empty() {
		if _, ok := m.policy.active(policy.Maintenance, rt.cfg.Name); ok {
			return nil, false
		}
		if _, ok := m.policy.active(policy.Maintenance, "*"); ok {
			return nil, false
		}
		if ip.IsValid() {
			if _, ok := m.policy.active(policy.IP, clientip.Anonymize(ip).String()); ok {
				return nil, false
			}
		}
		if _, ok := m.policy.blockedPath(path); ok {
			return nil, false
		}
	}
	allowed, rule := rt.acl.decide(subject{method: q.method, path: path, ip: ip, now: now})
	if !allowed {
		return nil, false
	}
	if rule >= 0 {
		m.metrics.aclHits.WithLabelValues(rt.cfg.Name, strconv.Itoa(rule), "allow").Inc()
	}
	if max := int64(rt.cfg.MaxBody); max > 0 && h.contentLength > max || h.contentLength > fastMaxBody {
		return nil, false
	}
	up := rt.pool.pick()
	if up == nil {
		return nil, false
	}
	if rt.ipRate != nil && ip.IsValid() {
		if ok, _ := rt.ipRate.allow(ip.String(), ip, 0, now); !ok {
			return nil, false
		}
	}
	return up, true
}
