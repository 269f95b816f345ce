package proxy_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/testutil"
)

// The attacks of docs/security.md ("Edge attacks"), each sent as raw
// bytes to a running Ops in front of an upstream that logs exactly what
// reached it. Each runs on both request paths: the fast path and, with
// fast_path off, Go's net/http server.

// logged is one request as the upstream received it.
type logged struct {
	URI    string // the request target, unparsed
	Host   string
	Header http.Header
}

// logUpstream records every request; under /files/ it serves dir, the
// way a static file server would.
type logUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []logged
}

func newLogUpstream(t *testing.T, dir string) *logUpstream {
	u := &logUpstream{}
	files := http.FileServer(http.Dir(dir))
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, logged{URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone()})
		u.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		if dir != "" {
			files.ServeHTTP(w, r)
			return
		}
		_, _ = io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *logUpstream) log() []logged {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]logged(nil), u.seen...)
}

func (u *logUpstream) reset() {
	u.mu.Lock()
	u.seen = nil
	u.mu.Unlock()
}

// raw sends req as it is and returns the status and body of the answer.
func raw(t *testing.T, base, req string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func eachPath(t *testing.T, fn func(t *testing.T, fast bool)) {
	for _, fast := range []bool{true, false} {
		name := "fast"
		if !fast {
			name = "standard"
		}
		t.Run(name, func(t *testing.T) { fn(t, fast) })
	}
}

// TestPathBypass: no spelling of a denied path reaches the upstream, and
// the upstream is sent the path the ACL decided on.
func TestPathBypass(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "files", "admin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "files", "admin", "secret.txt"), []byte("TOP SECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	eachPath(t, func(t *testing.T, fast bool) {
		up := newLogUpstream(t, dir)
		_, base := startProxy(t, []config.Route{{Name: "acl", Hosts: config.Strings{"acl.local"}, Upstreams: config.Strings{up.URL},
			ACL: config.ACL{Rules: []config.ACLRule{
				{Action: "deny", Paths: config.Strings{"/admin/**", "/files/admin/**"}},
			}}}}, func(c *config.Config) { c.Proxy.FastPath = fast })
		for _, p := range []string{
			"/admin", "/admin/", "/admin/x", "//admin/x", "///admin/x", "/./admin/x", "/x/../admin/x", "/x/./../admin/x",
			"/%2e/admin/x", "/%2E%2E/admin/x", "/x/%2e%2e/admin/x", "/%61dmin/x", "/adm%69n", "/admin/./x", "/admin//x",
			"/x/../files/admin/secret.txt", "/files//admin/secret.txt", "/files/x/../admin/secret.txt", "/files/%61dmin/secret.txt",
			"/admin%2Fx", "/x%2F..%2Fadmin", "/admin\\x", "/x/..%5Cadmin", "/public/..;/admin/x", "/admin;x=1/y", "/admin%00",
		} {
			up.reset()
			code, body := raw(t, base, "GET "+p+" HTTP/1.1\r\nHost: acl.local\r\nConnection: close\r\n\r\n")
			if code != 403 && code != 400 {
				t.Errorf("GET %s: %d, want 403 or 400", p, code)
			}
			if strings.Contains(body, "TOP SECRET") {
				t.Errorf("GET %s: the file was served", p)
			}
			if l := up.log(); len(l) > 0 {
				t.Errorf("GET %s reached the upstream as %q", p, l[0].URI)
			}
		}
		// Allowed paths go upstream in the canonical form they were
		// decided on.
		for _, c := range []struct{ in, sent string }{
			{"/public//a/./b/../c", "/public/a/c"},
			{"/%7Euser/x%20y", "/~user/x%20y"},
			{"/a/b/", "/a/b/"},
			{"/q?x=/admin/../y", "/q?x=/admin/../y"},
		} {
			up.reset()
			code, _ := raw(t, base, "GET "+c.in+" HTTP/1.1\r\nHost: acl.local\r\nConnection: close\r\n\r\n")
			l := up.log()
			if code == 403 || code == 400 || len(l) != 1 || l[0].URI != c.sent {
				t.Errorf("GET %s: %d, upstream saw %v, want %q", c.in, code, l, c.sent)
			}
		}
		// GET * is refused; OPTIONS * is answered by Ops (server-wide).
		up.reset()
		if code, _ := raw(t, base, "GET * HTTP/1.1\r\nHost: acl.local\r\nConnection: close\r\n\r\n"); code != 400 {
			t.Errorf("GET *: %d, want 400", code)
		}
		if code, _ := raw(t, base, "OPTIONS * HTTP/1.1\r\nHost: acl.local\r\nConnection: close\r\n\r\n"); code != 200 {
			t.Errorf("OPTIONS *: %d, want 200", code)
		}
		if l := up.log(); len(l) > 0 {
			t.Errorf("asterisk-form reached the upstream as %q", l[0].URI)
		}
	})
}

// TestAuthRouteBypass: a group rule on an auth: required route holds
// against every path spelling, and /admin/** covers /admin itself.
func TestAuthRouteBypass(t *testing.T) {
	up := newLogUpstream(t, "")
	hash, _ := identity.HashPassword("correct horse")
	_, base := startProxy(t, []config.Route{{
		Name: "app", Hosts: config.Strings{"auth.local"}, Upstreams: config.Strings{up.URL}, Auth: "required",
		ACL: config.ACL{Rules: []config.ACLRule{
			{Action: "allow", Paths: config.Strings{"/admin/**"}, Groups: config.Strings{"admins"}},
			{Action: "deny", Paths: config.Strings{"/admin/**"}},
		}},
	}, {Name: "catchall", Upstreams: config.Strings{up.URL}}}, func(c *config.Config) {
		c.Identity.Users = []config.User{{Name: "bob", PasswordHash: hash, Groups: config.Strings{"staff"}}}
	})
	bob := browser(t)
	resp, _ := do(t, bob, "POST", base+"/_ops/api/v1/login", `{"user":"bob","password":"correct horse"}`, "Content-Type", "application/json", "Host", "auth.local")
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "ops_edge" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatalf("no ops_edge cookie: %v", resp.Header)
	}
	for _, p := range []string{"/admin", "/admin/", "//admin", "/./admin/users", "/x/../admin", "/%61dmin/users", "/admin;x/users"} {
		up.reset()
		code, _ := raw(t, base, "GET "+p+" HTTP/1.1\r\nHost: auth.local\r\nCookie: "+cookie+"\r\nConnection: close\r\n\r\n")
		if code != 403 && code != 400 {
			t.Errorf("bob GET %s: %d, want 403", p, code)
		}
		if l := up.log(); len(l) > 0 {
			t.Errorf("bob GET %s reached the upstream as %q", p, l[0].URI)
		}
	}
	// A trailing dot, upper case or an IDNA spelling of the host is the
	// same host: the auth route applies, not the catch-all.
	for _, h := range []string{"auth.local.", "AUTH.local", "auth.local.:80"} {
		up.reset()
		code, _ := raw(t, base, "GET /admin/x HTTP/1.1\r\nHost: "+h+"\r\nConnection: close\r\n\r\n")
		if code != 401 {
			t.Errorf("Host %q: %d, want 401 from the auth route", h, code)
		}
		if l := up.log(); len(l) > 0 {
			t.Errorf("Host %q reached the upstream (%q)", h, l[0].URI)
		}
	}
	code, _ := raw(t, base, "GET / HTTP/1.1\r\nHost: auth..local\r\nConnection: close\r\n\r\n")
	if code != 400 {
		t.Errorf("malformed host: %d, want 400", code)
	}
}

// TestNoOpsCredentialsUpstream: Ops's session cookies and tokens stop at
// the proxy; other cookies and the upstream's own Authorization pass; a
// proxy session is not an API session.
func TestNoOpsCredentialsUpstream(t *testing.T) {
	up := newLogUpstream(t, "")
	r, base := startProxy(t, []config.Route{
		{Name: "app", Hosts: config.Strings{"app.local"}, Upstreams: config.Strings{up.URL}, Auth: "required"},
		{Name: "open", Hosts: config.Strings{"open.local"}, Upstreams: config.Strings{up.URL}},
	}, nil)
	token := r.Token // the first-run admin token
	if resp, body := do(t, testutil.Anonymous, "POST", r.URL+"/api/v1/users", `{"name":"alice","password":"correct horse","roles":["admin"]}`,
		"Authorization", "Bearer "+token, "Content-Type", "application/json"); resp.StatusCode != 201 {
		t.Fatalf("add user: %d %s", resp.StatusCode, body)
	}
	b := browser(t)
	resp, _ := do(t, b, "POST", base+"/_ops/api/v1/login", `{"user":"alice","password":"correct horse"}`, "Content-Type", "application/json", "Host", "app.local")
	var edge *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "ops_edge" {
			edge = c
		}
	}
	if resp.StatusCode != 200 || edge == nil {
		t.Fatalf("login: %d %v", resp.StatusCode, resp.Header)
	}
	basic := base64.StdEncoding.EncodeToString([]byte("grafana:" + token))
	eachPath(t, func(t *testing.T, fast bool) {
		for _, c := range []struct {
			name, host, hdr string
			wantAuthz       string
		}{
			{"session cookie", "app.local", "Cookie: theme=dark; ops_edge=" + edge.Value + "; cart=7", ""},
			{"bearer token on an auth route", "app.local", "Authorization: Bearer " + token, ""},
			{"basic token on an auth route", "app.local", "Authorization: Basic " + basic, ""},
			{"bearer token on an open route", "open.local", "Authorization: Bearer " + token, ""},
			{"basic token on an open route", "open.local", "Authorization: Basic " + basic, ""},
			{"cookie on an open route", "open.local", "Cookie: ops_edge=" + edge.Value + "; theme=dark; ops_session=x", ""},
			{"the upstream's own basic auth", "open.local", "Authorization: Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"},
		} {
			up.reset()
			code, _ := raw(t, base, "GET /page HTTP/1.1\r\nHost: "+c.host+"\r\n"+c.hdr+"\r\nConnection: close\r\n\r\n")
			l := up.log()
			if code != 200 || len(l) != 1 {
				t.Errorf("%s: %d, %d upstream requests", c.name, code, len(l))
				continue
			}
			h := l[0].Header
			if got := h.Get("Authorization"); got != c.wantAuthz {
				t.Errorf("%s: upstream got Authorization %q, want %q", c.name, got, c.wantAuthz)
			}
			for _, ck := range h.Values("Cookie") {
				if strings.Contains(ck, "ops_edge") || strings.Contains(ck, "ops_session") || strings.Contains(ck, edge.Value) {
					t.Errorf("%s: upstream got Ops's cookie: %q", c.name, ck)
				}
			}
			if strings.Contains(c.hdr, "theme=dark") && !strings.Contains(strings.Join(h.Values("Cookie"), ";"), "theme=dark") {
				t.Errorf("%s: the site's own cookie was dropped: %v", c.name, h.Values("Cookie"))
			}
		}
	})
	// A proxy session replayed against the API is no session there, under
	// either cookie name.
	for _, name := range []string{"ops_edge", "ops_session"} {
		req, _ := http.NewRequest("POST", r.URL+"/api/v1/tokens", strings.NewReader(`{"name":"stolen","role":"admin"}`))
		req.Header.Set("Cookie", name+"="+edge.Value)
		req.Header.Set("Content-Type", "application/json")
		resp, err := testutil.Anonymous.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("proxy session as %s on the API: %d, want 401", name, resp.StatusCode)
		}
	}
}

// TestSpoofedHeaders: identity and forwarding headers spelt with '_' (as
// CGI servers read them) never reach the upstream, and X-Real-IP is the
// client's.
func TestSpoofedHeaders(t *testing.T) {
	eachPath(t, func(t *testing.T, fast bool) {
		up := newLogUpstream(t, "")
		_, base := startProxy(t, []config.Route{{Name: "r", Upstreams: config.Strings{up.URL}}}, func(c *config.Config) { c.Proxy.FastPath = fast })
		code, _ := raw(t, base, "GET / HTTP/1.1\r\nHost: x.local\r\nX_Forwarded_User: admin\r\nx_forwarded_groups: admins\r\n"+
			"X-Real-IP: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-Email: a@b\r\nX-Keep_Me: yes\r\nConnection: close\r\n\r\n")
		l := up.log()
		if code != 200 || len(l) != 1 {
			t.Fatalf("%d, %d upstream requests", code, len(l))
		}
		for k, v := range l[0].Header {
			n := strings.ReplaceAll(strings.ToLower(k), "_", "-")
			switch n {
			case "x-forwarded-user", "x-forwarded-groups", "x-forwarded-email":
				t.Errorf("identity header reached the upstream: %s: %v", k, v)
			case "x-real-ip":
				if k != "X-Real-Ip" || len(v) != 1 || v[0] != "127.0.0.1" {
					t.Errorf("X-Real-IP: %s: %v, want the client 127.0.0.1", k, v)
				}
			case "x-forwarded-for":
				if k != "X-Forwarded-For" || v[0] != "127.0.0.1" {
					t.Errorf("X-Forwarded-For: %s: %v", k, v)
				}
			}
		}
		if l[0].Header.Get("X-Keep_me") != "yes" {
			t.Errorf("an unrelated header with '_' was dropped: %v", l[0].Header)
		}
	})
}

// TestClientFaultsDoNotEject: malformed and aborted request bodies are
// the client's fault (400, 499) and never take an upstream out.
func TestClientFaultsDoNotEject(t *testing.T) {
	eachPath(t, func(t *testing.T, fast bool) {
		up := newLogUpstream(t, "")
		_, base := startProxy(t, []config.Route{{Name: "p", Upstreams: config.Strings{up.URL},
			Passive: config.Passive{MaxFails: 2, EjectFor: config.Duration(time.Minute)}}}, func(c *config.Config) { c.Proxy.FastPath = fast })
		for i := 0; i < 3; i++ {
			code, _ := raw(t, base, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
			if code != 400 {
				t.Errorf("malformed chunked body: %d, want 400", code)
			}
		}
		for i := 0; i < 3; i++ {
			c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n%s", strings.Repeat("x", 100<<10))
			time.Sleep(50 * time.Millisecond)
			c.Close() // gone mid-upload
		}
		time.Sleep(100 * time.Millisecond)
		if code, body := raw(t, base, "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); code != 200 || body != "upstream ok" {
			t.Fatalf("after client faults the upstream is out: %d %q", code, body)
		}
	})
}

// TestRetryOnlyIdempotent: when a pooled upstream connection turns out
// closed, GET is sent again on a new one, POST is not (unless it carries
// an Idempotency-Key).
func TestRetryOnlyIdempotent(t *testing.T) {
	// The upstream answers the first request of each connection with
	// keep-alive, and closes the connection on reading the second.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	got := map[string]int{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					mu.Lock()
					got[req.Method+" "+req.URL.Path]++
					mu.Unlock()
					if n > 0 {
						return // closed with the request unanswered
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	eachPath(t, func(t *testing.T, fast bool) {
		_, base := startProxy(t, []config.Route{{Name: "r", Upstreams: config.Strings{"http://" + ln.Addr().String()}}}, func(c *config.Config) { c.Proxy.FastPath = fast })
		for _, c := range []struct {
			req, key string
			want     int // times the upstream receives it
		}{
			{"GET /g HTTP/1.1\r\nHost: x\r\n\r\n", "GET /g", 2},
			{"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "POST /p", 1},
			{"DELETE /d HTTP/1.1\r\nHost: x\r\n\r\n", "DELETE /d", 1},
			{"POST /k HTTP/1.1\r\nHost: x\r\nIdempotency-Key: 42\r\nContent-Length: 0\r\n\r\n", "POST /k", 2},
		} {
			mu.Lock()
			clear(got)
			mu.Unlock()
			// Warm the pool with one answered request, then send c.req:
			// it goes on the pooled connection, which the upstream closes.
			raw(t, base, "GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			raw(t, base, strings.Replace(c.req, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
			mu.Lock()
			n := got[c.key]
			mu.Unlock()
			if n != c.want {
				t.Errorf("%s: the upstream received it %d times, want %d", c.key, n, c.want)
			}
		}
	})
}
