package webfilter

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

func starterSet(t testing.TB) *Set {
	t.Helper()
	s, err := Load(StarterFS(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestClassifyPages: known pages and URLs land in the category a person
// would put them in, or in none.
func TestClassifyPages(t *testing.T) {
	s := starterSet(t)
	cases := []struct {
		name, url, html string
		want            string // "" no category over the threshold
		min             int
	}{
		{"adult page by phrases", "http://pics.example.net/gallery",
			`<html><head><title>Free porn videos</title></head><body><h1>Hardcore porn videos</h1><p>XXX videos updated daily. Live sex cams.</p>
			<footer>18 U.S.C. 2257 Record-Keeping Requirements Compliance Statement</footer><script>var sex="sex sex sex sex sex";</script></body></html>`, "adult", 200},
		{"adult domain alone", "http://www.adult-example.test/", "", "adult", 100},
		{"adult by URL regexp", "http://videos.example.net/free-porn/clip", "", "", 0},
		{"sexual health page pulls back", "http://clinic.example.org/",
			`<title>Sexual health clinic</title><p>Sex education for teenagers, sexual health advice, breast cancer screening. Sex, sex and sex.</p>`, "", 0},
		{"casino page", "http://win.example.com/",
			`<title>Online Casino</title><p>Claim 100 free spins and a welcome bonus at our online casino! Roulette, blackjack and slot machines. Place your bet.</p>`, "gambling", 100},
		{"gambling help page", "http://help.example.org/",
			`<p>Problem gambling help: if roulette or blackjack cost you sleep, call us.</p>`, "", 0},
		{"plain news page", "http://news.example.com/story",
			`<title>Council votes on budget</title><p>The council approved the budget on Tuesday after a long debate about roads and schools.</p>`, "", 0},
		{"entities decoded", "http://x.example/",
			`<p>hardcore&#32;porn &amp; hardcore&nbsp;porn, hardcore porn</p>`, "adult", 180},
		{"search query scored", "https://www.google.com/search?q=hardcore+porn+videos", "", "adult", 100},
		{"scam page", "http://support-alert.example/",
			`<h1>Your computer is infected!</h1><p>Call Microsoft support now</p>`, "malware", 100},
		{"education allow", "https://en.wikipedia.org/wiki/Poker", "", "education", 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, _ := url.Parse(c.url)
			sc := s.NewScores()
			sc.URL(u)
			if c.html != "" {
				sc.Text(ParseHTML([]byte(c.html)).Text)
			}
			top, ok := sc.Top(100)
			if c.want == "" {
				if ok {
					t.Fatalf("classified as %+v (all %+v), want none", top, sc.Totals())
				}
				return
			}
			if !ok || top.Category != c.want || top.Score < c.min {
				t.Fatalf("got %+v ok=%v (all %+v), want %s with >= %d", top, ok, sc.Totals(), c.want, c.min)
			}
		})
	}
}

// TestURLRegexpAddsToPhrases: a regexp hit alone (60) is under the
// threshold; with a phrase on the page it is over.
func TestURLRegexpAddsToPhrases(t *testing.T) {
	s := starterSet(t)
	u, _ := url.Parse("http://videos.example.net/free-porn/clip")
	sc := s.NewScores()
	sc.URL(u)
	if top := sc.Totals(); len(top) != 1 || top[0].Score != 60 {
		t.Fatalf("regexp alone: %+v, want adult 60", top)
	}
	sc.Text([]byte("porn videos"))
	if top, ok := sc.Top(100); !ok || top.Category != "adult" {
		t.Fatalf("with a phrase: %+v", sc.Totals())
	}
}

// TestPhraseCap: a phrase repeated without end stops counting at its cap.
func TestPhraseCap(t *testing.T) {
	s := starterSet(t)
	sc := s.NewScores()
	sc.Text([]byte(strings.Repeat("sex ", 1000)))
	if top := sc.Totals(); len(top) != 1 || top[0].Score != 25 {
		t.Fatalf("got %+v, want adult capped at 25", top)
	}
}

func TestHostRules(t *testing.T) {
	fsys := fstest.MapFS{
		"news/category.conf":   {Data: []byte("description: News\naction: allow\n")},
		"news/list":            {Data: []byte("default 150\nexample.com/news\nbücher.example 20\n")},
		"social/category.conf": {Data: []byte("action = warn\nweight = 2\n")},
		"social/domains":       {Data: []byte("example.com 30\nchat.example.com 70\n")},
		"notes.txt":            {Data: []byte("not a category")},
	}
	s, err := Load(fsys, map[string][]byte{"social": []byte("feed.example\n")})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]Score{
		"http://example.com/news/today": {{"news", 150}, {"social", 60}},
		"http://EXAMPLE.com./NEWS":      {{"news", 150}, {"social", 60}},
		"http://example.com/other":      {{"social", 60}},
		"http://a.chat.example.com/":    {{"social", 140}}, // the most specific host rule of a category counts, once
		"http://xn--bcher-kva.example/": {{"news", 20}},
		"http://feed.example/":          {{"social", 200}},
		"http://notexample.com/news":    nil,
	}
	for raw, want := range cases {
		u, _ := url.Parse(raw)
		sc := s.NewScores()
		sc.URL(u)
		got := sc.Totals()
		if len(got) != len(want) {
			t.Errorf("%s: got %+v, want %+v", raw, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: got %+v, want %+v", raw, got, want)
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"action":   {"a/category.conf": {Data: []byte("action = explode\n")}},
		"key":      {"a/category.conf": {Data: []byte("colour = red\n")}},
		"regexp":   {"a/category.conf": {Data: []byte("")}, "a/r": {Data: []byte("/(/ 10\n")}},
		"phrase":   {"a/category.conf": {Data: []byte("")}, "a/r": {Data: []byte("<open 10\n")}},
		"score":    {"a/category.conf": {Data: []byte("")}, "a/r": {Data: []byte("example.com ten\n")}},
		"host":     {"a/category.conf": {Data: []byte("")}, "a/r": {Data: []byte("exa\x01mple.com\n")}},
		"list_url": {"a/category.conf": {Data: []byte("list_url = ftp://x\n")}},
	} {
		if _, err := Load(fsys, nil); err == nil {
			t.Errorf("%s: loaded, want an error", name)
		} else if !strings.Contains(err.Error(), "a/") {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
}

// TestPeekEncodings: the scanner sees the same text through gzip, br and
// zstd, and hands back exactly the raw bytes it read.
func TestPeekEncodings(t *testing.T) {
	body := []byte("<html><title>x</title><p>" + strings.Repeat("hardcore porn ", 5000) + "</p></html>")
	enc := map[string]func([]byte) []byte{
		"": func(b []byte) []byte { return b },
		"gzip": func(b []byte) []byte {
			var buf bytes.Buffer
			w := gzip.NewWriter(&buf)
			w.Write(b)
			w.Close()
			return buf.Bytes()
		},
		"br": func(b []byte) []byte {
			var buf bytes.Buffer
			w := brotli.NewWriter(&buf)
			w.Write(b)
			w.Close()
			return buf.Bytes()
		},
		"zstd": func(b []byte) []byte {
			w, _ := zstd.NewWriter(nil)
			return w.EncodeAll(b, nil)
		},
	}
	for name, f := range enc {
		raw := f(body)
		r := bytes.NewReader(raw)
		dec, got, err := Peek(r, name, 4096, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(dec) != 4096 || !bytes.Equal(dec, body[:4096]) {
			t.Fatalf("%s: decoded %d bytes, want the first 4096 of the body", name, len(dec))
		}
		rest := raw[len(got):]
		if !bytes.Equal(append(append([]byte{}, got...), rest...), raw) || r.Len() != len(rest) {
			t.Fatalf("%s: raw prefix and the rest do not make the body", name)
		}
	}
	if _, _, err := Peek(strings.NewReader("x"), "compress", 10, 10); err == nil {
		t.Fatal("compress: no error")
	}
}

// TestParseHTMLForms: the phishing check's inputs.
func TestParseHTMLForms(t *testing.T) {
	p := ParseHTML([]byte(`<html><head><title> PayPal: Log in </title><style>.x{}</style></head><body>
	<form action="https://collect.example/p"><input name=u><INPUT TYPE=Password name=p></form><img alt="PayPal logo"></body>`))
	if p.Title != "PayPal: Log in" || !p.PasswordForm || len(p.FormActions) != 1 || p.FormActions[0] != "https://collect.example/p" {
		t.Fatalf("%+v", p)
	}
	if strings.Contains(" "+string(p.Text)+" ", " x ") || !strings.Contains(string(p.Text), "paypal logo") {
		t.Fatalf("text %q", p.Text)
	}
}

func TestSafeSearch(t *testing.T) {
	for raw, want := range map[string]string{
		"http://www.google.com/search?q=cats":          "http://www.google.com/search?q=cats&safe=active",
		"http://www.google.co.uk/search?q=x&safe=off":  "http://www.google.co.uk/search?q=x&safe=active",
		"http://www.bing.com/search?q=x":               "http://www.bing.com/search?adlt=strict&q=x",
		"http://duckduckgo.com/?q=x":                   "http://duckduckgo.com/?kp=1&q=x",
		"http://search.yahoo.com/search?p=x":           "http://search.yahoo.com/search?p=x&vm=r",
		"http://www.google.evil.example/search?q=cats": "http://www.google.evil.example/search?q=cats",
	} {
		r, _ := http.NewRequest("GET", raw, nil)
		SafeSearchRequest(r)
		if r.URL.String() != want {
			t.Errorf("%s: got %s, want %s", raw, r.URL, want)
		}
	}
	r, _ := http.NewRequest("GET", "http://www.youtube.com/watch?v=1", nil)
	if !SafeSearchRequest(r) || r.Header.Get("YouTube-Restrict") != "Strict" {
		t.Fatal("youtube: no YouTube-Restrict header")
	}
	for host, want := range map[string]string{"www.google.de": "forcesafesearch.google.com", "www.bing.com": "strict.bing.com",
		"duckduckgo.com": "safe.duckduckgo.com", "www.youtube.com": "restrict.youtube.com", "example.com": ""} {
		if got := SafeSearchHost(host); got != want {
			t.Errorf("%s: %q, want %q", host, got, want)
		}
	}
}

// BenchmarkScanPage: the content filter's cost per page, HTML parse and
// phrase count, on 256 KiB of ordinary HTML (bench/forward prints it in
// MB/s beside the proxy figures).
func BenchmarkScanPage(b *testing.B) {
	s := starterSet(b)
	var page strings.Builder
	for page.Len() < 256<<10 {
		page.WriteString("<p>The council approved the budget on Tuesday after a long debate about roads, schools and the <a href='/l'>library</a>.</p>\n")
	}
	raw := []byte(page.String())
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		sc := s.NewScores()
		sc.Normalized(ParseHTML(raw).Text)
		sc.Totals()
	}
}
