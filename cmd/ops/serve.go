package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/opsgraph/ops/internal/app"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/graph"
	"github.com/opsgraph/ops/internal/logging"
)

type configFlags struct {
	file string
	set  []string
	// Shorthands for the most used keys; each is the same as --set path=value.
	dataDir, httpListen, logLevel, busURL, busSync string
}

func (f *configFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	def := os.Getenv("OPS_CONFIG")
	fl.StringVarP(&f.file, "config", "c", def, "config file (ops.yaml); none needed (env OPS_CONFIG)")
	fl.StringArrayVar(&f.set, "set", nil, "override a key: --set http.listen=127.0.0.1:7071 (repeatable)")
	fl.StringVar(&f.dataDir, "data-dir", "", "same as --set data_dir=...")
	fl.StringVar(&f.httpListen, "http-listen", "", "same as --set http.listen=...")
	fl.StringVar(&f.logLevel, "log-level", "", "same as --set log.level=...")
	fl.StringVar(&f.busURL, "bus-url", "", "same as --set bus.url=...")
	fl.StringVar(&f.busSync, "bus-sync", "", "same as --set bus.sync=...")
}

func (f *configFlags) load() (*config.Config, error) {
	sets := []string{}
	for k, v := range map[string]string{"data_dir": f.dataDir, "http.listen": f.httpListen,
		"log.level": f.logLevel, "bus.url": f.busURL, "bus.sync": f.busSync} {
		if v != "" {
			sets = append(sets, k+"="+v)
		}
	}
	sets = append(sets, f.set...) // explicit --set wins over shorthands
	return config.Load(config.Options{File: f.file, Env: os.Environ(), Set: sets})
}

// loadGraph loads the config and compiles its graph; either failing is an
// invalid config (exit 2).
func (f *configFlags) loadGraph() (*config.Config, *graph.Graph, error) {
	cfg, err := f.load()
	if err == nil {
		var g *graph.Graph
		if g, err = graph.Compile(cfg); err == nil {
			return cfg, g, nil
		}
	}
	return nil, nil, &exitError{2, fmt.Errorf("config is invalid:\n%w", err)}
}

func serveCmd() *cobra.Command {
	var cf configFlags
	var targets string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run Ops: every enabled module, or the ones named by --target",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load()
			if err != nil {
				return &exitError{2, fmt.Errorf("config:\n%w", err)}
			}
			logs, err := logging.New(os.Stderr, cfg.Log.Format, cfg.Log.Level, cfg.Log.Modules)
			if err != nil {
				return err
			}
			a, err := app.New(cfg, logs)
			if err != nil {
				return err
			}
			a.SetReloader(cf.load)
			ctx, stop := signalContext(logs)
			defer stop()
			// SIGHUP re-reads the config and applies what can change live
			// (the proxy's routes).
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						if err := a.Reload(); err != nil {
							logs.Logger("app").Error("reload refused; the running config stays", "err", err)
						}
					}
				}
			}()
			return a.Run(ctx, strings.Split(targets, ","))
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&targets, "target", "all", "modules to run, comma-separated: "+strings.Join(app.TargetNames(), ", "))
	return cmd
}

// signalContext is cancelled by the first SIGINT or SIGTERM; a second one
// exits at once without draining.
func signalContext(logs *logging.Levels) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		logs.Logger("app").Info("signal received; draining (send again to force exit)", "signal", s.String())
		cancel()
		s = <-sigs
		logs.Logger("app").Warn("second signal; exiting without draining", "signal", s.String())
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

func checkConfigCmd() *cobra.Command {
	var cf configFlags
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration and print every error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, g, err := cf.loadGraph()
			if err != nil {
				return err
			}
			if err := app.CheckRuleFiles(cfg); err != nil {
				return err
			}
			src := cf.file
			if src == "" {
				src = "defaults (no file)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "config ok: %s (hash %s); graph: %d processors, %d views, %d edges\n",
				src, cfg.Hash(), len(g.Processors), len(g.Views), len(g.Edges))
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

func graphCmd() *cobra.Command {
	var cf configFlags
	var format string
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "Print the event graph of the config (Mermaid, DOT or JSON)",
		Example: `  ops graph -c ops.yaml                      # Mermaid, paste into a Markdown file
  ops graph -c ops.yaml --format dot | dot -Tsvg > graph.svg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, g, err := cf.loadGraph()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "mermaid":
				fmt.Fprint(out, g.Mermaid())
			case "dot":
				fmt.Fprint(out, g.DOT())
			case "json":
				b, err := g.JSON()
				if err != nil {
					return err
				}
				fmt.Fprintln(out, string(b))
			default:
				return fmt.Errorf("--format: want mermaid, dot or json, got %q", format)
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&format, "format", "mermaid", "mermaid, dot or json")
	return cmd
}
