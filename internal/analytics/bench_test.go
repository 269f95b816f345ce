package analytics

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// benchStore is a store of n page views and custom events over 90 days
// ending now: about n/10 visitors, 50k pages (Zipf-distributed), visits of
// a few events, the dimensions' usual spread. Built once per run.
var (
	benchOnce  sync.Once
	benchS     *Store
	benchEnd   time.Time
	benchBuild time.Duration
)

func benchEvents() int {
	if s := os.Getenv("OPS_ANALYTICS_EVENTS"); s != "" {
		n, _ := strconv.Atoi(s)
		return n
	}
	return 1_000_000
}

func buildBench(n int) {
	r := rand.New(rand.NewPCG(1, 2))
	benchEnd = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	start := benchEnd.AddDate(0, 0, -90)
	pages := make([]string, 50_000)
	for i := range pages {
		pages[i] = fmt.Sprintf("/p/%d", i)
	}
	zipf := rand.NewZipf(r, 1.1, 1, uint64(len(pages)-1))
	sources := []string{"", "", "", "Google", "Bing", "news.example", "Reddit", "newsletter", "Twitter", "DuckDuckGo"}
	countries := []string{"", "US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "NL"}
	browsers := []string{"Chrome", "Safari", "Firefox", "Edge"}
	devices := []string{"desktop", "mobile", "tablet"}
	visitors := max(1, n/10)
	type vstate struct{ at time.Time }
	s := NewStore(30 * time.Minute)
	t0 := time.Now()
	// Events in time order: walk the 90 days in small steps, each step a
	// burst of visits by random visitors.
	span := benchEnd.Sub(start)
	made := 0
	for made < n {
		at := start.Add(time.Duration(float64(span) * float64(made) / float64(n)))
		v := r.IntN(visitors)
		var h hit
		h.visitor = hashVisitor(strconv.Itoa(v))
		h.visit[DimSource] = sources[r.IntN(len(sources))]
		h.visit[DimCountry] = countries[r.IntN(len(countries))]
		h.visit[DimBrowser] = browsers[r.IntN(len(browsers))]
		h.visit[DimDevice] = devices[r.IntN(len(devices))]
		h.visit[DimHostname] = "shop.example"
		if h.visit[DimSource] == "newsletter" {
			h.visit[DimUTMSource], h.visit[DimUTMCampaign] = "newsletter", "sale"
		}
		k := 1 + r.IntN(5)
		s.mu.Lock()
		for e := 0; e < k && made < n; e++ {
			hh := h
			hh.at = at.Add(time.Duration(e) * 40 * time.Second)
			hh.name, hh.page = pageview, pages[zipf.Uint64()]
			if r.IntN(10) == 0 {
				hh.name = "Signup"
				hh.props = []kv{{"plan", "pro"}}
			}
			s.add(&hh)
			made++
		}
		s.mu.Unlock()
	}
	benchBuild = time.Since(t0)
	benchS = s
}

// BenchmarkReports times the dashboard's reports over the last 30 days of
// the benchmark store, with no filter and with one.
//
//	go test -run '^$' -bench Reports -benchtime 20x ./internal/analytics
//	OPS_ANALYTICS_EVENTS=10000000 go test -run '^$' -bench Reports -benchtime 10x -timeout 30m ./internal/analytics
func BenchmarkReports(b *testing.B) {
	benchOnce.Do(func() { buildBench(benchEvents()) })
	s := benchS
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.Logf("%d events, %d visits, built in %v; heap in use %.0f MiB", s.Stats().Events, s.Stats().Visits, benchBuild.Round(time.Millisecond), float64(ms.HeapInuse)/(1<<20))
	q := Query{From: benchEnd.AddDate(0, 0, -30).UnixMilli(), To: benchEnd.UnixMilli()}
	filtered := q
	filtered.Filters = []Filter{{Dim: DimSource, Op: OpIs, Values: []string{"Google"}}}
	pageFilter := q
	pageFilter.Filters = []Filter{{Dim: DimPage, Op: OpIs, Values: []string{"/p/1"}}}
	goals, _ := ParseGoals("event==Signup;page==/p/1", 2)
	steps, _ := ParseGoals("page==/p/1*;page==/p/2*;event==Signup", 3)
	for _, c := range []struct {
		name string
		run  func()
	}{
		{"aggregate", func() { s.Aggregate(q) }},
		{"aggregate/source", func() { s.Aggregate(filtered) }},
		{"aggregate/page", func() { s.Aggregate(pageFilter) }},
		{"timeseries", func() { s.Timeseries(q, Day) }},
		{"timeseries/source", func() { s.Timeseries(filtered, Day) }},
		{"top-pages", func() { s.Breakdown(q, DimPage, "", 10, 1) }},
		{"top-pages/source", func() { s.Breakdown(filtered, DimPage, "", 10, 1) }},
		{"top-sources", func() { s.Breakdown(q, DimSource, "", 10, 1) }},
		{"countries", func() { s.Breakdown(q, DimCountry, "", 10, 1) }},
		{"goals", func() { s.Goals(q, goals) }},
		{"funnel", func() { s.Funnel(q, steps, 7*24*time.Hour) }},
		{"retention/week", func() {
			s.Retention(Query{From: benchEnd.AddDate(0, 0, -84).UnixMilli(), To: benchEnd.UnixMilli()}, Week)
		}},
		{"realtime", func() { s.Realtime(benchEnd, nil) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.run()
			}
		})
	}
}
