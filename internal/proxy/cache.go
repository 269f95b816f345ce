package proxy

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// cacheRT is a route's transport with the shared cache in front of the
// upstream. It sits below the reverse proxy, so it stores what the
// upstream sent (before injection and compression, which are applied per
// client on the way out).
type cacheRT struct {
	next  http.RoundTripper
	store *cacheStore
}

// collapseWait bounds how long a request waits for a concurrent miss of
// the same URL before going upstream itself.
const collapseWait = 10 * time.Second

func (c *cacheRT) RoundTrip(req *http.Request) (*http.Response, error) {
	p, _ := req.Context().Value(passKey{}).(*pass)
	if p == nil || p.cacheKey == "" {
		return c.next.RoundTrip(req)
	}
	key := p.cacheKey
	switch req.Method {
	case http.MethodGet, http.MethodHead:
	default:
		// RFC 9111 4.4: an unsafe method that succeeds invalidates the URL.
		resp, err := c.next.RoundTrip(req)
		if err == nil && resp.StatusCode < 400 {
			c.store.purge(key, false)
		}
		p.cache = "bypass"
		return resp, err
	}
	if _, ok := directives(req.Header)["no-store"]; ok {
		p.cache = "bypass"
		return c.next.RoundTrip(req)
	}
	for attempt := 0; ; attempt++ {
		if e := c.store.lookup(key, req); e != nil {
			return c.fromStore(req, p, e)
		}
		if req.Method == http.MethodHead || conditional(req) {
			p.cache = "miss"
			return c.next.RoundTrip(req)
		}
		f, leader := c.store.join(key)
		if leader {
			return c.fetch(req, p, key, f)
		}
		if attempt > 0 {
			p.cache = "miss"
			return c.next.RoundTrip(req)
		}
		select {
		case <-f.done: // look again: the leader may have stored it
		case <-time.After(collapseWait):
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		p.collapsed = true
	}
}

func conditional(req *http.Request) bool {
	return req.Header.Get("If-None-Match") != "" || req.Header.Get("If-Modified-Since") != ""
}

// fetch is a miss: ask the upstream and store the answer while it streams.
func (c *cacheRT) fetch(req *http.Request, p *pass, key string, f *flight) (*http.Response, error) {
	requested := time.Now()
	resp, err := c.next.RoundTrip(req)
	p.cache = "miss"
	if err != nil {
		c.store.land(key, f)
		return nil, err
	}
	arrived := time.Now()
	if !storable(req, resp, p.id != nil) || resp.ContentLength > c.store.objMax {
		c.store.land(key, f)
		return resp, nil
	}
	c.wrapStore(req, resp, key, requested, arrived, func() { c.store.land(key, f) })
	return resp, nil
}

// wrapStore tees resp's body into the store; done runs when the body ends.
func (c *cacheRT) wrapStore(req *http.Request, resp *http.Response, key string, requested, arrived time.Time, done func()) {
	e := &centry{Key: key, Vary: varyValues(req, resp.Header), Status: resp.StatusCode, Header: resp.Header.Clone(),
		Stored: arrived, InitAge: initialAge(resp.Header, requested, arrived)}
	e.Lifetime = freshness(resp.Header, responseDate(resp.Header, arrived))
	for _, h := range []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Te", "Trailer", "Upgrade", "Proxy-Authenticate"} {
		e.Header.Del(h)
	}
	w := c.store.newWriter(e)
	if w == nil {
		done()
		return
	}
	resp.Body = &teeBody{rc: resp.Body, w: w, want: resp.ContentLength, done: done}
}

// teeBody copies what the client reads into the cache and commits when the
// whole body was read.
type teeBody struct {
	rc       io.ReadCloser
	w        *cacheWriter
	want     int64
	n        int64
	finished bool
	done     func()
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if n > 0 {
		t.n += int64(n)
		_, _ = t.w.Write(p[:n])
	}
	if err == io.EOF && !t.finished {
		t.finished = true
		t.w.commit(t.want < 0 || t.n == t.want)
		t.done()
	}
	return n, err
}

func (t *teeBody) Close() error {
	if !t.finished {
		t.finished = true
		t.w.commit(false)
		t.done()
	}
	return t.rc.Close()
}

// fromStore answers from a stored entry: fresh, stale while revalidating,
// or after a conditional request to the upstream.
func (c *cacheRT) fromStore(req *http.Request, p *pass, e *centry) (*http.Response, error) {
	now := time.Now()
	age := e.age(now)
	switch judge(req, e.Header, age, e.Lifetime) {
	case serveFresh:
		p.cache = "hit"
		return c.respond(req, p, e, age)
	case serveStale:
		p.cache = "stale"
		// Open the stored body before the refresh can replace the entry
		// (and remove the body).
		resp, err := c.respond(req, p, e, age)
		c.revalidateBehind(req, p.cacheKey, e, p.id != nil)
		return resp, err
	}
	// Revalidate: ask with the stored validators.
	creq := req.Clone(req.Context())
	creq.Header.Del("If-None-Match")
	creq.Header.Del("If-Modified-Since")
	if et := e.Header.Get("ETag"); et != "" {
		creq.Header.Set("If-None-Match", et)
	}
	if lm := e.Header.Get("Last-Modified"); lm != "" {
		creq.Header.Set("If-Modified-Since", lm)
	}
	requested := time.Now()
	resp, err := c.next.RoundTrip(creq)
	if err != nil || resp.StatusCode >= 500 {
		if staleIfError(req, e.Header, age, e.Lifetime) {
			if resp != nil {
				resp.Body.Close()
			}
			p.cache = "stale-if-error"
			return c.respond(req, p, e, age)
		}
		p.cache = "miss"
		return resp, err
	}
	arrived := time.Now()
	if resp.StatusCode == http.StatusNotModified {
		resp.Body.Close()
		n := c.store.refresh(e, resp, requested, arrived)
		p.cache = "revalidated"
		return c.respond(req, p, n, n.age(time.Now()))
	}
	p.cache = "expired"
	if storable(req, resp, p.id != nil) && resp.ContentLength <= c.store.objMax {
		c.wrapStore(req, resp, p.cacheKey, requested, arrived, func() {})
	}
	return resp, nil
}

// revalidateBehind refreshes e in the background (stale-while-revalidate),
// once per URL at a time.
func (c *cacheRT) revalidateBehind(req *http.Request, key string, e *centry, authed bool) {
	f, leader := c.store.join(key)
	if !leader {
		return
	}
	creq := req.Clone(context.WithoutCancel(req.Context()))
	creq.Header.Set("Cache-Control", "no-cache")
	go func() {
		defer c.store.land(key, f)
		ctx, cancel := context.WithTimeout(creq.Context(), time.Minute)
		defer cancel()
		creq = creq.WithContext(ctx)
		if et := e.Header.Get("ETag"); et != "" {
			creq.Header.Set("If-None-Match", et)
		}
		requested := time.Now()
		resp, err := c.next.RoundTrip(creq)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		arrived := time.Now()
		switch {
		case resp.StatusCode == http.StatusNotModified:
			c.store.refresh(e, resp, requested, arrived)
		case storable(creq, resp, authed):
			c.wrapStore(creq, resp, key, requested, arrived, func() {})
			_, _ = io.Copy(io.Discard, resp.Body)
		}
	}()
}

// respond builds the response for a stored entry, answering the client's
// own conditional request with 304 when it matches.
func (c *cacheRT) respond(req *http.Request, p *pass, e *centry, age time.Duration) (*http.Response, error) {
	h := e.Header.Clone()
	h.Set("Age", strconv.FormatInt(int64(age/time.Second), 10))
	resp := &http.Response{StatusCode: e.Status, Status: strconv.Itoa(e.Status) + " " + http.StatusText(e.Status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Request: req, ContentLength: e.Size}
	if notModified(req, e.Header) {
		resp.StatusCode, resp.Status = http.StatusNotModified, "304 Not Modified"
		for _, k := range []string{"Content-Length", "Content-Encoding", "Content-Type"} {
			resp.Header.Del(k)
		}
		resp.ContentLength, resp.Body = 0, http.NoBody
		return resp, nil
	}
	if req.Method == http.MethodHead {
		resp.Body = http.NoBody
		return resp, nil
	}
	body, err := c.store.body(e)
	if err != nil {
		// The entry was replaced (and its body removed) since it was
		// looked up: this answer comes from the upstream.
		p.cache = "miss"
		return c.next.RoundTrip(req)
	}
	resp.Body = body
	return resp, nil
}

// notModified evaluates If-None-Match (weak comparison) and
// If-Modified-Since against a stored response (RFC 9110 13.1).
func notModified(req *http.Request, h http.Header) bool {
	if inm := req.Header.Get("If-None-Match"); inm != "" {
		et := strings.TrimPrefix(h.Get("ETag"), "W/")
		if et == "" {
			return false
		}
		for _, c := range strings.Split(inm, ",") {
			c = strings.TrimPrefix(strings.TrimSpace(c), "W/")
			if c == "*" || c == et {
				return true
			}
		}
		return false
	}
	if ims := req.Header.Get("If-Modified-Since"); ims != "" {
		t, err1 := http.ParseTime(ims)
		lm, err2 := http.ParseTime(h.Get("Last-Modified"))
		return err1 == nil && err2 == nil && !lm.After(t)
	}
	return false
}
