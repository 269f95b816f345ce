//go:build tools

// Package tools pins AdGuard's dnsproxy, a DNS over QUIC client and
// server that Debian does not carry (its kdig is built without QUIC):
// testutil.DNSProxy builds it from this module for the DoQ tests.
package tools

import _ "github.com/AdguardTeam/dnsproxy"
