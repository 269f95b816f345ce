package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsgraph/ops/internal/deploy"
)

func deployCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "deploy", Short: "Record deployments, report what hosts run, and see versions, drift, diffs and DORA figures"}
	cmd.AddCommand(deployRecordCmd(g), deployReportCmd(g), deployLsCmd(g), deployStatusCmd(g), deployDriftCmd(g), deployDiffCmd(g), deployDoraCmd(g))
	return cmd
}

func deployRecordCmd(g *globals) *cobra.Command {
	var rec deploy.Record
	var cfgFile, commitTime string
	c := &cobra.Command{
		Use:   "record",
		Short: "Record a deployment (from a CI pipeline), or a new status of one (--id)",
		Example: `  ops deploy record --service api --version 1.4.2 --env prod --config deploy.yaml
  ops deploy record --id "$GITHUB_RUN_ID" --service api --version 1.4.2 --env prod --status started
  ops deploy record --id "$GITHUB_RUN_ID" --service api --version 1.4.2 --env prod --status succeeded`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgFile != "" {
				b, err := os.ReadFile(cfgFile)
				if err != nil {
					return err
				}
				s := string(b)
				rec.Config = &s
			}
			if commitTime != "" {
				t, err := time.Parse(time.RFC3339, commitTime)
				if err != nil {
					return fmt.Errorf("--commit-time: want an RFC 3339 time (git log -1 --format=%%cI), got %q", commitTime)
				}
				rec.CommitTime = &t
			}
			var res deploy.Recorded
			if err := g.client().Send(cmd.Context(), "POST", "/api/v1/deployments", rec, &res); err != nil {
				return err
			}
			d := res.Deployment
			what := "recorded"
			if !res.Stored {
				what = "already recorded"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s/%s %s %s (id %s", what, d.Service, d.Env, d.Version, d.Status, d.ID)
			if d.ConfigHash != "" {
				fmt.Fprintf(cmd.OutOrStdout(), ", config %s", d.ConfigHash[:12])
			}
			fmt.Fprintln(cmd.OutOrStdout(), ")")
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&rec.ID, "id", "", "the deployment's id (e.g. the CI run id); needed to change its status later, and makes retries safe")
	f.StringVar(&rec.Service, "service", "", "service name")
	f.StringVar(&rec.Env, "env", "", "environment, e.g. prod")
	f.StringVar(&rec.Version, "version", "", "version deployed")
	f.StringVar(&rec.Status, "status", "succeeded", "started, succeeded, failed or rolled_back")
	f.StringVar(&rec.Commit, "commit", "", "commit id")
	f.StringVar(&commitTime, "commit-time", "", "when the commit was made (RFC 3339), for the lead time")
	f.StringSliceVar(&rec.Hosts, "hosts", nil, "hosts it goes to (comma-separated)")
	f.StringVar(&rec.Region, "region", "", "region")
	f.StringVar(&rec.Who, "who", "", "who deployed (default: the token's user)")
	f.StringVar(&rec.URL, "url", "", "link to the pipeline run or release")
	f.StringVar(&rec.Description, "description", "", "what changed")
	f.StringVar(&cfgFile, "config", "", "the deployment's config file (YAML or JSON), stored by its SHA-256")
	for _, n := range []string{"service", "env", "version"} {
		_ = c.MarkFlagRequired(n)
	}
	return c
}

func deployReportCmd(g *globals) *cobra.Command {
	var hb deploy.Heartbeat
	var cfgFile string
	var every time.Duration
	c := &cobra.Command{
		Use:   "report",
		Short: "Report what this host runs (once, or every --every as a heartbeat)",
		Example: `  ops deploy report --service api --env prod --version 1.4.2 --config /etc/api/deploy.yaml
  ops deploy report --service api --env prod --version "$(cat /srv/api/VERSION)" --every 30s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hb.Host == "" {
				h, err := os.Hostname()
				if err != nil {
					return fmt.Errorf("--host: %w", err)
				}
				hb.Host = h
			}
			hb.Every = every.Seconds()
			for {
				if cfgFile != "" {
					// Read each time: a config changed in place is drift.
					b, err := os.ReadFile(cfgFile)
					if err != nil {
						return err
					}
					sum := sha256.Sum256(b)
					hb.ConfigHash = hex.EncodeToString(sum[:])
				}
				err := g.client().Send(cmd.Context(), "POST", "/api/v1/deployments/heartbeat", hb, nil)
				if every == 0 {
					return err
				}
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "report:", err)
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(every):
				}
			}
		},
	}
	f := c.Flags()
	f.StringVar(&hb.Service, "service", "", "service name")
	f.StringVar(&hb.Env, "env", "", "environment")
	f.StringVar(&hb.Version, "version", "", "version this host runs")
	f.StringVar(&hb.Host, "host", "", "this host's name (default: the hostname)")
	f.StringVar(&cfgFile, "config", "", "the config file this host runs with (its SHA-256 is compared with the deployment's)")
	f.DurationVar(&every, "every", 0, "keep reporting at this interval (a heartbeat); once when 0")
	for _, n := range []string{"service", "env", "version"} {
		_ = c.MarkFlagRequired(n)
	}
	return c
}

func filterQuery(service, env string) url.Values {
	q := url.Values{}
	if service != "" {
		q.Set("service", service)
	}
	if env != "" {
		q.Set("env", env)
	}
	return q
}

func deployLsCmd(g *globals) *cobra.Command {
	var service, env, status string
	var limit int
	c := &cobra.Command{
		Use:     "ls",
		Short:   "List deployments, newest first",
		Example: "  ops deploy ls --service api --env prod --limit 20",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := filterQuery(service, env)
			q.Set("limit", fmt.Sprint(limit))
			if status != "" {
				q.Set("status", status)
			}
			var res struct{ Deployments []deploy.Deployment }
			if err := g.client().Get(cmd.Context(), "/api/v1/deployments?"+q.Encode(), &res); err != nil {
				return err
			}
			rows := [][]string{{"AT", "SERVICE", "ENV", "VERSION", "STATUS", "WHO", "COMMIT", "ID"}}
			for _, d := range res.Deployments {
				rows = append(rows, []string{d.At.Format(time.RFC3339), d.Service, d.Env, d.Version, d.Status, d.Who, d.Commit, d.ID})
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	}
	c.Flags().StringVar(&service, "service", "", "only this service")
	c.Flags().StringVar(&env, "env", "", "only this environment")
	c.Flags().StringVar(&status, "status", "", "only this status")
	c.Flags().IntVar(&limit, "limit", 50, "at most this many")
	return c
}

func hostRows(ss []deploy.Service) [][]string {
	rows := [][]string{{"SERVICE", "ENV", "WANT", "HOST", "RUNS", "LAST SEEN", "DRIFT"}}
	for _, s := range ss {
		want := "-"
		if s.Desired != nil {
			want = s.Desired.Version
		}
		if len(s.Hosts) == 0 {
			rows = append(rows, []string{s.Service, s.Env, want, "-", "-", "-", ""})
		}
		for _, h := range s.Hosts {
			seen := "never"
			if !h.LastSeen.IsZero() {
				seen = time.Since(h.LastSeen).Round(time.Second).String() + " ago"
			}
			rows = append(rows, []string{s.Service, s.Env, want, h.Host, h.Version, seen, strings.Join(h.Drift, ",")})
		}
	}
	return rows
}

func deployStatusCmd(g *globals) *cobra.Command {
	var service, env string
	c := &cobra.Command{
		Use:   "status",
		Short: "What version should run and what each host runs, per service and environment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct{ Services []deploy.Service }
			if err := g.client().Get(cmd.Context(), "/api/v1/deployments/services?"+filterQuery(service, env).Encode(), &res); err != nil {
				return err
			}
			return writeTable(cmd.OutOrStdout(), g.output, hostRows(res.Services), res)
		},
	}
	c.Flags().StringVar(&service, "service", "", "only this service")
	c.Flags().StringVar(&env, "env", "", "only this environment")
	return c
}

func deployDriftCmd(g *globals) *cobra.Command {
	var service, env string
	c := &cobra.Command{
		Use:   "drift",
		Short: "Hosts that run another version or config than they should, or went silent; exits 1 when there are any",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct{ Drift []deploy.Service }
			if err := g.client().Get(cmd.Context(), "/api/v1/deployments/drift?"+filterQuery(service, env).Encode(), &res); err != nil {
				return err
			}
			if err := writeTable(cmd.OutOrStdout(), g.output, hostRows(res.Drift), res); err != nil {
				return err
			}
			if len(res.Drift) > 0 {
				cmd.SilenceUsage = true
				return fmt.Errorf("%d service(s) drift", len(res.Drift))
			}
			return nil
		},
	}
	c.Flags().StringVar(&service, "service", "", "only this service")
	c.Flags().StringVar(&env, "env", "", "only this environment")
	return c
}

func deployDiffCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "diff <from> <to>",
		Short:   "Unified diff of two deployments' configs (ids, or service/env/id)",
		Example: "  ops deploy diff api/prod/run-41 api/prod/run-42",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"from": {args[0]}, "to": {args[1]}}
			return g.client().Get(cmd.Context(), "/api/v1/deployments/diff?"+q.Encode(), cmd.OutOrStdout())
		},
	}
}

func deployDoraCmd(g *globals) *cobra.Command {
	var service, env, since string
	c := &cobra.Command{
		Use:     "dora",
		Short:   "Deployment frequency, lead time, change failure rate and time to restore",
		Example: "  ops deploy dora --service api --env prod --since 90d",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := filterQuery(service, env)
			q.Set("since", since)
			var d deploy.DORA
			if err := g.client().Get(cmd.Context(), "/api/v1/deployments/dora?"+q.Encode(), &d); err != nil {
				return err
			}
			opt := func(p *float64, unit func(float64) string) string {
				if p == nil {
					return "-"
				}
				return unit(*p)
			}
			dur := func(s float64) string { return (time.Duration(s) * time.Second).String() }
			pct := func(v float64) string { return fmt.Sprintf("%.1f%%", v) }
			rows := [][]string{{"FIGURE", "VALUE"},
				{"deployments (succeeded/failed/rolled back)", fmt.Sprintf("%d/%d/%d", d.Deployments["succeeded"], d.Deployments["failed"], d.Deployments["rolled_back"])},
				{"deployment frequency", fmt.Sprintf("%.2f per day", d.Frequency)},
				{"lead time for changes (median)", opt(d.LeadTime, dur)},
				{"change failure rate", opt(d.ChangeFailureRate, pct)},
				{"time to restore (median)", opt(d.TimeToRestore, dur)}}
			return writeTable(cmd.OutOrStdout(), g.output, rows, d)
		},
	}
	c.Flags().StringVar(&service, "service", "", "only this service")
	c.Flags().StringVar(&env, "env", "", "only this environment")
	c.Flags().StringVar(&since, "since", "30d", "the period, back from now")
	return c
}
