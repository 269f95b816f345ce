package proxy

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opsgraph/ops/internal/reply"
	"github.com/opsgraph/ops/internal/topk"
)

// Top paths: the proxy keeps, per five-minute bucket for a day, the paths
// it answered most often (internal/topk: at most topK a bucket, a count
// over by at most its error, any path seen more often than 1/topK of a
// bucket's requests kept). Memory is bounded (topK x buckets entries)
// whatever scanners send.
const (
	topK       = 200
	topBucket  = 5 * time.Minute
	topBuckets = 288 // a day
)

// topEntry is what a path's entry holds beside its count and error.
type topEntry struct {
	s4xx, s5xx, bytes, dur uint64 // dur in microseconds
}

type topKey struct{ route, path string }

type topBucketT struct {
	start   int64 // unix seconds of the bucket, 0 when unused
	entries *topk.Summary[topKey, topEntry]
}

type topPaths struct {
	mu      sync.Mutex
	buckets [topBuckets]topBucketT
}

// add counts one answered request.
func (t *topPaths) add(now time.Time, route, path string, code int, bytes int64, d time.Duration) {
	start := now.Truncate(topBucket).Unix()
	t.mu.Lock()
	defer t.mu.Unlock()
	b := &t.buckets[(start/int64(topBucket/time.Second))%topBuckets]
	if b.start != start {
		b.start = start
		if b.entries == nil {
			b.entries = topk.New[topKey, topEntry](topK)
		} else {
			b.entries.Reset()
		}
	}
	// A struct key: no string is made per request, only for a path new
	// to the bucket (cloned: the request's strings are not kept).
	key := topKey{route, path}
	if b.entries.Lookup(key) == nil {
		key = topKey{strings.Clone(route), strings.Clone(path)}
	}
	ent, _ := b.entries.Add(key)
	e := &ent.Val
	switch {
	case code >= 500:
		e.s5xx++
	case code >= 400:
		e.s4xx++
	}
	if bytes > 0 {
		e.bytes += uint64(bytes)
	}
	e.dur += uint64(d.Microseconds())
}

// PathStat is one path's traffic over a range.
type PathStat struct {
	Route    string  `json:"route"`
	Path     string  `json:"path"`
	Requests uint64  `json:"requests"`
	MaxError uint64  `json:"max_error"` // requests may be over by up to this
	Status4  uint64  `json:"status_4xx"`
	Status5  uint64  `json:"status_5xx"`
	Bytes    uint64  `json:"bytes_out"`
	MeanMS   float64 `json:"mean_ms"`
}

// top sums the buckets that start in [from, to) and returns the most
// requested paths, at most limit.
func (t *topPaths) top(from, to time.Time, limit int) []PathStat {
	sum := map[topKey]*PathStat{}
	durs := map[topKey]uint64{}
	t.mu.Lock()
	for i := range t.buckets {
		b := &t.buckets[i]
		if b.start == 0 || b.start < from.Truncate(topBucket).Unix() || b.start >= to.Unix() {
			continue
		}
		b.entries.Each(func(ent *topk.Entry[topKey, topEntry]) {
			k, e := ent.Key, &ent.Val
			s := sum[k]
			if s == nil {
				s = &PathStat{Route: k.route, Path: k.path}
				sum[k] = s
			}
			s.Requests += ent.Count
			s.MaxError += ent.Err
			s.Status4 += e.s4xx
			s.Status5 += e.s5xx
			s.Bytes += e.bytes
			durs[k] += e.dur
		})
	}
	t.mu.Unlock()
	out := make([]PathStat, 0, len(sum))
	for k, s := range sum {
		if s.Requests > s.MaxError { // what was only inherited is not this path's
			s.MeanMS = float64(durs[k]) / 1000 / float64(s.Requests-s.MaxError)
		}
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b PathStat) int {
		if a.Requests != b.Requests {
			if a.Requests > b.Requests {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Route+a.Path, b.Route+b.Path)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// pathsHandler answers GET /api/v1/proxy/paths?since=1h&limit=20.
func (m *Module) pathsHandler(w http.ResponseWriter, r *http.Request) {
	since, limit, ok := reply.Window(w, r, topBucket*topBuckets, topK)
	if !ok {
		return
	}
	now := time.Now()
	reply.JSON(w, http.StatusOK, map[string]any{"since": since.String(), "bucket": topBucket.String(), "paths": m.paths.top(now.Add(-since), now.Add(time.Second), limit)})
}
