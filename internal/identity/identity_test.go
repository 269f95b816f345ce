package identity_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/testutil"
)

// call makes a request with the anonymous client, optionally with a bearer
// token and extra headers, and decodes a JSON answer into out.
func call(t *testing.T, c *http.Client, method, u, token string, body any, out any, hdr ...string) *http.Response {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if c == nil {
		c = testutil.Anonymous
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, b)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

func bodyOf(r *http.Response) string { b, _ := io.ReadAll(r.Body); return string(b) }

type errBody struct {
	Error string `json:"error"`
	Field string `json:"field"`
}

func TestFirstRunAndTokens(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	// First run wrote an admin token, readable by the owner only.
	fi, err := os.Stat(filepath.Join(r.Cfg.DataDir, identity.AdminTokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 || r.Token == "" {
		t.Fatalf("admin.token: %v %v", fi, err)
	}
	// Nothing but health, the collector and the tracker is open.
	for _, p := range []string{"/api/v1/status", "/api/v1/events", "/api/v1/views", "/api/v1/processors", "/api/v1/keys", "/api/v1/tokens", "/api/v1/users", "/api/v1/policy", "/metrics", "/api/v1/graph"} {
		var e errBody
		resp := call(t, nil, "GET", r.URL+p, "", nil, &e)
		if resp.StatusCode != 401 || e.Field != "authorization" || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s without credentials: %d %+v", p, resp.StatusCode, e)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/ops.js", "/login"} {
		if resp := call(t, nil, "GET", r.URL+p, "", nil, nil); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d, want open", p, resp.StatusCode)
		}
	}
	admin := r.Token
	if resp := call(t, nil, "GET", r.URL+"/api/v1/status", admin, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("admin token refused: %d", resp.StatusCode)
	}
	// Basic auth with the token as password is what Grafana sends.
	req, _ := http.NewRequest("GET", r.URL+"/api/v1/status", nil)
	req.SetBasicAuth("grafana", admin)
	if resp, err := testutil.Anonymous.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("basic auth with token: %v %v", resp, err)
	}

	// A viewer token reads but may not write.
	var created struct {
		Token, ID, Role string
	}
	if resp := call(t, nil, "POST", r.URL+"/api/v1/tokens", admin, map[string]string{"name": "dash", "role": "viewer"}, &created); resp.StatusCode != 201 || !strings.HasPrefix(created.Token, "ops_"+created.ID+"_") {
		t.Fatalf("create token: %d %+v", resp.StatusCode, created)
	}
	viewer := created.Token
	if resp := call(t, nil, "GET", r.URL+"/api/v1/events", viewer, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("viewer read: %d", resp.StatusCode)
	}
	var e errBody
	resp := call(t, nil, "POST", r.URL+"/api/v1/events", viewer, map[string]any{"type": "x.y"}, &e)
	if resp.StatusCode != 403 || e.Field != "role" || !strings.Contains(e.Error, "events:write") || !strings.Contains(e.Error, "editor or admin") {
		t.Fatalf("viewer write: %d %+v", resp.StatusCode, e)
	}
	if resp := call(t, nil, "GET", r.URL+"/api/v1/tokens", viewer, nil, nil); resp.StatusCode != 403 {
		t.Fatalf("viewer lists tokens: %d", resp.StatusCode)
	}
	// The token list never shows secrets or hashes.
	var list struct{ Tokens []map[string]any }
	call(t, nil, "GET", r.URL+"/api/v1/tokens", admin, nil, &list)
	if len(list.Tokens) != 2 {
		t.Fatalf("tokens: %+v", list)
	}
	for _, tk := range list.Tokens {
		if _, ok := tk["hash"]; ok {
			t.Fatalf("hash listed: %v", tk)
		}
	}
	// Revocation takes effect at once.
	if resp := call(t, nil, "DELETE", r.URL+"/api/v1/tokens/"+created.ID, admin, nil, nil); resp.StatusCode != 204 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if resp := call(t, nil, "GET", r.URL+"/api/v1/events", viewer, nil, &e); resp.StatusCode != 401 || !strings.Contains(e.Error, "credentials refused: invalid token") {
		t.Fatalf("revoked token: %d %+v", resp.StatusCode, e)
	}
	// A token that expires.
	call(t, nil, "POST", r.URL+"/api/v1/tokens", admin, map[string]string{"name": "short", "role": "editor", "expires": "1s"}, &created)
	if resp := call(t, nil, "GET", r.URL+"/api/v1/events", created.Token, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("fresh token: %d", resp.StatusCode)
	}
	testutil.CheckFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		if resp := call(t, nil, "GET", r.URL+"/api/v1/events", created.Token, nil, nil); resp.StatusCode != 401 {
			return &statusErr{resp.StatusCode}
		}
		return nil
	})
	// Bad requests name the field.
	for _, c := range []struct {
		body  map[string]string
		field string
	}{{map[string]string{"name": "x", "role": "root"}, "role"}, {map[string]string{"role": "admin"}, "name"}, {map[string]string{"name": "x", "role": "admin", "expires": "soon"}, "expires"}} {
		if resp := call(t, nil, "POST", r.URL+"/api/v1/tokens", admin, c.body, &e); resp.StatusCode != 400 || e.Field != c.field {
			t.Errorf("%v: %d %+v", c.body, resp.StatusCode, e)
		}
	}
	// Forged, malformed and foreign tokens.
	for _, tok := range []string{"ops_" + created.ID + "_AAAA", "ops_zz", "hello", "ops_000000000000_" + strings.Repeat("A", 43)} {
		if resp := call(t, nil, "GET", r.URL+"/api/v1/events", tok, nil, nil); resp.StatusCode != 401 {
			t.Errorf("token %q: %d", tok, resp.StatusCode)
		}
	}
	// A second start does not write a new admin token (one exists).
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(r.Cfg.DataDir, identity.AdminTokenFile))
	r2 := testutil.StartApp(t, []string{"all"}, func(c *config.Config) { c.DataDir = r.Cfg.DataDir })
	after, _ := os.ReadFile(filepath.Join(r.Cfg.DataDir, identity.AdminTokenFile))
	if !bytes.Equal(before, after) {
		t.Fatal("admin token rewritten on restart")
	}
	if resp := call(t, nil, "GET", r2.URL+"/api/v1/status", admin, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("admin token after restart: %d", resp.StatusCode)
	}
}

type statusErr struct{ code int }

func (e *statusErr) Error() string { return http.StatusText(e.code) }

func jar(t *testing.T) *http.Client {
	j, _ := cookiejar.New(nil)
	return &http.Client{Jar: j, Transport: testutil.Anonymous.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func login(t *testing.T, c *http.Client, base, user, pw string) (int, string) {
	t.Helper()
	var out struct {
		CSRF  string `json:"csrf_token"`
		Error string
	}
	resp := call(t, c, "POST", base+"/api/v1/login", "", map[string]string{"user": user, "password": pw}, &out)
	return resp.StatusCode, out.CSRF
}

func sessionCookie(c *http.Client, base string) string {
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "ops_session" {
			return ck.Value
		}
	}
	return ""
}

func TestSessions(t *testing.T) {
	hash, _ := identity.HashPassword("correct horse")
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Identity.Users = []config.User{{Name: "carol", PasswordHash: hash, Roles: config.Strings{"editor"}}}
		c.Identity.Session.Idle = config.Duration(2 * time.Second)
	})
	b := testutil.BusOf(t, r)
	admin := r.Token
	if admin != "" {
		t.Fatal("a config user exists, so no first-run token should be written")
	}
	c := jar(t)
	if code, _ := login(t, c, r.URL, "carol", "wrong"); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	if code, _ := login(t, c, r.URL, "nobody", "correct horse"); code != 401 {
		t.Fatalf("unknown user: %d", code)
	}
	code, csrf := login(t, c, r.URL, "carol", "correct horse")
	if code != 200 || len(csrf) != 32 {
		t.Fatalf("login: %d %q", code, csrf)
	}
	first := sessionCookie(c, r.URL)
	var me map[string]any
	if resp := call(t, c, "GET", r.URL+"/api/v1/me", "", nil, &me); resp.StatusCode != 200 || me["user"] != "carol" || me["csrf_token"] != csrf {
		t.Fatalf("me: %d %v", resp.StatusCode, me)
	}
	// The cookie is HttpOnly and SameSite=Lax.
	resp := call(t, jar(t), "POST", r.URL+"/api/v1/login", "", map[string]string{"user": "carol", "password": "correct horse"}, nil)
	sc := resp.Header.Get("Set-Cookie")
	if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Lax") || strings.Contains(sc, "Secure") {
		t.Fatalf("cookie flags: %s", sc)
	}
	// CSRF: a cookie alone cannot change state.
	ev := map[string]any{"specversion": "1.0", "id": "csrf-1", "source": "/test", "type": "test.csrf"}
	var e errBody
	if resp := call(t, c, "POST", r.URL+"/api/v1/events", "", ev, &e); resp.StatusCode != 403 || e.Field != "X-CSRF-Token" {
		t.Fatalf("no csrf: %d %+v", resp.StatusCode, e)
	}
	if resp := call(t, c, "POST", r.URL+"/api/v1/events", "", ev, nil, "X-CSRF-Token", "0123456789abcdef0123456789abcdef"); resp.StatusCode != 403 {
		t.Fatalf("wrong csrf: %d", resp.StatusCode)
	}
	if resp := call(t, c, "POST", r.URL+"/api/v1/events", "", ev, nil, "X-CSRF-Token", csrf); resp.StatusCode != 200 {
		t.Fatalf("with csrf: %d %s", resp.StatusCode, bodyOf(resp))
	}
	// Tampered cookie: flip one character.
	tampered := []byte(first)
	tampered[len(tampered)/2] ^= 1
	if resp := call(t, nil, "GET", r.URL+"/api/v1/me", "", nil, nil, "Cookie", "ops_session="+string(tampered)); resp.StatusCode != 401 {
		t.Fatalf("tampered cookie: %d", resp.StatusCode)
	}
	// Fixation: logging in again with a session cookie issues a new one and
	// ends the old.
	if code, _ := login(t, c, r.URL, "carol", "correct horse"); code != 200 {
		t.Fatal(code)
	}
	second := sessionCookie(c, r.URL)
	if second == first || second == "" {
		t.Fatal("session id not renewed at login")
	}
	if resp := call(t, nil, "GET", r.URL+"/api/v1/me", "", nil, nil, "Cookie", "ops_session="+first); resp.StatusCode != 401 {
		t.Fatalf("old session still valid: %d", resp.StatusCode)
	}
	// Logout ends the session server-side: replaying the cookie fails.
	call(t, c, "GET", r.URL+"/api/v1/me", "", nil, &me)
	if resp := call(t, c, "POST", r.URL+"/api/v1/logout", "", nil, nil, "X-CSRF-Token", me["csrf_token"].(string)); resp.StatusCode != 204 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp := call(t, nil, "GET", r.URL+"/api/v1/me", "", nil, nil, "Cookie", "ops_session="+second); resp.StatusCode != 401 {
		t.Fatalf("session after logout: %d", resp.StatusCode)
	}
	// Idle expiry (2s in this test).
	login(t, c, r.URL, "carol", "correct horse")
	if resp := call(t, c, "GET", r.URL+"/api/v1/me", "", nil, nil); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	testutil.CheckFor(t, 6*time.Second, 200*time.Millisecond, func() error {
		if resp := call(t, c, "GET", r.URL+"/api/v1/me", "", nil, nil); resp.StatusCode != 401 {
			return &statusErr{resp.StatusCode}
		}
		return nil
	})
	// Audit events: logins, failures (with the reason and an anonymised
	// address), logout; never a password.
	var got []bus.Stored
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		var err error
		got, _, err = b.Read(t.Context(), bus.ReadOptions{Filter: "ev.auth.>", Limit: 100})
		if err == nil && len(got) < 6 {
			return &statusErr{len(got)}
		}
		return err
	})
	seen := map[string]int{}
	for _, s := range got {
		raw, _ := json.Marshal(s.Event.Data)
		if strings.Contains(string(raw), "correct horse") || strings.Contains(string(raw), "wrong") && s.Event.Type != "auth.failed" {
			t.Fatalf("password in event: %s", raw)
		}
		seen[s.Event.Type]++
		if s.Event.Type == "auth.failed" {
			var d map[string]any
			_ = json.Unmarshal(s.Event.Data, &d)
			if d["reason"] != "invalid_credentials" || d["ip"] != "127.0.0.0" {
				t.Fatalf("failed event: %v", d)
			}
		}
	}
	if seen["auth.failed"] != 2 || seen["auth.login"] < 3 || seen["auth.logout"] != 1 {
		t.Fatalf("auth events: %v", seen)
	}
}

func TestBrowserFlow(t *testing.T) {
	hash, _ := identity.HashPassword("correct horse")
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Identity.Users = []config.User{{Name: "dave", PasswordHash: hash, Groups: config.Strings{"Analysts"}}}
		c.Identity.Roles = []config.Role{{Name: "analyst", Permissions: config.Strings{"views:read"}}}
		c.Identity.Grants = []config.Grant{{Role: "analyst", Groups: config.Strings{"analysts"}}}
	})
	c := jar(t)
	// A page load without a session goes to the login page.
	resp := call(t, c, "GET", r.URL+"/api/v1/views", "", nil, nil, "Accept", "text/html")
	if resp.StatusCode != 401 {
		t.Fatalf("API path answers 401 even to browsers: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", r.URL+"/metrics?x=1", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/login?next=%2Fmetrics%3Fx%3D1" {
		t.Fatalf("redirect: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	page := bodyOf(call(t, c, "GET", r.URL+"/login?next=/metrics", "", nil, nil))
	if !strings.Contains(page, `name="password"`) || !strings.Contains(page, `value="/metrics"`) {
		t.Fatalf("login page: %s", page)
	}
	post := func(form url.Values, hdr ...string) *http.Response {
		req, _ := http.NewRequest("POST", r.URL+"/api/v1/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Wrong password: the form again, with the error.
	resp = post(url.Values{"user": {"dave"}, "password": {"nope"}, "next": {"/metrics"}})
	if b := bodyOf(resp); resp.StatusCode != 401 || !strings.Contains(b, "invalid user or password") {
		t.Fatalf("bad form login: %d %s", resp.StatusCode, b)
	}
	// Another site's form cannot sign the browser in (login CSRF).
	if resp := post(url.Values{"user": {"dave"}, "password": {"correct horse"}}, "Origin", "https://evil.example"); resp.StatusCode != 403 {
		t.Fatalf("cross-origin login: %d", resp.StatusCode)
	}
	// next must stay on this site.
	resp = post(url.Values{"user": {"dave"}, "password": {"correct horse"}, "next": {"//evil.example/x"}}, "Origin", r.URL)
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/" {
		t.Fatalf("open redirect: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = post(url.Values{"user": {"dave"}, "password": {"correct horse"}, "next": {"/api/v1/views"}})
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/api/v1/views" {
		t.Fatalf("form login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The group grant (matched case-insensitively) gives the custom role:
	// views yes, events no.
	var me struct{ Roles []string }
	call(t, c, "GET", r.URL+"/api/v1/me", "", nil, &me)
	if len(me.Roles) != 1 || me.Roles[0] != "analyst" {
		t.Fatalf("roles: %+v", me)
	}
	if resp := call(t, c, "GET", r.URL+"/api/v1/views", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("analyst views: %d", resp.StatusCode)
	}
	var e errBody
	if resp := call(t, c, "GET", r.URL+"/api/v1/events", "", nil, &e); resp.StatusCode != 403 || !strings.Contains(e.Error, "events:read") {
		t.Fatalf("analyst events: %d %+v", resp.StatusCode, e)
	}
	// Bad login bodies name the field.
	for _, tc := range []struct{ body, ct, field string }{
		{`{"user":"dave"}`, "application/json", "password"},
		{`{"password":"x"}`, "application/json", "user"},
		{`{"user":`, "application/json", "body"},
		{`user=dave`, "text/plain", "Content-Type"},
	} {
		req, _ := http.NewRequest("POST", r.URL+"/api/v1/login", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ct)
		resp, err := testutil.Anonymous.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e errBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || e.Field != tc.field {
			t.Errorf("%s: %d %+v", tc.body, resp.StatusCode, e)
		}
	}
}

// TestBruteForceExample runs examples/bruteforce.yaml: five failed logins
// lock the user through views, a processor and the POLICY bucket; twenty
// from one address block it.
func TestBruteForceExample(t *testing.T) {
	raw, err := os.ReadFile("../../examples/bruteforce.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := identity.HashPassword("correct horse")
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.Views, c.Processors = ex.Views, ex.Processors
		c.Identity.Users = []config.User{
			{Name: "frank", PasswordHash: hash, Roles: config.Strings{"viewer"}},
			{Name: "grace", PasswordHash: hash, Roles: config.Strings{"viewer"}},
			{Name: "admin", PasswordHash: hash, Roles: config.Strings{"admin"}},
		}
	})
	for i := 0; i < 4; i++ {
		if code, _ := login(t, jar(t), r.URL, "frank", "guess"); code != 401 {
			t.Fatalf("failure %d: %d", i, code)
		}
	}
	// Four failures: not locked yet (give the graph time to act on them).
	time.Sleep(300 * time.Millisecond)
	if code, _ := login(t, jar(t), r.URL, "frank", "correct horse"); code != 200 {
		t.Fatalf("locked too early: %d", code)
	}
	if code, _ := login(t, jar(t), r.URL, "frank", "guess"); code != 401 {
		t.Fatal(code)
	}
	// The fifth failure locks frank, even with the right password.
	var e errBody
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		resp := call(t, nil, "POST", r.URL+"/api/v1/login", "", map[string]string{"user": "frank", "password": "correct horse"}, &e)
		if resp.StatusCode != 403 {
			return &statusErr{resp.StatusCode}
		}
		return nil
	})
	if !strings.Contains(e.Error, "5 failed logins within 10 minutes") {
		t.Fatalf("lock reason: %+v", e)
	}
	// grace is not locked.
	if code, _ := login(t, jar(t), r.URL, "grace", "correct horse"); code != 200 {
		t.Fatalf("grace: %d", code)
	}
	// An admin unlocks frank early.
	ac := jar(t)
	_, csrf := login(t, ac, r.URL, "admin", "correct horse")
	if resp := call(t, ac, "DELETE", r.URL+"/api/v1/policy/user/frank", "", nil, nil, "X-CSRF-Token", csrf); resp.StatusCode != 204 {
		t.Fatalf("unlock: %d", resp.StatusCode)
	}
	if code, _ := login(t, jar(t), r.URL, "frank", "correct horse"); code != 200 {
		t.Fatalf("after unlock: %d", code)
	}
	// 20 failures from 127.0.0.1 (spread over users, so no user lock
	// explains it) block the address for everyone.
	for i := 5; i < 20; i++ {
		login(t, jar(t), r.URL, "nobody"+string(rune('a'+i)), "guess")
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		resp := call(t, nil, "POST", r.URL+"/api/v1/login", "", map[string]string{"user": "grace", "password": "correct horse"}, &e)
		if resp.StatusCode != 403 {
			return &statusErr{resp.StatusCode}
		}
		return nil
	})
	if !strings.Contains(e.Error, "address block") {
		t.Fatalf("block reason: %+v", e)
	}
	var pol struct{ Entries []map[string]any }
	call(t, ac, "GET", r.URL+"/api/v1/policy", "", nil, &pol)
	if len(pol.Entries) != 1 || pol.Entries[0]["subject"] != "127.0.0.0" || pol.Entries[0]["kind"] != "ip" {
		t.Fatalf("policy: %+v", pol)
	}
}
