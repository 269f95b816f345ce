package webfilter

import (
	"bytes"
	"net/url"
	"testing"
	"testing/fstest"
)

// FuzzRules: any rule file loads or fails with an error, never panics,
// and a loaded set scores any text and URL.
func FuzzRules(f *testing.F) {
	f.Add([]byte("default 50\nexample.com\nexample.com/path 10\n/re(gex)?/ 5\n<a phrase> 10 30\n"), "http://a.example.com/path?q=1", []byte("a phrase a phrase"))
	f.Add([]byte("<>\n/\n< > -5\nxn--bcher-kva.example\n"), "http://[::1]/", []byte("<b>x</b>"))
	f.Fuzz(func(t *testing.T, rules []byte, raw string, text []byte) {
		s, err := Load(fstest.MapFS{"c/category.conf": {Data: []byte("action = block\n")}, "c/rules": {Data: rules}}, nil)
		if err != nil {
			return
		}
		sc := s.NewScores()
		if u, err := url.Parse(raw); err == nil {
			sc.URL(u)
		}
		sc.Text(text)
		sc.Totals()
	})
}

// FuzzPage: any bytes as HTML, and as an encoded body, parse without a
// panic, and Peek hands back a prefix of what it read.
func FuzzPage(f *testing.F) {
	f.Add([]byte("<title>x</title><form action=/a><input type=password>"), "gzip")
	f.Add([]byte("\x1f\x8b\x08\x00"), "gzip")
	f.Add([]byte("\x28\xb5\x2f\xfd"), "zstd")
	f.Fuzz(func(t *testing.T, b []byte, enc string) {
		ParseHTML(b)
		_, raw, _ := Peek(bytes.NewReader(b), enc, 1<<12, 1<<14)
		if !bytes.HasPrefix(b, raw) {
			t.Fatalf("raw %q is not a prefix of the body", raw)
		}
	})
}
