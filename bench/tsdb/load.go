package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

var (
	jobs     = []string{"api", "web", "worker", "db", "cache"}
	codes    = []string{"200", "201", "404", "500", "503"}
	handlers = []string{"/login", "/search", "/checkout", "/items", "/health"}
)

// seriesGen makes one series' samples in time order; the same seed gives
// the same values, so both targets are sent identical data.
type seriesGen struct {
	labels  []prompb.Label
	counter bool
	rng     *rand.Rand
	v       float64 // counter value
	rate    float64 // counter: mean increase a second; gauge: base latency
	phase   float64
	reset   int // counter: index of the sample where it restarts at 0, -1 for none
}

// newSeries spreads n series over two metrics: half bench_requests_total
// counters (job x code x instance) and half bench_latency_seconds gauges
// (job x handler x instance). Labels are sorted by name, as remote write
// expects.
func newSeries(n int) []*seriesGen {
	var out []*seriesGen
	nc := n / 2
	for k := range n {
		g := &seriesGen{rng: rand.New(rand.NewPCG(uint64(k), 42)), reset: -1}
		if k < nc {
			g.counter = true
			g.labels = []prompb.Label{
				{Name: "__name__", Value: "bench_requests_total"},
				{Name: "code", Value: codes[(k/5)%5]},
				{Name: "instance", Value: fmt.Sprintf("host-%03d:9100", k/25)},
				{Name: "job", Value: jobs[k%5]},
			}
			g.rate = 1 + g.rng.Float64()*99
			g.v = math.Floor(g.rng.Float64() * 1e6)
			if k%50 == 7 { // a few restarts, so rate() meets counter resets
				g.reset = 2000 + k
			}
		} else {
			j := k - nc
			g.labels = []prompb.Label{
				{Name: "__name__", Value: "bench_latency_seconds"},
				{Name: "handler", Value: handlers[(j/5)%5]},
				{Name: "instance", Value: fmt.Sprintf("host-%03d:9100", j/25)},
				{Name: "job", Value: jobs[j%5]},
			}
			g.rate = 0.005 + g.rng.Float64()*0.5
			g.phase = g.rng.Float64() * 2 * math.Pi
		}
		out = append(out, g)
	}
	return out
}

// next is the value of sample i (called with i = 0, 1, 2, ...).
func (g *seriesGen) next(i int, interval time.Duration) float64 {
	if g.counter {
		if i == g.reset {
			g.v = 0
		}
		g.v += math.Round(g.rate * interval.Seconds() * (0.5 + g.rng.Float64()))
		return g.v
	}
	day := 2 * math.Pi * float64(i) * interval.Seconds() / 86400
	return g.rate * (1 + 0.3*math.Sin(day+g.phase)) * (0.8 + 0.4*g.rng.Float64())
}

// request is one remote-write body: a group of series over a window of
// time. Requests of the same group must be stored in order.
type request struct {
	group   int
	body    []byte
	samples int
}

// dataset is every sample, pre-encoded as remote-write 1.0 requests in
// time order, so that sending measures the receiver rather than the
// encoder.
type dataset struct {
	reqs    []request
	groups  int
	samples int
	series  int
	last    time.Time // last sample
	rawSize int       // uncompressed protobuf bytes
	size    int       // snappy bytes
}

// generate builds n series of span/interval samples each, ending before
// now. Timestamps sit 137 ms past a whole second, so no sample falls on
// the edge of a range selector or lookback window when queries use whole
// seconds: Prometheus 3 (embedded in Ops) made those left-open where 2.x
// had them closed, and a sample on the edge would count in one and not
// the other.
func generate(n int, span, interval time.Duration, batch int, now time.Time) *dataset {
	points := int(span / interval)
	first := now.Add(-span).Truncate(time.Second).Add(137 * time.Millisecond)
	gens := newSeries(n)
	perGroup := min(n, 100)
	window := max(1, batch/perGroup) // samples per series per request
	ds := &dataset{series: n, last: first.Add(time.Duration(points-1) * interval)}
	ds.groups = (n + perGroup - 1) / perGroup
	buf := make([]byte, 0, 1<<20)
	for w := 0; w < points; w += window {
		end := min(points, w+window)
		for g := 0; g < ds.groups; g++ {
			var wr prompb.WriteRequest
			for _, s := range gens[g*perGroup : min(n, (g+1)*perGroup)] {
				ts := prompb.TimeSeries{Labels: s.labels, Samples: make([]prompb.Sample, 0, end-w)}
				for i := w; i < end; i++ {
					t := first.Add(time.Duration(i) * interval).UnixMilli()
					ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t, Value: s.next(i, interval)})
				}
				wr.Timeseries = append(wr.Timeseries, ts)
			}
			raw, err := wr.Marshal()
			if err != nil {
				fail(err)
			}
			buf = snappy.Encode(buf[:cap(buf)], raw)
			body := bytes.Clone(buf)
			k := (end - w) * len(wr.Timeseries)
			ds.reqs = append(ds.reqs, request{group: g, body: body, samples: k})
			ds.samples += k
			ds.rawSize += len(raw)
			ds.size += len(body)
		}
	}
	return ds
}

// loadResult is one target's ingest figures.
type loadResult struct {
	elapsed time.Duration
	cpu     time.Duration // the server's CPU time while loading
	others  float64       // share of the machine's CPU taken by other processes meanwhile
}

func (r loadResult) rate(samples int) float64 { return float64(samples) / r.elapsed.Seconds() }

// load sends every request to t with several senders. A request waits for
// the previous one of its group, so each series is written in time order;
// requests are taken in time order, so the senders stay within a window
// or two of each other, well inside the head's appendable range (1 h
// behind its newest sample).
func load(t *target, ds *dataset, senders int) (loadResult, error) {
	type job struct {
		req        *request
		prev, done chan struct{}
	}
	jobsc := make(chan job)
	var (
		mu     sync.Mutex
		failed error
	)
	cpu0, self0 := cpuTime(t.pid), cpuTime(os.Getpid())
	busy0, total0 := machineCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for j := range jobsc {
				<-j.prev
				err := t.write(j.req.body)
				close(j.done)
				if err != nil {
					mu.Lock()
					if failed == nil {
						failed = err
					}
					mu.Unlock()
				}
			}
		})
	}
	last := make([]chan struct{}, ds.groups)
	for g := range last {
		last[g] = make(chan struct{})
		close(last[g])
	}
	for i := range ds.reqs {
		r := &ds.reqs[i]
		j := job{req: r, prev: last[r.group], done: make(chan struct{})}
		last[r.group] = j.done
		jobsc <- j
	}
	close(jobsc)
	wg.Wait()
	res := loadResult{elapsed: time.Since(start), cpu: cpuTime(t.pid) - cpu0}
	busy1, total1 := machineCPU()
	res.others = max(0, float64(busy1-busy0-res.cpu-(cpuTime(os.Getpid())-self0))/float64(total1-total0))
	return res, failed
}

// write sends one remote-write 1.0 request; anything but a 2xx is an
// error, since a refused sample would leave the two stores different.
func (t *target) write(body []byte) error {
	req, err := http.NewRequest(http.MethodPost, t.base+t.writePath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	t.auth(req)
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: remote write: %w", t.name, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: remote write: %s: %s", t.name, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
