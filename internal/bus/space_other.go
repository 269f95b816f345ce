//go:build !unix

package bus

// diskSpace cannot be read here; the guard stays off.
func diskSpace(string) (free, total uint64, ok bool) { return 0, 0, false }
