package analytics

import (
	"sort"
	"sync"
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
	sVisitor       []uint64
	sPageviews     []uint32
	sEvents        []uint32 // custom events
	sAttr          [numDims][]uint32
	sFirstPageview []int64 // time of the entry page view (0: none yet)
	sLastPageview  []int64

	open map[uint64]uint32 // visitor -> current visit
	// seq is the last bus sequence folded.
	seq uint64
}

// NewStore returns an empty store that closes a visit after timeout
// without events.
func NewStore(timeout time.Duration) *Store {
	s := &Store{timeout: timeout, days: map[int64]*day{}, open: map[uint64]uint32{}, propKey: newDict(), propVal: newDict()}
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
	sid := s.visit(h, ms)
	d := s.days[dayOf(ms)]
	if d == nil {
		d = &day{start: dayOf(ms)}
		s.days[d.start] = d
	}
	d.at = append(d.at, ms)
	d.session = append(d.session, sid)
	d.name = append(d.name, s.dicts[DimEvent].id(h.name))
	d.page = append(d.page, s.dicts[DimPage].id(h.page))
	for _, p := range h.props {
		d.props = append(d.props, s.propKey.id(p.k), s.propVal.id(p.v))
	}
	d.propEnd = append(d.propEnd, uint32(len(d.props)))
}

// visit returns the visit a hit belongs to, starting one when needed, and
// updates it. A hit joins the visitor's current visit when it is within
// the timeout of it (late hits too, down to timeout before its start); a
// hit later than that starts a new current visit; an older one gets a
// visit of its own and leaves the current one as it is.
func (s *Store) visit(h *hit, ms int64) uint32 {
	to := s.timeout.Milliseconds()
	sid, ok := s.open[h.visitor]
	switch {
	case ok && ms <= s.sEnd[sid]+to && ms >= s.sStart[sid]-to:
		if ms < s.sStart[sid] {
			s.sStart[sid] = ms
		}
		if ms > s.sEnd[sid] {
			s.sEnd[sid] = ms
		}
	case ok && ms < s.sStart[sid]-to:
		sid = s.newVisit(h, ms)
	default:
		sid = s.newVisit(h, ms)
		s.open[h.visitor] = sid
	}
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

func (s *Store) newVisit(h *hit, ms int64) uint32 {
	sid := uint32(len(s.sStart))
	s.sStart = append(s.sStart, ms)
	s.sEnd = append(s.sEnd, ms)
	s.sVisitor = append(s.sVisitor, h.visitor)
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
	dd := s.days[dayOf(ms)]
	if dd == nil {
		dd = &day{start: dayOf(ms)}
		s.days[dd.start] = dd
	}
	dd.sessions = append(dd.sessions, sid)
	return sid
}

// prune forgets visitors whose current visit ended more than twice the
// timeout before now (by event time): their next hit starts a new visit
// anyway. It keeps the open map small.
func (s *Store) prune(now int64) {
	cut := now - 2*s.timeout.Milliseconds()
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
	return Stats{Events: n, Visits: len(s.sStart), Days: len(s.days), Seq: s.seq}
}
