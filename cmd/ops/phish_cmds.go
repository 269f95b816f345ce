package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/opsgraph/ops/internal/phish"
)

func phishCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "phish", Short: "Phishing protection (docs/forward.md)"}
	check := &cobra.Command{
		Use:   "check <url|domain>",
		Short: "Explain the verdict on a URL or a domain: feeds, lookalikes of protected domains, and the score",
		Example: `  ops phish check xn--pypal-4ve.com
  ops phish check https://login.paypa1-secure.example/signin
  ops phish check paypal.com.evil.example -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v phish.Verdict
			if err := g.client().Get(cmd.Context(), "/api/v1/phish/check?target="+url.QueryEscape(args[0]), &v); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			fmt.Fprintf(out, "%s: %s (score %d)\n", v.Host, v.Action, v.Score)
			for _, r := range v.Reasons {
				fmt.Fprintf(out, "  %4s  %-12s %s\n", "+"+strconv.Itoa(r.Score), r.Kind, r.Detail)
			}
			if len(v.Reasons) == 0 {
				fmt.Fprintln(out, "  nothing found: not in a feed, not like a protected domain")
			}
			return nil
		},
	}
	feeds := &cobra.Command{
		Use:   "feeds",
		Short: "List the phishing feeds, how many entries each holds and when it last loaded",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var res struct {
				Feeds []phish.FeedStatus `json:"feeds"`
			}
			if err := g.client().Get(cmd.Context(), "/api/v1/phish/feeds", &res); err != nil {
				return err
			}
			rows := [][]string{{"SOURCE", "URLS", "DOMAINS", "LOADED", "ERROR"}}
			for _, f := range res.Feeds {
				loaded := ""
				if !f.Loaded.IsZero() {
					loaded = f.Loaded.UTC().Format("2006-01-02 15:04:05Z")
				}
				rows = append(rows, []string{f.Source, strconv.Itoa(f.URLs), strconv.Itoa(f.Domains), loaded, f.Error})
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	}
	cmd.AddCommand(check, feeds)
	return cmd
}
