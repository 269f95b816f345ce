package analytics

import "math/bits"

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

// pair combines a group and a visitor into one key for counting unique
// visitors per group. Two distinct pairs share a key with a chance of
// about n²/2^65 (under 1e-7 at a billion pairs).
func pair(group uint32, visitor uint64) uint64 {
	return visitor ^ mix(uint64(group)+0x9e3779b97f4a7c15)
}

// bitset is a fixed-size set of small integers.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i uint32)      { b[i>>6] |= 1 << (i & 63) }
func (b bitset) has(i uint32) bool { return b[i>>6]&(1<<(i&63)) != 0 }
