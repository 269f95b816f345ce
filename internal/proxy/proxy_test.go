package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// echo is an upstream that answers with what it received.
type seen struct {
	Name, Method, Host, Path, Query string
	Header                          http.Header
	BodyLen                         int
}

func echoUpstream(t *testing.T, name string) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			hits.Add(1)
		}
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{Name: name, Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header, BodyLen: int(n)})
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// startProxy runs Ops with routes and returns it and the proxy's base URL.
func startProxy(t *testing.T, routes []config.Route, mod func(*config.Config)) (*testutil.Running, string) {
	t.Helper()
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Proxy.Listen = "127.0.0.1:0"
		c.Proxy.Routes = routes
		if mod != nil {
			mod(c)
		}
	})
	var addr string
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p := r.App.Proxy(); p != nil && len(p.Addrs()) > 0 {
			addr = p.Addrs()[0].String()
			return nil
		}
		return fmt.Errorf("proxy not listening")
	})
	return r, "http://" + addr
}

func get(t *testing.T, base, host, path string, hdr ...string) (*http.Response, seen) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := testutil.Anonymous.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s seen
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &s)
	return resp, s
}

func TestRoutingAndHeaders(t *testing.T) {
	api, _ := echoUpstream(t, "api")
	www, _ := echoUpstream(t, "www")
	wild, _ := echoUpstream(t, "wild")
	_, base := startProxy(t, []config.Route{
		{Name: "api", Hosts: config.Strings{"example.com"}, Path: "/api", Upstreams: config.Strings{api.URL}, StripPath: true},
		{Name: "www", Hosts: config.Strings{"example.com"}, Upstreams: config.Strings{www.URL}},
		{Name: "wild", Hosts: config.Strings{"*.example.org"}, Upstreams: config.Strings{wild.URL + "/base"}},
	}, nil)
	for _, c := range []struct{ host, path, want, wantPath string }{
		{"example.com", "/api/users", "api", "/users"},
		{"example.com", "/api", "api", "/"},
		{"example.com", "/apix", "www", "/apix"}, // segment-wise prefix
		{"EXAMPLE.com:8080", "/", "www", "/"},
		{"a.example.org", "/x", "wild", "/base/x"},
		{"a.b.example.org", "/x", "", ""}, // one label only
		{"example.org", "/x", "", ""},
		{"other.net", "/", "", ""},
	} {
		resp, s := get(t, base, c.host, c.path)
		if c.want == "" {
			if resp.StatusCode != 404 {
				t.Errorf("%s%s: %d, want 404", c.host, c.path, resp.StatusCode)
			}
			continue
		}
		if resp.StatusCode != 200 || s.Name != c.want || s.Path != c.wantPath {
			t.Errorf("%s%s: %d %s %s, want %s %s", c.host, c.path, resp.StatusCode, s.Name, s.Path, c.want, c.wantPath)
		}
	}
	// Proxy headers: the client is 127.0.0.1; what it claims is replaced;
	// identity headers from the client are removed; hop-by-hop headers
	// named in Connection are not forwarded.
	_, s := get(t, base, "example.com", "/page?q=1", "X-Forwarded-For", "6.6.6.6", "X-Forwarded-User", "admin",
		"Forwarded", "for=6.6.6.6", "Connection", "X-Secret-Hop", "X-Secret-Hop", "1", "Referer", "https://news.example/")
	h := s.Header
	if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Host") != "example.com" || h.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("forwarded headers: %v", h)
	}
	if h.Get("Forwarded") != "for=127.0.0.1;host=example.com;proto=http" {
		t.Errorf("Forwarded: %q", h.Get("Forwarded"))
	}
	if h.Get("X-Forwarded-User") != "" || h.Get("X-Secret-Hop") != "" {
		t.Errorf("spoofed or hop-by-hop header passed: %v", h)
	}
	if s.Host != "example.com" || s.Query != "q=1" || h.Get("Referer") != "https://news.example/" {
		t.Errorf("host %q query %q", s.Host, s.Query)
	}
}

func TestTrustedProxyKeepsChain(t *testing.T) {
	up, _ := echoUpstream(t, "up")
	_, base := startProxy(t, []config.Route{{Name: "r", Upstreams: config.Strings{up.URL}}}, func(c *config.Config) {
		c.Proxy.TrustedProxies = config.Strings{"127.0.0.1/32"}
	})
	_, s := get(t, base, "x.test", "/", "X-Forwarded-For", "198.51.100.7", "Forwarded", "for=198.51.100.7")
	if got := s.Header.Get("X-Forwarded-For"); got != "198.51.100.7, 127.0.0.1" {
		t.Fatalf("X-Forwarded-For behind a trusted proxy: %q", got)
	}
	if got := s.Header.Get("Forwarded"); got != "for=198.51.100.7, for=127.0.0.1;host=x.test;proto=http" {
		t.Fatalf("Forwarded: %q", got)
	}
}

func TestBalancingAndHealth(t *testing.T) {
	a, ah := echoUpstream(t, "a")
	var bHealthy atomic.Bool
	bHealthy.Store(true)
	var bh atomic.Int64
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if !bHealthy.Load() {
				w.WriteHeader(500)
			}
			return
		}
		bh.Add(1)
		_, _ = io.WriteString(w, `{"Name":"b"}`)
	}))
	t.Cleanup(b.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused from now on
	_, base := startProxy(t, []config.Route{
		{Name: "rr", Hosts: config.Strings{"rr.test"}, Upstreams: config.Strings{a.URL, b.URL},
			Health: config.Health{Path: "/healthz", Interval: config.Duration(50 * time.Millisecond), Timeout: config.Duration(time.Second), Fails: 1, Passes: 1}},
		{Name: "passive", Hosts: config.Strings{"passive.test"}, Upstreams: config.Strings{deadURL, a.URL},
			Passive: config.Passive{MaxFails: 1, EjectFor: config.Duration(time.Minute)}},
	}, nil)
	for i := 0; i < 10; i++ {
		get(t, base, "rr.test", "/")
	}
	if ah.Load() != 5 || bh.Load() != 5 {
		t.Fatalf("round robin: a %d b %d", ah.Load(), bh.Load())
	}
	bHealthy.Store(false)
	time.Sleep(200 * time.Millisecond) // several check intervals
	ah.Store(0)
	bh.Store(0)
	for i := 0; i < 10; i++ {
		if resp, _ := get(t, base, "rr.test", "/"); resp.StatusCode != 200 {
			t.Fatal(resp.StatusCode)
		}
	}
	if ah.Load() != 10 || bh.Load() != 0 {
		t.Fatalf("unhealthy b still used: a %d b %d", ah.Load(), bh.Load())
	}
	bHealthy.Store(true)
	testutil.CheckFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		get(t, base, "rr.test", "/")
		if bh.Load() == 0 {
			return fmt.Errorf("b not back")
		}
		return nil
	})
	// Passive: the dead upstream fails one request (502), then rests.
	codes := map[int]int{}
	for i := 0; i < 6; i++ {
		resp, _ := get(t, base, "passive.test", "/")
		codes[resp.StatusCode]++
	}
	if codes[502] != 1 || codes[200] != 5 {
		t.Fatalf("passive ejection: %v", codes)
	}
}

func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
			fmt.Fprint(w, "data: second\n\n")
		case "/big":
			w.Header().Set("Content-Type", "application/octet-stream")
			buf := make([]byte, 1<<20)
			for i := 0; i < 256; i++ { // 256 MiB
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		case "/upload":
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
		case "/ws":
			if r.Header.Get("Upgrade") != "websocket" {
				w.WriteHeader(400)
				return
			}
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_ = rw.Flush()
			_, _ = io.Copy(c, rw) // echo
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	_, base := startProxy(t, []config.Route{{Name: "s", Upstreams: config.Strings{up.URL}}}, nil)

	// SSE: the first event arrives while the upstream still holds the stream.
	resp, err := testutil.Anonymous.Get(base + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("sse: %q %v", line, err)
	}
	close(release)
	resp.Body.Close()

	// Download and upload of 256 MiB pass through without the proxy
	// holding them.
	stop := sampleHeap()
	resp, err = testutil.Anonymous.Get(base + "/big")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != 256<<20 {
		t.Fatalf("download: %d bytes", n)
	}
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 1<<20)
		for i := 0; i < 256; i++ {
			_, _ = pw.Write(buf)
		}
		_ = pw.Close()
	}()
	resp, err = testutil.Anonymous.Post(base+"/upload", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != fmt.Sprint(256<<20) {
		t.Fatalf("upload: %s", b)
	}
	if base, peak := stop(); peak > base+64<<20 {
		t.Fatalf("heap grew from %d to %d MiB while streaming 512 MiB", base>>20, peak>>20)
	}

	// WebSocket: the upgraded connection is passed through both ways.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	status, _ := br.ReadString('\n')
	if !strings.Contains(status, "101") {
		t.Fatalf("upgrade: %q", status)
	}
	for {
		l, _ := br.ReadString('\n')
		if l == "\r\n" || l == "" {
			break
		}
	}
	fmt.Fprint(conn, "ping-through-proxy")
	got := make([]byte, len("ping-through-proxy"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping-through-proxy" {
		t.Fatalf("echo: %q %v", got, err)
	}
}

// TestTrackingEvents: each request is one ev.proxy.request with secrets
// redacted and the client address anonymised.
func TestTrackingEvents(t *testing.T) {
	up, _ := echoUpstream(t, "up")
	r, base := startProxy(t, []config.Route{{Name: "site", Upstreams: config.Strings{up.URL}}}, nil)
	get(t, base, "shop.test", "/checkout?token=abc123&utm_source=news&utm_campaign=nov&x=1", "Referer", "https://www.google.com/search", "User-Agent", "TestAgent/1")
	get(t, base, "shop.test", "/_nothing", "User-Agent", "TestAgent/1")
	b := testutil.BusOf(t, r)
	var got []bus.Stored
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		var err error
		got, _, err = b.Read(t.Context(), bus.ReadOptions{Filter: "ev.proxy.request", Limit: 10})
		if err == nil && len(got) < 2 {
			return fmt.Errorf("%d events", len(got))
		}
		return err
	})
	var d map[string]any
	_ = json.Unmarshal(got[0].Event.Data, &d)
	utm, _ := d["utm"].(map[string]any)
	if d["route"] != "site" || d["method"] != "GET" || d["host"] != "shop.test" || d["path"] != "/checkout" || d["status"] != 200.0 ||
		d["ip"] != "127.0.0.0" || d["user_agent"] != "TestAgent/1" || d["referrer_host"] != "www.google.com" || utm["source"] != "news" || utm["campaign"] != "nov" {
		t.Fatalf("event: %v", d)
	}
	if q := d["query"].(string); strings.Contains(q, "abc123") || !strings.Contains(q, "token=REDACTED") {
		t.Fatalf("query not redacted: %s", q)
	}
	if d["bytes_out"].(float64) <= 0 || d["duration_ms"].(float64) <= 0 || d["upstream"] == "" {
		t.Fatalf("sizes: %v", d)
	}
	if len(got) != 2 {
		t.Fatalf("%d events for 2 requests", len(got))
	}
}

// TestOutboundLinks: links to other hosts are rewritten to signed
// /_ops/out/ redirects that record the click; same-host and relative links
// stay; a forged token redirects nowhere.
func TestOutboundLinks(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<html><body><a class="x" href="https://partner.example/deal?a=1&amp;b=2">deal</a>
<a href="/local">local</a> <A HREF='http://shop.test/same'>same</A> <abbr>x</abbr></body></html>`)
	}))
	t.Cleanup(up.Close)
	r, base := startProxy(t, []config.Route{{Name: "shop", Upstreams: config.Strings{up.URL}, Inject: config.Inject{RewriteLinks: true}}}, nil)
	c := &http.Client{Transport: testutil.Anonymous.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", base+"/products", nil)
	req.Host = "shop.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	if !strings.Contains(page, `href="/local"`) || !strings.Contains(page, `HREF='http://shop.test/same'`) || strings.Contains(page, "partner.example") {
		t.Fatalf("rewritten page: %s", page)
	}
	i := strings.Index(page, `href="/_ops/out/`)
	if i < 0 {
		t.Fatalf("no outbound link: %s", page)
	}
	link := page[i+6 : i+6+strings.Index(page[i+6:], `"`)]
	req, _ = http.NewRequest("GET", base+link, nil)
	req.Host = "shop.test"
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://partner.example/deal?a=1&b=2" {
		t.Fatalf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ = http.NewRequest("GET", base+link[:len(link)-3]+"AAA", nil)
	if resp, err = c.Do(req); err != nil || resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Fatalf("forged token: %v %v", resp, err)
	}
	b2 := testutil.BusOf(t, r)
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		got, _, err := b2.Read(t.Context(), bus.ReadOptions{Filter: "ev.proxy.outbound", Limit: 10})
		if err != nil || len(got) != 1 {
			return fmt.Errorf("%d outbound events %v", len(got), err)
		}
		var d map[string]any
		_ = json.Unmarshal(got[0].Event.Data, &d)
		if d["target_host"] != "partner.example" || d["from"] != "/products" {
			return fmt.Errorf("event %v", d)
		}
		return nil
	})
}
