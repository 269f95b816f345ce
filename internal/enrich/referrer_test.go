package enrich

import (
	"slices"
	"testing"
)

func TestReferrer(t *testing.T) {
	const page = "https://shop.example.com/pricing"
	tests := []struct {
		name, ref, page     string
		class, domain, site string
	}{
		{"no referrer", "", page, "direct", "", ""},
		{"blank referrer", "   ", page, "direct", "", ""},
		{"google.com", "https://www.google.com/", page, "search", "google.com", "Google"},
		{"google.co.uk", "https://www.google.co.uk/", page, "search", "google.co.uk", "Google"},
		{"google.de", "https://google.de/search?q=x", page, "search", "google.de", "Google"},
		{"google.com.br", "https://www.google.com.br/", page, "search", "google.com.br", "Google"},
		{"google as a subdomain is not Google", "https://google.evil.com/", page, "other", "google.evil.com", ""},
		{"bing", "https://www.bing.com/search?q=ops", page, "search", "bing.com", "Bing"},
		{"duckduckgo", "https://duckduckgo.com/", page, "search", "duckduckgo.com", "DuckDuckGo"},
		{"yahoo search", "https://search.yahoo.com/search?p=ops", page, "search", "search.yahoo.com", "Yahoo"},
		{"yandex.ru", "https://yandex.ru/search/?text=ops", page, "search", "yandex.ru", "Yandex"},
		{"brave search", "https://search.brave.com/search?q=ops", page, "search", "search.brave.com", "Brave Search"},
		{"brave.com is not search", "https://brave.com/blog", page, "other", "brave.com", ""},
		{"ecosia", "https://www.ecosia.org/", page, "search", "ecosia.org", "Ecosia"},
		{"facebook link shim", "https://l.facebook.com/l.php?u=x", page, "social", "l.facebook.com", "Facebook"},
		{"facebook mobile", "https://m.facebook.com/", page, "social", "m.facebook.com", "Facebook"},
		{"t.co", "https://t.co/abc123", page, "social", "t.co", "X"},
		{"x.com", "https://x.com/someone/status/1", page, "social", "x.com", "X"},
		{"old reddit", "https://old.reddit.com/r/golang/", page, "social", "old.reddit.com", "Reddit"},
		{"hacker news", "https://news.ycombinator.com/item?id=1", page, "social", "news.ycombinator.com", "Hacker News"},
		{"ycombinator.com is not social", "https://www.ycombinator.com/", page, "other", "ycombinator.com", ""},
		{"linkedin short link", "https://lnkd.in/abc", page, "social", "lnkd.in", "LinkedIn"},
		{"gmail", "https://mail.google.com/", page, "email", "mail.google.com", "Gmail"},
		{"gmail android app", "android-app://com.google.android.gm/", page, "email", "com.google.android.gm", "Gmail"},
		{"outlook", "https://outlook.live.com/mail/0/", page, "email", "outlook.live.com", "Outlook"},
		{"proton", "https://mail.proton.me/u/0/inbox", page, "email", "mail.proton.me", "Proton Mail"},
		{"utm_medium=email without referrer", "", page + "?utm_medium=email&utm_source=newsletter", "email", "", ""},
		{"utm_medium=Email with an unknown referrer", "https://click.mailer.example.net/r", page + "?utm_medium=Email", "email", "click.mailer.example.net", ""},
		{"same host", "https://shop.example.com/", page, "internal", "", ""},
		{"same host other port and case", "http://SHOP.example.com:8080/x", page, "internal", "", ""},
		{"subdomain of the same site", "https://blog.example.com/post", page, "internal", "", ""},
		{"apex of the same site", "https://www.example.com/", page, "internal", "", ""},
		{"co.uk subdomain", "https://blog.example.co.uk/", "https://shop.example.co.uk/", "internal", "", ""},
		{"co.uk other site", "https://other.co.uk/", "https://shop.example.co.uk/", "other", "other.co.uk", ""},
		{"another site", "https://blog.golang.org/x", page, "other", "blog.golang.org", ""},
		{"IP referrer", "http://10.0.0.1/", "http://10.0.0.2/", "other", "10.0.0.1", ""},
		{"same IP", "http://10.0.0.1/a", "http://10.0.0.1/b", "internal", "", ""},
		{"no page URL", "https://www.example.com/", "", "other", "example.com", ""},
		{"unparseable referrer", "http://[::1", page, "other", "", ""},
		{"relative referrer", "/pricing", page, "other", "", ""},
		{"schemeless referrer", "www.google.com", page, "other", "", ""},
	}
	e := mustNew(t, "referrer", nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := map[string]any{"data": map[string]any{"context": map[string]any{
				"page": map[string]any{"referrer": tt.ref, "url": tt.page}}}}
			if err := e.Enrich(obj); err != nil {
				t.Fatal(err)
			}
			got := obj["data"].(map[string]any)["context"].(map[string]any)["referrer_info"]
			sameJSON(t, map[string]any{"x": got}, `{"x":{"class":`+quote(tt.class)+`,"domain":`+quote(tt.domain)+`,"name":`+quote(tt.site)+`}}`)
		})
	}
}

func TestReferrerFieldShapes(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		in, want string
	}{
		{"missing referrer is direct", nil,
			`{"data":{"context":{"page":{"url":"https://a.com/"}}}}`,
			`{"data":{"context":{"page":{"url":"https://a.com/"},"referrer_info":{"class":"direct","domain":"","name":""}}}}`},
		{"null referrer is direct", nil,
			`{"data":{"context":{"page":{"referrer":null}}}}`,
			`{"data":{"context":{"page":{"referrer":null},"referrer_info":{"class":"direct","domain":"","name":""}}}}`},
		{"non-string referrer is other", nil,
			`{"data":{"context":{"page":{"referrer":["https://google.com"]}}}}`,
			`{"data":{"context":{"page":{"referrer":["https://google.com"]},"referrer_info":{"class":"other","domain":"","name":""}}}}`},
		{"custom fields", Options{"field": "data.ref", "url_field": "data.href", "into": "data.src"},
			`{"data":{"ref":"https://t.co/x","href":"https://a.com/"}}`,
			`{"data":{"ref":"https://t.co/x","href":"https://a.com/","src":{"class":"social","domain":"t.co","name":"X"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decode(t, tt.in)
			if err := mustNew(t, "referrer", tt.opts).Enrich(obj); err != nil {
				t.Fatal(err)
			}
			sameJSON(t, obj, tt.want)
		})
	}
}

func FuzzReferrer(f *testing.F) {
	for _, s := range [][2]string{
		{"https://www.google.co.uk/", "https://example.com/"},
		{"https://blog.example.co.uk/", "https://shop.example.co.uk/?utm_medium=email"},
		{"", ""}, {"http://[::1", "%"}, {"android-app://com.google.android.gm/", "https://x/?a=%zz&utm_medium=email"},
		{"http://10.0.0.1:80/", "http://10.0.0.1/"}, {"https://..../", "https://./"}, {"//t.co", "?"},
	} {
		f.Add(s[0], s[1])
	}
	e := mustNew(f, "referrer", nil)
	f.Fuzz(func(t *testing.T, ref, page string) {
		obj := map[string]any{"data": map[string]any{"context": map[string]any{
			"page": map[string]any{"referrer": ref, "url": page}}}}
		if err := e.Enrich(obj); err != nil {
			t.Fatal(err)
		}
		info := obj["data"].(map[string]any)["context"].(map[string]any)["referrer_info"].(map[string]any)
		class, _ := info["class"].(string)
		if !slices.Contains(ReferrerClasses, class) {
			t.Fatalf("class %q is not one of %v", class, ReferrerClasses)
		}
		domain, _ := info["domain"].(string)
		if (class == "direct" || class == "internal") && domain != "" {
			t.Fatalf("class %s with domain %q; self and direct visits carry no domain", class, domain)
		}
	})
}
