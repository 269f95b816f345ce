package ui_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"

	"github.com/opsgraph/ops/internal/testutil"
	"github.com/opsgraph/ops/web"
)

func fetch(t *testing.T, c *http.Client, method, u string, hdr map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestAssets: the stored encodings go out with their own strong ETags, a
// matching If-None-Match gets 304, refused codings (q=0) are not sent.
func TestAssets(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	a := web.Get("app.js")
	u := r.URL + "/ui/assets/app.js?v=" + a.Hash
	c := testutil.Anonymous
	for _, tc := range []struct {
		accept, enc, etag string
	}{
		{"gzip, deflate, br", "br", `"` + a.Hash + `-br"`},
		{"gzip", "gzip", `"` + a.Hash + `-gz"`},
		{"br;q=0, gzip;q=0.5", "gzip", `"` + a.Hash + `-gz"`},
		{"identity", "", `"` + a.Hash + `"`},
		{"*;q=0", "", `"` + a.Hash + `"`},
		{"*", "br", `"` + a.Hash + `-br"`},
	} {
		// Go's transport asks for gzip and decodes it itself unless the
		// request names its own Accept-Encoding, as here.
		resp, b := fetch(t, c, "GET", u, map[string]string{"Accept-Encoding": tc.accept}, "")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != tc.enc || resp.Header.Get("ETag") != tc.etag {
			t.Fatalf("Accept-Encoding %q: %d, Content-Encoding %q, ETag %q; want %q %q", tc.accept, resp.StatusCode,
				resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"), tc.enc, tc.etag)
		}
		var plain []byte
		switch tc.enc {
		case "br":
			plain, _ = io.ReadAll(brotli.NewReader(bytes.NewReader(b)))
		case "gzip":
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			plain, _ = io.ReadAll(zr)
		default:
			plain = b
		}
		if !bytes.Equal(plain, a.Raw) {
			t.Fatalf("Accept-Encoding %q: body does not decode to app.js", tc.accept)
		}
		if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Fatalf("headers: %v", resp.Header)
		}
		resp, b = fetch(t, c, "GET", u, map[string]string{"Accept-Encoding": tc.accept, "If-None-Match": tc.etag}, "")
		if resp.StatusCode != 304 || len(b) != 0 {
			t.Fatalf("If-None-Match %s: %d with %d bytes", tc.etag, resp.StatusCode, len(b))
		}
	}
	// An old version in the URL is not cached for a year.
	resp, _ := fetch(t, c, "GET", r.URL+"/ui/assets/app.js?v=old", nil, "")
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Fatalf("stale version: Cache-Control %q", cc)
	}
	for _, p := range []string{"/ui/assets/nope.js", "/ui/assets/..%2fweb.go", "/ui/assets/%2e%2e"} {
		if resp, _ := fetch(t, c, "GET", r.URL+p, nil, ""); resp.StatusCode != 404 {
			t.Fatalf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// signIn returns a client with a session of user.
func signIn(t *testing.T, base, user, pw string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: testutil.Anonymous.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, b := fetch(t, c, "POST", base+"/api/v1/login", map[string]string{"Content-Type": "application/json"}, `{"user":"`+user+`","password":"`+pw+`"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("login %s: %d %s", user, resp.StatusCode, b)
	}
	return c
}

func addUser(t *testing.T, base, name, pw, role string) {
	t.Helper()
	resp, b := fetch(t, http.DefaultClient, "POST", base+"/api/v1/users", map[string]string{"Content-Type": "application/json"},
		`{"name":"`+name+`","password":"`+pw+`","roles":["`+role+`"]}`)
	if resp.StatusCode != 201 {
		t.Fatalf("add user: %d %s", resp.StatusCode, b)
	}
}

var navRE = regexp.MustCompile(`<nav aria-label="Main">(.*?)</nav>`)

// TestPagesAndRoles: / leads to /ui/, pages need a session (a browser is
// sent to the login page), the menu shows what the role may read, and a
// page the role may not read is refused.
func TestPagesAndRoles(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	addUser(t, r.URL, "vera", "viewer-password", "viewer")
	addUser(t, r.URL, "ada", "admin-password", "admin")
	anon := &http.Client{Transport: testutil.Anonymous.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, _ := fetch(t, anon, "GET", r.URL+"/", nil, "")
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET /: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = fetch(t, anon, "GET", r.URL+"/ui/views", map[string]string{"Accept": "text/html"}, "")
	if loc := resp.Header.Get("Location"); resp.StatusCode != 303 || loc != "/login?next="+url.QueryEscape("/ui/views") {
		t.Fatalf("anonymous page load: %d %q", resp.StatusCode, loc)
	}

	viewer := signIn(t, r.URL, "vera", "viewer-password")
	resp, b := fetch(t, viewer, "GET", r.URL+"/ui/", nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("viewer dashboard: %d %s", resp.StatusCode, b)
	}
	page := string(b)
	nav := navRE.FindStringSubmatch(page)
	if nav == nil || !strings.Contains(nav[1], `href="/ui/live"`) || strings.Contains(nav[1], `/ui/access`) || !strings.Contains(nav[1], `/ui/status`) {
		t.Fatalf("viewer menu: %v", nav)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("page headers: %v", resp.Header)
	}
	if !regexp.MustCompile(`data-csrf="[0-9a-f]{16,}"`).MatchString(page) {
		t.Fatal("the page carries no CSRF token for the script")
	}
	if resp, _ := fetch(t, viewer, "GET", r.URL+"/ui/access", nil, ""); resp.StatusCode != 403 {
		t.Fatalf("viewer on /ui/access: %d, want 403", resp.StatusCode)
	}
	// The viewer's policy page has no clear button: the script draws one
	// only with policy:write, and the API refuses the write anyway.
	if strings.Contains(page, "policy:write") {
		t.Fatal("viewer's page claims policy:write")
	}

	admin := signIn(t, r.URL, "ada", "admin-password")
	resp, b = fetch(t, admin, "GET", r.URL+"/ui/access", nil, "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `id="adduser"`) || !strings.Contains(string(b), `id="addtoken"`) {
		t.Fatalf("admin access page: %d", resp.StatusCode)
	}
	for _, p := range []string{"/ui/", "/ui/live", "/ui/views", "/ui/graph", "/ui/series", "/ui/policy", "/ui/status"} {
		if resp, b := fetch(t, admin, "GET", r.URL+p, nil, ""); resp.StatusCode != 200 || !strings.Contains(string(b), `/ui/assets/app.js?v=`+web.Get("app.js").Hash) {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	// The proxy is not configured: its page is not in the menu.
	if strings.Contains(page, `href="/ui/proxy"`) {
		t.Fatal("menu shows the proxy page with no proxy configured")
	}
	// A theme cookie is rendered by the server (no flash of the other one);
	// anything but light or dark is ignored.
	for _, tc := range []struct{ cookie, want string }{{"dark", `data-theme="dark"`}, {`"><script>`, `<html lang="en">`}} {
		resp, b := fetch(t, admin, "GET", r.URL+"/ui/status", map[string]string{"Cookie": "ops_theme=" + url.QueryEscape(tc.cookie)}, "")
		_ = resp
		if !strings.Contains(string(b), tc.want) {
			t.Fatalf("theme cookie %q: page lacks %s", tc.cookie, tc.want)
		}
	}
	// A write from the UI's script needs the CSRF token (the API's rule).
	resp, b = fetch(t, admin, "POST", r.URL+"/api/v1/tokens", map[string]string{"Content-Type": "application/json"}, `{"name":"x","role":"viewer"}`)
	if resp.StatusCode != 403 || !strings.Contains(string(b), "CSRF") {
		t.Fatalf("write without CSRF token: %d %s", resp.StatusCode, b)
	}
}

// TestStatusHasMemoryAndDisk: the status page's figures come from the API.
func TestStatusHasMemoryAndDisk(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	resp, b := fetch(t, http.DefaultClient, "GET", r.URL+"/api/v1/status", nil, "")
	var s struct {
		Process struct {
			RSS uint64 `json:"rss_bytes"`
		}
		Disk *struct {
			Dir   string
			Free  uint64 `json:"free_bytes"`
			Total uint64 `json:"total_bytes"`
		}
	}
	if err := json.Unmarshal(b, &s); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s %v", resp.StatusCode, b, err)
	}
	if s.Process.RSS < 1<<20 || s.Disk == nil || s.Disk.Total == 0 || s.Disk.Free > s.Disk.Total {
		t.Fatalf("status: %s", b)
	}
}

// TestDashboardWeight: the dashboard page and what it loads stay under
// 150 KB gzip'd.
func TestDashboardWeight(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	addUser(t, r.URL, "ada", "admin-password", "admin")
	c := signIn(t, r.URL, "ada", "admin-password")
	_, page := fetch(t, c, "GET", r.URL+"/ui/", nil, "")
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(page)
	zw.Close()
	total := z.Len()
	for _, n := range web.Names() {
		total += len(web.Get(n).Gz)
	}
	t.Logf("dashboard weight: %d bytes gzip'd (page %d)", total, z.Len())
	if total > 150<<10 {
		t.Fatalf("dashboard weighs %d bytes gzip'd, over 150 KB", total)
	}
}
