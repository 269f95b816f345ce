package bus

import (
	"testing"
	"time"
)

// TestDedupLetsMemoryGo: once a burst's ids leave the window, the map that
// held them is made anew (a Go map keeps its buckets after deletes), also
// when nothing is published afterwards.
func TestDedupLetsMemoryGo(t *testing.T) {
	d := newDedup(50*time.Millisecond, 1_000_000)
	now := time.Now().UnixNano()
	d.mu.Lock()
	for i := range 20000 {
		d.addLocked(uint64(i)+1, Position{Seq: uint64(i) + 1}, now)
	}
	d.mu.Unlock()
	if d.peak != 20000 {
		t.Fatalf("peak %d", d.peak)
	}
	time.Sleep(100 * time.Millisecond)
	var n int
	d.onSize = func(x int) { n = x }
	d.expire()
	if n != 0 || d.size() != 0 || d.peak != 0 || cap(d.q) > 2048 {
		t.Fatalf("after the window: %d ids, peak %d, queue cap %d", n, d.peak, cap(d.q))
	}
}
