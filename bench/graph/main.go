// Command graph measures the event graph: a count-by-key view and a
// processor with a Bloblang map, each over N stored events, against raw
// JetStream consume+ack of the same number of events in the same run.
//
//	go run ./bench/graph -ops bin/ops -events 1000000
//
// Ops runs as a child process on bus.sync=always. Events are loaded first
// (through the HTTP API in batches of 100), then Ops is restarted with the
// node under test, which folds or maps the whole backlog; the figure is
// events / time from start to caught up.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsgraph/ops/bench/opsproc"
)

var (
	opsBin = flag.String("ops", "bin/ops", "ops binary")
	events = flag.Int("events", 1_000_000, "events to fold")
	keys   = flag.Int("keys", 100, "distinct keys")
)

const viewCfg = `
views:
  - name: by_key
    from: ev.bench.in
    key: {k: this.data.k}
    measures:
      n: count
`

const procCfg = `
processors:
  - name: mapped
    from: ev.bench.in
    map: |
      root.k = this.data.k
      root.v = this.data.v * 2
      root.path = this.data.path.uppercase()
    to: ev.bench.out
`

func main() {
	flag.Parse()
	dir, _ := os.MkdirTemp("", "graphbench")
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "data")

	raw := rawConsume(*events)
	load(data)
	view, rebuild := runView(dir, data)
	proc := runNode(dir, data, "proc", procCfg, "/api/v1/processors", "processors", "mapped")

	fmt.Printf("\nEvent graph over %d stored events (%d keys), bus.sync=always, 2 cores\n", *events, *keys)
	fmt.Printf("%-34s %14s %10s\n", "", "events/s", "vs raw")
	fmt.Printf("%-34s %14.0f %10s\n", "raw JetStream consume+ack", raw, "1.00x")
	fmt.Printf("%-34s %14.0f %9.2fx\n", "view count by key", view, view/raw)
	fmt.Printf("%-34s %14.0f %9.2fx\n", "processor with a Bloblang map", proc, proc/raw)
	fmt.Printf("%-34s %14.0f %9.2fx\n", "rebuild of the view", rebuild, rebuild/raw)
	fmt.Println("targets: view >= 100000 events/s and >= 0.70x raw; processor >= 50000 events/s")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func payload(id string, i int) []byte {
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"/bench","type":"bench.in","time":"2026-11-27T12:00:00Z","data":{"k":"key-%d","v":%d,"path":"/p/%d"}}`, id, i%*keys, i, i%1000)
}

// rawConsume: one message per event in an embedded JetStream, then a durable
// pull consumer fetching batches and acking every message, as a plain Go
// JetStream consumer would.
func rawConsume(n int) float64 {
	dir, _ := os.MkdirTemp("", "rawconsume")
	defer os.RemoveAll(dir)
	// Load with an fsync interval (fsync per message would take minutes),
	// then restart the server on the same store with SyncAlways, as Ops runs,
	// and consume.
	s, js, nc := rawServer(dir, false)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"}}); err != nil {
		fail(err)
	}
	for i := 0; i < n; i++ {
		if _, err := js.PublishAsync("ev.bench.in", payload(uuid.Must(uuid.NewV7()).String(), i), jetstream.WithStallWait(time.Minute)); err != nil {
			fail(err)
		}
	}
	<-js.PublishAsyncComplete()
	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()

	s, js, nc = rawServer(dir, true)
	defer s.Shutdown()
	defer nc.Close()
	st, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		fail(err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
	if err != nil {
		fail(err)
	}
	t0 := time.Now()
	got := 0
	for got < n {
		b, err := cons.Fetch(512, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			fail(err)
		}
		var last jetstream.Msg
		for m := range b.Messages() {
			var ev map[string]any
			_ = json.Unmarshal(m.Data(), &ev) // a consumer reads what it gets
			_ = m.Ack()
			last = m
			got++
		}
		if last != nil {
			_ = last.DoubleAck(ctx)
		}
	}
	el := time.Since(t0)
	fmt.Fprintf(os.Stderr, "raw consume+ack: %d messages in %v\n", n, el.Round(time.Millisecond))
	return float64(n) / el.Seconds()
}

func rawServer(dir string, syncAlways bool) (*server.Server, jetstream.JetStream, *nats.Conn) {
	opts := &server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoSigs: true, NoLog: true, SyncAlways: syncAlways}
	if !syncAlways {
		opts.SyncInterval = time.Minute
	}
	s, err := server.NewServer(opts)
	if err != nil {
		fail(err)
	}
	s.Start()
	s.ReadyForConnections(10 * time.Second)
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		fail(err)
	}
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	return s, js, nc
}

func start(data string, args ...string) (*opsproc.Proc, string) {
	p, err := opsproc.Start(*opsBin, data, args...)
	if err != nil {
		fail(err)
	}
	// Every API request carries the first-run admin token.
	http.DefaultTransport = authTransport{p.Token, baseTransport}
	return p, p.URL
}

func stop(p *opsproc.Proc) { p.Stop() }

var baseTransport = http.DefaultTransport

// authTransport adds the bearer token to every request.
type authTransport struct {
	token string
	next  http.RoundTripper
}

func (a authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", a.token)
	return a.next.RoundTrip(r)
}

// load stores the events through the API, 8 clients, batches of 100.
func load(data string) {
	cmd, url := start(data)
	defer stop(cmd)
	t0 := time.Now()
	nreq := *events / 100
	var wg sync.WaitGroup
	next := make(chan int)
	client := &http.Client{Transport: authTransport{http.DefaultTransport.(authTransport).token, &http.Transport{MaxIdleConnsPerHost: 8}}}
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				var b bytes.Buffer
				b.WriteByte('[')
				for i := 0; i < 100; i++ {
					if i > 0 {
						b.WriteByte(',')
					}
					b.Write(payload(uuid.Must(uuid.NewV7()).String(), r*100+i))
				}
				b.WriteByte(']')
				resp, err := client.Post(url+"/api/v1/events", "application/cloudevents-batch+json", &b)
				if err != nil {
					fail(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					fail(fmt.Errorf("load: %s", resp.Status))
				}
			}
		}()
	}
	for r := 0; r < nreq; r++ {
		next <- r
	}
	close(next)
	wg.Wait()
	fmt.Fprintf(os.Stderr, "loaded %d events in %v\n", nreq*100, time.Since(t0).Round(time.Millisecond))
}

// runView times the view through the backlog, then a rebuild of it.
func runView(dir, data string) (float64, float64) {
	f := filepath.Join(dir, "view.yaml")
	if err := os.WriteFile(f, []byte(viewCfg), 0o600); err != nil {
		fail(err)
	}
	t0 := time.Now()
	cmd, url := start(data, "--config", f)
	defer stop(cmd)
	view := waitIn(url, "/api/v1/views", "views", "by_key", t0, "view")
	resp, err := http.Post(url+"/api/v1/views/by_key/rebuild", "application/json", nil)
	if err != nil || resp.StatusCode != 202 {
		fail(fmt.Errorf("rebuild: %v %v", err, resp))
	}
	resp.Body.Close()
	for {
		var st struct {
			State  string
			Events int
			Rate   float64 `json:"events_per_second"`
		}
		resp, err := http.Get(url + "/api/v1/views/by_key/rebuild")
		if err != nil {
			fail(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if st.State == "done" {
			fmt.Fprintf(os.Stderr, "rebuild: %d events at %.0f events/s\n", st.Events, st.Rate)
			return view, st.Rate
		}
		if st.State == "failed" {
			fail(fmt.Errorf("rebuild failed"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitIn(url, statusPath, listKey, name string, t0 time.Time, label string) float64 {
	for {
		resp, err := http.Get(url + statusPath)
		if err == nil && (resp.StatusCode == 401 || resp.StatusCode == 403) {
			fail(fmt.Errorf("GET %s: %s", statusPath, resp.Status)) // no use waiting
		}
		if err == nil {
			var res map[string][]struct {
				Name string
				In   int
			}
			_ = json.NewDecoder(resp.Body).Decode(&res)
			resp.Body.Close()
			for _, n := range res[listKey] {
				if n.Name == name && n.In >= *events {
					el := time.Since(t0)
					fmt.Fprintf(os.Stderr, "%s: %d events in %v (including start)\n", label, n.In, el.Round(time.Millisecond))
					return float64(n.In) / el.Seconds()
				}
			}
		}
		if time.Since(t0) > 10*time.Minute {
			fail(fmt.Errorf("%s did not catch up", label))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runNode restarts ops with one node and times it through the backlog.
func runNode(dir, data, label, cfg, statusPath, listKey, name string) float64 {
	f := filepath.Join(dir, label+".yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		fail(err)
	}
	t0 := time.Now()
	cmd, url := start(data, "--config", f)
	defer stop(cmd)
	return waitIn(url, statusPath, listKey, name, t0, label)
}
