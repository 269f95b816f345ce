package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/opsgraph/ops/internal/api"
	"github.com/opsgraph/ops/internal/client"
	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/event"
)

func publishCmd(g *globals) *cobra.Command {
	var typ, source, subject, data, id, file string
	var batch int
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "Publish one event from flags, or NDJSON events from a file or stdin",
		Example: `  ops publish --type shop.order --data '{"total": 12.5}'
  ops publish -f events.ndjson          # one JSON event per line, sent in batches
  generate-events | ops publish -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := g.client()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if file == "" {
				if typ == "" {
					return errors.New("--type is required (or -f FILE for NDJSON)")
				}
				line := map[string]any{"type": typ}
				if data != "" {
					var d any
					if err := json.Unmarshal([]byte(data), &d); err != nil {
						return fmt.Errorf("--data is not JSON: %w", err)
					}
					line["data"] = d
				}
				if subject != "" {
					line["subject"] = subject
				}
				if id != "" {
					line["id"] = id
				}
				raw, err := complete(line, source, "")
				if err != nil {
					return err
				}
				res, err := publishRetry(ctx, c, []json.RawMessage{raw})
				if err != nil {
					return err
				}
				a := res.Events[0]
				dup := ""
				if a.Duplicate {
					dup = " (duplicate: stored before)"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s seq %d%s\n", a.ID, a.Subject, a.Seq, dup)
				return nil
			}
			return publishFile(ctx, cmd, c, file, source, typ, batch)
		},
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "event type; the bus subject is ev.<type> (with -f: default for lines without one)")
	f.StringVar(&source, "source", "ops-cli", "event source")
	f.StringVar(&subject, "subject", "", "CloudEvents subject attribute")
	f.StringVar(&data, "data", "", "event data as JSON")
	f.StringVar(&id, "id", "", "event id (default: a new UUIDv7)")
	f.StringVarP(&file, "file", "f", "", "NDJSON file of events, - for stdin")
	f.IntVar(&batch, "batch", 100, "events per request with -f")
	return cmd
}

// parseLine reads one NDJSON line into a complete event, or says in plain
// words what is wrong with it.
func parseLine(line, source, typ string) (json.RawMessage, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("not JSON: %v at column %d", se, se.Offset)
		case errors.As(err, &te):
			return nil, fmt.Errorf("want a JSON object (one event), found a JSON %s", te.Value)
		}
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	return complete(m, source, typ)
}

// checkNDJSON reads every line of r as publishFile would, and returns the
// first problem.
func checkNDJSON(r io.Reader, source, typ string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := parseLine(line, source, typ); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	return sc.Err()
}

// complete fills the attributes a line may leave out, so NDJSON of plain
// {"type": ..., "data": ...} objects works. Ids are set here, before the
// first send, so a retried batch is deduplicated by the server.
func complete(m map[string]any, source, typ string) (json.RawMessage, error) {
	if _, ok := m["specversion"]; !ok {
		m["specversion"] = event.SpecVersion
	}
	if _, ok := m["id"]; !ok {
		m["id"] = event.NewID()
	}
	if _, ok := m["source"]; !ok {
		m["source"] = source
	}
	if _, ok := m["type"]; !ok && typ != "" {
		m["type"] = typ
	}
	return json.Marshal(m)
}

func publishRetry(ctx context.Context, c *client.Client, evs []json.RawMessage) (*api.PublishResult, error) {
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		res, err := c.Publish(ctx, evs)
		if err == nil || !client.Retryable(err) || attempt == 6 || ctx.Err() != nil {
			return res, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

var eventsIndex = regexp.MustCompile(`^events\[(\d+)\]`)

func publishFile(ctx context.Context, cmd *cobra.Command, c *client.Client, file, source, typ string, batch int) error {
	if batch < 1 {
		return errors.New("--batch must be at least 1")
	}
	var r io.Reader = cmd.InOrStdin()
	var size int64 = -1
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		// A file is checked whole before anything is sent: a bad line
		// leaves nothing half-published.
		if err := checkNDJSON(f, source, typ); err != nil {
			return fmt.Errorf("%w\nnothing was published (a file is checked whole first)", err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		r = f
	}
	var bar *progressbar.ProgressBar
	if term.IsTerminal(int(os.Stderr.Fd())) {
		bar = progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("publishing"), progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var pending []json.RawMessage
	var firstLine, lineNo int
	var total, stored, dups int
	var pendingBytes int64
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		res, err := publishRetry(ctx, c, pending)
		if err != nil {
			var ae *client.APIError
			if errors.As(err, &ae) {
				if m := eventsIndex.FindStringSubmatch(ae.Body.Field); m != nil {
					i, _ := strconv.Atoi(m[1])
					err = fmt.Errorf("line %d: %w", firstLine+i, err)
				} else if len(pending) == 1 {
					err = fmt.Errorf("line %d: %w", firstLine, err)
				}
			}
			return fmt.Errorf("%w\n%d events published before this batch (%d stored, %d duplicates)", err, total, stored, dups)
		}
		total += res.Count
		stored += res.Stored
		dups += res.Duplicates
		if bar != nil {
			_ = bar.Add64(pendingBytes)
		}
		pending, pendingBytes = pending[:0], 0
		return nil
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			pendingBytes += int64(len(sc.Bytes()) + 1)
			continue
		}
		raw, err := parseLine(line, source, typ)
		if err != nil {
			// Standard input cannot be read twice: what came before the bad
			// line is published, and the message says exactly what that was.
			ferr := flush()
			msg := fmt.Sprintf("line %d: %v\n", lineNo, err)
			if ferr != nil {
				return fmt.Errorf("%s%w", msg, ferr)
			}
			if lineNo > 1 {
				msg += fmt.Sprintf("lines 1 to %d were published (%d events: %d stored, %d duplicates); ", lineNo-1, total, stored, dups)
			}
			return fmt.Errorf("%snothing from line %d on was sent", msg, lineNo)
		}
		if len(pending) == 0 {
			firstLine = lineNo
		}
		pending = append(pending, raw)
		pendingBytes += int64(len(sc.Bytes()) + 1)
		if len(pending) >= batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	if err := flush(); err != nil {
		return err
	}
	if bar != nil {
		_ = bar.Finish()
	}
	fmt.Fprintf(cmd.OutOrStdout(), "published %d events: %d stored, %d duplicates\n", total, stored, dups)
	return nil
}

func tailCmd(g *globals) *cobra.Command {
	var since string
	var count int
	cmd := &cobra.Command{
		Use:   "tail [subject]",
		Short: "Follow events as they are stored (default subject ev.>)",
		Example: `  ops tail 'ev.track.>'
  ops tail --since 10m -o json 'ev.shop.order'
  ops tail --since 1 --count 100      # from the first stored event, stop after 100`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			subject := "ev.>"
			if len(args) == 1 {
				subject = args[0]
			}
			if since != "" {
				if d, err := config.ParseDuration(since); err == nil && !isDigits(since) {
					since = time.Now().Add(-d).UTC().Format(time.RFC3339Nano)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			out := cmd.OutOrStdout()
			n := 0
			enc := json.NewEncoder(out)
			enc.SetEscapeHTML(false)
			err := g.client().Tail(ctx, subject, since, func(s api.StoredEvent) error {
				if count > 0 && n >= count {
					return nil // events that arrive while the tail stops are not printed
				}
				switch g.output {
				case "json":
					_ = enc.Encode(s)
				case "csv":
					fmt.Fprintf(out, "%d,%d,%s,%s,%s\n", s.Seq, s.Index, s.Subject, s.Event.ID, s.Event.Time.Format(time.RFC3339Nano))
				default:
					fmt.Fprintf(out, "%-10s %s  %-24s %s  %s\n", fmt.Sprintf("%d:%d", s.Seq, s.Index),
						s.Event.Time.Format("15:04:05.000"), s.Subject, s.Event.ID, compact(s.Event.Data))
				}
				n++
				if count > 0 && n >= count {
					cancel()
				}
				return nil
			})
			return err
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "start at a sequence (1 = the beginning), an RFC 3339 time or a duration ago (10m); default: new events only")
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many events")
	return cmd
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func compact(b []byte) string {
	s := string(b)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func streamsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "streams",
		Short: "List the bus streams with their sizes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Streams []map[string]any `json:"streams"`
			}
			if err := g.client().Get(cmd.Context(), "/api/v1/streams", &res); err != nil {
				return err
			}
			rows := [][]string{{"NAME", "SUBJECTS", "MESSAGES", "BYTES", "FIRST", "LAST", "CONSUMERS", "MAX_AGE"}}
			if g.output == "csv" {
				rows[0] = []string{"name", "subjects", "messages", "bytes", "first_seq", "last_seq", "consumers", "max_age"}
			}
			for _, s := range res.Streams {
				subj := []string{}
				if l, ok := s["subjects"].([]any); ok {
					for _, x := range l {
						subj = append(subj, fmt.Sprint(x))
					}
				}
				rows = append(rows, []string{fmt.Sprint(s["name"]), strings.Join(subj, " "), num(s["messages"]), num(s["bytes"]),
					num(s["first_seq"]), num(s["last_seq"]), num(s["consumers"]), fmt.Sprint(s["max_age"])})
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	}
}

func num(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}
