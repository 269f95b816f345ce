package analytics

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func mustGoals(t *testing.T, s string) []Goal {
	t.Helper()
	gs, err := ParseGoals(s, maxSteps)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// selectedHits is q's events the slow way: in range and passing the
// filters, each with its visit.
func selectedHits(hs []genHit, q Query) map[string][]genHit {
	out := map[string][]genHit{}
	for _, v := range refVisits(hs) {
		for _, h := range v.hits {
			if h.at.UnixMilli() < q.From || h.at.UnixMilli() >= q.To {
				continue
			}
			if vok, eok := refPass(v, h, q.Filters); vok && eok {
				out[v.visitor] = append(out[v.visitor], h)
			}
		}
	}
	for _, evs := range out {
		slices.SortStableFunc(evs, func(a, b genHit) int { return a.at.Compare(b.at) })
	}
	return out
}

func refHit(g Goal, h genHit) bool {
	f := g.filter
	if f.Dim == DimPage {
		return h.name == pageview && f.match(h.page) != f.negated()
	}
	return h.name != pageview && f.match(h.name) != f.negated()
}

// TestGoalsAgainstBruteForce: unique and total conversions, and the rate
// over the range's visitors, equal a count over the raw events.
func TestGoalsAgainstBruteForce(t *testing.T) {
	hs := generate(21, 300, 14)
	s := load(hs)
	day := func(d int) int64 { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC).UnixMilli() }
	goals := mustGoals(t, "event==Signup;page==/p/1*;page==/p/7;page!=/p/7;event==Nope")
	for _, f := range []string{"", "source==Google", "prop:plan==pro", "page==/p/1*"} {
		q := Query{From: day(2), To: day(9), Filters: mustFilters(t, f)}
		sel := selectedHits(hs, q)
		var want []Conversion
		for _, g := range goals {
			c := Conversion{Goal: g.Name}
			for _, evs := range sel {
				n := 0
				for _, h := range evs {
					if refHit(g, h) {
						n++
					}
				}
				c.Events += n
				if n > 0 {
					c.Visitors++
				}
			}
			if len(sel) > 0 {
				c.ConversionRate = round2(100 * float64(c.Visitors) / float64(len(sel)))
			}
			want = append(want, c)
		}
		if got := s.Goals(q, goals); !reflect.DeepEqual(got, want) {
			t.Errorf("filters %q:\n got  %+v\n want %+v", f, got, want)
		}
	}
}

// refFunnel is the furthest step each visitor reached, trying every start.
func refFunnel(sel map[string][]genHit, steps []Goal, window time.Duration) []int {
	reached := make([]int, len(steps))
	for _, evs := range sel {
		depth := 0
		for i, h := range evs {
			if !refHit(steps[0], h) {
				continue
			}
			d, at := 1, i
			for d < len(steps) {
				next := -1
				for k := at + 1; k < len(evs) && evs[k].at.Sub(h.at) <= window; k++ {
					if refHit(steps[d], evs[k]) {
						next = k
						break
					}
				}
				if next < 0 {
					break
				}
				d, at = d+1, next
			}
			depth = max(depth, d)
		}
		for j := 0; j < depth; j++ {
			reached[j]++
		}
	}
	return reached
}

// TestFunnelAgainstBruteForce: the visitors reaching each step equal a
// search over every visitor's every start.
func TestFunnelAgainstBruteForce(t *testing.T) {
	hs := generate(5, 400, 14)
	s := load(hs)
	day := func(d int) int64 { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC).UnixMilli() }
	for _, steps := range []string{"page==/p/1;page==/p/2", "page==/p/1*;event==Signup;page==/p/3", "page==/**;page==/**;page==/**;event==Signup"} {
		for _, window := range []time.Duration{10 * time.Minute, time.Hour, 7 * 24 * time.Hour} {
			for _, f := range []string{"", "browser==Firefox"} {
				q := Query{From: day(1), To: day(15), Filters: mustFilters(t, f)}
				gs := mustGoals(t, steps)
				got := s.Funnel(q, gs, window)
				want := refFunnel(selectedHits(hs, q), gs, window)
				if want[0] == 0 || want[len(want)-1] == want[0] {
					t.Fatalf("steps %q window %s: the data does not exercise the funnel (%v)", steps, window, want)
				}
				for j := range got {
					if got[j].Visitors != want[j] {
						t.Errorf("steps %q window %s filters %q: step %d: got %d visitors, want %d", steps, window, f, j+1, got[j].Visitors, want[j])
					}
				}
			}
		}
	}
}

// TestFunnelKnownAnswers: order, the window, repeated starts and one
// event per step, on events with known answers.
func TestFunnelKnownAnswers(t *testing.T) {
	t0 := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	pv := func(v string, m int, page string) genHit {
		return genHit{visitor: v, at: at(m), name: pageview, page: page}
	}
	ev := func(v string, m int, name string) genHit { return genHit{visitor: v, at: at(m), name: name} }
	hs := []genHit{
		// a: the whole funnel.
		pv("a", 0, "/"), pv("a", 1, "/pricing"), ev("a", 2, "Signup"),
		// b: pricing before home: only step 1.
		pv("b", 0, "/pricing"), pv("b", 1, "/"),
		// c: signs up 3 hours after the home page: outside a 2-hour window
		// from that start; a second start at 200 min completes it.
		pv("c", 0, "/"), pv("c", 10, "/pricing"), ev("c", 180, "Signup"),
		pv("c", 200, "/"), pv("c", 201, "/pricing"), ev("c", 202, "Signup"),
		// d: home and pricing, no signup.
		pv("d", 0, "/"), pv("d", 5, "/pricing"),
		// e: never home.
		pv("e", 0, "/pricing"), ev("e", 1, "Signup"),
	}
	slices.SortStableFunc(hs, func(a, b genHit) int { return a.at.Compare(b.at) })
	s := load(hs)
	q := Query{From: t0.Add(-time.Hour).UnixMilli(), To: t0.Add(24 * time.Hour).UnixMilli()}
	got := s.Funnel(q, mustGoals(t, "page==/;page==/pricing;event==Signup"), 2*time.Hour)
	want := []FunnelStep{
		{Step: "page==/", Visitors: 4, ConversionRate: 100},
		{Step: "page==/pricing", Visitors: 3, ConversionRate: 75, DropOff: 1, DropOffRate: 25},
		{Step: "event==Signup", Visitors: 2, ConversionRate: 50, DropOff: 1, DropOffRate: 33.33},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// A step may repeat: one event is one step.
	got = s.Funnel(q, mustGoals(t, "page==/;page==/"), 24*time.Hour)
	if got[0].Visitors != 4 || got[1].Visitors != 1 { // only c saw / twice
		t.Errorf("repeated step: %+v", got)
	}
}

// TestRetentionAgainstBruteForce: each cohort's size and returning
// visitors per period equal a count over the raw visits.
func TestRetentionAgainstBruteForce(t *testing.T) {
	hs := generate(9, 500, 28)
	s := load(hs)
	day := func(d int) int64 { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC).UnixMilli() }
	for _, iv := range []Interval{Day, Week} {
		for _, f := range []string{"", "country==FR", "event==Signup"} {
			q := Query{From: day(3), To: day(24), Filters: mustFilters(t, f)}
			got := s.Retention(q, iv)
			want := refRetention(hs, q, iv)
			if len(got) != len(want) {
				t.Fatalf("%s %q: %d cohorts, want %d", iv, f, len(got), len(want))
			}
			total := 0
			for i := range got {
				total += got[i].Visitors
				if got[i].Visitors != want[i].Visitors || !slices.Equal(got[i].Returning, want[i].Returning) {
					t.Errorf("%s %q cohort %s: got %d %v, want %d %v", iv, f, got[i].Start.Format(time.DateOnly),
						got[i].Visitors, got[i].Returning, want[i].Visitors, want[i].Returning)
				}
			}
			if total == 0 {
				t.Errorf("%s %q: no visitors in any cohort", iv, f)
			}
		}
	}
}

func refRetention(hs []genHit, q Query, iv Interval) []Cohort {
	var starts []int64
	for b := iv.bucket(q.From); b < q.To; b = iv.next(b) {
		starts = append(starts, b)
	}
	idx := func(ms int64) int {
		i := len(starts) - 1
		for i >= 0 && starts[i] > ms {
			i--
		}
		return i
	}
	evFilters := len(withoutEventFilters(q.Filters)) != len(q.Filters)
	var visits []*refVisit
	for _, v := range refVisits(hs) {
		if v.start.UnixMilli() >= q.To {
			continue
		}
		if vok, _ := refPass(v, v.hits[0], withoutEventFilters(q.Filters)); !vok {
			continue
		}
		matched := !evFilters
		for _, h := range v.hits {
			if _, eok := refPass(v, h, q.Filters); eok && h.at.UnixMilli() < q.To {
				matched = true
			}
		}
		if matched {
			visits = append(visits, v)
		}
	}
	first := map[string]int64{}
	for _, v := range visits {
		if f, ok := first[v.visitor]; !ok || v.start.UnixMilli() < f {
			first[v.visitor] = v.start.UnixMilli()
		}
	}
	out := make([]Cohort, len(starts))
	for i := range out {
		out[i].Returning = make([]int, len(starts)-i)
	}
	for _, f := range first {
		if f >= starts[0] {
			out[idx(f)].Visitors++
		}
	}
	type key struct {
		v string
		p int
	}
	seen := map[key]bool{}
	for _, v := range visits {
		f := first[v.visitor]
		if f < starts[0] {
			continue
		}
		c, p := idx(f), idx(v.start.UnixMilli())
		if !seen[key{v.visitor, p}] {
			seen[key{v.visitor, p}] = true
			out[c].Returning[p-c]++
		}
	}
	return out
}

func TestParseGoals(t *testing.T) {
	for _, bad := range []string{"source==Google", "prop:plan==pro", "page", "visits==3"} {
		if _, err := ParseGoals(bad, maxSteps); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	gs, err := ParseGoals("page==/thanks; event==Signup|Purchase", maxSteps)
	if err != nil || len(gs) != 2 || gs[1].Name != "event==Signup|Purchase" {
		t.Fatalf("got %+v, %v", gs, err)
	}
}
