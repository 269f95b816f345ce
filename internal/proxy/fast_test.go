package proxy_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// fastUpstream answers the fast-path tests: /echo tells what it saw;
// the others give each framing and status a response can have.
func fastUpstream(t *testing.T, release chan struct{}) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "one,")
			w.(http.Flusher).Flush()
			fmt.Fprint(w, "two")
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
			fmt.Fprint(w, "data: second\n\n")
		case "/untilclose": // an HTTP/1.0-style body that ends when the connection does
			c, rw, _ := http.NewResponseController(w).Hijack()
			fmt.Fprint(rw, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nbody until close")
			_ = rw.Flush()
			c.Close()
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case "/early":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<p>after hints</p>")
		case "/slow":
			time.Sleep(1500 * time.Millisecond)
			fmt.Fprint(w, "late")
		case "/notransform":
			w.Header().Set("Cache-Control", "no-transform")
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, strings.Repeat("x", 2000))
		case "/page", "/pagegz", "/pagechunked":
			page := "<!doctype html><html><head><title>t</title></head><body>" + strings.Repeat("<p>text</p>", 500) + "</body></html>"
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("ETag", `"p1"`)
			w.Header().Set("Content-Security-Policy", "script-src 'nonce-abc123'")
			switch r.URL.Path {
			case "/pagegz":
				var b bytes.Buffer
				zw := gzip.NewWriter(&b)
				_, _ = zw.Write([]byte(page))
				_ = zw.Close()
				w.Header().Set("Content-Encoding", "gzip")
				w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
				_, _ = w.Write(b.Bytes())
			case "/pagechunked":
				fmt.Fprint(w, page[:100])
				w.(http.Flusher).Flush()
				fmt.Fprint(w, page[100:])
			default:
				w.Header().Set("Content-Length", strconv.Itoa(len(page)))
				fmt.Fprint(w, page)
			}
		case "/hop":
			w.Header().Set("Connection", "X-Hop")
			w.Header().Set("X-Hop", "secret")
			w.Header().Set("Keep-Alive", "timeout=5")
			fmt.Fprint(w, "hop")
		default:
			b, _ := io.ReadAll(r.Body)
			keys := make([]string, 0, len(r.Header))
			for k := range r.Header {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Upstream", "yes")
			_ = json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "uri": r.RequestURI, "host": r.Host,
				"header": r.Header, "keys": keys, "body": string(b), "proto": r.Proto})
		}
	}))
	t.Cleanup(up.Close)
	return up
}

type answer struct {
	code   int
	header http.Header
	body   string
}

// TestFastPathMatchesStandard sends the same requests through a proxy
// with the fast path and one without, and wants the same answers, and the
// upstream to see the same requests.
func TestFastPathMatchesStandard(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	up := fastUpstream(t, release)
	routes := []config.Route{
		{Name: "api", Path: "/api", Upstreams: config.Strings{up.URL + "/base"}, StripPath: true},
		{Name: "slow", Path: "/slow", Upstreams: config.Strings{up.URL}, Timeout: config.Duration(300 * time.Millisecond)},
		{Name: "inj", Path: "/inj", Upstreams: config.Strings{up.URL}, StripPath: true,
			Inject: config.Inject{Tracker: true, WriteKey: "wk_1", Head: "<script>var x=1</script>", Body: "<!-- end -->", CSPNonce: true}},
		{Name: "site", Upstreams: config.Strings{up.URL}},
	}
	fast, fastBase := startProxy(t, routes, nil)
	_, stdBase := startProxy(t, routes, func(c *config.Config) { c.Proxy.FastPath = false })
	// Without DisableCompression Go's client asks for gzip, and a route
	// that compresses sends such requests the standard way.
	// A connection a request each, so that each hand-off is counted.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, DisableKeepAlives: true}}
	do := func(base, method, path, body string, hdr ...string) answer {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Host = "site.test"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var rd2 io.Reader = resp.Body
		switch enc := resp.Header.Get("Content-Encoding"); enc {
		case "gzip":
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatalf("%s %s: gzip: %v", method, path, err)
			}
			rd2 = zr
		case "br":
			rd2 = brotli.NewReader(resp.Body)
		case "zstd":
			zr, err := zstd.NewReader(resp.Body)
			if err != nil {
				t.Fatalf("%s %s: zstd: %v", method, path, err)
			}
			defer zr.Close()
			rd2 = zr
		}
		b, err := io.ReadAll(rd2)
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		return answer{resp.StatusCode, resp.Header, string(b)}
	}
	for _, c := range []struct {
		method, path, body string
		hdr                []string
	}{
		{"GET", "/echo?x=1&y=two", "", []string{"User-Agent", "ua/1", "Referer", "https://ref.example/"}},
		{"GET", "/echo", "", []string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-User", "root", "Forwarded", "for=6.6.6.6", "X-Forwarded-Host", "evil", "Proxy-Authorization", "Basic x"}},
		{"POST", "/echo", "a=1&b=2", []string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"PUT", "/echo", "", []string{"Content-Length", "0"}},
		{"DELETE", "/echo/item/7", "", nil},
		{"HEAD", "/echo", "", nil},
		{"OPTIONS", "/echo", "", nil},
		{"GET", "/api/echo/deep?q=1", "", nil}, // strip_path and an upstream base path
		{"GET", "/chunked", "", nil},
		{"GET", "/untilclose", "", nil},
		{"GET", "/nocontent", "", nil},
		{"GET", "/notmodified", "", []string{"If-None-Match", `"v1"`}},
		{"GET", "/early", "", nil},
		{"GET", "/notransform", "", nil},
		{"GET", "/hop", "", nil},
		{"GET", "/slow", "", nil},            // route timeout: 504
		{"GET", "/inj/page", "", nil},        // snippets injected
		{"GET", "/inj/pagegz", "", nil},      // decoded, injected
		{"GET", "/inj/pagechunked", "", nil}, // from a chunked body
		{"HEAD", "/inj/page", "", nil},
		{"GET", "/inj/page", "", []string{"Accept-Encoding", "gzip, deflate"}},        // injected and compressed
		{"GET", "/inj/pagegz", "", []string{"Accept-Encoding", "br;q=1, gzip;q=0.5"}}, // decoded, injected, re-encoded
		{"GET", "/inj/pagechunked", "", []string{"Accept-Encoding", "zstd"}},
		{"GET", "/chunked", "", []string{"Accept-Encoding", "gzip"}},     // length unknown: compressed
		{"GET", "/echo", "", []string{"Accept-Encoding", "gzip"}},        // under 1 KiB: not
		{"GET", "/notransform", "", []string{"Accept-Encoding", "gzip"}}, // no-transform: not
		{"GET", "/untilclose", "", []string{"Accept-Encoding", "br"}},
		{"GET", "/inj/echo", "", nil},    // not HTML: untouched
		{"GET", "/_ops/ops.js", "", nil}, // Ops's own endpoints
		{"GET", "/%7Euser", "", nil},     // percent-encoded: the standard path decides
	} {
		f := do(fastBase, c.method, c.path, c.body, c.hdr...)
		s := do(stdBase, c.method, c.path, c.body, c.hdr...)
		name := c.method + " " + c.path
		if f.code != s.code {
			t.Errorf("%s: status fast %d, standard %d", name, f.code, s.code)
		}
		for _, h := range []string{"Content-Type", "Content-Length", "Content-Encoding", "Vary", "Etag", "X-Upstream", "Cache-Control", "Link", "Keep-Alive", "X-Hop"} {
			if f.header.Get(h) != s.header.Get(h) {
				t.Errorf("%s: %s fast %q, standard %q", name, h, f.header.Get(h), s.header.Get(h))
			}
		}
		if f.header.Get("Date") == "" {
			t.Errorf("%s: no Date", name)
		}
		if ae := f.header.Get("Content-Encoding"); ae == "" && len(c.hdr) == 2 && c.hdr[0] == "Accept-Encoding" &&
			(strings.HasPrefix(c.path, "/inj/page") || c.path == "/chunked" || c.path == "/untilclose") {
			t.Errorf("%s: not compressed", name)
		}
		if strings.HasPrefix(c.path, "/inj/page") && c.method == "GET" &&
			(!strings.Contains(f.body, `<script defer src="/_ops/ops.js" data-api="/_ops" data-key="wk_1" nonce="abc123"></script><script nonce="abc123">var x=1</script></head>`) ||
				!strings.HasSuffix(f.body, "<!-- end --></body></html>")) {
			t.Errorf("%s: not injected: %.300q", name, f.body)
		}
		if strings.HasPrefix(c.path, "/echo") || strings.HasPrefix(c.path, "/api") || strings.HasPrefix(c.path, "/inj/echo") {
			if c.method == "HEAD" {
				continue
			}
			var fs, ss map[string]any
			if json.Unmarshal([]byte(f.body), &fs) != nil || json.Unmarshal([]byte(s.body), &ss) != nil {
				t.Fatalf("%s: bodies %q / %q", name, f.body, s.body)
			}
			fh, sh := fs["header"].(map[string]any), ss["header"].(map[string]any)
			delete(fs, "header")
			delete(ss, "header")
			if fmt.Sprint(fs) != fmt.Sprint(ss) {
				t.Errorf("%s: upstream saw\n fast     %v\n standard %v", name, fs, ss)
			}
			for k, v := range sh {
				if k == "Forwarded" { // names the client's port, which differs
					v = strings.Split(fmt.Sprint(v), ";")[1:]
				}
				w := fh[k]
				if k == "Forwarded" {
					w = strings.Split(fmt.Sprint(w), ";")[1:]
				}
				if fmt.Sprint(v) != fmt.Sprint(w) {
					t.Errorf("%s: upstream header %s: fast %v, standard %v", name, k, w, v)
				}
			}
			if fh["X-Forwarded-User"] != nil || fh["Proxy-Authorization"] != nil {
				t.Errorf("%s: spoofable header passed on: %v", name, fh)
			}
		} else if f.body != s.body {
			t.Errorf("%s: body fast %q, standard %q", name, f.body, s.body)
		}
	}
	if n := fast.App.Proxy().Handoffs(); n != 2 {
		t.Errorf("fast path handed off %d connections, want 2 (/_ops/ and the encoded path)", n)
	}
}

// rawExchange writes req on a fresh connection and reads until the proxy
// closes it or wait passes.
func rawExchange(t *testing.T, base, req string, wait time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

func statusLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSuffix(l, "\r")
		if strings.HasPrefix(l, "HTTP/1.") {
			out = append(out, l)
		}
	}
	return out
}

// TestFastPathWire covers what a client library would hide: pipelining,
// Connection: close, request framing the fast path leaves to net/http
// (and that net/http answers the same), and malformed input.
func TestFastPathWire(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	up := fastUpstream(t, release)
	routes := []config.Route{{Name: "site", Upstreams: config.Strings{up.URL}}}
	fast, fastBase := startProxy(t, routes, nil)
	_, stdBase := startProxy(t, routes, func(c *config.Config) { c.Proxy.FastPath = false })

	for _, c := range []struct {
		name, req string
		want      []string // status lines, in order
	}{
		{"pipelined", "GET /echo?1 HTTP/1.1\r\nHost: a\r\n\r\nGET /chunked HTTP/1.1\r\nHost: a\r\n\r\nGET /echo?3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"}},
		{"chunked request body", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []string{"HTTP/1.1 200 OK"}},
		{"expect", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhi", []string{"HTTP/1.1 100 Continue", "HTTP/1.1 200 OK"}},
		{"http/1.0", "GET /echo HTTP/1.0\r\nHost: a\r\n\r\n", []string{"HTTP/1.0 200 OK"}},
		{"no host", "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n", []string{"HTTP/1.1 400 Bad Request: missing required Host header"}},
		{"two lengths", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", []string{"HTTP/1.1 400 Bad Request"}},
		{"bad field name", "GET /echo HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", []string{"HTTP/1.1 400 Bad Request: invalid header name"}},
		{"bare LF", "GET /echo HTTP/1.1\nHost: a\nConnection: close\n\n", []string{"HTTP/1.1 200 OK"}},
		{"huge head", "GET /echo HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 20000) + "\r\nConnection: close\r\n\r\n", []string{"HTTP/1.1 200 OK"}},
	} {
		f := statusLines(rawExchange(t, fastBase, c.req, 3*time.Second))
		s := statusLines(rawExchange(t, stdBase, c.req, 3*time.Second))
		if fmt.Sprint(f) != fmt.Sprint(s) || fmt.Sprint(f) != fmt.Sprint(c.want) {
			t.Errorf("%s: fast %q, standard %q, want %q", c.name, f, s, c.want)
		}
	}

	// A request handed off after one served on the same connection: the
	// standard server gets that request, not the earlier one again.
	out0 := rawExchange(t, fastBase, "GET /echo?first HTTP/1.1\r\nHost: a\r\n\r\nGET /echo?second HTTP/1.1\nHost: a\nConnection: close\n\n", 3*time.Second)
	if len(statusLines(out0)) != 2 || strings.Count(out0, "/echo?first") != 1 || strings.Count(out0, "/echo?second") != 1 {
		t.Errorf("served then handed off: %q", out0)
	}

	// A client that asks to close gets Connection: close and a closed
	// connection; one that does not keeps it for the next request.
	out := rawExchange(t, fastBase, "GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 3*time.Second)
	if !strings.Contains(out, "\r\nConnection: close\r\n") {
		t.Errorf("no Connection: close in %q", out)
	}
	start := time.Now()
	out = rawExchange(t, fastBase, "GET /echo HTTP/1.1\r\nHost: a\r\n\r\n", 500*time.Millisecond)
	if len(statusLines(out)) != 1 || time.Since(start) < 400*time.Millisecond {
		t.Errorf("keep-alive: %q after %v", out, time.Since(start))
	}

	// SSE: the first event reaches the client while the upstream still
	// holds the stream (the fast path sends before it waits).
	c, err := net.Dial("tcp", strings.TrimPrefix(fastBase, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "GET /sse HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	var got []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("sse: %v after %q", err, got)
		}
		got = append(got, l)
		if strings.Contains(l, "data: first") {
			break
		}
	}
	// Handed off: the chunked body, expect, 1.0, no host, two lengths, the
	// bad name, bare LF, the huge head and the second request above.
	if fast.App.Proxy().Handoffs() != 9 {
		t.Errorf("handoffs %d, want 9", fast.App.Proxy().Handoffs())
	}
}

// TestFastPathUpstreamDown: a refused connection is a 502 with the
// standard path's page, and the upstream counts a failure.
func TestFastPathUpstreamDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, base := startProxy(t, []config.Route{{Name: "down", Upstreams: config.Strings{"http://" + addr}}}, nil)
	out := rawExchange(t, base, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 502 Bad Gateway\r\n") || !strings.Contains(out, "The upstream server did not answer properly.") {
		t.Errorf("upstream down: %q", out)
	}
	_ = testutil.Anonymous
}
