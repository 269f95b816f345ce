package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/opsgraph/ops/internal/config"
)

func TestNegotiate(t *testing.T) {
	for in, want := range map[string]string{
		"gzip, deflate, br, zstd": "br", "gzip": "gzip", "zstd, gzip": "zstd", "br;q=0.5, gzip;q=0.8": "gzip",
		"br;q=0, gzip": "gzip", "identity": "", "": "", "*": "br", "br;q=0, *": "zstd", "deflate": "", "GZIP": "gzip",
	} {
		if got := negotiate(in); got != want {
			t.Errorf("negotiate(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInjector(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"head", "<html><head><title>x</title></head><body>hi</body></html>", "<html><head><title>x</title>[H]</head><body>hi[B]</body></html>"},
		{"upper case", "<HTML><HEAD></HEAD><BODY></BODY>", "<HTML><HEAD>[H]</HEAD><BODY>[B]</BODY>"},
		{"no head", "<p>hi</p></body>", "<p>hi</p>[H][B]</body>"},
		{"neither", "just text < and <", "just text < and <"},
		{"only first", "</head></head></body></body>", "[H]</head></head>[B]</body></body>"},
		{"tag at the very end", "<head></head", "<head>[H]</head"},
		{"near miss", "</hea></header></head>", "</hea></header>[H]</head>"},
	} {
		for _, r := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{{"whole", func(r io.Reader) io.Reader { return r }}, {"one byte", iotest.OneByteReader}, {"half", iotest.HalfReader}} {
			j := &injector{src: r.wrap(strings.NewReader(c.in)), head: []byte("[H]"), body: []byte("[B]")}
			got, err := io.ReadAll(j)
			if err != nil || string(got) != c.want {
				t.Errorf("%s/%s: %q %v, want %q", c.name, r.name, got, err, c.want)
			}
		}
	}
}

func encodeAs(t *testing.T, enc string, b []byte) []byte {
	var buf bytes.Buffer
	switch enc {
	case "gzip":
		w := gzip.NewWriter(&buf)
		_, _ = w.Write(b)
		_ = w.Close()
	case "br":
		w := brotli.NewWriter(&buf)
		_, _ = w.Write(b)
		_ = w.Close()
	case "zstd":
		w, _ := zstd.NewWriter(&buf)
		_, _ = w.Write(b)
		_ = w.Close()
	default:
		return b
	}
	return buf.Bytes()
}

func decodeAs(t *testing.T, enc string, b []byte) string {
	r, ok := decode(enc, bytes.NewReader(b))
	if !ok {
		t.Fatalf("cannot decode %s", enc)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode %s: %v", enc, err)
	}
	return string(out)
}

// TestApply: HTML in any upstream encoding gets the tracker and leaves in
// the client's encoding; no-transform, ranges and other types are left
// alone; lengths and validators stay truthful.
func TestApply(t *testing.T) {
	page := "<html><head><title>t</title></head><body>" + strings.Repeat("hello world ", 400) + "</body></html>"
	tf := newTransform(config.Route{Compress: "auto", Inject: config.Inject{Tracker: true, WriteKey: "wk_123", Head: "<style>x{}</style>", CSPNonce: true}})
	run := func(upEnc, accept string, hdr http.Header, body string) (*http.Response, string) {
		b := encodeAs(t, upEnc, []byte(body))
		h := http.Header{"Content-Type": {"text/html; charset=utf-8"}, "Etag": {`"v1"`}, "Content-Length": {"1"}}
		if upEnc != "" {
			h.Set("Content-Encoding", upEnc)
		}
		for k, v := range hdr {
			h[k] = v
		}
		req, _ := http.NewRequest("GET", "http://x/", nil)
		req.Header.Set("Accept-Encoding", accept)
		resp := &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(bytes.NewReader(b)), ContentLength: int64(len(b)), Request: req}
		tf.apply(req, resp)
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp, decodeAs(t, resp.Header.Get("Content-Encoding"), out)
	}
	tag := `<script defer src="/_ops/ops.js" data-api="/_ops" data-key="wk_123"></script><style>x{}</style></head>`
	for _, up := range []string{"", "gzip", "br", "zstd"} {
		for _, acc := range []string{"", "gzip", "br", "zstd", "gzip, deflate, br"} {
			resp, got := run(up, acc, nil, page)
			if !strings.Contains(got, tag) || len(got) != len(page)+len(tag)-len("</head>") {
				t.Errorf("upstream %q, accept %q: tracker not injected once: %.200s", up, acc, got)
			}
			if resp.Header.Get("Content-Length") != "" || resp.ContentLength != -1 || resp.Header.Get("Etag") != `W/"v1"` {
				t.Errorf("upstream %q: length/etag %v", up, resp.Header)
			}
			if want := negotiate(acc); resp.Header.Get("Content-Encoding") != want {
				t.Errorf("upstream %q accept %q: sent %q, want %q", up, acc, resp.Header.Get("Content-Encoding"), want)
			}
		}
	}
	// CSP nonce is reused on inserted tags.
	_, got := run("", "", http.Header{"Content-Security-Policy": {"script-src 'self' 'nonce-abc123'"}}, page)
	if !strings.Contains(got, `data-key="wk_123" nonce="abc123"></script><style nonce="abc123">`) {
		t.Errorf("nonce: %.300s", got)
	}
	// no-transform: byte for byte.
	resp, got := run("gzip", "br", http.Header{"Cache-Control": {"no-transform"}}, page)
	if got != page || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Etag") != `"v1"` {
		t.Errorf("no-transform changed: %v", resp.Header)
	}
	// Plain text is compressed, not injected; small bodies are left alone.
	text := strings.Repeat("abc ", 1000)
	tfc := newTransform(config.Route{Compress: "auto"})
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.Header.Set("Accept-Encoding", "zstd")
	r2 := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(strings.NewReader(text)), ContentLength: int64(len(text))}
	tfc.apply(req, r2)
	out, _ := io.ReadAll(r2.Body)
	if r2.Header.Get("Content-Encoding") != "zstd" || decodeAs(t, "zstd", out) != text || len(out) > len(text)/4 || r2.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("compression: %v %d bytes", r2.Header, len(out))
	}
	r3 := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"4"}}, Body: io.NopCloser(strings.NewReader("tiny")), ContentLength: 4}
	tfc.apply(req, r3)
	if r3.Header.Get("Content-Encoding") != "" || r3.Header.Get("Content-Length") != "4" {
		t.Errorf("tiny body compressed: %v", r3.Header)
	}
	r4 := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"image/png"}}, Body: io.NopCloser(strings.NewReader(text)), ContentLength: -1}
	tfc.apply(req, r4)
	if r4.Header.Get("Content-Encoding") != "" {
		t.Error("png compressed")
	}
}

func FuzzInjector(f *testing.F) {
	f.Add("<head></head><body></body>", uint8(1))
	f.Add("</HEAD", uint8(3))
	f.Add("<<<</bo</body", uint8(2))
	f.Fuzz(func(t *testing.T, in string, chunk uint8) {
		var r io.Reader = strings.NewReader(in)
		if chunk%3 == 1 {
			r = iotest.OneByteReader(r)
		} else if chunk%3 == 2 {
			r = iotest.HalfReader(r)
		}
		got, err := io.ReadAll(&injector{src: r, head: []byte("\x00H"), body: []byte("\x00B")})
		if err != nil {
			t.Fatal(err)
		}
		// Removing what was inserted gives the input back, and each
		// snippet went in at most once.
		s := string(got)
		if strings.Count(s, "\x00H")-strings.Count(in, "\x00H") > 1 || strings.Count(s, "\x00B")-strings.Count(in, "\x00B") > 1 {
			t.Fatalf("inserted twice: %q", s)
		}
		if !strings.Contains(in, "\x00") && strings.NewReplacer("\x00H", "", "\x00B", "").Replace(s) != in {
			t.Fatalf("content changed: %q -> %q", in, s)
		}
	})
}
