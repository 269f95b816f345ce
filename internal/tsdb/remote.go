package tsdb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/opsgraph/ops/internal/config"
)

// remoteWriters ship every stored sample to remote-write destinations.
// Each destination has its own durable queue: samples are appended (as
// ready-to-send WriteRequests) to segment files under
// tsdb/remote/<name>/ when they are committed to the TSDB, and a segment
// is removed only after the destination acknowledged all of it, so an
// Ops restart or a destination outage loses nothing. A sender retries
// with exponential backoff (0.25 s doubling to 30 s, with jitter) on
// connection errors, 5xx and 429; a 4xx other than 429 drops the request
// (the destination will never take it) and counts it.
type remoteWriters struct {
	qs []*rwQueue
}

type rwQueue struct {
	name  string
	cfg   config.RemoteWrite
	dir   string
	log   *slog.Logger
	hc    *http.Client
	batch int
	max   int64

	mu      sync.Mutex // the newest segment: its number (0 until read from disk) and size
	seg     uint64
	segSize int64
	wake    chan struct{}

	sent, failed, dropped, retries prometheus.Counter
	lag, queued                    prometheus.Gauge
}

// A segment file holds records: uvarint length, then a snappy-compressed
// WriteRequest. Segments are named by a growing sequence number.
const segMax = 4 << 20

func newRemoteWriters(cfgs []config.RemoteWrite, dir string, log *slog.Logger, reg prometheus.Registerer) (*remoteWriters, error) {
	rw := &remoteWriters{}
	if len(cfgs) == 0 {
		return rw, nil
	}
	vec := func(name, help string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"remote"})
		reg.MustRegister(c)
		return c
	}
	gvec := func(name, help string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"remote"})
		reg.MustRegister(g)
		return g
	}
	sent := vec("ops_tsdb_remote_samples_sent_total", "Samples a remote-write destination acknowledged.")
	failed := vec("ops_tsdb_remote_requests_failed_total", "Remote-write requests that failed (each is retried unless dropped).")
	dropped := vec("ops_tsdb_remote_samples_dropped_total", "Samples given up on: refused with a 4xx, or pushed out of a full queue.")
	retries := vec("ops_tsdb_remote_retries_total", "Remote-write requests sent again after a failure.")
	lag := gvec("ops_tsdb_remote_lag_seconds", "Age of the oldest sample waiting for a remote-write destination.")
	queued := gvec("ops_tsdb_remote_queue_bytes", "Bytes waiting on disk for a remote-write destination.")
	for i, c := range cfgs {
		name := c.QueueName(i)
		q := &rwQueue{name: name, cfg: c, dir: filepath.Join(dir, "remote", name), log: log.With("remote", name),
			batch: c.BatchSize, max: int64(c.MaxQueue), wake: make(chan struct{}, 1),
			sent: sent.WithLabelValues(name), failed: failed.WithLabelValues(name), dropped: dropped.WithLabelValues(name),
			retries: retries.WithLabelValues(name), lag: lag.WithLabelValues(name), queued: queued.WithLabelValues(name)}
		if q.batch <= 0 {
			q.batch = 2000
		}
		if q.max <= 0 {
			q.max = 512 << 20
		}
		timeout := c.Timeout.D()
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		q.hc = &http.Client{Timeout: timeout}
		if err := os.MkdirAll(q.dir, 0o750); err != nil {
			return nil, err
		}
		rw.qs = append(rw.qs, q)
	}
	return rw, nil
}

// enqueue adds committed samples to every destination's queue.
func (rw *remoteWriters) enqueue(ss []sample) {
	if len(rw.qs) == 0 || len(ss) == 0 {
		return
	}
	ts := toTimeSeries(ss)
	for _, q := range rw.qs {
		// On disk (fsynced) before the write that brought them is
		// acknowledged: a kill -9 loses nothing owed to a destination.
		q.write(ts)
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// toTimeSeries groups samples by series into prompb form.
func toTimeSeries(ss []sample) []prompb.TimeSeries {
	idx := map[uint64]int{}
	var out []prompb.TimeSeries
	for _, s := range ss {
		h := s.l.Hash()
		i, ok := idx[h]
		if !ok {
			i = len(out)
			idx[h] = i
			var ls []prompb.Label
			s.l.Range(func(l labels.Label) { ls = append(ls, prompb.Label{Name: l.Name, Value: l.Value}) })
			out = append(out, prompb.TimeSeries{Labels: ls})
		}
		switch {
		case s.fh != nil:
			out[i].Histograms = append(out[i].Histograms, prompb.FromFloatHistogram(s.t, s.fh))
		case s.h != nil:
			out[i].Histograms = append(out[i].Histograms, prompb.FromIntHistogram(s.t, s.h))
		default:
			out[i].Samples = append(out[i].Samples, prompb.Sample{Timestamp: s.t, Value: s.v})
		}
	}
	return out
}

func (rw *remoteWriters) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, q := range rw.qs {
		wg.Go(func() { q.run(ctx) })
	}
	wg.Wait()
}

// write appends ts to the newest segment as records of at most batch
// samples each, with one write and one fsync, starting a new segment when
// the newest is full.
func (q *rwQueue) write(ts []prompb.TimeSeries) {
	var buf []byte
	total, lost := 0, 0
	for len(ts) > 0 {
		n, cut := 0, 0
		for cut < len(ts) && (cut == 0 || n+len(ts[cut].Samples)+len(ts[cut].Histograms) <= q.batch) {
			n += len(ts[cut].Samples) + len(ts[cut].Histograms)
			cut++
		}
		total += n
		raw, err := (&prompb.WriteRequest{Timeseries: ts[:cut]}).Marshal()
		if err != nil {
			q.log.Error("remote write: marshal", "err", err)
			lost += n
		} else {
			rec := snappy.Encode(nil, raw)
			buf = binary.AppendUvarint(buf, uint64(len(rec)))
			buf = append(buf, rec...)
		}
		ts = ts[cut:]
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.appendRecords(buf); err != nil {
		q.log.Error("remote write: queue on disk", "err", err)
		lost = total
	}
	q.dropped.Add(float64(lost))
}

func (q *rwQueue) segments() []uint64 {
	ents, _ := os.ReadDir(q.dir)
	var out []uint64
	for _, e := range ents {
		if n, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), ".seg"), 10, 64); err == nil && strings.HasSuffix(e.Name(), ".seg") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (q *rwQueue) segPath(n uint64) string {
	return filepath.Join(q.dir, fmt.Sprintf("%020d.seg", n))
}

// appendRecords adds encoded records to the newest segment, starting a
// new one (and trimming the queue to its bound) when it is full. Called
// with q.mu held.
func (q *rwQueue) appendRecords(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	if q.seg == 0 {
		q.seg = 1
		if segs := q.segments(); len(segs) > 0 {
			q.seg = segs[len(segs)-1]
			if fi, err := os.Stat(q.segPath(q.seg)); err == nil {
				q.segSize = fi.Size()
			}
		}
	}
	if q.segSize >= segMax {
		q.seg, q.segSize = q.seg+1, 0
		q.trim()
	}
	f, err := os.OpenFile(q.segPath(q.seg), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		q.segSize += int64(len(buf))
	}
	return err
}

// trim drops the oldest segments beyond the queue's size bound.
func (q *rwQueue) trim() {
	segs := q.segments()
	var total int64
	sizes := make([]int64, len(segs))
	for i, n := range segs {
		if fi, err := os.Stat(q.segPath(n)); err == nil {
			sizes[i] = fi.Size()
			total += fi.Size()
		}
	}
	defer q.setBacklog()
	for i := 0; total > q.max && i < len(segs)-1; i++ {
		q.log.Warn("remote write: queue full, oldest segment dropped", "segment", segs[i], "bytes", sizes[i])
		q.dropped.Add(float64(q.countSamples(segs[i])))
		_ = os.Remove(q.segPath(segs[i]))
		_ = os.Remove(q.segPath(segs[i]) + ".pos")
		total -= sizes[i]
	}
}

func (q *rwQueue) countSamples(seg uint64) int {
	n := 0
	_ = q.readSegment(seg, 0, func(_ int64, req *prompb.WriteRequest) error {
		for _, ts := range req.Timeseries {
			n += len(ts.Samples) + len(ts.Histograms)
		}
		return nil
	})
	return n
}

// readSegment calls fn for each record from byte offset off; fn gets the
// offset after the record.
func (q *rwQueue) readSegment(seg uint64, off int64, fn func(next int64, req *prompb.WriteRequest) error) error {
	f, err := os.Open(q.segPath(seg))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReader(f)
	pos := off
	for {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil // end, or a record cut short by a crash: ignored
		}
		rec := make([]byte, n)
		if _, err := io.ReadFull(br, rec); err != nil {
			return nil
		}
		pos += int64(uvarintLen(n)) + int64(n)
		raw, err := snappy.Decode(nil, rec)
		if err != nil {
			continue
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			continue
		}
		if err := fn(pos, &req); err != nil {
			return err
		}
	}
}

func uvarintLen(n uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], n)
}

// The read position in a segment is kept in <segment>.pos, written after
// each acknowledged request: at most the one request in flight at a crash
// is sent twice, which the destination's TSDB stores once (same series,
// timestamp and value).
func (q *rwQueue) readPos(seg uint64) int64 {
	b, err := os.ReadFile(q.segPath(seg) + ".pos")
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func (q *rwQueue) writePos(seg uint64, off int64) {
	p := q.segPath(seg) + ".pos"
	_ = os.WriteFile(p+".tmp", []byte(strconv.FormatInt(off, 10)), 0o640)
	_ = os.Rename(p+".tmp", p)
}

// run sends segments oldest first when woken by a write, and every second
// (after a failure's backoff, or a restart with a backlog).
func (q *rwQueue) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		q.sendAll(ctx)
		select {
		case <-ctx.Done():
		case <-tick.C:
		case <-q.wake:
		}
	}
}

var errStop = errors.New("stopped")

func (q *rwQueue) sendAll(ctx context.Context) {
	for ctx.Err() == nil {
		segs := q.segments()
		if len(segs) == 0 {
			q.lag.Set(0)
			return
		}
		seg := segs[0]
		q.mu.Lock()
		newest := len(segs) == 1
		q.mu.Unlock()
		off := q.readPos(seg)
		err := q.readSegment(seg, off, func(next int64, req *prompb.WriteRequest) error {
			q.setLag(req)
			if err := q.send(ctx, req); err != nil {
				return err
			}
			q.writePos(seg, next)
			return nil
		})
		if err != nil {
			q.setBacklog()
			return
		}
		// The newest segment may still grow: keep it (and its position)
		// unless it is full.
		q.mu.Lock()
		if fi, err := os.Stat(q.segPath(seg)); newest && err == nil && fi.Size() < segMax {
			q.mu.Unlock()
			q.lag.Set(0)
			q.setBacklog()
			return
		}
		_ = os.Remove(q.segPath(seg))
		_ = os.Remove(q.segPath(seg) + ".pos")
		q.mu.Unlock()
	}
}

// setBacklog sets the queue-bytes gauge: what is on disk past the read
// position.
func (q *rwQueue) setBacklog() {
	segs := q.segments()
	var total int64
	for i, n := range segs {
		if fi, err := os.Stat(q.segPath(n)); err == nil {
			total += fi.Size()
			if i == 0 {
				total -= q.readPos(n)
			}
		}
	}
	q.queued.Set(float64(max(total, 0)))
}

func (q *rwQueue) setLag(req *prompb.WriteRequest) {
	oldest := int64(0)
	for _, ts := range req.Timeseries {
		for _, s := range ts.Samples {
			if oldest == 0 || s.Timestamp < oldest {
				oldest = s.Timestamp
			}
		}
	}
	if oldest > 0 {
		q.lag.Set(max(0, time.Since(time.UnixMilli(oldest)).Seconds()))
	}
}

// send posts one request until it is acknowledged, refused for good, or
// ctx ends.
func (q *rwQueue) send(ctx context.Context, req *prompb.WriteRequest) error {
	raw, err := req.Marshal()
	if err != nil {
		return nil
	}
	body := snappy.Encode(nil, raw)
	n := 0
	for _, ts := range req.Timeseries {
		n += len(ts.Samples) + len(ts.Histograms)
	}
	backoff := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			q.retries.Inc()
			d := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
			select {
			case <-ctx.Done():
				return errStop
			case <-time.After(d):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
		code, msg, err := q.post(ctx, body)
		switch {
		case err == nil && code/100 == 2:
			q.sent.Add(float64(n))
			return nil
		case err == nil && code/100 == 4 && code != http.StatusTooManyRequests:
			q.log.Warn("remote write: request refused, dropped", "status", code, "samples", n, "body", msg)
			q.dropped.Add(float64(n))
			return nil
		}
		q.failed.Inc()
		if ctx.Err() != nil {
			return errStop
		}
		if attempt == 0 || attempt%10 == 0 {
			q.log.Warn("remote write: failed, retrying", "status", code, "err", err, "attempt", attempt+1)
		}
	}
}

func (q *rwQueue) post(ctx context.Context, body []byte) (int, string, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, q.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	hreq.Header.Set("User-Agent", "ops-tsdb")
	for k, v := range q.cfg.Headers {
		hreq.Header.Set(k, v)
	}
	if ba := q.cfg.BasicAuth; ba.Username != "" || ba.Password != "" || ba.PasswordFile != "" {
		pw := ba.Password
		if ba.PasswordFile != "" {
			b, err := os.ReadFile(ba.PasswordFile)
			if err != nil {
				return 0, "", fmt.Errorf("basic_auth.password_file: %w", err)
			}
			pw = strings.TrimSpace(string(b))
		}
		hreq.SetBasicAuth(ba.Username, pw)
	}
	resp, err := q.hc.Do(hreq)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, strings.TrimSpace(string(msg)), nil
}
