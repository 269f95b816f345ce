package main

import (
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestViewsAndGraphCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "ops.yaml")
	if err := os.WriteFile(cfgFile, []byte(crashGraph), 0o600); err != nil {
		t.Fatal(err)
	}
	token := ""
	run := func(args ...string) (string, error) {
		cmd := exec.Command(opsBinary(t), args...)
		cmd.Env = append(os.Environ(), "OPS_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("graph", "-c", cfgFile)
	if err != nil || !strings.Contains(out, "processor_double -->|ev.gc.out| view_out_per_key") {
		t.Fatalf("graph: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "cycle.yaml")
	_ = os.WriteFile(bad, []byte("processors:\n  - name: loop\n    from: ev.a.>\n    to: ev.a.b\n"), 0o600)
	out, err = run("check-config", "-c", bad)
	if err == nil || !strings.Contains(out, "cycle: processor loop -> processor loop") {
		t.Fatalf("cycle not rejected: %v\n%s", err, out)
	}

	p := startOps(t, filepath.Join(dir, "data"), "--config", cfgFile)
	var nd strings.Builder
	for i := 0; i < 90; i++ {
		fmt.Fprintf(&nd, `{"type":"gc.in","data":{"k":"k%d","v":1}}`+"\n", i%3)
	}
	token = p.token
	cmd := exec.Command(opsBinary(t), "--server", p.url, "publish", "-f", "-")
	cmd.Env = append(os.Environ(), "OPS_TOKEN="+token)
	cmd.Stdin = strings.NewReader(nd.String())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("publish: %v %s", err, b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err = run("--server", p.url, "views", "get", "per_key", "--sort", "k")
		if err == nil && strings.Count(out, " 30 ") == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("views get: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "K ") || !strings.Contains(out, "k0") {
		t.Fatalf("views get table:\n%s", out)
	}
	out, err = run("--server", p.url, "views", "ls")
	if err != nil || !strings.Contains(out, "per_key") || !strings.Contains(out, "out_per_key") {
		t.Fatalf("views ls: %v\n%s", err, out)
	}
	out, err = run("--server", p.url, "views", "rebuild", "per_key")
	if err != nil || !strings.Contains(out, "rebuilt per_key: 90 events") {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "per_key.csv")
	if out, err := run("--server", p.url, "views", "export", "per_key", "-f", file); err != nil || !strings.Contains(out, "exported 3 rows") {
		t.Fatalf("export: %v %s", err, out)
	}
	f, _ := os.Open(file)
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(recs) != 4 || strings.Join(recs[0], ",") != "k,n,total" {
		t.Fatalf("export file: %v %q", err, recs)
	}
}
