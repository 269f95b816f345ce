package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alertEvents are the ev.alert.* events stored, as "type alertname".
func alertEvents(t *testing.T, p *proc) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", p.url+"/api/v1/events?subject="+url.QueryEscape("ev.alert.>"), nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var res struct {
		Events []struct {
			Event struct {
				Type    string
				Subject string
			}
		}
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	var out []string
	for _, e := range res.Events {
		out = append(out, e.Event.Type+" "+e.Event.Subject)
	}
	return out
}

// TestAlertsCLI: rules are checked, stored and listed with the CLI; an
// alert that fires before a kill -9 is recorded once, not again after the
// restart (which takes longer than the bus's dedup window), and its
// resolution after the restart is recorded, as is the resolution that
// removing its rule brings.
func TestAlertsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	t.Setenv("OPS_BUS_DEDUP_WINDOW", "1s")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	p := startOps(t, data)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(opsBinary(t), append([]string{"--server", p.url}, args...)...)
		cmd.Env = append(os.Environ(), "OPS_TOKEN="+p.token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	bad := filepath.Join(dir, "bad.yml")
	_ = os.WriteFile(bad, []byte("groups:\n  - name: web\n    rules:\n      - alert: Broken\n        expr: rate(x[5m]\n"), 0o600)
	if out, err := run("alerts", "check", bad); err == nil || !strings.Contains(out, `"Broken"`) || !strings.Contains(out, "groups[web].rules[0]") {
		t.Fatalf("check of a bad file: %v\n%s", err, out)
	}
	rule := func(expr string) string {
		return "groups:\n  - name: web\n    interval: 1s\n    rules:\n      - alert: Always\n        expr: " + expr + "\n        for: 1s\n        labels:\n          severity: page\n"
	}
	firing := filepath.Join(dir, "firing.yml")
	_ = os.WriteFile(firing, []byte(rule("vector(1) > 0")), 0o600)
	if out, err := run("alerts", "check", firing); err != nil || !strings.Contains(out, "1 group(s), 1 rule(s), ok") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if out, err := run("alerts", "put", "web", firing); err != nil || !strings.Contains(out, "stored group web (1 rules)") {
		t.Fatalf("put: %v\n%s", err, out)
	}
	waitFor := func(what string, ok func() error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := ok()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("firing", func() error {
		out, _ := run("alerts", "ls")
		if !strings.Contains(out, "Always") || !strings.Contains(out, "firing") || !strings.Contains(out, "severity=page") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	want := "alert.pending Always,alert.firing Always"
	waitFor("events", func() error {
		if got := strings.Join(alertEvents(t, p), ","); got != want {
			return fmt.Errorf("%s", got)
		}
		return nil
	})

	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	time.Sleep(2 * time.Second) // past the dedup window
	p = startOps(t, data)
	waitFor("firing after the restart", func() error {
		out, _ := run("alerts", "rules")
		if !strings.Contains(out, "Always") || !strings.Contains(out, "firing") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a few rounds
	if got := strings.Join(alertEvents(t, p), ","); got != want {
		t.Fatalf("after kill -9: %s, want %s", got, want)
	}

	// The condition ends: resolved, once.
	_ = os.WriteFile(firing, []byte(rule("vector(1) > 2")), 0o600)
	if out, err := run("alerts", "put", "web", firing); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	want += ",alert.resolved Always"
	waitFor("resolved", func() error {
		if got := strings.Join(alertEvents(t, p), ","); got != want {
			return fmt.Errorf("%s", got)
		}
		return nil
	})
	// Firing again, then the group is removed: that resolves it too.
	_ = os.WriteFile(firing, []byte(rule("vector(1) > 0")), 0o600)
	if out, err := run("alerts", "put", "web", firing); err != nil {
		t.Fatalf("put: %v\n%s", err, out)
	}
	want += ",alert.pending Always,alert.firing Always"
	waitFor("firing again", func() error {
		if got := strings.Join(alertEvents(t, p), ","); got != want {
			return fmt.Errorf("%s", got)
		}
		return nil
	})
	if out, err := run("alerts", "rm", "web"); err != nil || !strings.Contains(out, "removed group web") {
		t.Fatalf("rm: %v\n%s", err, out)
	}
	want += ",alert.resolved Always"
	waitFor("resolved by removal", func() error {
		if got := strings.Join(alertEvents(t, p), ","); got != want {
			return fmt.Errorf("%s", got)
		}
		return nil
	})
	if out, err := run("alerts", "rm", "web"); err == nil || !strings.Contains(out, "no rule group web") {
		t.Fatalf("rm again: %v\n%s", err, out)
	}
}

// TestSIGHUPReloadsRuleFiles: rule files named in ops.yaml are checked by
// check-config, re-read on SIGHUP, and a broken one is refused and
// changes nothing.
func TestSIGHUPReloadsRuleFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "ops.yaml")
	_ = os.WriteFile(cfgFile, []byte("alert:\n  rule_files: ["+filepath.Join(dir, "rules", "*.yml")+"]\n"), 0o600)
	_ = os.MkdirAll(filepath.Join(dir, "rules"), 0o700)
	rules := filepath.Join(dir, "rules", "a.yml")
	write := func(name, expr string) {
		y := "groups:\n  - name: a\n    interval: 1s\n    rules:\n      - alert: " + name + "\n        expr: " + expr + "\n"
		if err := os.WriteFile(rules, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("First", "vector(1) > 2")
	p := startOps(t, filepath.Join(dir, "data"), "--config", cfgFile)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(opsBinary(t), append([]string{"--server", p.url}, args...)...)
		cmd.Env = append(os.Environ(), "OPS_TOKEN="+p.token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	rulesNow := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, _ := run("alerts", "rules")
			if strings.Contains(out, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("want %s in\n%s", want, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	rulesNow("First")
	write("Second", "vector(1) > 2")
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	rulesNow("Second")

	write("Third", "sum(rate(x[5m])")
	out, err := exec.Command(opsBinary(t), "check-config", "--config", cfgFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `"Third"`) || !strings.Contains(string(out), "a.yml") {
		t.Fatalf("check-config of a broken rule file: %v\n%s", err, out)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		refused := strings.Contains(p.logs.String(), "reload refused")
		p.mu.Unlock()
		if refused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no refusal logged")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, _ := run("alerts", "rules"); !strings.Contains(out, "Second") || strings.Contains(out, "Third") {
		t.Fatalf("after a refused reload:\n%s", out)
	}
}

// TestSilencesSurviveKill: a silence acknowledged through the CLI is
// there after kill -9, and expiring it is too.
func TestSilencesSurviveKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real process")
	}
	dir := t.TempDir()
	am := filepath.Join(dir, "alertmanager.yml")
	_ = os.WriteFile(am, []byte("route:\n  receiver: none\nreceivers:\n  - name: none\n"), 0o600)
	cfgFile := filepath.Join(dir, "ops.yaml")
	_ = os.WriteFile(cfgFile, []byte("alert:\n  alertmanager_config: "+am+"\n"), 0o600)
	data := filepath.Join(dir, "data")
	p := startOps(t, data, "--config", cfgFile)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(opsBinary(t), append([]string{"--server", p.url}, args...)...)
		cmd.Env = append(os.Environ(), "OPS_TOKEN="+p.token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("alerts", "silence", "add", `alertname="Deploying",service="api"`, "--for", "2h", "--comment", "release 1.4")
	if err != nil || !strings.HasPrefix(out, `silenced {alertname="Deploying",service="api"} until `) {
		t.Fatalf("add: %v\n%s", err, out)
	}
	id := strings.TrimSuffix(strings.TrimSpace(out[strings.LastIndex(out, "(id ")+4:]), ")")
	if out, err := run("alerts", "silence", "add", `alertname=~".*"`, "--for", "2h"); err == nil || !strings.Contains(out, "every alert") {
		t.Fatalf("a silence of everything: %v\n%s", err, out)
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p = startOps(t, data, "--config", cfgFile)
	out, err = run("alerts", "silence", "ls", "--state", "active")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "release 1.4") {
		t.Fatalf("after kill -9: %v\n%s", err, out)
	}
	if out, err := run("alerts", "silence", "expire", id); err != nil {
		t.Fatalf("expire: %v\n%s", err, out)
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p = startOps(t, data, "--config", cfgFile)
	if out, err := run("alerts", "silence", "ls", "--state", "active"); err != nil || strings.Contains(out, id) {
		t.Fatalf("expired silence active after kill -9: %v\n%s", err, out)
	}
}

// TestAlertsTestCommand: ops alerts test runs promtool's unit-test files
// with no server: exit 0 and SUCCESS for a passing file, exit 1 with the
// failure for a failing one.
func TestAlertsTestCommand(t *testing.T) {
	dir := filepath.Join("..", "..", "internal", "alert", "testdata", "unittest")
	out, err := exec.Command(opsBinary(t), "alerts", "test", filepath.Join(dir, "good_test.yml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("good: %v\n%s", err, out)
	}
	out, err = exec.Command(opsBinary(t), "alerts", "test", filepath.Join(dir, "good_test.yml"), filepath.Join(dir, "bad_test.yml")).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "FAILED:") || !strings.Contains(string(out), "alertname: HighErrors, time: 12m") {
		t.Fatalf("bad: %v\n%s", err, out)
	}
}
