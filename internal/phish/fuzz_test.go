package phish

import (
	"testing"

	"github.com/opsgraph/ops/internal/config"
)

// FuzzFeed: any feed body in any format parses or fails with an error.
func FuzzFeed(f *testing.F) {
	f.Add("urlhaus", []byte("# c\n\"1\",\"2026\",\"http://x.test/a\",\"online\"\n"))
	f.Add("phishtank", []byte(`[{"url":"http://x.test/"}]`))
	f.Add("phishtank", []byte("phish_id,url\n1,\"http://x\"\n"))
	f.Add("domains", []byte("0.0.0.0 x.test\n# c\n"))
	f.Add("openphish", []byte("http://x.test/\n"))
	f.Fuzz(func(t *testing.T, format string, b []byte) {
		_, _, _ = ParseFeed(format, b)
	})
}

// FuzzCheck: any target is judged or refused with an error, never a
// panic, and a verdict's score is the sum of its reasons.
func FuzzCheck(f *testing.F) {
	c, err := New(config.Phishing{Protect: config.Strings{"paypal.com", "example.co.uk"}, BlockScore: 100, WarnScore: 50}, "", nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"xn--pypal-4ve.com", "http://paypal.com.evil.net/x", "paypa1-secure.test", "[::1]:80", "http://%zz", "a..b", "ẞ.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		v, err := c.Check(target, false)
		if err != nil {
			return
		}
		sum := 0
		for _, r := range v.Reasons {
			sum += r.Score
		}
		if sum != v.Score {
			t.Fatalf("%q: score %d, reasons add to %d", target, v.Score, sum)
		}
	})
}
