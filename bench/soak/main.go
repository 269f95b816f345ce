// Command soak runs a real Ops under steady load for a while and checks
// that it holds steady: every publish answered 200, goroutines back to
// where they started once the load stops, and memory back near its
// baseline.
//
//	go run ./bench/soak -ops bin/ops                    # 3 minutes at 2,000 events/s
//	go run ./bench/soak -ops bin/ops -duration 30m      # longer
//
// The load: -rate events a second in batches of 50 through the API, with
// two live tails (SSE) reading them, as an operator watching would.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsgraph/ops/bench/opsproc"
)

var (
	opsBin   = flag.String("ops", "bin/ops", "ops binary")
	duration = flag.Duration("duration", 3*time.Minute, "how long the load runs")
	rate     = flag.Int("rate", 2000, "events a second")
	settle   = flag.Duration("settle", 20*time.Second, "how long after the load before the end figures are read")
)

func main() {
	flag.Parse()
	dir, _ := os.MkdirTemp("", "opssoak")
	defer os.RemoveAll(dir)
	p, err := opsproc.Start(*opsBin, dir)
	if err != nil {
		fail(err)
	}
	defer p.Stop()
	base, token, pid := p.URL, p.Token, p.Cmd.Process.Pid
	time.Sleep(2 * time.Second)
	g0, rss0 := goroutines(base, token), opsproc.RSS(pid)

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	// Two live tails, reading everything.
	var tailed atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/events/stream", nil)
			req.Header.Set("Authorization", token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if bytes.HasPrefix(sc.Bytes(), []byte("data: ")) {
					tailed.Add(1)
				}
			}
		})
	}
	// The load, paced.
	const batch = 50
	var sent, failed atomic.Int64
	var peakRSS, peakG atomic.Int64
	sampler := time.NewTicker(5 * time.Second)
	defer sampler.Stop()
	go func() {
		for range sampler.C {
			if r := opsproc.RSS(pid); r > peakRSS.Load() {
				peakRSS.Store(r)
			}
			if g := goroutines(base, token); g > peakG.Load() {
				peakG.Store(g)
			}
		}
	}()
	interval := time.Duration(float64(time.Second) * batch / float64(*rate))
	tick := time.NewTicker(interval)
	n := 0
	client := &http.Client{Timeout: 15 * time.Second}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		var b strings.Builder
		b.WriteByte('[')
		for i := 0; i < batch; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"specversion":"1.0","id":"soak-%d-%d","source":"/soak","type":"soak.page","data":{"path":"/p/%d"}}`, n, i, i)
		}
		b.WriteByte(']')
		n++
		req, _ := http.NewRequest("POST", base+"/api/v1/events", strings.NewReader(b.String()))
		req.Header.Set("Content-Type", "application/cloudevents-batch+json")
		req.Header.Set("Authorization", token)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			failed.Add(1)
		} else {
			sent.Add(batch)
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	tick.Stop()
	wg.Wait()
	time.Sleep(*settle)
	g1, rss1 := goroutines(base, token), opsproc.RSS(pid)
	fmt.Printf("\nSoak: %v at %d events/s (batches of %d) with 2 live tails, then %v idle\n", *duration, *rate, batch, *settle)
	fmt.Printf("%-12s %12s %12s %12s\n", "", "start", "peak", "end")
	fmt.Printf("%-12s %12d %12d %12d\n", "goroutines", g0, max(peakG.Load(), g0), g1)
	fmt.Printf("%-12s %8.1f MiB %8.1f MiB %8.1f MiB\n", "RSS", mib(rss0), mib(max(peakRSS.Load(), rss0)), mib(rss1))
	fmt.Printf("published %d events (%d requests failed), tails read %d\n", sent.Load(), failed.Load(), tailed.Load())
	var bad []string
	if failed.Load() > 0 {
		bad = append(bad, fmt.Sprintf("%d publishes failed", failed.Load()))
	}
	if g1 > g0+20 {
		bad = append(bad, fmt.Sprintf("goroutines grew from %d to %d", g0, g1))
	}
	if sent.Load() == 0 {
		bad = append(bad, "nothing was published")
	}
	if len(bad) > 0 {
		fail(fmt.Errorf("%s", strings.Join(bad, "; ")))
	}
	fmt.Println("steady: every publish answered, goroutines back where they started")
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "soak:", err)
	os.Exit(1)
}

// goroutines reads go_goroutines from Ops's /metrics.
func goroutines(base, token string) int64 {
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int64(n)
		}
	}
	return 0
}
