package views

import (
	"fmt"
	"math"
	"net/url"
	"testing"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/graph"
)

func testView(t testing.TB) *graph.View {
	c, err := config.Parse([]byte(`
views:
  - name: v
    from: ev.x
    key: {path: this.data.path, country: this.data.country}
    window: 1h
    measures: {n: count, users: uniq(this.data.user)}
`))
	if err != nil {
		t.Fatal(err)
	}
	g, err := graph.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return g.Views[0]
}

// HyperLogLog (precision 14) has a standard error of 1.04/sqrt(2^14) = 0.81%;
// 100,000 distinct users must come out within 3 standard errors.
func TestUniqErrorBound(t *testing.T) {
	v := testView(t)
	r := &row{M: map[string]*mstate{}}
	for i := 0; i < 100_000; i++ {
		obj := map[string]any{"data": map[string]any{"path": "/", "country": "de", "user": fmt.Sprintf("user-%d", i)}}
		in, err := compute(v, obj, r)
		if err != nil {
			t.Fatal(err)
		}
		// Every user twice: duplicates must not count.
		for k := 0; k < 2; k++ {
			if _, err := apply(v, r, in); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := values(v, r)
	if got["n"] != 200_000.0 {
		t.Fatalf("count %v", got["n"])
	}
	est := got["users"].(float64)
	rel := math.Abs(est-100_000) / 100_000
	if rel > 3*0.0081 {
		t.Fatalf("estimate %v is %.2f%% off", est, rel*100)
	}
	t.Logf("estimate %v (%.3f%% off)", est, rel*100)
}

func FuzzParseQuery(f *testing.F) {
	v := testView(f)
	f.Add("key.path=/x&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&sort=-n&limit=10&cursor=20")
	f.Add("format=csv&key.country=de")
	f.Add("limit=-1&sort=window")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		pq, fe := ParseQuery(v, q, "")
		if fe != nil {
			if fe.Field == "" || fe.Msg == "" {
				t.Fatalf("error without field or message: %+v", fe)
			}
			return
		}
		if pq.Limit < 1 || pq.Limit > maxLimit || pq.Offset < 0 {
			t.Fatalf("accepted limit %d offset %d", pq.Limit, pq.Offset)
		}
	})
}
