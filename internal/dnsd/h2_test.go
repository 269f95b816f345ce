package dnsd_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/opsgraph/ops/internal/config"
)

// TestDoHListener: dns.doh_listen, Ops's own HTTP/2 server for DoH,
// answers Go's HTTP/2 client and kdig (nghttp2) as /dns-query does on the
// main listener: POST, GET, JSON, client tokens, the same errors; queries
// that go upstream concurrently are all answered; a client without h2 is
// refused.
func TestDoHListener(t *testing.T) {
	res := startResolver(t, func(d *config.DNS) {
		d.DoHListen = "127.0.0.1:0"
		d.Clients = []config.DNSClient{{Name: "kids", DoHToken: "kids-7f3a", BlockedServices: config.Strings{"youtube"}}}
	})
	addr := res.r.App.DNS().Addr("doh").String()
	base := "https://" + addr
	roots := res.roots(t)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	wire := func(name string, t uint16) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, t)
		b, _ := m.Pack()
		return b
	}
	do := func(method, path, ctype string, body []byte) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	answer := func(b []byte) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatalf("not a DNS message: %v %q", err, b)
		}
		return m
	}
	resp, b := do("POST", "/dns-query", "application/dns-message", wire("www.test.", dns.TypeA))
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.Header.Get("Content-Type") != "application/dns-message" ||
		!strings.HasPrefix(resp.Header.Get("Cache-Control"), "max-age=") || answerA(answer(b)) != "192.0.2.10" {
		t.Fatalf("POST: %d %s %v %q", resp.StatusCode, resp.Proto, resp.Header, b)
	}
	resp, b = do("GET", "/dns-query?dns="+base64.RawURLEncoding.EncodeToString(wire("www.test.", dns.TypeAAAA)), "", nil)
	if m := answer(b); resp.StatusCode != 200 || len(m.Answer) != 1 || !strings.Contains(m.Answer[0].String(), "2001:db8::10") {
		t.Fatalf("GET: %d %v", resp.StatusCode, m)
	}
	resp, b = do("GET", "/dns-query?name=www.test&type=A", "", nil)
	var js struct{ Answer []struct{ Data string } }
	if json.Unmarshal(b, &js) != nil || resp.StatusCode != 200 || len(js.Answer) != 1 || js.Answer[0].Data != "192.0.2.10" {
		t.Fatalf("JSON: %d %s", resp.StatusCode, b)
	}
	// The kids' token blocks YouTube; an unknown token is 404.
	resp, b = do("POST", "/dns-query/kids-7f3a", "application/dns-message", wire("www.youtube.com.", dns.TypeA))
	if m := answer(b); resp.StatusCode != 200 || m.Rcode != dns.RcodeNameError {
		t.Fatalf("the kids' token: %d %v", resp.StatusCode, m)
	}
	for _, c := range []struct {
		method, path, ctype string
		body                []byte
		code                int
		field               string
	}{
		{"POST", "/dns-query", "text/plain", wire("www.test.", dns.TypeA), 415, "Content-Type"},
		{"POST", "/dns-query", "application/dns-message", make([]byte, 70000), 413, "body"},
		{"POST", "/dns-query", "application/dns-message", []byte("not dns"), 400, "dns"},
		{"GET", "/dns-query?dns=***", "", nil, 400, "dns"},
		{"GET", "/dns-query/nobody?name=www.test", "", nil, 404, "client"},
		{"GET", "/admin", "", nil, 404, "path"},
		{"PUT", "/dns-query", "application/dns-message", wire("www.test.", dns.TypeA), 405, "method"},
	} {
		resp, b := do(c.method, c.path, c.ctype, c.body)
		if resp.StatusCode != c.code || !strings.Contains(string(b), `"field":"`+c.field+`"`) {
			t.Fatalf("%s %s: %d %s, want %d naming %s", c.method, c.path, resp.StatusCode, b, c.code, c.field)
		}
	}
	// 300 names no cache holds, at once: each asks unbound (NXDOMAIN), on
	// goroutines beside the read loop, and every one is answered.
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", base+"/dns-query", bytes.NewReader(wire(fmt.Sprintf("n%d.test.", i), dns.TypeA)))
			req.Header.Set("Content-Type", "application/dns-message")
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			m := new(dns.Msg)
			if err := m.Unpack(b); err != nil || m.Rcode != dns.RcodeNameError {
				errs <- fmt.Errorf("n%d: %d %v %v", i, resp.StatusCode, err, m)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// kdig (nghttp2) over it.
	h, p := hostPort(t, addr)
	if got := kdig(t, "@"+h, "-p", p, "+tls-ca="+res.dotCA, "+tls-hostname=localhost", "+https=/dns-query", "www.test", "A"); len(got) != 1 || got[0] != "192.0.2.10" {
		t.Fatalf("kdig: %v", got)
	}
	// HTTP/1.1 only: Go's TLS lets a client offering http/1.1 in without
	// a protocol, and the listener then closes the connection.
	h1 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"},
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	if resp, err := h1.Get(base + "/dns-query?name=www.test"); err == nil {
		resp.Body.Close()
		t.Fatalf("an HTTP/1.1 request was answered: %s", resp.Status)
	}
}

// TestDoHListenerLimits: a client that opens streams without finishing
// them gets REFUSED_STREAM past 128 open ones; a HEADERS frame on an even
// stream id ends the connection with GOAWAY PROTOCOL_ERROR.
func TestDoHListenerLimits(t *testing.T) {
	res := startResolver(t, func(d *config.DNS) { d.DoHListen = "127.0.0.1:0" })
	addr := res.r.App.DNS().Addr("doh").String()
	roots := res.roots(t)
	dial := func() (*tls.Conn, *http2.Framer) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		io.WriteString(c, http2.ClientPreface)
		fr := http2.NewFramer(c, c)
		fr.WriteSettings()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, fr
	}
	headers := func(id uint32, end bool) []byte {
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", "/dns-query"}, {":authority", "localhost"}, {"content-type", "application/dns-message"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		return buf.Bytes()
	}
	_, fr := dial()
	for i := range 200 {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: headers(id, false), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	refused := 0
	for refused < 200-128 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d refusals: %v", refused, err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.ErrCode != http2.ErrCodeRefusedStream || rst.StreamID <= 2*128 {
				t.Fatalf("RST_STREAM %d %v", rst.StreamID, rst.ErrCode)
			}
			refused++
		}
	}
	_, fr = dial()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, BlockFragment: headers(2, true), EndHeaders: true, EndStream: true})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("GOAWAY %v", g.ErrCode)
			}
			break
		}
	}
}
