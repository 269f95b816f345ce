package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/testutil"
)

func browser(t *testing.T) *http.Client {
	j, _ := cookiejar.New(nil)
	return &http.Client{Jar: j, Transport: testutil.Anonymous.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, u, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestAuthRequired: a route with auth: required sends browsers to the
// first-party login page on the same host, lets signed-in users through
// with identity headers (never the client's own), and feeds user and
// groups to ACL rules.
func TestAuthRequired(t *testing.T) {
	up, _ := echoUpstream(t, "app")
	hash, _ := identity.HashPassword("correct horse")
	_, base := startProxy(t, []config.Route{{
		Name: "app", Upstreams: config.Strings{up.URL}, Auth: "required",
		ACL: config.ACL{Rules: []config.ACLRule{
			{Action: "allow", Paths: config.Strings{"/admin/**"}, Groups: config.Strings{"Admins"}},
			{Action: "deny", Paths: config.Strings{"/admin/**"}},
		}},
	}}, func(c *config.Config) {
		c.Identity.Users = []config.User{
			{Name: "alice", PasswordHash: hash, Email: "alice@example.com", Groups: config.Strings{"admins", "staff"}, Roles: config.Strings{"viewer"}},
			{Name: "bob", PasswordHash: hash, Groups: config.Strings{"staff"}},
		}
	})
	host := "app.example.com"
	b := browser(t)
	// Unauthenticated: a page load goes to the login page on this host.
	resp, _ := do(t, b, "GET", base+"/dashboard?tab=1", "", "Host", host, "Accept", "text/html")
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/_ops/login?next=%2Fdashboard%3Ftab%3D1" {
		t.Fatalf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = do(t, b, "GET", base+"/api/data", "")
	if resp.StatusCode != 401 {
		t.Fatalf("API client: %d", resp.StatusCode)
	}
	// The login page is first-party and posts to the first-party endpoint.
	_, page := do(t, b, "GET", base+"/_ops/login?next=/dashboard", "")
	if !strings.Contains(page, `action="/_ops/api/v1/login"`) {
		t.Fatalf("login form: %s", page)
	}
	// The rest of the API is not exposed on fronted hosts.
	if resp, _ := do(t, b, "GET", base+"/_ops/api/v1/status", ""); resp.StatusCode != 404 {
		t.Fatalf("/_ops/api/v1/status: %d", resp.StatusCode)
	}
	resp, _ = do(t, b, "POST", base+"/_ops/api/v1/login", url.Values{"user": {"alice"}, "password": {"correct horse"}, "next": {"/dashboard"}}.Encode(),
		"Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/dashboard" {
		t.Fatalf("login: %d %v", resp.StatusCode, resp.Header)
	}
	// Signed in: identity goes upstream; a client-sent header is replaced.
	var s seen
	resp, body := do(t, b, "GET", base+"/dashboard", "", "X-Forwarded-User", "root", "X-Forwarded-Groups", "admins")
	_ = json.Unmarshal([]byte(body), &s)
	if resp.StatusCode != 200 || s.Header.Get("X-Forwarded-User") != "alice" || s.Header.Get("X-Forwarded-Groups") != "admins,staff" || s.Header.Get("X-Forwarded-Email") != "alice@example.com" {
		t.Fatalf("upstream saw: %d %v", resp.StatusCode, s.Header)
	}
	// ACL by group: alice (admins) may, bob may not.
	if resp, _ := do(t, b, "GET", base+"/admin/users", ""); resp.StatusCode != 200 {
		t.Fatalf("alice /admin: %d", resp.StatusCode)
	}
	bob := browser(t)
	do(t, bob, "POST", base+"/_ops/api/v1/login", `{"user":"bob","password":"correct horse"}`, "Content-Type", "application/json")
	if resp, body := do(t, bob, "GET", base+"/admin/users", ""); resp.StatusCode != 403 || !strings.Contains(body, "403") {
		t.Fatalf("bob /admin: %d", resp.StatusCode)
	}
	resp, body = do(t, bob, "GET", base+"/home", "", "X-Forwarded-User", "alice")
	_ = json.Unmarshal([]byte(body), &s)
	if resp.StatusCode != 200 || s.Header.Get("X-Forwarded-User") != "bob" {
		t.Fatalf("bob spoofing alice: %d %v", resp.StatusCode, s.Header)
	}
	// Without a session, a spoofed header gets nobody in.
	if resp, _ := do(t, testutil.Anonymous, "GET", base+"/home", "", "X-Forwarded-User", "alice"); resp.StatusCode != 401 {
		t.Fatalf("spoofed header without session: %d", resp.StatusCode)
	}
}
