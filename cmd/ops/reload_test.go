package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/testutil"
)

var proxyAddrRE = regexp.MustCompile(`msg="proxy listening" module=proxy addr=(\S+)`)

// TestSIGHUPReloadsProxy: editing ops.yaml and sending SIGHUP to the real
// process swaps the proxy's routes; a broken file is refused and changes
// nothing.
func TestSIGHUPReloadsProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	upstream := func(name string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return s.URL
	}
	a, b := upstream("a"), upstream("b")
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "ops.yaml")
	write := func(up string) {
		y := fmt.Sprintf("proxy:\n  listen: 127.0.0.1:0\n  routes:\n    - name: site\n      upstreams: [%s]\n", up)
		if err := os.WriteFile(cfgFile, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(a)
	p := startOps(t, filepath.Join(dir, "data"), "--config", cfgFile)
	var addr string
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		p.mu.Lock()
		m := proxyAddrRE.FindStringSubmatch(p.logs.String())
		p.mu.Unlock()
		if m == nil {
			return fmt.Errorf("no proxy address logged")
		}
		addr = m[1]
		return nil
	})
	body := func() string {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := body(); got != "a" {
		t.Fatalf("before reload: %q", got)
	}
	write(b)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if got := body(); got != "b" {
			return fmt.Errorf("after SIGHUP: %q", got)
		}
		return nil
	})
	if err := os.WriteFile(cfgFile, []byte("proxy:\n  routes:\n    - name: Bad Name\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !strings.Contains(p.logs.String(), "reload refused") {
			return fmt.Errorf("no refusal logged")
		}
		return nil
	})
	if got := body(); got != "b" {
		t.Fatalf("after a refused reload: %q", got)
	}
}
