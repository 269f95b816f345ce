package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/api"
	"github.com/opsgraph/ops/internal/event"
	"github.com/opsgraph/ops/internal/graph"
)

const crashGraph = `
processors:
  - name: double
    from: ev.gc.in
    map: |
      root.k = this.data.k
      root.v = this.data.v * 2
    to: ev.gc.out
views:
  - name: per_key
    from: ev.gc.in
    key: {k: this.data.k}
    measures:
      n: count
      total: sum(this.data.v)
  - name: out_per_key
    from: ev.gc.out
    key: {k: this.data.k}
    measures:
      n: count
`

type viewRow struct {
	Key    map[string]any
	Values map[string]float64
}

func viewRows(url, view string) (map[string]viewRow, error) {
	resp, err := http.Get(url + "/api/v1/views/" + view + "?limit=1000")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res struct{ Rows []viewRow }
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, err
	}
	out := map[string]viewRow{}
	for _, r := range res.Rows {
		out[fmt.Sprint(r.Key["k"])] = r
	}
	return out, nil
}

func readEvents(t *testing.T, url, subject string) []api.StoredEvent {
	t.Helper()
	var all []api.StoredEvent
	since := ""
	for {
		u := url + "/api/v1/events?limit=10000&subject=" + subject
		if since != "" {
			u += "&since=" + since
		}
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Events []api.StoredEvent
			Next   string
		}
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Events...)
		if len(p.Events) == 0 {
			return all
		}
		since = p.Next
	}
}

// TestGraphExactlyOnceUnderCrash: a processor and two views run in a child
// ops process that is killed with SIGKILL while events pour in. At the end
// the views count exactly the stored inputs and the processor's outputs,
// and each output is stored once.
func TestGraphExactlyOnceUnderCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a real process")
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "ops.yaml")
	if err := os.WriteFile(cfgFile, []byte(crashGraph), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	acked := map[string]bool{}
	for round := 0; round < 4; round++ {
		p := startOps(t, data, "--config", cfgFile)
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					n := 1 + rand.IntN(30)
					ids := make([]string, n)
					var sb strings.Builder
					sb.WriteByte('[')
					for i := range ids {
						ids[i] = event.NewID()
						if i > 0 {
							sb.WriteByte(',')
						}
						fmt.Fprintf(&sb, `{"specversion":"1.0","id":%q,"source":"/gc","type":"gc.in","data":{"k":"k%d","v":%d}}`, ids[i], rand.IntN(7), 1+rand.IntN(5))
					}
					sb.WriteByte(']')
					req, _ := http.NewRequestWithContext(ctx, "POST", p.url+"/api/v1/events", strings.NewReader(sb.String()))
					req.Header.Set("Content-Type", event.BatchContentType)
					resp, err := http.DefaultClient.Do(req)
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							mu.Lock()
							for _, id := range ids {
								acked[id] = true
							}
							mu.Unlock()
						}
					}
				}
			}()
		}
		time.Sleep(time.Duration(300+rand.IntN(900)) * time.Millisecond)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
		cancel()
		wg.Wait()
	}
	p := startOps(t, data, "--config", cfgFile)
	inputs := readEvents(t, p.url, "ev.gc.in")
	stored := map[string]bool{}
	wantN := map[string]float64{}
	wantTotal := map[string]float64{}
	for _, e := range inputs {
		if stored[e.Event.ID] {
			t.Fatalf("input %s stored twice", e.Event.ID)
		}
		stored[e.Event.ID] = true
		var d struct {
			K string
			V float64
		}
		_ = json.Unmarshal(e.Event.Data, &d)
		wantN[d.K]++
		wantTotal[d.K] += d.V
	}
	for id := range acked {
		if !stored[id] {
			t.Fatalf("acknowledged input %s lost", id)
		}
	}
	// Wait for the graph to catch up, then compare exactly.
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		lastErr = func() error {
			rows, err := viewRows(p.url, "per_key")
			if err != nil {
				return err
			}
			outRows, err := viewRows(p.url, "out_per_key")
			if err != nil {
				return err
			}
			for k, n := range wantN {
				if rows[k].Values["n"] != n || rows[k].Values["total"] != wantTotal[k] {
					return fmt.Errorf("per_key %s: got n=%v total=%v, want %v %v", k, rows[k].Values["n"], rows[k].Values["total"], n, wantTotal[k])
				}
				if outRows[k].Values["n"] != n {
					return fmt.Errorf("out_per_key %s: got %v, want %v", k, outRows[k].Values["n"], n)
				}
			}
			return nil
		}()
		if lastErr == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if lastErr != nil {
		t.Fatal(lastErr)
	}
	outputs := readEvents(t, p.url, "ev.gc.out")
	seen := map[string]bool{}
	for _, o := range outputs {
		if seen[o.Event.ID] {
			t.Fatalf("output %s stored twice", o.Event.ID)
		}
		seen[o.Event.ID] = true
	}
	for id := range stored {
		if !seen[graph.DerivedID("double", id)] {
			t.Fatalf("no output for input %s", id)
		}
	}
	if len(outputs) != len(stored) {
		t.Fatalf("%d outputs for %d inputs", len(outputs), len(stored))
	}
	t.Logf("%d inputs (%d acked), %d outputs, views exact", len(stored), len(acked), len(outputs))
}
