// Command tsdb compares Ops's time-series module with Prometheus, both
// already running (bench/tsdb.sh starts them): it loads the same samples
// into each by remote write, timing the ingest, then asks both the same
// range queries, checks that the answers agree and prints the latencies
// side by side with their ratio.
//
//	go run ./bench/tsdb -ops http://127.0.0.1:7070 -ops-token data/admin.token -ops-pid 123 \
//		-prom http://127.0.0.1:9090 -prom-pid 456
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	opsURL    = flag.String("ops", "", "Ops base URL (its Prometheus API is under /prometheus/api/v1/)")
	opsToken  = flag.String("ops-token", "", "file holding an Ops token with series:read and series:write (the admin token)")
	opsPID    = flag.Int("ops-pid", 0, "Ops's process id (CPU time and peak RSS are read from /proc)")
	opsDir    = flag.String("ops-tsdb", "", "Ops's TSDB data directory (its blocks are counted); optional")
	promURL   = flag.String("prom", "", "Prometheus base URL")
	promPID   = flag.Int("prom-pid", 0, "Prometheus's process id")
	promDir   = flag.String("prom-tsdb", "", "Prometheus's storage.tsdb.path; optional")
	nSeries   = flag.Int("series", 1000, "series to write")
	span      = flag.Duration("span", 24*time.Hour, "time the samples cover, ending now")
	interval  = flag.Duration("interval", 15*time.Second, "time between a series' samples")
	batch     = flag.Int("batch", 10000, "samples per remote-write request")
	senders   = flag.Int("senders", 4, "concurrent remote-write senders")
	runs      = flag.Int("runs", 10, "measured runs of each query on each target (the median is reported)")
	first     = flag.String("first", "ops", "the target loaded first: ops or prometheus")
	gzipOK    = flag.Bool("gzip", false, "accept gzip'd answers (Prometheus compresses when asked, Ops does not; off by default so both do the same work)")
	profDir   = flag.String("profile", "", "when set, after the measured runs take a CPU profile of each target while it answers the queries alone, into this directory")
	profSecs  = flag.Int("profile-seconds", 20, "length of each CPU profile")
	match     = flag.String("match", "", "only the queries whose expression and range (as printed) match this regexp")
	idleLimit = flag.Duration("settle", 3*time.Minute, "longest wait after loading for a target's CPU to go idle (compaction)")
)

// target is one server under test, and what was measured of it.
type target struct {
	name      string
	base      string
	apiPath   string // Prometheus API prefix
	writePath string
	token     string
	pid       int
	dir       string
	client    *http.Client

	load     loadResult
	settle   time.Duration     // from the end of the load to an idle CPU
	hwmLoad  int64             // peak RSS once loaded and idle
	rssLoad  int64             // RSS then
	hwmEnd   int64             // peak RSS after the queries
	blocks   string            // blocks once loaded and idle
	lat      [][]time.Duration // by query, the measured runs
	queryCPU time.Duration     // CPU time over all measured runs
}

func (t *target) auth(r *http.Request) {
	if t.token != "" {
		r.Header.Set("Authorization", "Bearer "+t.token)
	}
}

// answer is what the warm-up run of one query gave.
type answer struct {
	diff   string // how the two targets' answers differ; "" when they agree
	series int
	points int
	size   int // Ops's body, bytes
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tsdb bench:", err)
	os.Exit(1)
}

func main() {
	flag.Parse()
	if *opsURL == "" || *promURL == "" || *opsPID == 0 || *promPID == 0 {
		fail(fmt.Errorf("-ops, -prom, -ops-pid and -prom-pid are required (bench/tsdb.sh sets them)"))
	}
	if *first != "ops" && *first != "prometheus" {
		fail(fmt.Errorf("-first: want ops or prometheus, got %q", *first))
	}
	tok, err := os.ReadFile(*opsToken)
	if err != nil {
		fail(err)
	}
	client := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
			MaxIdleConnsPerHost: *senders + 2, DisableCompression: !*gzipOK,
		}}
	}
	ops := &target{name: "ops", base: strings.TrimRight(*opsURL, "/"), apiPath: "/prometheus/api/v1/",
		writePath: "/prometheus/api/v1/write", token: strings.TrimSpace(string(tok)), pid: *opsPID, dir: *opsDir, client: client()}
	prom := &target{name: "prometheus", base: strings.TrimRight(*promURL, "/"), apiPath: "/api/v1/",
		writePath: "/api/v1/write", pid: *promPID, dir: *promDir, client: client()}
	both := []*target{ops, prom}

	t0 := time.Now()
	ds := generate(*nSeries, *span, *interval, *batch, t0)
	fmt.Fprintf(os.Stderr, "generated %d samples (%d series x %d) in %d requests, %.1f MiB protobuf, %.1f MiB snappy, in %v\n",
		ds.samples, ds.series, ds.samples/ds.series, len(ds.reqs), mb(ds.rawSize), mb(ds.size), time.Since(t0).Round(time.Millisecond))

	loadOrder := both
	if *first == "prometheus" {
		loadOrder = []*target{prom, ops}
	}
	for _, t := range loadOrder {
		if t.load, err = load(t, ds, *senders); err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "%s: loaded in %v (%.0f samples/s); waiting for compaction to finish\n",
			t.name, t.load.elapsed.Round(time.Millisecond), t.load.rate(ds.samples))
		t.settle = waitIdle(t.pid, *idleLimit)
		t.hwmLoad, t.rssLoad = memory(t.pid)
		t.blocks = blocks(t.dir)
	}
	for _, t := range both {
		if err := checkCount(t, ds); err != nil {
			fail(err)
		}
	}

	qs := queries(ds)
	if *match != "" {
		re, err := regexp.Compile(*match)
		if err != nil {
			fail(err)
		}
		qs = slices.DeleteFunc(qs, func(q query) bool { return !re.MatchString(q.expr + " " + q.label()) })
		if len(qs) == 0 {
			fail(fmt.Errorf("-match %q: no query matches", *match))
		}
	}
	// Warm both with one run of each query; those answers are compared.
	answers := make([]answer, len(qs))
	var worst float64
	for i, q := range qs {
		var res [2]*result
		for j, t := range both {
			b, _, err := t.rangeQuery(q)
			if err != nil {
				fail(err)
			}
			if res[j], err = decode(b); err != nil {
				fail(fmt.Errorf("%s: %s: %w", t.name, q.expr, err))
			}
			if t == ops {
				answers[i].size = len(b)
			}
		}
		diff, rel := compare(res[0], res[1])
		worst = max(worst, rel)
		answers[i].diff, answers[i].series, answers[i].points = diff, len(res[0].series), res[0].points
	}

	// Measured runs alternate which target goes first.
	for _, t := range both {
		t.lat = make([][]time.Duration, len(qs))
		t.queryCPU = cpuTime(t.pid)
	}
	tq := time.Now()
	busy0, total0 := machineCPU()
	self0 := cpuTime(os.Getpid())
	for r := range *runs {
		order := both
		if r%2 == 1 {
			order = []*target{prom, ops}
		}
		for i, q := range qs {
			for _, t := range order {
				_, d, err := t.rangeQuery(q)
				if err != nil {
					fail(err)
				}
				t.lat[i] = append(t.lat[i], d)
			}
		}
	}
	wall := time.Since(tq)
	busy1, total1 := machineCPU()
	for _, t := range both {
		t.queryCPU = cpuTime(t.pid) - t.queryCPU
		t.hwmEnd, _ = memory(t.pid)
	}
	own := cpuTime(os.Getpid()) - self0 + ops.queryCPU + prom.queryCPU
	// Other processes on the machine take CPU from the run; this shows how
	// much. Per-process and machine ticks are read apart, so clamp at 0.
	others := max(0, float64(busy1-busy0-own)/float64(total1-total0))

	report(ds, qs, answers, worst, ops, prom, wall, others)

	if *profDir != "" {
		for _, t := range both {
			p := filepath.Join(*profDir, t.name+".cpu.pprof")
			if err := profile(t, qs, p); err != nil {
				fail(err)
			}
			fmt.Printf("CPU profile of %s answering the queries alone for %ds: %s (go tool pprof -top %s)\n", t.name, *profSecs, p, p)
		}
	}
}

// checkCount fails unless t holds every sample written: otherwise the
// queries would compare different data.
func checkCount(t *target, ds *dataset) error {
	q := fmt.Sprintf(`sum(count_over_time({__name__=~"bench_.+"}[%ds]))`, int((*span + time.Hour).Seconds()))
	b, err := t.instantQuery(q, ds.last.Add(time.Second))
	if err != nil {
		return err
	}
	r, err := decode(b)
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	var n float64
	for _, ps := range r.series {
		n = ps[0].v
	}
	if int(n) != ds.samples {
		return fmt.Errorf("%s holds %.0f samples, %d were written", t.name, n, ds.samples)
	}
	return nil
}

func report(ds *dataset, qs []query, answers []answer, worst float64, ops, prom *target, wall time.Duration, others float64) {
	fmt.Printf("\nTime series: %d series x %d samples (%v apart, %v ending now) = %d samples, loaded by remote write 1.0 into each\n",
		ds.series, ds.samples/ds.series, *interval, *span, ds.samples)
	fmt.Printf("(%d requests of ~%d samples, %d senders, %s loaded first); then %d range queries, each run once to warm and compare,\n",
		len(ds.reqs), *batch, *senders, *first, len(qs))
	fmt.Printf("then %d times on each target, alternating which goes first; latency = request sent to last byte read, p50 shown.\n", *runs)
	fmt.Printf("%d cores shared by both servers and this client; gzip'd answers: %v\n\n", runtime.NumCPU(), *gzipOK)

	fmt.Printf("%-86s %-7s %6s %7s %8s %9s %9s %6s  %s\n", "query", "range", "series", "points", "ops KB", "ops ms", "prom ms", "ratio", "same answer")
	var sumO, sumP, logSum float64
	nsame := 0
	for i, q := range qs {
		o, p := ms(median(ops.lat[i])), ms(median(prom.lat[i]))
		sumO += o
		sumP += p
		logSum += math.Log(o / p)
		ok := "yes"
		if answers[i].diff != "" {
			ok = "NO: " + answers[i].diff
		} else {
			nsame++
		}
		fmt.Printf("%-86s %-7s %6d %7d %8.0f %9.2f %9.2f %6.2f  %s\n", q.expr, q.label(), answers[i].series, answers[i].points,
			float64(answers[i].size)/1024, o, p, o/p, ok)
	}
	ratio := sumO / sumP
	fmt.Printf("%-86s %-7s %6s %7s %8s %9.1f %9.1f %6.2f\n", "total of the medians", "", "", "", "", sumO, sumP, ratio)
	fmt.Printf("geometric mean of the per-query ratios: %.2f; server CPU during the measured runs (%v wall): ops %.1f s, prometheus %.1f s (%.2fx);\n",
		math.Exp(logSum/float64(len(qs))), wall.Round(time.Second),
		ops.queryCPU.Seconds(), prom.queryCPU.Seconds(), ops.queryCPU.Seconds()/prom.queryCPU.Seconds())
	fmt.Printf("CPU taken by processes outside this benchmark meanwhile: %.0f%% of the machine (> 5%% disturbs it)\n", 100*others)

	fmt.Printf("\n%-12s %12s %10s %14s %14s %16s %14s %14s %18s %7s\n", "ingest", "samples/s", "time", "cpu us/sample",
		"settle after", "peak RSS (load)", "RSS after load", "peak RSS (end)", "blocks (load/end)", "others")
	for _, t := range []*target{ops, prom} {
		fmt.Printf("%-12s %12.0f %10v %14.2f %14v %15.1fM %13.1fM %13.1fM %18s %6.0f%%\n", t.name, t.load.rate(ds.samples),
			t.load.elapsed.Round(time.Millisecond), float64(t.load.cpu.Microseconds())/float64(ds.samples), t.settle.Round(time.Second),
			mb(int(t.hwmLoad)), mb(int(t.rssLoad)), mb(int(t.hwmEnd)), t.blocks+"/"+blocks(t.dir), 100*t.load.others)
	}

	fmt.Println()
	verdict := "met"
	if ratio > 1.2 {
		verdict = "not met"
	}
	if nsame != len(qs) {
		verdict = "not judged: the answers differ"
	}
	fmt.Printf("results: %d of %d queries give the same series and values in both (largest relative difference %.1e, tolerance %.0e)\n",
		nsame, len(qs), worst, tolerance)
	fmt.Printf("query latency ops/prometheus = %.2f (sum of p50s, %.1f ms vs %.1f ms)   (target <= 1.2: %s)\n", ratio, sumO, sumP, verdict)
	lo, lp := ops.load.rate(ds.samples), prom.load.rate(ds.samples)
	co, cp := ops.load.cpu.Seconds()/float64(ds.samples)*1e6, prom.load.cpu.Seconds()/float64(ds.samples)*1e6
	fmt.Printf("remote write ingest: ops %.0f samples/s, prometheus %.0f samples/s, ratio ops/prometheus = %.2f"+
		" (CPU a sample: %.2f vs %.2f us, %.2fx; others took %.0f%% and %.0f%% of the machine)\n",
		lo, lp, lo/lp, co, cp, co/cp, 100*ops.load.others, 100*prom.load.others)
}

// profile takes a CPU profile of t while it answers qs in a loop.
func profile(t *target, qs []query, path string) error {
	type got struct {
		b   []byte
		err error
	}
	done := make(chan got, 1)
	go func() {
		b, err := t.get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", *profSecs))
		done <- got{b, err}
	}()
	for i := 0; ; i++ {
		select {
		case g := <-done:
			if g.err != nil {
				return g.err
			}
			return os.WriteFile(path, g.b, 0o644)
		default:
		}
		if _, _, err := t.rangeQuery(qs[i%len(qs)]); err != nil {
			return err
		}
	}
}

func (t *target) get(path string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, t.base+path, nil)
	if err != nil {
		return nil, err
	}
	t.auth(req)
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: GET %s: %s: %.200s", t.name, path, resp.Status, b)
	}
	return b, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mb(b int) float64 { return float64(b) / (1 << 20) }

// cpuTime is the user+system CPU time pid has used so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		fail(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / clkTck
}

// machineCPU is the machine's busy and total CPU time so far (idle and
// iowait are not busy).
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		fail(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var t, idle int64
	for i, f := range strings.Fields(line)[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseInt(f, 10, 64)
		t += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return time.Duration(t-idle) * time.Second / clkTck, time.Duration(t) * time.Second / clkTck
}

// clkTck is USER_HZ, 100 on every Linux this runs on.
const clkTck = 100

// waitIdle waits until pid uses under 3% of a core for two seconds in a
// row (the TSDB compacts the head into blocks after a load) and returns
// how long that took.
func waitIdle(pid int, limit time.Duration) time.Duration {
	start := time.Now()
	quiet := 0
	prev := cpuTime(pid)
	for time.Since(start) < limit {
		time.Sleep(time.Second)
		cur := cpuTime(pid)
		if cur-prev < 30*time.Millisecond {
			quiet++
			if quiet == 2 {
				return time.Since(start)
			}
		} else {
			quiet = 0
		}
		prev = cur
	}
	fmt.Fprintf(os.Stderr, "pid %d still busy after %v; measuring anyway\n", pid, limit)
	return time.Since(start)
}

// memory returns pid's peak and current resident set (VmHWM, VmRSS) in bytes.
func memory(pid int) (hwm, rss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		fail(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmHWM":
			hwm = kb << 10
		case "VmRSS":
			rss = kb << 10
		}
	}
	return hwm, rss
}

// blocks counts the persisted blocks (directories with a meta.json) in a
// TSDB directory; "-" when it is not known.
func blocks(dir string) string {
	if dir == "" {
		return "-"
	}
	ms, _ := filepath.Glob(filepath.Join(dir, "*", "meta.json"))
	return strconv.Itoa(len(ms))
}
