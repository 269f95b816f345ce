package policy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/policy"
	"github.com/opsgraph/ops/internal/testutil"
)

func TestChangeEntry(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in    policy.Change
		field string // "" when valid
		want  policy.Entry
	}{
		{policy.Change{User: "alice", For: "15m", Reason: "r"}, "", policy.Entry{Kind: "user", Subject: "alice", Action: "lock", Reason: "r", Set: now, Until: now.Add(15 * time.Minute)}},
		{policy.Change{IP: "203.0.113.9"}, "", policy.Entry{Kind: "ip", Subject: "203.0.113.9", Action: "block", Set: now}},
		{policy.Change{User: "a", IP: "1.2.3.4"}, "user, ip, path, maintenance, domain, browse", policy.Entry{}},
		{policy.Change{}, "user, ip, path, maintenance, domain or browse", policy.Entry{}},
		{policy.Change{Path: "/wp-login.php"}, "", policy.Entry{Kind: "path", Subject: "/wp-login.php", Action: "block", Set: now}},
		{policy.Change{Maintenance: "*", Reason: "upgrade"}, "", policy.Entry{Kind: "maintenance", Subject: "*", Action: "on", Reason: "upgrade", Set: now}},
		{policy.Change{IP: "198.51.100.4", Action: "rate", Rate: 2}, "", policy.Entry{Kind: "ip", Subject: "198.51.100.4", Action: "rate", Rate: 2, Set: now}},
		{policy.Change{IP: "198.51.100.4", Action: "rate"}, "rate", policy.Entry{}},
		{policy.Change{Path: "/x", Action: "lock"}, "action", policy.Entry{}},
		{policy.Change{User: "a", Action: "ban"}, "action", policy.Entry{}},
		{policy.Change{User: "a", For: "-1m"}, "for", policy.Entry{}},
		{policy.Change{User: "a", For: "soon"}, "for", policy.Entry{}},
	} {
		got, err := c.in.Entry(now)
		if c.field != "" {
			if err == nil || !strings.HasPrefix(err.Error(), c.field+":") {
				t.Errorf("%+v: error %v, want one naming %s", c.in, err, c.field)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%+v: %+v %v, want %+v", c.in, got, err, c.want)
		}
	}
	for in, want := range map[string]string{"203.0.113.9": "203.0.113.0", "2001:db8:1:2::1": "2001:db8:1::"} {
		if got, err := policy.Normalize(policy.IP, in); err != nil || got != want {
			t.Errorf("Normalize(%s) = %s %v", in, got, err)
		}
	}
	if _, err := policy.Normalize(policy.IP, "not-an-ip"); err == nil {
		t.Error("bad ip accepted")
	}
	if _, err := policy.Normalize("planet", "/x"); err == nil {
		t.Error("unknown kind accepted")
	}
	if _, err := policy.Normalize("path", "no-slash"); err == nil {
		t.Error("relative path accepted")
	}
	if got, err := policy.Normalize(policy.Domain, " Phish.Example.NET. "); err != nil || got != "phish.example.net" {
		t.Errorf("Normalize(domain) = %q %v, want the resolver's form", got, err)
	}
	for _, bad := range []string{"", ".", "a..b", "*.ads.example", "ads example", strings.Repeat("a", 64) + ".com"} {
		if _, err := policy.Normalize(policy.Domain, bad); err == nil {
			t.Errorf("domain %q accepted", bad)
		}
	}
}

// TestEventsApply: ev.policy.set and ev.policy.clear published on the bus
// change the bucket; a bad event is skipped without holding up the rest.
func TestEventsApply(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, nil)
	post := func(evs ...map[string]any) {
		b, _ := json.Marshal(evs)
		resp, err := http.Post(r.URL+"/api/v1/events", "application/cloudevents-batch+json", bytes.NewReader(b))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("publish: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	ev := func(id, typ string, data map[string]any) map[string]any {
		return map[string]any{"specversion": "1.0", "id": id, "source": "/test", "type": typ, "data": data}
	}
	post(ev("1", "policy.set", map[string]any{"user": "x", "action": "explode"}),
		ev("2", "policy.set", map[string]any{"ip": "198.51.100.23", "for": "1h", "reason": "scanner"}),
		ev("3", "policy.set", map[string]any{"user": "mallory"}))
	// entries waits until the policy list has n entries and returns them.
	entries := func(n int) []map[string]any {
		var l struct{ Entries []map[string]any }
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			l.Entries = nil
			resp, err := http.Get(r.URL + "/api/v1/policy")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_ = json.NewDecoder(resp.Body).Decode(&l)
			if len(l.Entries) != n {
				return &countErr{len(l.Entries)}
			}
			return nil
		})
		return l.Entries
	}
	es := entries(2)
	if es[0]["subject"] != "198.51.100.0" || es[0]["reason"] != "scanner" || es[0]["active"] != true || es[1]["subject"] != "mallory" || es[1]["action"] != "lock" {
		t.Fatalf("entries: %+v", es)
	}
	post(ev("4", "policy.clear", map[string]any{"user": "mallory"}))
	entries(1)
	// The API names the field at fault.
	for path, body := range map[string]string{
		"/api/v1/policy/user/x":     `{"for":"soon"}`,
		"/api/v1/policy/ip/nope":    `{}`,
		"/api/v1/policy/planet/x":   `{}`,
		"/api/v1/policy/user/alice": `{"action":1}`,
	} {
		req, _ := http.NewRequest("PUT", r.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error, Field string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || e.Field == "" {
			t.Errorf("PUT %s %s: %d %+v", path, body, resp.StatusCode, e)
		}
	}
}

type countErr struct{ n int }

func (e *countErr) Error() string { return "count " + string(rune('0'+e.n)) }

// FuzzChange: event data from the graph is outside input.
func FuzzChange(f *testing.F) {
	f.Add(`{"user":"alice","for":"15m"}`)
	f.Add(`{"ip":"::1","action":"block"}`)
	f.Add(`{"ip":"1.2.3.4","user":"x"}`)
	f.Add(`{"for":"99999999999h"}`)
	f.Fuzz(func(t *testing.T, data string) {
		var c policy.Change
		if json.Unmarshal([]byte(data), &c) != nil {
			return
		}
		e, err := c.Entry(time.Now())
		if err != nil {
			return
		}
		if e.Kind == "" || e.Action == "" || e.Action == "rate" && e.Rate <= 0 {
			t.Fatalf("accepted %+v", e)
		}
		if !e.Until.IsZero() && !e.Until.After(e.Set) {
			t.Fatalf("until before set: %+v", e)
		}
		_, _ = policy.Normalize(e.Kind, e.Subject)
	})
}

// TestNormalizePath: a path block is stored in the canonical form the
// proxy matches requests in (docs/proxy.md), so any spelling blocks the
// path it names.
func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/wp-login.php":       "/wp-login.php",
		"//x/../wp-login.php": "/wp-login.php",
		"/%77p-login.php":     "/wp-login.php",
		"/admin/":             "/admin/",
		"/a%2Fb":              "/a%2Fb",
		"wp-login.php":        "",
		"/x?y":                "",
	} {
		got, err := policy.Normalize(policy.Path, in)
		if want == "" {
			if err == nil {
				t.Errorf("%q: %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
}

// TestNormalizeBrowse: a forward proxy entry is stored in the form the
// proxy matches: lower-case A-label host, canonical path, group kept.
func TestNormalizeBrowse(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":                 "example.com",
		"Example.COM.":                "example.com",
		"staff:bücher.example/a/../b": "staff:xn--bcher-kva.example/b",
		"staff:example.com/%6Eews":    "staff:example.com/news",
		"example.com/":                "example.com",
		":example.com":                "",
		"example.com/x?y":             "",
		"exa mple.com":                "",
		"":                            "",
	} {
		got, err := policy.Normalize(policy.Browse, in)
		if want == "" {
			if err == nil {
				t.Errorf("%q: %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := (policy.Change{Browse: "example.com", Action: "lock"}).Entry(time.Now()); err == nil {
		t.Error("browse with action lock: no error")
	}
}
