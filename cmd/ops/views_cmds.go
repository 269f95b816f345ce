package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/opsgraph/ops/internal/client"
	"github.com/opsgraph/ops/internal/views"
)

func viewsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "views", Short: "List, query and export materialized views"}
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List views with row counts and lag",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Views []struct {
					Name                        string
					Key, Measures               []string
					Window                      string
					Rows, Lag, In, Late, Errors uint64
					LastError                   string `json:"last_error"`
				}
			}
			if err := g.client().Get(cmd.Context(), "/api/v1/views", &res); err != nil {
				return err
			}
			rows := [][]string{{"NAME", "KEY", "WINDOW", "ROWS", "LAG", "EVENTS", "LATE", "ERRORS"}}
			for _, v := range res.Views {
				rows = append(rows, []string{v.Name, strings.Join(v.Key, ","), v.Window, u(v.Rows), u(v.Lag), u(v.In), u(v.Late), u(v.Errors)})
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	})
	var keys []string
	var from, to, sortBy string
	var limit int
	get := &cobra.Command{
		Use:     "get <view>",
		Short:   "Query a view's rows",
		Example: "  ops views get page_counts --key path=/pricing --sort -views --limit 20",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			for _, kv := range keys {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--key wants field=value, got %q", kv)
				}
				q.Set("key."+k, v)
			}
			for k, v := range map[string]string{"from": from, "to": to, "sort": sortBy} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if g.output == "csv" {
				q.Set("format", "csv")
				return g.client().Get(cmd.Context(), "/api/v1/views/"+url.PathEscape(args[0])+"?"+q.Encode(), cmd.OutOrStdout())
			}
			var res struct {
				Rows []struct {
					Key    map[string]any
					Window *time.Time
					Values map[string]any
				}
				Total  int
				Cursor string
			}
			if err := g.client().Get(cmd.Context(), "/api/v1/views/"+url.PathEscape(args[0])+"?"+q.Encode(), &res); err != nil {
				return err
			}
			if g.output == "json" {
				return writeTable(cmd.OutOrStdout(), "json", nil, res)
			}
			var keyCols, valCols []string
			if len(res.Rows) > 0 {
				keyCols, valCols = sortedKeys(res.Rows[0].Key), sortedKeys(res.Rows[0].Values)
			}
			header := []string{}
			windowed := len(res.Rows) > 0 && res.Rows[0].Window != nil
			if windowed {
				header = append(header, "WINDOW")
			}
			for _, k := range append(append([]string{}, keyCols...), valCols...) {
				header = append(header, strings.ToUpper(k))
			}
			rows := [][]string{header}
			for _, r := range res.Rows {
				var rec []string
				if windowed {
					rec = append(rec, r.Window.Format(time.RFC3339))
				}
				for _, k := range keyCols {
					rec = append(rec, views.Render(r.Key[k]))
				}
				for _, k := range valCols {
					rec = append(rec, views.Render(r.Values[k]))
				}
				rows = append(rows, rec)
			}
			if err := writeTable(cmd.OutOrStdout(), "table", rows, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d rows\n", len(res.Rows), res.Total)
			return nil
		},
	}
	get.Flags().StringArrayVar(&keys, "key", nil, "key field=value (repeatable)")
	get.Flags().StringVar(&from, "from", "", "windows starting at or after (RFC 3339)")
	get.Flags().StringVar(&to, "to", "", "windows starting before (RFC 3339)")
	get.Flags().StringVar(&sortBy, "sort", "", "key field or measure; -name for descending")
	get.Flags().IntVar(&limit, "limit", 100, "rows")
	cmd.AddCommand(get)

	var outFile string
	export := &cobra.Command{
		Use:     "export <view>",
		Short:   "Export every row of a view as CSV (streamed)",
		Example: "  ops views export page_counts -f page_counts.csv",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var w io.Writer = cmd.OutOrStdout()
			var bw *bufio.Writer
			if outFile != "" && outFile != "-" {
				f, err := os.Create(outFile)
				if err != nil {
					return err
				}
				defer f.Close()
				bw = bufio.NewWriter(f)
				w = bw
			}
			var bar *progressbar.ProgressBar
			if term.IsTerminal(int(os.Stderr.Fd())) {
				bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowBytes(true),
					progressbar.OptionSetDescription("exporting "+args[0]), progressbar.OptionClearOnFinish())
				w = io.MultiWriter(w, bar)
			}
			cw := &countWriter{w: w}
			c := g.client()
			c.HTTP.Timeout = 0 // an export may take a while
			if err := c.Get(cmd.Context(), "/api/v1/views/"+url.PathEscape(args[0])+"?format=csv", cw); err != nil {
				return err
			}
			if bw != nil {
				if err := bw.Flush(); err != nil {
					return fmt.Errorf("write %s: %w", outFile, err)
				}
			}
			if bar != nil {
				_ = bar.Finish()
			}
			if outFile != "" && outFile != "-" {
				fmt.Fprintf(cmd.ErrOrStderr(), "exported %d rows to %s\n", max(cw.lines-1, 0), outFile)
			}
			return nil
		},
	}
	export.Flags().StringVarP(&outFile, "file", "f", "", "write to this file instead of stdout")
	cmd.AddCommand(export)
	cmd.AddCommand(rebuildCmd(g))
	return cmd
}

type rebuildStatus struct {
	State         string
	Generation    int
	MessagesDone  uint64  `json:"messages_done"`
	MessagesTotal uint64  `json:"messages_total"`
	Events        uint64  `json:"events"`
	Rate          float64 `json:"events_per_second"`
	ETA           float64 `json:"eta_seconds"`
	Error         string
}

func rebuildCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rebuild <view>",
		Short: "Rebuild a view from the first stored event, with progress; queries use the old state until it is done",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			path := "/api/v1/views/" + url.PathEscape(args[0]) + "/rebuild"
			var st rebuildStatus
			if err := c.Post(cmd.Context(), path, &st); err != nil {
				var ae *client.APIError
				if !errors.As(err, &ae) || ae.Status != 409 {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "a rebuild is already running; following it")
			}
			var bar *progressbar.ProgressBar
			if term.IsTerminal(int(os.Stderr.Fd())) {
				bar = progressbar.NewOptions64(int64(max(st.MessagesTotal, 1)), progressbar.OptionSetWriter(os.Stderr),
					progressbar.OptionSetDescription("rebuilding "+args[0]), progressbar.OptionShowCount(),
					progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
			}
			for {
				if err := c.Get(cmd.Context(), path, &st); err != nil {
					return err
				}
				if bar != nil {
					bar.ChangeMax64(int64(max(st.MessagesTotal, 1)))
					_ = bar.Set64(int64(st.MessagesDone))
					bar.Describe(fmt.Sprintf("rebuilding %s: %d events, %.0f/s", args[0], st.Events, st.Rate))
				}
				switch st.State {
				case "done":
					if bar != nil {
						_ = bar.Finish()
					}
					fmt.Fprintf(cmd.OutOrStdout(), "rebuilt %s: %d events at %.0f events/s (generation %d)\n", args[0], st.Events, st.Rate, st.Generation)
					return nil
				case "failed":
					return fmt.Errorf("rebuild of %s failed: %s", args[0], st.Error)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
}

type countWriter struct {
	w     io.Writer
	lines int
}

func (c *countWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			c.lines++
		}
	}
	return c.w.Write(p)
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }
