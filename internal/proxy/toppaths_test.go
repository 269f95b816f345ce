package proxy

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestTopPathsBounds feeds a skewed stream with a long tail of one-off
// paths (a scanner) and checks space-saving's promises against the exact
// counts: every path above 1/topK of the stream is listed, no count is
// under the truth or over it by more than its stated error, and the
// bucket never holds more than topK paths.
func TestTopPathsBounds(t *testing.T) {
	var tp topPaths
	now := time.Date(2026, 12, 7, 10, 1, 0, 0, time.UTC)
	exact := map[string]uint64{}
	r := rand.New(rand.NewPCG(1, 2))
	n := 0
	for i := range 50_000 {
		var p string
		switch x := r.IntN(100); {
		case x < 30:
			p = "/"
		case x < 50:
			p = "/pricing"
		case x < 60:
			p = fmt.Sprintf("/blog/%d", r.IntN(20))
		default:
			p = fmt.Sprintf("/scan/%d", i) // each seen once
		}
		code := 200
		if p == "/pricing" && i%10 == 0 {
			code = 503
		}
		tp.add(now, "site", p, code, 100, time.Millisecond)
		exact[p]++
		n++
	}
	for i := range tp.buckets {
		if e := tp.buckets[i].entries; e != nil && e.Len() > topK {
			t.Fatalf("bucket holds %d paths, over %d", e.Len(), topK)
		}
	}
	top := tp.top(now.Add(-time.Hour), now.Add(time.Minute), topK)
	got := map[string]PathStat{}
	for _, s := range top {
		got[s.Path] = s
		if s.Requests < exact[s.Path] || s.Requests-s.MaxError > exact[s.Path] {
			t.Errorf("%s: %d requests (error %d), truly %d", s.Path, s.Requests, s.MaxError, exact[s.Path])
		}
	}
	for p, c := range exact {
		if c > uint64(n/topK) {
			if _, ok := got[p]; !ok {
				t.Errorf("%s (%d of %d requests) is missing", p, c, n)
			}
		}
	}
	if top[0].Path != "/" || top[1].Path != "/pricing" || top[1].Status5 == 0 {
		t.Fatalf("order: %+v %+v", top[0], top[1])
	}
	// Another bucket a day later reuses the slot; the old counts go.
	tp.add(now.Add(24*time.Hour), "site", "/new", 200, 1, time.Millisecond)
	if later := tp.top(now.Add(23*time.Hour), now.Add(25*time.Hour), 10); len(later) != 1 || later[0].Path != "/new" {
		t.Fatalf("a day later: %+v", later)
	}
}
