package dnsd

import (
	"context"
	"crypto/x509"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// TestUpstream is an upstream built as the module builds it, for the
// external tests.
type TestUpstream struct{ u upstream }

func (t TestUpstream) Exchange(m *dns.Msg) (*dns.Msg, error) {
	return t.u.exchange(context.Background(), m)
}

// NewTestUpstreamNamed is NewTestUpstream with dns.bootstrap entries
// (host=ip).
func NewTestUpstreamNamed(raw string, roots *x509.CertPool, boot ...string) (TestUpstream, error) {
	d := &dialer{boot: map[string]string{}}
	for _, b := range boot {
		h, ip, _ := strings.Cut(b, "=")
		d.boot[h] = ip
	}
	u, err := newUpstream(raw, upstreamOptions{dial: d, timeout: 2 * time.Second, roots: roots})
	return TestUpstream{u}, err
}

// NewTestUpstream builds one upstream from its URL or stamp; roots: the
// CAs it trusts (nil: the system's).
func NewTestUpstream(raw string, roots *x509.CertPool) (TestUpstream, error) {
	u, err := newUpstream(raw, upstreamOptions{dial: &dialer{}, timeout: 2 * time.Second, roots: roots})
	return TestUpstream{u}, err
}
