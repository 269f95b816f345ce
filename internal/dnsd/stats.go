package dnsd

import (
	"cmp"
	"encoding/csv"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/opsgraph/ops/internal/reply"
	"github.com/opsgraph/ops/internal/topk"
)

// Top domains, blocked domains and clients, per five-minute bucket for a
// day, each kept by internal/topk (the proxy's top paths use it too): at
// most statsK keys a bucket, a count over by at most its error. Memory is
// bounded whatever clients ask.
const (
	statsK       = 300
	statsBucket  = 5 * time.Minute
	statsBuckets = 288
)

type statsKind int

const (
	statDomain statsKind = iota
	statBlocked
	statClient
	statKinds
)

// statSummary holds a bucket's keys; the value is the rule that blocked
// a domain last (blocked list only).
type statSummary = topk.Summary[string, string]

type statsBucketT struct {
	start                    int64
	keys                     [statKinds]*statSummary
	queries, blocked, cached uint64
}

type stats struct {
	mu      sync.Mutex
	buckets [statsBuckets]statsBucketT
}

func (s *stats) bucket(now time.Time) *statsBucketT {
	start := now.Truncate(statsBucket).Unix()
	b := &s.buckets[(start/int64(statsBucket/time.Second))%statsBuckets]
	if b.start != start {
		b.start = start
		b.queries, b.blocked, b.cached = 0, 0, 0
		for i := range b.keys {
			if b.keys[i] == nil {
				b.keys[i] = topk.New[string, string](statsK)
			} else {
				b.keys[i].Reset()
			}
		}
	}
	return b
}

func bump(s *statSummary, key, rule string) {
	e, _ := s.Add(key)
	if rule != "" {
		e.Val = rule
	}
}

// add counts one answered query.
func (s *stats) add(now time.Time, o *outcome, client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bucket(now)
	b.queries++
	bump(b.keys[statDomain], o.name, "")
	if o.blocked {
		b.blocked++
		bump(b.keys[statBlocked], o.name, o.rule)
	}
	if o.cached != "" {
		b.cached++
	}
	if client != "" {
		bump(b.keys[statClient], client, "")
	}
}

// StatItem is one row of a top list.
type StatItem struct {
	Key      string `json:"key"`
	Count    uint64 `json:"count"`
	MaxError uint64 `json:"max_error"` // the count may be over by at most this
	Rule     string `json:"rule,omitempty"`
}

// Stats is GET /api/v1/dns/stats.
type Stats struct {
	From       time.Time  `json:"from"`
	To         time.Time  `json:"to"`
	Queries    uint64     `json:"queries"`
	Blocked    uint64     `json:"blocked"`
	Cached     uint64     `json:"cached"`
	TopDomains []StatItem `json:"top_domains"`
	TopBlocked []StatItem `json:"top_blocked"`
	TopClients []StatItem `json:"top_clients"`
}

func (s *stats) top(from, to time.Time, limit int) Stats {
	out := Stats{From: from, To: to}
	var sums [statKinds]map[string]*StatItem
	for i := range sums {
		sums[i] = map[string]*StatItem{}
	}
	s.mu.Lock()
	for i := range s.buckets {
		b := &s.buckets[i]
		t := time.Unix(b.start, 0)
		if b.start == 0 || t.Before(from.Truncate(statsBucket)) || !t.Before(to) {
			continue
		}
		out.Queries += b.queries
		out.Blocked += b.blocked
		out.Cached += b.cached
		for k := range b.keys {
			b.keys[k].Each(func(e *topk.Entry[string, string]) {
				it := sums[k][e.Key]
				if it == nil {
					it = &StatItem{Key: e.Key}
					sums[k][e.Key] = it
				}
				it.Count += e.Count
				it.MaxError += e.Err
				if e.Val != "" {
					it.Rule = e.Val
				}
			})
		}
	}
	s.mu.Unlock()
	list := func(m map[string]*StatItem) []StatItem {
		items := make([]StatItem, 0, len(m))
		for _, it := range m {
			items = append(items, *it)
		}
		slices.SortFunc(items, func(a, b StatItem) int {
			if c := cmp.Compare(b.Count, a.Count); c != 0 {
				return c
			}
			return cmp.Compare(a.Key, b.Key)
		})
		return items[:min(limit, len(items))]
	}
	out.TopDomains, out.TopBlocked, out.TopClients = list(sums[statDomain]), list(sums[statBlocked]), list(sums[statClient])
	return out
}

// statsHandler serves GET /api/v1/dns/stats?since=1h&limit=20 (JSON, or
// CSV of the three lists with Accept: text/csv or ?format=csv).
func (s *Server) statsHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, limit, ok := reply.Window(w, r, statsBucket*statsBuckets, statsK)
	if !ok {
		return
	}
	now := time.Now()
	st := s.stats.top(now.Add(-since), now.Add(statsBucket), limit)
	if q.Get("format") == "csv" || r.Header.Get("Accept") == "text/csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"list", "key", "count", "max_error", "rule"})
		for _, l := range []struct {
			name  string
			items []StatItem
		}{{"domain", st.TopDomains}, {"blocked", st.TopBlocked}, {"client", st.TopClients}} {
			for _, it := range l.items {
				_ = cw.Write([]string{l.name, it.Key, strconv.FormatUint(it.Count, 10), strconv.FormatUint(it.MaxError, 10), it.Rule})
			}
		}
		cw.Flush()
		return
	}
	reply.JSON(w, http.StatusOK, st)
}
