package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/opsgraph/ops/internal/testutil"
)

// TestDNSCommands: a real ops serve resolving through unbound over DoT;
// ops dns check reports its plain listener answering (and records the
// check as an event), ops dns top lists the names asked.
func TestDNSCommands(t *testing.T) {
	ub := testutil.StartUnbound(t, `local-zone: "cli.test." static
local-data: "www.cli.test. 300 IN A 192.0.2.10"`)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "ops.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "dns:\n  upstreams: [tls://%s]\n  upstream_ca: %s\n  listen: %s\n", ub.TLS, ub.CAFile, addr), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startOps(t, filepath.Join(dir, "data"), "--config", conf)
	q := new(dns.Msg)
	q.SetQuestion("www.cli.test.", dns.TypeA)
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		r, err := dns.Exchange(q, addr)
		if err != nil || len(r.Answer) != 1 {
			return fmt.Errorf("%v %v", r, err)
		}
		return nil
	})
	run := func(args ...string) (string, error) {
		cmd := exec.Command(opsBinary(t), append([]string{"--server", p.url}, args...)...)
		cmd.Env = append(os.Environ(), "OPS_TOKEN="+p.token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("dns", "check", "udp://"+addr, "--name", "www.cli.test")
	if err != nil || !strings.Contains(out, "answers in") || !strings.Contains(out, "192.0.2.10") || !strings.Contains(out, "encrypted: no") || strings.Contains(out, "not recorded") {
		t.Fatalf("dns check: %v\n%s", err, out)
	}
	if out, err := run("dns", "check", "udp://127.0.0.1:1", "--timeout", "500ms", "--record=false"); err == nil || !strings.Contains(out, "no transport answered") {
		t.Fatalf("dns check of nothing: %v\n%s", err, out)
	}
	out, err = run("dns", "top", "--since", "15m", "-o", "csv")
	if err != nil || !strings.Contains(out, "domain,www.cli.test,") || !strings.Contains(out, "client,127.0.0.0,") {
		t.Fatalf("dns top: %v\n%s", err, out)
	}
	if out, err := run("tail", "ev.dns.check", "--since", "1", "--count", "1"); err != nil || !strings.Contains(out, "dns.check") {
		t.Fatalf("the recorded check: %v\n%s", err, out)
	}
}
