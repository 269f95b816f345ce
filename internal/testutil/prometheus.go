package testutil

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Prometheus is Debian's prometheus server run by a test on a loopback
// port with its own storage directory; Stop and Start keep both, so a test
// can take it away and bring it back.
type Prometheus struct {
	URL string // http://127.0.0.1:port

	t     testing.TB
	args  []string
	out   *SyncBuffer
	cmd   *exec.Cmd
	ended chan struct{}
}

// StartPrometheus writes config (prometheus.yml) and runs prometheus with
// it and flags (e.g. --web.enable-remote-write-receiver). The test is
// failed when prometheus is not installed (make test installs it; Require).
func StartPrometheus(t testing.TB, config string, flags ...string) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	Require(t, err == nil, "prometheus", "apt-get install --no-install-recommends prometheus")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := &Prometheus{URL: "http://" + addr, t: t, out: &SyncBuffer{},
		args: append([]string{bin, "--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr, "--log.level=warn"}, flags...)}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Start runs the server and waits until it is ready.
func (p *Prometheus) Start() {
	p.t.Helper()
	p.cmd = exec.Command(p.args[0], p.args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.ended = make(chan struct{})
	go func(c *exec.Cmd, ended chan struct{}) { _ = c.Wait(); close(ended) }(p.cmd, p.ended)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-p.ended:
			p.t.Fatalf("prometheus exited during start:\n%s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("prometheus not ready after 30s:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the server (SIGTERM, as an operator would) and waits.
func (p *Prometheus) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.ended:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.ended:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.ended
	}
}

// Log is what the server printed.
func (p *Prometheus) Log() string { return p.out.String() }

// String names the server in test messages.
func (p *Prometheus) String() string { return fmt.Sprintf("prometheus at %s", p.URL) }
