package analytics

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Dim is a dimension reports break down and filter by.
type Dim int

// The dimensions. Page and Event are properties of each event; the others
// are properties of the visit, taken from its first event (entry and exit
// pages from its first and last page view).
const (
	DimPage Dim = iota
	DimEvent
	DimEntryPage
	DimExitPage
	DimHostname
	DimSource
	DimReferrer
	DimUTMSource
	DimUTMMedium
	DimUTMCampaign
	DimUTMTerm
	DimUTMContent
	DimBrowser
	DimOS
	DimDevice
	DimScreen
	DimCountry
	numDims
)

var dimNames = [numDims]string{"page", "event", "entry_page", "exit_page", "hostname", "source", "referrer",
	"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "browser", "os", "device", "screen", "country"}

func (d Dim) String() string { return dimNames[d] }

// eventLevel reports whether the dimension belongs to each event rather
// than to the visit.
func (d Dim) eventLevel() bool { return d == DimPage || d == DimEvent }

// DimByName finds a dimension by its API name.
func DimByName(s string) (Dim, bool) {
	for i, n := range dimNames {
		if n == s {
			return Dim(i), true
		}
	}
	return 0, false
}

// pageview is the Event value of page views (dictionary id 1).
const pageview = "pageview"

// hit is one tracked event, as the store folds it.
type hit struct {
	at      time.Time
	visitor uint64 // hash of the visitor id
	name    string // pageview, or the custom event's name
	page    string
	props   []kv // custom event properties
	// Visit attributes, used when the hit starts a visit.
	visit [numDims]string
}

type kv struct{ k, v string }

// day holds the events whose time falls on one UTC day, in arrival order.
type day struct {
	start    int64 // unix seconds of 00:00 UTC
	at       []int64
	session  []uint32
	name     []uint32
	page     []uint32
	propEnd  []uint32 // props of event i: props[propEnd[i-1]:propEnd[i]]
	props    []uint32 // pairs: key id, value id
	sessions []uint32 // visits that started this day
	// Rollups of the whole day, for reports without filters: the visitors
	// with an event this day (a bit per dense visitor id), how many, and
	// the day's page views and other events. Visitors over several days
	// are the union of their bitsets, so totals stay exact.
	vis               bitset
	visN              int
	pageviews, events int
	// rolls are the day's events grouped by page and by event name
	// (keyroll.go), made when a report needs them.
	rolls [numRolls]atomic.Pointer[keyRoll]
}

// Store is the analytics state. Writes (Add) and reads (reports) are
// serialised by mu; a report holds the read lock for its scan.
type Store struct {
	mu      sync.RWMutex
	timeout time.Duration

	dicts   [numDims]*dict
	propKey *dict
	propVal *dict

	days map[int64]*day
	// Visits, by id.
	sStart, sEnd   []int64
	sVisitor       []uint32 // dense visitor id (see vids)
	sPageviews     []uint32
	sEvents        []uint32 // custom events
	sAttr          [numDims][]uint32
	sFirstPageview []int64 // time of the entry page view (0: none yet)
	sLastPageview  []int64
	sParent        []uint32 // the visit this one was merged into; itself if none
	sPrev          []uint32 // the visitor's visit before this one (noVisit: none)

	// vids numbers visitors densely in order of first sight, so reports
	// count distinct visitors with arrays indexed by visitor (a few MB that
	// stay in cache) rather than hash sets of millions of keys.
	vids   map[uint64]uint32
	open   map[uint64]uint32 // visitor -> latest visit
	newest int64             // the newest event time folded (unix ms)
	// seq is the last bus sequence folded.
	seq uint64
}

// NewStore returns an empty store that closes a visit after timeout
// without events.
func NewStore(timeout time.Duration) *Store {
	s := &Store{timeout: timeout, days: map[int64]*day{}, vids: map[uint64]uint32{}, open: map[uint64]uint32{}, propKey: newDict(), propVal: newDict()}
	for i := range s.dicts {
		s.dicts[i] = newDict()
	}
	// Entry and exit pages are pages: one dictionary.
	s.dicts[DimEntryPage], s.dicts[DimExitPage] = s.dicts[DimPage], s.dicts[DimPage]
	s.dicts[DimEvent].id(pageview) // id 1
	return s
}

func dayOf(ms int64) int64 {
	sec := ms / 1000
	return sec - ((sec%86400)+86400)%86400
}

// add folds one hit. Call with mu held for writing.
func (s *Store) add(h *hit) {
	ms := h.at.UnixMilli()
	s.newest = max(s.newest, ms)
	sid := s.visit(h, ms)
	d := s.days[dayOf(ms)]
	if d == nil {
		d = &day{start: dayOf(ms)}
		s.days[d.start] = d
	}
	d.at = append(d.at, ms)
	d.session = append(d.session, sid)
	vid := s.sVisitor[sid]
	if w := int(vid >> 6); w >= len(d.vis) {
		d.vis = append(d.vis, make(bitset, max(w+1-len(d.vis), len(d.vis)/2))...)
	}
	if !d.vis.has(vid) {
		d.vis.set(vid)
		d.visN++
	}
	if h.name == pageview {
		d.pageviews++
	} else {
		d.events++
	}
	d.name = append(d.name, s.dicts[DimEvent].id(h.name))
	d.page = append(d.page, s.dicts[DimPage].id(h.page))
	for _, p := range h.props {
		d.props = append(d.props, s.propKey.id(p.k), s.propVal.id(p.v))
	}
	d.propEnd = append(d.propEnd, uint32(len(d.props)))
}

// noVisit marks the end of a visitor's chain of visits.
const noVisit = ^uint32(0)

// maxWalk is how many of a visitor's visits, newest first, a late hit is
// placed among; a hit later still gets a visit of its own.
const maxWalk = 16

// root is the visit sid was merged into (sid itself when it was not).
// Merges are rare and chains short; readers do not compress them.
func (s *Store) root(sid uint32) uint32 {
	for s.sParent[sid] != sid {
		sid = s.sParent[sid]
	}
	return sid
}

// visit returns the visit a hit belongs to, starting one when needed, and
// updates it. Visits are what sorting a visitor's events by time and
// cutting at every gap over the timeout gives, whatever order the events
// arrive in: each visitor's recent visits are chained newest first (open,
// then sPrev); a hit within the timeout of one joins it (an earlier hit
// becomes its start, and its entry dimensions the visit's), a hit that
// closes the gap between two merges them, and any other hit is a visit of
// its own in its place in the chain.
func (s *Store) visit(h *hit, ms int64) uint32 {
	to := s.timeout.Milliseconds()
	head, ok := s.open[h.visitor]
	if !ok {
		sid := s.newVisit(h, ms, noVisit)
		s.open[h.visitor] = sid
		return s.count(h, sid, ms)
	}
	var path [maxWalk]uint32 // the visits walked, newest first
	cur, n := head, 0
	for cur != noVisit && n < maxWalk && ms <= s.sEnd[cur]+to {
		if ms >= s.sStart[cur]-to {
			return s.count(h, s.join(h, cur, ms, path[:n]), ms)
		}
		path[n] = cur
		n++
		cur = s.sPrev[cur]
	}
	if cur != noVisit && n == maxWalk {
		// Too far back among this visitor's visits: a visit of its own,
		// outside the chain.
		return s.count(h, s.newVisit(h, ms, noVisit), ms)
	}
	// Between cur (older, or none) and path[n-1] (newer, or none).
	sid := s.newVisit(h, ms, cur)
	if n == 0 {
		s.open[h.visitor] = sid
	} else {
		s.sPrev[path[n-1]] = sid
	}
	return s.count(h, sid, ms)
}

// join adds a hit at ms to visit cur; newer are the visitor's visits after
// cur, newest first. It returns the visit the hit ends up in (cur, or the
// visit before it when the hit closed the gap between them).
func (s *Store) join(h *hit, cur uint32, ms int64, newer []uint32) uint32 {
	to := s.timeout.Milliseconds()
	if ms > s.sEnd[cur] {
		s.sEnd[cur] = ms
		// Closing the gap to the next visit merges it into this one.
		if len(newer) > 0 {
			if next := newer[len(newer)-1]; s.sStart[next]-to <= ms {
				s.merge(h.visitor, cur, next, newer[:len(newer)-1])
			}
		}
	}
	if ms < s.sStart[cur] {
		if dayOf(ms) != dayOf(s.sStart[cur]) {
			s.dayOf(ms).sessions = append(s.dayOf(ms).sessions, cur)
		}
		s.sStart[cur] = ms
		s.setVisitDims(cur, h)
		// Closing the gap to the visit before merges this one into it.
		if prev := s.sPrev[cur]; prev != noVisit && s.sEnd[prev]+to >= ms {
			s.merge(h.visitor, prev, cur, newer)
			return prev
		}
	}
	return cur
}

// merge folds visit b into the visit a before it; newer are the visits
// after b, newest first (b's newer neighbour is the last).
func (s *Store) merge(visitor uint64, a, b uint32, newer []uint32) {
	s.sEnd[a] = max(s.sEnd[a], s.sEnd[b])
	s.sPageviews[a] += s.sPageviews[b]
	s.sEvents[a] += s.sEvents[b]
	if f := s.sFirstPageview[b]; f != 0 && (s.sFirstPageview[a] == 0 || f < s.sFirstPageview[a]) {
		s.sFirstPageview[a], s.sAttr[DimEntryPage][a] = f, s.sAttr[DimEntryPage][b]
	}
	if l := s.sLastPageview[b]; l != 0 && l >= s.sLastPageview[a] {
		s.sLastPageview[a], s.sAttr[DimExitPage][a] = l, s.sAttr[DimExitPage][b]
	}
	s.sParent[b] = a
	s.sPrev[b] = noVisit
	if len(newer) == 0 {
		s.open[visitor] = a
	} else {
		s.sPrev[newer[len(newer)-1]] = a
	}
}

// count adds the hit's page view or custom event to visit sid.
func (s *Store) count(h *hit, sid uint32, ms int64) uint32 {
	if h.name == pageview {
		s.sPageviews[sid]++
		page := s.dicts[DimPage].id(h.page)
		if s.sFirstPageview[sid] == 0 || ms < s.sFirstPageview[sid] {
			s.sFirstPageview[sid] = ms
			s.sAttr[DimEntryPage][sid] = page
		}
		if ms >= s.sLastPageview[sid] {
			s.sLastPageview[sid] = ms
			s.sAttr[DimExitPage][sid] = page
		}
	} else {
		s.sEvents[sid]++
	}
	return sid
}

// setVisitDims takes a visit's dimensions from h, its first hit.
func (s *Store) setVisitDims(sid uint32, h *hit) {
	for d := Dim(0); d < numDims; d++ {
		if !d.eventLevel() && d != DimEntryPage && d != DimExitPage {
			s.sAttr[d][sid] = s.dicts[d].id(h.visit[d])
		}
	}
}

// dayOf returns the day holding ms, making it when needed.
func (s *Store) dayOf(ms int64) *day {
	d := s.days[dayOf(ms)]
	if d == nil {
		d = &day{start: dayOf(ms)}
		s.days[d.start] = d
	}
	return d
}

func (s *Store) newVisit(h *hit, ms int64, prev uint32) uint32 {
	sid := uint32(len(s.sStart))
	s.sParent = append(s.sParent, sid)
	s.sPrev = append(s.sPrev, prev)
	s.sStart = append(s.sStart, ms)
	s.sEnd = append(s.sEnd, ms)
	vid, ok := s.vids[h.visitor]
	if !ok {
		vid = uint32(len(s.vids))
		s.vids[h.visitor] = vid
	}
	s.sVisitor = append(s.sVisitor, vid)
	s.sPageviews = append(s.sPageviews, 0)
	s.sEvents = append(s.sEvents, 0)
	s.sFirstPageview = append(s.sFirstPageview, 0)
	s.sLastPageview = append(s.sLastPageview, 0)
	for d := Dim(0); d < numDims; d++ {
		var id uint32
		if !d.eventLevel() && d != DimEntryPage && d != DimExitPage {
			id = s.dicts[d].id(h.visit[d])
		}
		s.sAttr[d] = append(s.sAttr[d], id)
	}
	dd := s.dayOf(ms)
	dd.sessions = append(dd.sessions, sid)
	return sid
}

// pruneKeep is how far behind the newest event a visitor's visits stay
// open for late events; older ones are forgotten by prune.
const pruneKeep = 6 * time.Hour

// prune forgets visitors whose latest visit ended more than pruneKeep (or
// twice the timeout, if longer) before the newest event folded: their next
// event starts a new visit anyway. It keeps the open map small. It goes by
// event time, not the clock: history replayed or sent late (an SDK's
// offline queue, a bulk import) would otherwise lose its open visits and
// count a late event as a visit of its own.
func (s *Store) prune() {
	cut := s.newest - max(pruneKeep, 2*s.timeout).Milliseconds()
	for v, sid := range s.open {
		if s.sEnd[sid] < cut {
			delete(s.open, v)
		}
	}
}

// daysIn returns the days overlapping [from, to) (unix ms), in order.
func (s *Store) daysIn(from, to int64) []*day {
	var out []*day
	for start, d := range s.days {
		if start*1000 < to && (start+86400)*1000 > from {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out
}

// Stats are the store's sizes.
type Stats struct {
	Events, Visits int
	Days           int
	Seq            uint64
}

// Stats reports the store's sizes.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, d := range s.days {
		n += len(d.at)
	}
	visits := 0
	for sid := range s.sParent {
		if s.sParent[sid] == uint32(sid) {
			visits++
		}
	}
	return Stats{Events: n, Visits: visits, Days: len(s.days), Seq: s.seq}
}
