package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The fast path's forwarding: the request to the upstream, the answer
// back (fast.go has the connections it runs on).

// proxy sends the request to p.up and copies the answer back. It returns
// the status sent, the body bytes sent, and whether the client connection
// is still in step for another request.
func (fc *fastConn) proxy(rt *route, p *pass, q *reqInfo, body []byte) (code int, out int64, keep bool) {
	h := &fc.req
	t := rt.h1
	again := replayable(h.method, h.idemKey)
	var pc *h1Conn
	for attempt := 0; ; attempt++ {
		var reused bool
		var err error
		pc, reused, err = t.get(context.Background(), p.up.addr) // a dial is bounded by the dialer's timeout
		if err == nil && reused && (len(body) > 0 || !again) && !alive(pc) {
			pc.c.Close()
			continue // a body, or a request that cannot be sent twice, goes only to a connection still open
		}
		if err == nil {
			if err = fc.writeRequest(pc.bw, rt, p, q, body); err != nil {
				err = nothingRead{err}
			}
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
		// A pooled connection the upstream closed meanwhile fails before
		// any answer; the request is sent again on a new one only when
		// net/http's Transport would: an idempotent method (or an
		// Idempotency-Key), and nothing of a response read.
		if reused && attempt == 0 && errors.Is(err, errNothingRead) && !isTimeout(err) && again {
			continue
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
	if len(r.contentType) > 0 {
		p.ctype = eventType(r.contentType)
	}
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
	// The upstream's answer is read whole: its connection goes back to the
	// pool before the client's last bytes go out, so the client's next
	// request finds it there.
	if upOK && !r.close && (!r.http10 || r.keepAlive) {
		t.put(p.up.addr, pc)
	} else {
		pc.c.Close()
	}
	if ferr := bw.Flush(); ferr != nil {
		clientErr = true
	}
	return code, out, err == nil && !clientErr && !closeClient
}

// readResponseHead reads the upstream's head into r, skipping 1xx
// interim responses; the head stays in pc.br (pc.headLen bytes). An
// error before any byte of a response arrived wraps errNothingRead.
func readResponseHead(pc *h1Conn, r *respHead) error {
	if _, err := pc.br.Peek(1); err != nil {
		return nothingRead{err}
	}
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
		path = stripPrefix(path, rt.cfg.Path)
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
	ws(bw, "X-Forwarded-For: ")
	if p.trusted && len(h.xff) > 0 {
		for _, v := range h.xff {
			wb(bw, v)
			ws(bw, ", ")
		}
	}
	ws(bw, fc.peerHost)
	ws(bw, "\r\nX-Forwarded-Host: ")
	wb(bw, h.host)
	ws(bw, "\r\nX-Forwarded-Proto: http\r\n")
	if p.ip.IsValid() {
		ws(bw, "X-Real-Ip: ")
		if p.ip == fc.peer {
			ws(bw, fc.peerIP)
		} else {
			ws(bw, p.ip.String())
		}
		ws(bw, "\r\n")
	}
	ws(bw, "Forwarded: ")
	if p.trusted && len(h.forwarded) > 0 {
		wb(bw, h.forwarded)
		ws(bw, ", ")
	}
	ws(bw, "for=")
	ws(bw, fc.fwdFor)
	ws(bw, ";host=")
	ws(bw, quoteForwarded(q.host))
	ws(bw, ";proto=http\r\n\r\n")
	wb(bw, body)
	return bw.Flush()
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
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
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
