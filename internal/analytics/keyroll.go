package analytics

import (
	"slices"
	"sort"
)

// keyRoll is one day's events grouped by an event-level key (the page or
// the event name): per key, its page views, its other events and the
// distinct visitors (dense ids) with an event of that key. Breakdowns by
// page or event over whole days read these instead of the day's events:
// the counts are sums, and the visitors of a key over several days are
// the union of its lists, so answers stay exact. A roll is built when a
// report first needs it and again once its day has more events; the
// newest day, which grows all the time, is scanned instead.
type keyRoll struct {
	n      int      // len(d.at) when built
	keys   []uint32 // distinct keys, ascending
	pv, ev []uint32 // per key
	off    []uint32 // visitors of keys[k]: vis[off[k]:off[k+1]]
	vis    []uint32
}

// rollKeys are the columns a keyRoll can group by.
const (
	rollPage = iota
	rollName
	numRolls
)

func (d *day) column(which int) []uint32 {
	if which == rollPage {
		return d.page
	}
	return d.name
}

// roll returns d's roll by the key column which, building it when it is
// missing or stale; nil for the newest day. Call with mu held for reading:
// two readers may build the same roll at once, and one of them is kept.
func (s *Store) roll(d *day, which int) *keyRoll {
	if d.start == dayOf(s.newest) {
		return nil
	}
	if r := d.rolls[which].Load(); r != nil && r.n == len(d.at) {
		return r
	}
	r := s.buildRoll(d, d.column(which))
	d.rolls[which].Store(r)
	return r
}

func (s *Store) buildRoll(d *day, col []uint32) *keyRoll {
	pv := s.pageviewID()
	pairs := make([]uint64, len(d.at))
	counts := map[uint32][2]uint32{}
	for i := range d.at {
		k := col[i]
		pairs[i] = uint64(k)<<32 | uint64(s.sVisitor[s.root(d.session[i])])
		c := counts[k]
		if d.name[i] == pv {
			c[0]++
		} else {
			c[1]++
		}
		counts[k] = c
	}
	slices.Sort(pairs)
	r := &keyRoll{n: len(d.at), keys: make([]uint32, 0, len(counts)), off: make([]uint32, 0, len(counts)+1)}
	r.vis = make([]uint32, 0, len(pairs)/2)
	for i, p := range pairs {
		if i > 0 && p == pairs[i-1] {
			continue
		}
		k := uint32(p >> 32)
		if len(r.keys) == 0 || r.keys[len(r.keys)-1] != k {
			c := counts[k]
			r.keys = append(r.keys, k)
			r.pv, r.ev = append(r.pv, c[0]), append(r.ev, c[1])
			r.off = append(r.off, uint32(len(r.vis)))
		}
		r.vis = append(r.vis, uint32(p))
	}
	r.off = append(r.off, uint32(len(r.vis)))
	r.vis = slices.Clip(r.vis)
	return r
}

// visitors returns the visitors of key k in r (nil when it has none).
func (r *keyRoll) visitors(k uint32) []uint32 {
	i := sort.Search(len(r.keys), func(i int) bool { return r.keys[i] >= k })
	if i == len(r.keys) || r.keys[i] != k {
		return nil
	}
	return r.vis[r.off[i]:r.off[i+1]]
}

// breakdownRolls is Breakdown by page or event name over whole days
// without filters, from the days' rolls (the newest day is scanned).
func (s *Store) breakdownRolls(days []*day, dim Dim, limit, page int) ([]Row, int) {
	which := rollPage
	if dim == DimEvent {
		which = rollName
	}
	dict := s.dicts[dim]
	pv := s.pageviewID()
	groups := make([]acc, dict.len())
	hits := make([]int, dict.len())
	var used []uint32
	var rolls []*keyRoll
	var hot []*day
	for _, d := range days {
		r := s.roll(d, which)
		if r == nil {
			hot = append(hot, d)
			continue
		}
		rolls = append(rolls, r)
		for k, g := range r.keys {
			if hits[g] == 0 {
				used = append(used, g)
			}
			hits[g] += int(r.pv[k] + r.ev[k])
			groups[g].pageviews += int(r.pv[k])
			groups[g].events += int(r.ev[k])
		}
	}
	for _, d := range hot {
		col := d.column(which)
		for i, g := range col {
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
	}
	s.countVisitors(func(picked []uint32, cand bitset, c *counter) {
		for _, r := range rolls {
			for _, g := range picked {
				for _, v := range r.visitors(g) {
					if c.add(g, v) {
						groups[g].visitorN++
					}
				}
			}
		}
		for _, d := range hot {
			col := d.column(which)
			for i, g := range col {
				if cand.has(g) && c.add(g, s.sVisitor[s.root(d.session[i])]) {
					groups[g].visitorN++
				}
			}
		}
	}, groups, hits, used, page*limit)
	return rowsOf(dict, groups, used, false, limit, page)
}
