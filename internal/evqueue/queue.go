// Package evqueue publishes events made on a hot path (a proxied
// request, a DNS query) without ever holding it up: a bounded queue in
// memory, batches to the bus, and a spool on disk for when the bus is
// away or the queue is full.
package evqueue

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsgraph/ops/internal/bus"
	"github.com/opsgraph/ops/internal/event"
)

// Queue publishes events without ever holding up their maker: Add puts
// an event on a bounded queue; a single goroutine publishes it in
// batches. When the queue is full or a publish fails, events go to a spool
// directory (the proxy's is data_dir/proxy-spool), which is sent, oldest
// file first, once publishing works again. Event ids travel with the
// events, so a batch sent twice (a crash between publish and file
// removal) is stored once.
type Queue struct {
	bus   *bus.Bus
	log   *slog.Logger
	what  string // "request events", for logs
	batch int
	flush time.Duration
	queue int
	sp    *spool

	// Requests append under mu and wake the publisher only when a batch is
	// full (a channel send per request would wake it per request).
	mu      sync.Mutex
	pending []event.Event
	full    chan struct{}

	published, spooled, dropped prometheus.Counter
	queued                      prometheus.GaugeFunc
}

// Options configure a Queue.
type Options struct {
	Bus *bus.Bus
	Log *slog.Logger
	// Dir is the spool directory.
	Dir string
	// Queue is the most events held in memory, Batch the most sent in one
	// publish, Flush how long an event waits for its batch to fill.
	Queue, Batch int
	Flush        time.Duration
	// SpoolMax bounds the spool's bytes; past it events are dropped (and
	// counted).
	SpoolMax int64
	// Name prefixes the metrics: ops_<name>_events_published_total,
	// ..._spooled_total, ..._dropped_total, ..._queued, ops_<name>_spool_bytes.
	// What names the events in metric help and logs ("request events").
	Name, What string
	Registry   prometheus.Registerer
}

// Open makes a Queue and opens (or creates) its spool.
func Open(o Options) (*Queue, error) {
	sp, err := openSpool(o.Dir, o.SpoolMax)
	if err != nil {
		return nil, err
	}
	t := &Queue{bus: o.Bus, log: o.Log, what: o.What, queue: o.Queue, batch: o.Batch, flush: o.Flush, sp: sp, full: make(chan struct{}, 1),
		pending: make([]event.Event, 0, o.Batch)}
	name, what := "ops_"+o.Name+"_", o.What
	up := strings.ToUpper(what[:1]) + what[1:]
	t.published = prometheus.NewCounter(prometheus.CounterOpts{Name: name + "events_published_total", Help: up + " stored on the bus."})
	t.spooled = prometheus.NewCounter(prometheus.CounterOpts{Name: name + "events_spooled_total", Help: up + " written to the spool (queue full or bus unavailable)."})
	t.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: name + "events_dropped_total", Help: up + " lost because the spool was full."})
	t.queued = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name + "events_queued", Help: up + " waiting in memory."}, func() float64 {
		t.mu.Lock()
		defer t.mu.Unlock()
		return float64(len(t.pending))
	})
	spoolBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name + "spool_bytes", Help: "Bytes of " + what + " waiting in the spool."}, func() float64 { return float64(sp.size()) })
	if o.Registry != nil {
		o.Registry.MustRegister(t.published, t.spooled, t.dropped, t.queued, spoolBytes)
	}
	return t, nil
}

// Add never blocks on the bus.
func (t *Queue) Add(ev event.Event) {
	t.mu.Lock()
	if len(t.pending) >= t.queue {
		t.mu.Unlock()
		t.toSpool([]event.Event{ev})
		return
	}
	t.pending = append(t.pending, ev)
	n := len(t.pending)
	t.mu.Unlock()
	if n == t.batch {
		select {
		case t.full <- struct{}{}:
		default:
		}
	}
}

// take swaps out what is pending.
func (t *Queue) take(spare []event.Event) []event.Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.pending
	t.pending = spare[:0]
	return out
}

func (t *Queue) toSpool(evs []event.Event) {
	n, err := t.sp.write(evs)
	t.spooled.Add(float64(n))
	if n == 0 && err == nil {
		t.log.Warn("spool full; events dropped", "what", t.what, "events", len(evs))
	}
	if n < len(evs) {
		t.dropped.Add(float64(len(evs) - n))
	}
	if err != nil {
		t.log.Error("spool write failed; events lost", "what", t.what, "err", err, "events", len(evs)-n)
	}
}

// Run publishes until ctx ends, then publishes (or spools) what is queued.
func (t *Queue) Run(ctx context.Context) {
	spare := make([]event.Event, 0, t.batch)
	timer := time.NewTicker(t.flush)
	defer timer.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	send := func(buf []event.Event) {
		for len(buf) > 0 {
			n := min(len(buf), t.batch)
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, err := t.bus.Publish(pctx, buf[:n])
			cancel()
			if err != nil {
				t.log.Warn("publishing events failed; spooling", "what", t.what, "err", err, "events", n)
				t.toSpool(buf[:n])
			} else {
				t.published.Add(float64(n))
			}
			buf = buf[n:]
		}
	}
	flush := func() {
		buf := t.take(spare)
		send(buf)
		clear(buf) // the events' data can be collected
		spare = buf[:0]
	}
	for {
		select {
		case <-t.full:
			flush()
		case <-timer.C:
			flush()
		case <-retry.C:
			if t.sp.size() > 0 {
				t.replay(ctx)
			}
		case <-ctx.Done():
			flush()
			t.sp.close()
			return
		}
	}
}

// replay sends spooled files, oldest first, and removes each once stored.
func (t *Queue) replay(ctx context.Context) {
	for _, f := range t.sp.sealed() {
		batches, n, err := readSpool(f)
		if err != nil {
			t.log.Error("unreadable spool file set aside", "file", f, "err", err)
			_ = os.Rename(f, f+".bad")
			t.sp.forget(f)
			continue
		}
		for _, evs := range batches {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := t.bus.Publish(pctx, evs)
			cancel()
			if err != nil {
				return // still away; the whole file is sent again later
			}
		}
		t.published.Add(float64(n))
		if err := os.Remove(f); err != nil {
			t.log.Error("remove sent spool file", "file", f, "err", err)
		}
		t.sp.forget(f)
		t.log.Info("spooled events sent", "what", t.what, "file", filepath.Base(f), "events", n)
	}
}

// spool is a directory of NDJSON files of events; the newest one is open
// for appending, the others are sealed and wait to be sent.
type spool struct {
	dir   string
	max   int64
	mu    sync.Mutex
	cur   *os.File
	w     *bufio.Writer
	files map[string]int64 // path -> size, sealed and current
}

func openSpool(dir string, max int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	s := &spool{dir: dir, max: max, files: map[string]int64{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".ndjson") {
			if fi, err := e.Info(); err == nil {
				s.files[filepath.Join(dir, e.Name())] = fi.Size()
			}
		}
	}
	return s, nil
}

func (s *spool) size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, sz := range s.files {
		n += sz
	}
	return n
}

// write appends evs as one line, a CloudEvents batch, and syncs. A batch
// is replayed as it was written, so a publish that reached the bus before
// it failed (an ack lost to the outage) is sent again under the same
// message id and the bus drops it. It returns how many events it kept:
// all, or none when the spool is full.
func (s *spool) write(evs []event.Event) (int, error) {
	line, err := event.EncodeBatch(evs)
	if err != nil {
		return 0, err
	}
	line = append(line, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	var total int64
	for _, sz := range s.files {
		total += sz
	}
	if total+int64(len(line)) > s.max {
		return 0, nil
	}
	if s.cur == nil {
		name := filepath.Join(s.dir, fmt.Sprintf("%020d.ndjson", time.Now().UnixNano()))
		f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return 0, err
		}
		s.cur, s.w = f, bufio.NewWriterSize(f, 64<<10)
		s.files[name] = 0
	}
	if _, err := s.w.Write(line); err != nil {
		return 0, err
	}
	s.files[s.cur.Name()] += int64(len(line))
	if err := s.w.Flush(); err != nil {
		return 0, err
	}
	return len(evs), s.cur.Sync()
}

// sealed closes the current file (so replay can send it) and lists every
// file, oldest first.
func (s *spool) sealed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		_ = s.w.Flush()
		_ = s.cur.Close()
		s.cur, s.w = nil, nil
	}
	out := make([]string, 0, len(s.files))
	for f := range s.files {
		out = append(out, f)
	}
	slices.Sort(out) // names are zero-padded nanosecond times
	return out
}

func (s *spool) forget(f string) {
	s.mu.Lock()
	delete(s.files, f)
	s.mu.Unlock()
}

func (s *spool) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		_ = s.w.Flush()
		_ = s.cur.Sync()
		_ = s.cur.Close()
		s.cur, s.w = nil, nil
	}
}

// readSpool returns the batches of a spool file.
func readSpool(path string) ([][]event.Event, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var out [][]event.Event
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for sc.Scan() {
		evs, err := event.Decode(sc.Bytes())
		if err != nil {
			// A torn last line (a crash mid-write) is the only expected damage.
			continue
		}
		out = append(out, evs)
		n += len(evs)
	}
	return out, n, sc.Err()
}
