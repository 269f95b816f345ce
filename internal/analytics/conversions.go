package analytics

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// A Goal is a conversion: a page view whose page matches (page==/thanks,
// page==/blog/**) or a custom event by name (event==Signup). It is written
// in the filters' syntax, with one filter on page or event.
type Goal struct {
	Name   string `json:"goal"`
	filter Filter
}

// ParseGoal reads a goal.
func ParseGoal(s string) (Goal, error) {
	f, err := parseFilter(s)
	if err != nil {
		return Goal{}, err
	}
	if f.Prop != "" || (f.Dim != DimPage && f.Dim != DimEvent) {
		return Goal{}, &FilterError{Filter: s, Msg: "a goal is page==<pattern> or event==<name>"}
	}
	return Goal{Name: s, filter: f}, nil
}

// ParseGoals reads goals joined by ";".
func ParseGoals(s string, most int) ([]Goal, error) {
	fs, err := ParseFilters(s)
	if err != nil {
		return nil, err
	}
	if len(fs) > most {
		return nil, &FilterError{Filter: s, Msg: fmt.Sprintf("more than %d", most)}
	}
	out := make([]Goal, 0, len(fs))
	for _, f := range fs {
		g, err := ParseGoal(f.String())
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// goalMatch is a goal bound to the store's dictionaries.
type goalMatch struct {
	page bool   // matches page views by page; else events by name
	ok   []bool // by dictionary id
}

func (s *Store) bindGoal(g Goal) goalMatch {
	f := g.filter
	d := s.dicts[f.Dim]
	m := goalMatch{page: f.Dim == DimPage, ok: make([]bool, d.len())}
	for id, v := range d.vals {
		m.ok[id] = f.match(v) != f.negated()
	}
	return m
}

func (m *goalMatch) hit(d *day, i int, pv uint32) bool {
	if m.page {
		return d.name[i] == pv && m.ok[d.page[i]]
	}
	return d.name[i] != pv && m.ok[d.name[i]]
}

// Conversion is a goal's result.
type Conversion struct {
	Goal           string  `json:"goal"`
	Visitors       int     `json:"visitors"`        // unique conversions
	Events         int     `json:"events"`          // total conversions
	ConversionRate float64 `json:"conversion_rate"` // percent of the range's visitors
}

// Goals counts each goal's conversions among q's events.
func (s *Store) Goals(q Query, goals []Goal) []Conversion {
	s.mu.RLock()
	defer s.mu.RUnlock()
	x := s.bind(q)
	ms := make([]goalMatch, len(goals))
	for i, g := range goals {
		ms[i] = s.bindGoal(g)
	}
	out := make([]Conversion, len(goals))
	ids := make([]uint32, len(goals))
	for i := range ids {
		ids[i] = uint32(i)
	}
	c := s.newCounter(ids)
	pv := s.pageviewID()
	x.scan(func(d *day, i int, sid uint32) {
		for gi := range ms {
			if ms[gi].hit(d, i, pv) {
				out[gi].Events++
				if c.add(uint32(gi), s.sVisitor[sid]) {
					out[gi].Visitors++
				}
			}
		}
	})
	all := s.visitorsOfSeen(x)
	for i := range out {
		out[i].Goal = goals[i].Name
		if all > 0 {
			out[i].ConversionRate = round2(100 * float64(out[i].Visitors) / float64(all))
		}
	}
	return out
}

// maxSteps bounds a funnel.
const maxSteps = 16

// FunnelStep is one step's result.
type FunnelStep struct {
	Step           string  `json:"step"`
	Visitors       int     `json:"visitors"`        // who reached it
	ConversionRate float64 `json:"conversion_rate"` // percent of the first step's
	DropOff        int     `json:"dropoff"`         // who reached the step before and not this one
	DropOffRate    float64 `json:"dropoff_rate"`    // percent of the step before's
}

// Funnel counts the visitors who went through steps in order, each step
// after the one before and all within window of the first. A visitor who
// started the funnel several times counts once, at the furthest step any
// of the starts reached. Steps are q's events in the range, in time order
// (the order they came for equal times); one event is one step.
func (s *Store) Funnel(q Query, steps []Goal, window time.Duration) []FunnelStep {
	s.mu.RLock()
	defer s.mu.RUnlock()
	x := s.bind(q)
	ms := make([]goalMatch, len(steps))
	for i, g := range steps {
		ms[i] = s.bindGoal(g)
	}
	type stepHit struct {
		visitor uint32
		at      int64
		ord     uint32 // arrival order, for equal times
		mask    uint32
	}
	hits := make([]stepHit, 0, x.size()/4)
	pv := s.pageviewID()
	x.scan(func(d *day, i int, sid uint32) {
		var mask uint32
		for j := range ms {
			if ms[j].hit(d, i, pv) {
				mask |= 1 << j
			}
		}
		if mask != 0 {
			hits = append(hits, stepHit{s.sVisitor[sid], d.at[i], uint32(len(hits)), mask})
		}
	})
	slices.SortFunc(hits, func(a, b stepHit) int {
		if c := cmp.Compare(a.visitor, b.visitor); c != 0 {
			return c
		}
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.ord, b.ord)
	})
	// Per visitor, in time order: best[j] is the latest start of a run that
	// has reached step j. A later start leaves more of the window, so it is
	// the only one worth keeping.
	reached := make([]int, len(steps))
	best := make([]int64, len(steps))
	w := window.Milliseconds()
	for lo := 0; lo < len(hits); {
		hi := lo
		for i := range best {
			best[i] = math.MinInt64
		}
		for ; hi < len(hits) && hits[hi].visitor == hits[lo].visitor; hi++ {
			h := hits[hi]
			for j := len(steps) - 1; j >= 1; j-- {
				if h.mask&(1<<j) != 0 && best[j-1] != math.MinInt64 && h.at-best[j-1] <= w && best[j-1] > best[j] {
					best[j] = best[j-1]
				}
			}
			if h.mask&1 != 0 {
				best[0] = h.at
			}
		}
		for j := range best {
			if best[j] != math.MinInt64 {
				reached[j]++
			}
		}
		lo = hi
	}
	out := make([]FunnelStep, len(steps))
	for j := range out {
		out[j] = FunnelStep{Step: steps[j].Name, Visitors: reached[j]}
		if reached[0] > 0 {
			out[j].ConversionRate = round2(100 * float64(reached[j]) / float64(reached[0]))
		}
		if j > 0 {
			out[j].DropOff = reached[j-1] - reached[j]
			if reached[j-1] > 0 {
				out[j].DropOffRate = round2(100 * float64(out[j].DropOff) / float64(reached[j-1]))
			}
		}
	}
	return out
}

// maxPeriods bounds a retention grid's side.
const maxPeriods = 128

// Cohort is one row of a retention grid: the visitors first seen in a
// period, and how many of them came back in each period since (period 0
// is the first; the list stops at the range's end).
type Cohort struct {
	Start     time.Time `json:"date"`
	Visitors  int       `json:"visitors"`
	Returning []int     `json:"returning"`
	Rates     []float64 `json:"rates"` // percent of visitors
}

// Retention groups the visitors first seen in q's range by the period (day
// or week) of their first visit, and counts for each later period up to
// the range's end those with a visit starting in it. First seen is over
// everything the store holds before the range's end, with q's filters
// (a visitor whose first matching visit is before the range is in no
// cohort).
func (s *Store) Retention(q Query, iv Interval) []Cohort {
	var starts []int64
	for b := iv.bucket(q.From); b < q.To && len(starts) < maxPeriods; b = iv.next(b) {
		starts = append(starts, b)
	}
	if len(starts) == 0 {
		return []Cohort{}
	}
	idx := func(ms int64) int { return sort.Search(len(starts), func(i int) bool { return starts[i] > ms }) - 1 }
	s.mu.RLock()
	defer s.mu.RUnlock()
	x := s.bind(Query{From: math.MinInt64, To: q.To, Filters: q.Filters})
	if x.filterEvs {
		x.scan(func(*day, int, uint32) {})
	}
	// Each visitor's first visit (math.MaxInt64: none selected).
	first := make([]int64, len(s.vids))
	for i := range first {
		first[i] = math.MaxInt64
	}
	x.visits(func(sid uint32) {
		v, st := s.sVisitor[sid], s.sStart[sid]
		first[v] = min(first[v], st)
	})
	type row struct {
		visitors  int
		returning []int
	}
	rows := make([]row, len(starts))
	for i := range rows {
		rows[i].returning = make([]int, len(starts)-i)
	}
	for _, f := range first {
		if f >= starts[0] && f != math.MaxInt64 {
			rows[idx(f)].visitors++
		}
	}
	// Each visitor once per period: visits come day by day, so periods in
	// order, and a stamp per visitor does.
	seen := make(stamps, len(s.vids))
	x.visits(func(sid uint32) {
		v := s.sVisitor[sid]
		f := first[v]
		if f < starts[0] {
			return
		}
		c, p := idx(f), idx(s.sStart[sid])
		if p >= c && seen.add(v, uint32(p), 0) {
			rows[c].returning[p-c]++
		}
	})
	out := make([]Cohort, len(starts))
	for i, r := range rows {
		c := Cohort{Start: time.UnixMilli(starts[i]).UTC(), Visitors: r.visitors, Returning: r.returning, Rates: make([]float64, len(r.returning))}
		for k, n := range r.returning {
			if r.visitors > 0 {
				c.Rates[k] = round2(100 * float64(n) / float64(r.visitors))
			}
		}
		out[i] = c
	}
	return out
}
