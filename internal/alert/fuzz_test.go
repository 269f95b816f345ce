package alert

import (
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	amconfig "github.com/prometheus/alertmanager/config"

	"github.com/prometheus/prometheus/promql/parser"
)

// FuzzParseRules: whatever a caller sends to PUT or check, the parser
// answers a rule set or an error naming a field, and never panics.
func FuzzParseRules(f *testing.F) {
	for _, s := range []string{
		"groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up == 0\n        for: 1m\n",
		"groups:\n  - name: a\n    rules:\n      - record: a:b\n        expr: sum(x)\n",
		"groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up ==\n",
		"groups: [{name: a, rules: [{alert: X, expr: 'up', annotations: {s: '{{ $value'}}]}]",
		"groups:\n  - name: a\n  - name: a\n",
		"", "groups: 1", "\x00",
	} {
		f.Add([]byte(s))
	}
	m := &Module{parser: parser.NewParser(parser.Options{}), log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, b []byte) {
		rgs, err := m.parseRules(b)
		if err != nil {
			if f := ruleField(err); !strings.HasPrefix(f, "groups") {
				t.Fatalf("field %q for %v", f, err)
			}
			return
		}
		for _, g := range rgs.Groups {
			if g.Name == "" {
				t.Fatalf("a group without a name passed: %q", b)
			}
		}
	})
}

// TestDocRuleFiles: the rule files shown in docs/alerts.md pass
// Prometheus's checks, so what a person pastes loads.
func TestDocRuleFiles(t *testing.T) {
	b, err := os.ReadFile("../../docs/alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	m := &Module{parser: parser.NewParser(parser.Options{}), log: slog.New(slog.DiscardHandler)}
	n := 0
	for _, blk := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if !strings.HasPrefix(blk[1], "# fragment: a Prometheus rule file") {
			continue
		}
		n++
		if _, err := m.parseRules([]byte(blk[1])); err != nil {
			t.Errorf("rule file %d: %v\n%s", n, err, blk[1])
		}
	}
	if n == 0 {
		t.Fatal("no rule file in docs/alerts.md")
	}
	am := 0
	for _, blk := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if !strings.HasPrefix(blk[1], "# fragment: an alertmanager.yml") {
			continue
		}
		am++
		// Load checks the file without opening the files it names.
		if _, err := amconfig.Load(blk[1]); err != nil {
			t.Errorf("alertmanager.yml %d: %v\n%s", am, err, blk[1])
		}
	}
	if am == 0 {
		t.Fatal("no alertmanager.yml in docs/alerts.md")
	}
}

// FuzzParseSilence: any silence a caller sends is made or refused with a
// field named, and a made one never matches every alert.
func FuzzParseSilence(f *testing.F) {
	for _, s := range []string{`alertname="X"`, `alertname=~".*"`, `a!="",b=~"x|y"`, `{a="b"}`, `=x`, `a=`, ""} {
		f.Add(s, "2h", "")
	}
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, matchers, dur, comment string) {
		sil, field, err := parseSilence(NewSilence{Matchers: matchers, For: dur, Comment: comment}, now)
		if err != nil {
			if field == "" || !strings.HasPrefix(err.Error(), field) {
				t.Fatalf("error %q names field %q", err, field)
			}
			return
		}
		if !sil.EndsAt.AsTime().After(now) || len(sil.MatcherSets) != 1 || len(sil.MatcherSets[0].Matchers) == 0 {
			t.Fatalf("silence %v", sil)
		}
	})
}

// FuzzRuleUnitTests: whatever a rule test file holds (series notation,
// times, expressions), ops alerts test reports a verdict, never panics.
func FuzzRuleUnitTests(f *testing.F) {
	for _, name := range []string{"good_test.yml", "bad_test.yml", "broken_test.yml"} {
		b, err := os.ReadFile("testdata/unittest/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("tests:\n  - input_series: [{series: 'x', values: '1+1x3 _ stale {{schema:0 sum:1 count:1}}'}]\n    promql_expr_test: [{expr: 'x', eval_time: 2m, exp_samples: [{labels: 'x', value: 3}]}]\n"))
	f.Add([]byte("start_timestamp: nope\ntests: [{start_timestamp: '-1e300', interval: -1m}]\n"))
	rules, err := os.ReadFile("testdata/unittest/rules.yml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(dir+"/rules.yml", rules, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/t.yml", b, 0o600); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		ok := RunUnitTests(t.Context(), &out, dir+"/t.yml")
		if !ok && !strings.Contains(out.String(), "FAILED") {
			t.Fatalf("a failure without a report: %q", out.String())
		}
	})
}
