package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/opsgraph/ops/internal/identity"
)

// readPassword reads a password from the terminal without echo (asking
// twice), or one line from stdin when it is not a terminal (scripts).
func readPassword(cmd *cobra.Command, prompt string) (string, error) {
	if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), prompt)
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		fmt.Fprint(cmd.ErrOrStderr(), "again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords differ")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func userCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage local users (stored in the bus; config-file users are read-only)"}
	var email string
	var groups, roles []string
	add := &cobra.Command{
		Use:     "add <name>",
		Short:   "Add a local user; the password is read from the terminal or stdin",
		Example: "  ops user add alice --role editor --email alice@example.com\n  echo 's3cret-pass' | ops user add ci --role viewer",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(cmd, "password for "+args[0]+": ")
			if err != nil {
				return err
			}
			body := map[string]any{"name": args[0], "password": pw, "email": email, "groups": groups, "roles": roles}
			if err := g.client().Send(cmd.Context(), "POST", "/api/v1/users", body, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "user %s added\n", args[0])
			return nil
		},
	}
	add.Flags().StringVar(&email, "email", "", "e-mail address")
	add.Flags().StringSliceVar(&groups, "group", nil, "groups (repeat or comma-separate)")
	add.Flags().StringSliceVar(&roles, "role", nil, "roles: admin, editor, viewer or a custom one (repeat or comma-separate)")
	passwd := &cobra.Command{
		Use:   "passwd <name>",
		Short: "Set a local user's password",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(cmd, "new password for "+args[0]+": ")
			if err != nil {
				return err
			}
			return g.client().Send(cmd.Context(), "PUT", "/api/v1/users/"+url.PathEscape(args[0]), map[string]any{"password": pw}, nil)
		},
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List local users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Users []struct {
					Name, Email   string
					Groups, Roles []string
					Created       time.Time
				}
			}
			if err := g.client().Get(cmd.Context(), "/api/v1/users", &res); err != nil {
				return err
			}
			rows := [][]string{{"NAME", "EMAIL", "ROLES", "GROUPS", "SOURCE"}}
			for _, u := range res.Users {
				src := "api"
				if u.Created.IsZero() {
					src = "config"
				}
				rows = append(rows, []string{u.Name, u.Email, strings.Join(u.Roles, ","), strings.Join(u.Groups, ","), src})
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	}
	rm := &cobra.Command{
		Use:   "rm <name>",
		Short: "Remove a local user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.client().Send(cmd.Context(), "DELETE", "/api/v1/users/"+url.PathEscape(args[0]), nil, nil)
		},
	}
	hash := &cobra.Command{
		Use:     "hash",
		Short:   "Print a bcrypt hash of a password, for identity.users in ops.yaml (no server needed)",
		Example: "  ops user hash   # then paste into identity.users[].password_hash",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd, "password: ")
			if err != nil {
				return err
			}
			h, err := identity.HashPassword(pw)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	}
	cmd.AddCommand(add, passwd, ls, rm, hash)
	return cmd
}

func tokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	var name, role, expires string
	create := &cobra.Command{
		Use:     "create",
		Short:   "Create an API token; it is shown once",
		Example: "  ops token create --name grafana --role viewer --expires 90d\n  export OPS_TOKEN=$(ops token create --name ci --role editor)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Token, ID string
				Expires   time.Time
			}
			if err := g.client().Send(cmd.Context(), "POST", "/api/v1/tokens", map[string]string{"name": name, "role": role, "expires": expires}, &res); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Token)
			exp := "never expires"
			if !res.Expires.IsZero() {
				exp = "expires " + res.Expires.Format(time.RFC3339)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "id %s, %s; this is the only time the token is shown\n", res.ID, exp)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the token is for")
	create.Flags().StringVar(&role, "role", "viewer", "role: admin, editor, viewer or a custom one")
	create.Flags().StringVar(&expires, "expires", "", "lifetime such as 12h, 30d, 1w; empty never expires")
	_ = create.MarkFlagRequired("name")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List API tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct{ Tokens []identity.Token }
			if err := g.client().Get(cmd.Context(), "/api/v1/tokens", &res); err != nil {
				return err
			}
			rows := [][]string{{"ID", "NAME", "ROLE", "CREATED", "BY", "EXPIRES"}}
			for _, t := range res.Tokens {
				exp := "never"
				if !t.Expires.IsZero() {
					exp = t.Expires.Format(time.RFC3339)
				}
				rows = append(rows, []string{t.ID, t.Name, t.Role, t.Created.Format(time.RFC3339), t.CreatedBy, exp})
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	}
	rm := &cobra.Command{
		Use:   "rm <id>",
		Short: "Revoke a token; it is refused from the next request on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.client().Send(cmd.Context(), "DELETE", "/api/v1/tokens/"+url.PathEscape(args[0]), nil, nil)
		},
	}
	cmd.AddCommand(create, ls, rm)
	return cmd
}

func policyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Show and change the POLICY bucket (locked users, blocked addresses, paths and domains, rates, maintenance)"}
	var dur, reason, action string
	var rate float64
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List policy entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Entries []struct {
					Kind, Subject, Action, Reason, By string
					Until                             time.Time
					Active                            bool
				}
			}
			if err := g.client().Get(cmd.Context(), "/api/v1/policy", &res); err != nil {
				return err
			}
			rows := [][]string{{"KIND", "SUBJECT", "ACTION", "ACTIVE", "UNTIL", "REASON", "BY"}}
			for _, e := range res.Entries {
				until := "cleared"
				if !e.Until.IsZero() {
					until = e.Until.Format(time.RFC3339)
				}
				rows = append(rows, []string{e.Kind, e.Subject, e.Action, fmt.Sprint(e.Active), until, e.Reason, e.By})
			}
			return writeTable(cmd.OutOrStdout(), g.output, rows, res)
		},
	}
	set := &cobra.Command{
		Use:   "set <user|ip|path|maintenance|domain|browse> <subject>",
		Short: "Lock a user, block an address, a path or a domain (the resolver), limit an address's rate, put a proxy route into maintenance, or allow or block a site for the forward proxy",
		Example: `  ops policy set user alice --for 1h --reason 'suspicious activity'
  ops policy set ip 203.0.113.7
  ops policy set ip 203.0.113.7 --action rate --rate 2
  ops policy set path /wp-login.php
  ops policy set maintenance site --reason 'database upgrade until 14:00'   # or * for every route
  ops policy set domain phish.example.net --reason 'reported phishing'      # the dns module blocks it and its subdomains
  ops policy set browse staff:example.com/news --action allow --reason 'reviewed'  # the forward proxy lets the staff group through`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"for": dur, "reason": reason, "action": action}
			if rate > 0 {
				body["rate"] = rate
			}
			return g.client().Send(cmd.Context(), "PUT", policyPath(args[0], args[1]), body, nil)
		},
	}
	set.Flags().StringVar(&dur, "for", "", "how long, such as 15m or 1d; empty lasts until cleared")
	set.Flags().StringVar(&reason, "reason", "", "why, shown to admins and in refusals")
	set.Flags().StringVar(&action, "action", "", "lock (user), block (ip, path, domain, browse), rate (ip), on (maintenance), allow (browse); default by kind")
	set.Flags().Float64Var(&rate, "rate", 0, "requests per second, with --action rate")
	clr := &cobra.Command{
		Use:   "clear <user|ip|path|maintenance|domain|browse> <subject>",
		Short: "Remove a policy entry",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.client().Send(cmd.Context(), "DELETE", policyPath(args[0], args[1]), nil, nil)
		},
	}
	cmd.AddCommand(ls, set, clr)
	return cmd
}

// policyPath is the API path of a policy entry; a path subject keeps its
// slashes (the route takes the rest of the URL).
func policyPath(kind, subject string) string {
	if kind == "path" {
		return "/api/v1/policy/path/" + strings.TrimPrefix(subject, "/")
	}
	return "/api/v1/policy/" + url.PathEscape(kind) + "/" + url.PathEscape(subject)
}
