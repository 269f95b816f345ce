// Command footprint measures what Ops costs a machine at rest: binary size,
// start-to-ready time and idle RSS, and the same for a plain nats-server
// with JetStream (the part Ops embeds) as the peer, in one run.
//
//	go run ./bench/footprint -ops bin/ops -nats /tmp/nats-server
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

var (
	opsBin  = flag.String("ops", "bin/ops", "ops binary")
	natsBin = flag.String("nats", "", "nats-server binary (peer); empty skips it")
	idle    = flag.Duration("idle", 30*time.Second, "how long to idle before reading RSS")
	starts  = flag.Int("starts", 7, "start-to-ready samples (median reported)")
)

func main() {
	flag.Parse()
	opsSize := fileSize(*opsBin)
	opsStart := median(*starts, startOps)
	opsRSS, opsAnon := startOpsRSS()
	fmt.Printf("\nFootprint with the default config (modules bus, identity, api, policy, pipeline, views, cqrs, collector, tsdb; no graph nodes, no proxy routes), idle %v\n", *idle)
	fmt.Printf("%-22s %14s %14s %14s %14s\n", "", "binary", "start->ready", "idle RSS", "of it private")
	fmt.Printf("%-22s %11.1f MiB %14v %11.1f MiB %11.1f MiB\n", "ops serve", mb(opsSize), opsStart.Round(time.Millisecond), mb(opsRSS), mb(opsAnon))
	if *natsBin != "" {
		nSize := fileSize(*natsBin)
		nStart := median(*starts, startNATS)
		nRSS, nAnon := natsRSS()
		fmt.Printf("%-22s %11.1f MiB %14v %11.1f MiB %11.1f MiB\n", "nats-server -js", mb(nSize), nStart.Round(time.Millisecond), mb(nRSS), mb(nAnon))
		fmt.Printf("%-22s %13.2fx %13.2fx %13.2fx %13.2fx\n", "ratio ops/nats", float64(opsSize)/float64(nSize), float64(opsStart)/float64(nStart), float64(opsRSS)/float64(nRSS), float64(opsAnon)/float64(nAnon))
	}
	fmt.Println("targets: start->ready <= 300ms; idle RSS <= 40 MiB")
	fmt.Println("(private = RssAnon; the rest of the RSS is mostly the binary's own pages, shared with the page cache)")
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return st.Size()
}

func median(n int, f func() time.Duration) time.Duration {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		ds = append(ds, f())
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// launchOps prepares ops on a fresh data dir and a free port.
func launchOps() (*exec.Cmd, string, string) {
	dir, _ := os.MkdirTemp("", "opsfp")
	addr := freePort()
	cmd := exec.Command(*opsBin, "serve", "--data-dir", dir, "--http-listen", addr, "--log-level", "warn")
	return cmd, addr, dir
}

// startOps returns the time from exec to /readyz answering 200.
func startOps() time.Duration {
	cmd, addr, dir := launchOps()
	defer os.RemoveAll(dir)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	waitFor(t0, "ops", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	d := time.Since(t0)
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	return d
}

// waitFor polls ready every millisecond for up to 20 s from t0.
func waitFor(t0 time.Time, what string, ready func() bool) {
	for !ready() {
		if time.Since(t0) > 20*time.Second {
			panic(what + " not ready")
		}
		time.Sleep(time.Millisecond)
	}
}

func startOpsRSS() (int64, int64) {
	cmd, addr, dir := launchOps()
	defer os.RemoveAll(dir)
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	for i := 0; i < 2000; i++ {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(*idle)
	return rss(cmd.Process.Pid)
}

func startNATS() time.Duration {
	dir, _ := os.MkdirTemp("", "natsfp")
	defer os.RemoveAll(dir)
	addr := freePort()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(*natsBin, "-js", "-sd", dir, "-a", "127.0.0.1", "-p", port)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	waitFor(t0, "nats", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(line, "INFO")
	})
	d := time.Since(t0)
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	return d
}

func natsRSS() (int64, int64) {
	dir, _ := os.MkdirTemp("", "natsfp")
	defer os.RemoveAll(dir)
	_, port, _ := net.SplitHostPort(freePort())
	cmd := exec.Command(*natsBin, "-js", "-sd", dir, "-a", "127.0.0.1", "-p", port)
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	time.Sleep(*idle)
	return rss(cmd.Process.Pid)
}

var (
	rssRE  = regexp.MustCompile(`VmRSS:\s+(\d+) kB`)
	anonRE = regexp.MustCompile(`RssAnon:\s+(\d+) kB`)
)

// rss is the resident set (VmRSS) of pid; anon, the part of it that is
// the process's own memory (RssAnon; the rest is mostly the binary's
// pages, shared with the page cache and reclaimable).
func rss(pid int) (total, anon int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		panic(err)
	}
	read := func(re *regexp.Regexp) int64 {
		m := re.FindSubmatch(b)
		if m == nil {
			panic("no " + re.String())
		}
		kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return kb << 10
	}
	return read(rssRE), read(anonRE)
}
