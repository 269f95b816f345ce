package dnsd

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// TestUpstream is an upstream built as the module builds it, for the
// external tests.
type TestUpstream struct{ u upstream }

func (t TestUpstream) Exchange(m *dns.Msg) (*dns.Msg, error) {
	return t.u.exchange(context.Background(), m)
}

// NewTestUpstream builds one upstream from its URL or stamp.
func NewTestUpstream(raw string) (TestUpstream, error) {
	u, err := newUpstream(raw, upstreamOptions{dial: &dialer{}, timeout: 2 * time.Second})
	return TestUpstream{u}, err
}
