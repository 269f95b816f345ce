package topk

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestSummary: a frequent key survives a flood of one-off keys in a
// summary of k entries, with a count never under its true one and over by
// at most its error.
func TestSummary(t *testing.T) {
	s := New[string, int](10)
	for i := 0; i < 1000; i++ {
		s.Add("hot")
		s.Add(fmt.Sprintf("cold-%d", i))
	}
	if s.Len() != 10 {
		t.Fatalf("%d entries, want at most 10", s.Len())
	}
	e := s.Lookup("hot")
	if e == nil || e.Count < 1000 || e.Count-e.Err > 1000 {
		t.Fatalf("hot: %+v", e)
	}
}

// TestSummaryAgainstExact: on a skewed random stream, every kept key's
// count brackets its true count (count-err <= true <= count), each key
// seen more than n/k times is kept, and the heap's root is always the
// least counted entry.
func TestSummaryAgainstExact(t *testing.T) {
	const k, n = 50, 200_000
	r := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(r, 1.2, 1, 5000)
	s := New[uint64, struct{}](k)
	exact := map[uint64]uint64{}
	for i := range n {
		key := z.Uint64()
		exact[key]++
		e, _ := s.Add(key)
		if e.Key != key {
			t.Fatalf("Add(%d) returned the entry of %d", key, e.Key)
		}
		if i%997 == 0 {
			least := ^uint64(0)
			s.Each(func(e *Entry[uint64, struct{}]) { least = min(least, e.Count) })
			if s.heap[0].Count != least {
				t.Fatalf("root counts %d, the least is %d", s.heap[0].Count, least)
			}
			for key, p := range s.pos {
				if s.heap[p].Key != key {
					t.Fatalf("index of %d points at %d", key, s.heap[p].Key)
				}
			}
		}
	}
	s.Each(func(e *Entry[uint64, struct{}]) {
		if tr := exact[e.Key]; e.Count < tr || e.Count-e.Err > tr {
			t.Fatalf("key %d: count %d err %d, true %d", e.Key, e.Count, e.Err, tr)
		}
	})
	for key, c := range exact {
		if c > n/k && s.Lookup(key) == nil {
			t.Fatalf("key %d seen %d times (> n/k = %d) was dropped", key, c, n/k)
		}
	}
	s.Reset()
	if s.Len() != 0 || s.Lookup(1) != nil {
		t.Fatal("Reset left entries")
	}
}

// BenchmarkSummaryMiss: a key new to a full summary (the cost the
// resolver's stats paid on every query of a name outside the top).
func BenchmarkSummaryMiss(b *testing.B) {
	s := New[int, struct{}](300)
	for i := 0; b.Loop(); i++ {
		s.Add(i)
	}
}
