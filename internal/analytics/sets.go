package analytics

import (
	"math/bits"
	"slices"
)

// u64set is an open-addressing set of 64-bit keys (0 is stored as a flag),
// several times faster than a map for the millions of inserts a report over
// a month makes.
type u64set struct {
	slots []uint64
	n     int
	zero  bool
}

func newU64Set(hint int) *u64set {
	size := 1 << max(4, bits.Len(uint(hint*2)))
	return &u64set{slots: make([]uint64, size)}
}

// add inserts k and reports whether it was new.
func (s *u64set) add(k uint64) bool {
	if k == 0 {
		if s.zero {
			return false
		}
		s.zero = true
		s.n++
		return true
	}
	if s.n*4 >= len(s.slots)*3 {
		s.grow()
	}
	mask := uint64(len(s.slots) - 1)
	for i := mix(k) & mask; ; i = (i + 1) & mask {
		switch s.slots[i] {
		case 0:
			s.slots[i] = k
			s.n++
			return true
		case k:
			return false
		}
	}
}

func (s *u64set) grow() {
	old := s.slots
	s.slots = make([]uint64, 2*len(old))
	mask := uint64(len(s.slots) - 1)
	for _, k := range old {
		if k == 0 {
			continue
		}
		i := mix(k) & mask
		for s.slots[i] != 0 {
			i = (i + 1) & mask
		}
		s.slots[i] = k
	}
}

func (s *u64set) len() int { return s.n }

// mix spreads a key's bits (a splitmix64 finaliser): visitor hashes are
// already random, pair keys made from small integers are not.
func mix(k uint64) uint64 {
	k ^= k >> 30
	k *= 0xbf58476d1ce4e5b9
	k ^= k >> 27
	k *= 0x94d049bb133111eb
	k ^= k >> 31
	return k
}

// pair combines a group and a dense visitor id into one key for counting
// unique visitors per group.
func pair(group, visitor uint32) uint64 { return uint64(group)<<32 | uint64(visitor) }

// bitset is a fixed-size set of small integers.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i uint32)      { b[i>>6] |= 1 << (i & 63) }
func (b bitset) has(i uint32) bool { return b[i>>6]&(1<<(i&63)) != 0 }

// or sets in b every bit of o; o's words past b's end must be zero (a
// day's set grows ahead of the visitors it holds).
func (b bitset) or(o bitset) {
	for i, w := range o[:min(len(o), len(b))] {
		b[i] |= w
	}
}

// count is how many bits are set.
func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// marks counts distinct visitors per group for up to 64 groups in one
// pass: a word per visitor, a bit per group. At a million visitors it is
// 8 MB that the scan touches once per event, where a hash set of
// (group, visitor) pairs would be tens of MB of random probes.
type marks []uint64

func (s *Store) newMarks() marks { return make(marks, len(s.vids)) }

// add sets group bit for visitor v and reports whether it was new.
func (m marks) add(v uint32, bit uint) bool {
	w := m[v]
	if w&(1<<bit) != 0 {
		return false
	}
	m[v] = w | 1<<bit
	return true
}

// stamps counts distinct visitors per bucket when buckets come in order:
// a visitor's word holds the epoch it was last seen in (high half, plus
// one) and the buckets of that epoch it was seen in (low half, up to 32).
type stamps []uint64

// add marks visitor v in bucket bit of epoch e and reports whether it was
// new there.
func (m stamps) add(v uint32, e uint32, bit uint) bool {
	w := m[v]
	if uint32(w>>32) != e+1 {
		m[v] = uint64(e+1)<<32 | 1<<bit
		return true
	}
	if w&(1<<bit) != 0 {
		return false
	}
	m[v] = w | 1<<bit
	return true
}

// counter counts distinct visitors per group: with marks when there are
// at most 64 groups, with a set of (group, visitor) pairs otherwise.
type counter struct {
	bit   []uint8 // group -> its bit in marks
	marks marks
	pairs *u64set
}

func (s *Store) newCounter(groups []uint32) *counter {
	if len(groups) > 64 {
		return &counter{pairs: newU64Set(len(s.vids) / 4)}
	}
	c := &counter{bit: make([]uint8, slices.Max(append([]uint32{0}, groups...))+1), marks: s.newMarks()}
	for i, g := range groups {
		c.bit[g] = uint8(i)
	}
	return c
}

// add counts visitor v in group g and reports whether it was new there.
func (c *counter) add(g, v uint32) bool {
	if c.pairs != nil {
		return c.pairs.add(pair(g, v))
	}
	return c.marks.add(v, uint(c.bit[g]))
}
