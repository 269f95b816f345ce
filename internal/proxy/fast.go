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
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	remote string    // the peer's address as net/http's RemoteAddr has it
	rdl    time.Time // the read deadline in force

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
	if ap, err := netip.ParseAddrPort(fc.remote); err == nil {
		fc.peer = ap.Addr().Unmap()
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
	if !m.cfg.Load().FastPath || !parseRequestHead(fc.head, &fc.req, tb.idHeaders) {
		return false, true
	}
	h := &fc.req
	start := time.Now()
	if len(h.path) >= len(OpsPrefix) && string(h.path[:len(OpsPrefix)]) == OpsPrefix {
		return false, true
	}
	// The strings the rest needs, made once.
	q := reqInfo{method: string(h.method), host: string(h.host), path: string(h.path), query: string(h.query),
		ua: string(h.ua), referrer: string(h.referrer), proto: "HTTP/1.1", acceptEnc: string(h.acceptEnc)}
	rt := tb.match(q.host, q.path)
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
	rt.pool.result(up, p.failed || code >= 500)
	m.record(tb, rt, &q, code, int64(len(body)), out, p, start)
	return keep && !h.close && !fc.s.closing.Load(), false
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

// proxy sends the request to p.up and copies the answer back. It returns
// the status sent, the body bytes sent, and whether the client connection
// is still in step for another request.
func (fc *fastConn) proxy(rt *route, p *pass, q *reqInfo, body []byte) (code int, out int64, keep bool) {
	h := &fc.req
	t := rt.h1
	var pc *h1Conn
	for attempt := 0; ; attempt++ {
		var reused bool
		var err error
		pc, reused, err = t.getAddr(p.up.addr)
		if err == nil && reused && len(body) > 0 && !alive(pc) {
			pc.c.Close()
			continue // a body is never sent twice, so only to a live connection
		}
		if err == nil {
			err = fc.writeRequest(pc.bw, rt, p, q, body)
		}
		if err == nil {
			if rt.cfg.Timeout > 0 {
				_ = pc.c.SetReadDeadline(time.Now().Add(rt.cfg.Timeout.D()))
			}
			err = readResponseHead(pc, &fc.resp)
		}
		if err == nil {
			break
		}
		if pc != nil {
			pc.c.Close()
		}
		if reused && len(body) == 0 && attempt == 0 && !isTimeout(err) {
			continue // the upstream closed an idle connection meanwhile
		}
		p.failed = true
		code = http.StatusBadGateway
		if isTimeout(err) {
			code = http.StatusGatewayTimeout
		}
		m := fc.s.m
		m.log.Debug("upstream error", "route", rt.cfg.Name, "upstream", p.up.url.String(), "err", err)
		return code, 0, fc.errorPage(code) == nil
	}
	r := &fc.resp
	code = r.code
	noBody := bodyless(h.method, r.code)
	closeClient := h.close || fc.s.closing.Load()
	// The standard path's transform, decided by the same plan: snippets go
	// into HTML pages (decoded first), and compressible bodies are
	// encoded for a client that accepts it; either is sent chunked.
	pl := rt.tf.plan(q.method, r.code, string(r.contentType), r.noTransform, r.contentRange, r.contentLength,
		strings.ToLower(string(r.encoding)), q.acceptEnc)
	injecting, clientEnc := pl.inject, pl.enc
	transforming := injecting || clientEnc != ""
	delimited := !transforming && !noBody && !r.chunked && r.contentLength < 0 // the body ends when the upstream closes
	if delimited {
		closeClient = true
	}
	bw := fc.bw
	ws(bw, "HTTP/1.1 ")
	wb(bw, r.status)
	ws(bw, "\r\n")
	for i, f := range r.fields {
		if f.kind == hSkip || transforming && eqFold(f.name, "content-encoding") {
			continue
		}
		wb(bw, f.name)
		ws(bw, ": ")
		if transforming && i == r.etag && !strings.HasPrefix(string(f.value), "W/") {
			ws(bw, "W/") // the bytes differ from the upstream's
		}
		wb(bw, f.value)
		ws(bw, "\r\n")
	}
	if r.contentLength >= 0 && !transforming {
		ws(bw, "Content-Length: ")
		ws(bw, strconv.FormatInt(r.contentLength, 10))
		ws(bw, "\r\n")
	}
	if r.chunked || transforming {
		ws(bw, "Transfer-Encoding: chunked\r\n")
	}
	if clientEnc != "" {
		ws(bw, "Content-Encoding: ")
		ws(bw, clientEnc)
		ws(bw, "\r\n")
	}
	if !r.hasDate {
		ws(bw, "Date: ")
		ws(bw, httpDate())
		ws(bw, "\r\n")
	}
	// As the standard path's transform does: a response that could have
	// been compressed varies by Accept-Encoding, even when it was not.
	if pl.vary && !r.varyAE {
		ws(bw, "Vary: Accept-Encoding\r\n")
	}
	if closeClient {
		ws(bw, "Connection: close\r\n")
	}
	ws(bw, "\r\n")
	var csp, encoding string
	if injecting {
		csp, encoding = string(r.csp), string(r.encoding)
	}
	_, _ = pc.br.Discard(pc.headLen)
	upOK := true // the upstream connection ended in step
	var err error
	switch {
	case noBody:
	case transforming:
		if rt.cfg.Timeout > 0 {
			_ = pc.c.SetReadDeadline(time.Time{})
		}
		var src io.Reader = pc.br
		var limited *io.LimitedReader
		switch {
		case r.chunked:
			src = httputil.NewChunkedReader(pc.br)
		case r.contentLength >= 0:
			limited = &io.LimitedReader{R: pc.br, N: r.contentLength}
			src = limited
		}
		// (r's fields are not used from here: reads move pc.br's buffer.)
		if injecting {
			d, ok := decode(encoding, src)
			if !ok {
				err = errBadResponse // the upstream's encoding header did not decode
				break
			}
			defer d.Close()
			src = rt.tf.newInjector(d, csp)
		}
		out, err = fc.copyTransformed(pc, src, clientEnc)
		// The connection is reusable only when the body was read to its
		// end and no further (chunked trailers are left unread).
		upOK = err == nil && limited != nil && limited.N == 0
	case r.chunked:
		out, err = fc.copyChunked(pc)
	case r.contentLength >= 0:
		if rt.cfg.Timeout > 0 && int64(pc.br.Buffered()) < r.contentLength {
			_ = pc.c.SetReadDeadline(time.Time{})
		}
		out, err = fc.copyN(pc, r.contentLength)
	default:
		_ = pc.c.SetReadDeadline(time.Time{})
		out, err = fc.copyN(pc, -1)
		upOK = false
	}
	var clientErr bool
	if err != nil {
		var ce clientWriteError
		clientErr = errors.As(err, &ce)
		upOK = false
		if !clientErr {
			p.failed = true
		}
	}
	if ferr := bw.Flush(); ferr != nil {
		clientErr = true
	}
	if upOK && !r.close && (!r.http10 || r.keepAlive) {
		t.put(p.up.addr, pc)
	} else {
		pc.c.Close()
	}
	return code, out, err == nil && !clientErr && !closeClient
}

// readResponseHead reads the upstream's head into r, skipping 1xx
// interim responses; the head stays in pc.br (pc.headLen bytes).
func readResponseHead(pc *h1Conn, r *respHead) error {
	for {
		n, err := peekHead(pc.br, nil)
		if err != nil {
			if errors.Is(err, errHeadTooBig) || errors.Is(err, errBareLF) {
				return errBadResponse
			}
			return err
		}
		head, _ := pc.br.Peek(n)
		if err := parseResponseHead(head, r); err != nil {
			return err
		}
		if r.code >= 100 && r.code < 200 {
			if r.code == http.StatusSwitchingProtocols {
				return errors.New("upstream switched protocols unasked")
			}
			_, _ = pc.br.Discard(n)
			continue
		}
		pc.headLen = n
		return nil
	}
}

// writeRequest writes the request head (with the forwarding fields the
// standard path sets) and body to the upstream.
func (fc *fastConn) writeRequest(bw *bufio.Writer, rt *route, p *pass, q *reqInfo, body []byte) error {
	h := &fc.req
	wb(bw, h.method)
	wc(bw, ' ')
	path := q.path
	if rt.cfg.StripPath && rt.cfg.Path != "/" {
		path = "/" + strings.TrimPrefix(strings.TrimPrefix(path, strings.TrimSuffix(rt.cfg.Path, "/")), "/")
	}
	if base := p.up.url.Path; base != "" && base != "/" {
		path = singleJoin(base, path)
	}
	ws(bw, path)
	if h.query != nil {
		wc(bw, '?')
		wb(bw, h.query)
	}
	ws(bw, " HTTP/1.1\r\nHost: ")
	wb(bw, h.host)
	ws(bw, "\r\n")
	for _, f := range h.fields {
		if f.kind == hSkip {
			continue
		}
		wb(bw, f.name)
		ws(bw, ": ")
		wb(bw, f.value)
		ws(bw, "\r\n")
	}
	if h.contentLength >= 0 {
		ws(bw, "Content-Length: ")
		ws(bw, strconv.Itoa(len(body)))
		ws(bw, "\r\n")
	}
	peerHost := fc.peerHost()
	ws(bw, "X-Forwarded-For: ")
	if p.trusted && len(h.xff) > 0 {
		for _, v := range h.xff {
			wb(bw, v)
			ws(bw, ", ")
		}
	}
	ws(bw, peerHost)
	ws(bw, "\r\nX-Forwarded-Host: ")
	wb(bw, h.host)
	ws(bw, "\r\nX-Forwarded-Proto: http\r\nForwarded: ")
	if p.trusted && len(h.forwarded) > 0 {
		wb(bw, h.forwarded)
		ws(bw, ", ")
	}
	ws(bw, "for=")
	ws(bw, forwardedFor(fc.remote))
	ws(bw, ";host=")
	ws(bw, quoteForwarded(q.host))
	ws(bw, ";proto=http\r\n\r\n")
	wb(bw, body)
	return bw.Flush()
}

func (fc *fastConn) peerHost() string {
	host, _, err := net.SplitHostPort(fc.remote)
	if err != nil {
		return fc.remote
	}
	return host
}

// clientWriteError marks a failed write to the client.
type clientWriteError struct{ error }

// fill makes sure pc.br has bytes, sending what the client writer holds
// first whenever it would wait on the upstream, so streamed responses
// (SSE) reach the client as they come.
func (fc *fastConn) fill(pc *h1Conn) error {
	if pc.br.Buffered() > 0 {
		return nil
	}
	if err := fc.bw.Flush(); err != nil {
		return clientWriteError{err}
	}
	_, err := pc.br.Peek(1)
	return err
}

// copyN copies n body bytes (n < 0: until EOF) from the upstream.
func (fc *fastConn) copyN(pc *h1Conn, n int64) (int64, error) {
	var done int64
	for n < 0 || done < n {
		if err := fc.fill(pc); err != nil {
			if n < 0 && err == io.EOF {
				return done, nil
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
		k := pc.br.Buffered()
		if n >= 0 && int64(k) > n-done {
			k = int(n - done)
		}
		b, _ := pc.br.Peek(k)
		if _, err := fc.bw.Write(b); err != nil {
			return done, clientWriteError{err}
		}
		_, _ = pc.br.Discard(k)
		done += int64(k)
	}
	return done, nil
}

// copyTransformed sends what src reads as a chunked body, encoded with
// enc when set. Whatever is pending goes out (the encoder flushed) when
// the next read could wait on the upstream.
func (fc *fastConn) copyTransformed(pc *h1Conn, src io.Reader, enc string) (int64, error) {
	if fc.chunk == nil {
		fc.chunk = make([]byte, injectBuf)
	}
	cw := &chunkWriter{bw: fc.bw}
	var w io.Writer = cw
	var encoder flushWriteCloser
	if enc != "" {
		var put func()
		encoder, put = newEncoder(enc, cw)
		defer put()
		w = encoder
	}
	for {
		if pc.br.Buffered() == 0 {
			if encoder != nil {
				if err := encoder.Flush(); err != nil {
					return cw.n, clientWriteError{err}
				}
			}
			if err := fc.bw.Flush(); err != nil {
				return cw.n, clientWriteError{err}
			}
		}
		n, err := src.Read(fc.chunk)
		if n > 0 {
			if _, werr := w.Write(fc.chunk[:n]); werr != nil {
				return cw.n, clientWriteError{werr}
			}
		}
		if err == io.EOF {
			if encoder != nil {
				if cerr := encoder.Close(); cerr != nil {
					return cw.n, clientWriteError{cerr}
				}
			}
			if _, werr := fc.bw.WriteString("0\r\n\r\n"); werr != nil {
				return cw.n, clientWriteError{werr}
			}
			return cw.n, nil
		}
		if err != nil {
			return cw.n, err
		}
	}
}

// chunkWriter frames what is written as HTTP/1.1 chunks; n counts the
// data bytes.
type chunkWriter struct {
	bw *bufio.Writer
	n  int64
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	ws(c.bw, strconv.FormatInt(int64(len(p)), 16))
	ws(c.bw, "\r\n")
	wb(c.bw, p)
	if _, err := c.bw.WriteString("\r\n"); err != nil {
		return 0, err
	}
	c.n += int64(len(p))
	return len(p), nil
}

// maxChunkLine bounds a chunk-size or trailer line.
const maxChunkLine = 4096

// copyChunked passes a chunked body on as it is, checking its framing;
// it returns the data bytes.
func (fc *fastConn) copyChunked(pc *h1Conn) (int64, error) {
	var data int64
	line := func() ([]byte, error) {
		for {
			if err := fc.fill(pc); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, err
			}
			b, _ := pc.br.Peek(min(pc.br.Buffered(), maxChunkLine))
			if i := indexLF(b); i >= 0 {
				if i == 0 || b[i-1] != '\r' {
					return nil, errBadResponse
				}
				return b[:i+1], nil
			}
			if len(b) >= maxChunkLine {
				return nil, errBadResponse
			}
			// A partial line: wait for more without losing it.
			if _, err := pc.br.Peek(len(b) + 1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, err
			}
		}
	}
	emit := func(b []byte) error {
		if _, err := fc.bw.Write(b); err != nil {
			return clientWriteError{err}
		}
		_, _ = pc.br.Discard(len(b))
		return nil
	}
	for {
		l, err := line()
		if err != nil {
			return data, err
		}
		size, ok := parseChunkSize(l[:len(l)-2])
		if !ok {
			return data, errBadResponse
		}
		if err := emit(l); err != nil {
			return data, err
		}
		if size == 0 {
			for { // trailer fields, then the blank line
				l, err := line()
				if err != nil {
					return data, err
				}
				if err := emit(l); err != nil {
					return data, err
				}
				if len(l) == 2 {
					return data, nil
				}
			}
		}
		n, err := fc.copyN(pc, size)
		data += n
		if err != nil {
			return data, err
		}
		l, err = line()
		if err != nil {
			return data, err
		}
		if len(l) != 2 {
			return data, errBadResponse
		}
		if err := emit(l); err != nil {
			return data, err
		}
	}
}

func indexLF(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

// errorPage answers with the standard path's page for an upstream failure.
func (fc *fastConn) errorPage(code int) error {
	body := pageBody(code, http.StatusText(code), "The upstream server did not answer properly.")
	bw := fc.bw
	ws(bw, "HTTP/1.1 ")
	ws(bw, strconv.Itoa(code))
	wc(bw, ' ')
	ws(bw, http.StatusText(code))
	ws(bw, "\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nDate: ")
	ws(bw, httpDate())
	ws(bw, "\r\nContent-Length: ")
	ws(bw, strconv.Itoa(len(body)))
	ws(bw, "\r\n\r\n")
	if string(fc.req.method) != "HEAD" {
		ws(bw, body)
	}
	return bw.Flush()
}

// httpDate is the current time in HTTP's format, made once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.unix == now {
		return d.s
	}
	d := &cachedDate{unix: now, s: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

type cachedDate struct {
	unix int64
	s    string
}

var dateCache atomic.Pointer[cachedDate]

// ws, wb and wc write into a bufio.Writer without looking at the error:
// bufio keeps the first one and returns it from every later call and
// from Flush, which is checked.
func ws(w *bufio.Writer, s string) { _, _ = w.WriteString(s) }
func wb(w *bufio.Writer, b []byte) { _, _ = w.Write(b) }
func wc(w *bufio.Writer, c byte)   { _ = w.WriteByte(c) }
