package dnsd

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/opsgraph/ops/internal/config"
)

func seedQuery(name string, qtype uint16, edns bool) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(4096, true)
		o := m.IsEdns0()
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{192, 0, 2, 0}}, &dns.EDNS0_PADDING{Padding: make([]byte, 8)})
	}
	b, _ := m.Pack()
	return b
}

// FuzzReadDoH: whatever a DoH request holds (query string, content type,
// body), it is read as one question or refused with a field, never a
// panic.
func FuzzReadDoH(f *testing.F) {
	f.Add("GET", "dns=AAABAAABAAAAAAAAA3d3dwRoZXN0AAABAAE", "", []byte(nil))
	f.Add("GET", "name=www.test&type=AAAA&do=1", "", []byte(nil))
	f.Add("POST", "", "application/dns-message", seedQuery("www.test.", dns.TypeA, true))
	f.Add("POST", "", "application/dns-message; charset=x", []byte{0, 0})
	f.Add("GET", "dns=====", "", []byte(nil))
	f.Fuzz(func(t *testing.T, method, query, ctype string, body []byte) {
		if method != "GET" {
			method = "POST"
		}
		r, err := http.NewRequest(method, "http://x/dns-query", bytes.NewReader(body))
		if err != nil {
			return
		}
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", ctype)
		m, _, field, err := readDoH(r)
		if err != nil {
			if field == "" {
				t.Fatalf("an error without a field: %v", err)
			}
			return
		}
		if len(m.Question) != 1 {
			t.Fatalf("%d questions passed", len(m.Question))
		}
	})
}

// FuzzResolve: any message that parses gets an answer that packs, with
// its id, whatever it asks (the upstreams are unreachable here, so the
// cache, the filter and the error paths are what runs).
func FuzzResolve(f *testing.F) {
	f.Add(seedQuery("www.test.", dns.TypeA, false))
	f.Add(seedQuery("ads.test.", dns.TypeAAAA, true))
	f.Add(seedQuery(".", dns.TypeANY, true))
	f.Add(seedQuery("0123abcd.check.example.", dns.TypeAAAA, false))
	f.Add([]byte{0, 1, 0x80, 0, 0, 2, 0, 0, 0, 0, 0, 0})
	cfg := config.Default().DNS
	cfg.Block.Mode = "null"
	cfg.CheckDomain, cfg.CheckAddress = "check.example", "192.0.2.9"
	s, err := New(cfg, Deps{})
	if err != nil {
		f.Fatal(err)
	}
	s.filter().addLine("||ads.test^", "seed")
	f.Fuzz(func(t *testing.T, wire []byte) {
		req := new(dns.Msg)
		if req.Unpack(wire) != nil {
			return
		}
		for _, via := range []string{viaUDP, viaDoH} {
			resp := s.resolve(context.Background(), req.Copy(), caller{addr: netip.MustParseAddr("192.0.2.1"), via: via})
			if resp.Id != req.Id || !resp.Response {
				t.Fatalf("answer id %d response %v for query %d", resp.Id, resp.Response, req.Id)
			}
			if _, err := resp.Pack(); err != nil && !strings.Contains(err.Error(), "overflow") {
				t.Fatalf("answer does not pack: %v\n%v", err, resp)
			}
		}
	})
}

// FuzzList: a block list (from a file or a URL: outside input) of any
// content parses without a panic, and whatever it blocks is a valid name.
func FuzzList(f *testing.F) {
	for _, s := range []string{"||ads.example^\n@@||ok.ads.example^", "0.0.0.0 a.example b.example # c", "*.x.example", "/^ad[0-9]+\\./",
		"example.com##.banner", "||a^$important,third-party", "/(/", "\x00\xff", strings.Repeat("a.", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		fl := newFilter()
		if err := fl.addList(strings.NewReader(list), "fuzz"); err != nil {
			return
		}
		for name := range fl.rules {
			if !hostName(name) {
				t.Fatalf("rule for %q, not a host name", name)
			}
		}
		fl.match("a.b.example")
	})
}

// FuzzQueryDataJSON: the hand-written event encoder writes what
// encoding/json writes, for any name and rule.
func FuzzQueryDataJSON(f *testing.F) {
	f.Add("www.example.com", "block.txt:3", "tls://1.1.1.1:853", 1.25, true)
	f.Add("a\\000b.\"x\".<&>", "policy:x (a \u2028 b)", "", 0.0, false)
	f.Add("\xff\xfe", "\x00\x1f", "é", 1e-7, true)
	f.Fuzz(func(t *testing.T, name, rule, up string, ms float64, blocked bool) {
		if math.IsNaN(ms) || math.IsInf(ms, 0) {
			return
		}
		d := queryData{Client: "192.0.2.0", ClientName: rule, Name: name, Type: "A", Rcode: "NOERROR", Answers: 2, Blocked: blocked, Rule: rule, Upstream: up,
			Transport: "doh", DurationMS: ms}
		want, err := json.Marshal(d)
		if err != nil {
			t.Skip()
		}
		if got := d.appendJSON(nil); string(got) != string(want) {
			t.Fatalf("\ngot  %s\nwant %s", got, want)
		}
	})
}

// FuzzValidate: whatever an upstream answers (to the query and to every
// DS and DNSKEY query the chain makes), validation ends with a verdict
// and never panics or loops.
func FuzzValidate(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"www.example.test.", dns.TypeA}, {"example.test.", dns.TypeDNSKEY}, {"x.example.test.", dns.TypeDS}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.Response = true
		a, _ := dns.NewRR(q.name + " 300 IN A 192.0.2.1")
		sig, _ := dns.NewRR(q.name + " 300 IN RRSIG A 13 3 300 20300101000000 20200101000000 12345 example.test. AAAA")
		nsec, _ := dns.NewRR("example.test. 300 IN NSEC zz.example.test. A NS SOA RRSIG NSEC")
		nsec3, _ := dns.NewRR("0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.example.test. 300 IN NSEC3 1 1 0 - 0p9mhaveqvm6t7vbl5lop2u3t2rp3too A RRSIG")
		m.Answer = []dns.RR{a, sig}
		m.Ns = []dns.RR{nsec, nsec3}
		b, _ := m.Pack()
		f.Add(b, q.qtype)
	}
	f.Fuzz(func(t *testing.T, wire []byte, qtype uint16) {
		r := new(dns.Msg)
		if r.Unpack(wire) != nil {
			return
		}
		v, err := newValidator([]string{"example.test. IN DS 12345 13 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"}, nil,
			func(context.Context, string, uint16) (*dns.Msg, error) { return r, nil })
		if err != nil {
			t.Fatal(err)
		}
		x := v.check(context.Background(), "www.example.test.", qtype, r)
		if x.state == secure && len(r.Answer)+len(r.Ns) == 0 {
			t.Fatalf("an empty answer validated secure: %v", r)
		}
	})
}

// FuzzReadDoQ: whatever a DoQ stream holds, reading it gives a message
// or an error, never a panic.
func FuzzReadDoQ(f *testing.F) {
	q := seedQuery("www.example.com.", dns.TypeA, true)
	f.Add(append([]byte{byte(len(q) >> 8), byte(len(q))}, q...))
	f.Add([]byte{0, 3, 1, 2, 3})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := readDoQ(bytes.NewReader(b))
		if err == nil && m == nil {
			t.Fatal("no message and no error")
		}
	})
}

// FuzzH2: whatever a client sends after the HTTP/2 preface, the DoH
// listener's connection ends (an error or the input's end) without a
// panic or a hang. Seeds: a valid POST and GET, settings, pings, window
// updates, a reset, an even stream id.
func FuzzH2(f *testing.F) {
	frames := func(write func(fr *http2.Framer)) []byte {
		var b bytes.Buffer
		write(http2.NewFramer(&b, nil))
		return b.Bytes()
	}
	hdr := func(method, path string) []byte {
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		for _, kv := range [][2]string{{":method", method}, {":scheme", "https"}, {":path", path}, {":authority", "x"}, {"content-type", "application/dns-message"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		return b.Bytes()
	}
	q := seedQuery("www.test.", dns.TypeA, false)
	f.Add(frames(func(fr *http2.Framer) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr("POST", "/dns-query"), EndHeaders: true})
		_ = fr.WriteData(1, true, q)
		_ = fr.WriteWindowUpdate(0, 100)
		_ = fr.WriteWindowUpdate(1, 100)
		_ = fr.WritePing(false, [8]byte{1})
	}))
	f.Add(frames(func(fr *http2.Framer) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hdr("GET", "/dns-query?name=www.test"), EndHeaders: true, EndStream: true})
		_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, BlockFragment: hdr("GET", "/"), EndHeaders: true, EndStream: true})
	}))
	cfg := config.Default().DNS
	cfg.Upstreams = config.Strings{"udp://127.0.0.1:1"}
	cfg.Timeout = config.Duration(50 * time.Millisecond)
	s, err := New(cfg, Deps{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &scriptConn{r: bytes.NewReader(append([]byte(http2.ClientPreface), in...))}
		done := make(chan struct{})
		go func() { _ = s.newH2Conn(c, nil).run(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection did not end")
		}
	})
}

// scriptConn is a client that sends a script, then ends; what the server
// writes is dropped.
type scriptConn struct {
	r *bytes.Reader
}

func (c *scriptConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *scriptConn) Write(b []byte) (int, error) { return len(b), nil }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5555}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
