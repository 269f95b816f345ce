package dnsd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Checking a resolver (ops dns check): which transports it answers on,
// the certificate each encrypted one shows, whether it validates DNSSEC
// (the AD bit on a signed name), how fast it answers, and whether it
// blocks a name that should be blocked.

// CheckOptions say what to ask.
type CheckOptions struct {
	Name       string         // resolved on every transport; default example.com
	SignedName string         // a DNSSEC-signed name; AD set on its answer means the resolver validates
	Blocked    string         // a name the resolver should block; empty: not checked
	Roots      *x509.CertPool // nil: the system's
	ServerName string         // the name certificates are checked for; default the target's host
	Timeout    time.Duration
}

// TransportResult is one transport's outcome.
type TransportResult struct {
	URL       string   `json:"url"`
	OK        bool     `json:"ok"`
	Error     string   `json:"error,omitempty"`
	LatencyMS float64  `json:"latency_ms,omitempty"`
	Answer    []string `json:"answer,omitempty"`
	Protocol  string   `json:"protocol,omitempty"` // h2, http/1.1, tls1.3, ...
	Chain     []Cert   `json:"chain,omitempty"`
	Verified  bool     `json:"verified,omitempty"`
	VerifyErr string   `json:"verify_error,omitempty"`
}

// Cert is one certificate of a chain.
type Cert struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	DNSNames []string  `json:"dns_names,omitempty"`
}

// CheckReport is the whole check.
type CheckReport struct {
	Target     string            `json:"target"`
	Name       string            `json:"name"`
	Transports []TransportResult `json:"transports"`
	DNSSEC     string            `json:"dnssec,omitempty"`  // validates, does not validate, unknown
	Blocked    string            `json:"blocked,omitempty"` // the blocked name's answer
	BlockedOK  *bool             `json:"blocks,omitempty"`
	Encrypted  bool              `json:"encrypted"` // DoH or DoT answered with a verified certificate
}

// Check checks target: a URL (https:// for DoH, tls:// for DoT, udp://
// or tcp:// for plain), a DNSCrypt stamp (sdns://), or a bare host or
// address, for which plain DNS on 53, DoT on 853 and DoH at /dns-query
// are each tried.
func Check(ctx context.Context, target string, o CheckOptions) (*CheckReport, error) {
	if o.Name == "" {
		o.Name = "example.com"
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	var urls []string
	switch {
	case strings.HasPrefix(target, "sdns://"):
		if _, err := newDNSCrypt(target, o.Timeout); err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
		urls = []string{target}
	case strings.Contains(target, "://"):
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("target: %q is not a URL", target)
		}
		switch u.Scheme {
		case "https", "tls", "udp", "tcp":
		default:
			return nil, fmt.Errorf("target: scheme %q: want https, tls, udp or tcp", u.Scheme)
		}
		urls = []string{target}
	default:
		h := target
		if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") && net.ParseIP(h) != nil {
			h = "[" + h + "]" // an IPv6 address
		}
		urls = []string{"udp://" + h + ":53", "tls://" + h + ":853", "https://" + h + "/dns-query"}
	}
	rep := &CheckReport{Target: target, Name: o.Name}
	var first *TransportResult
	for _, u := range urls {
		r := checkOne(ctx, u, o)
		rep.Transports = append(rep.Transports, r)
		if r.OK && (strings.HasPrefix(u, "tls") || strings.HasPrefix(u, "https") || strings.HasPrefix(u, "sdns")) && r.Verified {
			rep.Encrypted = true
		}
		if r.OK && first == nil {
			first = &rep.Transports[len(rep.Transports)-1]
		}
	}
	if first == nil {
		return rep, nil
	}
	ask := func(name string, do bool) (*dns.Msg, error) {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		q.SetEdns0(ednsSize, do)
		r, _, _, err := exchangeURL(ctx, first.URL, q, o)
		return r, err
	}
	if o.SignedName != "" {
		switch r, err := ask(o.SignedName, true); {
		case err != nil:
			rep.DNSSEC = "unknown: " + err.Error()
		case r.AuthenticatedData:
			rep.DNSSEC = "validates (AD set on " + o.SignedName + ")"
		default:
			rep.DNSSEC = "does not validate (no AD on " + o.SignedName + ")"
		}
	}
	if o.Blocked != "" {
		r, err := ask(o.Blocked, false)
		if err != nil {
			rep.Blocked = "error: " + err.Error()
		} else {
			rep.Blocked = summary(r)
			b := r.Rcode == dns.RcodeNameError || r.Rcode == dns.RcodeRefused || nullAnswer(r)
			rep.BlockedOK = &b
		}
	}
	return rep, nil
}

func nullAnswer(r *dns.Msg) bool {
	if len(r.Answer) == 0 {
		return false
	}
	for _, rr := range r.Answer {
		switch a := rr.(type) {
		case *dns.A:
			if !a.A.IsUnspecified() {
				return false
			}
		case *dns.AAAA:
			if !a.AAAA.IsUnspecified() {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// summary is an answer in a line: its code and records' data.
func summary(r *dns.Msg) string {
	if r.Rcode != dns.RcodeSuccess {
		return dns.RcodeToString[r.Rcode]
	}
	var parts []string
	for _, rr := range r.Answer {
		parts = append(parts, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	if len(parts) == 0 {
		return "NOERROR, no records"
	}
	return strings.Join(parts, " ")
}

func checkOne(ctx context.Context, u string, o CheckOptions) TransportResult {
	res := TransportResult{URL: u}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(o.Name), dns.TypeA)
	t0 := time.Now()
	r, state, proto, err := exchangeURL(ctx, u, q, o)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.OK, res.LatencyMS = true, float64(time.Since(t0).Microseconds())/1000
	res.Answer = []string{summary(r)}
	res.Protocol = proto
	if state != nil {
		for _, c := range state.PeerCertificates {
			res.Chain = append(res.Chain, Cert{Subject: c.Subject.String(), Issuer: c.Issuer.String(), NotAfter: c.NotAfter, DNSNames: c.DNSNames})
		}
		// A DNSCrypt certificate comes verified (against the stamp's key).
		if res.Verified = len(state.VerifiedChains) > 0; !res.Verified {
			res.VerifyErr = verify(state, o, u)
			res.Verified = res.VerifyErr == ""
		}
	}
	return res
}

// verify checks a chain for the server name and says why it does not
// verify ("" when it does); the check connects without verifying, to
// report the chain either way.
func verify(state *tls.ConnectionState, o CheckOptions, u string) string {
	if len(state.PeerCertificates) == 0 {
		return "no certificate"
	}
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	name := o.ServerName
	if name == "" {
		if p, err := url.Parse(u); err == nil {
			name = p.Hostname()
		}
	}
	_, err := state.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: o.Roots, Intermediates: inter, DNSName: name})
	if err != nil {
		return err.Error()
	}
	return ""
}

// exchangeURL asks one resolver URL; for TLS transports it returns the
// connection state, its chain not verified.
func exchangeURL(ctx context.Context, u string, q *dns.Msg, o CheckOptions) (*dns.Msg, *tls.ConnectionState, string, error) {
	if strings.HasPrefix(u, "sdns://") {
		return exchangeDNSCrypt(u, q, o)
	}
	p, err := url.Parse(u)
	if err != nil {
		return nil, nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	name := o.ServerName
	if name == "" {
		name = p.Hostname()
	}
	// Not verified here: the chain is reported either way, and checked
	// once, by checkOne.
	tc := &tls.Config{ServerName: name, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	switch p.Scheme {
	case "udp", "tcp":
		c := &dns.Client{Net: p.Scheme, Timeout: o.Timeout}
		r, _, err := c.ExchangeContext(ctx, q, p.Host)
		return r, nil, p.Scheme, err
	case "tls":
		host := p.Host
		if p.Port() == "" {
			host = net.JoinHostPort(p.Hostname(), "853")
		}
		dc := tc.Clone()
		dc.NextProtos = []string{"dot"} // RFC 7858's ALPN
		d := &tls.Dialer{Config: dc}
		raw, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			return nil, nil, "", err
		}
		defer raw.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = raw.SetDeadline(dl)
		}
		conn := raw.(*tls.Conn)
		r, err := roundTrip(&dns.Conn{Conn: conn}, q)
		if err != nil {
			return nil, nil, "", err
		}
		cs := conn.ConnectionState()
		return r, &cs, tls.VersionName(cs.Version), nil
	case "https":
		wire, err := q.Pack()
		if err != nil {
			return nil, nil, "", err
		}
		tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(wire))
		req.Header.Set("Content-Type", "application/dns-message")
		req.Header.Set("Accept", "application/dns-message")
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return nil, nil, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, dns.MaxMsgSize+1))
		if resp.StatusCode != 200 {
			return nil, nil, "", fmt.Errorf("HTTP %s", resp.Status)
		}
		r := new(dns.Msg)
		if err := r.Unpack(body); err != nil {
			return nil, nil, "", fmt.Errorf("not a DNS answer: %v", err)
		}
		return r, resp.TLS, resp.Proto, nil
	}
	return nil, nil, "", fmt.Errorf("scheme %q", p.Scheme)
}

// exchangeDNSCrypt asks a DNSCrypt resolver; its certificate (signed by
// the provider key in the stamp, which Dial checks) is reported as a
// one-certificate chain, verified.
func exchangeDNSCrypt(stamp string, q *dns.Msg, o CheckOptions) (*dns.Msg, *tls.ConnectionState, string, error) {
	d, err := newDNSCrypt(stamp, o.Timeout)
	if err != nil {
		return nil, nil, "", err
	}
	info, err := d.resolver()
	if err != nil {
		return nil, nil, "", err
	}
	r, err := d.udp.Exchange(q, info)
	if err != nil {
		return nil, nil, "", err
	}
	cert := &x509.Certificate{NotAfter: time.Unix(int64(info.ResolverCert.NotAfter), 0)}
	cert.Subject.CommonName = info.ProviderName
	cert.Issuer.CommonName = "the provider key in the stamp"
	st := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	return r, st, fmt.Sprintf("DNSCrypt (%s)", info.ResolverCert.EsVersion), nil
}
