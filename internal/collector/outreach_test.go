package collector_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

func TestOutreach(t *testing.T) {
	r := start(t)
	code, m := post(t, r.URL, "/api/v1/campaigns", `{"name":"November Sale","utm_source":"newsletter"}`, nil)
	if code != 201 || m["id"] != "november-sale" || m["utm_medium"] != "email" {
		t.Fatalf("create: %d %v", code, m)
	}
	if code, _ := post(t, r.URL, "/api/v1/campaigns", `{"name":"November Sale"}`, nil); code != 409 {
		t.Fatalf("duplicate campaign: %d", code)
	}
	code, m = post(t, r.URL, "/api/v1/campaigns/november-sale/links", `{"links":[{"url":"https://shop.example/deals?x=1","recipient":"ann@example.com"},{"url":"https://shop.example/b","recipient":"bob@example.com"}]}`, nil)
	links, _ := m["links"].([]any)
	if code != 200 || len(links) != 2 {
		t.Fatalf("links: %d %v", code, m)
	}
	ann := links[0].(map[string]any)
	click, pixel := ann["click_url"].(string), ann["open_pixel"].(string)
	if code, m := post(t, r.URL, "/api/v1/campaigns/nope/links", `{"links":[{"url":"https://x.example"}]}`, nil); code != 404 {
		t.Fatalf("unknown campaign: %d %v", code, m)
	}
	if code, m := post(t, r.URL, "/api/v1/campaigns/november-sale/links", `{"links":[{"url":"javascript:alert(1)"}]}`, nil); code != 400 || m["field"] != "links[0].url" {
		t.Fatalf("bad target: %d %v", code, m)
	}

	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(click)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 302 || loc.Host != "shop.example" || loc.Query().Get("utm_source") != "newsletter" ||
		loc.Query().Get("utm_campaign") != "november-sale" || loc.Query().Get("x") != "1" {
		t.Fatalf("click: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Altered or unsigned tokens never redirect.
	tok := strings.TrimPrefix(click, r.URL+"/c/")
	payload, _, _ := strings.Cut(tok, ".")
	// The signature's last character holds bits no byte uses: flipping
	// the lowest gives another spelling of the same bytes, which a lax
	// decoder accepts.
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	respelt := tok[:len(tok)-1] + string(b64[strings.IndexByte(b64, tok[len(tok)-1])^1])
	for name, bad := range map[string]string{
		"altered signature": tok[:len(tok)-2] + "AA",
		"respelt signature": respelt,
		"unsigned":          payload,
		"altered target":    strings.Replace(tok, payload[:8], "eyJjIjoi", 1) + "x",
		"garbage":           "not-a-token",
	} {
		resp, err := noFollow.Get(r.URL + "/c/" + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d %q", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}

	// Opens: a reader's client, the same again (counted once), and Gmail's
	// image proxy on Bob's pixel (marked prefetch).
	get := func(u, ua string) int {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("User-Agent", ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Content-Type") != "image/gif" || !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
			t.Errorf("pixel headers %v", resp.Header)
		}
		return resp.StatusCode
	}
	if c := get(pixel, "Mozilla/5.0 Thunderbird"); c != 200 {
		t.Fatalf("open: %d", c)
	}
	get(pixel, "Mozilla/5.0 Thunderbird")
	get(links[1].(map[string]any)["open_pixel"].(string), "Mozilla/5.0 (via ggpht.com GoogleImageProxy)")
	if c := get(r.URL+"/o/"+tok[:len(tok)-2]+"AA.gif", "x"); c != 400 {
		t.Errorf("altered pixel: %d", c)
	}
	annOpen := strings.TrimSuffix(strings.TrimPrefix(pixel, r.URL+"/o/"), ".gif")
	if c := get(r.URL+"/o/"+annOpen[:len(annOpen)-1]+string(b64[strings.IndexByte(b64, annOpen[len(annOpen)-1])^1])+".gif", "x"); c != 400 {
		t.Errorf("respelt pixel (a second open of the same link): %d", c)
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		evs := otelEvents(t, r.URL, "ev.outreach.>")
		var clicks, opens, prefetch int
		for _, e := range evs {
			var d map[string]any
			_ = json.Unmarshal(e.Event.Data, &d)
			switch e.Subject {
			case "ev.outreach.click":
				clicks++
			case "ev.outreach.open":
				opens++
				if d["prefetch"] == true {
					prefetch++
				}
			}
		}
		if clicks != 1 || opens != 2 || prefetch != 1 {
			return errorf("clicks %d opens %d prefetch %d", clicks, opens, prefetch)
		}
		return nil
	})

	// Attribution: the landing page carries the campaign; the same
	// visitor's next page view (no UTM) is attributed to it.
	beacon := func(ctx string) {
		req, _ := http.NewRequest("POST", r.URL+"/beacon/v1/batch?writeKey="+key,
			strings.NewReader(`{"batch":[{"type":"page","name":"P","context":`+ctx+`}]}`))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Origin", "https://shop.example")
		req.Header.Set("User-Agent", "Mozilla/5.0 test-browser")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("beacon %d", resp.StatusCode)
		}
	}
	beacon(`{"campaign":{"name":"november-sale","source":"newsletter","medium":"email"}}`)
	beacon(`{"page":{"path":"/later"}}`)
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		pages := otelEvents(t, r.URL, "ev.track.page")
		if len(pages) != 2 {
			return errorf("%d pages", len(pages))
		}
		var later struct {
			AnonymousID string
			Context     struct{ Campaign map[string]any }
		}
		_ = json.Unmarshal(pages[1].Event.Data, &later)
		if later.Context.Campaign["name"] != "november-sale" || later.Context.Campaign["attributed"] != true || !strings.HasPrefix(later.AnonymousID, "v_") {
			return errorf("later page %+v", later)
		}
		return nil
	})
}

func errorf(format string, a ...any) error {
	return fmt.Errorf(format, a...)
}

// store_ip puts the browser client's address (behind a trusted proxy, the
// forwarded one) into context.ip; by default no address is stored.
func TestStoreIP(t *testing.T) {
	for _, store := range []bool{false, true} {
		r := testutil.StartApp(t, []string{"all"}, func(c *config.Config) {
			c.Collector.WriteKeys = config.Strings{key}
			c.Collector.StoreIP = store
			c.Collector.TrustedProxies = config.Strings{"127.0.0.1/32"}
		})
		req, _ := http.NewRequest("POST", r.URL+"/beacon/v1/batch?writeKey="+key, strings.NewReader(`{"batch":[{"type":"page"}]}`))
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		evs := waitTracked(t, r.URL, 1)
		var d struct{ Context map[string]any }
		_ = json.Unmarshal(evs[0].Event.Data, &d)
		if got, want := d.Context["ip"], map[bool]any{false: nil, true: "198.51.100.7"}[store]; got != want {
			t.Fatalf("store_ip=%v: context.ip = %v", store, got)
		}
	}
}
