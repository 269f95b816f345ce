package alert_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsgraph/ops/internal/alert"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestUnitTestsAgreeWithPromtool: the same rule unit-test files run by
// Debian's promtool and by Ops give the same verdicts, and a failing
// test names the same alert and expression with what was expected and
// what came.
func TestUnitTestsAgreeWithPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	testutil.Require(t, err == nil, "promtool", "apt-get install --no-install-recommends prometheus")
	for _, c := range []struct {
		file string
		pass bool
		want []string // in Ops's report when it fails
	}{
		{"good_test.yml", true, nil},
		{"bad_test.yml", false, []string{"alertname: HighErrors, time: 12m", `summary="api fails 499m times a second"`, `summary="api fails 500m times a second"`,
			`expr: "job:errors:rate5m", time: 10m`, "2.5E-01", "5E-01"}},
		{"broken_test.yml", false, []string{"input_series", `up{job="api"`}},
	} {
		path := filepath.Join("testdata", "unittest", c.file)
		out, err := exec.Command(promtool, "test", "rules", path).CombinedOutput()
		if (err == nil) != c.pass {
			t.Fatalf("promtool on %s: %v, want pass=%v\n%s", c.file, err, c.pass, out)
		}
		var report bytes.Buffer
		if ok := alert.RunUnitTests(context.Background(), &report, path); ok != c.pass {
			t.Fatalf("ops on %s: pass=%v, promtool pass=%v\nops:\n%s\npromtool:\n%s", c.file, ok, c.pass, report.String(), out)
		}
		for _, w := range c.want {
			if !strings.Contains(report.String(), w) {
				t.Errorf("ops on %s does not say %q:\n%s", c.file, w, report.String())
			}
			if strings.HasPrefix(w, "alertname") || strings.HasPrefix(w, "expr") {
				if !strings.Contains(string(out), w) {
					t.Errorf("promtool on %s does not say %q either: the reports differ\n%s", c.file, w, out)
				}
			}
		}
	}
}

// TestUnitTestHistograms: native histograms in input_series and in
// exp_samples (newer promtool's field, which Debian's 2.42 lacks); the
// counter reset hint is compared only when the expected one says it.
func TestUnitTestHistograms(t *testing.T) {
	path := filepath.Join("testdata", "unittest", "histogram_test.yml")
	var report bytes.Buffer
	if !alert.RunUnitTests(context.Background(), &report, path) {
		t.Fatalf("histograms:\n%s", report.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong_test.yml")
	b = bytes.Replace(b, []byte("histogram: '{{schema:0 sum:5 count:4"), []byte("histogram: '{{schema:0 sum:5 count:5"), 1)
	b = bytes.Replace(b, []byte("rules.yml"), []byte(filepath.Join(mustAbs(t, "testdata/unittest"), "rules.yml")), 1)
	if err := os.WriteFile(wrong, b, 0o600); err != nil {
		t.Fatal(err)
	}
	report.Reset()
	if alert.RunUnitTests(context.Background(), &report, wrong) || !strings.Contains(report.String(), "count:5") {
		t.Fatalf("a wrong histogram passed:\n%s", report.String())
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
