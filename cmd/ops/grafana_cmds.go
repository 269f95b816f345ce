package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/grafana"
	"github.com/opsgraph/ops/internal/promver"
)

func grafanaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "grafana", Short: "Connect Grafana to Ops's time series"}
	cmd.AddCommand(grafanaProvisionCmd(g))
	return cmd
}

func grafanaProvisionCmd(g *globals) *cobra.Command {
	var out, cfgFile, dsURL, dsToken, tokenEnv, basicUser, dsName, dsUID, dashPath string
	var scrape time.Duration
	cmd := &cobra.Command{
		Use:   "provision --out DIR",
		Short: "Write Grafana provisioning: the Ops data source, a dashboard per windowed view and Ops health",
		Long: `Writes, under DIR (Grafana's provisioning directory):

  datasources/ops.yaml         a Prometheus data source on <url>/prometheus with an Ops token
  dashboards/ops.yaml          a file provider for the folder below
  dashboards/ops/*.json        "Ops health" and one dashboard per windowed view

Views are read from the running Ops (--server), or from --config when given. Re-run it
after adding or changing views; dashboards of views that are gone are removed.`,
		Example: `  ops grafana provision --out /etc/grafana/provisioning --url http://ops:7070
  ops grafana provision --out ./provisioning -c ops.yaml --dashboards-path /etc/grafana/provisioning/dashboards/ops
  ops grafana provision --out DIR --datasource-token "$(ops token create --name grafana --role viewer)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required: Grafana's provisioning directory, e.g. /etc/grafana/provisioning")
			}
			views, cfg, err := provisionViews(cmd.Context(), g, cfgFile)
			if err != nil {
				return err
			}
			o := grafana.Options{URL: dsURL, Token: dsToken, TokenEnv: tokenEnv, BasicAuthUser: basicUser,
				Name: dsName, UID: dsUID, DashboardsPath: dashPath, ScrapeInterval: scrape,
				PrometheusVersion: promver.Version()}
			if o.URL == "" {
				o.URL = g.server
			}
			if o.DashboardsPath == "" {
				abs, err := filepath.Abs(filepath.Join(out, filepath.FromSlash(grafana.DashboardsDir)))
				if err != nil {
					return err
				}
				o.DashboardsPath = abs
			}
			if !cmd.Flags().Changed("scrape-interval") && cfg != nil {
				o.ScrapeInterval = cfg.TSDB.ScrapeInterval.D()
			}
			files, err := grafana.Provision(views, o)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			names := make([]string, 0, len(files))
			for n := range files {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				mode := os.FileMode(0o644)
				if n == grafana.DatasourceFile && dsToken != "" {
					mode = 0o640 // holds the token itself
				}
				p := filepath.Join(out, filepath.FromSlash(n))
				if err := writeFileAtomic(p, files[n], mode); err != nil {
					return err
				}
				fmt.Fprintln(w, "wrote", p)
			}
			removed, err := removeStaleDashboards(filepath.Join(out, filepath.FromSlash(grafana.DashboardsDir)), files)
			if err != nil {
				return err
			}
			for _, p := range removed {
				fmt.Fprintln(w, "removed", p)
			}
			for _, v := range views {
				if !v.Windowed() {
					fmt.Fprintf(cmd.ErrOrStderr(), "view %s has no window: it has no time series, so no dashboard\n", v.Name)
				}
			}
			if dsToken == "" {
				env := tokenEnv
				if env == "" {
					env = grafana.DefaultTokenEnv
				}
				fmt.Fprintf(w, "\nGrafana reads the token from its environment: set %s to a token with series:read,\n"+
					"e.g. %s=$(ops token create --name grafana --role viewer), and restart Grafana.\n", env, env)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "Grafana's provisioning directory (required), e.g. /etc/grafana/provisioning")
	f.StringVarP(&cfgFile, "config", "c", "", "read the views from this ops.yaml instead of the running Ops")
	f.StringVar(&dsURL, "url", "", "Ops's URL as Grafana reaches it (default: --server)")
	f.StringVar(&dsToken, "datasource-token", "", "Ops token written into the data source (default: a reference to --datasource-token-env)")
	f.StringVar(&tokenEnv, "datasource-token-env", grafana.DefaultTokenEnv, "environment variable of Grafana that holds the token, when --datasource-token is not given")
	f.StringVar(&basicUser, "basic-auth-user", "", "send the token as the password of Basic auth with this user name, instead of a Bearer header")
	f.StringVar(&dsName, "datasource-name", grafana.DefaultName, "data source name (also the dashboards' folder)")
	f.StringVar(&dsUID, "datasource-uid", grafana.DefaultUID, "data source UID the dashboards refer to")
	f.StringVar(&dashPath, "dashboards-path", "", "where Grafana reads the dashboards from (default: DIR/dashboards/ops, absolute)")
	f.DurationVar(&scrape, "scrape-interval", 15*time.Second, "Ops's tsdb.scrape_interval, Grafana's minimum step (default: from --config, else 15s)")
	return cmd
}

// provisionViews reads the views from the config file when one is given,
// else from the running Ops (GET /api/v1/views, which also lists views
// created through the API).
func provisionViews(ctx context.Context, g *globals, cfgFile string) ([]grafana.View, *config.Config, error) {
	if cfgFile != "" {
		cfg, err := config.Load(config.Options{File: cfgFile, Env: os.Environ()})
		if err != nil {
			return nil, nil, &exitError{2, fmt.Errorf("config is invalid:\n%w", err)}
		}
		return grafana.FromConfig(cfg.Views), cfg, nil
	}
	var res struct {
		Views []struct {
			Name     string   `json:"name"`
			Key      []string `json:"key"`
			Measures []string `json:"measures"`
			Window   string   `json:"window"`
		} `json:"views"`
	}
	if err := g.client().Get(ctx, "/api/v1/views", &res); err != nil {
		return nil, nil, fmt.Errorf("read views from %s (or give --config): %w", g.server, err)
	}
	out := make([]grafana.View, 0, len(res.Views))
	for _, v := range res.Views {
		gv, err := grafana.FromInfo(v.Name, v.Key, v.Measures, v.Window)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, gv)
	}
	return out, nil, nil
}

// writeFileAtomic replaces path in one step: Grafana polls the folder and
// must not read a half-written dashboard.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // gone after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// removeStaleDashboards deletes view dashboards written by an earlier run
// for views that are gone; other files in the folder are left alone.
func removeStaleDashboards(dir string, files map[string][]byte) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	prefix := filepath.Base(grafana.ViewFilePrefix)
	var removed []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, ".json") {
			continue
		}
		if _, keep := files[grafana.DashboardsDir+"/"+n]; keep {
			continue
		}
		p := filepath.Join(dir, n)
		if err := os.Remove(p); err != nil {
			return removed, err
		}
		removed = append(removed, p)
	}
	return removed, nil
}
