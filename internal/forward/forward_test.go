package forward_test

import (
	"bufio"
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
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

type setup struct {
	r       *testutil.Running
	proxy   string // host:port of the forward proxy
	plain   *httptest.Server
	tlsSite *httptest.Server
	gotAuth chan string
	roots   *x509.CertPool
	caFile  string
}

func start(t *testing.T) *setup {
	t.Helper()
	s := &setup{gotAuth: make(chan string, 100)}
	s.plain = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.gotAuth <- r.Header.Get("Proxy-Authorization") + "|" + r.Header.Get("Authorization")
		io.WriteString(w, "hello from "+r.Host)
	}))
	t.Cleanup(s.plain.Close)
	// A site with a certificate for localhost and 127.0.0.1 from a test CA.
	ca, certFile, keyFile := testutil.TLSFiles(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(ca)
	s.roots = x509.NewCertPool()
	s.roots.AppendCertsFromPEM(pem)
	s.caFile = ca
	s.tlsSite = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret site") }))
	s.tlsSite.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.tlsSite.StartTLS()
	t.Cleanup(s.tlsSite.Close)
	_, tlsPort, _ := net.SplitHostPort(s.tlsSite.Listener.Addr().String())
	var port int
	fmt.Sscan(tlsPort, &port)
	s.r = testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		f := &c.Proxy.Forward
		f.Listen = "127.0.0.1:0"
		f.AllowPorts = []int{port}
		f.DenyNetworks = config.Strings{"127.0.0.2/32", "169.254.0.0/16"}
		f.DenyOwn = false // the test's sites are on this machine
		f.PACDirect = config.Strings{"*.corp.example"}
		f.Rules = []config.ForwardRule{{Name: "no-localhost-for-bob", Hosts: config.Strings{"localhost"}, Users: config.Strings{"bob"}, Action: "block"}}
	})
	for _, u := range []string{"alice", "bob"} {
		req, _ := http.NewRequest("POST", s.r.URL+"/api/v1/users", strings.NewReader(`{"name":"`+u+`","password":"`+u+`-password-1","roles":["viewer"]}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("add %s: %v %v", u, err, resp)
		}
		resp.Body.Close()
	}
	s.proxy = s.r.App.Forward().Addr().String()
	return s
}

func (s *setup) client(user, pw string) *http.Client {
	u := &url.URL{Scheme: "http", Host: s.proxy}
	if user != "" {
		u.User = url.UserPassword(user, pw)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u),
		TLSClientConfig: &tls.Config{RootCAs: s.roots}}}
}

func get(t *testing.T, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestForwardProxy: plain HTTP and CONNECT through the proxy with Basic
// proxy auth (a password, or an API token as one), 407 without, the
// rules per user, the allowed ports, the denied networks (after
// resolution), and the events of what it decided; Ops's credentials
// never reach the site.
func TestForwardProxy(t *testing.T) {
	s := start(t)
	alice, bob := s.client("alice", "alice-password-1"), s.client("bob", "bob-password-1")

	if code, body, _ := get(t, alice, s.plain.URL+"/hi"); code != 200 || !strings.HasPrefix(body, "hello from") {
		t.Fatalf("alice, plain HTTP: %d %s", code, body)
	}
	if got := <-s.gotAuth; got != "|" {
		t.Fatalf("the site got credentials: %q", got)
	}
	code, _, h := get(t, s.client("", ""), s.plain.URL)
	if code != http.StatusProxyAuthRequired || !strings.HasPrefix(h.Get("Proxy-Authenticate"), "Basic") {
		t.Fatalf("no credentials: %d %v", code, h)
	}
	if code, _, _ := get(t, s.client("alice", "wrong"), s.plain.URL); code != http.StatusProxyAuthRequired {
		t.Fatalf("a wrong password: %d", code)
	}
	if code, _, _ := get(t, s.client("token", s.r.Token), s.plain.URL); code != 200 {
		t.Fatalf("an API token as the password: %d", code)
	}

	// CONNECT: alice may reach localhost, bob may not (the rule), both may
	// reach 127.0.0.1.
	_, port, _ := net.SplitHostPort(s.tlsSite.Listener.Addr().String())
	if code, body, _ := get(t, alice, "https://localhost:"+port+"/"); code != 200 || body != "secret site" {
		t.Fatalf("alice, CONNECT localhost: %d %s", code, body)
	}
	if code, body, _ := get(t, bob, "https://localhost:"+port+"/"); code != 0 || !strings.Contains(body, "Forbidden") {
		t.Fatalf("bob, CONNECT localhost: %d %s", code, body)
	}
	if code, _, _ := get(t, bob, "https://127.0.0.1:"+port+"/"); code != 200 {
		t.Fatalf("bob, CONNECT 127.0.0.1: %d", code)
	}
	if code, body, _ := get(t, bob, "http://localhost:"+port+"/"); code != 403 || !strings.Contains(body, "no-localhost-for-bob") {
		t.Fatalf("bob, plain HTTP to localhost: %d %s", code, body)
	}
	// A port that is not allowed, and an address that is denied.
	_, plainPort, _ := net.SplitHostPort(s.plain.Listener.Addr().String())
	raw := func(req string) string {
		t.Helper()
		c, err := net.Dial("tcp", s.proxy)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	auth := "Proxy-Authorization: Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQtMQ==\r\n" // alice
	for _, c := range []struct{ req, want string }{
		{"CONNECT 127.0.0.1:" + plainPort + " HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", "403"},
		{"CONNECT 127.0.0.2:" + port + " HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", "403"},
		{"CONNECT nohost HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", "400"},
		{"CONNECT example.com:99999 HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", "400"},
		{"CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", "400"},
		{"CONNECT bad_host!:443 HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", "400"},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"GET http://alice:pw@example.com/ HTTP/1.1\r\nHost: example.com\r\n" + auth + "\r\n", "400"},
		{"GET /proxy.pac HTTP/1.1\r\nHost: x\r\n\r\n", "200"},
		{"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\n" + auth + "\r\n", "431"},
		{"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Many: 1\r\n", 8000) + auth + "\r\n", "431"},
		{"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", "400"},
	} {
		if got := raw(c.req); !strings.Contains(got, " "+c.want+" ") {
			t.Errorf("%q: %s, want %s", strings.SplitN(c.req, "\r\n", 2)[0], got, c.want)
		}
	}

	// curl through CONNECT, as a user would.
	curl, err := exec.LookPath("curl")
	testutil.Require(t, err == nil, "curl", "apt-get install --no-install-recommends curl")
	out, err := exec.Command(curl, "-sS", "--cacert", s.caFile, "--max-time", "10", "-x", "http://"+s.proxy, "-U", "alice:alice-password-1", "https://localhost:"+port+"/").CombinedOutput()
	if err != nil || string(out) != "secret site" {
		t.Fatalf("curl through CONNECT: %v %s", err, out)
	}

	// The PAC file, on the main listener too.
	code, pac, ph := get(t, http.DefaultClient, s.r.URL+"/proxy.pac")
	if code != 200 || ph.Get("Content-Type") != "application/x-ns-proxy-autoconfig" || !strings.Contains(pac, `"PROXY `+s.proxy+`"`) || !strings.Contains(pac, `"*.corp.example"`) {
		t.Fatalf("PAC: %d %v %s", code, ph, pac)
	}

	// Every decision is an event.
	testutil.CheckFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		req, _ := http.NewRequest("GET", s.r.URL+"/api/v1/events?subject=ev.proxy.browse&limit=100", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, want := range []string{`"user":"bob","client":"127.0.0.0","method":"CONNECT","host":"localhost"`, `"action":"block","rule":"no-localhost-for-bob"`,
			`"user":"alice","client":"127.0.0.0","method":"CONNECT","host":"localhost"`, `"reason":"port ` + plainPort} {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("no %s in %s", want, b)
			}
		}
		return nil
	})
}

// TestForwardProxyKeepsOwnHostOutOfReach: with the defaults, the proxy
// refuses to reach Ops's own API, by loopback or by any address of this
// machine's interfaces (its LAN address too).
func TestForwardProxyKeepsOwnHostOutOfReach(t *testing.T) {
	r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
		c.HTTP.Listen = "0.0.0.0:0" // the API on every interface, as a careless setup would have it
		c.Proxy.Forward.Listen, c.Proxy.Forward.Auth = "127.0.0.1:0", "none"
	})
	_, apiPort, _ := net.SplitHostPort(strings.TrimPrefix(r.URL, "http://"))
	hosts := []string{"127.0.0.1", "localhost"}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				hosts = append(hosts, ipn.IP.String())
			}
		}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: r.App.Forward().Addr().String()})}}
	for _, h := range hosts {
		// The API answers directly on that address...
		if resp, err := http.Get("http://" + net.JoinHostPort(h, apiPort) + "/healthz"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("the API on %s: %v %v", h, err, resp)
		}
		// ...but not through the proxy.
		code, body, _ := get(t, c, "http://"+net.JoinHostPort(h, apiPort)+"/healthz")
		if code != 403 || !strings.Contains(body, "denied") {
			t.Fatalf("through the proxy to %s: %d %s", h, code, body)
		}
	}
	t.Logf("refused: %v", hosts)
}
