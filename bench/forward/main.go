// Command forward measures Ops's forward proxy against Squid (Debian's),
// both in front of one in-process upstream on loopback, loaded by one Go
// client: plain HTTP GETs of a 20 KB HTML page through each proxy, at
// full load (requests per second) and at light load (the latency each
// proxy adds over asking the upstream directly). Ops runs with the
// content filter on (the starter categories: every request classified
// by its URL, every page's text scanned) and its events recorded; Squid
// with a comparable ACL (the starter set's blocked domains as dstdomain
// ACLs, no cache). A last row scans pages with the filter alone, in this
// process: the phrase scan's throughput in MB/s on one core.
//
//	go run ./bench/forward -ops bin/ops
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsgraph/ops/bench/opsproc"
	"github.com/opsgraph/ops/internal/webfilter"
)

var (
	opsBin   = flag.String("ops", "bin/ops", "ops binary")
	duration = flag.Duration("duration", 5*time.Second, "length of each measurement")
	conc     = flag.Int("conc", 32, "concurrent clients at full load")
	light    = flag.Int("light", 2, "concurrent clients for the latency pass")
	scanMB   = flag.Int("scan-mb", 64, "megabytes of HTML the phrase scan row reads")
	profile  = flag.String("cpuprofile", "", "write Ops's CPU profile during its full-load measurement to this file")
)

// page is the upstream's answer: an ordinary article, no listed phrase.
var page = func() []byte {
	var b strings.Builder
	b.WriteString("<!doctype html><html><head><title>Council votes on the new budget</title><meta name=description content='Local news'></head><body>")
	for b.Len() < 20<<10 {
		b.WriteString("<p>The council approved the budget on Tuesday after a long debate about roads, schools and the library. ")
		b.WriteString("Residents asked questions about bus routes; the mayor promised a report in <a href='/spring'>spring</a>.</p>\n")
	}
	b.WriteString("</body></html>")
	return []byte(b.String())
}()

func main() {
	flag.Parse()
	dir, err := os.MkdirTemp("", "fwdbench")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o777) // squid drops to its own user

	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	go http.Serve(up, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	}))
	target := "http://" + up.Addr().String() + "/news/budget"

	ports := freePorts(2)
	squidAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	stopSquid := startSquid(dir, squidAddr)
	defer stopSquid()

	opsDir := filepath.Join(dir, "ops")
	opsAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	conf := filepath.Join(dir, "ops.yaml")
	os.WriteFile(conf, fmt.Appendf(nil, `proxy:
  forward:
    listen: %s
    auth: none
    deny_networks: []
    deny_own_addresses: false
    filter:
      enabled: true
    rules:
      - {name: adult, categories: [adult], action: block}
      - {name: gambling, categories: [gambling], action: block}
`, opsAddr), 0o600)
	ops, err := opsproc.Start(*opsBin, opsDir, "--config", conf)
	if err != nil {
		fail(err)
	}
	defer ops.Stop()

	fmt.Printf("forward proxy, %d-byte HTML page, %d clients (full load) and %d (latency), %s each\n", len(page), *conc, *light, *duration)
	direct := measure("", target, *light)
	rows := []struct {
		name, proxy string
	}{{"ops (filter on, events)", opsAddr}, {"squid (dstdomain ACL)", squidAddr}}
	res := map[string][2]result{}
	for i, r := range rows {
		var prof chan error
		if i == 0 && *profile != "" {
			prof = make(chan error, 1)
			go func() { prof <- fetchProfile(ops, *profile, *duration) }()
		}
		full := measure(r.proxy, target, *conc)
		if prof != nil {
			if err := <-prof; err != nil {
				fmt.Fprintln(os.Stderr, "profile:", err)
			}
		}
		lat := measure(r.proxy, target, *light)
		res[r.name] = [2]result{full, lat}
		fmt.Printf("  %-26s %8.0f req/s   added latency p50 %6.0f µs  p99 %6.0f µs  (errors %d)\n", r.name, full.rps,
			float64(lat.p50-direct.p50)/1e3, float64(lat.p99-direct.p99)/1e3, full.errors+lat.errors)
	}
	o, s := res[rows[0].name], res[rows[1].name]
	fmt.Printf("  ops/squid: %.2fx req/s; added p50 %.2fx of squid's\n", o[0].rps/s[0].rps,
		float64(o[1].p50-direct.p50)/float64(max(1, s[1].p50-direct.p50)))
	fmt.Printf("  direct (no proxy):          p50 %6.0f µs  p99 %6.0f µs\n", float64(direct.p50)/1e3, float64(direct.p99)/1e3)
	scan()
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int64
}

// measure GETs target through proxy (none: direct) with n clients for
// -duration, after a short warm-up.
func measure(proxy, target string, n int) result {
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxIdleConns: n, DisableCompression: true}
	if proxy != "" {
		tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: proxy})
	}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	get := func() error {
		resp, err := c.Get(target)
		if err != nil {
			return err
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n != int64(len(page)) {
			return fmt.Errorf("status %d, %d bytes", resp.StatusCode, n)
		}
		return nil
	}
	for i := 0; i < 20; i++ {
		if err := get(); err != nil {
			fail(fmt.Errorf("through %q: %w", proxy, err))
		}
	}
	var wg sync.WaitGroup
	var count, errs atomic.Int64
	lats := make([][]time.Duration, n)
	stop := time.Now().Add(*duration)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				t := time.Now()
				if err := get(); err != nil {
					errs.Add(1)
					continue
				}
				lats[i] = append(lats[i], time.Since(t))
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	r := result{rps: float64(count.Load()) / el.Seconds(), errors: errs.Load()}
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[len(all)*99/100]
	}
	return r
}

// startSquid runs squid in the foreground with a config of its own: no
// cache, the starter set's blocked domains denied.
func startSquid(dir, addr string) func() {
	bin, err := exec.LookPath("squid")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/squid"); err2 == nil {
			bin = "/usr/sbin/squid"
		} else {
			fail(fmt.Errorf("squid: %w (apt-get install --no-install-recommends squid)", err))
		}
	}
	var domains []string
	_ = fs.WalkDir(webfilter.StarterFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "domains" || strings.HasPrefix(p, "education") {
			return nil
		}
		b, _ := fs.ReadFile(webfilter.StarterFS(), p)
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) > 0 && !strings.HasPrefix(f[0], "#") {
				domains = append(domains, "."+f[0])
			}
		}
		return nil
	})
	sdir := filepath.Join(dir, "squid")
	os.MkdirAll(sdir, 0o777)
	os.Chmod(sdir, 0o777)
	conf := filepath.Join(sdir, "squid.conf")
	c := fmt.Sprintf(`http_port %s
pid_filename %s/squid.pid
cache_log %s/cache.log
access_log stdio:%s/access.log
cache deny all
cache_mem 8 MB
shutdown_lifetime 1 seconds
acl blocked dstdomain %s
http_access deny blocked
http_access allow all
via off
forwarded_for delete
`, addr, sdir, sdir, sdir, strings.Join(domains, " "))
	if err := os.WriteFile(conf, []byte(c), 0o644); err != nil {
		fail(err)
	}
	cmd := exec.Command(bin, "-N", "-f", conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		fail(fmt.Errorf("squid: %w", err))
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return stop
		}
		if time.Now().After(deadline) {
			stop()
			log, _ := os.ReadFile(filepath.Join(sdir, "cache.log"))
			fail(fmt.Errorf("squid did not listen on %s:\n%s\n%s", addr, out.String(), log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scan measures the content filter's page scan alone: parse the HTML,
// count the starter set's phrases, on one goroutine.
func scan() {
	set, err := webfilter.Load(webfilter.StarterFS(), nil)
	if err != nil {
		fail(err)
	}
	big := bytes.Repeat(page, (256<<10)/len(page)) // one scan_bytes' worth
	total := *scanMB << 20
	start := time.Now()
	done := 0
	for done < total {
		sc := set.NewScores()
		sc.Normalized(webfilter.ParseHTML(big).Text)
		if _, ok := sc.Top(100); ok {
			fail(fmt.Errorf("the bench page was classified"))
		}
		done += len(big)
	}
	el := time.Since(start)
	fmt.Printf("  phrase scan (HTML parse + phrases, starter set, 256 KiB pages): %.0f MB/s on one core\n", float64(done)/1e6/el.Seconds())
}

// fetchProfile saves Ops's CPU profile over d (GET /debug/pprof/profile).
func fetchProfile(p *opsproc.Proc, file string, d time.Duration) error {
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.URL, int(d.Seconds())), nil)
	req.Header.Set("Authorization", p.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func freePorts(n int) []int {
	ports, err := opsproc.FreePorts(n)
	if err != nil {
		fail(err)
	}
	return ports
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench forward:", err)
	os.Exit(1)
}
