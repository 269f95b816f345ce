package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

// fuzzHead finds a head at the start of in as the fast path does (in a
// 512-byte buffer), or false.
func fuzzHead(in []byte) ([]byte, bool) {
	br := bufio.NewReaderSize(bytes.NewReader(in), 512)
	n, err := peekHead(br, nil)
	if err != nil {
		return nil, false
	}
	head, _ := br.Peek(n)
	return bytes.Clone(head), true
}

var headSeeds = []string{
	"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
	"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: curl/8\r\nReferer: https://news.example/\r\nAccept: */*\r\n\r\n",
	"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
	"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-User: root\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET /%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip, br\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
}

// FuzzFastHead holds the fast path's request parser to net/http's: what it
// accepts, net/http accepts too and reads the same way; what it refuses
// goes to net/http anyway, so refusing is always safe.
func FuzzFastHead(f *testing.F) {
	for _, s := range headSeeds {
		f.Add([]byte(s))
	}
	idh := spoofable([]string{"X-Forwarded-User", "X-Forwarded-Groups", "X-Forwarded-Email"})
	f.Fuzz(func(t *testing.T, in []byte) {
		head, ok := fuzzHead(in)
		if !ok {
			return
		}
		n := len(head)
		var h reqHead
		if !parseRequestHead(head, &h, idh) {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatalf("fast path accepted what net/http refuses (%v): %q", err, in)
		}
		if r.Method != string(h.method) || r.URL.Path != string(h.path) || r.URL.RawQuery != string(h.query) ||
			r.RequestURI != string(h.target) || r.Host != string(h.host) {
			t.Fatalf("request line/host differ: net/http %s %q %q %q, fast %s %q %q %q", r.Method, r.URL.Path, r.URL.RawQuery, r.Host,
				h.method, h.path, h.query, h.host)
		}
		wantCL := r.ContentLength
		if _, ok := r.Header["Content-Length"]; !ok {
			wantCL = -1
		}
		if wantCL != h.contentLength {
			t.Fatalf("content length: net/http %d, fast %d", wantCL, h.contentLength)
		}
		if r.Close != h.close {
			t.Fatalf("close: net/http %v, fast %v", r.Close, h.close)
		}
		if r.UserAgent() != string(h.ua) || r.Referer() != string(h.referrer) {
			t.Fatalf("user agent/referrer: %q %q vs %q %q", r.UserAgent(), r.Referer(), h.ua, h.referrer)
		}
		if got := strings.Join(r.Header.Values("X-Forwarded-For"), ","); got != string(bytes.Join(h.xff, []byte(","))) {
			t.Fatalf("x-forwarded-for: %q vs %q", got, bytes.Join(h.xff, []byte(",")))
		}
		// Every field passed on is one net/http read, with the same value.
		for _, fl := range h.fields {
			if fl.kind == hSkip {
				continue
			}
			vals := r.Header.Values(string(fl.name))
			found := false
			for _, v := range vals {
				if v == string(fl.value) {
					found = true
				}
			}
			if !found {
				t.Fatalf("field %q: %q not among net/http's %q", fl.name, fl.value, vals)
			}
			for _, id := range idh {
				if strings.EqualFold(id, string(fl.name)) {
					t.Fatalf("identity field %q passed on", fl.name)
				}
			}
		}
		// The head ends where net/http's does: its body starts at byte n.
		if r.ContentLength > 0 {
			body, err := io.ReadAll(r.Body)
			if err == nil && !bytes.HasPrefix(in[n:], body) {
				t.Fatalf("body framing differs")
			}
		}
	})
}

var respSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nVary: Accept-Encoding\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	"HTTP/1.1 999\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nCache-Control: public, no-transform\r\n\r\n",
}

// FuzzResponseHead holds the upstream response parser to net/http's
// client: a head it accepts, http.ReadResponse accepts with the same
// status and framing.
func FuzzResponseHead(f *testing.F) {
	for _, s := range respSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		head, ok := fuzzHead(in)
		if !ok {
			return
		}
		var h respHead
		if parseResponseHead(head, &h) != nil {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(in)), &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("accepted what net/http refuses (%v): %q", err, in)
		}
		if resp.StatusCode != h.code {
			t.Fatalf("status %d vs %d", resp.StatusCode, h.code)
		}
		chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
		if chunked != h.chunked {
			t.Fatalf("chunked: net/http %v, fast %v", chunked, h.chunked)
		}
		if !h.chunked && !bodyless([]byte("GET"), h.code) && resp.ContentLength != h.contentLength {
			t.Fatalf("length: net/http %d, fast %d", resp.ContentLength, h.contentLength)
		}
	})
}

func FuzzChunkSize(f *testing.F) {
	for _, s := range []string{"0", "1a", "FFFF;ext=1", " 3 ", "-1", "", "10000000000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseChunkSize([]byte(s))
		if ok && n < 0 {
			t.Fatalf("%q: negative size %d", s, n)
		}
	})
}

// requestData's hand-written encoder writes exactly what encoding/json
// does.
func TestRequestDataJSON(t *testing.T) {
	for _, d := range []requestData{
		{Route: "r", Method: "GET", Host: "h", Path: "/", Status: 200, Cache: "none", Proto: "HTTP/1.1"},
		{Route: "r", Method: "GET", Host: "h", Path: "/", Status: 200, Type: "text/html", Cache: "none", Proto: "HTTP/1.1"},
		{Route: "r", Method: "POST", Host: "ex.com:80", Path: "/a\"b\\c<d>&\u2028\x01", Query: "q=1&utm_source=x", Status: 502,
			BytesIn: 5, BytesOut: 1 << 40, DurationMS: 0.0000001, Upstream: "127.0.0.1:1", Cache: "hit", User: "ü", IP: "10.0.0.0",
			UserAgent: "Mozilla/5.0 \xff", Referrer: "https://a/", RefHost: "a", UTM: map[string]string{"source": "x", "campaign": "y\n"}, Proto: "HTTP/2.0"},
		{DurationMS: 12.345}, {DurationMS: 1e21}, {DurationMS: 123456789.5},
	} {
		want, _ := json.Marshal(&d)
		if got := d.appendJSON(nil); string(got) != string(want) {
			t.Errorf("appendJSON:\n got %s\nwant %s", got, want)
		}
	}
}

func FuzzRequestDataJSON(f *testing.F) {
	f.Add("GET", "/a?b", "Mozilla", "https://x/", "utm", 1.5)
	f.Fuzz(func(t *testing.T, method, path, ua, ref, utm string, ms float64) {
		if ms != ms || ms > 1e300 || ms < -1e300 { // NaN and infinities are not durations
			return
		}
		d := requestData{Route: "r", Method: method, Path: path, UserAgent: ua, Referrer: ref, DurationMS: ms, Cache: "none"}
		if utm != "" {
			d.UTM = map[string]string{utm: ua, "a": path}
		}
		want, _ := json.Marshal(&d)
		if got := d.appendJSON(nil); string(got) != string(want) {
			t.Fatalf("appendJSON:\n got %s\nwant %s", got, want)
		}
	})
}

// FuzzCopyChunked: a chunked body the fast path passes on is one that
// net/http's chunked reader decodes to as many bytes, and what is passed
// on is exactly the bytes read.
func FuzzCopyChunked(f *testing.F) {
	for _, s := range []string{"3\r\nabc\r\n0\r\n\r\n", "1;x=y\r\na\r\n0\r\nTrailer: v\r\n\r\n", "ff\r\nshort\r\n", "0\r\n\r\nextra", "3\nabc\n0\n\n", "-1\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		fc := &fastConn{bw: bufio.NewWriter(&out)}
		pc := &h1Conn{br: bufio.NewReaderSize(bytes.NewReader(in), 64)}
		n, err := fc.copyChunked(pc)
		if err != nil {
			return
		}
		_ = fc.bw.Flush()
		rest, _ := io.ReadAll(pc.br)
		if !bytes.Equal(out.Bytes(), in[:len(in)-len(rest)]) {
			t.Fatalf("passed on %q of %q", out.Bytes(), in)
		}
		data, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(out.Bytes())))
		if err != nil || int64(len(data)) != n {
			t.Fatalf("net/http reads %d bytes (%v), fast path counted %d: %q", len(data), err, n, out.Bytes())
		}
	})
}
