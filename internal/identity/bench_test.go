package identity_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/identity"
	"github.com/opsgraph/ops/internal/testutil"
)

// BenchmarkAuth is the cost of authentication on a request, end to end over
// loopback HTTP: a public route, a token (one bucket read), a session (one
// bucket read and the cookie's AES-GCM), and a password login (bcrypt).
func BenchmarkAuth(b *testing.B) {
	hash, _ := identity.HashPassword("correct horse")
	r := testutil.StartApp(b, []string{"all"}, func(c *config.Config) {
		c.Identity.Users = []config.User{{Name: "bench", PasswordHash: hash, Roles: config.Strings{"admin"}}}
		c.Identity.AdminFile = false
	})
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	client := &http.Client{Transport: tr}
	login := func() *http.Cookie {
		req, _ := http.NewRequest("POST", r.URL+"/api/v1/login", strings.NewReader(`{"user":"bench","password":"correct horse"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("login: %v %v", resp, err)
		}
		resp.Body.Close()
		return resp.Cookies()[0]
	}
	cookie := login()
	var me struct {
		CSRF string `json:"csrf_token"`
	}
	req, _ := http.NewRequest("GET", r.URL+"/api/v1/me", nil)
	req.AddCookie(cookie)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	req, _ = http.NewRequest("POST", r.URL+"/api/v1/tokens", strings.NewReader(`{"name":"bench","role":"viewer"}`))
	req.AddCookie(cookie)
	req.Header.Set("X-CSRF-Token", me.CSRF)
	resp, err = client.Do(req)
	if err != nil || resp.StatusCode != 201 {
		b.Fatalf("token: %v %v", resp, err)
	}
	var tok struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	run := func(b *testing.B, path string, set func(*http.Request)) {
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("GET", r.URL+path, nil)
			set(req)
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("%s: %v %v", path, resp, err)
			}
			resp.Body.Close()
		}
	}
	b.Run("public", func(b *testing.B) { run(b, "/healthz", func(*http.Request) {}) })
	b.Run("token", func(b *testing.B) {
		run(b, "/api/v1/me", func(q *http.Request) { q.Header.Set("Authorization", "Bearer "+tok.Token) })
	})
	b.Run("session", func(b *testing.B) { run(b, "/api/v1/me", func(q *http.Request) { q.AddCookie(cookie) }) })
	b.Run("login", func(b *testing.B) {
		for b.Loop() {
			login()
		}
	})
}
