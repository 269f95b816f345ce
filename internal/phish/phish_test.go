package phish

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
)

func checker(t testing.TB, feeds ...config.PhishFeed) *Checker {
	t.Helper()
	c, err := New(config.Phishing{Protect: config.Strings{"paypal.com", "paypal.me", "microsoft.com", "google.com", "example-bank.co.uk"},
		Feeds: feeds, Refresh: config.Duration(time.Hour), BlockScore: 100, WarnScore: 50}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Refresh(context.Background())
	return c
}

func kinds(v Verdict) string {
	var k []string
	for _, r := range v.Reasons {
		k = append(k, r.Kind)
	}
	return strings.Join(k, ",")
}

// TestLookalikes: the cases and the usual squats are flagged
// with the right reasons; the brands' own domains and unrelated names
// are not.
func TestLookalikes(t *testing.T) {
	c := checker(t)
	cases := []struct {
		host, kinds, action string
	}{
		{"paypal.com", "", "allow"},
		{"www.paypal.com", "", "allow"},
		{"paypal.me", "", "allow"},
		{"example.com", "", "allow"},
		{"paypalace.org", "combo", "log"},                                  // the name inside another word: logged, not blocked
		{"xn--pypal-4ve.com", "confusable,mixed_script,punycode", "block"}, // pаypal with a Cyrillic а
		{"paypa1.com", "confusable", "warn"},
		{"rnicrosoft.com", "confusable", "warn"}, // rn for m
		{"g00gle.com", "confusable", "warn"},
		{"paypall.com", "typo", "warn"},   // doubled
		{"paypl.com", "typo", "warn"},     // missing
		{"paypla.com", "typo", "warn"},    // swapped
		{"micrasoft.com", "typo", "warn"}, // changed
		{"paypal.co", "wrong_tld", "warn"},
		{"example-bank.com", "wrong_tld", "warn"},
		{"paypal.com.evil.net", "subdomain", "warn"},
		{"login.paypal.secure-login.example", "subdomain", "warn"},
		{"paypal-secure.com", "combo", "log"},
		{"login.paypa1-secure.test", "combo,confusable", "block"},
		{"securepaypal.com", "combo", "log"},
	}
	for _, tc := range cases {
		v, err := c.Check(tc.host, true)
		if err != nil {
			t.Fatalf("%s: %v", tc.host, err)
		}
		if kinds(v) != tc.kinds || v.Action != tc.action {
			t.Errorf("%s: %s (%d, %s), want %s (%s); %+v", tc.host, kinds(v), v.Score, v.Action, tc.kinds, tc.action, v.Reasons)
		}
	}
}

func TestSkeletonAndDistance(t *testing.T) {
	for a, b := range map[string]string{"paypa1": "paypal", "pаypal": "paypal", "PAYPAL": "paypal", "ṗaypal": "paypal", "g00gle": "google"} {
		if Skeleton(a) != Skeleton(b) {
			t.Errorf("skeleton %q = %q, %q = %q", a, Skeleton(a), b, Skeleton(b))
		}
	}
	for _, c := range []struct {
		a, b string
		d    int
	}{{"paypal", "paypal", 0}, {"paypal", "paypall", 1}, {"paypal", "paypl", 1}, {"paypal", "papyal", 1}, {"paypal", "pyapla", 2}, {"a", "abcdef", 3}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("%s/%s: %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

// TestFeeds: each feed format loads; a listed URL is blocked, its host
// is warned about for tunnels, a listed domain covers its subdomains.
func TestFeeds(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := checker(t,
		config.PhishFeed{Source: write("openphish.txt", "https://login.evil-one.test/signin\nhttp://two.test/a?b=c\n"), Format: "openphish"},
		config.PhishFeed{Source: write("urlhaus.csv", "################\n# URLhaus\n# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n"+
			`"3001","2026-12-01 10:00:00","http://203.0.113.7:8080/bins/x.sh","online","2026-12-01 10:00:00","malware_download","elf","https://urlhaus.abuse.ch/url/3001/","someone"`+"\n"), Format: "urlhaus"},
		config.PhishFeed{Source: write("phishtank.json", `[{"phish_id":1,"url":"https://bank-verify.test/login.php","verified":"yes","target":"Other"}]`), Format: "phishtank"},
		config.PhishFeed{Source: write("phishtank.csv", "phish_id,url,phish_detail_url,submission_time,verified,verification_time,online,target\n2,https://csv-listed.test/x,https://phishtank.org/2,2026-12-01,yes,2026-12-01,yes,Other\n"), Format: "phishtank"},
		config.PhishFeed{Source: write("domains.txt", "# a list\nbad-domain.test\n0.0.0.0 hosts-style.test\n"), Format: "domains"},
		config.PhishFeed{Source: filepath.Join(dir, "missing.txt"), Format: "domains"},
	)
	for target, want := range map[string]string{
		"https://login.evil-one.test/signin":    "block",
		"http://LOGIN.evil-one.test:443/signin": "block",
		"login.evil-one.test":                   "warn", // a tunnel: the host serves listed URLs
		"https://login.evil-one.test/other":     "warn",
		"http://two.test/a?b=c":                 "block",
		"http://203.0.113.7:8080/bins/x.sh":     "block",
		"https://bank-verify.test/login.php":    "block",
		"https://csv-listed.test/x":             "block",
		"www.bad-domain.test":                   "block",
		"hosts-style.test":                      "block",
		"fine.test":                             "allow",
	} {
		v, err := c.Check(target, true)
		if err != nil || v.Action != want {
			t.Errorf("%s: %s %+v %v, want %s", target, v.Action, v.Reasons, err, want)
		}
	}
	st := c.Feeds()
	if len(st) != 6 || st[0].URLs != 2 || st[5].Error == "" {
		t.Fatalf("feed status: %+v", st)
	}
	if _, _, err := ParseFeed("rss", nil); err == nil || !strings.Contains(err.Error(), "format") {
		t.Fatalf("unknown format: %v", err)
	}
	if _, _, err := ParseFeed("phishtank", []byte("id,link\n1,x\n")); err == nil {
		t.Fatal("phishtank csv without a url column: no error")
	}
}

// TestPage: the test page, a brand's name and a password form
// posting elsewhere on a lookalike domain, is blocked; the brand's own
// login page is not; a page without a password form is not flagged.
func TestPage(t *testing.T) {
	c := checker(t)
	v, _ := c.Check("http://login.paypa1-secure.test/", true)
	c.Page(&v, "PayPal: Log in", "Log in to your PayPal account", true, []string{"https://collect.evil.test/p"})
	if v.Action != "block" || !strings.Contains(kinds(v), "page,form_away") {
		t.Fatalf("lookalike login page: %s %+v", v.Action, v.Reasons)
	}
	v, _ = c.Check("https://blog.example.org/post", true)
	c.Page(&v, "How to pay with PayPal", "We take PayPal.", false, nil)
	if v.Action != "allow" {
		t.Fatalf("a blog mentioning the brand: %s %+v", v.Action, v.Reasons)
	}
	v, _ = c.Check("https://shop.example.org/login", true)
	c.Page(&v, "Sign in", "Sign in with your PayPal account", true, []string{"/login"})
	if v.Action != "warn" || kinds(v) != "page" {
		t.Fatalf("a brand's name with a password form elsewhere: %s %+v", v.Action, v.Reasons)
	}
	v, _ = c.Check("https://www.paypal.com/signin", true)
	c.Page(&v, "PayPal: Log in", "", true, nil)
	if v.Action != "allow" {
		t.Fatalf("the brand's own page: %s %+v", v.Action, v.Reasons)
	}
}

// TestNewDomains: a suspicious domain first seen recently scores more;
// the table survives a restart.
func TestNewDomains(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Phishing{Protect: config.Strings{"paypal.com"}, Refresh: config.Duration(time.Hour), BlockScore: 100, WarnScore: 50, NewDomainDays: 7}
	c, _ := New(cfg, dir, nil)
	v, _ := c.Check("paypal-secure.com", true)
	if !strings.Contains(kinds(v), "new") || v.Action != "warn" {
		t.Fatalf("new lookalike: %s %+v", v.Action, v.Reasons)
	}
	c.seen["paypal-login.com"] = time.Now().Add(-30 * 24 * time.Hour).Unix()
	c.seenDirty = true
	c.saveSeen()
	c2, _ := New(cfg, dir, nil)
	v, _ = c2.Check("paypal-login.com", true)
	if strings.Contains(kinds(v), "new") {
		t.Fatalf("a domain seen 30 days ago is new again after a restart: %+v", v.Reasons)
	}
}
