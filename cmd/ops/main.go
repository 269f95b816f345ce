// Command ops is the Ops binary: the server (ops serve) and its CLI.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opsgraph/ops/internal/app"
	"github.com/opsgraph/ops/internal/client"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/identity"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ops:", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}

type globals struct {
	server  string
	output  string
	token   string
	dataDir string
}

// client talks to --server with a token from --token, OPS_TOKEN, or the
// first-run admin token in the data directory (so the CLI on the server's
// own machine needs no set-up).
func (g *globals) client() *client.Client {
	c := client.New(g.server)
	c.Token = g.token
	if c.Token == "" {
		if b, err := os.ReadFile(filepath.Join(g.dataDir, identity.AdminTokenFile)); err == nil {
			c.Token = strings.TrimSpace(string(b))
		}
	}
	return c
}

func rootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "ops",
		Short:         "Ops: a product team's operations layer in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	def := os.Getenv("OPS_SERVER")
	if def == "" {
		def = "http://127.0.0.1:7070"
	}
	root.PersistentFlags().StringVar(&g.server, "server", def, "Ops server URL for client commands (env OPS_SERVER)")
	root.PersistentFlags().StringVar(&g.token, "token", os.Getenv("OPS_TOKEN"), "API token for client commands (env OPS_TOKEN; default: data-dir/admin.token when readable)")
	dd := os.Getenv("OPS_DATA_DIR")
	if dd == "" {
		dd = config.Default().DataDir
	}
	g.dataDir = dd
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format where tabular: table, json or csv")
	root.AddCommand(serveCmd(), versionCmd(), checkConfigCmd(), publishCmd(g), tailCmd(g), streamsCmd(g), graphCmd(), viewsCmd(g), keysCmd(g), userCmd(g), tokenCmd(g), policyCmd(g), queryCmd(g), grafanaCmd(g), deployCmd(g), alertsCmd(g), dnsCmd(g), phishCmd(g), caCmd(g))
	return root
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and commit",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "ops %s (commit %s)\n", app.Version, app.CommitOrVCS())
		},
	}
}
