package enrich

import (
	"net/netip"
	"net/url"
	"strings"
)

// Referrer classifies where a page view came from, from the page's referrer
// and its own URL.
//
// It writes {"class", "domain", "name"}: class is one of ReferrerClasses,
// domain is the referrer's host without "www." ("" for direct, internal and
// unparseable referrers, since self-referrals are dropped from attribution),
// and name is the known site's name (Google, Facebook, Gmail) or "".
//
// Unlike the other enrichers it always writes: a missing, null or blank
// referrer is exactly what "direct" means. A referrer that is not a string
// or not an absolute URL with a host is "other".
type Referrer struct {
	field, urlField, into path
}

var _ Enricher = (*Referrer)(nil)

// ReferrerClasses are the values Referrer writes to class.
var ReferrerClasses = []string{"search", "social", "email", "direct", "internal", "other"}

func buildReferrer(o Options) (Enricher, error) {
	var r Referrer
	var err error
	if r.field, err = optPath(o, "field"); err != nil {
		return nil, err
	}
	if r.urlField, err = optPath(o, "url_field"); err != nil {
		return nil, err
	}
	if r.into, err = optPath(o, "into"); err != nil {
		return nil, err
	}
	return &r, nil
}

// Enrich implements Enricher. The only error is an into path blocked by a
// non-object value.
func (r *Referrer) Enrich(obj map[string]any) error {
	page, _ := r.urlField.getString(obj)
	var c referrerInfo
	switch v, _ := r.field.get(obj); v := v.(type) {
	case string:
		c = classifyReferrer(v, page)
	case nil:
		c = classifyReferrer("", page)
	default:
		c = referrerInfo{class: "other"}
	}
	return r.into.set(obj, map[string]any{"class": c.class, "domain": c.domain, "name": c.name})
}

type referrerInfo struct{ class, domain, name string }

// classifyReferrer is the whole decision, kept free of the event so the
// fuzz test can drive it directly. utm_medium=email on the page wins over the
// referrer because mail clients often send none, or a redirector's.
func classifyReferrer(ref, page string) referrerInfo {
	email := strings.EqualFold(queryParams(page).Get("utm_medium"), "email")
	ref = strings.TrimSpace(ref)
	var c referrerInfo
	host, ok := urlHost(ref)
	pageHost, _ := urlHost(page)
	switch {
	case ref == "":
		c.class = "direct"
	case !ok:
		c.class = "other"
	case pageHost != "" && sameSite(host, pageHost):
		c.class = "internal"
	default:
		c.domain = strings.TrimPrefix(host, "www.")
		c.class = "other"
		if k, found := knownReferrer(host); found {
			c.class, c.name = k.class, k.name
		}
	}
	if email {
		c.class = "email"
	}
	return c
}

// urlHost returns the lower-cased host of an absolute URL, without port or
// trailing dot.
func urlHost(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" {
		return "", false
	}
	h := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	return h, h != ""
}

// sameSite reports a self-referral: the same host, or hosts under the same
// registrable domain (blog.example.co.uk and shop.example.co.uk).
func sameSite(a, b string) bool {
	return a == b || registrableDomain(a) == registrableDomain(b)
}

// registrableDomain approximates the public-suffix rule with the last two
// labels, or three under a known two-label suffix. The full public suffix
// list would be a dependency and a data file to keep fresh for the few
// suffixes that carry most traffic; a miss only makes two unrelated sites
// under an unlisted suffix look like one.
func registrableDomain(host string) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return host
	}
	labels := strings.Split(host, ".")
	n := 2
	if len(labels) >= 3 && multiPartSuffixes[strings.Join(labels[len(labels)-2:], ".")] {
		n = 3
	}
	if len(labels) <= n {
		return host
	}
	return strings.Join(labels[len(labels)-n:], ".")
}

var multiPartSuffixes = stringSet(
	"co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "ltd.uk", "plc.uk",
	"com.au", "net.au", "org.au", "edu.au", "gov.au",
	"co.jp", "ne.jp", "or.jp", "ac.jp",
	"com.br", "net.br", "org.br",
	"co.nz", "org.nz", "co.za", "co.in", "co.kr", "co.id", "co.il", "co.th",
	"com.mx", "com.ar", "com.tr", "com.cn", "com.hk", "com.tw", "com.sg",
	"com.my", "com.ph", "com.vn", "com.ua", "com.co", "com.pe", "com.eg",
	"com.sa", "com.pk", "com.ng",
)

func stringSet(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

type knownSite struct{ class, name string }

// knownReferrer looks the host up by exact host first (mail.google.com is
// email, not Google search), then by registrable domain (l.facebook.com,
// old.reddit.com), then by the label before the public suffix for engines
// with a domain per country (google.de, yandex.com.tr).
func knownReferrer(host string) (knownSite, bool) {
	h := strings.TrimPrefix(host, "www.")
	if k, ok := referrerHosts[h]; ok {
		return k, true
	}
	d := registrableDomain(h)
	if k, ok := referrerDomains[d]; ok {
		return k, true
	}
	label, _, _ := strings.Cut(d, ".")
	k, ok := referrerBrands[label]
	return k, ok
}

var referrerHosts = map[string]knownSite{
	"mail.google.com":       {"email", "Gmail"},
	"com.google.android.gm": {"email", "Gmail"}, // android-app:// referrer from the Gmail app
	"outlook.live.com":      {"email", "Outlook"},
	"outlook.office.com":    {"email", "Outlook"},
	"outlook.office365.com": {"email", "Outlook"},
	"mail.yahoo.com":        {"email", "Yahoo Mail"},
	"mail.proton.me":        {"email", "Proton Mail"},
	"search.brave.com":      {"search", "Brave Search"},
	"news.ycombinator.com":  {"social", "Hacker News"},
}

var referrerDomains = map[string]knownSite{
	"bing.com":       {"search", "Bing"},
	"duckduckgo.com": {"search", "DuckDuckGo"},
	"yahoo.com":      {"search", "Yahoo"},
	"baidu.com":      {"search", "Baidu"},
	"ecosia.org":     {"search", "Ecosia"},
	"qwant.com":      {"search", "Qwant"},
	"startpage.com":  {"search", "Startpage"},
	"facebook.com":   {"social", "Facebook"},
	"instagram.com":  {"social", "Instagram"},
	"t.co":           {"social", "X"},
	"twitter.com":    {"social", "X"},
	"x.com":          {"social", "X"},
	"linkedin.com":   {"social", "LinkedIn"},
	"lnkd.in":        {"social", "LinkedIn"},
	"reddit.com":     {"social", "Reddit"},
	"pinterest.com":  {"social", "Pinterest"},
	"youtube.com":    {"social", "YouTube"},
	"tiktok.com":     {"social", "TikTok"},
}

var referrerBrands = map[string]knownSite{
	"google": {"search", "Google"},
	"yandex": {"search", "Yandex"},
}
