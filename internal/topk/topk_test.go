package topk

import (
	"fmt"
	"testing"
)

type entry struct{ count, err uint64 }

// TestSlot: a frequent key survives a flood of one-off keys in a map of
// k entries, with a count never under its true one and over by at most
// its error.
func TestSlot(t *testing.T) {
	m := map[string]*entry{}
	add := func(key string) {
		e := Slot(m, key, 10, func(e *entry) uint64 { return e.count }, func(e *entry, inherit uint64) { *e = entry{count: inherit, err: inherit} })
		e.count++
	}
	for i := 0; i < 1000; i++ {
		add("hot")
		add(fmt.Sprintf("cold-%d", i))
	}
	if len(m) != 10 {
		t.Fatalf("%d entries, want at most 10", len(m))
	}
	e := m["hot"]
	if e == nil || e.count < 1000 || e.count-e.err > 1000 {
		t.Fatalf("hot: %+v", e)
	}
}
