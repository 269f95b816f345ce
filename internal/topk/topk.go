// Package topk keeps the most frequent keys in bounded memory with the
// space-saving algorithm (Metwally, Agrawal and El Abbadi, 2005): a map
// holds at most k entries; a new key in a full map takes the place of
// the least counted entry and inherits its count, which is then also the
// most the new key's count can be over (its error). Any key seen more
// often than 1/k of the time is kept. The proxy's top paths and the
// resolver's top domains use it.
package topk

// Slot returns m's entry for key, making one when there is none: a new
// entry while m holds fewer than k, else the least counted entry (count
// tells an entry's count), evicted and reused. reset readies the entry
// for key, with inherit the evicted count (0 for a new one); the caller
// then counts the occurrence.
func Slot[K comparable, E any](m map[K]*E, key K, k int, count func(*E) uint64, reset func(e *E, inherit uint64)) *E {
	if e := m[key]; e != nil {
		return e
	}
	if len(m) < k {
		e := new(E)
		reset(e, 0)
		m[key] = e
		return e
	}
	var minK K
	var min *E
	for key, e := range m {
		if min == nil || count(e) < count(min) {
			minK, min = key, e
		}
	}
	delete(m, minK)
	reset(min, count(min))
	m[key] = min
	return min
}
