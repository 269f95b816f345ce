package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// origin answers each path with the headers the test sets for it and
// counts the requests that reach it.
type origin struct {
	mu      sync.Mutex
	headers map[string]http.Header
	bodies  map[string]string
	status  map[string]int
	hits    map[string]int
	cond    map[string]int // conditional requests answered 304
	delay   time.Duration
}

func newOrigin(t *testing.T) (*origin, *httptest.Server) {
	o := &origin{headers: map[string]http.Header{}, bodies: map[string]string{}, status: map[string]int{}, hits: map[string]int{}, cond: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits[r.URL.Path]++
		n := o.hits[r.URL.Path]
		h, body, code, delay := o.headers[r.URL.Path], o.bodies[r.URL.Path], o.status[r.URL.Path], o.delay
		o.mu.Unlock()
		time.Sleep(delay)
		for k, v := range h {
			w.Header()[k] = v
		}
		if et := h.Get("ETag"); et != "" && r.Header.Get("If-None-Match") == et {
			o.mu.Lock()
			o.cond[r.URL.Path]++
			o.mu.Unlock()
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if code == 0 {
			code = 200
		}
		if body == "" {
			body = fmt.Sprintf("%s #%d lang=%s", r.URL.Path, n, r.Header.Get("Accept-Language"))
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return o, srv
}

func (o *origin) set(path string, code int, kv ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	o.headers[path], o.status[path] = h, code
}

func (o *origin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

func fetch(t *testing.T, base, path string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Host = "cache.test"
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := testutil.Anonymous.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), resp.Header
}

// TestCacheRFC9111 is the behaviour table: what is stored, when it is
// served, revalidated or passed by.
func TestCacheRFC9111(t *testing.T) {
	o, up := newOrigin(t)
	r, base := startProxy(t, []config.Route{{Name: "c", Upstreams: config.Strings{up.URL}, Cache: true, Compress: "off"}}, nil)
	o.set("/fresh", 200, "Cache-Control", "max-age=60")
	o.set("/smax", 200, "Cache-Control", "max-age=0, s-maxage=60")
	o.set("/nostore", 200, "Cache-Control", "no-store")
	o.set("/private", 200, "Cache-Control", "private, max-age=60")
	o.set("/nocache", 200, "Cache-Control", "no-cache", "ETag", `"nc1"`)
	o.set("/short", 200, "Cache-Control", "max-age=1", "ETag", `"s1"`)
	o.set("/expires", 200, "Expires", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), "Date", time.Now().UTC().Format(http.TimeFormat))
	o.set("/vary", 200, "Cache-Control", "max-age=60", "Vary", "Accept-Language")
	o.set("/cookie", 200, "Cache-Control", "max-age=60", "Set-Cookie", "s=1")
	o.set("/heuristic", 200, "Last-Modified", time.Now().Add(-100*time.Hour).UTC().Format(http.TimeFormat))
	o.set("/plain", 200)
	o.set("/swr", 200, "Cache-Control", "max-age=1, stale-while-revalidate=30")
	o.set("/sie", 200, "Cache-Control", "max-age=1, stale-if-error=60")
	o.set("/mustrev", 200, "Cache-Control", "max-age=1, must-revalidate, stale-if-error=60")

	twice := func(path string, hdr ...string) (string, string, http.Header) {
		_, a, _ := fetch(t, base, path, hdr...)
		_, b, h := fetch(t, base, path, hdr...)
		return a, b, h
	}
	for _, c := range []struct {
		path     string
		upstream int // requests that reached the origin after two fetches
	}{
		{"/fresh", 1}, {"/smax", 1}, {"/nostore", 2}, {"/private", 2}, {"/expires", 1}, {"/cookie", 2},
		{"/heuristic", 1}, {"/plain", 2},
	} {
		a, b, h := twice(c.path)
		if got := o.count(c.path); got != c.upstream {
			t.Errorf("%s: origin saw %d requests, want %d (%q, %q, Cache-Status %q)", c.path, got, c.upstream, a, b, h.Get("Cache-Status"))
		}
		if c.upstream == 1 && (a != b || h.Get("Cache-Status") != "ops; hit" || h.Get("Age") == "") {
			t.Errorf("%s: second answer not a hit: %q %q %v", c.path, a, b, h)
		}
	}
	// no-cache: stored, but every use is revalidated (304 from the origin).
	_, a, _ := twice("/nocache")
	_, _, h := fetch(t, base, "/nocache")
	if o.count("/nocache") != 3 || o.cond["/nocache"] != 2 || h.Get("Cache-Status") != "ops; fwd=stale; fwd-status=304" || !strings.HasPrefix(a, "/nocache #1") {
		t.Errorf("no-cache: origin %d, 304s %d, %q %q", o.count("/nocache"), o.cond["/nocache"], h.Get("Cache-Status"), a)
	}
	// Vary: one entry per Accept-Language.
	_, en, _ := fetch(t, base, "/vary", "Accept-Language", "en")
	_, de, _ := fetch(t, base, "/vary", "Accept-Language", "de")
	_, en2, hv := fetch(t, base, "/vary", "Accept-Language", "en")
	if o.count("/vary") != 2 || en != en2 || en == de || hv.Get("Cache-Status") != "ops; hit" {
		t.Errorf("vary: origin %d, %q %q %q", o.count("/vary"), en, de, en2)
	}
	// The hits so far are counted for the UI's hit ratio.
	resp, err := http.Get(r.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`ops_proxy_cache_lookups_total\{result="hit",route="c"\} [1-9]`).Match(mb) ||
		!regexp.MustCompile(`ops_proxy_cache_lookups_total\{result="miss",route="c"\} [1-9]`).Match(mb) {
		t.Errorf("cache lookups not counted:\n%s", regexp.MustCompile(`(?m)^ops_proxy_cache_lookups.*$`).FindAll(mb, -1))
	}
	// The request's own no-cache revalidates; no-store passes by.
	fetch(t, base, "/fresh", "Cache-Control", "no-cache")
	if o.count("/fresh") != 2 {
		t.Errorf("request no-cache: origin %d", o.count("/fresh"))
	}
	_, _, h = fetch(t, base, "/fresh", "Cache-Control", "no-store")
	if o.count("/fresh") != 3 || h.Get("Cache-Status") != "ops; fwd=bypass" {
		t.Errorf("request no-store: origin %d %q", o.count("/fresh"), h.Get("Cache-Status"))
	}
	// A client's conditional request on a hit gets 304 from the cache.
	o.set("/etag", 200, "Cache-Control", "max-age=60", "ETag", `"e1"`)
	fetch(t, base, "/etag")
	if code, _, _ := fetch(t, base, "/etag", "If-None-Match", `"e1"`); code != 304 || o.count("/etag") != 1 {
		t.Errorf("conditional hit: %d, origin %d", code, o.count("/etag"))
	}
	// Stale: revalidated with ETag once max-age passes.
	fetch(t, base, "/short")
	fetch(t, base, "/swr")
	fetch(t, base, "/sie")
	fetch(t, base, "/mustrev")
	time.Sleep(2100 * time.Millisecond)
	_, body, h := fetch(t, base, "/short")
	if o.cond["/short"] != 1 || h.Get("Cache-Status") != "ops; fwd=stale; fwd-status=304" || !strings.HasPrefix(body, "/short #1") {
		t.Errorf("stale revalidation: 304s %d %q %q", o.cond["/short"], h.Get("Cache-Status"), body)
	}
	// stale-while-revalidate: the stale copy at once, a refresh behind.
	_, body, h = fetch(t, base, "/swr")
	if h.Get("Cache-Status") != "ops; hit; detail=stale-while-revalidate" || !strings.HasPrefix(body, "/swr #1") {
		t.Errorf("swr: %q %q", h.Get("Cache-Status"), body)
	}
	testutil.CheckFor(t, 3*time.Second, 20*time.Millisecond, func() error {
		if o.count("/swr") != 2 {
			return fmt.Errorf("no background refresh")
		}
		return nil
	})
	// stale-if-error: the origin fails, the stale copy is served; not with
	// must-revalidate.
	o.set("/sie", 503)
	o.set("/mustrev", 503)
	code, body, h := fetch(t, base, "/sie")
	if code != 200 || h.Get("Cache-Status") != "ops; hit; detail=stale-if-error" || !strings.HasPrefix(body, "/sie #1") {
		t.Errorf("stale-if-error: %d %q %q", code, h.Get("Cache-Status"), body)
	}
	if code, _, _ := fetch(t, base, "/mustrev"); code != 503 {
		t.Errorf("must-revalidate served stale on error: %d", code)
	}
	// An unsafe method invalidates; purge by URL and by prefix.
	req, _ := http.NewRequest("POST", base+"/fresh", strings.NewReader("x"))
	req.Host = "cache.test"
	if resp, err := testutil.Anonymous.Do(req); err == nil {
		resp.Body.Close()
	}
	n := o.count("/fresh")
	fetch(t, base, "/fresh")
	if o.count("/fresh") != n+1 {
		t.Errorf("POST did not invalidate: %d -> %d", n, o.count("/fresh"))
	}
	purge := func(body string) int {
		resp, err := http.Post(r.URL+"/api/v1/proxy/purge", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Purged int }
		_ = jsonDecode(resp.Body, &out)
		if resp.StatusCode != 200 {
			return -resp.StatusCode
		}
		return out.Purged
	}
	if got := purge(`{"url":"http://cache.test/etag"}`); got != 1 {
		t.Errorf("purge url: %d", got)
	}
	if got := purge(`{"prefix":"http://cache.test/"}`); got < 5 {
		t.Errorf("purge prefix: %d", got)
	}
	if got := purge(`{"url":"cache.test/x"}`); got != -400 {
		t.Errorf("bad purge: %d", got)
	}
	fetch(t, base, "/expires")
	if o.count("/expires") != 2 {
		t.Errorf("after purge: origin %d", o.count("/expires"))
	}
}

// TestCacheCollapsingAndDedup: concurrent misses make one upstream request;
// one body under many URLs is one file; the cache survives a restart.
func TestCacheCollapsingAndDedup(t *testing.T) {
	o, up := newOrigin(t)
	o.delay = 200 * time.Millisecond
	img := strings.Repeat("PNG", 50000)
	for i := 0; i < 5; i++ {
		p := fmt.Sprintf("/img/%d.png", i)
		o.set(p, 200, "Cache-Control", "public, max-age=600", "Content-Type", "image/png")
		o.bodies[p] = img
	}
	o.set("/hot", 200, "Cache-Control", "max-age=600")
	dataDir := t.TempDir()
	routes := []config.Route{{Name: "c", Upstreams: config.Strings{up.URL}, Cache: true}}
	r, base := startProxy(t, routes, func(c *config.Config) { c.DataDir = dataDir })
	var wg sync.WaitGroup
	var same atomic.Int32
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, body, _ := fetch(t, base, "/hot"); body == "/hot #1 lang=" {
				same.Add(1)
			}
		}()
	}
	wg.Wait()
	if o.count("/hot") != 1 || same.Load() != 20 {
		t.Fatalf("collapsing: origin saw %d, %d clients got the first answer", o.count("/hot"), same.Load())
	}
	for i := 0; i < 5; i++ {
		if _, body, _ := fetch(t, base, fmt.Sprintf("/img/%d.png", i)); body != img {
			t.Fatalf("image %d", i)
		}
	}
	var files int
	_ = filepath.Walk(filepath.Join(dataDir, "proxy-cache", "bodies"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files++
		}
		return nil
	})
	if files != 2 { // the image once, /hot once
		t.Fatalf("%d body files for 2 distinct bodies", files)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	_, base = startProxy(t, routes, func(c *config.Config) { c.DataDir = dataDir })
	if _, body, h := fetch(t, base, "/img/3.png"); body != img || h.Get("Cache-Status") != "ops; hit" || o.count("/img/3.png") != 1 {
		t.Fatalf("after restart: %q, origin %d", h.Get("Cache-Status"), o.count("/img/3.png"))
	}
}
