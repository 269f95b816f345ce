package dnsd

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
)

// TestListSyntax: every syntax a list may use, and what each line blocks.
func TestListSyntax(t *testing.T) {
	for _, c := range []struct {
		lines   string
		blocked []string
		open    []string
		skipped int
	}{
		{"ads.example", []string{"ads.example", "x.ads.example", "ADS.Example."}, []string{"example", "notads.example", "ads.example.org"}, 0},
		{"0.0.0.0 ads.example tracker.example # ads", []string{"ads.example", "tracker.example"}, []string{"x.ads.example"}, 0},
		{"127.0.0.1 localhost\n::1 localhost ip6-localhost\n0.0.0.0 0.0.0.0", nil, []string{"localhost"}, 1},
		{"*.ads.example", []string{"x.ads.example", "a.b.ads.example"}, []string{"ads.example"}, 0},
		{"||ads.example^", []string{"ads.example", "x.ads.example"}, []string{"badads.example"}, 0},
		{"||ads.example^\n@@||ok.ads.example^", []string{"ads.example", "x.ads.example"}, []string{"ok.ads.example", "a.ok.ads.example"}, 0},
		{"||ads.example^$important\n@@||ok.ads.example^", []string{"ok.ads.example"}, nil, 0},
		{"/^ad[0-9]+\\./", []string{"ad1.example", "ad42.x.example"}, []string{"adx.example", "bad1.example"}, 0},
		{"/^ad[0-9]+\\./\n@@||ad7.example^", []string{"ad1.example"}, []string{"ad7.example"}, 0},
		{"! comment\n# comment\n[Adblock Plus 2.0]\n\n", nil, []string{"example"}, 0},
		{"example.com##.banner\n||ads.example^$third-party\n||ads.example/path^\nads example\n/(unclosed/", nil, []string{"ads.example", "example.com"}, 5},
		{"@@good.example\ngood.example", nil, []string{"good.example"}, 0},
	} {
		f := newFilter()
		if err := f.addList(strings.NewReader(c.lines), "t"); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.blocked {
			if b, by := f.match(canonName(n)); !b || by == "" {
				t.Errorf("%q: %s not blocked", c.lines, n)
			}
		}
		for _, n := range c.open {
			if b, by := f.match(canonName(n)); b {
				t.Errorf("%q: %s blocked by %s", c.lines, n, by)
			}
		}
		if f.skipped != c.skipped {
			t.Errorf("%q: %d lines skipped, want %d", c.lines, f.skipped, c.skipped)
		}
	}
}

// TestListFromURL: a list given by URL is fetched, kept on disk with its
// ETag, asked again with If-None-Match (304: kept), kept when a refresh
// fails, replaced when it changes, and read from disk by a restart while
// its host is down.
func TestListFromURL(t *testing.T) {
	var mu sync.Mutex
	body, etag, fail := "||ads.example^\n", `"v1"`, false
	var conditional int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			http.Error(w, "mirror broken", http.StatusBadGateway)
			return
		}
		if r.Header.Get("If-None-Match") == etag {
			conditional++
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	dir := t.TempDir()
	cfg := config.DNSBlock{Lists: config.Strings{srv.URL + "/ads.txt"}}
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	l := newLists(cfg, dir, log)
	if err := l.load(ctx); err != nil {
		t.Fatal(err)
	}
	blocked := func(l *lists, name string) bool { b, _ := l.build().match(name); return b }
	if !blocked(l, "ads.example") {
		t.Fatal("the fetched list does not block")
	}
	if l.refresh(ctx) || conditional != 1 {
		t.Fatalf("an unchanged list: changed, or not asked with If-None-Match (%d)", conditional)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	if l.refresh(ctx) || !blocked(l, "ads.example") {
		t.Fatal("a failed refresh dropped the list")
	}
	// A restart while the mirror is down: the kept copy.
	l2 := newLists(cfg, dir, log)
	if err := l2.load(ctx); err != nil || !blocked(l2, "ads.example") {
		t.Fatalf("restart with the mirror down: %v", err)
	}
	mu.Lock()
	fail, body, etag = false, "||tracker.example^\n", `"v2"`
	mu.Unlock()
	if !l.refresh(ctx) || blocked(l, "ads.example") || !blocked(l, "tracker.example") {
		t.Fatal("a changed list was not taken")
	}
	mu.Lock()
	body = "  \n"
	etag = `"v3"`
	mu.Unlock()
	if l.refresh(ctx) || !blocked(l, "tracker.example") {
		t.Fatal("an empty list replaced a good one")
	}
}

func TestSafeTargets(t *testing.T) {
	for name, want := range map[string]string{
		"www.google.com": "forcesafesearch.google.com", "google.co.uk": "forcesafesearch.google.com", "www.google.com.au": "forcesafesearch.google.com",
		"www.google.de": "forcesafesearch.google.com", "www.bing.com": "strict.bing.com", "duckduckgo.com": "safe.duckduckgo.com",
		"m.youtube.com": "restrict.youtube.com", "mail.google.com": "", "google.example.org": "", "fonts.googleapis.com": "", "forcesafesearch.google.com": "",
	} {
		if got := safeTarget(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

func TestSchedule(t *testing.T) {
	loc, _ := time.LoadLocation("Europe/Berlin")
	work := &schedule{days: map[time.Weekday]bool{time.Monday: true, time.Friday: true}, from: 9 * 60, to: 17 * 60, loc: loc}
	night := &schedule{from: 22 * 60, to: 6 * 60, loc: time.UTC}
	at := func(s string) time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	for _, c := range []struct {
		s    *schedule
		when string
		want bool
	}{
		{work, "2026-12-07T08:30:00Z", true},  // Monday 09:30 in Berlin
		{work, "2026-12-07T07:30:00Z", false}, // 08:30 in Berlin
		{work, "2026-12-07T16:00:00Z", false}, // 17:00 in Berlin: the end is open
		{work, "2026-12-08T10:00:00Z", false}, // Tuesday
		{night, "2026-12-07T23:00:00Z", true},
		{night, "2026-12-07T05:59:00Z", true},
		{night, "2026-12-07T06:00:00Z", false},
		{nil, "2026-12-07T12:00:00Z", false},
	} {
		if got := c.s.active(at(c.when)); got != c.want {
			t.Errorf("%+v at %s: %v, want %v", c.s, c.when, got, c.want)
		}
	}
}

// TestStatsTopK: counts by domain, blocked domain and client; a bucket
// full of one-off names keeps the frequent ones (space-saving), with
// their possible error bounded; older than the window is left out.
func TestStatsTopK(t *testing.T) {
	var s stats
	now := time.Unix(1_700_000_000, 0)
	for i := 0; i < 1000; i++ {
		s.add(now, &outcome{name: "www.example.com"}, "kids")
		if i%2 == 0 {
			s.add(now, &outcome{name: "ads.example.com", blocked: true, rule: "ads.txt:3"}, "office")
		}
		s.add(now, &outcome{name: fmt.Sprintf("scan-%d.example.com", i)}, "192.0.2.0")
	}
	s.add(now.Add(-2*time.Hour), &outcome{name: "old.example.com"}, "kids")
	st := s.top(now.Add(-time.Hour), now.Add(time.Minute), 3)
	if st.Queries != 2500 || st.Blocked != 500 || len(st.TopDomains) != 3 {
		t.Fatalf("%+v", st)
	}
	if d := st.TopDomains[0]; d.Key != "www.example.com" || d.Count < 1000 || d.Count-d.MaxError > 1000 {
		t.Fatalf("top domain %+v", d)
	}
	if b := st.TopBlocked; len(b) != 1 || b[0].Key != "ads.example.com" || b[0].Count != 500 || b[0].Rule != "ads.txt:3" {
		t.Fatalf("top blocked %+v", b)
	}
	if c := st.TopClients; len(c) != 3 || c[0].Key != "kids" && c[0].Key != "192.0.2.0" {
		t.Fatalf("top clients %+v", c)
	}
	for _, d := range st.TopDomains {
		if d.Key == "old.example.com" {
			t.Fatal("a query older than the window counted")
		}
	}
}
