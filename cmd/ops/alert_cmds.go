package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsgraph/ops/internal/app"
	"github.com/opsgraph/ops/internal/client"
)

// The alert API's answers, declared here so the CLI does not link
// Prometheus (the notsdb build has no alert module).
type cliAlert struct {
	Alert       string            `json:"alert"`
	State       string            `json:"state"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Value       float64           `json:"value"`
	ActiveAt    time.Time         `json:"active_at"`
	Group       string            `json:"group"`
}

type cliRuleGroup struct {
	Name           string    `json:"name"`
	File           string    `json:"file"`
	Interval       float64   `json:"interval"`
	EvaluationTime float64   `json:"evaluation_time"`
	LastEvaluation time.Time `json:"last_evaluation"`
	Rules          []struct {
		Name      string `json:"name"`
		Type      string `json:"type"`
		Health    string `json:"health"`
		LastError string `json:"last_error"`
		State     string `json:"state"`
		Active    int    `json:"active"`
	} `json:"rules"`
}

func alertsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Short: "Active alerts and the rules that make them (Prometheus rule files)"}
	cmd.AddCommand(alertsLsCmd(g), alertsRulesCmd(g), alertsCheckCmd(g), alertsTestCmd(), alertsPutCmd(g), alertsRmCmd(g), silenceCmd(g))
	return cmd
}

func alertsLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "Alerts pending or firing now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct{ Alerts []cliAlert }
			if err := g.client().Get(cmd.Context(), "/api/v1/alerts", &res); err != nil {
				return err
			}
			rows := [][]string{{"ALERT", "STATE", "SINCE", "VALUE", "LABELS", "SUMMARY"}}
			for _, a := range res.Alerts {
				var ls []string
				for k, v := range a.Labels {
					if k != "alertname" {
						ls = append(ls, k+"="+v)
					}
				}
				sort.Strings(ls)
				rows = append(rows, []string{a.Alert, a.State, a.ActiveAt.Format(time.RFC3339), fmt.Sprint(a.Value), strings.Join(ls, ","), a.Annotations["summary"]})
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	}
}

func alertsRulesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rules",
		Short: "Rule groups and each rule's health and last evaluation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct{ Groups []cliRuleGroup }
			if err := g.client().Get(cmd.Context(), "/api/v1/alerts/rules", &res); err != nil {
				return err
			}
			rows := [][]string{{"GROUP", "FROM", "RULE", "TYPE", "HEALTH", "STATE", "ACTIVE", "ERROR"}}
			for _, gr := range res.Groups {
				for _, r := range gr.Rules {
					rows = append(rows, []string{gr.Name, gr.File, r.Name, r.Type, r.Health, r.State, fmt.Sprint(r.Active), r.LastError})
				}
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	}
}

// checkFile sends a rule file to the server's checker, which uses
// Prometheus's own parser.
func checkFile(cmd *cobra.Command, c *client.Client, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res struct{ Groups, Rules int }
	if err := c.SendRaw(cmd.Context(), "POST", "/api/v1/alerts/rules/check", "application/yaml", b, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %d group(s), %d rule(s), ok\n", path, res.Groups, res.Rules)
	return nil
}

// alertsTestCmd runs rule unit tests here, as promtool test rules does;
// it needs no server.
func alertsTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test <test file>...",
		Short: "Run rule unit tests written for `promtool test rules` (input series, expected alerts and expression values); exits 1 when one fails",
		Example: "  ops alerts test tests/alerts_test.yml\n" +
			"  # the same file promtool takes: rule_files, evaluation_interval, tests[].input_series, alert_rule_test, promql_expr_test",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ok, err := app.RunRuleTests(cmd.Context(), cmd.OutOrStdout(), args...)
			if err != nil {
				return err
			}
			if !ok {
				cmd.SilenceUsage = true
				return errors.New("rule unit tests failed")
			}
			return nil
		},
	}
}

func alertsCheckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "check <rule file>...",
		Short:   "Check Prometheus rule files (PromQL, durations, templates) without loading them; exits 1 on the first error",
		Example: "  ops alerts check /etc/prometheus/rules/*.yml",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			var errs []error
			for _, p := range args {
				if err := checkFile(cmd, c, p); err != nil {
					errs = append(errs, err)
				}
			}
			if len(errs) > 0 {
				cmd.SilenceUsage = true
			}
			return errors.Join(errs...)
		},
	}
}

func alertsPutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "put <group> <rule file>",
		Short: "Create or replace a rule group kept by Ops (the file holds that one group)",
		Example: `  ops alerts put web web-rules.yml
  ops alerts put web -   # from standard input`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b []byte
			var err error
			if args[1] == "-" {
				b, err = io.ReadAll(cmd.InOrStdin())
			} else {
				b, err = os.ReadFile(filepath.Clean(args[1]))
			}
			if err != nil {
				return err
			}
			var res struct {
				Group string
				Rules int
			}
			if err := g.client().SendRaw(cmd.Context(), "PUT", "/api/v1/alerts/rules/"+url.PathEscape(args[0]), "application/yaml", b, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stored group %s (%d rules)\n", res.Group, res.Rules)
			return nil
		},
	}
}

func alertsRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm <group>",
		Short: "Remove a rule group made with put (groups from alert.rule_files stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().Send(cmd.Context(), "DELETE", "/api/v1/alerts/rules/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed group %s\n", args[0])
			return nil
		},
	}
}

type cliSilence struct {
	ID        string    `json:"id"`
	Matchers  string    `json:"matchers"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedBy string    `json:"created_by"`
	Comment   string    `json:"comment"`
	State     string    `json:"state"`
}

func silenceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "silence", Short: "Silences: mute alerts that match, for a while (needs alert.alertmanager_config)"}
	var dur, comment, state string
	add := &cobra.Command{
		Use:   "add <matchers>",
		Short: "Silence the alerts that match, from now on",
		Example: `  ops alerts silence add 'alertname="HighLatency",service="api"' --for 2h --comment "deploying"
  ops alerts silence add 'severity=~"ticket|info"' --for 30m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]string{"matchers": args[0], "for": dur, "comment": comment}
			var res struct{ Silence cliSilence }
			if err := g.client().Send(cmd.Context(), "POST", "/api/v1/alerts/silences", body, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "silenced %s until %s (id %s)\n", res.Silence.Matchers, res.Silence.EndsAt.Format(time.RFC3339), res.Silence.ID)
			return nil
		},
	}
	add.Flags().StringVar(&dur, "for", "1h", "how long")
	add.Flags().StringVar(&comment, "comment", "", "why")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "Silences, the longest-running first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct{ Silences []cliSilence }
			if err := g.client().Get(cmd.Context(), "/api/v1/alerts/silences?state="+url.QueryEscape(state), &res); err != nil {
				return err
			}
			rows := [][]string{{"ID", "MATCHERS", "STATE", "ENDS", "BY", "COMMENT"}}
			for _, s := range res.Silences {
				rows = append(rows, []string{s.ID, s.Matchers, s.State, s.EndsAt.Format(time.RFC3339), s.CreatedBy, s.Comment})
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	}
	ls.Flags().StringVar(&state, "state", "", "only active, pending or expired ones")
	expire := &cobra.Command{
		Use:   "expire <id>",
		Short: "End a silence now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().Send(cmd.Context(), "DELETE", "/api/v1/alerts/silences/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "expired silence %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, ls, expire)
	return cmd
}
