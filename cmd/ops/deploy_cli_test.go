package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDeployCLI runs what a CI pipeline and a host run, against a real
// process, then kills it (-9) and checks that every acknowledged record is
// there once after the restart.
func TestDeployCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	p := startOps(t, data)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(opsBinary(t), append([]string{"--server", p.url}, args...)...)
		cmd.Env = append(os.Environ(), "OPS_TOKEN="+p.token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	v1, v2 := filepath.Join(dir, "v1.yaml"), filepath.Join(dir, "v2.yaml")
	_ = os.WriteFile(v1, []byte("replicas: 2\nimage: api:1.4.1\n"), 0o600)
	_ = os.WriteFile(v2, []byte("replicas: 3\nimage: api:1.4.2\n"), 0o600)

	out, err := run("deploy", "record", "--id", "run-41", "--service", "api", "--env", "prod", "--version", "1.4.1", "--config", v1, "--hosts", "web-1,web-2")
	if err != nil || !strings.HasPrefix(out, "recorded api/prod 1.4.1 succeeded (id run-41, config ") {
		t.Fatalf("record: %v\n%s", err, out)
	}
	for range 2 { // the pipeline's step ran twice
		out, err = run("deploy", "record", "--id", "run-42", "--service", "api", "--env", "prod", "--version", "1.4.2", "--config", v2, "--hosts", "web-1,web-2")
		if err != nil {
			t.Fatalf("record: %v\n%s", err, out)
		}
	}
	if !strings.HasPrefix(out, "already recorded api/prod 1.4.2") {
		t.Fatalf("retry: %s", out)
	}
	out, err = run("deploy", "record", "--service", "api", "--env", "prod", "--version", "1.4.3", "--status", "bogus")
	if err == nil || !strings.Contains(out, "status") {
		t.Fatalf("bad status: %v\n%s", err, out)
	}

	// Both hosts report; web-2's config file is the old one.
	for host, cfg := range map[string]string{"web-1": v2, "web-2": v1} {
		if out, err := run("deploy", "report", "--service", "api", "--env", "prod", "--version", "1.4.2", "--host", host, "--config", cfg); err != nil {
			t.Fatalf("report %s: %v\n%s", host, err, out)
		}
	}
	out, err = run("deploy", "drift")
	if err == nil || !strings.Contains(out, "web-2") || !strings.Contains(out, "config") || strings.Contains(out, "web-1") {
		t.Fatalf("drift: %v\n%s", err, out)
	}
	// The host fixes its file: no drift, exit 0.
	_ = os.WriteFile(filepath.Join(dir, "fixed.yaml"), []byte("replicas: 3\nimage: api:1.4.2\n"), 0o600)
	if out, err := run("deploy", "report", "--service", "api", "--env", "prod", "--version", "1.4.2", "--host", "web-2", "--config", filepath.Join(dir, "fixed.yaml")); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if out, err := run("deploy", "drift"); err != nil {
		t.Fatalf("drift after the fix: %v\n%s", err, out)
	}

	out, err = run("deploy", "diff", "run-41", "api/prod/run-42")
	if err != nil || !strings.Contains(out, "-replicas: 2\n-image: api:1.4.1\n+replicas: 3\n+image: api:1.4.2\n") {
		t.Fatalf("diff: %v\n%s", err, out)
	}
	out, err = run("--output", "json", "deploy", "status")
	if err != nil || !strings.Contains(out, `"1.4.2"`) {
		t.Fatalf("status: %v\n%s", err, out)
	}
	sum := sha256.Sum256([]byte("replicas: 3\nimage: api:1.4.2\n"))
	if !strings.Contains(out, hex.EncodeToString(sum[:])) {
		t.Fatalf("status lacks the config hash the host computed:\n%s", out)
	}

	// kill -9 right after a record was acknowledged.
	if out, err := run("deploy", "record", "--id", "run-43", "--service", "api", "--env", "prod", "--version", "1.4.3", "--status", "started"); err != nil {
		t.Fatalf("record: %v\n%s", err, out)
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p = startOps(t, data)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err = run("--output", "json", "deploy", "ls", "--service", "api")
		var res struct{ Deployments []struct{ ID, Status string } }
		if err == nil && json.Unmarshal([]byte(out), &res) == nil && len(res.Deployments) == 3 {
			if res.Deployments[0].ID != "run-43" || res.Deployments[0].Status != "started" {
				t.Fatalf("after kill -9: %s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after kill -9: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// And the rollout finishes after the restart.
	if out, err := run("deploy", "record", "--id", "run-43", "--service", "api", "--env", "prod", "--version", "1.4.3"); err != nil || !strings.HasPrefix(out, "recorded") {
		t.Fatalf("finish: %v\n%s", err, out)
	}
	out, err = run("--output", "json", "deploy", "dora", "--service", "api")
	var dora struct{ Deployments map[string]int }
	if err != nil || json.Unmarshal([]byte(out), &dora) != nil || dora.Deployments["succeeded"] != 3 {
		t.Fatalf("dora: %v\n%s", err, out)
	}
}
