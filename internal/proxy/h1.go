package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// h1Transport is an HTTP/1.1 client for plain-http upstreams that does its
// work on the calling goroutine: write the request, read the response, and
// hand the connection back to an idle pool when the body is done. The
// standard Transport runs two goroutines per connection and passes every
// request and response between them; on a 2-core machine that hand-off is
// a large part of a proxied request's cost (see docs/benchmarks.md).
// Upgrades (WebSocket) and https upstreams go to the standard Transport.
type h1Transport struct {
	fallback      http.RoundTripper
	dialer        net.Dialer
	headerTimeout time.Duration
	maxIdle       int

	mu   sync.Mutex
	idle map[string][]*h1Conn
}

type h1Conn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when it went back to the pool
	// headLen is the length of the response head the fast path has
	// parsed and not yet consumed.
	headLen int
}

// idleTimeout drops pooled connections unused this long; upstreams close
// theirs after a while, and a dead one costs a failed attempt.
const idleTimeout = 60 * time.Second

func newH1Transport(fallback http.RoundTripper, headerTimeout time.Duration) *h1Transport {
	return &h1Transport{fallback: fallback, dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		headerTimeout: headerTimeout, maxIdle: 256, idle: map[string][]*h1Conn{}}
}

func (t *h1Transport) get(ctx context.Context, addr string) (*h1Conn, bool, error) {
	t.mu.Lock()
	for l := t.idle[addr]; len(l) > 0; l = t.idle[addr] {
		pc := l[len(l)-1]
		t.idle[addr] = l[:len(l)-1]
		if time.Since(pc.used) > idleTimeout {
			pc.c.Close()
			continue
		}
		t.mu.Unlock()
		return pc, true, nil
	}
	t.mu.Unlock()
	c, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &h1Conn{c: c, br: bufio.NewReaderSize(c, 32<<10), bw: bufio.NewWriterSize(c, 16<<10)}, false, nil
}

func (t *h1Transport) put(addr string, pc *h1Conn) {
	pc.used = time.Now()
	t.mu.Lock()
	if len(t.idle[addr]) < t.maxIdle {
		t.idle[addr] = append(t.idle[addr], pc)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	pc.c.Close()
}

// CloseIdleConnections closes pooled connections (on reload).
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, l := range t.idle {
		for _, pc := range l {
			pc.c.Close()
		}
		delete(t.idle, k)
	}
}

func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.Header.Get("Upgrade") != "" {
		return t.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	if !strings.Contains(addr, ":") || strings.HasSuffix(addr, "]") {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "80")
	}
	// A pooled connection may have been closed by the upstream meanwhile.
	// As net/http's Transport does, the request is tried once more on a
	// new connection only when it can be sent again (no body) and may be
	// (an idempotent method or an Idempotency-Key), and only when nothing
	// of a response came back.
	noBody := req.Body == nil || req.Body == http.NoBody
	again := noBody && replayable([]byte(req.Method), req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != "")
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(req.Context(), addr)
		if err != nil {
			return nil, err
		}
		// Make sure a pooled connection is still open before a request
		// that cannot be tried again goes on it: a closed one reads EOF
		// at once.
		if reused && !again && !alive(pc) {
			pc.c.Close()
			continue
		}
		resp, err := t.roundTrip(req, pc, addr)
		if err != nil {
			pc.c.Close()
			if reused && again && attempt == 0 && errors.Is(err, errNothingRead) && !errors.Is(err, context.Canceled) && !isTimeout(err) {
				continue
			}
			return nil, err
		}
		return resp, nil
	}
}

// replayable reports whether a request may be sent a second time: the
// methods net/http's Transport retries, or any with an idempotency key.
func replayable(method []byte, idemKey bool) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return idemKey
}

// errNothingRead marks a failure before any byte of a response arrived.
var errNothingRead = errors.New("connection failed before a response")

type nothingRead struct{ err error }

func (e nothingRead) Error() string   { return errNothingRead.Error() + ": " + e.err.Error() }
func (e nothingRead) Unwrap() []error { return []error{errNothingRead, e.err} }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (t *h1Transport) roundTrip(req *http.Request, pc *h1Conn, addr string) (*http.Response, error) {
	// Cancelling the request (the client went away) unblocks reads and
	// writes on the connection.
	stop := context.AfterFunc(req.Context(), func() { _ = pc.c.SetDeadline(time.Unix(1, 0)) })
	if err := req.Write(pc.bw); err != nil {
		stop()
		return nil, nothingRead{err}
	}
	if err := pc.bw.Flush(); err != nil {
		stop()
		return nil, nothingRead{err}
	}
	if t.headerTimeout > 0 {
		_ = pc.c.SetReadDeadline(time.Now().Add(t.headerTimeout))
	}
	if _, err := pc.br.Peek(1); err != nil {
		stop()
		if req.Context().Err() != nil {
			return nil, req.Context().Err()
		}
		return nil, nothingRead{err}
	}
	var resp *http.Response
	var err error
	for {
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			stop()
			if req.Context().Err() != nil {
				return nil, req.Context().Err()
			}
			return nil, err
		}
		// 1xx informational answers before the real one are dropped.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			_, _ = io.Copy(io.Discard, resp.Body)
			continue
		}
		break
	}
	_ = pc.c.SetReadDeadline(time.Time{})
	reuse := !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
	resp.Body = &h1Body{rc: resp.Body, pc: pc, t: t, addr: addr, reuse: reuse, stop: stop}
	return resp, nil
}

// h1Body returns its connection to the pool when read to the end, and
// closes it when abandoned early (its state is unknown then).
type h1Body struct {
	rc    io.ReadCloser
	pc    *h1Conn
	t     *h1Transport
	addr  string // the pool it goes back to
	reuse bool
	done  bool
	eof   bool
	stop  func() bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
		// Read to its end: the connection goes back to the pool now, as
		// net/http's Transport does, not when the caller gets to Close
		// (after the client may already have sent its next request).
		_ = b.Close()
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.rc.Close()
	// stop reports false when the request was cancelled meanwhile: the
	// deadline was set, so the connection is no longer usable.
	if b.stop() && b.eof && b.reuse && err == nil {
		b.t.put(b.addr, b.pc)
		return nil
	}
	b.pc.c.Close()
	return err
}
