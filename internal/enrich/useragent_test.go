package enrich

import (
	"sync"
	"testing"
)

func TestUserAgent(t *testing.T) {
	tests := []struct {
		name string
		ua   string
		want string // data.context.ua as JSON
	}{
		{"Chrome on Windows",
			"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
			`{"browser":"Chrome","browser_version":"124.0.0.0","os":"Windows","device":"desktop","bot":false}`},
		{"Safari on iPhone",
			"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
			`{"browser":"Safari","browser_version":"17.4","os":"iOS","device":"mobile","bot":false}`},
		{"Safari on iPad",
			"Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
			`{"browser":"Safari","browser_version":"17.4","os":"iOS","device":"tablet","bot":false}`},
		{"Firefox on Linux",
			"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
			`{"browser":"Firefox","browser_version":"125.0","os":"Linux","device":"desktop","bot":false}`},
		{"Googlebot",
			"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
			`{"browser":"","browser_version":"","os":"","device":"bot","bot":true}`},
		{"Googlebot smartphone",
			"Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.201 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
			`{"browser":"Chrome","browser_version":"124.0.6367.201","os":"Android","device":"bot","bot":true}`},
		{"curl", "curl/8.5.0",
			`{"browser":"","browser_version":"","os":"","device":"bot","bot":true}`},
		{"Android phone",
			"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
			`{"browser":"Chrome","browser_version":"124.0.0.0","os":"Android","device":"mobile","bot":false}`},
		{"Android tablet (Galaxy Tab S8, Chrome)",
			"Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
			`{"browser":"Chrome","browser_version":"124.0.0.0","os":"Android","device":"tablet","bot":false}`},
		{"Android tablet (Firefox)",
			"Mozilla/5.0 (Android 13; Tablet; rv:125.0) Gecko/125.0 Firefox/125.0",
			`{"browser":"Firefox","browser_version":"125.0","os":"Android","device":"tablet","bot":false}`},
		{"Samsung smart TV",
			"Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
			`{"browser":"Samsung Browser","browser_version":"4.0","os":"Linux","device":"tv","bot":false}`},
		{"unrecognised", "hello",
			`{"browser":"","browser_version":"","os":"","device":"unknown","bot":false}`},
	}
	e := mustNew(t, "useragent", nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := map[string]any{"data": map[string]any{"context": map[string]any{"userAgent": tt.ua}}}
			if err := e.Enrich(obj); err != nil {
				t.Fatal(err)
			}
			sameJSON(t, obj, `{"data":{"context":{"userAgent":`+quote(tt.ua)+`,"ua":`+tt.want+`}}}`)
		})
	}
}

func TestUserAgentUnchanged(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", `{"data":{"context":{"userAgent":""}}}`},
		{"blank", `{"data":{"context":{"userAgent":"  "}}}`},
		{"missing", `{"data":{"context":{}}}`},
		{"no context", `{"data":{"event":"x"}}`},
		{"not a string", `{"data":{"context":{"userAgent":42}}}`},
		{"data is an array", `{"data":[1]}`},
		{"no data", `{"id":"1"}`},
	}
	e := mustNew(t, "useragent", nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decode(t, tt.in)
			if err := e.Enrich(obj); err != nil {
				t.Fatal(err)
			}
			sameJSON(t, obj, tt.in)
		})
	}
}

func TestUserAgentOptions(t *testing.T) {
	e := mustNew(t, "useragent", Options{"field": "data.ua_raw", "into": "data.client"})
	obj := decode(t, `{"data":{"ua_raw":"curl/8.5.0"}}`)
	if err := e.Enrich(obj); err != nil {
		t.Fatal(err)
	}
	sameJSON(t, obj, `{"data":{"ua_raw":"curl/8.5.0","client":{"browser":"","browser_version":"","os":"","device":"bot","bot":true}}}`)
}

// The shared parser must be usable from many goroutines; run with -race.
func TestUserAgentConcurrent(t *testing.T) {
	e := mustNew(t, "useragent", nil)
	const ua = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				obj := map[string]any{"data": map[string]any{"context": map[string]any{"userAgent": ua}}}
				if err := e.Enrich(obj); err != nil {
					t.Error(err)
					return
				}
				if got := obj["data"].(map[string]any)["context"].(map[string]any)["ua"].(map[string]any)["browser"]; got != "Firefox" {
					t.Errorf("browser = %v", got)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzUserAgent(f *testing.F) {
	for _, s := range []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"curl/8.5.0", "", "((((", "Chrome/1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19", "\xff\xfe",
	} {
		f.Add(s)
	}
	e := mustNew(f, "useragent", nil)
	devices := map[any]bool{"desktop": true, "mobile": true, "tablet": true, "tv": true, "bot": true, "unknown": true}
	f.Fuzz(func(t *testing.T, ua string) {
		obj := map[string]any{"data": map[string]any{"context": map[string]any{"userAgent": ua}}}
		if err := e.Enrich(obj); err != nil {
			t.Fatal(err)
		}
		out, ok := obj["data"].(map[string]any)["context"].(map[string]any)["ua"].(map[string]any)
		if !ok {
			return // blank user agent: unchanged
		}
		if !devices[out["device"]] {
			t.Fatalf("device %v is not one of the documented classes", out["device"])
		}
		if _, ok := out["bot"].(bool); !ok {
			t.Fatalf("bot = %#v, want a bool", out["bot"])
		}
	})
}

func BenchmarkUserAgent(b *testing.B) {
	e := mustNew(b, "useragent", nil)
	const ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	ctx := map[string]any{"userAgent": ua}
	obj := map[string]any{"data": map[string]any{"context": ctx}}
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Enrich(obj); err != nil {
			b.Fatal(err)
		}
	}
}
