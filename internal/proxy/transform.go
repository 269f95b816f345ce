package proxy

import (
	"bytes"
	"context"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/opsgraph/ops/internal/config"
)

// Responses are transformed as they stream: decode the upstream's
// encoding when the body must change, insert snippets into HTML, and
// encode for the client by its Accept-Encoding. Nothing buffers a whole
// body; each upstream read is passed on (and flushed) as it comes.

// minCompress is the smallest body worth compressing when its length is
// known: below it the framing costs more than it saves.
const minCompress = 1024

var compressibleTypes = []string{
	"text/", "application/json", "application/javascript", "application/xml", "application/xhtml+xml",
	"application/rss+xml", "application/atom+xml", "application/ld+json", "application/manifest+json",
	"application/wasm", "image/svg+xml", "application/x-javascript", "application/vnd.api+json", "font/ttf", "font/otf",
}

// compressible takes a parsed media type (no parameters).
func compressible(mt string) bool {
	if mt == "text/event-stream" { // streams must not wait on an encoder
		return false
	}
	for _, t := range compressibleTypes {
		if strings.HasPrefix(mt, t) {
			return true
		}
	}
	return false
}

// negotiate picks br, zstd or gzip from Accept-Encoding by q-value (ties
// in that order), or "".
func negotiate(accept string) string {
	best, bestQ := "", 0.0
	rank := map[string]int{"br": 3, "zstd": 2, "gzip": 1}
	star := -1.0
	seen := map[string]bool{}
	for _, part := range strings.Split(accept, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		if name == "*" {
			star = q
			continue
		}
		if _, ok := rank[name]; !ok {
			continue
		}
		seen[name] = true
		if q > 0 && (q > bestQ || q == bestQ && rank[name] > rank[best]) {
			best, bestQ = name, q
		}
	}
	if best == "" && star > 0 {
		for _, n := range []string{"br", "zstd", "gzip"} {
			if !seen[n] {
				return n
			}
		}
	}
	return best
}

var (
	gzipPool   = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, 5); return w }}
	brotliPool = sync.Pool{New: func() any { return brotli.NewWriterLevel(nil, 4) }}
	zstdPool   = sync.Pool{New: func() any {
		w, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		return w
	}}
)

type flushWriteCloser interface {
	io.WriteCloser
	Flush() error
}

func newEncoder(enc string, w io.Writer) (flushWriteCloser, func()) {
	switch enc {
	case "gzip":
		g := gzipPool.Get().(*gzip.Writer)
		g.Reset(w)
		return g, func() { gzipPool.Put(g) }
	case "br":
		b := brotliPool.Get().(*brotli.Writer)
		b.Reset(w)
		return b, func() { brotliPool.Put(b) }
	case "zstd":
		z := zstdPool.Get().(*zstd.Encoder)
		z.Reset(w)
		return z, func() { zstdPool.Put(z) }
	}
	return nil, func() {}
}

// decode returns a reader of the identity body, or false for an encoding
// this proxy does not decode (then the body is passed on untouched).
func decode(enc string, r io.Reader) (io.ReadCloser, bool) {
	switch strings.ToLower(enc) {
	case "", "identity":
		return io.NopCloser(r), true
	case "gzip", "x-gzip":
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, false
		}
		return g, true
	case "br":
		return io.NopCloser(brotli.NewReader(r)), true
	case "zstd":
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
		if err != nil {
			return nil, false
		}
		return z.IOReadCloser(), true
	}
	return nil, false
}

// transform is a route's response rewriting.
type transform struct {
	compress bool
	inject   config.Inject
	tracker  string // the tracker tag, without nonce
	// outbound signs a redirect for a link to another host (rewrite_links).
	outbound func(ctx context.Context, target, from string) (string, error)
}

func newTransform(rc config.Route) *transform {
	t := &transform{compress: rc.Compress != "off", inject: rc.Inject}
	if rc.Inject.Tracker {
		t.tracker = `<script defer src="/_ops/ops.js" data-api="/_ops" data-key="` + html.EscapeString(rc.Inject.WriteKey) + `"`
	}
	return t
}

func (t *transform) injects() bool {
	return t.tracker != "" || t.inject.Head != "" || t.inject.Body != "" || t.rewrites()
}

func (t *transform) rewrites() bool { return t.inject.RewriteLinks && t.outbound != nil }

var nonceRE = regexp.MustCompile(`'nonce-([A-Za-z0-9+/=_-]+)'`)

// plan is what the transform does to one response.
type plan struct {
	inject bool   // insert the route's snippets (the body decoded first)
	enc    string // encode for the client: br, zstd, gzip, or none
	vary   bool   // the response varies by Accept-Encoding
}

// plan decides for the response (code, Content-Type ct, Cache-Control
// no-transform, a Content-Range, length (-1 unknown), Content-Encoding
// upEnc in lower case) to a method request that accepts the encodings in
// accept. Both request paths ask it, so they transform alike.
func (t *transform) plan(method string, code int, ct string, noTransform, partial bool, length int64, upEnc, accept string) plan {
	if method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified ||
		code == http.StatusPartialContent || partial || noTransform {
		return plan{}
	}
	mt := mediaType(ct)
	var p plan
	p.inject = t.injects() && mt == "text/html" && code == http.StatusOK && decodable(upEnc)
	p.vary = t.compress && compressible(mt)
	if p.vary && (length < 0 || length >= minCompress || p.inject) && (upEnc == "" || p.inject) {
		p.enc = negotiate(accept)
	}
	return p
}

// decodable reports whether decode reads enc (lower case).
func decodable(enc string) bool {
	switch enc {
	case "", "identity", "gzip", "x-gzip", "br", "zstd":
		return true
	}
	return false
}

// mediaType is the lower-cased type/subtype of a Content-Type value.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// apply rewrites resp for the client that sent req.
func (t *transform) apply(req *http.Request, resp *http.Response) {
	h := resp.Header
	upEnc := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding")))
	pl := t.plan(req.Method, resp.StatusCode, h.Get("Content-Type"), containsFold([]byte(h.Get("Cache-Control")), "no-transform"),
		h.Get("Content-Range") != "", resp.ContentLength, upEnc, req.Header.Get("Accept-Encoding"))
	if pl.vary {
		addVary(h, "Accept-Encoding")
	}
	if !pl.inject && pl.enc == "" {
		return // already encoded by the upstream, or nothing to do
	}
	inject, clientEnc := pl.inject, pl.enc
	var closer io.Closer = resp.Body
	var src io.Reader = resp.Body
	if inject {
		d, ok := decode(upEnc, resp.Body)
		if !ok {
			return // an encoding this proxy cannot read: pass it on as is
		}
		inj := t.newInjector(d, h.Get("Content-Security-Policy"))
		if t.rewrites() {
			host := strings.ToLower(req.Host)
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			from := req.URL.Path
			ctx := req.Context()
			inj.link = func(href string) (string, bool) {
				u, err := url.Parse(href)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.EqualFold(u.Hostname(), host) {
					return "", false
				}
				p, err := t.outbound(ctx, href, from)
				if err != nil {
					return "", false
				}
				return OpsPrefix + p, true
			}
		}
		src = inj
		closer = closers{resp.Body, d}
		h.Del("Content-Encoding")
	}
	h.Del("Content-Length")
	resp.ContentLength = -1
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		h.Set("ETag", "W/"+et) // the bytes differ from the upstream's
	}
	if clientEnc == "" {
		resp.Body = readCloser{src, closer}
		return
	}
	h.Set("Content-Encoding", clientEnc)
	pr, pw := io.Pipe()
	go func() {
		enc, put := newEncoder(clientEnc, pw)
		defer put()
		buf := make([]byte, 32<<10)
		var err error
		for {
			n, rerr := src.Read(buf)
			if n > 0 {
				if _, err = enc.Write(buf[:n]); err == nil {
					err = enc.Flush()
				}
				if err != nil {
					break
				}
			}
			if rerr != nil {
				if rerr != io.EOF {
					err = rerr
				}
				break
			}
		}
		if cerr := enc.Close(); err == nil {
			err = cerr
		}
		_ = closer.Close()
		pw.CloseWithError(err)
	}()
	resp.Body = readCloser{pr, pr}
}

// newInjector inserts the route's snippets into the HTML read from src;
// csp is the page's Content-Security-Policy, for csp_nonce.
func (t *transform) newInjector(src io.Reader, csp string) *injector {
	head, tail := []byte(nil), []byte(nil)
	nonce := ""
	if t.inject.CSPNonce {
		if m := nonceRE.FindStringSubmatch(csp); m != nil {
			nonce = m[1]
		}
	}
	if t.tracker != "" {
		tag := t.tracker
		if nonce != "" {
			tag += ` nonce="` + nonce + `"`
		}
		head = append(head, tag+"></script>"...)
	}
	head = append(head, withNonce(t.inject.Head, nonce)...)
	tail = []byte(withNonce(t.inject.Body, nonce))
	return &injector{src: src, head: head, body: tail, headDone: len(head) == 0, bodyDone: len(tail) == 0}
}

func withNonce(snippet, nonce string) string {
	if nonce == "" || snippet == "" {
		return snippet
	}
	r := strings.NewReplacer("<script", `<script nonce="`+nonce+`"`, "<style", `<style nonce="`+nonce+`"`)
	return r.Replace(snippet)
}

func addVary(h http.Header, v string) {
	for _, x := range h.Values("Vary") {
		for _, f := range strings.Split(x, ",") {
			if strings.EqualFold(strings.TrimSpace(f), v) || strings.TrimSpace(f) == "*" {
				return
			}
		}
	}
	h.Add("Vary", v)
}

type readCloser struct {
	io.Reader
	c io.Closer
}

func (r readCloser) Close() error { return r.c.Close() }

type closers []io.Closer

func (c closers) Close() error {
	var first error
	for _, x := range c {
		if err := x.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// injector inserts head before the first </head> and body before the
// first </body> (head goes before </body> when a page has no </head>),
// matching tags case-insensitively across read boundaries.
type injector struct {
	src        io.Reader
	head, body []byte
	// link, when set, gives the replacement for an <a href> value.
	link     func(href string) (string, bool)
	headDone bool
	bodyDone bool
	out      []byte        // ready to return
	obuf     []byte        // out's storage, reused once out is drained
	pend     []byte        // scanned but possibly the start of a tag
	bufs     *injectorBufs // from injectBufs; back there at the end
	err      error
}

func (j *injector) Read(p []byte) (int, error) {
	for len(j.out) == 0 {
		if j.err != nil {
			if len(j.pend) > 0 {
				j.out, j.pend = j.pend, nil
				break
			}
			if j.bufs != nil {
				j.bufs.out = j.obuf[:0]
				injectBufs.Put(j.bufs)
				j.bufs, j.obuf = nil, nil
			}
			return 0, j.err
		}
		if j.bufs == nil {
			j.bufs = injectBufs.Get().(*injectorBufs)
			j.obuf = j.bufs.out
		}
		n, err := j.src.Read(j.bufs.in[:])
		j.err = err
		data := j.bufs.in[:n]
		if len(j.pend) > 0 {
			data = append(j.pend, data...)
			j.pend = nil
		}
		if j.headDone && j.bodyDone && j.link == nil {
			j.out = data
			continue
		}
		j.out = j.scan(data)
	}
	n := copy(p, j.out)
	j.out = j.out[n:]
	return n, nil
}

// injectBuf is the size of an injector's reads.
const injectBuf = 16 << 10

// injectorBufs are an injector's buffers, pooled: a page's worth of
// garbage per request is what made injection slow.
type injectorBufs struct {
	in  [injectBuf]byte
	out []byte
}

var injectBufs = sync.Pool{New: func() any { return new(injectorBufs) }}

// scan returns what of data can go out now, keeping a possible partial
// tag at the end in pend.
func (j *injector) scan(data []byte) (out []byte) {
	out = j.obuf[:0]
	defer func() { j.obuf = out[:0] }()
	for {
		i := bytes.IndexByte(data, '<')
		if i < 0 {
			return append(out, data...)
		}
		rest := data[i:]
		// A tag name ends at >, space or /: </header> is not </head>.
		if len(rest) <= len("</head") && j.err == nil {
			j.pend = append(j.pend[:0], rest...)
			return append(out, data[:i]...)
		}
		if j.link != nil && isTag(rest, "<a") {
			end := bytes.IndexByte(rest, '>')
			if end < 0 && j.err == nil && len(rest) < maxTag {
				j.pend = append(j.pend[:0], rest...)
				return append(out, data[:i]...)
			}
			if end >= 0 {
				out = append(out, data[:i]...)
				out = append(out, rewriteHref(rest[:end+1], j.link)...)
				data = rest[end+1:]
				continue
			}
		}
		switch {
		case !j.headDone && isTag(rest, "</head"):
			out = append(append(out, data[:i]...), j.head...)
			j.headDone = true
			data = rest
			if len(data) > 0 {
				out = append(out, data[0])
				data = data[1:]
			}
			continue
		case !j.bodyDone && isTag(rest, "</body"):
			out = append(out, data[:i]...)
			if !j.headDone {
				out = append(out, j.head...)
				j.headDone = true
			}
			out = append(out, j.body...)
			j.bodyDone = true
			out = append(out, rest[0])
			data = rest[1:]
			continue
		}
		out = append(out, data[:i+1]...)
		data = data[i+1:]
	}
}

// maxTag bounds how much of an unfinished <a ...> tag is held back while
// waiting for its end; a longer one passes unchanged.
const maxTag = 8 << 10

var hrefRE = regexp.MustCompile(`(?is)(\shref\s*=\s*)("[^"]*"|'[^']*'|[^\s>]+)`)

// rewriteHref replaces the href of one <a ...> tag when link says so.
func rewriteHref(tag []byte, link func(string) (string, bool)) []byte {
	m := hrefRE.FindSubmatchIndex(tag)
	if m == nil {
		return tag
	}
	raw := string(tag[m[4]:m[5]])
	val := strings.Trim(raw, `"'`)
	repl, ok := link(html.UnescapeString(val))
	if !ok {
		return tag
	}
	out := append([]byte(nil), tag[:m[4]]...)
	out = append(out, '"')
	out = append(out, html.EscapeString(repl)...)
	out = append(out, '"')
	return append(out, tag[m[5]:]...)
}

// isTag reports whether b starts with the tag name (any case) followed by
// the end of the name, or by the end of the input.
func isTag(b []byte, name string) bool {
	if len(b) < len(name) || !strings.EqualFold(string(b[:len(name)]), name) {
		return false
	}
	if len(b) == len(name) {
		return true
	}
	switch b[len(name)] {
	case '>', ' ', '\t', '\n', '\r', '\f', '/':
		return true
	}
	return false
}
