package main

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsgraph/ops/internal/dnsd"
)

func dnsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "dns", Short: "The resolver (docs/dns.md)"}
	cmd.AddCommand(dnsCheckCmd(g), dnsTopCmd(g))
	return cmd
}

func dnsCheckCmd(g *globals) *cobra.Command {
	var o dnsd.CheckOptions
	var ca string
	var record bool
	cmd := &cobra.Command{
		Use:   "check <resolver>",
		Short: "Check a resolver from here: which of plain DNS, DoT and DoH answer, their certificates and expiry, latency, DNSSEC validation, blocking",
		Example: `  ops dns check 1.1.1.1                                  # udp://:53, tls://:853 and https://.../dns-query
  ops dns check https://dns.google/dns-query --dnssec-name isc.org
  ops dns check tls://127.0.0.1:853 --ca /etc/ops/ca.pem --server-name ops.example.com --blocked ads.example
  ops dns check 1.1.1.1 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ca != "" {
				pem, err := os.ReadFile(ca)
				if err != nil {
					return fmt.Errorf("--ca: %w", err)
				}
				o.Roots = x509.NewCertPool()
				if !o.Roots.AppendCertsFromPEM(pem) {
					return fmt.Errorf("--ca: no PEM certificate in %s", ca)
				}
			}
			rep, err := dnsd.Check(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				_ = enc.Encode(rep)
			} else {
				printCheck(cmd, rep)
			}
			if record {
				if err := recordCheck(cmd, g, rep); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "not recorded as an event (%v); --record=false leaves it out\n", err)
				}
			}
			if !anyOK(rep) {
				cmd.SilenceUsage = true
				return errors.New("no transport answered")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "example.com", "the name asked on every transport")
	f.StringVar(&o.SignedName, "dnssec-name", "", "a DNSSEC-signed name: AD set on its answer means the resolver validates")
	f.StringVar(&o.Blocked, "blocked", "", "a name the resolver should block (NXDOMAIN, REFUSED or 0.0.0.0 count as blocked)")
	f.StringVar(&ca, "ca", "", "CA certificates (PEM) to verify the resolver's certificate with, instead of the system's")
	f.StringVar(&o.ServerName, "server-name", "", "the name the certificate must be for (default: the target's host)")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Second, "per transport")
	f.BoolVar(&record, "record", true, "store the result on the Ops server as an ev.dns.check event (needs dns:write)")
	return cmd
}

func dnsTopCmd(g *globals) *cobra.Command {
	var since string
	var limit int
	cmd := &cobra.Command{
		Use:   "top",
		Short: "The resolver's top domains, blocked names (with their rule) and clients (GET /api/v1/dns/stats)",
		Example: `  ops dns top
  ops dns top --since 24h --limit 50 -o csv > dns-top.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"since": {since}, "limit": {strconv.Itoa(limit)}}
			var st dnsd.Stats
			if err := g.client().Get(cmd.Context(), "/api/v1/dns/stats?"+q.Encode(), &st); err != nil {
				return err
			}
			rows := [][]string{{"LIST", "KEY", "QUERIES", "MAX_ERROR", "RULE"}}
			rows = append(rows, []string{"total", "queries", strconv.FormatUint(st.Queries, 10), "0", ""},
				[]string{"total", "blocked", strconv.FormatUint(st.Blocked, 10), "0", ""},
				[]string{"total", "cached", strconv.FormatUint(st.Cached, 10), "0", ""})
			for _, l := range []struct {
				name  string
				items []dnsd.StatItem
			}{{"domain", st.TopDomains}, {"blocked", st.TopBlocked}, {"client", st.TopClients}} {
				for _, it := range l.items {
					rows = append(rows, []string{l.name, it.Key, strconv.FormatUint(it.Count, 10), strconv.FormatUint(it.MaxError, 10), it.Rule})
				}
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, st)
		},
	}
	cmd.Flags().StringVar(&since, "since", "1h", "how far back, up to 24h")
	cmd.Flags().IntVar(&limit, "limit", 20, "rows a list")
	return cmd
}

func anyOK(rep *dnsd.CheckReport) bool {
	for _, t := range rep.Transports {
		if t.OK {
			return true
		}
	}
	return false
}

func printCheck(cmd *cobra.Command, rep *dnsd.CheckReport) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "%s, asking %s:\n", rep.Target, rep.Name)
	for _, t := range rep.Transports {
		if !t.OK {
			fmt.Fprintf(w, "  %-40s no answer: %s\n", t.URL, t.Error)
			continue
		}
		fmt.Fprintf(w, "  %-40s answers in %.1f ms (%s): %s\n", t.URL, t.LatencyMS, t.Protocol, t.Answer[0])
		for i, c := range t.Chain {
			left := time.Until(c.NotAfter).Round(time.Hour)
			fmt.Fprintf(w, "      cert %d: %s, issued by %s, expires %s (in %s)\n", i, c.Subject, c.Issuer, c.NotAfter.UTC().Format("2006-01-02"), left)
		}
		if len(t.Chain) > 0 {
			if t.Verified {
				fmt.Fprintln(w, "      chain verified")
			} else {
				fmt.Fprintf(w, "      chain NOT verified: %s\n", t.VerifyErr)
			}
		}
	}
	if rep.DNSSEC != "" {
		fmt.Fprintf(w, "  DNSSEC: %s\n", rep.DNSSEC)
	}
	if rep.BlockedOK != nil {
		verdict := "NOT blocked"
		if *rep.BlockedOK {
			verdict = "blocked"
		}
		fmt.Fprintf(w, "  blocking: %s (%s)\n", verdict, rep.Blocked)
	}
	if rep.Encrypted {
		fmt.Fprintln(w, "  encrypted: yes (DoT or DoH with a verified certificate)")
	} else {
		fmt.Fprintln(w, "  encrypted: no")
	}
}

// recordCheck stores the report as an ev.dns.check event.
func recordCheck(cmd *cobra.Command, g *globals, rep *dnsd.CheckReport) error {
	raw, err := complete(map[string]any{"type": "dns.check", "data": rep}, "ops-cli", "")
	if err != nil {
		return err
	}
	_, err = publishRetry(cmd.Context(), g.client(), []json.RawMessage{raw})
	return err
}
