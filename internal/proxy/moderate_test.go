package proxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsgraph/ops/internal/config"
	"github.com/opsgraph/ops/internal/testutil"
)

// TestForumModeration: a forum behind the proxy, one route per action.
// Clean posts pass unchanged; a profane post is masked, held (403),
// held with a header, or rejected (422) as its route says; a client
// cannot send the hold header itself; an oversize post is 413 and a
// malformed one 400 without reaching the forum; every post is an
// ev.forum.post event; a thread of angry posts turns heated (an event
// and a counter); POST /api/v1/moderate answers the same checks.
func TestForumModeration(t *testing.T) {
	type got struct{ body, hold string }
	seen := make(chan got, 100)
	var hits atomic.Int64
	forum := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		seen <- got{string(b), r.Header.Get("X-Ops-Moderation")}
		io.WriteString(w, "posted")
	}))
	t.Cleanup(forum.Close)
	route := func(name, action string) config.Route {
		return config.Route{Name: name, Path: "/" + name + "/", Upstreams: config.Strings{forum.URL},
			Moderate: config.Moderate{Fields: config.Strings{"body", "comment.text"}, Thread: "thread", Author: "author", Action: action, MaxBody: 4 << 10}}
	}
	r, base := startProxy(t, []config.Route{route("mask", "mask"), route("hold", "hold"), route("header", "hold_header"), route("reject", "reject"), route("logonly", "log")},
		func(c *config.Config) {
			c.Moderation.Heated = config.HeatedThreads{Window: config.Duration(10 * time.Minute), Posts: 3, Below: -0.4}
		})
	post := func(path, ct, body string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := testutil.Anonymous.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const js = "application/json"
	next := func() got {
		t.Helper()
		select {
		case g := <-seen:
			return g
		case <-time.After(5 * time.Second):
			t.Fatal("the forum got nothing")
		}
		return got{}
	}

	// Clean: forwarded byte for byte.
	clean := `{"thread":"t1","author":"ann","comment":{"text":"Thanks, this was really helpful!"}}`
	if code, _ := post("/mask/posts", js, clean); code != 200 {
		t.Fatalf("clean post: %d", code)
	}
	if g := next(); g.body != clean || g.hold != "" {
		t.Fatalf("clean post reached the forum as %+v", g)
	}
	// Mask: the words masked in the JSON the forum gets.
	if code, _ := post("/mask/posts", js, `{"thread":"t1","author":"bob","comment":{"text":"what the f*ck is this sh1t"}}`); code != 200 {
		t.Fatalf("masked post: %d", code)
	}
	if g := next(); !strings.Contains(g.body, `"text":"what the f*** is this s***"`) {
		t.Fatalf("masked post reached the forum as %q", g.body)
	}
	// A form post masked too.
	if code, _ := post("/mask/form", "application/x-www-form-urlencoded", "thread=t2&body=you+absolute+b1tch"); code != 200 {
		t.Fatalf("form post: %d", code)
	}
	if g := next(); g.body != "body=you+absolute+b%2A%2A%2A%2A&thread=t2" {
		t.Fatalf("masked form reached the forum as %q", g.body)
	}
	// Hold, reject: the forum never sees them.
	before := hits.Load()
	if code, body := post("/hold/posts", js, `{"thread":"t3","comment":{"text":"fuuuck you"}}`); code != 403 || !strings.Contains(body, "held for a moderator") {
		t.Fatalf("hold: %d %s", code, body)
	}
	if code, body := post("/reject/posts", js, `{"thread":"t3","comment":{"text":"f.u.c.k you"}}`); code != 422 || !strings.Contains(body, "fuck") {
		t.Fatalf("reject: %d %s", code, body)
	}
	// Toxic without a listed word: VADER's score.
	if code, _ := post("/reject/posts", js, `{"thread":"t3","comment":{"text":"You are a pathetic, hateful liar and everyone despises you."}}`); code != 422 {
		t.Fatalf("reject of a hateful post: %d", code)
	}
	// Too large, malformed: refused before the forum.
	if code, _ := post("/mask/posts", js, `{"comment":{"text":"`+strings.Repeat("a", 5000)+`"}}`); code != 413 {
		t.Fatalf("oversize post: %d", code)
	}
	if code, body := post("/mask/posts", js, `{"comment":`); code != 400 || !strings.Contains(body, "not JSON") {
		t.Fatalf("malformed post: %d %s", code, body)
	}
	if code, body := post("/mask/posts", js, `{"comment":{"text":{"nested":1}}}`); code != 400 || !strings.Contains(body, "comment.text") {
		t.Fatalf("a field that is not text: %d %s", code, body)
	}
	if code, body := post("/mask/posts", "application/octet-stream", "\x00\xff\xfe binary \x01"); code != 415 || !strings.Contains(body, "moderation reads forms") {
		t.Fatalf("a binary body: %d %s", code, body)
	}
	if code, body := post("/mask/posts", js, "\xff\xfe{\x00"); code != 400 {
		t.Fatalf("binary bytes sent as JSON: %d %s", code, body)
	}
	if n := hits.Load(); n != before {
		t.Fatalf("the forum got %d refused posts", n-before)
	}
	// Hold with a header: forwarded, marked; a client's own header is
	// dropped.
	if code, _ := post("/header/posts", js, `{"comment":{"text":"bullshit"}}`); code != 200 {
		t.Fatalf("hold_header: %d", code)
	}
	if g := next(); g.hold != "hold" {
		t.Fatalf("hold_header: the forum got %+v", g)
	}
	if code, _ := post("/header/posts", js, `{"comment":{"text":"lovely day"}}`, "X-Ops-Moderation", "approved"); code != 200 {
		t.Fatalf("clean post with a spoofed header: %d", code)
	}
	if g := next(); g.hold != "" {
		t.Fatalf("a client's X-Ops-Moderation reached the forum: %+v", g)
	}

	// A heated thread: three angry posts in the window.
	for _, text := range []string{"This is awful and stupid.", "Terrible idea, I hate it.", "Worst thread ever, disgusting."} {
		if code, _ := post("/logonly/posts", js, `{"thread":"hot","comment":{"text":"`+text+`"}}`); code != 200 {
			t.Fatalf("log route: %d", code)
		}
		next()
	}
	events := func(subject string) string {
		req, _ := http.NewRequest("GET", r.URL+"/api/v1/events?subject="+subject+"&limit=100", nil)
		req.Header.Set("Authorization", "Bearer "+r.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		posts, heated := events("ev.forum.post"), events("ev.forum.heated")
		for _, want := range []string{`"route":"mask","thread":"t1","author":"bob"`, `"profane":true,"words":["fuck","shit"]`, `"action":"mask"`,
			`"route":"hold","thread":"t3"`, `"action":"hold"`, `"action":"reject"`, `"route":"mask","thread":"t1","author":"ann"`} {
			if !strings.Contains(posts, want) {
				return fmt.Errorf("no %s in posts: %s", want, posts)
			}
		}
		if !strings.Contains(heated, `"route":"logonly"`) || !strings.Contains(heated, `"thread":"hot"`) || !strings.Contains(heated, `"posts":3`) {
			return fmt.Errorf("no heated thread: %s", heated)
		}
		return nil
	})
	if m := r.Metrics(t); !strings.Contains(m, `ops_forum_heated_threads_total{route="logonly"} 1`) || !strings.Contains(m, `ops_forum_posts_total{action="hold",route="hold"} 1`) {
		t.Fatalf("metrics: %s", m)
	}

	// The API: the same checks for apps that call Ops.
	api := func(body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", r.URL+"/api/v1/moderate", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+r.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := api(`{"text":"what the fuck"}`)
	if code != 200 || out["profane"] != true || out["masked"] != "what the f***" || out["action"] != "flag" {
		t.Fatalf("api: %d %v", code, out)
	}
	code, out = api(`{"text":"I love this, thank you!"}`)
	if s := out["sentiment"].(map[string]any); code != 200 || out["toxic"] != false || s["compound"].(float64) <= 0.5 {
		t.Fatalf("api, kind text: %d %v", code, out)
	}
	if code, out := api(`{"txt":"x"}`); code != 400 || !strings.Contains(fmt.Sprint(out), "body") {
		t.Fatalf("api, unknown field: %d %v", code, out)
	}
	if code, _ := api(`{}`); code != 400 {
		t.Fatalf("api, nothing: %d", code)
	}
	// Without a token: 401.
	resp, err := testutil.Anonymous.Post(r.URL+"/api/v1/moderate", "application/json", strings.NewReader(`{"text":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("api without a token: %d", resp.StatusCode)
	}
}
