package main

import (
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

func keysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage write keys for the tracking API, OTLP and CoAP"}
	var name string
	create := &cobra.Command{
		Use:     "create",
		Short:   "Create a write key; it is shown once",
		Example: "  ops keys create --name 'mobile app'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Key  string
				Info struct{ ID string }
			}
			if err := g.client().Send(cmd.Context(), "POST", "/api/v1/keys", map[string]string{"name": name}, &res); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Key)
			fmt.Fprintf(cmd.ErrOrStderr(), "id %s; this is the only time the key is shown\n", res.Info.ID)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the key is for")
	_ = create.MarkFlagRequired("name")
	cmd.AddCommand(create, &cobra.Command{
		Use:   "ls",
		Short: "List write keys created through the API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Keys []struct {
					ID, Name, Prefix string
					Created          time.Time
				}
			}
			if err := g.client().Get(cmd.Context(), "/api/v1/keys", &res); err != nil {
				return err
			}
			rows := [][]string{{"ID", "NAME", "PREFIX", "CREATED"}}
			for _, k := range res.Keys {
				rows = append(rows, []string{k.ID, k.Name, k.Prefix + "...", k.Created.Format(time.RFC3339)})
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	}, &cobra.Command{
		Use:   "rm <id>",
		Short: "Delete a write key; it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.client().Send(cmd.Context(), "DELETE", "/api/v1/keys/"+url.PathEscape(args[0]), nil, nil)
		},
	})
	return cmd
}
