package dnsd_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ameshkov/dnscrypt/v2"
	"github.com/ameshkov/dnsstamps"
	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/dnsd"
	"github.com/opsgraph/ops/internal/testutil"
)

// zones are unbound's local zones: the names the tests resolve.
const zones = `
local-zone: "test." static
local-data: "www.test. 300 IN A 192.0.2.10"
local-data: "www.test. 300 IN AAAA 2001:db8::10"
local-data: "ads.test. 300 IN A 192.0.2.66"
local-data: "x.ads.test. 300 IN A 192.0.2.67"
local-data: "good.ads.test. 300 IN A 192.0.2.68"
local-data: "tracker.test. 300 IN A 192.0.2.69"
local-data: "sub.tracker.test. 300 IN A 192.0.2.70"
local-data: "wild.test. 300 IN A 192.0.2.71"
local-data: "a.wild.test. 300 IN A 192.0.2.72"
local-data: "short.test. 2 IN A 192.0.2.80"
local-data: "test. 3600 IN SOA ns.test. admin.test. 1 3600 600 86400 60"
local-data: "forcesafesearch.google.com. 300 IN A 216.239.38.120"
local-data: "www.youtube.com. 300 IN A 192.0.2.90"
local-data: "facebook.com. 300 IN A 192.0.2.91"
local-data: "paypa1.test. 300 IN A 192.0.2.93"
local-data: "feed-listed.test. 300 IN A 192.0.2.94"
local-data: "xn--pypal-4ve.test. 300 IN A 192.0.2.95"
`

const blockList = `! a list in several syntaxes
||ads.test^
@@||good.ads.test^
0.0.0.0 tracker.test
*.wild.test
||cosmetic.test^$third-party
example.com##.banner
`

type resolver struct {
	r        *testutil.Running
	unbound  *testutil.Unbound
	dotCA    string
	certFile string // the certificate of Ops's DoT, DoQ and proxy TLS listeners
	plain    string // udp and tcp
	dot      string
	doq      string
	proxy    string // the proxy's TLS listener, for DoH over HTTPS
}

func startResolver(t *testing.T, mod func(*config.DNS), more ...func(*config.Config)) *resolver {
	t.Helper()
	ub := testutil.StartUnbound(t, zones)
	dir := t.TempDir()
	list := filepath.Join(dir, "block.txt")
	if err := os.WriteFile(list, []byte(blockList), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, cert, key := testutil.TLSFiles(t)
	up := httpUpstream(t)
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.DNS.Upstreams = config.Strings{"tls://" + ub.TLS}
		c.DNS.UpstreamCA = ub.CAFile
		c.DNS.Listen = "127.0.0.1:0"
		c.DNS.DoTListen = "127.0.0.1:0"
		c.DNS.DoQListen = "127.0.0.1:0"
		c.DNS.TLSCert, c.DNS.TLSKey = cert, key
		c.DNS.Block.Lists = config.Strings{list}
		c.Proxy.Listen = "127.0.0.1:0"
		c.Proxy.TLSListen = "127.0.0.1:0"
		c.Proxy.Certificates = []config.CertPair{{Cert: cert, Key: key}}
		c.Proxy.Routes = []config.Route{{Name: "site", Upstreams: config.Strings{up}}}
		if mod != nil {
			mod(&c.DNS)
		}
		for _, f := range more {
			f(c)
		}
	})
	s := r.App.DNS()
	if s == nil {
		t.Fatal("the dns module did not start")
	}
	res := &resolver{r: r, unbound: ub, dotCA: ca, certFile: cert, plain: s.Addr("udp").String(), dot: s.Addr("dot").String(), doq: s.Addr("doq").String()}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p := r.App.Proxy(); p != nil && len(p.Addrs()) == 2 {
			res.proxy = p.Addrs()[1].String() // plain first, then TLS
			return nil
		}
		return fmt.Errorf("the proxy's TLS listener is not up")
	})
	return res
}

// roots trusts the test CA of Ops's TLS listeners.
func (res *resolver) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(res.dotCA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return roots
}

// api calls Ops's API as the admin (token "" for none) and returns the
// status and body.
func (res *resolver) api(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	return testutil.Call(t, method, res.r.URL+path, token, body)
}

func httpUpstream(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "site") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// kdig runs Knot's kdig with args and returns its +short answer lines.
func kdig(t *testing.T, args ...string) []string {
	t.Helper()
	bin, err := exec.LookPath("kdig")
	testutil.Require(t, err == nil, "kdig", "apt-get install --no-install-recommends knot-dnsutils")
	out, err := exec.Command(bin, append(args, "+short", "+timeout=5", "+retry=0")...).CombinedOutput()
	if err != nil {
		t.Fatalf("kdig %v: %v\n%s", args, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, ";;") {
			lines = append(lines, l)
		}
	}
	return lines
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// TestKdigOverEveryTransport: Knot's kdig resolves a name through Ops over
// plain UDP, TCP, DNS over TLS, and DNS over HTTPS (POST and GET) on the
// proxy's TLS listener, each answered from unbound over DoT. (Debian's
// kdig 3.2 is built without QUIC: TestDoQ uses AdGuard's dnsproxy.)
func TestKdigOverEveryTransport(t *testing.T) {
	res := startResolver(t, nil)
	h, p := hostPort(t, res.plain)
	if got := kdig(t, "@"+h, "-p", p, "www.test", "A"); len(got) != 1 || got[0] != "192.0.2.10" {
		t.Fatalf("udp: %v", got)
	}
	if got := kdig(t, "@"+h, "-p", p, "+tcp", "www.test", "AAAA"); len(got) != 1 || got[0] != "2001:db8::10" {
		t.Fatalf("tcp: %v", got)
	}
	h, p = hostPort(t, res.dot)
	if got := kdig(t, "@"+h, "-p", p, "+tls-ca="+res.dotCA, "+tls-hostname=localhost", "www.test", "A"); len(got) != 1 || got[0] != "192.0.2.10" {
		t.Fatalf("dot: %v", got)
	}
	h, p = hostPort(t, res.proxy)
	for _, method := range []string{"+https=/_ops/dns-query", "+https-get"} {
		args := []string{"@" + h, "-p", p, "+tls-ca=" + res.dotCA, "+tls-hostname=localhost", method}
		if method == "+https-get" {
			args = append(args, "+https=/_ops/dns-query")
		}
		if got := kdig(t, append(args, "www.test", "A")...); len(got) != 1 || got[0] != "192.0.2.10" {
			t.Fatalf("doh %s: %v", method, got)
		}
	}
}

// exchange asks Ops over plain UDP with miekg/dns's client.
func exchange(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

func answerA(r *dns.Msg) string {
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return dns.RcodeToString[r.Rcode]
}

// TestBlockLists: each syntax of the list blocks what it should and
// nothing else; an exception wins over a block; a line the syntax does
// not cover blocks nothing.
func TestBlockLists(t *testing.T) {
	res := startResolver(t, nil)
	for name, want := range map[string]string{
		"www.test":         "192.0.2.10",
		"ads.test":         "NXDOMAIN", // ||ads.test^
		"x.ads.test":       "NXDOMAIN", // and its subdomains
		"good.ads.test":    "192.0.2.68",
		"tracker.test":     "NXDOMAIN",   // hosts line: the name
		"sub.tracker.test": "192.0.2.70", // not its subdomains
		"wild.test":        "192.0.2.71", // *.wild.test: not the name
		"a.wild.test":      "NXDOMAIN",   // its subdomains
	} {
		if got := answerA(exchange(t, res.plain, name, dns.TypeA)); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	var evs struct {
		Events []struct {
			Event struct {
				Data map[string]any
			}
		}
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		_, b := res.api(t, "GET", "/api/v1/events?subject=ev.dns.query&limit=100", res.r.Token, "")
		if err := json.Unmarshal([]byte(b), &evs); err != nil {
			return err
		}
		if len(evs.Events) < 8 {
			return fmt.Errorf("%d query events", len(evs.Events))
		}
		return nil
	})
	seen := false
	for _, e := range evs.Events {
		d := e.Event.Data
		if d["client"] != "127.0.0.0" || d["transport"] != "udp" {
			t.Fatalf("event %v: want the client anonymised and the transport", d)
		}
		if d["name"] == "x.ads.test" {
			seen = d["blocked"] == true && d["rule"] == "block.txt:2" && d["rcode"] == "NXDOMAIN"
		}
	}
	if !seen {
		t.Fatalf("no event of the blocked x.ads.test naming its rule: %v", evs.Events)
	}
	// The stats API: top domains, blocked and clients; CSV; not public.
	get := func(path, token string) (int, string) { return res.api(t, "GET", path, token, "") }
	var st dnsd.Stats
	code, body := get("/api/v1/dns/stats?since=15m&limit=10", res.r.Token)
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || st.Queries < 8 || st.Blocked != 4 || len(st.TopClients) != 1 || st.TopClients[0].Key != "127.0.0.0" {
		t.Fatalf("stats: %d %s", code, body)
	}
	rules := map[string]string{}
	for _, b := range st.TopBlocked {
		rules[b.Key] = b.Rule
	}
	if rules["x.ads.test"] != "block.txt:2" || rules["tracker.test"] != "block.txt:4" || len(rules) != 4 {
		t.Fatalf("top blocked: %+v", st.TopBlocked)
	}
	if code, body = get("/api/v1/dns/stats?format=csv", res.r.Token); code != 200 || !strings.HasPrefix(body, "list,key,count,max_error,rule\n") || !strings.Contains(body, "blocked,x.ads.test,1,0,block.txt:2") {
		t.Fatalf("stats CSV: %d %s", code, body)
	}
	if code, body = get("/api/v1/dns/stats?since=2d", res.r.Token); code != 400 || !strings.Contains(body, `"field":"since"`) {
		t.Fatalf("since=2d: %d %s", code, body)
	}
	if code, _ = get("/api/v1/dns/stats", ""); code != 401 {
		t.Fatalf("stats without a token: %d", code)
	}
	res2 := startResolver(t, func(d *config.DNS) { d.Block.Mode = "null"; d.SafeSearch = true })
	r := exchange(t, res2.plain, "ads.test", dns.TypeA)
	if got := answerA(r); got != "0.0.0.0" {
		t.Errorf("null mode: %s", got)
	}
	// Safe search: Google's search is answered with its safe host.
	r = exchange(t, res2.plain, "www.google.com", dns.TypeA)
	if len(r.Answer) != 2 || r.Answer[0].(*dns.CNAME).Target != "forcesafesearch.google.com." || answerA(r) != "216.239.38.120" {
		t.Errorf("safe search: %v", r)
	}
}

// TestDoHErrorsAndJSON: the JSON API answers like Google's; malformed
// requests get the HTTP status that names what is wrong, and the
// resolver keeps answering.
func TestDoHErrorsAndJSON(t *testing.T) {
	res := startResolver(t, nil)
	base := res.r.URL + "/dns-query"
	resp, err := http.Get(base + "?name=www.test&type=AAAA")
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Status int
		Answer []struct {
			Name string `json:"name"`
			Type int    `json:"type"`
			Data string `json:"data"`
		}
	}
	_ = json.NewDecoder(resp.Body).Decode(&j)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/dns-json" || j.Status != 0 || len(j.Answer) != 1 || j.Answer[0].Data != "2001:db8::10" || j.Answer[0].Type != 28 {
		t.Fatalf("json: %s %+v", resp.Header.Get("Content-Type"), j)
	}
	for _, c := range []struct {
		method, query, ctype, body string
		code                       int
		field                      string
	}{
		{"GET", "", "", "", 400, "dns"},
		{"GET", "?dns=!!!", "", "", 400, "dns"},
		{"GET", "?dns=" + base64.RawURLEncoding.EncodeToString([]byte{1, 2, 3}), "", "", 400, "dns"},
		{"POST", "", "text/plain", "x", 415, "Content-Type"},
		{"POST", "", "application/dns-message", strings.Repeat("x", 70000), 413, "body"},
		{"GET", "?name=bad..name", "", "", 400, "name"},
		{"GET", "?name=www.test&type=NOPE", "", "", 400, "type"},
	} {
		req, _ := http.NewRequest(c.method, base+c.query, strings.NewReader(c.body))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(b), fmt.Sprintf(`"field":%q`, c.field)) {
			t.Errorf("%s %s (%s): %d %s, want %d naming %s", c.method, c.query, c.ctype, resp.StatusCode, b, c.code, c.field)
		}
	}
	if got := answerA(exchange(t, res.plain, "www.test", dns.TypeA)); got != "192.0.2.10" {
		t.Fatalf("after bad requests: %s", got)
	}
}

// TestCacheAndServeStale: a second query is answered from the cache; when
// the upstream is gone, an expired answer is served with a 30 s TTL, and
// a name never cached fails with SERVFAIL.
func TestCacheAndServeStale(t *testing.T) {
	res := startResolver(t, nil)
	first := exchange(t, res.plain, "short.test", dns.TypeA)
	if answerA(first) != "192.0.2.80" {
		t.Fatalf("first: %v", first)
	}
	res.unbound.Stop()
	if got := answerA(exchange(t, res.plain, "short.test", dns.TypeA)); got != "192.0.2.80" {
		t.Fatalf("cached, upstream down: %s", got)
	}
	time.Sleep(2500 * time.Millisecond) // its TTL is 2 s
	stale := exchange(t, res.plain, "short.test", dns.TypeA)
	if answerA(stale) != "192.0.2.80" || stale.Answer[0].Header().Ttl != 30 {
		t.Fatalf("stale: %v", stale)
	}
	if r := exchange(t, res.plain, "never.test", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("uncached, upstream down: %v", r)
	}
}

// TestPolicyBlocksLive: a domain entry in the POLICY bucket (what a view,
// an admin or the chat writes) blocks a name that was answered (and
// cached) a moment before, at once, naming the policy as the
// rule; clearing it answers the name again.
func TestPolicyBlocksLive(t *testing.T) {
	res := startResolver(t, nil)
	if got := answerA(exchange(t, res.plain, "www.test", dns.TypeA)); got != "192.0.2.10" {
		t.Fatalf("before: %s", got)
	}
	call := func(method, path, body string) {
		if code, b := res.api(t, method, path, res.r.Token, body); code/100 != 2 {
			t.Fatalf("%s %s: %d %s", method, path, code, b)
		}
	}
	call("PUT", "/api/v1/policy/domain/WWW.Test.", `{"reason":"phishing"}`)
	set := time.Now()
	// Measured at 11 ms; 3 s leaves room for a loaded CI machine.
	testutil.CheckFor(t, 3*time.Second, 10*time.Millisecond, func() error {
		if got := answerA(exchange(t, res.plain, "www.test", dns.TypeA)); got != "NXDOMAIN" {
			return fmt.Errorf("after the policy: %s", got)
		}
		return nil
	})
	t.Logf("blocked %v after the policy was set", time.Since(set).Round(time.Millisecond))
	call("DELETE", "/api/v1/policy/domain/www.test", "")
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := answerA(exchange(t, res.plain, "www.test", dns.TypeA)); got != "192.0.2.10" {
			return fmt.Errorf("after clearing: %s", got)
		}
		return nil
	})
}

// TestPhishingBlocksNames: with phishing protection on, the resolver
// answers a name it would block (a confusable lookalike of a protected
// domain, a feed's domain) as blocked, with the reasons in the query's
// event; a weaker lookalike (a warning at the proxy) and other names
// resolve.
func TestPhishingBlocksNames(t *testing.T) {
	feed := filepath.Join(t.TempDir(), "phish.txt")
	if err := os.WriteFile(feed, []byte("feed-listed.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := startResolver(t, func(d *config.DNS) { d.Events = true }, func(c *config.Config) {
		c.Phishing.Protect = config.Strings{"paypal.test"}
		c.Phishing.Feeds = []config.PhishFeed{{Source: feed, Format: "domains"}}
		c.Phishing.NewDomainDays = 0
	})
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if got := answerA(exchange(t, res.plain, "feed-listed.test", dns.TypeA)); got != "NXDOMAIN" {
			return fmt.Errorf("feed domain: %s", got)
		}
		return nil
	})
	for name, want := range map[string]string{"xn--pypal-4ve.test": "NXDOMAIN", "paypa1.test": "192.0.2.93", "www.test": "192.0.2.10"} {
		if got := answerA(exchange(t, res.plain, name, dns.TypeA)); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		_, body := res.api(t, "GET", "/api/v1/events?subject=ev.dns.query&limit=200", res.r.Token, "")
		for _, want := range []string{`"rule":"phishing: feed-listed.test is listed in ` + feed, `looks like \"paypal\" (UTS #39`} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("no %s in %s", want, body)
			}
		}
		return nil
	})
}

// TestCheck: ops dns check's report against Ops itself: plain DNS, DoT
// and DoH each answer, and against a DNSCrypt server by its stamp; the certificate chain verifies with the test CA
// and not without it; a listed name is reported blocked, a name that is
// not, not blocked; a transport that is not there says why.
func TestCheck(t *testing.T) {
	res := startResolver(t, nil)
	roots := res.roots(t)
	ctx := context.Background()
	for _, u := range []string{"udp://" + res.plain, "tls://" + res.dot, "https://" + res.proxy + "/_ops/dns-query"} {
		rep, err := dnsd.Check(ctx, u, dnsd.CheckOptions{Name: "www.test", Blocked: "ads.test", Roots: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		tr := rep.Transports[0]
		if !tr.OK || tr.Answer[0] != "192.0.2.10" || rep.BlockedOK == nil || !*rep.BlockedOK {
			t.Fatalf("%s: %+v", u, rep)
		}
		if strings.HasPrefix(u, "udp") {
			if rep.Encrypted || len(tr.Chain) != 0 {
				t.Fatalf("plain DNS reported encrypted: %+v", rep)
			}
			continue
		}
		if !rep.Encrypted || !tr.Verified || len(tr.Chain) != 1 || tr.Chain[0].Issuer != "CN=ops test CA" {
			t.Fatalf("%s: %+v", u, rep)
		}
		if strings.HasPrefix(u, "https") && tr.Protocol != "HTTP/2.0" {
			t.Fatalf("DoH over %s, want HTTP/2", tr.Protocol)
		}
		// Without the CA: it answers, the chain does not verify, not encrypted.
		rep, err = dnsd.Check(ctx, u, dnsd.CheckOptions{Name: "www.test", ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Encrypted || rep.Transports[0].Verified || !strings.Contains(rep.Transports[0].VerifyErr, "unknown authority") {
			t.Fatalf("%s without the CA: %+v", u, rep.Transports[0])
		}
	}
	rep, err := dnsd.Check(ctx, "udp://"+res.plain, dnsd.CheckOptions{Name: "www.test", Blocked: "www.test"})
	if err != nil || rep.BlockedOK == nil || *rep.BlockedOK {
		t.Fatalf("a name that is not blocked: %+v %v", rep, err)
	}
	// A bare address: plain, DoT on 853 and DoH tried; nothing listens on
	// 853 or 443 here.
	rep, err = dnsd.Check(ctx, "127.0.0.1", dnsd.CheckOptions{Name: "www.test", Timeout: time.Second})
	if err != nil || len(rep.Transports) != 3 || rep.Transports[1].OK || rep.Transports[1].Error == "" {
		t.Fatalf("bare address: %+v %v", rep, err)
	}
	// A DoH stamp: its URL is the way; a DNSCrypt stamp: checked.
	if _, err := dnsd.Check(ctx, "sdns://AgcAAAAAAAAABzEuMC4wLjEAEmRucy5jbG91ZGZsYXJlLmNvbQovZG5zLXF1ZXJ5", dnsd.CheckOptions{}); err == nil || !strings.Contains(err.Error(), "https:// or tls:// URL") {
		t.Fatalf("a DoH stamp: %v", err)
	}
	rep, err = dnsd.Check(ctx, startDNSCrypt(t), dnsd.CheckOptions{Name: "www.crypt.test"})
	if err != nil || !rep.Encrypted || rep.Transports[0].Answer[0] != "192.0.2.77" || rep.Transports[0].Chain[0].Subject != "CN=2.dnscrypt-cert.ops.test" {
		t.Fatalf("a DNSCrypt stamp: %+v %v", rep, err)
	}
}

// TestClientCheck: the check page's token, resolved by a browser's DNS
// through Ops's DoH (TLS on the proxy), is reported as through Ops,
// encrypted; resolved over plain UDP, through Ops but not encrypted; a
// token nobody resolved, not through Ops. The final answer is an event.
func TestClientCheck(t *testing.T) {
	res := startResolver(t, func(d *config.DNS) { d.CheckDomain, d.CheckAddress = "dnscheck.test", "127.0.0.1" })
	roots := res.roots(t)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, ForceAttemptHTTP2: true}}
	base := "https://" + res.proxy + "/_ops/dns-check"
	token := func() string {
		resp, err := client.Get(base)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`var token = "([0-9a-f]+)"`).FindSubmatch(b)
		if resp.StatusCode != 200 || m == nil || !strings.Contains(string(b), ".dnscheck.test/") {
			t.Fatalf("check page: %d %s", resp.StatusCode, b)
		}
		return string(m[1])
	}
	result := func(tok string, final bool) map[string]any {
		u := base + "/result?token=" + tok
		if final {
			u += "&final=1"
		}
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	// The browser's secure DNS: a DoH query on the proxy's TLS listener.
	tok := token()
	if got := result(tok, false); got["through_ops"] != false {
		t.Fatalf("before any query: %v", got)
	}
	q := new(dns.Msg)
	q.SetQuestion(tok+".dnscheck.test.", dns.TypeA)
	wire, _ := q.Pack()
	resp, err := client.Post("https://"+res.proxy+"/_ops/dns-query", "application/dns-message", strings.NewReader(string(wire)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var a dns.Msg
	if err := a.Unpack(b); err != nil || answerA(&a) != "127.0.0.1" {
		t.Fatalf("the check name over DoH: %v %v", err, a)
	}
	if got := result(tok, true); got["through_ops"] != true || got["transport"] != "doh" || got["encrypted"] != true {
		t.Fatalf("after DoH: %v", got)
	}
	// Plain DNS: through Ops, not encrypted.
	tok2 := token()
	if got := answerA(exchange(t, res.plain, tok2+".dnscheck.test", dns.TypeA)); got != "127.0.0.1" {
		t.Fatalf("the check name over UDP: %s", got)
	}
	if got := result(tok2, false); got["through_ops"] != true || got["transport"] != "udp" || got["encrypted"] != false {
		t.Fatalf("after UDP: %v", got)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		_, b := res.api(t, "GET", "/api/v1/events?subject=ev.dns.client_check", res.r.Token, "")
		if !strings.Contains(b, `"encrypted":true`) || !strings.Contains(b, `"transport":"doh"`) {
			return fmt.Errorf("no client check event: %s", b)
		}
		return nil
	})
}

// TestClients: per-client settings. The office (matched by address) has
// a schedule blocking Facebook now and an allow list that opens a
// globally listed name; the kids (matched by their DoH path token) have
// YouTube blocked as a service and the global lists; an unknown token is
// refused; events carry the client's name.
func TestClients(t *testing.T) {
	now := time.Now().UTC()
	res := startResolver(t, func(d *config.DNS) {
		d.Clients = []config.DNSClient{
			{Name: "office", Addresses: config.Strings{"127.0.0.0/8"}, Allow: config.Strings{"ads.test"},
				Schedule: config.DNSSchedule{Services: config.Strings{"facebook"}, From: now.Add(-time.Hour).Format("15:04"), To: now.Add(time.Hour).Format("15:04"), Timezone: "UTC"}},
			{Name: "kids", DoHToken: "kids-7f3a", BlockedServices: config.Strings{"youtube"}},
		}
	})
	for name, want := range map[string]string{"facebook.com": "NXDOMAIN", "ads.test": "192.0.2.66", "www.youtube.com": "192.0.2.90", "x.ads.test": "192.0.2.67"} {
		if got := answerA(exchange(t, res.plain, name, dns.TypeA)); got != want {
			t.Errorf("office %s: %s, want %s", name, got, want)
		}
	}
	doh := func(path, name string) (int, string) {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		wire, _ := q.Pack()
		resp, err := http.Post(res.r.URL+path, "application/dns-message", strings.NewReader(string(wire)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return resp.StatusCode, string(b)
		}
		var a dns.Msg
		if err := a.Unpack(b); err != nil {
			t.Fatal(err)
		}
		return 200, answerA(&a)
	}
	for name, want := range map[string]string{"www.youtube.com": "NXDOMAIN", "ads.test": "NXDOMAIN", "facebook.com": "192.0.2.91"} {
		if code, got := doh("/dns-query/kids-7f3a", name); code != 200 || got != want {
			t.Errorf("kids %s: %d %s, want %s", name, code, got, want)
		}
	}
	if code, body := doh("/dns-query/nosuch", "www.test"); code != 404 || !strings.Contains(body, `"field":"client"`) {
		t.Errorf("unknown token: %d %s", code, body)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		_, b := res.api(t, "GET", "/api/v1/events?subject=ev.dns.query&limit=100", res.r.Token, "")
		if !strings.Contains(b, `"client_name":"kids"`) || !strings.Contains(b, `"rule":"service:youtube"`) || !strings.Contains(b, `"rule":"schedule:facebook"`) {
			return fmt.Errorf("events without the client's name or rules: %.2000s", b)
		}
		return nil
	})
}

// cryptHandler answers names under crypt.test with 192.0.2.77, as a
// DNSCrypt resolver.
type cryptHandler struct{}

func (cryptHandler) ServeDNS(rw dnscrypt.ResponseWriter, r *dns.Msg) error {
	m := new(dns.Msg)
	m.SetReply(r)
	if q := r.Question[0]; strings.HasSuffix(q.Name, "crypt.test.") && q.Qtype == dns.TypeA {
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 77)}}
	} else {
		m.Rcode = dns.RcodeNameError
	}
	return rw.WriteMsg(m)
}

// startDNSCrypt runs dnscrypt/v2's own server (UDP and TCP) with a fresh
// provider key and certificate, and returns its stamp.
func startDNSCrypt(t *testing.T) string {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := dnscrypt.GenerateResolverConfig("2.dnscrypt-cert.ops.test", priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := rc.CreateCert()
	if err != nil {
		t.Fatal(err)
	}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", uc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := &dnscrypt.Server{ProviderName: rc.ProviderName, ResolverCert: cert, Handler: cryptHandler{}, Logger: slog.New(slog.DiscardHandler)}
	go func() { _ = srv.ServeUDP(uc) }()
	go func() { _ = srv.ServeTCP(tl) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	st, err := rc.CreateStamp(uc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return st.String()
}

// TestDNSCryptUpstream: a DNSCrypt upstream given by its stamp answers
// through Ops (the certificate fetched and checked against the stamp's
// key), beside the DoT one for other names; a stamp of a key that did not
// sign the certificate gets nothing.
func TestDNSCryptUpstream(t *testing.T) {
	stamp := startDNSCrypt(t)
	res := startResolver(t, func(d *config.DNS) {
		d.Forward = []config.DNSForward{{Domain: "crypt.test", Upstreams: config.Strings{stamp}}}
	})
	if got := answerA(exchange(t, res.plain, "www.crypt.test", dns.TypeA)); got != "192.0.2.77" {
		t.Fatalf("through DNSCrypt: %s", got)
	}
	if got := answerA(exchange(t, res.plain, "www.test", dns.TypeA)); got != "192.0.2.10" {
		t.Fatalf("through DoT beside it: %s", got)
	}
	// A stamp with another provider key: the certificate does not verify.
	st, err := dnsstamps.NewServerStampFromString(stamp)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	st.ServerPk = other
	bad, err := dnsd.NewTestUpstream(st.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion("www.crypt.test.", dns.TypeA)
	if _, err := bad.Exchange(q); err == nil {
		t.Fatal("an answer through a stamp whose key did not sign the certificate")
	}
}

// TestDoQ holds DNS over QUIC against AdGuard's dnsproxy both ways: as a
// client of Ops's DoQ listener, and as the DoQ server Ops's quic://
// upstream asks; a client that breaks RFC 9250 (a message id other than
// 0) has its connection closed with DOQ_PROTOCOL_ERROR.
func TestDoQ(t *testing.T) {
	res := startResolver(t, nil)
	roots := res.roots(t)

	// dnsproxy as a client: plain DNS in, DoQ to Ops (checking Ops's
	// certificate against the test CA).
	client := testutil.StartDNSProxy(t, testutil.DNSProxyOptions{Plain: true, CAFile: res.dotCA,
		Upstreams: []string{"quic://" + res.doq}})
	for _, q := range []struct {
		t    uint16
		want string
	}{{dns.TypeA, "192.0.2.10"}, {dns.TypeAAAA, "2001:db8::10"}} {
		r := exchange(t, client.Plain, "www.test", q.t)
		if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), q.want) {
			t.Fatalf("through dnsproxy's DoQ: %v\n%s", r, client.Log())
		}
	}
	_, metrics := res.api(t, "GET", "/metrics", res.r.Token, "")
	if !regexp.MustCompile(`ops_dns_queries_total\{rcode="NOERROR",transport="doq"\} [1-9]`).MatchString(metrics) {
		t.Fatalf("no DoQ queries counted:\n%s", grepLines(metrics, "ops_dns_queries_total"))
	}

	// dnsproxy as a DoQ server, forwarding to unbound: Ops's upstream.
	_, cert, key := testutil.TLSFiles(t)
	caOf := filepath.Join(filepath.Dir(cert), "ca.pem")
	pem2, err := os.ReadFile(caOf)
	if err != nil {
		t.Fatal(err)
	}
	roots2 := x509.NewCertPool()
	roots2.AppendCertsFromPEM(pem2)
	server := testutil.StartDNSProxy(t, testutil.DNSProxyOptions{QUICCert: cert, QKey: key, Upstreams: []string{"udp://" + res.unbound.Plain}})
	m := new(dns.Msg)
	m.SetQuestion("www.test.", dns.TypeA)
	named, _ := dnsd.NewTestUpstream("quic://localhost:"+strings.Split(server.QUIC, ":")[1], roots2)
	if _, err := named.Exchange(m); err == nil || !strings.Contains(err.Error(), "bootstrap") {
		t.Fatalf("a named upstream without bootstrap must not be looked up: %v", err)
	}
	other, err := dnsd.NewTestUpstream("quic://"+server.QUIC, roots) // Ops's test CA, not dnsproxy's
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exchange(m); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
	up, err := dnsd.NewTestUpstream("quic://"+server.QUIC, roots2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // one connection, a stream each
		m := new(dns.Msg)
		m.SetQuestion("www.test.", dns.TypeA)
		m.Id = uint16(4242 + i) // sent as 0; the answer gets it back
		r, err := up.Exchange(m)
		if err != nil {
			t.Fatalf("Ops's quic:// upstream to dnsproxy: %v\n%s", err, server.Log())
		}
		if r.Id != m.Id || len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "192.0.2.10") {
			t.Fatalf("from dnsproxy: %v", r)
		}
	}

	// A raw QUIC client sending id 7.
	tc := &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"doq"}}
	conn, err := quic.DialAddr(context.Background(), res.doq, tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion("www.test.", dns.TypeA)
	q.Id = 7
	b, _ := q.Pack()
	st.Write(append([]byte{byte(len(b) >> 8), byte(len(b))}, b...))
	st.Close()
	select {
	case <-conn.Context().Done():
		var ae *quic.ApplicationError
		if !errors.As(context.Cause(conn.Context()), &ae) || ae.ErrorCode != 2 {
			t.Fatalf("closed with %v, want DOQ_PROTOCOL_ERROR (2)", context.Cause(conn.Context()))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a message id of 7 did not close the connection")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
