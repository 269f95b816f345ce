package bus

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/opsgraph/ops/internal/reply"
)

// Disk space. The embedded server's JetStream turns itself off when a
// write fails for want of space, and refuses writes (insufficient
// resources) once it has used its storage limit, which it otherwise sets
// once, at start, to 75% of what was free then. Ops keeps both from
// happening: the limit is the whole file system, and new events are
// refused (507) while less than a reserve is free, so the writes that
// follow what was accepted (views, processors, acks) have room, and
// nothing acknowledged is lost. Intake resumes by itself once space is
// freed; if JetStream was turned off anyway (something else filled the
// disk), the bus module turns it back on then.

// ErrDiskFull is wrapped by *DiskFullError.
var ErrDiskFull = errors.New("disk full")

// DiskFullError says which disk is short of space and by how much.
type DiskFullError struct {
	Dir           string
	Free, Reserve uint64
	// Stuck: a write found the disk full; the bus restarts its store
	// once the reserve is free.
	Stuck bool
}

func (e *DiskFullError) Error() string {
	if e.Stuck {
		return fmt.Sprintf("disk full: a write to %s found no space; %s is free now, and the bus resumes by itself once the reserve of %s (bus.min_free) is",
			e.Dir, sizeString(e.Free), sizeString(e.Reserve))
	}
	return fmt.Sprintf("disk full: %s has %s free, below the reserve of %s (bus.min_free); new events are refused until space is freed, and are accepted again by themselves then",
		e.Dir, sizeString(e.Free), sizeString(e.Reserve))
}

func (e *DiskFullError) Unwrap() error { return ErrDiskFull }

func sizeString(n uint64) string {
	switch {
	case n >= 10<<30:
		return strconv.FormatUint(n>>30, 10) + " GiB"
	case n >= 10<<20:
		return strconv.FormatUint(n>>20, 10) + " MiB"
	case n >= 10<<10:
		return strconv.FormatUint(n>>10, 10) + " KiB"
	}
	return strconv.FormatUint(n, 10) + " B"
}

// spaceGuard checks the free space of the bus's store directory, on
// every publish (a statfs costs microseconds; a cached answer would let a
// burst of writes run past the reserve).
type spaceGuard struct {
	dir     string
	minFree uint64 // bus.min_free
	stuck   atomic.Bool
}

// reserve is the space kept free: bus.min_free, or a tenth of the file
// system when that is smaller (a small disk would otherwise never take a
// write).
func (g *spaceGuard) reserve(total uint64) uint64 { return min(g.minFree, total/10) }

func (g *spaceGuard) check() error {
	if g == nil {
		return nil
	}
	free, total, ok := diskSpace(g.dir)
	if !ok {
		return nil
	}
	if r := g.reserve(total); free < r || g.stuck.Load() {
		return &DiskFullError{Dir: g.dir, Free: free, Reserve: r, Stuck: g.stuck.Load()}
	}
	return nil
}

// Space returns a *DiskFullError while the disk of an embedded bus has
// less than its reserve free, else nil (always nil for an external bus:
// its servers answer for their disks).
func (b *Bus) Space() error { return b.space.check() }

// WriteError answers an HTTP request whose write to the bus failed: 507
// Insufficient Storage with the disk and its free space when the disk is
// full (whatever JetStream's own error said), else 503; both with
// Retry-After.
func (b *Bus) WriteError(w http.ResponseWriter, err error) {
	var dfe *DiskFullError
	if errors.As(err, &dfe) || errors.As(b.Space(), &dfe) {
		w.Header().Set("Retry-After", "30")
		reply.Error(w, http.StatusInsufficientStorage, "", dfe.Error())
		return
	}
	w.Header().Set("Retry-After", "1")
	reply.Error(w, http.StatusServiceUnavailable, "", err.Error())
}

// Disk is the embedded bus's store directory with the free and total bytes
// of its file system; ok is false for an external bus or when unknown.
func (b *Bus) Disk() (dir string, free, total uint64, ok bool) {
	if b.space == nil {
		return "", 0, 0, false
	}
	free, total, ok = diskSpace(b.space.dir)
	return b.space.dir, free, total, ok
}
