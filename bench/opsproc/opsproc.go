// Package opsproc starts the real ops binary for the benchmarks in bench/:
// a child process on a loopback port, with its data directory, found
// ready by its "listening" log line, and the first-run admin token it
// wrote, which the API needs.
package opsproc

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Proc is a running ops serve.
type Proc struct {
	Cmd *exec.Cmd
	URL string // http://host:port of the API
	// Token is "Bearer <first-run admin token>", for the Authorization
	// header.
	Token string
}

var listenRE = regexp.MustCompile(`msg=listening module=api addr=(\S+)`)

// Start runs bin serve on dataDir with args added, and waits until the API
// listens.
func Start(bin, dataDir string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, append([]string{"serve", "--data-dir", dataDir, "--http-listen", "127.0.0.1:0",
		"--log-level", "warn", "--set", "log.modules.api=info"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		echo := os.Getenv("BENCH_OPS_LOG") != ""
		for sc.Scan() {
			if echo {
				fmt.Fprintln(os.Stderr, "ops:", sc.Text())
			}
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	p := &Proc{Cmd: cmd}
	select {
	case a := <-addrc:
		p.URL = "http://" + a
	case <-time.After(30 * time.Second):
		p.Stop()
		return nil, fmt.Errorf("ops did not start")
	}
	// The API listens before the modules after it (collector, views...)
	// run: wait, as a load balancer would, until /readyz says every
	// module is running.
	if err := p.waitReady(60 * time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("ops wrote no admin token: %w", err)
	}
	p.Token = "Bearer " + strings.TrimSpace(string(tok))
	return p, nil
}

func (p *Proc) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.URL + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s %s", resp.Status, b)
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("ops not ready after %v: %s", limit, last)
}

// Stop ends the process as Ctrl-C would and waits for it.
func (p *Proc) Stop() {
	_ = p.Cmd.Process.Signal(os.Interrupt)
	_ = p.Cmd.Wait()
}

// RSS is a process's resident set size in bytes (Linux; 0 elsewhere).
func RSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// FreePorts returns n loopback TCP ports that were free a moment ago
// (held together, then released for the servers a bench starts).
func FreePorts(n int) ([]int, error) {
	var out []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
