package analytics

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"time"
)

// Query is what a report counts: the events of [From, To) (unix ms) that
// pass every filter.
//
// Filters on a visit's dimensions (source, country, entry page, ...) select
// visits; filters on an event's (page, event, prop:*) select events, and a
// visit counts only when it has a selected event in the range. Visitors are
// the distinct visitors with a selected event in the range; visits, bounce
// rate and duration are over the selected visits that started in it;
// page views and events are the selected events.
type Query struct {
	From, To int64
	Filters  []Filter
}

// Totals are a report's metrics.
type Totals struct {
	Visitors      int     `json:"visitors"`
	Visits        int     `json:"visits"`
	Pageviews     int     `json:"pageviews"`
	ViewsPerVisit float64 `json:"views_per_visit"`
	BounceRate    float64 `json:"bounce_rate"`    // percent of visits with one page view and nothing else
	VisitDuration float64 `json:"visit_duration"` // mean seconds from a visit's first event to its last
	Events        int     `json:"events"`         // custom events
}

// acc accumulates Totals.
type acc struct {
	visitorN          int
	visits, pageviews int
	bounces, events   int
	durationMS        int64
}

func (a *acc) totals() Totals {
	t := Totals{Visitors: a.visitorN, Visits: a.visits, Pageviews: a.pageviews, Events: a.events}
	if a.visits > 0 {
		t.ViewsPerVisit = round2(float64(a.pageviews) / float64(a.visits))
		t.BounceRate = round2(100 * float64(a.bounces) / float64(a.visits))
		t.VisitDuration = round2(float64(a.durationMS) / 1000 / float64(a.visits))
	}
	return t
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// sel is a query bound to the store's dictionaries as they are now. Use
// it under the read lock.
type sel struct {
	s         *Store
	q         Query
	visitF    []dictMatch
	eventF    []dictMatch
	propF     []propMatch
	checked   bitset // visits whose filters were decided
	passed    bitset
	hasMatch  bitset // visits with a selected event in the range
	seen      bitset // visits with any selected event in the range
	filterEvs bool
}

type dictMatch struct {
	dim Dim
	ok  []bool // by dictionary id, negation applied
}

type propMatch struct {
	key   uint32
	known bool   // the key exists in the store
	vals  []bool // by value id: matches the comparison
	neg   bool
}

func (s *Store) bind(q Query) *sel {
	n := len(s.sStart)
	x := &sel{s: s, q: q, checked: newBitset(n), passed: newBitset(n), hasMatch: newBitset(n), seen: newBitset(n)}
	for _, f := range q.Filters {
		if f.Prop != "" {
			pm := propMatch{neg: f.negated()}
			pm.key, pm.known = s.propKey.lookup(f.Prop)
			pm.vals = make([]bool, s.propVal.len())
			for id, v := range s.propVal.vals {
				pm.vals[id] = f.match(v)
			}
			x.propF = append(x.propF, pm)
			x.filterEvs = true
			continue
		}
		d := s.dicts[f.Dim]
		m := dictMatch{dim: f.Dim, ok: make([]bool, d.len())}
		for id, v := range d.vals {
			m.ok[id] = f.match(v) != f.negated()
		}
		if f.Dim.eventLevel() {
			x.eventF = append(x.eventF, m)
			x.filterEvs = true
		} else {
			x.visitF = append(x.visitF, m)
		}
	}
	return x
}

// visitOK reports whether visit sid passes the visit filters (memoised).
func (x *sel) visitOK(sid uint32) bool {
	if len(x.visitF) == 0 {
		return true
	}
	if x.checked.has(sid) {
		return x.passed.has(sid)
	}
	x.checked.set(sid)
	for _, m := range x.visitF {
		if !m.ok[x.s.sAttr[m.dim][sid]] {
			return false
		}
	}
	x.passed.set(sid)
	return true
}

// eventOK reports whether event i of day d passes the event filters.
func (x *sel) eventOK(d *day, i int) bool {
	for _, m := range x.eventF {
		var id uint32
		if m.dim == DimPage {
			id = d.page[i]
		} else {
			id = d.name[i]
		}
		if !m.ok[id] {
			return false
		}
	}
	if len(x.propF) == 0 {
		return true
	}
	lo := uint32(0)
	if i > 0 {
		lo = d.propEnd[i-1]
	}
	hi := d.propEnd[i]
	for _, p := range x.propF {
		found := false
		if p.known {
			for j := lo; j < hi; j += 2 {
				if d.props[j] == p.key && p.vals[d.props[j+1]] {
					found = true
					break
				}
			}
		}
		if found == p.neg {
			return false
		}
	}
	return true
}

// size is how many events the range's days hold (an upper bound of what
// a scan sees), for sizing sets.
func (x *sel) size() int {
	n := 0
	for _, d := range x.s.daysIn(x.q.From, x.q.To) {
		n += len(d.at)
	}
	return n
}

// scan calls fn for every selected event in the range, and marks the
// visits seen.
func (x *sel) scan(fn func(d *day, i int, sid uint32)) {
	from, to := x.q.From, x.q.To
	for _, d := range x.s.daysIn(from, to) {
		whole := d.start*1000 >= from && (d.start+86400)*1000 <= to
		for i, at := range d.at {
			if !whole && (at < from || at >= to) {
				continue
			}
			sid := x.s.root(d.session[i])
			if !x.visitOK(sid) || !x.eventOK(d, i) {
				continue
			}
			x.seen.set(sid)
			if x.filterEvs {
				x.hasMatch.set(sid)
			}
			fn(d, i, sid)
		}
	}
}

// rescan is scan for a second pass over the same range.
func (x *sel) rescan(fn func(d *day, i int, sid uint32)) { x.scan(fn) }

// visits calls fn for every selected visit that started in the range
// (after scan).
func (x *sel) visits(fn func(sid uint32)) {
	from, to := x.q.From, x.q.To
	for _, d := range x.s.daysIn(from, to) {
		for _, sid := range d.sessions {
			// Merged visits, and the days a visit started on before an
			// earlier event arrived, are left behind in the lists.
			if x.s.sParent[sid] != sid || dayOf(x.s.sStart[sid]) != d.start {
				continue
			}
			if st := x.s.sStart[sid]; st < from || st >= to || !x.visitOK(sid) {
				continue
			}
			if x.filterEvs && !x.hasMatch.has(sid) {
				continue
			}
			fn(sid)
		}
	}
}

// addVisit adds visit sid's visit metrics to a.
func (s *Store) addVisit(a *acc, sid uint32) {
	a.visits++
	a.durationMS += s.sEnd[sid] - s.sStart[sid]
	if s.sPageviews[sid] <= 1 && s.sEvents[sid] == 0 {
		a.bounces++
	}
}

// rollupDays returns the days of q's range when the day rollups can
// answer it: no filter, and a range of whole UTC days.
func (s *Store) rollupDays(q Query) ([]*day, bool) {
	if len(q.Filters) != 0 || q.From%86_400_000 != 0 || q.To%86_400_000 != 0 {
		return nil, false
	}
	return s.daysIn(q.From, q.To), true
}

// Aggregate returns the totals of q.
func (s *Store) Aggregate(q Query) Totals {
	s.mu.RLock()
	defer s.mu.RUnlock()
	x := s.bind(q)
	a := &acc{}
	if days, ok := s.rollupDays(q); ok {
		// Events counted per day, visitors the union of the days' sets:
		// no scan of the events.
		u := newBitset(len(s.vids))
		for _, d := range days {
			a.pageviews += d.pageviews
			a.events += d.events
			u.or(d.vis)
		}
		a.visitorN = u.count()
		x.visits(func(sid uint32) { s.addVisit(a, sid) })
		return a.totals()
	}
	pv := s.pageviewID()
	x.scan(func(d *day, i int, _ uint32) {
		if d.name[i] == pv {
			a.pageviews++
		} else {
			a.events++
		}
	})
	x.visits(func(sid uint32) { s.addVisit(a, sid) })
	a.visitorN = s.visitorsOfSeen(x)
	return a.totals()
}

// visitorsOfSeen counts the distinct visitors of the visits the scan saw,
// one lookup per visit rather than per event.
func (s *Store) visitorsOfSeen(x *sel) int {
	set := newBitset(len(s.vids))
	n := 0
	for w, word := range x.seen {
		for word != 0 {
			v := s.sVisitor[uint32(w*64)+uint32(bits.TrailingZeros64(word))]
			word &= word - 1
			if !set.has(v) {
				set.set(v)
				n++
			}
		}
	}
	return n
}

func (s *Store) pageviewID() uint32 { id, _ := s.dicts[DimEvent].lookup(pageview); return id }

// Interval is a timeseries bucket.
type Interval string

// Intervals.
const (
	Hour  Interval = "hour"
	Day   Interval = "day"
	Week  Interval = "week"
	Month Interval = "month"
)

// bucket returns the start (unix ms, UTC) of the interval holding ms.
func (iv Interval) bucket(ms int64) int64 {
	t := time.UnixMilli(ms).UTC()
	switch iv {
	case Hour:
		return t.Truncate(time.Hour).UnixMilli()
	case Week:
		d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		off := (int(d.Weekday()) + 6) % 7 // Monday
		return d.AddDate(0, 0, -off).UnixMilli()
	case Month:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC).UnixMilli()
}

func (iv Interval) next(ms int64) int64 {
	t := time.UnixMilli(ms).UTC()
	switch iv {
	case Hour:
		return t.Add(time.Hour).UnixMilli()
	case Week:
		return t.AddDate(0, 0, 7).UnixMilli()
	case Month:
		return t.AddDate(0, 1, 0).UnixMilli()
	}
	return t.AddDate(0, 0, 1).UnixMilli()
}

// Point is one bucket of a timeseries.
type Point struct {
	Start time.Time `json:"date"`
	Totals
}

// maxPoints bounds a timeseries.
const maxPoints = 5000

// Timeseries returns q's totals per interval, every bucket of the range
// included (empty ones as zeros).
func (s *Store) Timeseries(q Query, iv Interval) []Point {
	var starts []int64
	for b := iv.bucket(q.From); b < q.To && len(starts) < maxPoints; b = iv.next(b) {
		starts = append(starts, b)
	}
	idx := func(ms int64) (int, bool) {
		i := sort.Search(len(starts), func(i int) bool { return starts[i] > ms }) - 1
		return i, i >= 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	x := s.bind(q)
	accs := make([]*acc, len(starts))
	for i := range accs {
		accs[i] = &acc{}
	}
	if days, ok := s.rollupDays(q); ok && iv != Hour {
		// Buckets of whole days from the day rollups: a bucket's visitors
		// are the union of its days' (days come in order, so one set is
		// filled per bucket), with no scan of the events.
		u := newBitset(len(s.vids))
		cur := -1
		flush := func() {
			if cur >= 0 {
				accs[cur].visitorN = u.count()
				clear(u)
			}
		}
		for _, d := range days {
			b, ok := idx(d.start * 1000)
			if !ok {
				continue
			}
			if b != cur {
				flush()
				cur = b
			}
			accs[b].pageviews += d.pageviews
			accs[b].events += d.events
			u.or(d.vis)
		}
		flush()
	} else {
		s.timeseriesScan(x, q, iv, idx, accs)
	}
	x.visits(func(sid uint32) {
		if b, ok := idx(s.sStart[sid]); ok {
			s.addVisit(accs[b], sid)
		}
	})
	out := make([]Point, len(starts))
	for i, a := range accs {
		out[i] = Point{Start: time.UnixMilli(starts[i]).UTC(), Totals: a.totals()}
	}
	return out
}

// timeseriesScan fills the buckets' event counts and visitors from a scan
// of the events.
func (s *Store) timeseriesScan(x *sel, q Query, iv Interval, idx func(int64) (int, bool), accs []*acc) {
	// Distinct visitors per bucket: days are scanned in order, so a bucket
	// of a day or longer is done when the scan leaves it and one stamp per
	// visitor does; hours are bits of their day's stamp.
	visitors := make(stamps, len(s.vids))
	pv := s.pageviewID()
	var cur *day
	var curB int
	var curOK bool
	x.scan(func(d *day, i int, sid uint32) {
		var b int
		var ok bool
		var epoch uint32
		var bit uint
		if iv == Hour {
			b, ok = idx(d.at[i])
			epoch, bit = uint32(d.start/86400), uint((d.at[i]/1000-d.start)/3600)
		} else {
			if d != cur {
				cur = d
				curB, curOK = idx(max(d.start*1000, q.From))
			}
			b, ok, epoch = curB, curOK, uint32(curB)
		}
		if !ok {
			return
		}
		if d.name[i] == pv {
			accs[b].pageviews++
		} else {
			accs[b].events++
		}
		if visitors.add(s.sVisitor[sid], epoch, bit) {
			accs[b].visitorN++
		}
	})
}

// Row is one value of a breakdown.
type Row struct {
	Value string `json:"value"`
	Totals
}

// Breakdown returns q's totals per value of a dimension (or of custom
// property prop, when set), most visitors first, then by value; page
// counts from 1. It also returns how many values there are.
//
// Counting distinct visitors per value is the costly part (a set insert
// per event). For a visit's dimension it is done per visit. For an
// event's, visitors are counted only for the values that can reach the
// page asked for: a value never has more visitors than events, so after
// counting the values with the most events, any value with fewer events
// than the page's last row has visitors cannot be on the page, and is
// left uncounted.
func (s *Store) Breakdown(q Query, dim Dim, prop string, limit, page int) ([]Row, int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if prop == "" && (dim == DimPage || dim == DimEvent) {
		if days, ok := s.rollupDays(q); ok {
			return s.breakdownRolls(days, dim, limit, page)
		}
	}
	x := s.bind(q)
	pv := s.pageviewID()
	var dict *dict
	var key func(d *day, i int, sid uint32) (uint32, bool)
	switch {
	case prop != "":
		propKey, known := s.propKey.lookup(prop)
		if !known {
			return []Row{}, 0
		}
		dict = s.propVal
		key = func(d *day, i int, _ uint32) (uint32, bool) {
			lo := uint32(0)
			if i > 0 {
				lo = d.propEnd[i-1]
			}
			for j := lo; j < d.propEnd[i]; j += 2 {
				if d.props[j] == propKey {
					return d.props[j+1], true
				}
			}
			return 0, false
		}
	case dim == DimPage:
		dict = s.dicts[dim]
		key = func(d *day, i int, _ uint32) (uint32, bool) { return d.page[i], true }
	case dim == DimEvent:
		dict = s.dicts[dim]
		key = func(d *day, i int, _ uint32) (uint32, bool) { return d.name[i], true }
	default:
		dict = s.dicts[dim]
		attr := s.sAttr[dim]
		key = func(_ *day, _ int, sid uint32) (uint32, bool) { return attr[sid], true }
	}
	// Groups by dictionary id, in a dense slice (dictionaries are small
	// next to the events), with the ids met in order.
	groups := make([]acc, dict.len())
	hits := make([]int, dict.len())
	var used []uint32
	// The (group, visitor) of every selected event, kept while there are
	// not too many, so counting visitors does not scan the events again.
	var pairs []uint64
	visitLevel := prop == "" && !dim.eventLevel()
	keep := !visitLevel
	count := func(d *day, i int, g uint32) {
		if hits[g] == 0 {
			used = append(used, g)
		}
		hits[g]++
		if d.name[i] == pv {
			groups[g].pageviews++
		} else {
			groups[g].events++
		}
	}
	if visitLevel {
		x.scan(func(d *day, i int, sid uint32) {
			if g, ok := key(d, i, sid); ok {
				count(d, i, g)
			}
		})
	} else {
		x.scan(func(d *day, i int, sid uint32) {
			g, ok := key(d, i, sid)
			if !ok {
				return
			}
			if keep {
				if len(pairs) < maxPairs {
					pairs = append(pairs, uint64(g)<<32|uint64(s.sVisitor[sid]))
				} else {
					keep, pairs = false, nil
				}
			}
			count(d, i, g)
		})
	}
	if visitLevel {
		attr := s.sAttr[dim]
		x.visits(func(sid uint32) {
			g := attr[sid]
			if hits[g] == 0 {
				used = append(used, g)
				hits[g] = 1 // a visit without an event in range: still a row
			}
			s.addVisit(&groups[g], sid)
		})
		// Visitors per value, one insert per visit seen.
		c := s.newCounter(used)
		for w, word := range x.seen {
			for word != 0 {
				sid := uint32(w*64) + uint32(bits.TrailingZeros64(word))
				word &= word - 1
				if g := attr[sid]; c.add(g, s.sVisitor[sid]) {
					groups[g].visitorN++
				}
			}
		}
	} else if keep {
		s.countVisitors(func(_ []uint32, cand bitset, c *counter) {
			for _, p := range pairs {
				if g := uint32(p >> 32); cand.has(g) && c.add(g, uint32(p)) {
					groups[g].visitorN++
				}
			}
		}, groups, hits, used, page*limit)
	} else {
		s.countVisitors(func(_ []uint32, cand bitset, c *counter) {
			x.rescan(func(d *day, i int, sid uint32) {
				g, ok := key(d, i, sid)
				if ok && cand.has(g) && c.add(g, s.sVisitor[sid]) {
					groups[g].visitorN++
				}
			})
		}, groups, hits, used, page*limit)
	}
	return rowsOf(dict, groups, used, visitLevel, limit, page)
}

// maxPairs bounds the memory a breakdown keeps per query for counting
// visitors without a second scan (32 MiB).
const maxPairs = 1 << 22

// rowsOf makes the rows of the groups used, sorted by visitors, and
// returns the page asked for and how many rows there are.
func rowsOf(dict *dict, groups []acc, used []uint32, visitLevel bool, limit, page int) ([]Row, int) {
	total := len(used)
	lo := min((page-1)*limit, total)
	hi := min(lo+limit, total)
	// Only the groups that can be among the first hi rows become rows:
	// those with at least the hi-th largest visitor count (ties included,
	// as the order among them is by value).
	keep := used
	if hi < total {
		vs := make([]int, total)
		for i, g := range used {
			vs[i] = groups[g].visitorN
		}
		slices.Sort(vs)
		cut := vs[total-max(hi, 1)]
		keep = make([]uint32, 0, 2*hi)
		for _, g := range used {
			if groups[g].visitorN >= cut {
				keep = append(keep, g)
			}
		}
	}
	rows := make([]Row, 0, len(keep))
	for _, g := range keep {
		a := &groups[g]
		if !visitLevel {
			a.visits = 0 // per-event breakdowns have no visit metrics
		}
		rows = append(rows, Row{Value: dict.str(g), Totals: a.totals()})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Visitors != rows[j].Visitors {
			return rows[i].Visitors > rows[j].Visitors
		}
		return strings.Compare(rows[i].Value, rows[j].Value) < 0
	})
	return rows[min(lo, len(rows)):min(hi, len(rows))], total
}

// countVisitors fills visitorN for the groups that can be among the first
// need rows (see Breakdown), in rounds: count the groups with the most
// events not yet counted, then every group whose events reach the need-th
// visitor count found so far. pass adds every (group, visitor) of the
// selected events whose group is a candidate (picked, and set in cand)
// to c, and counts the new ones in groups.
func (s *Store) countVisitors(pass func(picked []uint32, cand bitset, c *counter), groups []acc, hits []int, used []uint32, need int) {
	order := append([]uint32(nil), used...)
	slices.SortFunc(order, func(a, b uint32) int { return cmp.Compare(hits[b], hits[a]) })
	cand := newBitset(len(groups))
	var counted []int // visitor counts of the groups done
	threshold := -1   // the need-th largest visitor count so far
	next := 0
	for {
		clear(cand)
		var picked []uint32
		for next < len(order) {
			g := order[next]
			if threshold >= 0 && hits[g] < threshold {
				break // cannot reach the page
			}
			if threshold < 0 && len(picked) >= 2*need {
				break // the first round: the groups with the most events
			}
			cand.set(g)
			picked = append(picked, g)
			next++
		}
		if len(picked) == 0 {
			return
		}
		pass(picked, cand, s.newCounter(picked))
		for _, g := range picked {
			counted = append(counted, groups[g].visitorN)
		}
		if len(counted) >= need {
			sort.Sort(sort.Reverse(sort.IntSlice(counted)))
			threshold = counted[need-1]
		} else {
			threshold = 0
		}
		if next >= len(order) || hits[order[next]] < threshold {
			return
		}
	}
}

// Realtime is the visitors with an event in the last five minutes before
// now, and their page views.
func (s *Store) Realtime(now time.Time, filters []Filter) Totals {
	t := s.Aggregate(Query{From: now.Add(-5 * time.Minute).UnixMilli(), To: now.Add(time.Second).UnixMilli(), Filters: filters})
	return Totals{Visitors: t.Visitors, Pageviews: t.Pageviews, Events: t.Events}
}

// Values lists the known values of a dimension (for filter suggestions),
// those containing substr (case-insensitive), at most limit.
func (s *Store) Values(dim Dim, substr string, limit int) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	sub := strings.ToLower(substr)
	for _, v := range s.dicts[dim].vals[1:] {
		if strings.Contains(strings.ToLower(v), sub) {
			out = append(out, v)
			if len(out) == limit {
				break
			}
		}
	}
	sort.Strings(out)
	return out
}
