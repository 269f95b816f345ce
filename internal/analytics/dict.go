package analytics

// dict encodes strings as small integers; 0 is the empty string.
type dict struct {
	ids  map[string]uint32
	vals []string
}

func newDict() *dict { return &dict{ids: map[string]uint32{"": 0}, vals: []string{""}} }

func (d *dict) id(s string) uint32 {
	if id, ok := d.ids[s]; ok {
		return id
	}
	id := uint32(len(d.vals))
	d.ids[s] = id
	d.vals = append(d.vals, s)
	return id
}

// lookup returns the id of s without adding it.
func (d *dict) lookup(s string) (uint32, bool) {
	id, ok := d.ids[s]
	return id, ok
}

func (d *dict) str(id uint32) string { return d.vals[id] }

func (d *dict) len() int { return len(d.vals) }
