// Package topk keeps the most frequent keys in bounded memory with the
// space-saving algorithm (Metwally, Agrawal and El Abbadi, 2005): at most
// k entries; a new key when all k are taken replaces the least counted
// entry and inherits its count, which is then also the most the new key's
// count can be over (its error). Any key seen more often than 1/k of the
// time is kept. Entries sit in a min-heap by count, so finding the least
// counted is O(1) and an occurrence costs O(log k), not a scan of k. The
// proxy's top paths and the resolver's top domains use it.
package topk

// Summary is one top-k: keys with a count, an error and a value of the
// caller's (e.g. the rule that blocked a domain).
type Summary[K comparable, V any] struct {
	k    int
	pos  map[K]int // key -> its index in heap
	heap []Entry[K, V]
}

// Entry is a key's count, the most that count may be over, and its value.
type Entry[K comparable, V any] struct {
	Key        K
	Count, Err uint64
	Val        V
}

// New makes a summary of at most k keys.
func New[K comparable, V any](k int) *Summary[K, V] {
	return &Summary[K, V]{k: max(k, 1), pos: make(map[K]int, k), heap: make([]Entry[K, V], 0, k)}
}

// Lookup is key's entry, or nil (valid until the next Add or Reset).
func (s *Summary[K, V]) Lookup(key K) *Entry[K, V] {
	if i, ok := s.pos[key]; ok {
		return &s.heap[i]
	}
	return nil
}

// Add counts one occurrence of key and returns its entry (valid until the
// next Add or Reset); fresh says the key came in now, with a zero Val.
func (s *Summary[K, V]) Add(key K) (e *Entry[K, V], fresh bool) {
	if i, ok := s.pos[key]; ok {
		s.heap[i].Count++
		return &s.heap[s.down(i)], false
	}
	if len(s.heap) < s.k {
		s.heap = append(s.heap, Entry[K, V]{Key: key, Count: 1})
		i := len(s.heap) - 1
		s.pos[key] = i
		return &s.heap[s.up(i)], true
	}
	root := &s.heap[0]
	delete(s.pos, root.Key)
	*root = Entry[K, V]{Key: key, Count: root.Count + 1, Err: root.Count}
	s.pos[key] = 0
	return &s.heap[s.down(0)], true
}

// Len is the number of keys held.
func (s *Summary[K, V]) Len() int { return len(s.heap) }

// Each calls fn for every entry, in no order.
func (s *Summary[K, V]) Each(fn func(e *Entry[K, V])) {
	for i := range s.heap {
		fn(&s.heap[i])
	}
}

// Reset empties the summary, keeping its memory.
func (s *Summary[K, V]) Reset() {
	clear(s.pos)
	clear(s.heap)
	s.heap = s.heap[:0]
}

func (s *Summary[K, V]) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.pos[s.heap[i].Key] = i
	s.pos[s.heap[j].Key] = j
}

// up moves entry i toward the root while it counts less than its parent,
// and returns where it ends.
func (s *Summary[K, V]) up(i int) int {
	for i > 0 {
		p := (i - 1) / 2
		if s.heap[p].Count <= s.heap[i].Count {
			break
		}
		s.swap(i, p)
		i = p
	}
	return i
}

// down moves entry i away from the root while a child counts less, and
// returns where it ends.
func (s *Summary[K, V]) down(i int) int {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return i
		}
		c := l
		if r := l + 1; r < n && s.heap[r].Count < s.heap[l].Count {
			c = r
		}
		if s.heap[i].Count <= s.heap[c].Count {
			return i
		}
		s.swap(i, c)
		i = c
	}
}
