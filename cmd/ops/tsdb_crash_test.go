package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// TestTSDBKill9 remote-writes into a real ops process, kills it with
// SIGKILL mid-stream, restarts it, and checks that every sample whose
// request got a 204 is there (the WAL is written before the answer).
func TestTSDBKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process")
	}
	dir := t.TempDir()
	base := time.Now().Add(-30 * time.Minute).UnixMilli()
	var mu sync.Mutex
	acked := map[string]map[int64]bool{} // worker -> timestamps
	next := map[string]int64{}
	for round := range 3 {
		p := startOps(t, dir)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 3 {
			worker := "w" + strconv.Itoa(w)
			wg.Go(func() {
				for ctx.Err() == nil {
					mu.Lock()
					first := next[worker]
					next[worker] = first + 50
					mu.Unlock()
					ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "crash"}, {Name: "w", Value: worker}}}
					for i := range int64(50) {
						ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: base + first + i, Value: float64(first + i)})
					}
					raw, _ := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts}}).Marshal()
					req, _ := http.NewRequestWithContext(ctx, "POST", p.url+"/prometheus/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
					req.Header.Set("Authorization", "Bearer "+p.token)
					req.Header.Set("Content-Encoding", "snappy")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						continue
					}
					resp.Body.Close()
					if resp.StatusCode == http.StatusNoContent {
						mu.Lock()
						if acked[worker] == nil {
							acked[worker] = map[int64]bool{}
						}
						for _, s := range ts.Samples {
							acked[worker][s.Timestamp] = true
						}
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(time.Duration(400+round*300) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.cmd.Wait()
		cancel()
		wg.Wait()
	}
	p := startOps(t, dir)
	total := 0
	for worker, want := range acked {
		q := url.Values{"query": {fmt.Sprintf(`crash{w=%q}[1h]`, worker)}, "time": {strconv.FormatInt(time.Now().Unix(), 10)}}
		req, _ := http.NewRequest("GET", p.url+"/prometheus/api/v1/query?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+p.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Data struct {
				Result []struct {
					Values [][2]any `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		have := map[int64]bool{}
		if len(r.Data.Result) == 1 {
			for _, v := range r.Data.Result[0].Values {
				have[int64(v[0].(float64)*1000+0.5)] = true
			}
		}
		for ts := range want {
			if !have[ts] {
				t.Fatalf("%s: acknowledged sample at %d lost (%d of %d stored)", worker, ts, len(have), len(want))
			}
		}
		total += len(want)
	}
	if total == 0 {
		t.Fatal("no write was acknowledged; the test proved nothing")
	}
	t.Logf("%d acknowledged samples all present after 3 kill -9", total)
}
