package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsgraph/ops/internal/client"
	"github.com/opsgraph/ops/internal/config"
)

func queryCmd(g *globals) *cobra.Command {
	var isRange bool
	var at, start, end, step string
	cmd := &cobra.Command{
		Use:   "query <promql>",
		Short: "Run a PromQL query against Ops's time series (instant, or --range)",
		Long: `Runs a PromQL query on Ops's Prometheus API (/prometheus/api/v1/query, or query_range with
--range, --start, --end or --step) and prints one row per series and sample: its labels, the
time and the value. -o json prints the API's data as it is; -o csv has a column per label.

Times are RFC 3339, Unix seconds, now, or relative to now: -1h, now-30m. A range defaults to
the last hour; the step to about 60 points over the range.`,
		Example: `  ops query 'sum by (view) (ops_views_lag)'
  ops query 'topk(5, ops_view_views{view="hourly_pages"})' --time 2026-11-27T13:00:00Z
  ops query 'rate(ops_bus_events_published_total[5m])' --range --start -6h --step 5m -o csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			now := time.Now()
			form := url.Values{"query": {args[0]}}
			endpoint := "query"
			if isRange || start != "" || end != "" || step != "" {
				if at != "" {
					return errors.New("--time is for instant queries; a range query takes --start and --end")
				}
				endpoint = "query_range"
				s, err := parseQueryTime(orDefault(start, "-1h"), now)
				if err != nil {
					return fmt.Errorf("--start: %w", err)
				}
				e, err := parseQueryTime(orDefault(end, "now"), now)
				if err != nil {
					return fmt.Errorf("--end: %w", err)
				}
				if e.Before(s) {
					return fmt.Errorf("--end (%s) is before --start (%s)", e.Format(time.RFC3339), s.Format(time.RFC3339))
				}
				st := defaultStep(e.Sub(s))
				if step != "" {
					if st, err = parseStep(step); err != nil {
						return fmt.Errorf("--step: %w", err)
					}
				}
				form.Set("start", apiTime(s))
				form.Set("end", apiTime(e))
				form.Set("step", strconv.FormatFloat(st.Seconds(), 'f', -1, 64))
			} else if at != "" {
				t, err := parseQueryTime(at, now)
				if err != nil {
					return fmt.Errorf("--time: %w", err)
				}
				form.Set("time", apiTime(t))
			}
			c := g.client()
			// The server bounds a query by tsdb.query.timeout (2m by
			// default); the client's usual 60s would cut that short.
			c.HTTP.Timeout = 5 * time.Minute
			res, err := promQuery(cmd.Context(), c, endpoint, form)
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			for _, i := range res.Infos {
				fmt.Fprintln(cmd.ErrOrStderr(), "info:", i)
			}
			return printQuery(cmd.OutOrStdout(), cmd.ErrOrStderr(), g.output, res.Data)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&isRange, "range", false, "a range query (implied by --start, --end or --step)")
	f.StringVar(&at, "time", "", "evaluation time of an instant query (default: now)")
	f.StringVar(&start, "start", "", "range start (default: -1h)")
	f.StringVar(&end, "end", "", "range end (default: now)")
	f.StringVar(&step, "step", "", "range step: a duration (30s, 5m) or seconds (default: about 60 points)")
	return cmd
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// parseQueryTime reads RFC 3339, Unix seconds (with a fraction), now, and
// times relative to now: -1h, now-1h, now+5m.
func parseQueryTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	rel := ""
	sign := time.Duration(-1)
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "now-"):
		rel = s[4:]
	case strings.HasPrefix(s, "now+"):
		rel, sign = s[4:], 1
	case strings.HasPrefix(s, "-") && !isNumber(s):
		rel = s[1:]
	}
	if rel != "" {
		d, err := config.ParseDuration(rel)
		if err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("%q: want a duration after now- or -, e.g. -1h", s)
		}
		return now.Add(sign * d), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e12 {
			return time.Time{}, fmt.Errorf("%q is not a Unix time", s)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-11-27T13:00:00Z), Unix seconds, now, or a time ago like -1h", s)
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// parseStep reads a duration (15s, 1m30s, 1d) or seconds (30, 0.5).
func parseStep(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if !(f > 0) || f > 1e9 {
			return 0, fmt.Errorf("%q: want a positive number of seconds", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := config.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration like 30s or 5m", s)
	}
	return d, nil
}

// defaultStep gives about 60 points: enough to see a shape, few enough to
// read as a table. Steps are round so that points fall on round times.
func defaultStep(r time.Duration) time.Duration {
	want := r / 60
	for _, s := range []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour,
		6 * time.Hour, 12 * time.Hour, 24 * time.Hour} {
		if s >= want {
			return s
		}
	}
	return want.Round(24 * time.Hour)
}

// apiTime writes a time as the API takes it: Unix seconds with milliseconds.
func apiTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// promResponse is the Prometheus API's envelope.
type promResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
	Infos     []string        `json:"infos"`
}

// promError is an error answer of the Prometheus API.
type promError struct {
	Status    int
	ErrorType string
	Message   string
}

func (e *promError) Error() string {
	if e.ErrorType == "" {
		return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
	}
	return fmt.Sprintf("query failed: %s: %s", e.ErrorType, e.Message)
}

// promQuery POSTs the form (a query may be longer than a URL should be)
// and returns the envelope, or the API's errorType and error as an error.
func promQuery(ctx context.Context, c *client.Client, endpoint string, form url.Values) (*promResponse, error) {
	u := c.Base + "/prometheus/api/v1/" + endpoint
	req, err := http.NewRequestWithContext(ctx, "POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", u, err)
	}
	var res promResponse
	if jerr := json.Unmarshal(b, &res); jerr != nil || (res.Status == "" && res.Error == "") {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return nil, &promError{Status: resp.StatusCode, Message: msg}
	}
	if resp.StatusCode/100 != 2 || res.Status != "success" {
		// Ops's own errors (401, 403) are {"error": ...} without errorType.
		return nil, &promError{Status: resp.StatusCode, ErrorType: res.ErrorType, Message: res.Error}
	}
	return &res, nil
}

// samplePair is [time, "value"]; for a native histogram the value is an
// object, shown by its count and sum.
type samplePair struct {
	T float64
	V string
}

func (p *samplePair) UnmarshalJSON(b []byte) error {
	var a [2]json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if err := json.Unmarshal(a[0], &p.T); err != nil {
		return err
	}
	if json.Unmarshal(a[1], &p.V) == nil {
		return nil
	}
	var h struct {
		Count string `json:"count"`
		Sum   string `json:"sum"`
	}
	if err := json.Unmarshal(a[1], &h); err != nil {
		return err
	}
	p.V = "histogram(count=" + h.Count + " sum=" + h.Sum + ")"
	return nil
}

type promSeries struct {
	Metric     map[string]string `json:"metric"`
	Value      *samplePair       `json:"value"`
	Histogram  *samplePair       `json:"histogram"`
	Values     []samplePair      `json:"values"`
	Histograms []samplePair      `json:"histograms"`
}

func (s promSeries) points() []samplePair {
	var ps []samplePair
	if s.Value != nil {
		ps = append(ps, *s.Value)
	}
	if s.Histogram != nil {
		ps = append(ps, *s.Histogram)
	}
	ps = append(ps, s.Values...)
	if len(s.Histograms) > 0 {
		ps = append(ps, s.Histograms...)
		slices.SortStableFunc(ps, func(a, b samplePair) int { return cmpFloat(a.T, b.T) })
	}
	return ps
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// printQuery writes the data of a query answer: as it is for json, else a
// row per sample with a column per label name.
func printQuery(w, errw io.Writer, format string, data json.RawMessage) error {
	if format == "json" {
		var b bytes.Buffer
		if err := json.Indent(&b, data, "", "  "); err != nil {
			return err
		}
		b.WriteByte('\n')
		_, err := w.Write(b.Bytes())
		return err
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return fmt.Errorf("decode query data: %w", err)
	}
	header := func(names ...string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			switch {
			case format == "csv":
				out[i] = n
			case n == "__name__":
				out[i] = "METRIC"
			default:
				out[i] = strings.ToUpper(n)
			}
		}
		return out
	}
	var rows [][]string
	switch d.ResultType {
	case "scalar", "string":
		var p samplePair
		if err := json.Unmarshal(d.Result, &p); err != nil {
			return fmt.Errorf("decode %s: %w", d.ResultType, err)
		}
		rows = [][]string{header("time", "value"), {promTime(p.T), p.V}}
	case "vector", "matrix":
		var ss []promSeries
		if err := json.Unmarshal(d.Result, &ss); err != nil {
			return fmt.Errorf("decode %s: %w", d.ResultType, err)
		}
		names := labelNames(ss)
		rows = [][]string{header(append(slices.Clone(names), "time", "value")...)}
		for _, s := range ss {
			for _, p := range s.points() {
				row := make([]string, 0, len(names)+2)
				for _, n := range names {
					row = append(row, s.Metric[n])
				}
				rows = append(rows, append(row, promTime(p.T), p.V))
			}
		}
		if len(ss) == 0 && format != "csv" {
			fmt.Fprintln(errw, "no series")
		}
	default:
		return errors.New("unknown resultType " + strconv.Quote(d.ResultType))
	}
	return writeTable(w, format, rows, nil)
}

// labelNames are every label name of the series, __name__ first.
func labelNames(ss []promSeries) []string {
	seen := map[string]bool{}
	var names []string
	for _, s := range ss {
		for n := range s.Metric {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "__name__":
			return -1
		case b == "__name__":
			return 1
		}
		return strings.Compare(a, b)
	})
	return names
}

// promTime writes an API timestamp (float seconds) as RFC 3339 in UTC.
func promTime(t float64) string {
	return time.UnixMilli(int64(math.Round(t * 1000))).UTC().Format(time.RFC3339Nano)
}
