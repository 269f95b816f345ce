package bus

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// dedup is the in-memory window of recently stored event ids. JetStream's
// own window (Nats-Msg-Id) catches an exact retry of a whole message; this
// one catches an event re-sent inside a different batch. Keys are 64-bit
// hashes, so an entry costs about 55 bytes; the chance that two distinct ids
// inside one window collide is below 1e-7 at a million ids.
type dedup struct {
	mu       sync.Mutex
	window   time.Duration
	max      int
	seed     maphash.Seed
	m        map[uint64]uint64 // id hash -> packed Position
	q        []qent
	head     int
	inflight map[uint64]*flight
	evicted  int // entries dropped before their window ended, because of max
	// peak is the most entries m held since it was last made anew: a Go
	// map keeps its buckets after deletes, so a burst's ids would hold
	// their memory long after the window let them go.
	peak int
	// onSize reports the window's size after a periodic expiry (the
	// ops_bus_dedup_window_ids gauge).
	onSize func(int)
}

type qent struct {
	h  uint64
	at int64
}

type flight struct {
	done chan struct{}
}

func newDedup(window time.Duration, max int) *dedup {
	return &dedup{window: window, max: max, seed: maphash.MakeSeed(),
		m: map[uint64]uint64{}, inflight: map[uint64]*flight{}}
}

func (d *dedup) enabled() bool { return d.max > 0 }

func (d *dedup) hash(id string) uint64 { return maphash.String(d.seed, id) }

func (d *dedup) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}

// expire drops the entries whose window has passed.
func (d *dedup) expire() {
	if d == nil || !d.enabled() {
		return
	}
	d.mu.Lock()
	d.expireLocked(time.Now().UnixNano())
	n := len(d.m)
	d.mu.Unlock()
	if d.onSize != nil {
		d.onSize(n)
	}
}

// expireLocked drops entries older than the window, and the oldest ones while
// the map is over its bound.
func (d *dedup) expireLocked(now int64) {
	cut := now - int64(d.window)
	for d.head < len(d.q) {
		e := d.q[d.head]
		over := len(d.m) > d.max
		if e.at >= cut && !over {
			break
		}
		if over && e.at >= cut {
			d.evicted++
		}
		delete(d.m, e.h)
		d.head++
	}
	if d.head > 1024 && d.head > len(d.q)/2 {
		d.q = append(d.q[:0], d.q[d.head:]...)
		d.head = 0
	}
	if d.peak >= 4096 && len(d.m) <= d.peak/4 {
		m := make(map[uint64]uint64, len(d.m))
		for k, v := range d.m {
			m[k] = v
		}
		d.m, d.peak = m, len(m)
		if cap(d.q) > 4*(len(d.q)-d.head)+1024 {
			d.q = append(make([]qent, 0, len(d.q)-d.head), d.q[d.head:]...)
			d.head = 0
		}
	}
}

// addLocked records a stored id; at is the store time in Unix nanoseconds.
func (d *dedup) addLocked(h uint64, p Position, at int64) {
	if _, ok := d.m[h]; ok {
		return
	}
	d.m[h] = pack(p)
	d.q = append(d.q, qent{h, at})
	d.peak = max(d.peak, len(d.m))
}

// reserve looks each hash up. Known ones get their stored position in known;
// ones another publish holds are returned as waits (the caller must release
// its own reservations and wait); the rest are reserved under f.
func (d *dedup) reserve(hs []uint64, f *flight, known []Position, isKnown []bool) (mine []uint64, waits []*flight) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expireLocked(time.Now().UnixNano())
	for i, h := range hs {
		if p, ok := d.m[h]; ok {
			known[i], isKnown[i] = unpack(p), true
			continue
		}
		if other, ok := d.inflight[h]; ok {
			if other != f {
				waits = append(waits, other)
			}
			continue // a repeat inside this publish is resolved by the caller
		}
		d.inflight[h] = f
		mine = append(mine, h)
	}
	return mine, waits
}

// finish ends a reservation: on success the stored positions enter the
// window; either way waiters wake up.
func (d *dedup) finish(mine []uint64, f *flight, stored map[uint64]Position, at int64) {
	d.mu.Lock()
	for _, h := range mine {
		if d.inflight[h] == f {
			delete(d.inflight, h)
		}
		if p, ok := stored[h]; ok {
			d.addLocked(h, p, at)
		}
	}
	d.mu.Unlock()
	close(f.done)
}

// A position packs into 64 bits: 44 for the stream sequence (17 trillion
// messages), 20 for the index (a message holds at most max_payload / the
// smallest event, far below a million).
func pack(p Position) uint64   { return p.Seq<<20 | uint64(p.Index)&(1<<20-1) }
func unpack(v uint64) Position { return Position{Seq: v >> 20, Index: int(v & (1<<20 - 1))} }

func waitAll(ctx context.Context, fs []*flight) error {
	for _, f := range fs {
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
