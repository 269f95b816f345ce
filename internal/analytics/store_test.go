package analytics

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// genHit is a generated event with everything the reference needs.
type genHit struct {
	visitor string
	at      time.Time
	name    string
	page    string
	props   []kv
	attrs   map[Dim]string
}

// generate makes visitors with visits of a few events each over days,
// in time order: gaps inside a visit under 30 minutes, between visits
// over. Deterministic for a seed.
func generate(seed uint64, visitors, days int) []genHit {
	return generateGaps(seed, visitors, days, 31)
}

// generateGaps is generate with the gap between a visitor's runs of events
// from minGap minutes up (under 30, two runs make one visit).
func generateGaps(seed uint64, visitors, days, minGap int) []genHit {
	r := rand.New(rand.NewPCG(seed, 1))
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	sources := []string{"", "Google", "news.example", "Reddit", "newsletter"}
	countries := []string{"", "DE", "FR", "US"}
	browsers := []string{"Chrome", "Firefox", "Safari"}
	var out []genHit
	for v := 0; v < visitors; v++ {
		vid := fmt.Sprintf("v-%d", v)
		t := start.Add(time.Duration(r.IntN(days*24*60)) * time.Minute)
		for visit := 0; visit < 1+r.IntN(4); visit++ {
			attrs := map[Dim]string{DimSource: sources[r.IntN(len(sources))], DimCountry: countries[r.IntN(len(countries))],
				DimBrowser: browsers[r.IntN(len(browsers))], DimHostname: "shop.example"}
			if attrs[DimSource] == "newsletter" {
				attrs[DimUTMSource], attrs[DimUTMCampaign] = "newsletter", "sale"
			}
			for e := 0; e < 1+r.IntN(6); e++ {
				h := genHit{visitor: vid, at: t, name: pageview, page: fmt.Sprintf("/p/%d", r.IntN(20)), attrs: attrs}
				if r.IntN(5) == 0 {
					h.name = "Signup"
					h.props = []kv{{"plan", []string{"free", "pro"}[r.IntN(2)]}}
				}
				out = append(out, h)
				t = t.Add(time.Duration(1+r.IntN(20*60)) * time.Second) // under 30 min
			}
			gap := minGap + r.IntN(3*24*60)
			if minGap < 30 && r.IntN(2) == 0 {
				gap = minGap + r.IntN(40) // often close: runs join, or a late event bridges them
			}
			t = t.Add(time.Duration(gap) * time.Minute) // a new visit, when over 30
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

func load(hs []genHit) *Store {
	s := NewStore(30 * time.Minute)
	loadInto(s, hs)
	return s
}

func loadInto(s *Store, hs []genHit) {
	for _, g := range hs {
		h := &hit{at: g.at, visitor: hashVisitor(g.visitor), name: g.name, page: g.page, props: g.props}
		for d, v := range g.attrs {
			h.visit[d] = v
		}
		s.mu.Lock()
		s.add(h)
		s.mu.Unlock()
	}
}

// refVisit is a visit as the reference builds it: by splitting each
// visitor's time-ordered events at gaps over 30 minutes.
type refVisit struct {
	visitor          string
	start, end       time.Time
	pageviews, other int
	hits             []genHit
	entry, exit      string
}

func refVisits(hs []genHit) []*refVisit {
	by := map[string][]genHit{}
	for _, h := range hs {
		by[h.visitor] = append(by[h.visitor], h)
	}
	var out []*refVisit
	for v, evs := range by {
		var cur *refVisit
		for _, h := range evs {
			if cur == nil || h.at.Sub(cur.end) > 30*time.Minute {
				cur = &refVisit{visitor: v, start: h.at}
				out = append(out, cur)
			}
			cur.end = h.at
			cur.hits = append(cur.hits, h)
			if h.name == pageview {
				cur.pageviews++
				if cur.entry == "" {
					cur.entry = h.page
				}
				cur.exit = h.page
			} else {
				cur.other++
			}
		}
	}
	return out
}

// refValue is a dimension's value for a hit in its visit.
func refValue(v *refVisit, h genHit, d Dim) string {
	switch d {
	case DimPage:
		return h.page
	case DimEvent:
		return h.name
	case DimEntryPage:
		return v.entry
	case DimExitPage:
		return v.exit
	}
	return v.hits[0].attrs[d] // a visit's dimensions are its first event's
}

func refPass(v *refVisit, h genHit, fs []Filter) (visitOK, eventOK bool) {
	visitOK, eventOK = true, true
	for _, f := range fs {
		if f.Prop != "" {
			found := false
			for _, p := range h.props {
				if p.k == f.Prop && f.match(p.v) {
					found = true
				}
			}
			if found == f.negated() {
				eventOK = false
			}
			continue
		}
		ok := f.match(refValue(v, h, f.Dim)) != f.negated()
		if !ok {
			if f.Dim.eventLevel() {
				eventOK = false
			} else {
				visitOK = false
			}
		}
	}
	return
}

// reference computes Aggregate the slow way.
func reference(hs []genHit, q Query) Totals {
	visits := refVisits(hs)
	from, to := time.UnixMilli(q.From), time.UnixMilli(q.To)
	eventFilters := false
	for _, f := range q.Filters {
		if f.Dim.eventLevel() || f.Prop != "" {
			eventFilters = true
		}
	}
	visitors := map[string]bool{}
	var t Totals
	var bounces int
	var dur time.Duration
	for _, v := range visits {
		matched := false
		for _, h := range v.hits {
			if h.at.Before(from) || !h.at.Before(to) {
				continue
			}
			vok, eok := refPass(v, h, q.Filters)
			if !vok || !eok {
				continue
			}
			matched = true
			visitors[v.visitor] = true
			if h.name == pageview {
				t.Pageviews++
			} else {
				t.Events++
			}
		}
		if v.start.Before(from) || !v.start.Before(to) {
			continue
		}
		if vok, _ := refPass(v, v.hits[0], withoutEventFilters(q.Filters)); !vok {
			continue
		}
		if eventFilters && !matched {
			continue
		}
		t.Visits++
		dur += v.end.Sub(v.start)
		if v.pageviews <= 1 && v.other == 0 {
			bounces++
		}
	}
	t.Visitors = len(visitors)
	if t.Visits > 0 {
		t.ViewsPerVisit = round2(float64(t.Pageviews) / float64(t.Visits))
		t.BounceRate = round2(100 * float64(bounces) / float64(t.Visits))
		t.VisitDuration = round2(dur.Seconds() / float64(t.Visits))
	}
	return t
}

func withoutEventFilters(fs []Filter) []Filter {
	var out []Filter
	for _, f := range fs {
		if !f.Dim.eventLevel() && f.Prop == "" {
			out = append(out, f)
		}
	}
	return out
}

func mustFilters(t *testing.T, s string) []Filter {
	t.Helper()
	fs, err := ParseFilters(s)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// TestAggregateAgainstBruteForce: the store's totals equal a brute-force
// count over the raw events, for ranges and filters of every kind.
func TestAggregateAgainstBruteForce(t *testing.T) {
	hs := generate(7, 400, 14)
	s := load(hs)
	day := func(d int) int64 { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC).UnixMilli() }
	for _, rg := range [][2]int64{{day(1), day(15)}, {day(3), day(4)}, {day(5), day(12)}} {
		for _, f := range []string{"", "source==Google", "page==/p/3", "page==/p/1*", "prop:plan==pro", "event==Signup",
			"country!=DE", "page~/P/1", "utm_campaign==sale;browser==Firefox", "entry_page==/p/2", "exit_page!=/p/2", "prop:plan!=pro", "page!~/p/1"} {
			q := Query{From: rg[0], To: rg[1], Filters: mustFilters(t, f)}
			got, want := s.Aggregate(q), reference(hs, q)
			if got != want {
				t.Errorf("range %s..%s filters %q:\n got  %+v\n want %+v", time.UnixMilli(rg[0]).UTC().Format(time.DateOnly),
					time.UnixMilli(rg[1]).UTC().Format(time.DateOnly), f, got, want)
			}
		}
	}
}

// TestTimeseriesAndBreakdownSumUp: a day's timeseries point is that day's
// aggregate, and a breakdown's rows partition the page views and visits.
func TestTimeseriesAndBreakdownSumUp(t *testing.T) {
	hs := generate(11, 300, 10)
	s := load(hs)
	from := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	q := Query{From: from.UnixMilli(), To: from.AddDate(0, 0, 7).UnixMilli()}
	pts := s.Timeseries(q, Day)
	if len(pts) != 7 {
		t.Fatalf("%d points", len(pts))
	}
	for i, p := range pts {
		dq := Query{From: from.AddDate(0, 0, i).UnixMilli(), To: from.AddDate(0, 0, i+1).UnixMilli()}
		if want := reference(hs, dq); p.Totals != want {
			t.Errorf("day %d: %+v, want %+v", i, p.Totals, want)
		}
	}
	total := s.Aggregate(q)
	for _, d := range []Dim{DimSource, DimCountry, DimPage, DimEntryPage, DimBrowser} {
		rows, n := s.Breakdown(q, d, "", 1000, 1)
		if n != len(rows) {
			t.Fatalf("%s: %d rows of %d", d, len(rows), n)
		}
		pvs, visits := 0, 0
		for _, r := range rows {
			pvs += r.Pageviews
			visits += r.Visits
			// Each row is the aggregate with that value as a filter.
			if r.Value == "" {
				continue
			}
			fq := q
			fq.Filters = []Filter{{Dim: d, Op: OpIs, Values: []string{r.Value}}}
			want := reference(hs, fq)
			if r.Visitors != want.Visitors || r.Pageviews != want.Pageviews || !d.eventLevel() && (r.Visits != want.Visits || r.BounceRate != want.BounceRate) {
				t.Errorf("%s=%s: %+v, want %+v", d, r.Value, r.Totals, want)
			}
		}
		if pvs != total.Pageviews || !d.eventLevel() && visits != total.Visits {
			t.Errorf("%s: rows sum to %d page views and %d visits, totals %d and %d", d, pvs, visits, total.Pageviews, total.Visits)
		}
	}
	rows, _ := s.Breakdown(q, DimEvent, "plan", 10, 1)
	if len(rows) != 2 || !(rows[0].Value == "free" || rows[0].Value == "pro") {
		t.Fatalf("prop breakdown: %+v", rows)
	}
	if rows, n := s.Breakdown(q, DimEvent, "nosuch", 10, 1); len(rows) != 0 || n != 0 {
		t.Fatalf("unknown prop: %+v", rows)
	}
	// Paging: every page of every size is the same slice of the whole
	// ordering (for an event's dimension only the rows that can make the
	// page are counted, which must not change which rows those are).
	for _, c := range []struct {
		dim  Dim
		prop string
	}{{DimPage, ""}, {DimEvent, ""}, {DimEvent, "plan"}, {DimSource, ""}} {
		all, n := s.Breakdown(q, c.dim, c.prop, 1000, 1)
		if n != len(all) {
			t.Fatalf("%s: %d of %d", c.dim, len(all), n)
		}
		for _, limit := range []int{1, 2, 3, 5, 7} {
			for page := 1; (page-1)*limit < n+limit; page++ {
				got, _ := s.Breakdown(q, c.dim, c.prop, limit, page)
				lo, hi := min((page-1)*limit, n), min(page*limit, n)
				if fmt.Sprint(got) != fmt.Sprint(all[lo:hi]) {
					t.Fatalf("%s%s limit %d page %d:\n got  %+v\n want %+v", c.dim, c.prop, limit, page, got, all[lo:hi])
				}
			}
		}
	}
}

// TestBucketsAndManyGroups: hourly and weekly points are their periods'
// aggregates, and breakdowns over more than 64 values (past what one
// word of marks per visitor holds) match brute force.
func TestBucketsAndManyGroups(t *testing.T) {
	hs := generate(13, 300, 21)
	r := rand.New(rand.NewPCG(5, 5))
	visits := map[string]map[Dim]string{} // each visit's attributes, with a referrer of 150
	for i := range hs {
		hs[i].page = fmt.Sprintf("/many/%d", r.IntN(150))
		key := fmt.Sprintf("%p", hs[i].attrs)
		if _, ok := visits[key]; !ok {
			attrs := maps.Clone(hs[i].attrs)
			attrs[DimReferrer] = fmt.Sprintf("ref.example/%d", r.IntN(150))
			visits[key] = attrs
		}
		hs[i].attrs = visits[key]
	}
	s := load(hs)
	from := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		iv   Interval
		to   time.Time
		step func(time.Time) time.Time
	}{
		{Hour, from.Add(30 * time.Hour), func(t time.Time) time.Time { return t.Add(time.Hour) }},
		{Week, from.AddDate(0, 0, 14), func(t time.Time) time.Time { return t.AddDate(0, 0, 7) }},
		// Whole days without filters: answered from the day rollups.
		{Day, from.AddDate(0, 0, 25), func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{Month, from.AddDate(0, 2, 0), func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
	} {
		q := Query{From: from.UnixMilli(), To: c.to.UnixMilli()}
		start := time.UnixMilli(c.iv.bucket(q.From)).UTC()
		for i, p := range s.Timeseries(q, c.iv) {
			lo, hi := start, c.step(start)
			if lo.Before(from) {
				lo = from
			}
			if hi.After(c.to) {
				hi = c.to
			}
			if want := reference(hs, Query{From: lo.UnixMilli(), To: hi.UnixMilli()}); p.Totals != want {
				t.Errorf("%s %d (%s): %+v, want %+v", c.iv, i, lo, p.Totals, want)
			}
			start = c.step(start)
		}
	}
	// Totals over whole days (rollups) and over the same days less a
	// millisecond (a scan) against brute force.
	for _, days := range []int{1, 7, 30} {
		for _, cut := range []int64{0, 1} {
			q := Query{From: from.UnixMilli(), To: from.AddDate(0, 0, days).UnixMilli() - cut}
			if got, want := s.Aggregate(q), reference(hs, q); got != want {
				t.Errorf("aggregate over %d days less %d ms: %+v, want %+v", days, cut, got, want)
			}
		}
	}
	q := Query{From: from.UnixMilli(), To: from.AddDate(0, 0, 14).UnixMilli()}
	for _, d := range []Dim{DimPage, DimReferrer} {
		for _, limit := range []int{10, 40, 1000} {
			rows, _ := s.Breakdown(q, d, "", limit, 1)
			if limit == 1000 && len(rows) <= 64 {
				t.Fatalf("%s: %d rows, want over 64", d, len(rows))
			}
			for _, row := range rows {
				fq := q
				fq.Filters = []Filter{{Dim: d, Op: OpIs, Values: []string{row.Value}}}
				if row.Value == "" {
					continue // "is empty" has no filter to check it by
				}
				if want := reference(hs, fq); row.Visitors != want.Visitors || row.Pageviews != want.Pageviews {
					t.Errorf("%s=%s (limit %d): %+v, want %+v", d, row.Value, limit, row.Totals, want)
				}
			}
		}
	}
}

// TestLateEvents: an event that arrives late joins its visit when within
// the timeout of it, and otherwise gets a visit of its own without
// disturbing the current one.
func TestLateEvents(t *testing.T) {
	s := NewStore(30 * time.Minute)
	t0 := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	add := func(at time.Time, page string) {
		s.mu.Lock()
		s.add(&hit{at: at, visitor: 1, name: pageview, page: page})
		s.mu.Unlock()
	}
	add(t0, "/a")
	add(t0.Add(10*time.Minute), "/b")
	add(t0.Add(-5*time.Minute), "/late") // within: joins, becomes the entry page
	add(t0.Add(-3*time.Hour), "/old")    // far older: its own visit
	add(t0.Add(20*time.Minute), "/c")    // the current visit goes on
	q := Query{From: t0.Add(-24 * time.Hour).UnixMilli(), To: t0.Add(24 * time.Hour).UnixMilli()}
	if got := s.Aggregate(q); got.Visits != 2 || got.Pageviews != 5 || got.Visitors != 1 {
		t.Fatalf("%+v", got)
	}
	rows, _ := s.Breakdown(q, DimEntryPage, "", 10, 1)
	entries := map[string]int{}
	for _, r := range rows {
		entries[r.Value] = r.Visits
	}
	if entries["/late"] != 1 || entries["/old"] != 1 {
		t.Fatalf("entry pages %v", entries)
	}
}

// TestArrivalOrder: events that arrive in any order make the visits that
// sorting them by time and cutting at 30-minute gaps makes: late events
// join, move a visit's start and entry dimensions, and merge two visits
// whose gap they close. Checked against the brute-force reference.
func TestArrivalOrder(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		hs := generateGaps(seed, 300, 10, 5)
		shuffled := slices.Clone(hs)
		r := rand.New(rand.NewPCG(seed, 99))
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		s := load(shuffled)
		day := func(d int) int64 { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC).UnixMilli() }
		for _, rg := range [][2]int64{{day(1), day(15)}, {day(3), day(4)}, {day(4), day(9)}} {
			for _, f := range []string{"", "source==Google", "entry_page==/p/2", "exit_page!=/p/2", "page==/p/3", "country==DE;event==Signup"} {
				q := Query{From: rg[0], To: rg[1], Filters: mustFilters(t, f)}
				if got, want := s.Aggregate(q), reference(hs, q); got != want {
					t.Fatalf("seed %d, %s..%s, filters %q:\n got  %+v\n want %+v", seed, time.UnixMilli(rg[0]).UTC().Format(time.DateOnly),
						time.UnixMilli(rg[1]).UTC().Format(time.DateOnly), f, got, want)
				}
			}
		}
		// The same store, loaded in time order, gives the same breakdowns.
		inOrder := load(hs)
		q := Query{From: day(1), To: day(15)}
		for _, d := range []Dim{DimSource, DimEntryPage, DimExitPage, DimCountry} {
			a, _ := s.Breakdown(q, d, "", 100, 1)
			b, _ := inOrder.Breakdown(q, d, "", 100, 1)
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("seed %d, breakdown by %s: shuffled %v, in order %v", seed, d, a, b)
			}
		}
		if st, st2 := s.Stats(), inOrder.Stats(); st.Visits != st2.Visits {
			t.Fatalf("seed %d: %d visits shuffled, %d in order", seed, st.Visits, st2.Visits)
		}
	}
}

func TestParseFilters(t *testing.T) {
	fs, err := ParseFilters("page==/blog/**;source!=Google|Bing;utm_campaign~Sale;prop:plan!~free")
	if err != nil || len(fs) != 4 || fs[1].Op != OpIsNot || len(fs[1].Values) != 2 || fs[3].Prop != "plan" || fs[3].Op != OpNotContains {
		t.Fatalf("%+v %v", fs, err)
	}
	if !fs[0].match("/blog/a/b") || fs[0].match("/blogs") || !fs[2].match("summer-sale") {
		t.Fatal("matching")
	}
	// Patterns are literal but for * and **, and match in linear time.
	for pat, cases := range map[string]map[string]bool{
		"page==/a/*/c":       {"/a/b/c": true, "/a/b/d/c": false, "/a//c": true},
		"page==/a/**/c":      {"/a/b/d/c": true, "/a/c": false, "/a//c": true},
		"page==/x.html":      {"/x.html": true, "/xyhtml": false},
		"page==/[a]*":        {"/[a]b": true, "/a": false},
		"page==**a**a**a**b": {strings.Repeat("a", 190): false, "aaab": true},
	} {
		f := mustFilters(t, pat)[0]
		for v, want := range cases {
			if got := f.match(v); got != want {
				t.Errorf("%s on %q: %v", pat, v, got)
			}
		}
	}
	for _, bad := range []string{"nope==x", "page=x", "page", "prop:==x", "page==/\xff", strings.Repeat("page==x;", 21)} {
		if _, err := ParseFilters(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseFilters(f *testing.F) {
	for _, s := range []string{"page==/blog/**", "source!=Google|Bing;country==DE", "prop:plan~pro", "page==**/x/**", "a", ";;", `page==a\;b|c\*`, `x==\`} {
		f.Add(s, "/blog/x/y")
	}
	esc := strings.NewReplacer(`\`, `\\`, ";", `\;`, "|", `\|`, "*", `\*`)
	f.Fuzz(func(t *testing.T, s, v string) {
		// Any value, escaped, is matched exactly.
		if utf8.ValidString(v) && len(v) <= maxValueLen && strings.TrimSpace(v) == v {
			fs, err := ParseFilters("page==" + esc.Replace(v))
			if err != nil || len(fs) != 1 || !fs[0].match(v) || (v != "" && fs[0].match(v+"x")) {
				t.Fatalf("escaped value %q: %v %+v", v, err, fs)
			}
		}
		fs, err := ParseFilters(s)
		if err != nil {
			return
		}
		for _, fl := range fs {
			_ = fl.match(v) // must not panic or hang
			again, err := ParseFilters(fl.String())
			if err != nil || len(again) != 1 || fmt.Sprint(again[0].Values) != fmt.Sprint(fl.Values) {
				t.Fatalf("%q does not parse back: %v %+v", fl.String(), err, again)
			}
		}
	})
}

// TestFilterEscapes: a backslash makes ; | * and itself plain, so any value
// can be filtered on exactly, and a filter prints back as it parses.
func TestFilterEscapes(t *testing.T) {
	fs := mustFilters(t, `page==/a\;b|/c\|d|/lit\*|/g*;source~x\\y`)
	if len(fs) != 2 || len(fs[0].Values) != 4 {
		t.Fatalf("%+v", fs)
	}
	for v, want := range map[string]bool{"/a;b": true, "/c|d": true, "/lit*": true, "/litx": false, "/gx": true, "/g/x": false, `/a\;b`: false} {
		if got := fs[0].match(v); got != want {
			t.Errorf("page %q: %v, want %v", v, got, want)
		}
	}
	if !fs[1].match(`X\Y`) || fs[1].match("xy") {
		t.Error(`source~x\\y should match a backslash between x and y, case-insensitively`)
	}
	for _, f := range fs {
		again := mustFilters(t, f.String())
		if len(again) != 1 || fmt.Sprint(again[0].Values) != fmt.Sprint(f.Values) {
			t.Errorf("%s does not round-trip: %+v", f, again)
		}
	}
}

// TestPruneGoesByEventTime: pruning while old history is folded (a
// replay, a bulk import, late SDK queues) keeps the visits a late event
// still belongs to. Pruning by the clock forgot them all, and a late event
// became a visit of its own (10M events beside DuckDB: 4 visits too many).
func TestPruneGoesByEventTime(t *testing.T) {
	hs := generateGaps(11, 300, 10, 5) // November 2026: long before the clock
	// Each event arrives up to 45 minutes late: what concurrent senders
	// and SDK queues do.
	shuffled := slices.Clone(hs)
	r := rand.New(rand.NewPCG(3, 4))
	arrive := make(map[*genHit]time.Time, len(shuffled))
	for i := range shuffled {
		arrive[&shuffled[i]] = shuffled[i].at.Add(time.Duration(r.IntN(45*60)) * time.Second)
	}
	idx := make([]int, len(shuffled))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return arrive[&shuffled[idx[a]]].Before(arrive[&shuffled[idx[b]]]) })
	ordered := make([]genHit, len(idx))
	for i, j := range idx {
		ordered[i] = shuffled[j]
	}
	shuffled = ordered
	s := NewStore(30 * time.Minute)
	for i, g := range shuffled {
		h := &hit{at: g.at, visitor: hashVisitor(g.visitor), name: g.name, page: g.page, props: g.props}
		for d, v := range g.attrs {
			h.visit[d] = v
		}
		s.mu.Lock()
		s.add(h)
		if i%25 == 0 {
			s.prune() // often, as a long replay would
		}
		s.mu.Unlock()
	}
	q := Query{From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), To: time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC).UnixMilli()}
	if got, want := s.Aggregate(q), reference(hs, q); got != want {
		t.Fatalf("pruned during a late replay:\n got  %+v\n want %+v", got, want)
	}
	if len(s.open) == 0 {
		t.Fatal("prune kept no visitor open")
	}
}

// TestBreakdownRollsAgainstBruteForce: breakdowns by page and by event
// over whole days (read from the days' rolls, the newest day scanned) and
// over the same days less a millisecond (scanned) match brute force, and
// still do after late events land in days whose rolls were made.
func TestBreakdownRollsAgainstBruteForce(t *testing.T) {
	hs := generate(17, 400, 12)
	r := rand.New(rand.NewPCG(9, 9))
	r.Shuffle(len(hs), func(i, j int) { hs[i], hs[j] = hs[j], hs[i] })
	s := NewStore(30 * time.Minute)
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	check := func(hs []genHit) {
		t.Helper()
		for _, days := range []int{3, 12, 20} { // 20 takes in the newest day
			for _, cut := range []int64{0, 1} {
				q := Query{From: from.UnixMilli(), To: from.AddDate(0, 0, days).UnixMilli() - cut}
				for _, d := range []Dim{DimPage, DimEvent} {
					all, n := s.Breakdown(q, d, "", 1000, 1)
					if n != len(all) || n == 0 {
						t.Fatalf("%s over %d days: %d rows of %d", d, days, len(all), n)
					}
					for _, row := range all {
						fq := q
						fq.Filters = []Filter{{Dim: d, Op: OpIs, Values: []string{row.Value}}}
						if want := reference(hs, fq); row.Visitors != want.Visitors || row.Pageviews != want.Pageviews || row.Events != want.Events {
							t.Errorf("%s=%s over %d days less %d ms: %+v, want %+v", d, row.Value, days, cut, row.Totals, want)
						}
					}
					// The first rows of a short page are the same rows.
					if top, _ := s.Breakdown(q, d, "", 3, 1); fmt.Sprint(top) != fmt.Sprint(all[:min(3, n)]) {
						t.Errorf("%s top 3 over %d days: %+v, want %+v", d, days, top, all[:3])
					}
				}
			}
		}
	}
	half := len(hs) / 2
	loadInto(s, hs[:half])
	check(hs[:half])
	loadInto(s, hs[half:]) // late events into days already rolled
	check(hs)
}
