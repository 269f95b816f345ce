// Command alerts times rule evaluation: the same rules over the same
// series in Ops's alert module and in Debian's Prometheus, side by side
// (bench/alerts.sh starts both). Both receive the same samples by remote
// write 1.0: a history that covers the rules' 5-minute ranges, then one
// new sample per series every interval while the rules run. The figure is
// each evaluation round's time, read from the prometheus_rule_group_*
// metrics both export, as Prometheus's own code measures it in both.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

var (
	rulesOut = flag.String("rules-out", "", "write the rule file to this path and exit")
	opsURL   = flag.String("ops", "", "Ops base URL")
	opsToken = flag.String("ops-token", "", "file holding an Ops token with series:write and alert:read")
	promURL  = flag.String("prom", "", "Prometheus base URL")
	nSeries  = flag.Int("series", 100_000, "series (1,000 instances per service, in 10 shards)")
	nRules   = flag.Int("rules", 1000, "alerting rules, 100 per group, each over one shard of a service (100 series)")
	interval = flag.Duration("interval", 15*time.Second, "evaluation interval and sample interval")
	history  = flag.Duration("history", 10*time.Minute, "history written before the rules are timed")
	rounds   = flag.Int("rounds", 4, "evaluation rounds timed")
	opsPID   = flag.Int("ops-pid", 0, "Ops's process id (its CPU time over the rounds is read from /proc)")
	promPID  = flag.Int("prom-pid", 0, "Prometheus's process id")
)

const perService, shards = 1000, 10

func services() int { return max(1, *nSeries/perService) }

func writeRules(path string) error {
	var b strings.Builder
	b.WriteString("groups:\n")
	for r := range *nRules {
		if r%100 == 0 {
			fmt.Fprintf(&b, "  - name: bench-%02d\n    interval: %s\n    rules:\n", r/100, *interval)
		}
		// Each rule reads one shard of one service (100 series) over 5
		// minutes; 1,000 rules over 100 services cover each series once.
		fmt.Fprintf(&b, "      - alert: HighRate%04d\n        expr: sum by (instance) (rate(bench_requests_total{service=\"s%03d\",shard=\"%d\"}[5m])) > %d\n        for: 1m\n        labels: {severity: ticket}\n",
			r, r%services(), (r/services())%shards, 2+r%3)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

type target struct {
	name, base, writePath, token string
}

func (t target) do(method, path string, body []byte, hdr map[string]string) ([]byte, error) {
	req, err := http.NewRequest(method, t.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", t.name, path, resp.Status, bytes.TrimSpace(out[:min(len(out), 300)]))
	}
	return out, nil
}

// samples writes one sample per series at each of the times, to both.
func samples(ts []time.Time, targets []target) error {
	const batch = 10_000
	var wr prompb.WriteRequest
	flush := func() error {
		if len(wr.Timeseries) == 0 {
			return nil
		}
		raw, err := wr.Marshal()
		if err != nil {
			return err
		}
		body := snappy.Encode(nil, raw)
		var wg sync.WaitGroup
		errs := make([]error, len(targets))
		for i, t := range targets {
			wg.Go(func() {
				_, errs[i] = t.do("POST", t.writePath, body, map[string]string{"Content-Type": "application/x-protobuf",
					"Content-Encoding": "snappy", "X-Prometheus-Remote-Write-Version": "0.1.0"})
			})
		}
		wg.Wait()
		wr.Timeseries = wr.Timeseries[:0]
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	n := 0
	for s := range services() {
		for i := range perService {
			x := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "bench_requests_total"},
				{Name: "instance", Value: fmt.Sprintf("i%04d", i)}, {Name: "service", Value: fmt.Sprintf("s%03d", s)},
				{Name: "shard", Value: strconv.Itoa(i % shards)}}}
			for _, t := range ts {
				// A counter growing 1 to 5 a second, by instance.
				v := float64(t.Unix()%1_000_000) * float64(1+(i*7+s)%5)
				x.Samples = append(x.Samples, prompb.Sample{Timestamp: t.UnixMilli(), Value: v})
			}
			wr.Timeseries = append(wr.Timeseries, x)
			n += len(ts)
			if n >= batch {
				if err := flush(); err != nil {
					return err
				}
				n = 0
			}
		}
	}
	return flush()
}

// ruleMetrics reads prometheus_rule_group_last_duration_seconds and the
// missed iterations from a target's /metrics.
func ruleMetrics(t target) (durs map[string]float64, missed float64, err error) {
	b, err := t.do("GET", "/metrics", nil, nil)
	if err != nil {
		return nil, 0, err
	}
	durs = map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, _ := strings.Cut(line, "{")
		labels, val, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
		switch name {
		case "prometheus_rule_group_last_duration_seconds":
			if strings.Contains(labels, "bench-") {
				durs[labels] = v
			}
		case "prometheus_rule_group_iterations_missed_total":
			if strings.Contains(labels, "bench-") {
				missed += v
			}
		}
	}
	return durs, missed, nil
}

// cpuTime is a process's user and system time so far (0 without a pid).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "alerts bench:", err)
	os.Exit(1)
}

func main() {
	flag.Parse()
	if *rulesOut != "" {
		if err := writeRules(*rulesOut); err != nil {
			fail(err)
		}
		return
	}
	tok, err := os.ReadFile(*opsToken)
	if err != nil {
		fail(err)
	}
	ops := target{name: "ops", base: *opsURL, writePath: "/prometheus/api/v1/write", token: strings.TrimSpace(string(tok))}
	prom := target{name: "prometheus", base: *promURL, writePath: "/api/v1/write"}
	both := []target{ops, prom}

	now := time.Now().Truncate(*interval)
	var hist []time.Time
	for t := now.Add(-*history); !t.After(now); t = t.Add(*interval) {
		hist = append(hist, t)
	}
	start := time.Now()
	if err := samples(hist, both); err != nil {
		fail(err)
	}
	fmt.Printf("Rule evaluation: %d alerting rules in %d groups over %d series (%d per rule), every %s; %d samples of history written to each in %.1fs\n",
		*nRules, (*nRules+99)/100, services()*perService, perService/shards, *interval, len(hist)*services()*perService, time.Since(start).Seconds())

	// New samples every interval while the rounds run; the rounds are read
	// after each interval (the first one after the history is skipped:
	// it may have run before the history was in).
	type round struct{ ops, prom map[string]float64 }
	var got []round
	var opsCPU0, promCPU0 time.Duration
	var cpuFrom time.Time
	for r := 0; r <= *rounds; r++ {
		if r == 1 {
			opsCPU0, promCPU0, cpuFrom = cpuTime(*opsPID), cpuTime(*promPID), time.Now()
		}
		next := now.Add(time.Duration(r+1) * *interval)
		time.Sleep(time.Until(next))
		if err := samples([]time.Time{next}, both); err != nil {
			fail(err)
		}
		time.Sleep(*interval / 2)
		od, _, err := ruleMetrics(ops)
		if err != nil {
			fail(err)
		}
		pd, _, err := ruleMetrics(prom)
		if err != nil {
			fail(err)
		}
		if r > 0 {
			got = append(got, round{od, pd})
		}
	}
	opsCPU, promCPU, cpuSpan := cpuTime(*opsPID)-opsCPU0, cpuTime(*promPID)-promCPU0, time.Since(cpuFrom)
	sum := func(m map[string]float64) (s, mx float64) {
		for _, v := range m {
			s += v
			mx = max(mx, v)
		}
		return
	}
	fmt.Printf("%-8s %16s %16s %16s %16s %8s\n", "round", "Ops sum", "Ops slowest", "Prom sum", "Prom slowest", "sum x")
	var ratios []float64
	for i, r := range got {
		os_, om := sum(r.ops)
		ps, pm := sum(r.prom)
		if len(r.ops) == 0 || len(r.prom) == 0 {
			fail(fmt.Errorf("round %d: no rule group metrics (ops %d groups, prometheus %d)", i+1, len(r.ops), len(r.prom)))
		}
		ratios = append(ratios, os_/ps)
		fmt.Printf("%-8d %14.0fms %14.0fms %14.0fms %14.0fms %7.2fx\n", i+1, os_*1000, om*1000, ps*1000, pm*1000, os_/ps)
	}
	sort.Float64s(ratios)
	_, om, _ := ruleMetrics(ops)
	_, pm, _ := ruleMetrics(prom)
	fmt.Printf("(sum: all groups' last evaluation times added; slowest: the longest group, which runs beside the others; both are wall times\n while both servers share the cores. sum x: Ops over Prometheus; median %.2fx. Missed iterations: Ops %.0f, Prometheus %.0f)\n", ratios[len(ratios)/2], om, pm)
	if *opsPID != 0 && *promPID != 0 {
		per := cpuSpan.Seconds() / interval.Seconds() // rounds elapsed
		fmt.Printf("CPU per round (process time over %.0fs, incl. taking the new samples): Ops %.2fs, Prometheus %.2fs, ratio %.2fx\n",
			cpuSpan.Seconds(), opsCPU.Seconds()/per, promCPU.Seconds()/per, opsCPU.Seconds()/promCPU.Seconds())
	}
}
