package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func caCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "The forward proxy's CA for TLS interception (docs/forward.md)"}
	var out string
	export := &cobra.Command{
		Use:   "export",
		Short: "Print (or write) the CA certificate clients must trust for TLS interception",
		Example: `  ops ca export > ops-proxy-ca.pem
  ops ca export --out /usr/local/share/ca-certificates/ops-proxy.crt && update-ca-certificates
  curl --cacert ops-proxy-ca.pem -x http://proxy.corp.example:3128 https://example.com/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var buf bytes.Buffer
			if err := g.client().Get(cmd.Context(), "/api/v1/forward/ca.pem", &buf); err != nil {
				return err
			}
			block, _ := pem.Decode(buf.Bytes())
			if block == nil {
				return errors.New("the server sent no PEM certificate")
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil || !cert.IsCA {
				return fmt.Errorf("the server sent a certificate that is not a CA (%v)", err)
			}
			if out == "" {
				_, err = cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %s, valid until %s\n", out, cert.Subject.CommonName, cert.NotAfter.Format("2006-01-02"))
			return nil
		},
	}
	export.Flags().StringVar(&out, "out", "", "write to this file instead of standard output")
	cmd.AddCommand(export)
	return cmd
}
