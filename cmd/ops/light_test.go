package main

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildWithoutTimeSeries: go build -tags notsdb makes an ops without
// Prometheus's TSDB (the lighter build docs/benchmarks.md measures): the
// default targets leave tsdb out, the Prometheus API is not there, and
// --target=tsdb says why it cannot start.
func TestBuildWithoutTimeSeries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := filepath.Join(t.TempDir(), "ops-notsdb")
	if out, err := exec.Command("go", "build", "-tags", "notsdb", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags notsdb: %v\n%s", err, out)
	}
	mods, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mods), "github.com/prometheus/prometheus") {
		t.Fatal("the notsdb build still links github.com/prometheus/prometheus")
	}
	p := startOpsWith(t, bin, t.TempDir())
	resp, err := http.Get(p.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct{ Modules []struct{ Name string } }
	_ = json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if len(ready.Modules) == 0 {
		t.Fatal("no modules in /readyz")
	}
	for _, m := range ready.Modules {
		if m.Name == "tsdb" {
			t.Fatalf("tsdb runs in a notsdb build: %+v", ready.Modules)
		}
	}
	resp, err = http.Get(p.url + "/prometheus/api/v1/query?query=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("Prometheus API in a notsdb build: %d", resp.StatusCode)
	}
	out, err := exec.Command(bin, "serve", "--data-dir", t.TempDir(), "--http-listen", "127.0.0.1:0", "--target", "tsdb").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "built without the time series (-tags notsdb)") {
		t.Fatalf("--target=tsdb: %v\n%s", err, out)
	}
}
