// Command analytics measures the analytics dashboard at size, beside
// DuckDB: it sends -events page views (90 days, -pages pages, -visitors
// visitors) through a real Ops's tracking API, writes the same events as
// CSV for DuckDB (bench/analytics/duck, @duckdb/node-api from its lock
// file), then times each dashboard panel over the last 30 days, with and
// without a filter, on both, checks that both give the same answers, and
// prints p50/p95 with the ratio. It also prints the ingest rate, the RSS of
// Ops holding the events, and how long a new event takes to show in the
// realtime panel.
//
//	go run ./bench/analytics -ops bin/ops                       # 10M events (about 10 minutes)
//	go run ./bench/analytics -ops bin/ops -events 20000 -runs 2  # smoke
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsgraph/ops/bench/opsproc"
	"github.com/opsgraph/ops/internal/enrich"
)

var (
	opsBin   = flag.String("ops", "bin/ops", "ops binary")
	events   = flag.Int("events", 10_000_000, "page views to send")
	visitors = flag.Int("visitors", 1_000_000, "distinct visitors")
	pages    = flag.Int("pages", 50_000, "distinct pages (Zipf-distributed)")
	days     = flag.Int("days", 90, "days the events span, ending now")
	runs     = flag.Int("runs", 20, "times each query runs on each side")
	duckDir  = flag.String("duck", "bench/analytics/duck", "the DuckDB side (npm ci runs there when node_modules is missing)")
	latency  = flag.Int("latency", 20, "new events timed from publish to the realtime panel")
	cpuProf  = flag.String("cpuprofile", "", "write a CPU profile of Ops while it answers the panels to this file (go tool pprof bin/ops FILE)")
	senders  = flag.Int("senders", 8, "concurrent batch senders (events of one visit may then arrive out of order, as they do from real clients)")
)

const writeKey = "wk_bench_analytics"

func main() {
	flag.Parse()
	dir, err := os.MkdirTemp("", "opsanalytics")
	must(err)
	defer os.RemoveAll(dir)
	must(ensureDuck(*duckDir))
	p, err := opsproc.Start(*opsBin, filepath.Join(dir, "data"), "--set", "collector.write_keys="+writeKey)
	must(err)
	defer p.Stop()
	fmt.Printf("\nAnalytics at size: %d page views over %d days, %d pages, %d visitors; %d runs per query\n", *events, *days, *pages, *visitors, *runs)

	// Send the events, writing the same ones as CSV for DuckDB.
	csvPath := filepath.Join(dir, "events.csv")
	t0 := time.Now()
	sent := ingest(p.URL, csvPath)
	ingestTook := time.Since(t0)
	waitFolded(p.URL, p.Token, sent)
	visibleTook := time.Since(t0)
	rss := rssOf(p.Cmd.Process.Pid)
	fmt.Printf("ingest: %d events in %.1fs (%.0f events/s through /v1/batch, fsync'd); all in the reports after %.1fs\n",
		sent, ingestTook.Seconds(), float64(sent)/ingestTook.Seconds(), visibleTook.Seconds())
	fmt.Printf("Ops RSS holding them: %.0f MiB (%.0f bytes an event)\n", float64(rss)/(1<<20), float64(rss)/float64(sent))

	// The panels over the last 30 days, as the dashboard asks for them.
	now := time.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	from, to := today.AddDate(0, 0, -29), today.AddDate(0, 0, 1)
	filter := "Google"
	panels := []struct{ name, path string }{
		{"aggregate", "aggregate?period=30d"},
		{"timeseries", "timeseries?period=30d&interval=day"},
		{"top pages", "breakdown?period=30d&property=page&limit=10"},
		{"top sources", "breakdown?period=30d&property=source&limit=10"},
		{"browsers", "breakdown?period=30d&property=browser&limit=10"},
		{"realtime", "realtime"},
	}
	type timing struct {
		ms     []float64
		answer json.RawMessage
	}
	ops := map[string]timing{}
	var names []string
	if *cpuProf != "" {
		// Ops's own profiler (system:write; the bench holds the admin
		// token) over about the time the panels take.
		done := make(chan struct{})
		defer func() { <-done }()
		go func() {
			defer close(done)
			b := get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.URL, 10+*runs), p.Token)
			must(os.WriteFile(*cpuProf, b, 0o644))
		}()
	}
	for _, f := range []string{"", filter} {
		for _, pn := range panels {
			name, q := pn.name, pn.path
			if f != "" {
				name += " (filtered)"
				q += "&filters=" + url.QueryEscape("source=="+f)
			}
			if pn.name == "realtime" && f != "" {
				continue
			}
			var t timing
			for range *runs {
				s := time.Now()
				t.answer = get(p.URL+"/api/v1/analytics/"+q, p.Token)
				t.ms = append(t.ms, float64(time.Since(s).Microseconds())/1000)
			}
			ops[name] = t
			names = append(names, name)
		}
	}

	// DuckDB over the same events.
	duck := runDuck(*duckDir, csvPath, from, to, filter)
	fmt.Printf("DuckDB %s (%s threads): load and make visits %.1fs\n\n", duck.Version, duck.Threads, duck.LoadMS/1000)
	fmt.Printf("%-26s %10s %10s %12s %12s %8s  %s\n", "panel (30 days)", "Ops p50", "Ops p95", "DuckDB p50", "DuckDB p95", "p95 x", "answers")
	worst := 0.0
	var disagree []string
	for _, n := range names {
		o := ops[n]
		op50, op95 := pct(o.ms, 50), pct(o.ms, 95)
		worst = max(worst, op95)
		d, ok := duck.Queries[n]
		if !ok {
			fmt.Printf("%-26s %8.1fms %8.1fms %12s %12s %8s  %s\n", n, op50, op95, "-", "-", "-", "(no SQL peer)")
			continue
		}
		dp50, dp95 := pct(d.MS, 50), pct(d.MS, 95)
		agree := compare(n, o.answer, d.Result)
		if agree != "same" {
			disagree = append(disagree, n+": "+agree)
		}
		fmt.Printf("%-26s %8.1fms %8.1fms %10.1fms %10.1fms %7.2fx  %s\n", n, op50, op95, dp50, dp95, op95/dp95, agree)
	}
	fmt.Printf("(p95 x: Ops's p95 over DuckDB's; below 1 Ops is faster. Ops's times include HTTP and JSON; DuckDB's are in-process.)\n")

	// A new event: how long until the realtime panel counts it.
	var lat []float64
	for i := range *latency {
		before := realtimeVisitors(p.URL, p.Token)
		s := time.Now()
		msg := fmt.Sprintf(`{"batch":[{"type":"page","anonymousId":"fresh-%d","timestamp":%q,"context":{"page":{"path":"/fresh","url":"https://shop.example/fresh"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"}}]}`,
			i, time.Now().UTC().Format(time.RFC3339Nano))
		post(p.URL, msg)
		for realtimeVisitors(p.URL, p.Token) <= before {
			if time.Since(s) > 10*time.Second {
				fail(fmt.Errorf("event %d not in the realtime panel after 10s", i))
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, float64(time.Since(s).Microseconds())/1000)
	}
	fmt.Printf("ingest to realtime panel: p50 %.0f ms, p95 %.0f ms over %d events (target <= 2000 ms)\n", pct(lat, 50), pct(lat, 95), len(lat))
	fmt.Printf("targets: every panel p95 <= 250 ms (worst here %.1f ms)\n", worst)
	if len(disagree) > 0 {
		fail(fmt.Errorf("Ops and DuckDB disagree: %s", strings.Join(disagree, "; ")))
	}
}

// ingest generates the events in time order, sends them in batches of 500
// from -senders senders, and writes each as a CSV row; it returns how many went.
func ingest(base, csvPath string) int {
	f, err := os.Create(csvPath)
	must(err)
	defer f.Close()
	cw := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(cw, "ts,visitor,page,source,browser,country")
	batches := make(chan []byte, 16)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range *senders {
		wg.Go(func() {
			for b := range batches {
				if err := postErr(base, b); err != nil {
					failed.Add(1)
					fmt.Fprintln(os.Stderr, err)
				}
			}
		})
	}
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.1, 1, uint64(*pages-1))
	type source struct{ referrer, query string }
	sources := []source{{"", ""}, {"", ""}, {"https://www.google.com/", ""}, {"https://www.google.com/", ""}, {"https://www.bing.com/", ""},
		{"https://news.ycombinator.com/", ""}, {"https://www.reddit.com/r/golang/", ""}, {"", "?utm_source=newsletter&utm_campaign=sale"}, {"https://duckduckgo.com/", ""}}
	agents := []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
	}
	browsers := make([]string, len(agents))
	for i, a := range agents {
		browsers[i] = enrich.ParseUserAgent(a).Browser
	}
	countries := []string{"US", "DE", "FR", "GB", "IN", "BR", "JP", "", "NL", "CA"}
	end := time.Now().UTC().Add(-10 * time.Minute)
	start := end.AddDate(0, 0, -*days)
	span := end.Sub(start)
	var buf bytes.Buffer
	inBatch, made := 0, 0
	flush := func() {
		if inBatch == 0 {
			return
		}
		buf.WriteString("]}")
		batches <- bytes.Clone(buf.Bytes())
		buf.Reset()
		inBatch = 0
	}
	for made < *events {
		at := start.Add(time.Duration(float64(span) * float64(made) / float64(*events)))
		v := r.IntN(*visitors)
		src := sources[r.IntN(len(sources))]
		ai := r.IntN(len(agents))
		country := countries[r.IntN(len(countries))]
		_, _, srcName := enrich.Source(src.referrer, "https://shop.example/")
		if src.query != "" {
			srcName = "newsletter"
		}
		k := 1 + r.IntN(5)
		for e := 0; e < k && made < *events; e++ {
			ts := at.Add(time.Duration(e) * 40 * time.Second)
			page := "/p/" + strconv.FormatUint(zipf.Uint64(), 10)
			if inBatch == 0 {
				buf.WriteString(`{"batch":[`)
			} else {
				buf.WriteByte(',')
			}
			ref, q := "https://shop.example/", ""
			if e == 0 {
				ref, q = src.referrer, src.query
			}
			loc := ""
			if country != "" {
				loc = `,"location":{"country":"` + country + `"}`
			}
			fmt.Fprintf(&buf, `{"type":"page","anonymousId":"v%d","timestamp":"%s","context":{"page":{"path":"%s","url":"https://shop.example%s%s","referrer":"%s"},"userAgent":"%s","screen":{"width":1440}%s}}`,
				v, ts.Format(time.RFC3339Nano), page, page, q, ref, agents[ai], loc)
			fmt.Fprintf(cw, "%s,v%d,%s,%s,%s,%s\n", ts.Format("2006-01-02 15:04:05.000000"), v, page, srcName, browsers[ai], country)
			inBatch++
			made++
			if inBatch == 500 {
				flush()
			}
		}
	}
	flush()
	close(batches)
	wg.Wait()
	must(cw.Flush())
	if n := failed.Load(); n > 0 {
		fail(fmt.Errorf("%d batches failed", n))
	}
	return made
}

func postErr(base string, body []byte) error {
	req, _ := http.NewRequest("POST", base+"/v1/batch", bytes.NewReader(body))
	req.SetBasicAuth(writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("batch: %d %s", resp.StatusCode, b)
	}
	return nil
}

func post(base, body string) { must(postErr(base, []byte(body))) }

func get(u, token string) json.RawMessage {
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", token)
	resp, err := http.DefaultClient.Do(req)
	must(err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		fail(fmt.Errorf("%s: %d %s", u, resp.StatusCode, b))
	}
	return b
}

func waitFolded(base, token string, n int) {
	deadline := time.Now().Add(30 * time.Minute)
	for time.Now().Before(deadline) {
		var st struct{ Events int }
		must(json.Unmarshal(get(base+"/api/v1/analytics/status", token), &st))
		if st.Events >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	fail(fmt.Errorf("the analytics store did not reach %d events", n))
}

func realtimeVisitors(base, token string) int {
	var r struct{ Visitors int }
	must(json.Unmarshal(get(base+"/api/v1/analytics/realtime", token), &r))
	return r.Visitors
}

type duckOut struct {
	Version string
	LoadMS  float64 `json:"load_ms"`
	Threads string  `json:"threads"`
	Queries map[string]struct {
		MS     []float64       `json:"ms"`
		Result json.RawMessage `json:"result"`
	} `json:"queries"`
}

// ensureDuck installs the DuckDB side from its lock file when it is not.
func ensureDuck(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api")); err == nil {
		return nil
	}
	cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm ci in %s (the DuckDB peer): %w", dir, err)
	}
	return nil
}

func runDuck(dir, csvPath string, from, to time.Time, filter string) duckOut {
	in, _ := json.Marshal(map[string]any{"csv": csvPath, "from": from.Format("2006-01-02 15:04:05"), "to": to.Format("2006-01-02 15:04:05"), "runs": *runs, "filter": filter})
	cmd := exec.Command("node", "query.mjs")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		fail(fmt.Errorf("DuckDB side: %w", err))
	}
	var d duckOut
	must(json.Unmarshal(out, &d))
	if b, err := os.ReadFile(filepath.Join(dir, "node_modules", "@duckdb", "node-api", "package.json")); err == nil {
		var pj struct{ Version string }
		_ = json.Unmarshal(b, &pj)
		d.Version = pj.Version
	}
	return d
}

// compare checks that Ops's answer and DuckDB's agree on what both count.
func compare(name string, ops, duck json.RawMessage) string {
	var drows []map[string]any
	if err := json.Unmarshal(duck, &drows); err != nil || len(drows) == 0 {
		return "no DuckDB answer"
	}
	n := func(v any) float64 {
		switch x := v.(type) {
		case float64:
			return x
		case string:
			f, _ := strconv.ParseFloat(x, 64)
			return f
		}
		return -1
	}
	base := strings.TrimSuffix(name, " (filtered)")
	switch base {
	case "aggregate":
		var o struct{ Results map[string]float64 }
		_ = json.Unmarshal(ops, &o)
		d := drows[0]
		for _, k := range []string{"visitors", "pageviews", "visits"} {
			if o.Results[k] != n(d[k]) {
				return fmt.Sprintf("%s: Ops %v, DuckDB %v", k, o.Results[k], d[k])
			}
		}
		if diff := o.Results["bounce_rate"] - n(d["bounce_rate"]); diff > 0.051 || diff < -0.051 {
			return fmt.Sprintf("bounce_rate: Ops %v, DuckDB %v", o.Results["bounce_rate"], d["bounce_rate"])
		}
	case "timeseries":
		var o struct{ Results []map[string]any }
		_ = json.Unmarshal(ops, &o)
		byDay := map[string][2]float64{}
		for _, r := range o.Results {
			byDay[fmt.Sprint(r["date"])[:10]] = [2]float64{n(r["visitors"]), n(r["pageviews"])}
		}
		for _, d := range drows {
			day := fmt.Sprint(d["day"])[:10]
			if got := byDay[day]; got[0] != n(d["visitors"]) || got[1] != n(d["pageviews"]) {
				return fmt.Sprintf("%s: Ops %v, DuckDB %v %v", day, got, d["visitors"], d["pageviews"])
			}
		}
	default: // breakdowns: the counts of the values both list, and the same top counts
		var o struct {
			Results []struct {
				Value    string
				Visitors float64
			}
		}
		_ = json.Unmarshal(ops, &o)
		var oc, dc []float64
		ov := map[string]float64{}
		for _, r := range o.Results {
			ov[r.Value] = r.Visitors
			oc = append(oc, r.Visitors)
		}
		for _, d := range drows {
			v := ""
			if d["value"] != nil {
				v = fmt.Sprint(d["value"])
			}
			dc = append(dc, n(d["visitors"]))
			if x, ok := ov[v]; ok && x != n(d["visitors"]) {
				return fmt.Sprintf("%q: Ops %v, DuckDB %v", v, x, d["visitors"])
			}
		}
		sort.Float64s(oc)
		sort.Float64s(dc)
		if !slices.Equal(oc, dc) {
			return fmt.Sprintf("top counts differ: Ops %v, DuckDB %v", oc, dc)
		}
	}
	return "same"
}

func pct(ms []float64, p int) float64 {
	s := slices.Clone(ms)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func must(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "analytics bench:", err)
	os.Exit(1)
}
